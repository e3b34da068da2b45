//! Fan-out benchmark (`cargo bench --bench fanout`; needs postfix's
//! smtp-source, and postfix itself for the XVERP comparison).
//!
//! A 10 KiB post to N members over 100 domains, at verp_percent 100 and 0, from
//! the LMTP 250 until a counting SMTP sink has every recipient, next to
//! Postfix's smtp-source sending the same envelope shapes (single-recipient
//! transactions, or 100-recipient batches) to the same sink with as many
//! parallel sessions (the machine's limit), measured in the same run; the ratio;
//! and listrelay's peak RSS. Then the same post through a real Postfix with and
//! without XVERP. Set FANOUT_SIZES=10000,100000 to choose the sizes.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::bench::{peak_rss_mib, post_10k, smtp_source};
use support::lmtp::lmtp_post;
use support::ports;
use support::postfix::Postfix;
use support::server::Listrelay;
use support::sink::Sink;

const LIST: &str = "dev@lists.example.org";
const DOMAINS: usize = 100;
/// Parallel SMTP sessions, for smtp-source and for listrelay (workers and
/// pooled connections); FANOUT_SESSIONS overrides.
fn sessions() -> usize {
    std::env::var("FANOUT_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}
const BATCH: usize = 100;

async fn post_lmtp(port: u16) -> Instant {
    let r = lmtp_post(port, LIST, &post_10k(LIST, "bench")).await;
    assert_eq!(r.code, 250, "{}", r.text());
    Instant::now()
}

fn site(smtp_port: u16, n: usize, verp: u8, xverp: bool, lmtp_port: u16) -> Listrelay {
    let lr = Listrelay::new(
        lmtp_port,
        smtp_port,
        &format!(
            "[fanout]\nworkers = {}\npoll_interval_ms = 100\nxverp = {xverp}\n",
            sessions()
        ),
    );
    let cfg = std::fs::read_to_string(&lr.config).unwrap().replace(
        "max_connections = 8",
        &format!("max_connections = {}", sessions()),
    );
    std::fs::write(&lr.config, cfg).unwrap();
    lr.cli_ok(&["list", "create", LIST]);
    lr.cli_ok(&["list", "set", LIST, "nonmember_action", "accept"]);
    let members: Vec<String> = (0..n)
        .map(|i| format!("m{i}@d{}.example.net", i % DOMAINS))
        .collect();
    lr.import(LIST, &members);
    lr.cli_ok(&["list", "set", LIST, "verp_percent", &verp.to_string()]);
    lr
}

/// listrelay fanning one post out to `n` members; recipients/s and peak RSS.
async fn listrelay(sink: &Sink, n: usize, verp: u8) -> (f64, f64) {
    let mut lr = site(sink.port(), n, verp, false, ports::free_port());
    lr.start();
    let before = sink.rcpt_count();
    let t0 = post_lmtp(lr.lmtp_port).await;
    sink.wait_rcpts(before + n, Duration::from_secs(900))
        .await
        .unwrap();
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let rss = lr.pid().map_or(0.0, peak_rss_mib);
    lr.stop();
    (rate, rss)
}

/// The same post through a real Postfix, XVERP off and on (100 % VERP).
async fn through_postfix(n: usize, xverp: bool) -> Option<f64> {
    let sink = Sink::builder().start().await.ok()?;
    let lmtp_port = ports::free_port();
    let pf = Postfix::start_for_list(lmtp_port, sink.port(), "dev")
        .await
        .ok()?;
    let mut lr = site(pf.reinject_port, n, 100, xverp, lmtp_port);
    lr.start();
    let t0 = post_lmtp(lr.lmtp_port).await;
    sink.wait_rcpts(n, Duration::from_secs(900)).await.ok()?;
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    lr.stop();
    drop(pf);
    Some(rate)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("FANOUT_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let sink = Sink::builder().start().await.unwrap();
    println!(
        "fan-out of a 10 KiB post over {DOMAINS} domains, {} SMTP sessions, to a counting sink",
        sessions()
    );
    println!(
        "{:>8} {:>6} {:>16} {:>16} {:>7} {:>13}",
        "members", "verp", "smtp-source r/s", "listrelay r/s", "ratio", "peak RSS MiB"
    );
    // The machine is shared: interleave the two, repeat, and keep the median.
    let repeat: usize = std::env::var("FANOUT_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for &n in &sizes {
        for verp in [100u8, 0] {
            let per_txn = if verp == 100 { 1 } else { BATCH };
            let mut runs = Vec::new();
            for _ in 0..repeat {
                let limit = smtp_source(
                    &sink,
                    n,
                    per_txn,
                    sessions(),
                    "dev-bounces@lists.example.org",
                    Duration::from_secs(600),
                )
                .await;
                let (rate, rss) = listrelay(&sink, n, verp).await;
                runs.push((rate / limit, limit, rate, rss));
            }
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (ratio, limit, rate, rss) = runs[runs.len() / 2];
            let spread = format!("{:.2}-{:.2}", runs[0].0, runs[runs.len() - 1].0);
            println!("{n:>8} {verp:>5}% {limit:>16.0} {rate:>16.0} {ratio:>7.2} {rss:>13.1}   (ratios {spread})");
        }
    }
    // Postfix's own throughput bounds this path; a smaller list says enough.
    let n = sizes.first().copied().unwrap_or(10_000).min(10_000);
    println!("\nthrough a real Postfix (re-injection port -> sink), {n} members at 100 % VERP:");
    for xverp in [false, true] {
        match through_postfix(n, xverp).await {
            Some(rate) => println!(
                "  {:<38} {rate:>8.0} recipients/s",
                if xverp {
                    "XVERP (Postfix splits the envelopes)"
                } else {
                    "one transaction per member"
                }
            ),
            None => println!("  postfix not available: skipped"),
        }
    }
}
