//! Several `listrelay serve` hosts sharing one real PostgreSQL database. Each
//! host re-injects into its own counting sink, so the sinks tell which host
//! delivered what.
//!
//! Needs PostgreSQL (127.0.0.1:5432 or `LISTRELAY_TEST_PG`); scripts/test
//! starts one. Without one these tests skip with a message, except in CI
//! (`CI=true`), where they fail.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::lmtp::lmtp_post;
use support::pg;
use support::ports;
use support::server::Listrelay;
use support::sink::{copies, Sink};

const LIST: &str = "dev@lists.example.org";

/// scripts/test runs the suite twice (sled, then PostgreSQL); these tests use
/// PostgreSQL either way, so its second pass sets this to run them once.
fn wanted(test: &str) -> bool {
    if std::env::var("LISTRELAY_MULTIHOST_DONE").is_ok_and(|v| v == "1") {
        eprintln!("{test}: already ran in this run's first pass");
        return false;
    }
    pg::required(test)
}

fn members(n: usize, domains: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("user{i}@d{}.example.net", i % domains))
        .collect()
}

async fn lmtp_post_code(port: u16, data: &[u8]) -> u16 {
    lmtp_post(port, LIST, data).await.code
}

fn post(subject: &str, extra_header: &str) -> Vec<u8> {
    format!(
        "{extra_header}From: poster@example.com\r\nTo: {LIST}\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}.{}@example.com>\r\n\r\nHello list.\r\n",
        std::process::id()
    )
    .into_bytes()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes, yielding to
/// the runtime in between (the sinks run on it: a blocking wait would stall
/// the SMTP replies the hosts are waiting for).
async fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log without terminal colours.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn fanout_config(workers: usize, chunk_size: usize, lease_secs: u64) -> String {
    format!(
        "[fanout]\nworkers = {workers}\nchunk_size = {chunk_size}\nlease_secs = {lease_secs}\n\
         poll_interval_ms = 100\nmta_backoff_max_secs = 1\n"
    )
}

/// Two hosts of one site on a fresh database, each with its own sink.
async fn two_hosts(extra: &str) -> (Listrelay, Sink, Listrelay, Sink) {
    let sink_a = Sink::builder().start().await.unwrap();
    let sink_b = Sink::builder().start().await.unwrap();
    let a = Listrelay::on_postgres(ports::free_port(), sink_a.port(), extra);
    let b = Listrelay::sharing(&a, ports::free_port(), sink_b.port(), extra);
    (a, sink_a, b, sink_b)
}

fn owners_of(lr: &Listrelay, pid: u32) -> usize {
    let q = lr.json(&["queue"]);
    q["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["owner"]
                .as_str()
                .is_some_and(|o| o.contains(&format!(":{pid}:")))
        })
        .count()
}

