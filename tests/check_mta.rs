//! `listrelay check mta` against a real Postfix and a real Exim, configured
//! from the integrations/ snippets: a correct set-up passes every hop, and
//! each of four broken set-ups fails at the hop where the mail stops, with
//! the hint that names the setting to change. Probes are never stored.
//!
//! Needs root, postfix and the extracted exim (scripts/install-test-deps).

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use listrelay::address::probe_local_parts;
use serde_json::Value;
use support::mta::{Kind, Mta};
use support::server::{bin, Listrelay};
use support::sink::Sink;
use support::{pid_gone, poll_until, ports, terminate, wait_220, MtaConfig};

const LIST: &str = "list@lists.example.org";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    Correct,
    NoTransport,
    WrongLmtpPort,
    NoReinjection,
    MismatchedDelimiter,
}

/// An Exim daemon started again by this test with an edited configuration
/// (the harness has no restart); stopped by its PID.
struct EximAgain(i32);

impl Drop for EximAgain {
    fn drop(&mut self) {
        let pid = self.0;
        terminate(pid, || pid_gone(pid));
    }
}

/// Stops `mta`, edits its configuration with `edit`, starts it again.
fn break_mta(mta: &mut Mta, edit: impl Fn(String) -> String) -> Option<EximAgain> {
    let rewrite = |p: &PathBuf| {
        let text = std::fs::read_to_string(p).expect("MTA config");
        std::fs::write(p, edit(text)).expect("MTA config");
    };
    match mta {
        Mta::Postfix(p) => {
            p.stop();
            rewrite(&p.config_dir.join("listrelay/transport"));
            p.restart().expect("postfix restart");
            None
        }
        Mta::Exim(e) => {
            e.stop();
            rewrite(&e.config);
            let pid_file = e.dir().join("exim.pid");
            let _ = std::fs::remove_file(&pid_file);
            let out = Command::new(&e.binary)
                .arg("-C")
                .arg(&e.config)
                .args(["-bd", "-q1s"])
                .output()
                .expect("exim -bd");
            assert!(out.status.success(), "exim -bd: {out:?}\n{}", e.panic_log());
            let pid = || std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok();
            assert!(poll_until(Duration::from_secs(10), || pid().is_some()));
            for port in [e.inbound_port, e.reinject_port] {
                wait_220(port, Duration::from_secs(15)).expect("exim up again");
            }
            pid().map(EximAgain)
        }
    }
}

/// Exim without the list domain's router: the domain goes to the sink like
/// any other (the Exim form of "no transport entry").
fn exim_without_listrelay_router(conf: String) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in conf.lines() {
        if line.starts_with("listrelay_") && line.ends_with(':') && !line.contains("lmtp") {
            skipping = true;
        } else if skipping && !line.starts_with(' ') && !line.is_empty() {
            skipping = false;
        }
        if !skipping && line.trim() != "domains = ! +listrelay_domains" {
            out.push(line);
        }
    }
    out.join("\n") + "\n"
}

struct Site {
    _sink: Sink,
    mta: Mta,
    _exim: Option<EximAgain>,
    lr: Listrelay,
}

async fn site(kind: Kind, setup: Setup) -> Site {
    let sink = Sink::start().await.unwrap();
    let lmtp_port = ports::free_port();
    let mta_lmtp = match setup {
        Setup::WrongLmtpPort => ports::free_port(),
        _ => lmtp_port,
    };
    let mut cfg = MtaConfig::single_list(mta_lmtp, sink.port());
    cfg.domains[0].local_parts.extend(probe_local_parts());
    let delimiter = match (setup, kind) {
        (Setup::MismatchedDelimiter, Kind::Postfix) => '-',
        _ => '+',
    };
    let mut mta = Mta::start_with_async(kind, cfg, delimiter).await;
    let exim = match (setup, kind) {
        (Setup::NoTransport, Kind::Postfix) => break_mta(&mut mta, |t| {
            t.lines()
                .filter(|l| l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        }),
        (Setup::NoTransport, Kind::Exim) => break_mta(&mut mta, exim_without_listrelay_router),
        (Setup::MismatchedDelimiter, Kind::Exim) => break_mta(&mut mta, |c| {
            c.replace("local_part_suffix = +*", "local_part_suffix = #*")
        }),
        _ => None,
    };
    let reinject = match setup {
        Setup::NoReinjection => ports::free_port(),
        _ => mta.reinject(),
    };
    let mut lr = Listrelay::new(lmtp_port, reinject, "");
    lr.cli_ok(&["list", "create", LIST]);
    lr.start();
    Site {
        _sink: sink,
        mta,
        _exim: exim,
        lr,
    }
}

fn mta_log(mta: &Mta) -> PathBuf {
    match mta {
        Mta::Postfix(p) => p.log_file.clone(),
        Mta::Exim(e) => e.log_file.clone(),
    }
}

/// Runs `check mta --json`: the exit status and the report.
fn check(s: &Site, timeout: u64) -> (i32, Value, String) {
    let out = Command::new(bin())
        .arg("--config")
        .arg(&s.lr.config)
        .args(["--json", "check", "mta", "--public"])
        .arg(format!("127.0.0.1:{}", s.mta.inbound()))
        .args(["--timeout", &timeout.to_string(), "--mta-log"])
        .arg(mta_log(&s.mta))
        .output()
        .expect("run check mta");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    let text = format!(
        "{stdout}\n--- stderr:\n{}\n--- MTA log:\n{}\n--- listrelay log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.mta.log(),
        s.lr.log_text()
    );
    (out.status.code().unwrap_or(-1), report, text)
}

/// The first failed hop: its name, cause and fixes as one text.
fn first_failure(report: &Value) -> (String, String) {
    let hop = report["hops"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["status"] == "fail"))
        .cloned()
        .unwrap_or(Value::Null);
    (
        hop["hop"].as_str().unwrap_or("").to_string(),
        format!("{} {}", hop["cause"], hop["fixes"]),
    )
}

