//! What the benchmarks (benches/*.rs) share: the 10 KiB post they send, the
//! peak RSS they read, and Postfix's smtp-source as the same-run reference.

use std::process::Command;
use std::time::{Duration, Instant};

use super::sink::Sink;

/// A post of 10 KiB to `list` with a Message-ID unique to this process and
/// instant.
pub fn post_10k(list: &str, subject: &str) -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut m = format!(
        "From: poster@example.com\r\nTo: {list}\r\nSubject: {subject}\r\nMessage-ID: <{subject}.{}.{nanos}@example.com>\r\n\r\n",
        std::process::id(),
    )
    .into_bytes();
    let line =
        b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 abcdefg\r\n";
    while m.len() < 10 * 1024 {
        m.extend_from_slice(line);
    }
    m
}

/// A process's peak resident set (`VmHWM`) in MiB; 0 when unreadable.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The reference: smtp-source sending `n` recipients of 10 KiB as
/// transactions of `per_txn`, from `sender`, over `sessions` parallel
/// sessions to the sink; recipients per second once the sink has them all
/// (waiting at most `wait`).
pub async fn smtp_source(
    sink: &Sink,
    n: usize,
    per_txn: usize,
    sessions: usize,
    sender: &str,
    wait: Duration,
) -> f64 {
    let before = sink.rcpt_count();
    let t0 = Instant::now();
    let status = Command::new("smtp-source")
        .args(["-d", "-s", &sessions.to_string()])
        .args(["-m", &(n / per_txn).to_string(), "-r", &per_txn.to_string()])
        .args(["-l", "10240", "-f", sender, "-t", "member@d0.example.net"])
        .arg(format!("127.0.0.1:{}", sink.port()))
        .status()
        .expect("smtp-source (postfix) is needed");
    assert!(status.success());
    sink.wait_rcpts(before + n, wait).await.unwrap();
    n as f64 / t0.elapsed().as_secs_f64()
}
