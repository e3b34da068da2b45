//! `listrelay export` / `import` between the two stores: a site moves from the
//! embedded store to PostgreSQL and back without losing lists, members,
//! bounce state, held posts, pending confirmations or queued work. Needs
//! PostgreSQL (skipped without one, except in CI), whatever store the pass
//! selects.

mod support;

use std::sync::Arc;

use listrelay::address::{Address, Suffix};
use listrelay::bounce::{BounceState, PostBounces};
use listrelay::model::{DeliveryMode, List, Member};
use listrelay::moderation::held::message_hash;
use listrelay::moderation::HeldPost;
use listrelay::store::rules;
use listrelay::store::transfer::{export, import, Record};
use listrelay::store::{
    new_id, DedupKey, DeliveryFailure, Job, MessageMeta, MessageState, NewMessage, PostgresStore,
    SledStore, Store,
};
use listrelay::subscription::{Pending, PendingAction};
use support::pg::{self, TestDb};

const LIST: &str = "dev@lists.example.org";

fn post(list: &str, id: &str, message_id: &str) -> NewMessage {
    NewMessage {
        meta: MessageMeta {
            id: id.into(),
            list: list.into(),
            suffix: Suffix::Post,
            tag: None,
            mail_from: "poster@example.com".into(),
            rcpt: LIST.into(),
            received_at: 1_700_000_000,
            message_id: Some(message_id.into()),
            dedup: Some(DedupKey {
                message_id: message_id.into(),
                content_hash: format!("hash-of-{id}"),
            }),
            size: 40,
            state: MessageState::Queued,
            policy: None,
            client: None,
            auth: None,
        },
        body: format!("Message-ID: <{message_id}>\r\nSubject: {id}\r\n\r\nhi\r\n").into_bytes(),
    }
}

/// A sled site with every kind of record.
async fn populate(store: &dyn Store) {
    let mut list = List::new(Address::parse(LIST).unwrap());
    list.bans = vec!["spammer@bad.example".into(), r"^.*@spam\.example$".into()];
    let other = List::new(Address::parse("ops@lists.example.org").unwrap());
    store.create_list(&list).await.unwrap();
    store.create_list(&other).await.unwrap();
    let members: Vec<Member> = ["a@one.example", "b@two.example", "c@two.example"]
        .iter()
        .map(|a| Member::new(Address::parse(a).unwrap()))
        .collect();
    store.add_members(&list.key(), &members).await.unwrap();
    store
        .add_members(&other.key(), &members[..1])
        .await
        .unwrap();
    assert!(store
        .set_delivery(&list.key(), "c@two.example", false)
        .await
        .unwrap());
    // Delivery modes: the member's choice, apart from bounce-disabled
    // delivery (c is both nomail and disabled).
    for (member, mode) in [
        ("b@two.example", DeliveryMode::DigestMime),
        ("c@two.example", DeliveryMode::Nomail),
    ] {
        let m = store
            .set_delivery_mode(&list.key(), member, mode)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.delivery_mode, mode);
    }
    let c = store.member(&list.key(), "c@two.example").await.unwrap();
    assert!(!c.unwrap().delivery_enabled, "the mode left delivery alone");

    // A queued post with its job, one held post, one post marked accepted.
    let (queued, held, accepted) = (new_id(), new_id(), new_id());
    store
        .accept(vec![
            post(&list.key(), &queued, "queued@example.com"),
            post(&list.key(), &held, "held@example.com"),
            post(&list.key(), &accepted, "accepted@example.com"),
        ])
        .await
        .unwrap();
    let job = Job {
        post_id: queued.clone(),
        list: list.key(),
        seq: 0,
        verp_percent: 30,
        max_rcpt_per_txn: 50,
        chunks: 0,
        chunks_done: 0,
        recipients: 0,
        delivered: 0,
        refused: 0,
        created_at: 1_700_000_001,
    };
    let chunks = vec![
        vec!["a@one.example".to_string()],
        vec!["b@two.example".to_string()],
    ];
    store.create_job(job, chunks).await.unwrap();
    // One chunk in progress under a lease (the export drops the lease).
    let claim = store.claim_chunk("host-1", 60_000).await.unwrap().unwrap();
    let mut state = claim.chunk.clone();
    state.cursor = 1;
    state.delivered = 1;
    assert!(store.update_chunk("host-1", &state, 60_000).await.unwrap());
    assert!(store
        .hold_post(&HeldPost {
            id: held.clone(),
            list: list.key(),
            message_id: "held@example.com".into(),
            hash: message_hash("held@example.com"),
            reason: "nonmember".into(),
            sender: "poster@example.com".into(),
            notify_sender: true,
            subject: "held".into(),
            size: 40,
            held_at: 1_700_000_002,
        })
        .await
        .unwrap());
    assert!(store.mark_accepted(&accepted).await.unwrap());

    // Bounce state, a post's policy bounces, a hand-off failure.
    let mut b = BounceState::new(&list.key(), "b@two.example", &list.key(), 1_700_000_003);
    b.score = 1.5;
    b.bounces = 2;
    b.last_reason = "user_unknown".into();
    b.last_status = Some("5.1.1".into());
    b.last_hard = true;
    store.put_bounce_state(&b).await.unwrap();
    let mut p = PostBounces::new(&list.key(), "queued@example.com", 3, 1_700_000_004);
    p.policy_members.push("a@one.example".into());
    store.put_post_bounces(&p).await.unwrap();
    store
        .record_failure(&DeliveryFailure {
            list: list.key(),
            member: "a@one.example".into(),
            message: queued.clone(),
            reply: "550 5.1.1 no such user".into(),
            at: 1_700_000_005,
        })
        .await
        .unwrap();

    // A pending confirmation and today's mail count.
    store
        .put_pending(
            "tokenhash1",
            &Pending {
                list: list.key(),
                address: "new@three.example".into(),
                action: PendingAction::Join,
                token_hash: "tokenhash1".into(),
                created_at: 1_700_000_006,
                expires_at: u64::MAX / 4,
                detail: String::new(),
            },
        )
        .await
        .unwrap();
    assert!(store
        .rate_take("poster@example.com", 20_000, 5)
        .await
        .unwrap());
    assert!(store
        .rate_take("poster@example.com", 20_000, 5)
        .await
        .unwrap());
    store.sync().await.unwrap();
}

