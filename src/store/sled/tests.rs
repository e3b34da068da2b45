//! Races inside the embedded store, made deterministic at the tree level
//! (a hook between a read and the write that acts on it).

use super::committer::record;
use super::directory::{delete_list, finish_list_purges};
use super::queue::prune_window;
use super::*;
use crate::address::{Address, Suffix};
use crate::model::BounceState;
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
            client: None,
            auth: None,
            audience: Default::default(),
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
        arc_seal: None,
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

/// A job for `post` with one chunk of two members.
fn job_of(post: &str, list: &str) -> (Job, Vec<Vec<String>>) {
    let job = Job {
        post_id: post.into(),
        list: list.into(),
        seq: 0,
        verp_percent: 0,
        max_rcpt_per_txn: 100,
        chunks: 0,
        chunks_done: 0,
        recipients: 0,
        delivered: 0,
        refused: 0,
        created_at: 0,
    };
    (job, vec![vec!["a@d.org".into(), "b@d.org".into()]])
}

#[tokio::test]
async fn a_post_is_planned_once_even_from_a_stale_list_of_unplanned_posts() {
    let (_dir, store, list) = store().await;
    let p = post(&list, "post-1", "once@example.com", "once");
    store.accept(vec![p]).await.unwrap();
    // The planner read the post as unplanned…
    let stale = store.unplanned_posts().await.unwrap();
    assert_eq!(stale.len(), 1);
    let (job, chunks) = job_of("post-1", &list);
    store.create_job(job.clone(), chunks.clone()).await.unwrap();
    // …and its job is delivered and completed before the planner goes on.
    let claim = store.claim_chunk("w", 60_000).await.unwrap().unwrap();
    let done = store.complete_chunk("w", &claim.chunk).await.unwrap();
    assert!(matches!(done, Completion::JobDone(_)));
    assert!(store.unplanned_posts().await.unwrap().is_empty());
    // Planning it again from the stale list is refused, before and after
    // the post is finished.
    let again = store.create_job(job.clone(), chunks.clone()).await;
    assert!(matches!(again, Err(StoreError::Exists(_))), "{again:?}");
    store.finish_message("post-1", 0).await.unwrap();
    let again = store.create_job(job, chunks).await;
    assert!(matches!(again, Err(StoreError::Exists(_))), "{again:?}");
    assert!(store.jobs().await.unwrap().is_empty());
    assert!(store.claim_chunk("w", 60_000).await.unwrap().is_none());
    // Finishing twice (worker and sweep) is harmless.
    store.finish_message("post-1", 0).await.unwrap();
}

#[tokio::test]
async fn orphan_jobs_are_cleared_at_open() {
    let (_dir, store, list) = store().await;
    // A job and chunk whose post is gone, as the old double planning left.
    let (mut job, _) = job_of("gone", &list);
    job.chunks = 1;
    put(&store.trees.jobs, "gone", &job).unwrap();
    let (state, members) = {
        let p = post(&list, "post-2", "x@example.com", "x");
        store.accept(vec![p]).await.unwrap();
        let (j, c) = job_of("post-2", &list);
        store.create_job(j, c).await.unwrap();
        let claim = store.claim_chunk("w", 60_000).await.unwrap().unwrap();
        (claim.chunk, store.chunk_members("post-2", 0).await.unwrap())
    };
    let mut orphan = state.clone();
    orphan.job = "gone".into();
    fanout::restore_chunk(&store.trees, &orphan, &members).unwrap();
    assert_eq!(fanout::clear_orphan_jobs(&store.trees).unwrap(), 2);
    let jobs = store.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "the live job stays");
    assert_eq!(jobs[0].post_id, "post-2");
    let chunks = store.chunks().await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].job, "post-2");
}

#[tokio::test]
async fn pages_walk_every_member_once_and_only_of_their_list() {
    let (_dir, store, list) = store().await;
    let other = List::new(Address::parse("other@lists.example.org").unwrap());
    store.create_list(&other).await.unwrap();
    store.add_members(&other.key(), &members(3)).await.unwrap();
    let new = store.add_members(&list, &members(25)).await.unwrap();
    assert!(new.iter().all(|&n| n));
    // The same address twice in a batch is added once.
    let again = store.add_members(&list, &members(26)).await.unwrap();
    assert_eq!(again.iter().filter(|&&n| n).count(), 1);
    let (mut after, mut seen) = (None::<String>, Vec::new());
    loop {
        let page = store
            .members_page(&list, after.as_deref(), 10)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = page.last().map(|m| m.address.key());
        seen.extend(page.into_iter().map(|m| m.address.key()));
    }
    assert_eq!(seen.len(), 26);
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 26);
}