async fn broken(kind: Kind, setup: Setup, hop: &str, code: i32, hints: &[&str]) {
    let s = site(kind, setup).await;
    let (status, report, text) = tokio::task::spawn_blocking(move || {
        let r = check(&s, 4);
        drop(s);
        r
    })
    .await
    .unwrap();
    let (failed, hint) = first_failure(&report);
    assert_eq!(status, code, "{kind:?} {setup:?}: exit status\n{text}");
    assert_eq!(failed, hop, "{kind:?} {setup:?}: first failed hop\n{text}");
    for h in hints {
        assert!(
            hint.contains(h),
            "{kind:?} {setup:?}: hint lacks {h:?}: {hint}\n{text}"
        );
    }
}

async fn correct(kind: Kind) {
    let s = site(kind, Setup::Correct).await;
    let (status, report, text, queue) = tokio::task::spawn_blocking(move || {
        let (status, report, text) = check(&s, 20);
        let queue = s.lr.json(&["queue"]);
        (status, report, text, queue)
    })
    .await
    .unwrap();
    assert_eq!(status, 0, "{kind:?}: every hop should pass\n{text}");
    let hops = report["hops"].as_array().expect("hops");
    let names: Vec<&str> = hops.iter().filter_map(|h| h["hop"].as_str()).collect();
    assert_eq!(
        names,
        [
            "smtp_accepted",
            "routed_to_listrelay",
            "lmtp_received",
            "reinjection_accepted",
            "return_over_lmtp"
        ]
    );
    for h in hops {
        assert_eq!(h["status"], "pass", "{h}\n{text}");
        assert!(h["ms"].as_u64().is_some(), "each hop is timed: {h}");
    }
    assert_eq!(report["passed"], true);
    // the probes were noted, never stored
    assert_eq!(
        queue["messages"].as_array().map(Vec::len),
        Some(0),
        "{queue}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_correct_setup_passes_every_hop() {
    correct(Kind::Postfix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exim_correct_setup_passes_every_hop() {
    correct(Kind::Exim).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_transport_entry_fails_at_routing() {
    for (kind, hint) in [
        (Kind::Postfix, "transport_maps entry"),
        (Kind::Exim, "router for lists.example.org before dnslookup"),
    ] {
        broken(
            kind,
            Setup::NoTransport,
            "routed_to_listrelay",
            12,
            &["no transport entry", hint],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_lmtp_port_fails_at_routing() {
    for (kind, hint) in [
        (
            Kind::Postfix,
            "transport entry for lists.example.org must be `lmtp:inet:127.0.0.1:",
        ),
        (Kind::Exim, "`port` in the listrelay_lmtp transport"),
    ] {
        broken(
            kind,
            Setup::WrongLmtpPort,
            "routed_to_listrelay",
            12,
            &["does not listen", hint],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_reinjection_listener_fails_at_reinjection() {
    for (kind, hint) in [
        (Kind::Postfix, "master.cf"),
        (Kind::Exim, "local_interfaces"),
    ] {
        broken(
            kind,
            Setup::NoReinjection,
            "reinjection_accepted",
            14,
            &["re-injection address", "smtp.relay", hint],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mismatched_delimiter_fails_at_smtp() {
    for (kind, hint) in [
        (Kind::Postfix, "recipient_delimiter = +"),
        (Kind::Exim, "local_part_suffix = +*"),
    ] {
        broken(
            kind,
            Setup::MismatchedDelimiter,
            "smtp_accepted",
            11,
            &["recipient delimiter differs", hint],
        )
        .await;
    }
}

#[test]
fn without_a_server_it_says_so() {
    let lr = Listrelay::new(ports::free_port(), ports::free_port(), "");
    lr.cli_ok(&["list", "create", LIST]);
    let out = lr.cli(&["check", "mta", "--timeout", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("no listrelay server answers"), "{err}");
    assert!(err.contains("listrelay serve"), "{err}");
}
