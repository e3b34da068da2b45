//! Million-member benchmark (`cargo bench --bench members`; needs postfix's
//! smtp-source for the fan-out reference). `MEMBERS_N` sets the list size
//! (default 1,000,000); `MEMBERS_STORES=sled,postgres` the stores (PostgreSQL
//! is skipped when unreachable).
//!
//! Per store, against a running server: `member import` of N addresses over
//! 100 domains (time, against the 60 s target), then `member export`
//! of them streamed through the admin socket (time, and the server's peak RSS
//! before and after: it must not grow with the list). On the first store
//! only: the LMTP ack latency (p50/p99) of small posts while a post to the N
//! members is planned, next to the same probe on the idle server in the same
//! run; the fan-out of that post at 100 % VERP to a counting sink next to
//! Postfix's smtp-source sending N single-recipient transactions to the same
//! sink; and the server's peak RSS at the end.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::bench::{peak_rss_mib, post_10k, smtp_source};
use support::lmtp::lmtp_post;
use support::pg;
use support::ports;
use support::server::Listrelay;
use support::sink::Sink;

const LIST: &str = "big@lists.example.org";
/// A list without members: posts to it are accepted and finished at once, so
/// their ack latency is intake's alone.
const PROBE: &str = "probe@lists.example.org";
const DOMAINS: usize = 100;
const SESSIONS: usize = 8;

/// The import file: N addresses over 100 domains.
fn members_file(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("members.txt");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..n {
        writeln!(f, "member{i:07}@d{}.example.net", i % DOMAINS).unwrap();
    }
    f.flush().unwrap();
    path
}

fn site(store: &str, smtp_port: u16) -> Listrelay {
    let extra = format!("[fanout]\nworkers = {SESSIONS}\npoll_interval_ms = 100\n");
    let lr = match store {
        "postgres" => Listrelay::on_postgres(ports::free_port(), smtp_port, &extra),
        _ => Listrelay::on_sled(ports::free_port(), smtp_port, &extra),
    };
    for list in [LIST, PROBE] {
        lr.cli_ok(&["list", "create", list]);
        lr.cli_ok(&["list", "set", list, "nonmember_action", "accept"]);
    }
    lr.cli_ok(&["list", "set", LIST, "verp_percent", "100"]);
    lr
}

/// Ack latencies (ms) of probe posts sent one after another until `until`
/// says stop (checked between posts), at least `min` of them.
async fn probe(port: u16, min: usize, mut until: impl FnMut() -> bool) -> Vec<f64> {
    let mut lat = Vec::new();
    while lat.len() < min || !until() {
        let t0 = Instant::now();
        let r = lmtp_post(port, PROBE, &post_10k(LIST, "probe")).await;
        assert_eq!(r.code, 250, "{}", r.text());
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lat.sort_by(f64::total_cmp);
    lat
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Import, then stream-list, on one store; with `fanout`, the planning and
/// fan-out figures too.
async fn run(store: &str, n: usize, sink: &Sink, fanout: bool) {
    let mut lr = site(store, sink.port());
    let file = members_file(lr.path(), n);
    lr.start();
    let pid = lr.pid().unwrap();
    let idle = peak_rss_mib(pid);

    let t0 = Instant::now();
    lr.cli_ok(&["member", "import", LIST, file.to_str().unwrap()]);
    let import = t0.elapsed().as_secs_f64();
    let after_import = peak_rss_mib(pid);
    println!(
        "{store:>8} import      {n} members in {import:.1} s ({:.0}/s; target 60 s: {:.2}x of the budget); server peak RSS {idle:.0} -> {after_import:.0} MiB",
        n as f64 / import,
        import / 60.0
    );

    // MEMBERS_LIST=0 skips the listing: until the backends read pages by
    // range, each page reads the whole list, which is quadratic at 1,000,000.
    if std::env::var("MEMBERS_LIST").is_ok_and(|v| v == "0") {
        println!("{store:>8} list        skipped (MEMBERS_LIST=0)");
    } else {
        list(&lr, store, n, pid, after_import);
    }
    if fanout {
        plan_and_fan_out(&mut lr, store, n, sink, pid).await;
    }
    lr.stop();
}

/// `member export` through the server: time and the server's peak RSS.
fn list(lr: &Listrelay, store: &str, n: usize, pid: u32, after_import: f64) {
    let out = lr.path().join("export.txt");
    let t0 = Instant::now();
    lr.cli_ok(&["member", "export", LIST, out.to_str().unwrap()]);
    let list = t0.elapsed().as_secs_f64();
    let after_list = peak_rss_mib(pid);
    let listed = std::fs::read_to_string(&out).unwrap().lines().count();
    assert_eq!(listed, n, "every member is listed");
    println!(
        "{store:>8} list        {n} members in {list:.1} s ({:.0}/s); server peak RSS {after_import:.0} -> {after_list:.0} MiB (+{:.1})",
        n as f64 / list,
        after_list - after_import
    );
}

/// LMTP latency while a post to the `n` members is planned, then its fan-out
/// next to smtp-source, and the server's peak RSS.
async fn plan_and_fan_out(lr: &mut Listrelay, store: &str, n: usize, sink: &Sink, pid: u32) {
    let idle_lat = probe(lr.lmtp_port, 100, || true).await;
    let before = sink.rcpt_count();
    let big = lmtp_post(lr.lmtp_port, LIST, &post_10k(LIST, "big")).await;
    assert_eq!(big.code, 250, "{}", big.text());
    let t0 = Instant::now();
    // The log is coloured: look for the words, not `recipients=N`.
    let count = n.to_string();
    let log = lr.log.clone();
    let planned = move || {
        std::fs::read_to_string(&log).is_ok_and(|l| {
            l.lines()
                .any(|l| l.contains("job created") && l.contains(LIST) && l.contains(&count))
        })
    };
    let plan_lat = probe(lr.lmtp_port, 20, planned).await;
    let plan = t0.elapsed().as_secs_f64();
    println!(
        "{store:>8} planning    {plan:.1} s; LMTP ack p50/p99 {:.1}/{:.1} ms over {} probes (idle server: {:.1}/{:.1} ms); target p99 < 100 ms; server peak RSS {:.0} MiB",
        pct(&plan_lat, 0.5),
        pct(&plan_lat, 0.99),
        plan_lat.len(),
        pct(&idle_lat, 0.5),
        pct(&idle_lat, 0.99),
        peak_rss_mib(pid)
    );
    sink.wait_rcpts(before + n, Duration::from_secs(3600))
        .await
        .unwrap();
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let peak = peak_rss_mib(pid);
    lr.stop();
    let limit = smtp_source(
        sink,
        n,
        1,
        SESSIONS,
        "big-bounces@lists.example.org",
        Duration::from_secs(3600),
    )
    .await;
    println!(
        "{store:>8} fan-out     100 % VERP {rate:.0} r/s vs smtp-source {limit:.0} r/s: {:.2}x (target >= 0.8); server peak RSS {peak:.0} MiB (target < 128)",
        rate / limit
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("MEMBERS_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let stores = std::env::var("MEMBERS_STORES").unwrap_or_else(|_| "sled,postgres".into());
    let sink = Sink::builder().start().await.unwrap();
    println!("{n} members over {DOMAINS} domains, 10 KiB post, {SESSIONS} SMTP sessions");
    for (i, store) in stores.split(',').map(str::trim).enumerate() {
        if store == "postgres" {
            if let Err(e) = pg::reachable() {
                println!("postgres skipped: {e}");
                continue;
            }
        }
        run(store, n, &sink, i == 0).await;
    }
}