/// An export: as written, and its lines sorted (to compare two exports).
async fn dump(store: &dyn Store) -> (String, Vec<String>) {
    let mut out = Vec::new();
    export(store, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let ranks: Vec<u8> = text
        .lines()
        .map(|l| rules::restore_rank(&serde_json::from_str::<Record>(l).unwrap()))
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "the export follows the restore order: {ranks:?}"
    );
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    (text, lines)
}

async fn load(store: &dyn Store, text: &str) {
    import(store, &mut text.as_bytes()).await.unwrap();
}

fn count(lines: &[String], kind: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.contains(&format!("\"kind\":\"{kind}\"")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_to_postgres_and_back_loses_nothing() {
    if !pg::required("sled_to_postgres_and_back_loses_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    populate(sled.as_ref()).await;
    let (first_text, first) = dump(sled.as_ref()).await;
    for (kind, n) in [
        ("list", 2),
        ("member", 4),
        ("counter", 1),
        ("message", 3),
        ("window", 3),
        ("job", 1),
        ("chunk", 2),
        ("failure", 1),
        ("bounce_state", 1),
        ("post_bounces", 1),
        ("held", 1),
        ("pending", 1),
        ("rate", 1),
    ] {
        assert_eq!(count(&first, kind), n, "{kind} records in\n{first:#?}");
    }
    assert!(first
        .iter()
        .any(|l| l.contains("\"kind\":\"message\"") && l.contains("\"state\":\"held\"")));
    assert!(first
        .iter()
        .any(|l| l.contains("\"kind\":\"list\"") && l.contains("spam\\\\.example")));
    assert!(first
        .iter()
        .any(|l| l.contains("\"kind\":\"member\"")
            && l.contains("\"delivery_mode\":\"digest_mime\"")));
    assert!(first
        .iter()
        .any(|l| l.contains("\"kind\":\"message\"") && l.contains("\"policy\":\"accepted\"")));

    // Into PostgreSQL, and out again: the same records.
    let db = TestDb::create();
    let pg: Arc<dyn Store> = Arc::new(PostgresStore::open(&db.url).await.unwrap());
    load(pg.as_ref(), &first_text).await;
    let (second_text, second) = dump(pg.as_ref()).await;
    assert_eq!(first, second, "sled export != PostgreSQL export");

    // The imported site behaves: the held post is held (not planned), the
    // accepted one is planned, a token works once, the rate count goes on.
    let unplanned: Vec<String> = pg
        .unplanned_posts()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id.unwrap_or_default())
        .collect();
    assert_eq!(unplanned, vec!["accepted@example.com".to_string()]);
    assert_eq!(pg.held_posts(Some(LIST)).await.unwrap().len(), 1);
    // Modes and bans came across: a post goes to the regular member only,
    // a MIME digest to b, and the list keeps its bans.
    assert_eq!(
        pg.delivery_addresses(LIST, u64::MAX).await.unwrap(),
        vec!["a@one.example".to_string()]
    );
    assert_eq!(
        pg.audience_addresses(LIST, DeliveryMode::DigestMime, u64::MAX)
            .await
            .unwrap(),
        vec!["b@two.example".to_string()]
    );
    assert_eq!(pg.list(LIST).await.unwrap().unwrap().bans.len(), 2);
    assert!(pg.take_pending("tokenhash1").await.unwrap().is_some());
    assert!(pg.take_pending("tokenhash1").await.unwrap().is_none());
    assert!(pg.rate_take("poster@example.com", 20_000, 3).await.unwrap());
    assert!(!pg.rate_take("poster@example.com", 20_000, 3).await.unwrap());
    assert_eq!(
        pg.bounce_state(LIST, "b@two.example")
            .await
            .unwrap()
            .map(|b| b.score),
        Some(1.5)
    );

    // And back into a fresh embedded site.
    let dir2 = tempfile::tempdir().unwrap();
    let back: Arc<dyn Store> = Arc::new(SledStore::open(dir2.path()).unwrap());
    load(back.as_ref(), &second_text).await;
    let (_, third) = dump(back.as_ref()).await;
    assert_eq!(first, third, "sled export != export after the round trip");
}
