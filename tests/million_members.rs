//! A million members in the embedded store, through the store traits:
//! import in batches of 10,000, walk the roster page by page, and read the
//! delivery addresses a post is planned over, a page at a time. Slow in a debug build; run
//! `cargo test --release --test million_members -- --ignored --nocapture`
//! for the figures (`LISTRELAY_MEMBERS` changes the count).

use std::time::Instant;

use listrelay::address::Address;
use listrelay::model::{List, Member};
use listrelay::store::{Directory, SledStore};

/// Members imported per `add_members` call, as `member import` sends them.
const BATCH: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a million members: run in release with --ignored"]
async fn a_million_members_import_page_and_plan() {
    let n: usize = std::env::var("LISTRELAY_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let list = List::new(Address::parse("big@lists.example.org").unwrap());
    store.create_list(&list).await.unwrap();
    let key = list.key();

    let start = Instant::now();
    for b in 0..n.div_ceil(BATCH) {
        let batch: Vec<Member> = (b * BATCH..((b + 1) * BATCH).min(n))
            .map(|i| {
                let a = format!("member{i}@d{}.example", i % 1000);
                Member::new(Address::parse(&a).unwrap())
            })
            .collect();
        let new = store.add_members(&key, &batch).await.unwrap();
        assert!(new.iter().all(|&n| n));
    }
    listrelay::store::Store::sync(&store).await.unwrap();
    let import = start.elapsed();
    println!("import of {n} members in batches of {BATCH}: {import:.2?}");

    let start = Instant::now();
    let (mut after, mut seen) = (None::<String>, 0usize);
    loop {
        let page = store
            .members_page(&key, after.as_deref(), 1000)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        seen += page.len();
        after = page.last().map(|m| m.address.key());
    }
    println!(
        "walked {seen} members in pages of 1,000: {:.2?}",
        start.elapsed()
    );
    assert_eq!(seen, n, "every member once");

    // What the planner reads: the delivery addresses a page at a time.
    let start = Instant::now();
    let (mut after, mut planned) = (None::<String>, 0usize);
    loop {
        let page = store
            .delivery_page(&key, u64::MAX, after.as_deref(), 10_000)
            .await
            .unwrap();
        planned += page.addresses.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    println!(
        "delivery pages for {planned} members: {:.2?}",
        start.elapsed()
    );
    assert_eq!(planned, n);
    assert_eq!(store.member_count(&key).await.unwrap(), n as u64);
    assert!(import.as_secs() < 60, "import took {import:?}");
}
