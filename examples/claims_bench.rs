//! Claims per second on a store: W worker tasks claim and complete chunks of
//! one job until none is left (each claim is followed by its completion, as a
//! worker does). Usage:
//!   claims_bench sled|postgres://… WORKERS [CHUNKS]
//! bench/claims runs it for 1, 4 and 16 workers on both stores.

use std::sync::Arc;
use std::time::Instant;

use listrelay::address::{Address, Suffix};
use listrelay::model::List;
use listrelay::store::{
    Job, MessageMeta, MessageState, NewMessage, PostgresStore, SledStore, Store,
};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = args.get(1).cloned().unwrap_or_else(|| "sled".into());
    let workers: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4);
    let chunks: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = if target == "sled" {
        Arc::new(SledStore::open(dir.path()).unwrap())
    } else {
        Arc::new(PostgresStore::open(&target).await.unwrap())
    };
    let list = List::new(Address::parse(&format!("bench{}@lists.example.org", rand_id())).unwrap());
    store.create_list(&list).await.unwrap();
    let id = listrelay::store::new_id();
    store
        .accept(vec![NewMessage {
            meta: MessageMeta {
                id: id.clone(),
                list: list.key(),
                suffix: Suffix::Post,
                tag: None,
                mail_from: "p@example.com".into(),
                rcpt: list.key(),
                received_at: 0,
                message_id: None,
                dedup: None,
                size: 4,
                state: MessageState::Queued,
                policy: None,
                client: None,
                auth: None,
                audience: Default::default(),
            },
            body: b"x\r\n\r\n".to_vec(),
        }])
        .await
        .unwrap();
    let job = Job {
        post_id: id,
        list: list.key(),
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
    let members = (0..chunks).map(|c| vec![format!("m@d{c}.org")]).collect();
    store.create_job(job, members).await.unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("bench:w{w}");
            let mut n = 0u64;
            while let Some(c) = store.claim_chunk(&owner, 60_000).await.unwrap() {
                store.complete_chunk(&owner, &c.chunk).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(total as usize, chunks);
    let kind = if target == "sled" { "sled" } else { "postgres" };
    println!(
        "claims {kind} workers={workers}: {total} claims+completions in {secs:.2}s = {:.0}/s",
        total as f64 / secs
    );
}

fn rand_id() -> u32 {
    std::process::id()
}
