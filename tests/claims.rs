//! Claims on the store under test (the embedded one, or PostgreSQL with
//! `LISTRELAY_TEST_STORE=postgres`): racing workers never share a chunk, an
//! expired lease is taken over, and the old holder's late writes are refused.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use listrelay::address::{Address, Suffix};
use listrelay::model::{List, Member};
use listrelay::store::{
    new_id, Claims, Completion, Job, MessageMeta, MessageState, NewMessage, PostgresStore,
    SledStore, Store, StoreError,
};
use support::pg::{self, TestDb};

/// Where a test store lives: a temp dir, and the database on PostgreSQL.
struct Site {
    dir: tempfile::TempDir,
    db: Option<TestDb>,
}

impl Site {
    fn new() -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
            db: pg::selected().then(TestDb::create),
        }
    }

    /// A handle on the store: on PostgreSQL every call is a new host's
    /// connection pool on the same database.
    async fn open(&self) -> Arc<dyn Store> {
        match &self.db {
            Some(db) => Arc::new(PostgresStore::open(&db.url).await.unwrap()),
            None => Arc::new(SledStore::open(self.dir.path()).unwrap()),
        }
    }
}

async fn store_with_job(chunks: usize) -> (Site, Arc<dyn Store>, Job) {
    let (site, store, job) = store_with_post().await;
    let job = store.create_job(job, members(chunks)).await.unwrap();
    (site, store, job)
}

/// `chunks` chunks of ten members, one domain each.
fn members(chunks: usize) -> Vec<Vec<String>> {
    (0..chunks)
        .map(|c| (0..10).map(|i| format!("m{i}@d{c}.org")).collect())
        .collect()
}

/// A store holding one queued post, `post-1`, and the job to plan for it.
async fn store_with_post() -> (Site, Arc<dyn Store>, Job) {
    let site = Site::new();
    let store = site.open().await;
    let list = List::new(Address::parse("dev@lists.example.org").unwrap());
    store.create_list(&list).await.unwrap();
    let post = NewMessage {
        meta: MessageMeta {
            id: "post-1".into(),
            list: list.key(),
            suffix: Suffix::Post,
            tag: None,
            mail_from: "poster@example.com".into(),
            rcpt: "dev@lists.example.org".into(),
            received_at: 0,
            message_id: Some(format!("{}@example.com", new_id())),
            dedup: None,
            size: 20,
            state: MessageState::Queued,
            policy: None,
            client: None,
            auth: None,
            audience: Default::default(),
        },
        body: b"Subject: hi\r\n\r\nhi\r\n".to_vec(),
    };
    store.accept(vec![post]).await.unwrap();
    let job = Job {
        post_id: "post-1".into(),
        list: list.key(),
        seq: 0,
        verp_percent: 100,
        max_rcpt_per_txn: 100,
        chunks: 0,
        chunks_done: 0,
        recipients: 0,
        delivered: 0,
        refused: 0,
        created_at: 0,
    };
    (site, store, job)
}

