//! A host restarted on the same data dir releases the chunk leases of its
//! previous run at once, whatever `hostname` says now: the host-id in the
//! data dir alone identifies the host. On PostgreSQL, where leases survive
//! a restart (other hosts may be alive), a stale lease would otherwise hold
//! its chunk for the whole lease.

mod support;

use std::time::{Duration, Instant};

use support::lmtp::lmtp_post;
use support::pg;
use support::ports;
use support::server::Listrelay;
use support::sink::{copies, Sink};

const LIST: &str = "dev@lists.example.org";

/// Chunks a previous process holds under a lease (owner contains `:PID:`).
fn leased_by(lr: &Listrelay, pid: u32) -> usize {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_restarted_under_another_hostname_releases_its_leases_at_once() {
    if !pg::required("a_host_restarted_under_another_hostname_releases_its_leases_at_once") {
        return;
    }
    let lease_secs = 60;
    let sink = Sink::builder().start().await.unwrap();
    let extra = format!(
        "[fanout]\nworkers = 2\nchunk_size = 100\nlease_secs = {lease_secs}\n\
         poll_interval_ms = 100\nmta_backoff_max_secs = 1\n"
    );
    let mut lr = Listrelay::on_postgres(ports::free_port(), sink.port(), &extra);
    let all: Vec<String> = (0..3000)
        .map(|i| format!("user{i}@d{}.example.net", i % 30))
        .collect();
    lr.open_list(LIST, &all, &[("max_rcpt_per_txn", "10")]);
    lr.start();
    let post = "From: poster@example.com\r\nTo: dev@lists.example.org\r\nSubject: restart\r\n\
                Message-ID: <restart@example.com>\r\n\r\nHello list.\r\n";
    assert_eq!(
        lmtp_post(lr.lmtp_port, LIST, post.as_bytes()).await.code,
        250
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.rcpt_count() == 0 {
        assert!(Instant::now() < deadline, "no delivery\n{}", lr.log_text());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = lr.pid().unwrap();
    lr.kill9();
    assert!(leased_by(&lr, pid) > 0, "the killed run held chunks");

    // Same data dir, another host name.
    let config = std::fs::read_to_string(&lr.config).unwrap();
    std::fs::write(
        &lr.config,
        config.replace(
            "hostname = \"lists.example.org\"",
            "hostname = \"mx2.example.org\"",
        ),
    )
    .unwrap();
    let restarted = Instant::now();
    lr.start();
    let bound = Duration::from_secs(40);
    let done = sink
        .wait_until(bound, |_| copies(&sink.records()).len() >= all.len())
        .await;
    assert!(
        done.is_ok(),
        "{} of {} members reached {:?} after the restart (lease {lease_secs} s)\n{}",
        copies(&sink.records()).len(),
        all.len(),
        restarted.elapsed(),
        lr.log_text()
    );
    assert!(
        lr.log_text()
            .contains("released the chunk leases of this host's previous run"),
        "{}",
        lr.log_text()
    );
    eprintln!(
        "lease release: all {} members reached {:?} after a restart under another hostname \
         (lease {lease_secs} s)",
        all.len(),
        restarted.elapsed()
    );
    lr.stop();
}