fn queue_empty(lr: &Listrelay) -> bool {
    let q = lr.json(&["queue"]);
    q["jobs"].as_array().is_some_and(Vec::is_empty)
        && q["chunks"].as_array().is_some_and(Vec::is_empty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_one_host_mid_fanout_the_other_finishes() {
    if !wanted("kill9_one_host_mid_fanout_the_other_finishes") {
        return;
    }
    let (workers, chunk_size, lease_secs, poll_ms, max_rcpt) = (4, 250, 2, 100, 20);
    let (mut a, sink_a, mut b, sink_b) =
        two_hosts(&fanout_config(workers, chunk_size, lease_secs)).await;
    let all = members(5000, 100);
    let max = max_rcpt.to_string();
    a.open_list(
        LIST,
        &all,
        &[("verp_percent", "30"), ("max_rcpt_per_txn", &max)],
    );
    a.start();
    b.start();
    assert_eq!(lmtp_post_code(a.lmtp_port, &post("shared", "")).await, 250);

    let union = |a: &Sink, b: &Sink| {
        let mut m = copies(&a.records());
        for (k, v) in copies(&b.records()) {
            *m.entry(k).or_default() += v;
        }
        m
    };
    // Both hosts work on the job; kill A once a third of the members got it
    // and A has delivered something.
    let deadline = Instant::now() + Duration::from_secs(60);
    while union(&sink_a, &sink_b).len() < 1500 || sink_a.rcpt_count() == 0 {
        assert!(
            Instant::now() < deadline,
            "fan-out stalled\n{}\n{}",
            a.log_text(),
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let a_pid = a.pid().unwrap();
    a.kill9();
    let killed = Instant::now();
    let a_before_kill = sink_a.rcpt_count();

    // B takes over A's chunks once their leases run out: within the lease
    // and one poll (plus scheduling slack).
    let bound = Duration::from_secs(lease_secs) + Duration::from_millis(poll_ms);
    let taken = poll_until(bound + Duration::from_secs(2), || owners_of(&b, a_pid) == 0).await;
    let takeover = killed.elapsed();
    assert!(taken, "A's chunks still leased after {takeover:?}");
    let done = sink_b
        .wait_until(Duration::from_secs(60), |_| {
            union(&sink_a, &sink_b).len() >= all.len()
        })
        .await;
    assert!(
        done.is_ok(),
        "{} of {} members reached\n{}",
        union(&sink_a, &sink_b).len(),
        all.len(),
        b.log_text()
    );
    let finished = killed.elapsed();
    assert!(
        poll_until(Duration::from_secs(10), || queue_empty(&b)).await,
        "the job is done"
    );
    assert!(b
        .log_text()
        .contains("took over a chunk whose lease expired"));

    // Every member got at least one copy.
    let counts = union(&sink_a, &sink_b);
    assert!(all.iter().all(|m| counts.contains_key(m)));
    // No chunk was delivered by two live workers at once: A's and B's sinks
    // overlap only in chunks A held when it died (at most `workers`), and
    // there only in A's in-flight transactions.
    let by_a = copies(&sink_a.records());
    let by_b = copies(&sink_b.records());
    assert!(by_a.values().all(|&n| n == 1), "A delivered nothing twice");
    assert!(by_b.values().all(|&n| n == 1), "B delivered nothing twice");
    let mut sorted = all.clone();
    sorted.sort_by(|x, y| {
        let (xl, xd) = x.rsplit_once('@').unwrap();
        let (yl, yd) = y.rsplit_once('@').unwrap();
        (xd, xl).cmp(&(yd, yl))
    });
    let chunks = listrelay::fanout::plan::chunks(sorted, chunk_size);
    let mut shared_chunks = 0;
    let mut duplicates = 0;
    for chunk in &chunks {
        let in_a: HashSet<_> = chunk.iter().filter(|m| by_a.contains_key(*m)).collect();
        let in_b: HashSet<_> = chunk.iter().filter(|m| by_b.contains_key(*m)).collect();
        if !in_a.is_empty() && !in_b.is_empty() {
            shared_chunks += 1;
            duplicates += in_a.intersection(&in_b).count();
        }
    }
    assert!(
        shared_chunks <= workers,
        "{shared_chunks} chunks delivered by both hosts (A had {workers} workers)"
    );
    assert!(
        duplicates <= workers * max_rcpt,
        "{duplicates} duplicates over the bound {}",
        workers * max_rcpt
    );
    eprintln!(
        "multihost kill9: A delivered {a_before_kill} before the kill; A's chunks taken over \
         after {takeover:?} (bound {bound:?}); all {} members reached {finished:?} after the \
         kill; {shared_chunks} chunks shared, {duplicates} duplicate copies",
        all.len()
    );
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstopped_host_past_its_lease_has_its_late_writes_refused() {
    if !wanted("sigstopped_host_past_its_lease_has_its_late_writes_refused") {
        return;
    }
    let (workers, max_rcpt) = (2, 10);
    let (mut a, sink_a, mut b, sink_b) = two_hosts(&fanout_config(workers, 100, 1)).await;
    let all = members(3000, 60);
    let max = max_rcpt.to_string();
    a.open_list(
        LIST,
        &all,
        &[("verp_percent", "0"), ("max_rcpt_per_txn", &max)],
    );
    a.start();
    assert_eq!(lmtp_post_code(a.lmtp_port, &post("paused", "")).await, 250);
    // Stop A in the middle of its second chunks (each worker has sent about
    // 125 of a chunk's 100 + 100 members), not at the boundary between two.
    sink_a
        .wait_until(Duration::from_secs(60), |s| s.rcpt_count() >= 250)
        .await
        .unwrap();
    let pid = a.pid().unwrap() as i32;
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // What A wrote before the stop may still sit in the sink's socket: let
    // the sink read it, so it does not count as written after the wake-up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped_at = sink_a.rcpt_count();
    b.start();
    let union = |a: &Sink, b: &Sink| {
        let mut m: HashSet<String> = copies(&a.records()).into_keys().collect();
        m.extend(copies(&b.records()).into_keys());
        m.len()
    };
    let done = sink_b
        .wait_until(Duration::from_secs(60), |_| {
            union(&sink_a, &sink_b) >= all.len()
        })
        .await;
    let finished = poll_until(Duration::from_secs(10), || queue_empty(&b)).await;
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        done.is_ok() && finished,
        "B did not finish while A was stopped\n{}",
        b.log_text()
    );
    // A wakes up: it may finish the one transaction each worker had started,
    // then its writes are refused: fenced by the generation (a progress
    // write or a completion), or, when it was paused inside a transaction,
    // PostgreSQL already ended that session
    // (idle_in_transaction_session_timeout) and rolled it back; a worker
    // stopped right after a claim finds its chunk gone (B completed it).
    let fenced = poll_until(Duration::from_secs(20), || {
        let log = a.log_text();
        log.contains("lease lost; another worker has the chunk")
            || log.contains("completion refused: the chunk's lease was taken over")
            // Any store error ending A's chunk after the pause: the session
            // PostgreSQL closed, the chunk B completed, a statement cancelled.
            || log.contains("chunk failed")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = sink_a.rcpt_count() - stopped_at;
    assert!(fenced, "A's late writes were not refused\n{}", a.log_text());
    assert!(
        late <= workers * max_rcpt,
        "A delivered {late} copies after it woke (bound {})",
        workers * max_rcpt
    );
    // Nothing A wrote after its lease was lost reopened the job.
    assert!(queue_empty(&b), "the job stays done");
    eprintln!("sigstop: A woke and delivered {late} in-flight copies; its writes were refused");
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_post_to_both_hosts_at_once_is_accepted_once() {
    if !wanted("same_post_to_both_hosts_at_once_is_accepted_once") {
        return;
    }
    let (mut a, sink_a, mut b, sink_b) = two_hosts(&fanout_config(2, 100, 10)).await;
    a.cli_ok(&["list", "create", LIST]);
    a.cli_ok(&["list", "set", LIST, "nonmember_action", "accept"]);
    let all = members(5, 5);
    a.import(LIST, &all);
    a.start();
    b.start();
    let rounds = 10;
    for round in 0..rounds {
        // Odd rounds: the very same bytes (one MTA re-delivering to the other
        // host). Even rounds: the same Message-ID with different trace
        // headers (two MTAs relaying one post).
        let subject = format!("twice{round}");
        let (da, db) = if round % 2 == 1 {
            (post(&subject, ""), post(&subject, ""))
        } else {
            (
                post(&subject, "Received: by mx-a.example.org\r\n"),
                post(&subject, "Received: by mx-b.example.org\r\n"),
            )
        };
        let (ra, rb) = tokio::join!(
            lmtp_post_code(a.lmtp_port, &da),
            lmtp_post_code(b.lmtp_port, &db)
        );
        assert_eq!((ra, rb), (250, 250), "round {round}");
    }
    let want = rounds * all.len();
    let done = poll_until(Duration::from_secs(30), || {
        sink_a.rcpt_count() + sink_b.rcpt_count() >= want
    })
    .await;
    assert!(done, "{}\n{}", a.log_text(), b.log_text());
    assert!(poll_until(Duration::from_secs(10), || queue_empty(&a)).await);
    // Give a second (wrong) copy time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut counts = copies(&sink_a.records());
    for (k, v) in copies(&sink_b.records()) {
        *counts.entry(k).or_default() += v;
    }
    for m in &all {
        assert_eq!(counts.get(m), Some(&rounds), "{m}: one copy per post");
    }
    let logs = plain(&format!("{}{}", a.log_text(), b.log_text()));
    let stored = logs.matches("listrelay::intake: stored ").count();
    assert_eq!(stored, rounds, "each post stored once\n{logs}");
    a.stop();
    b.stop();
}

/// bench/claims: the 10,000-member fan-out on PostgreSQL with two hosts, next
/// to one host on sled, in the same run (`--ignored`, release build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_fanout_10k_postgres_two_hosts_vs_sled() {
    if !pg::required("bench_fanout_10k") {
        return;
    }
    let all = members(10_000, 200);
    let extra = "[fanout]\nworkers = 4\nchunk_size = 1000\npoll_interval_ms = 100\n";
    let union = |a: &Sink, b: &Sink| {
        let mut m: HashSet<String> = copies(&a.records()).into_keys().collect();
        m.extend(copies(&b.records()).into_keys());
        m.len()
    };
    // One host on sled.
    let sink = Sink::builder().start().await.unwrap();
    let none = Sink::builder().start().await.unwrap();
    let mut s = Listrelay::on_sled(ports::free_port(), sink.port(), extra);
    s.cli_ok(&["list", "create", LIST]);
    s.cli_ok(&["list", "set", LIST, "nonmember_action", "accept"]);
    s.import(LIST, &all);
    s.cli_ok(&["list", "set", LIST, "verp_percent", "10"]);
    s.start();
    let t = Instant::now();
    assert_eq!(
        lmtp_post_code(s.lmtp_port, &post("bench-sled", "")).await,
        250
    );
    sink.wait_until(Duration::from_secs(300), |_| {
        union(&sink, &none) >= all.len()
    })
    .await
    .unwrap();
    let sled = t.elapsed();
    s.stop();
    // Two hosts on PostgreSQL.
    let (mut a, sink_a, mut b, sink_b) = two_hosts(extra).await;
    a.cli_ok(&["list", "create", LIST]);
    a.cli_ok(&["list", "set", LIST, "nonmember_action", "accept"]);
    a.import(LIST, &all);
    a.cli_ok(&["list", "set", LIST, "verp_percent", "10"]);
    a.start();
    b.start();
    let t = Instant::now();
    assert_eq!(
        lmtp_post_code(a.lmtp_port, &post("bench-pg", "")).await,
        250
    );
    sink_a
        .wait_until(Duration::from_secs(300), |_| {
            union(&sink_a, &sink_b) >= all.len()
        })
        .await
        .unwrap();
    let pg2 = t.elapsed();
    eprintln!(
        "fanout 10000 members, 10% VERP, chunk 1000, 4 workers/host: sled 1 host {:.2}s \
         ({:.0}/s); postgres 2 hosts {:.2}s ({:.0}/s; A {} B {} copies)",
        sled.as_secs_f64(),
        all.len() as f64 / sled.as_secs_f64(),
        pg2.as_secs_f64(),
        all.len() as f64 / pg2.as_secs_f64(),
        sink_a.rcpt_count(),
        sink_b.rcpt_count()
    );
    a.stop();
    b.stop();
}
