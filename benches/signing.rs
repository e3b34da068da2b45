//! DKIM signing benchmark, issue 10 (`cargo bench --bench signing`; needs
//! postfix for the re-injection reference). `SIGNING_N` sets the list size
//! (default 20,000), `SIGNING_REPEAT` the rounds on the sink (default 3),
//! `SIGNING_POSTFIX_REPEAT` the rounds through Postfix (default 1).
//!
//! A 10 KiB post fanned out to N members over 100 domains at 100 % VERP,
//! with a one-click base URL so that every envelope has its own
//! List-Unsubscribe slice and therefore its own signature (without it the
//! VERP copies share one slice and one cached signature, and signing would
//! cost nothing). From the LMTP 250 until the sink has every recipient:
//! - to a counting sink: no key, an RSA-2048 key, an Ed25519 key; copies/s
//!   and the ratio to unsigned (issue 10: Ed25519 >= 0.8x);
//! - through a real Postfix on loopback (re-injection port -> Postfix ->
//!   sink), unsigned: the rate Postfix takes re-injected mail at, which
//!   RSA-2048 on the sink must stay above; and Ed25519-signed, whose ratio to
//!   it must be >= 0.9x.
//!
//! The sink records each copy's first DKIM-Signature line, so every row also
//! says how many copies arrived signed with the expected algorithm.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::bench::post_10k;
use support::lmtp::lmtp_post;
use support::ports;
use support::postfix::Postfix;
use support::server::Listrelay;
use support::sink::Sink;

const LIST: &str = "dev@lists.example.org";
const DOMAIN: &str = "lists.example.org";
const DOMAINS: usize = 100;
/// Workers and pooled SMTP connections, as in the fan-out benchmark.
const SESSIONS: usize = 8;
const WAIT: Duration = Duration::from_secs(900);

/// The key a site signs with.
#[derive(Clone, Copy, PartialEq)]
enum Key {
    None,
    Rsa,
    Ed25519,
}

