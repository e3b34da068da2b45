//! The web at list scale (issue 13): `cargo bench --bench web`.
//! `WEB_MEMBERS` sets the list size (default 100,000); `WEB_REQUESTS` the
//! requests per route (default 200).
//!
//! Against a running `listrelay serve` (embedded store) with one list of N
//! members over 100 domains, each route asked WEB_REQUESTS times, one
//! request per connection as a browser or curl would, at pages spread over
//! the whole list:
//!
//! * the reference: the stylesheet, a trivial static route on the same
//!   listener through the same layers (session, limits);
//! * the owner's members page (50 members, each with its bounce score);
//! * the members page with a prefix search;
//! * the API's roster page (`/api/v1/lists/L/members?limit=100`).
//!
//! p50 and p99 of each, and their ratio to the reference's. Then the
//! NDJSON export of all N members: its time, the line count, and the
//! server's resident memory before and after (it must not grow with N).
//! Targets: p99 under 50 ms for both pages; the export under 2 s.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::bench::peak_rss_mib;
use support::server::Listrelay;
use support::sink::Sink;

const LIST: &str = "big@lists.example.org";
const OWNER: &str = "own@example.com";
const DOMAINS: usize = 100;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A process's current resident set (`VmRSS`) in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn address(i: usize) -> String {
    format!("member{i:07}@d{}.example.net", i % DOMAINS)
}

/// One GET on a new connection; the status and the body's length (the body
/// is read to its end: chunked bodies to their last chunk).
async fn get(port: u16, path: &str, headers: &str) -> (u16, usize) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.set_nodelay(true).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{headers}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::with_capacity(64 * 1024);
    s.read_to_end(&mut raw).await.unwrap();
    let status = std::str::from_utf8(&raw[..raw.len().min(16)])
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw.len())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Times `n` GETs of the paths `path(i)`; returns (p50, p99) in ms.
async fn timed(port: u16, n: usize, headers: &str, path: impl Fn(usize) -> String) -> (f64, f64) {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let p = path(i);
        let t0 = Instant::now();
        let (status, len) = get(port, &p, headers).await;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "GET {p}");
        assert!(len > 0);
    }
    lat.sort_by(f64::total_cmp);
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

fn cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("WEB_MEMBERS", 100_000);
    let requests = env_usize("WEB_REQUESTS", 200);
    let sink = Sink::start().await.unwrap();
    let port = support::ports::free_port();
    let mut lr = Listrelay::on_sled(
        support::ports::free_port(),
        sink.port(),
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\nbase_url = \"http://127.0.0.1:{port}/\"\n"
        ),
    );
    lr.cli_ok(&["list", "create", LIST]);
    lr.cli_ok(&["list", "set", LIST, "owners", OWNER]);
    let file = lr.path().join("members.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for i in 0..n {
            writeln!(f, "{}", address(i)).unwrap();
        }
    }
    let t0 = Instant::now();
    lr.cli_ok(&["member", "import", LIST, file.to_str().unwrap()]);
    println!(
        "web bench: {n} members imported in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let token = lr
        .cli_ok(&["token", "create", "--role", "owner", "--list", LIST])
        .lines()
        .next()
        .unwrap()
        .to_string();
    lr.start();
    let pid = lr.pid().unwrap();
    // The owner's session cookie, signed with the site's secret as a login
    // would make it (the login itself is the browser test's business).
    let secret =
        listrelay::secret::Secret::load_or_create(&lr.data().join("secret")).expect("secret");
    let session =
        listrelay::web::session::Session::new(Some(OWNER.into()), listrelay::clock::now());
    let cookie = format!("Cookie: lr_session={}\r\n", session.encode(&secret));
    let bearer = format!("Authorization: Bearer {token}\r\n");

    // Cursors spread over the list (member keys sort by domain, then local).
    let spread = |i: usize| {
        let k = address((i * 7919) % n);
        cursor(&k)
    };
    // Warm-up: the store's cache, the connections' first costs.
    timed(port, 20, "", |_| "/static/style.css".into()).await;
    timed(port, 20, &cookie, |i| {
        format!("/admin/{LIST}/members?after={}", spread(i))
    })
    .await;

    let reference = timed(port, requests, "", |_| "/static/style.css".into()).await;
    let page = timed(port, requests, &cookie, |i| {
        format!("/admin/{LIST}/members?after={}", spread(i))
    })
    .await;
    let search = timed(port, requests, &cookie, |i| {
        format!(
            "/admin/{LIST}/members?prefix=member{:03}",
            (i * 37) % (n / 10_000).max(1)
        )
    })
    .await;
    let api = timed(port, requests, &bearer, |i| {
        format!(
            "/api/v1/lists/{LIST}/members?limit=100&cursor={}",
            spread(i)
        )
    })
    .await;
    let row =
        |name: &str, (p50, p99): (f64, f64)| {
            println!(
            "{name:<34} p50 {p50:6.2} ms  p99 {p99:6.2} ms  ({:5.1}x / {:5.1}x the reference){}",
            p50 / reference.0,
            p99 / reference.1,
            if name.contains("reference") {
                String::new()
            } else {
                format!("  target p99 < 50 ms: {}", if p99 < 50.0 { "met" } else { "MISSED" })
            }
        );
        };
    println!("web bench: {n} members, {requests} requests per route, one connection each");
    row("reference (GET /static/style.css)", reference);
    row("members page (50, bounce scores)", page);
    row("members page, prefix search", search);
    row("API roster page (100)", api);

    // The streamed export: time, lines, and the server's memory.
    let rss_before = rss_mib(pid);
    let peak_before = peak_rss_mib(pid);
    let t0 = Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET /api/v1/lists/{LIST}/members/export HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{bearer}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let (mut lines, mut bytes) = (0usize, 0usize);
    let mut buf = vec![0u8; 64 * 1024];
    // Each member is one JSON object with one "address" field; a field
    // may straddle two reads, so the last bytes of each are kept.
    const FIELD: &[u8] = b"\"address\":";
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let k = s.read(&mut buf).await.unwrap();
        if k == 0 {
            break;
        }
        bytes += k;
        carry.extend_from_slice(&buf[..k]);
        lines += carry.windows(FIELD.len()).filter(|w| *w == FIELD).count();
        let keep = carry.len().min(FIELD.len() - 1);
        carry.drain(..carry.len() - keep);
    }
    let export = t0.elapsed().as_secs_f64();
    let (rss_after, peak_after) = (rss_mib(pid), peak_rss_mib(pid));
    assert_eq!(lines, n, "every member is exported");
    println!(
        "export (NDJSON, streamed)          {n} members, {:.1} MiB in {export:.2} s ({:.0}/s); target < 2 s: {}",
        bytes as f64 / 1048576.0,
        n as f64 / export,
        if export < 2.0 { "met" } else { "MISSED" }
    );
    println!(
        "server memory                      RSS {rss_before:.0} -> {rss_after:.0} MiB, peak {peak_before:.0} -> {peak_after:.0} MiB (+{:.1})",
        peak_after - peak_before
    );
    lr.stop();
    // Let the server's files go before the temp dir does.
    tokio::time::sleep(Duration::from_millis(50)).await;
}
