//! Claims on the store under test (the embedded one, or PostgreSQL with
//! `LISTRELAY_TEST_STORE=postgres`): racing workers never share a chunk, an
//! expired lease is taken over, and the old holder's late writes are refused.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use listrelay::address::{Address, Suffix};
use listrelay::model::List;
use listrelay::store::{
    new_id, Claims, Completion, Job, MessageMeta, MessageState, NewMessage, PostgresStore,
    SledStore, Store,
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
    let members = (0..chunks)
        .map(|c| (0..10).map(|i| format!("m{i}@d{c}.org")).collect())
        .collect();
    let job = store.create_job(job, members).await.unwrap();
    (site, store, job)
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
