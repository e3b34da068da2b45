//! Races inside the embedded store, made deterministic at the tree level
//! (a hook between a read and the write that acts on it).

use super::*;
use crate::address::{Address, Suffix};
use crate::store::DedupKey;

/// A store in a temp dir with one list, `dev@lists.example.org`.
pub(super) async fn store() -> (tempfile::TempDir, SledStore, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let list = List::new(Address::parse("dev@lists.example.org").unwrap());
    store.create_list(&list).await.unwrap();
    (dir, store, list.key())
}

/// A post to `list` carrying `message_id`, with `body` as its bytes.
pub(super) fn post(list: &str, id: &str, message_id: &str, body: &str) -> NewMessage {
    NewMessage {
        meta: MessageMeta {
            id: id.into(),
            list: list.into(),
            suffix: Suffix::Post,
            tag: None,
            mail_from: "poster@example.com".into(),
            rcpt: "dev@lists.example.org".into(),
            received_at: 0,
            message_id: Some(message_id.into()),
            dedup: Some(DedupKey {
                message_id: message_id.into(),
                content_hash: format!("hash of {body}"),
            }),
            size: body.len() as u64,
            state: MessageState::Queued,
            policy: None,
        },
        body: body.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn pruning_never_drops_an_entry_the_committer_reclaimed() {
    let (_dir, store, list) = store().await;
    let first = post(&list, "post-1", "same@example.com", "first");
    assert_eq!(
        store.accept(vec![first]).await.unwrap(),
        [AcceptOutcome::Accepted]
    );
    // Its fan-out finished with no grace: the entry is expired.
    store.finish_message("post-1", 0).await.unwrap();
    let later = now() + 1;
    // Between the prune's read and its removal, a new post re-claims the key.
    let second = post(&list, "post-2", "same@example.com", "second");
    let pruned = prune_window(&store.trees, later, |_| {
        record(&store.trees, &second).unwrap()
    })
    .unwrap();
    assert_eq!(
        pruned, 0,
        "the re-claimed entry is not the expired one read"
    );
    let entry = store
        .window_entry(&list, "same@example.com")
        .await
        .unwrap()
        .expect("the live entry stays");
    assert_eq!(entry.message, "post-2");
    // So a third post with that Message-ID is still a duplicate.
    let third = post(&list, "post-3", "same@example.com", "third");
    assert_eq!(
        store.accept(vec![third]).await.unwrap(),
        [AcceptOutcome::Duplicate {
            existing: "post-2".into()
        }]
    );
    // An entry nobody touched is pruned.
    store.finish_message("post-2", 0).await.unwrap();
    assert_eq!(prune_window(&store.trees, now() + 1, |_| {}).unwrap(), 1);
}

/// `n` members `m0@d.org` …
fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(Address::parse(&format!("m{i}@d.org")).unwrap()))
        .collect()
}

#[tokio::test]
async fn members_of_a_list_deleted_before_a_crash_never_come_back() {
    let (_dir, store, list) = store().await;
    let record: List = store.list(&list).await.unwrap().unwrap();
    store.add_members(&list, &members(3)).await.unwrap();
    // The process dies after the list record is gone, before its members.
    let crash = delete_list(&store.trees, &store.directory, &list, || {
        Err(StoreError::Backend("crash".into()))
    });
    assert!(crash.is_err());
    // Not re-created over the members still there…
    assert!(store.create_list(&record).await.is_err());
    // …and the next open finishes the deletion.
    finish_list_purges(&store.trees).unwrap();
    store.create_list(&record).await.unwrap();
    assert_eq!(store.member_count(&list).await.unwrap(), 0);
    assert!(store.members(&list).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_domain_with_lists_is_not_deleted() {
    let (_dir, store, _list) = store().await;
    let domain = Domain {
        name: "lists.example.org".into(),
        opaque: false,
        created_at: 0,
    };
    store.create_domain(&domain).await.unwrap();
    assert!(store.delete_domain("lists.example.org").await.is_err());
    store.delete_list("dev@lists.example.org").await.unwrap();
    store.delete_domain("lists.example.org").await.unwrap();
}

#[tokio::test]
async fn of_two_bounce_state_writers_from_the_same_read_one_loses() {
    let (_dir, store, list) = store().await;
    let first = BounceState::new("list:dev", "m@d.org", &list, 1);
    store.put_bounce_state(&first).await.unwrap();
    let read = store.bounce_state("list:dev", "m@d.org").await.unwrap();
    let mut scored = first.clone();
    scored.score = 1.0;
    // The handler scores a bounce; `bounce reset` had read the same state.
    assert!(store
        .replace_bounce_state("list:dev", "m@d.org", read.as_ref(), Some(&scored))
        .await
        .unwrap());
    assert!(!store
        .replace_bounce_state("list:dev", "m@d.org", read.as_ref(), None)
        .await
        .unwrap());
    let now = store.bounce_state("list:dev", "m@d.org").await.unwrap();
    assert_eq!(now, Some(scored.clone()), "the loser wrote nothing");
    // Retrying from a fresh read wins.
    assert!(store
        .replace_bounce_state("list:dev", "m@d.org", now.as_ref(), None)
        .await
        .unwrap());
    assert_eq!(
        store.bounce_state("list:dev", "m@d.org").await.unwrap(),
        None
    );
}

#[test]
fn concurrent_bounce_state_updates_are_never_lost() {
    let dir = tempfile::tempdir().unwrap();
    let trees = Trees::open(sled::Config::new().path(dir.path()).open().unwrap()).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let t = trees.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    loop {
                        let old = bounce::state(&t, "site", "m@d.org").unwrap();
                        let mut new = old
                            .clone()
                            .unwrap_or_else(|| BounceState::new("site", "m@d.org", "l", 1));
                        new.bounces += 1;
                        if bounce::replace_state(&t, "site", "m@d.org", old.as_ref(), Some(&new))
                            .unwrap()
                        {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let end = bounce::state(&trees, "site", "m@d.org").unwrap().unwrap();
    assert_eq!(end.bounces, 800, "every update counted once");
}