/// The store opened again as after a crash of its process: sled once the
/// dropped handle has let go of its directory, PostgreSQL as a new host.
async fn reopen(site: &Site, store: Arc<dyn Store>) -> Arc<dyn Store> {
    drop(store);
    if site.db.is_some() {
        return site.open().await;
    }
    for _ in 0..50 {
        if let Ok(s) = SledStore::open(site.dir.path()) {
            return Arc::new(s);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the store reopens once the first handle is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_workers_never_share_a_chunk() {
    let (site, store, job) = store_with_job(40).await;
    assert_eq!(job.chunks, 40);
    // On PostgreSQL, half the workers are on a second host.
    let other = match site.db {
        Some(_) => site.open().await,
        None => store.clone(),
    };
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = if w % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let mut mine = Vec::new();
            while let Some(claim) = store.claim_chunk(&owner, 60_000).await.unwrap() {
                mine.push(claim.chunk.index);
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for index in t.await.unwrap() {
            total += 1;
            assert!(seen.insert(index), "chunk {index} was claimed twice");
        }
    }
    assert_eq!(total, 40, "every chunk claimed exactly once");
    assert!(store.claim_chunk("late", 60_000).await.unwrap().is_none());
}

#[tokio::test]
async fn expired_lease_is_taken_over_and_late_writes_are_refused() {
    let (_dir, store, _job) = store_with_job(1).await;
    let first = store.claim_chunk("old", 100).await.unwrap().unwrap();
    assert!(!first.takeover);
    // Live lease: nobody else gets it.
    assert!(store.claim_chunk("new", 100).await.unwrap().is_none());
    let mut progress = first.chunk.clone();
    progress.cursor = 3;
    assert!(
        store.update_chunk("old", &progress, 100).await.unwrap(),
        "holder may write"
    );

    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let second = store.claim_chunk("new", 60_000).await.unwrap().unwrap();
    assert!(second.takeover);
    assert_eq!(second.chunk.generation, first.chunk.generation + 1);
    assert_eq!(
        second.chunk.cursor, 3,
        "the new holder resumes from the recorded progress"
    );

    // The old worker wakes up and tries to record progress and to finish.
    let mut late = progress.clone();
    late.cursor = 9;
    assert!(
        !store.update_chunk("old", &late, 100).await.unwrap(),
        "late progress refused"
    );
    assert!(
        store.complete_chunk("old", &late).await.unwrap() == Completion::LeaseLost,
        "late completion refused, and told apart from a chunk that was not the last"
    );
    let chunks = store.chunks().await.unwrap();
    assert_eq!(chunks[0].cursor, 3);
    assert_eq!(chunks[0].owner.as_deref(), Some("new"));

    // The new holder finishes: the job is done and gone.
    let done = store.complete_chunk("new", &second.chunk).await.unwrap();
    let Completion::JobDone(done) = done else {
        panic!("the last chunk's completion must finish the job, got {done:?}");
    };
    assert_eq!(done.chunks_done, 1);
    assert!(store.jobs().await.unwrap().is_empty());
    assert!(store.chunks().await.unwrap().is_empty());
}

#[tokio::test]
async fn leases_of_a_dead_process_are_released_at_start() {
    if pg::selected() {
        eprintln!("sled only: on PostgreSQL, leases_of_other_hosts_survive_a_start");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let (d, store, _job) = store_with_job(2).await;
        let claim = store.claim_chunk("dead", 3_600_000).await.unwrap().unwrap();
        // Progress written just before the process goes: in the journal (or,
        // if a checkpoint ran, in sled).
        let mut progress = claim.chunk.clone();
        progress.cursor = 7;
        assert!(store
            .update_chunk("dead", &progress, 3_600_000)
            .await
            .unwrap());
        drop(store);
        // Keep the data: move it where the second open will look.
        std::fs::rename(d.dir.path(), dir.path().join("site")).unwrap();
        std::mem::forget(d);
    }
    // The store's threads close sled shortly after the last handle is dropped.
    let mut reopened = None;
    for _ in 0..50 {
        match SledStore::open(&dir.path().join("site")) {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let store = reopened.expect("the store reopens once the first is closed");
    let a = store.claim_chunk("alive", 60_000).await.unwrap().unwrap();
    let b = store.claim_chunk("alive", 60_000).await.unwrap().unwrap();
    assert_ne!(a.chunk.index, b.chunk.index);
    let resumed = if a.takeover { &a } else { &b };
    assert_eq!(
        resumed.chunk.cursor, 7,
        "the dead process's last progress survives"
    );
    assert!(
        a.takeover || b.takeover,
        "the dead process's chunk is taken over at once"
    );
}

/// On PostgreSQL other hosts may be alive: a store that starts takes over
/// only leases that ran out.
#[tokio::test]
async fn leases_of_other_hosts_survive_a_start() {
    if !pg::selected() {
        eprintln!("PostgreSQL only: on sled, leases_of_a_dead_process_are_released_at_start");
        return;
    }
    let (site, store, _job) = store_with_job(2).await;
    let held = store
        .claim_chunk("alive-elsewhere", 3_600_000)
        .await
        .unwrap()
        .unwrap();
    let starting = site.open().await;
    let mine = starting
        .claim_chunk("new-host", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(mine.chunk.index, held.chunk.index);
    assert!(!mine.takeover);
    assert!(
        starting
            .claim_chunk("new-host", 60_000)
            .await
            .unwrap()
            .is_none(),
        "a live lease of another host is not taken"
    );
    assert!(store
        .update_chunk("alive-elsewhere", &held.chunk, 60_000)
        .await
        .unwrap());
}

/// A job planned in steps: no worker claims a chunk of a draft, the seal
/// makes them all claimable at once with the list's next post counter, and
/// a second planner cannot begin a post while the first's draft is live.
#[tokio::test]
async fn a_draft_job_is_claimable_only_once_sealed() {
    let (_site, store, job) = store_with_post().await;
    store.begin_job(&job, "planner-a", 60_000).await.unwrap();
    store
        .add_chunks("post-1", "planner-a", members(2), 60_000)
        .await
        .unwrap();
    assert!(
        matches!(
            store.begin_job(&job, "planner-b", 60_000).await,
            Err(StoreError::Exists(_))
        ),
        "a live draft is not planned twice"
    );
    assert!(matches!(
        store
            .add_chunks("post-1", "planner-b", members(1), 60_000)
            .await,
        Err(StoreError::Exists(_))
    ));
    store
        .add_chunks("post-1", "planner-a", members(1), 60_000)
        .await
        .unwrap();
    assert!(store.claim_chunk("w", 60_000).await.unwrap().is_none());
    assert!(
        store.jobs().await.unwrap().is_empty(),
        "a draft is no job yet"
    );
    assert!(store.chunks().await.unwrap().is_empty());

    let sealed = store.seal_job("post-1", "planner-a").await.unwrap();
    assert_eq!((sealed.chunks, sealed.recipients, sealed.seq), (3, 30, 0));
    let mut claimed = Vec::new();
    while let Some(c) = store.claim_chunk("w", 60_000).await.unwrap() {
        claimed.push(c.chunk.index);
        assert_eq!(
            store
                .chunk_members("post-1", c.chunk.index)
                .await
                .unwrap()
                .len(),
            10
        );
    }
    claimed.sort();
    assert_eq!(
        claimed,
        vec![0, 1, 2],
        "every chunk once, numbered in order"
    );
    assert!(matches!(
        store.seal_job("post-1", "planner-a").await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.begin_job(&job, "planner-b", 60_000).await,
        Err(StoreError::Exists(_))
    ));
}

/// A planner that dies mid-planning leaves no partial job: on sled the
/// draft is discarded at the next open, on PostgreSQL another host takes it
/// over once its lease ran out (its chunks go); the post is then planned
/// whole, the post counter taken once, and the dead planner's late writes
/// are refused.
#[tokio::test]
async fn a_crash_mid_planning_leaves_no_partial_job_and_the_post_is_planned_again() {
    let (site, store, job) = store_with_post().await;
    store.begin_job(&job, "dead-planner", 50).await.unwrap();
    store
        .add_chunks("post-1", "dead-planner", members(4), 50)
        .await
        .unwrap();
    let store = reopen(&site, store).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(store.jobs().await.unwrap().is_empty());
    assert!(store.chunks().await.unwrap().is_empty());
    assert!(store.claim_chunk("w", 60_000).await.unwrap().is_none());
    let unplanned = store.unplanned_posts().await.unwrap();
    assert_eq!(
        unplanned.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec!["post-1"],
        "the half-planned post is planned again"
    );

    store.begin_job(&job, "planner-b", 60_000).await.unwrap();
    // The dead planner's process was only paused (PostgreSQL): its late
    // writes are refused.
    assert!(matches!(
        store
            .add_chunks("post-1", "dead-planner", members(1), 60_000)
            .await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.seal_job("post-1", "dead-planner").await,
        Err(StoreError::Exists(_))
    ));
    store
        .add_chunks("post-1", "planner-b", members(2), 60_000)
        .await
        .unwrap();
    let job = store.seal_job("post-1", "planner-b").await.unwrap();
    assert_eq!(
        (job.chunks, job.recipients),
        (2, 20),
        "no chunk of the dead draft"
    );
    assert_eq!(job.seq, 0, "the post counter is taken once, at the seal");
    let mut claimed = 0;
    while let Some(c) = store.claim_chunk("w", 60_000).await.unwrap() {
        assert!(c.chunk.index < 2);
        claimed += 1;
    }
    assert_eq!(claimed, 2);
}

/// A planner retrying after an error (a store call failed mid-planning)
/// begins its own draft afresh at once: the chunks it wrote before go.
#[tokio::test]
async fn a_planner_retrying_its_own_draft_starts_it_afresh() {
    let (_site, store, job) = store_with_post().await;
    store.begin_job(&job, "planner", 60_000).await.unwrap();
    store
        .add_chunks("post-1", "planner", members(3), 60_000)
        .await
        .unwrap();
    store.begin_job(&job, "planner", 60_000).await.unwrap();
    store
        .add_chunks("post-1", "planner", members(1), 60_000)
        .await
        .unwrap();
    let job = store.seal_job("post-1", "planner").await.unwrap();
    assert_eq!((job.chunks, job.recipients), (1, 10));
    assert_eq!(store.chunks().await.unwrap().len(), 1);
}

/// What a post is planned over, page by page: members with delivery on who
/// had joined when it arrived, grouped by domain, every one once whatever
/// the page size, with pages bounded even where the filter drops members.
#[tokio::test]
async fn delivery_pages_walk_the_recipients_in_planning_order() {
    let (_site, store, job) = store_with_post().await;
    let mut all = Vec::new();
    for d in ["b.org", "a.org", "c.org"] {
        for i in 0..7 {
            let mut m = Member::new(Address::parse(&format!("u{i}@{d}")).unwrap());
            m.added_at = 100;
            m.delivery_enabled = i % 3 != 0;
            if d == "c.org" {
                m.added_at = 300; // joined after the post
            }
            all.push(m);
        }
    }
    store.add_members(&job.list, &all).await.unwrap();
    let expected: Vec<String> = ["a.org", "b.org"]
        .iter()
        .flat_map(|d| [1, 2, 4, 5].map(|i| format!("u{i}@{d}")))
        .collect();
    for limit in [1, 2, 3, 7, 100] {
        let (mut got, mut after, mut pages) = (Vec::new(), None::<String>, 0);
        loop {
            let page = store
                .delivery_page(&job.list, 200, after.as_deref(), limit)
                .await
                .unwrap();
            assert!(page.addresses.len() <= limit);
            got.extend(page.addresses);
            pages += 1;
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(got, expected, "page size {limit}");
        assert!(pages >= 21 / limit, "pages count members read, not kept");
    }
    assert_eq!(
        store.delivery_addresses(&job.list, 200).await.unwrap(),
        expected
    );
}