impl Key {
    fn label(self) -> &'static str {
        match self {
            Key::None => "unsigned",
            Key::Rsa => "RSA-2048",
            Key::Ed25519 => "Ed25519",
        }
    }

    /// The `a=` tag its signatures carry.
    fn tag(self) -> Option<&'static str> {
        match self {
            Key::None => None,
            Key::Rsa => Some("a=rsa-sha256"),
            Key::Ed25519 => Some("a=ed25519-sha256"),
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A running site with `n` members that relays to `smtp_port` and signs
/// with `key`.
fn site(smtp_port: u16, lmtp_port: u16, n: usize, key: Key) -> Listrelay {
    let mut lr = Listrelay::new(
        lmtp_port,
        smtp_port,
        &format!("[fanout]\nworkers = {SESSIONS}\npoll_interval_ms = 100\n"),
    );
    let cfg = std::fs::read_to_string(&lr.config).unwrap().replace(
        "max_connections = 8",
        &format!("max_connections = {SESSIONS}"),
    );
    std::fs::write(&lr.config, cfg).unwrap();
    match key {
        Key::None => {}
        Key::Rsa => {
            lr.cli_ok(&["dkim", "keygen", DOMAIN, "--selector", "rsa1"]);
        }
        Key::Ed25519 => {
            lr.cli_ok(&[
                "dkim",
                "keygen",
                DOMAIN,
                "--selector",
                "ed1",
                "--algorithm",
                "ed25519-sha256",
            ]);
        }
    }
    let members: Vec<String> = (0..n)
        .map(|i| format!("m{i}@d{}.example.net", i % DOMAINS))
        .collect();
    lr.open_list(
        LIST,
        &members,
        &[
            ("verp_percent", "100"),
            ("base_url", "https://lists.example.org/"),
        ],
    );
    lr.start();
    lr
}

/// One post fanned out by `lr` to its `n` members, counted at `sink`:
/// recipients/s, and how many of the new copies carry `key`'s signature.
async fn fan_out(lr: &Listrelay, sink: &Sink, n: usize, key: Key) -> (f64, usize) {
    let before_rcpts = sink.rcpt_count();
    let before_records = sink.transaction_count();
    let r = lmtp_post(lr.lmtp_port, LIST, &post_10k(LIST, "signing")).await;
    assert_eq!(r.code, 250, "{}", r.text());
    let t0 = Instant::now();
    if let Err(got) = sink.wait_rcpts(before_rcpts + n, WAIT).await {
        panic!(
            "{}: only {} of {n} copies\n{}",
            key.label(),
            got - before_rcpts,
            lr.log_text()
        );
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let signed = sink
        .records()
        .iter()
        .skip(before_records)
        .filter(|t| match (key.tag(), &t.tag) {
            (Some(a), Some(sig)) => sig.contains(a),
            _ => false,
        })
        .map(|t| t.rcpts.len())
        .sum();
    (rate, signed)
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// One result line: the case, its median rate, the median of the per-round
/// ratios against `against` (with their spread), and the signed copies.
fn row(case: &str, rates: &[f64], ratios: Option<(&[f64], &str)>, signed: &str) {
    let (rate, _, _) = median(rates.to_vec());
    let ratio = match ratios {
        Some((r, against)) => {
            let (m, lo, hi) = median(r.to_vec());
            format!("{m:>5.2}x {against:<17} ({lo:.2}-{hi:.2})")
        }
        None => format!("{:>6} {:<17} {:11}", "", "", ""),
    };
    println!("{case:<38} {rate:>8.0} {ratio}  {signed}");
}

fn div(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

/// Rates and signed-copy counts of `rounds` interleaved rounds over `sites`
/// (each with its own sink).
async fn rounds(
    sites: &[(Key, &Listrelay, &Sink)],
    n: usize,
    rounds: usize,
) -> Vec<(Vec<f64>, usize)> {
    let mut out = vec![(Vec::new(), 0); sites.len()];
    for _ in 0..rounds {
        for (i, (key, lr, sink)) in sites.iter().enumerate() {
            let (rate, signed) = fan_out(lr, sink, n, *key).await;
            out[i].0.push(rate);
            out[i].1 += signed;
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_usize("SIGNING_N", 20_000);
    let repeat = env_usize("SIGNING_REPEAT", 3).max(1);
    let pf_repeat = env_usize("SIGNING_POSTFIX_REPEAT", 1).max(1);

    // To the sink: a site (and sink) per key, rounds interleaved so that the
    // shared machine's load falls on all three alike.
    let keys = [Key::None, Key::Rsa, Key::Ed25519];
    let mut sinks = Vec::new();
    let mut sites = Vec::new();
    for key in keys {
        let sink = Sink::builder()
            .tag_header("DKIM-Signature")
            .start()
            .await
            .unwrap();
        sites.push(site(sink.port(), ports::free_port(), n, key));
        sinks.push(sink);
    }
    let cases: Vec<_> = keys
        .iter()
        .zip(&sites)
        .zip(&sinks)
        .map(|((k, lr), s)| (*k, lr, s))
        .collect();
    let direct = rounds(&cases, n, repeat).await;
    drop(sites);

    println!(
        "DKIM signing: a 10 KiB post to {n} members over {DOMAINS} domains at 100 % VERP \
         (one-click URL: a signature per copy), {SESSIONS} workers/connections"
    );
    println!(
        "{:<38} {:>8} {:>6} {:<17} {:11}  signed copies",
        "case", "r/s", "ratio", "against", "(spread)"
    );
    let unsigned = &direct[0].0;
    for (key, (rates, signed)) in keys.iter().zip(&direct) {
        let against = (*key != Key::None).then(|| (div(rates, unsigned), "sink unsigned"));
        row(
            &format!("sink, {}", key.label()),
            rates,
            against.as_ref().map(|(r, a)| (r.as_slice(), *a)),
            &format!("{signed}/{}", n * repeat),
        );
    }

    // Through Postfix: one instance, an unsigned and an Ed25519 site both
    // re-injecting into it, one sink behind it.
    let Some(through) = through_postfix(n, pf_repeat).await else {
        println!("postfix not available: the Postfix rows are skipped");
        return;
    };
    let (pf_unsigned, _) = &through[0];
    let (pf_signed, pf_signed_count) = &through[1];
    let rsa = &direct[1].0;
    // RSA on the sink against Postfix's rate: medians (different rounds).
    let (rsa_m, _, _) = median(rsa.clone());
    let (pf_m, _, _) = median(pf_unsigned.clone());
    row(
        "Postfix re-injection, unsigned",
        pf_unsigned,
        None,
        &format!("0/{}", n * pf_repeat),
    );
    println!(
        "{:<38} {:>8} {:>5.2}x {:<17}",
        "sink RSA-2048 against Postfix's rate",
        "",
        rsa_m / pf_m,
        "Postfix unsigned"
    );
    row(
        "Postfix re-injection, Ed25519",
        pf_signed,
        Some((&div(pf_signed, pf_unsigned), "Postfix unsigned")),
        &format!("{pf_signed_count}/{}", n * pf_repeat),
    );
}

/// Unsigned and Ed25519-signed fan-outs through a real Postfix, `repeat`
/// interleaved rounds; None when Postfix cannot start here.
async fn through_postfix(n: usize, repeat: usize) -> Option<Vec<(Vec<f64>, usize)>> {
    let sink = Sink::builder()
        .tag_header("DKIM-Signature")
        .start()
        .await
        .ok()?;
    let lmtp_port = ports::free_port();
    let pf = Postfix::start_for_list(lmtp_port, sink.port(), "dev")
        .await
        .ok()?;
    let unsigned = site(pf.reinject_port, lmtp_port, n, Key::None);
    let signed = site(pf.reinject_port, ports::free_port(), n, Key::Ed25519);
    let out = rounds(
        &[
            (Key::None, &unsigned, &sink),
            (Key::Ed25519, &signed, &sink),
        ],
        n,
        repeat,
    )
    .await;
    drop((unsigned, signed, pf));
    Some(out)
}
