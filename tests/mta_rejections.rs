//! Hand-off refusals through the real Postfix and the real Exim (issue 11
//! part 3). The re-injection port gets an access table, as an operator would
//! give it (Postfix: `check_recipient_access`; Exim: an RCPT ACL on an
//! lsearch file), that answers 550 for some members and 450 for others.
//! What a user checks:
//! * the 550s are scored as docs/bounces.md says (`listrelay bounce show`:
//!   a hard `user_unknown`, score 1) and get no copy;
//! * the 450s are not scored, are retried, and get their copy once the
//!   table changes (Postfix: `postmap` + `postfix reload`; Exim: the file);
//! * nobody gets two copies.
//!
//! One list hands its members over in batched transactions (verp_percent 0),
//! the other one envelope per member (verp_percent 100), so both paths meet
//! the refusals. Needs root, postfix and exim (scripts/install-test-deps).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use listrelay::address::list_local_parts;
use listrelay::integration::{DomainParams, LmtpTarget};
use serde_json::Value;
use support::exim::Exim;
use support::lmtp::smtp_send;
use support::postfix::{Options, Postfix};
use support::server::Listrelay;
use support::sink::{copies, Sink};
use support::{poll_until, ports, MtaConfig};

const DEV: &str = "dev@lists.example.org";
const ANN: &str = "ann@lists.example.org";
const WAIT: Duration = Duration::from_secs(30);

/// Per list: members that are delivered at once, the one Postfix refuses
/// for good, the one it defers until the table changes.
struct Members {
    ok: [&'static str; 2],
    gone: &'static str,
    later: &'static str,
}

const DEV_MEMBERS: Members = Members {
    ok: ["alice@one.example.net", "bob@two.example.net"],
    gone: "gone@one.example.net",
    later: "later@two.example.net",
};

const ANN_MEMBERS: Members = Members {
    ok: ["carol@three.example.net", "dave@one.example.net"],
    gone: "gone2@three.example.net",
    later: "later2@one.example.net",
};

const REFUSE: &str = "550 5.1.1 no such user here";
const DEFER: &str = "450 4.2.0 mailbox busy, try again";

/// Fast retries and bounce polls, so the test takes seconds. The first line
/// lands in the `[smtp]` section `Listrelay` writes just before: pooled
/// connections are renewed after a second, so the reload reaches them.
const CONFIG: &str =
    "connection_reuse_secs = 1\n[fanout]\npoll_interval_ms = 100\nmta_backoff_max_secs = 1\n\
retry_min_secs = 1\nretry_max_secs = 2\n[bounce]\npoll_interval_ms = 100\n";

fn post(id: &str, to: &str) -> Vec<u8> {
    format!(
        "From: poster@example.com\r\nTo: {to}\r\nSubject: {id}\r\n\
         Message-ID: <{id}@example.com>\r\n\r\nbody of {id}\r\n"
    )
    .into_bytes()
}

/// `listrelay bounce show LIST MEMBER`: the member's record, if any.
fn bounce_record(lr: &Listrelay, list: &str, member: &str) -> Option<Value> {
    lr.json(&["bounce", "show", list, member])
        .as_array()
        .and_then(|a| a.first().cloned())
}

/// The MTA in front of listrelay, with a re-injection access table.
enum Handoff {
    Postfix(Postfix),
    Exim(Exim),
}

impl Handoff {
    fn start(exim: bool, cfg: MtaConfig) -> Handoff {
        if exim {
            Handoff::Exim(Exim::start(&cfg).unwrap_or_else(|e| panic!("exim: {e}")))
        } else {
            let opts = Options {
                reinject_access: true,
                ..Options::default()
            };
            Handoff::Postfix(
                Postfix::start_opts(&cfg, &opts).unwrap_or_else(|e| panic!("postfix: {e}")),
            )
        }
    }

    fn inbound_port(&self) -> u16 {
        match self {
            Handoff::Postfix(pf) => pf.inbound_port,
            Handoff::Exim(ex) => ex.inbound_port,
        }
    }

    fn reinject_port(&self) -> u16 {
        match self {
            Handoff::Postfix(pf) => pf.reinject_port,
            Handoff::Exim(ex) => ex.reinject_port,
        }
    }

    /// The operator's table change, applied the MTA's way.
    fn set_access(&self, table: &[(&str, &str)]) {
        match self {
            Handoff::Postfix(pf) => pf.set_reinject_access(table),
            Handoff::Exim(ex) => ex.set_reinject_access(table),
        }
        .unwrap()
    }

    fn log(&self) -> String {
        match self {
            Handoff::Postfix(pf) => pf.log(),
            Handoff::Exim(ex) => ex.log(),
        }
    }

    /// How often the MTA's log shows the re-injection port refusing `rcpt`
    /// with `code`.
    fn refusals(&self, rcpt: &str, code: &str) -> usize {
        let log = self.log();
        let lines = log.lines();
        match self {
            Handoff::Postfix(_) => lines
                .filter(|l| {
                    l.contains("listrelay-reinject")
                        && l.contains("NOQUEUE: reject: RCPT")
                        && l.contains(&format!("{code} "))
                        && l.contains(&format!("<{rcpt}>"))
                })
                .count(),
            // Exim logs a 4xx as "temporarily rejected", a 5xx as "rejected".
            Handoff::Exim(_) => lines
                .filter(|l| {
                    let refused = format!("rejected RCPT <{rcpt}>");
                    l.contains(&refused) && (l.contains("temporarily") == code.starts_with('4'))
                })
                .count(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_handoff_refusals_are_scored_and_deferrals_retried() {
    handoff_refusals_are_scored_and_deferrals_retried(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exim_handoff_refusals_are_scored_and_deferrals_retried() {
    handoff_refusals_are_scored_and_deferrals_retried(true).await
}

async fn handoff_refusals_are_scored_and_deferrals_retried(exim: bool) {
    let sink = Sink::start().await.unwrap();
    let lmtp_port = ports::free_port();
    let cfg = MtaConfig {
        domains: vec![DomainParams {
            name: "lists.example.org".into(),
            local_parts: [list_local_parts("dev"), list_local_parts("ann")].concat(),
        }],
        lmtp: LmtpTarget::Tcp(format!("127.0.0.1:{lmtp_port}")),
        sink_port: sink.port(),
    };
    let pf = tokio::task::spawn_blocking(move || Handoff::start(exim, cfg))
        .await
        .unwrap();
    let table = [
        (DEV_MEMBERS.gone, REFUSE),
        (ANN_MEMBERS.gone, REFUSE),
        (DEV_MEMBERS.later, DEFER),
        (ANN_MEMBERS.later, DEFER),
    ];
    pf.set_access(&table);

    let mut lr = Listrelay::new(lmtp_port, pf.reinject_port(), CONFIG);
    for (list, m, verp) in [(DEV, &DEV_MEMBERS, "0"), (ANN, &ANN_MEMBERS, "100")] {
        let members: Vec<String> =
            m.ok.iter()
                .chain([&m.gone, &m.later])
                .map(|s| s.to_string())
                .collect();
        lr.open_list(list, &members, &[("verp_percent", verp)]);
    }
    lr.start();
    let logs = |pf: &Handoff, lr: &Listrelay| {
        format!("--- listrelay:\n{}\n--- mta:\n{}", lr.log_text(), pf.log())
    };

    for (id, list) in [("to-dev", DEV), ("to-ann", ANN)] {
        smtp_send(
            pf.inbound_port(),
            "poster@example.com",
            &[list],
            &post(id, list),
        )
        .await
        .unwrap();
    }

    // The members Postfix takes get their copy.
    let delivered_ok = sink
        .wait_until(WAIT, |s| {
            let c = copies(&s.records());
            DEV_MEMBERS
                .ok
                .iter()
                .chain(&ANN_MEMBERS.ok)
                .all(|m| c.contains_key(*m))
        })
        .await;
    assert!(delivered_ok.is_ok(), "members missing\n{}", logs(&pf, &lr));

    // The 550s are scored: a hard user_unknown, score 1 (docs/bounces.md).
    for (list, gone) in [(DEV, DEV_MEMBERS.gone), (ANN, ANN_MEMBERS.gone)] {
        let scored = poll_until(WAIT, || bounce_record(&lr, list, gone).is_some());
        assert!(scored, "{gone} not scored on {list}\n{}", logs(&pf, &lr));
        let b = bounce_record(&lr, list, gone).unwrap();
        assert_eq!(b["score"], 1.0, "{b:#}");
        assert_eq!(b["last_hard"], true, "{b:#}");
        assert_eq!(b["last_status"], "5.1.1", "{b:#}");
        assert_eq!(b["last_reason"], "user_unknown", "{b:#}");
        assert_eq!(b["disabled"], false, "{b:#}");
    }

    // The 450s are retried: Postfix refuses each of them more than once,
    // and they are neither delivered nor scored meanwhile.
    let later = [DEV_MEMBERS.later, ANN_MEMBERS.later];
    let retried = poll_until(WAIT, || later.iter().all(|m| pf.refusals(m, "450") >= 2));
    assert!(retried, "deferred members not retried\n{}", logs(&pf, &lr));
    let c = copies(&sink.records());
    for m in later {
        assert_eq!(c.get(m), None, "{m} delivered while deferred");
    }
    assert!(bounce_record(&lr, DEV, DEV_MEMBERS.later).is_none());
    assert!(bounce_record(&lr, ANN, ANN_MEMBERS.later).is_none());

    // The operator lifts the deferral.
    pf.set_access(&table[..2]);
    let delivered_later = sink
        .wait_until(Duration::from_secs(90), |s| {
            let c = copies(&s.records());
            later.iter().all(|m| c.contains_key(*m))
        })
        .await;
    assert!(
        delivered_later.is_ok(),
        "deferred members not delivered after the table changed\n{}",
        logs(&pf, &lr)
    );

    // Give a second copy the time to show up, then count: one each, none
    // for the refused members, nothing else.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c: HashMap<String, usize> = copies(&sink.records());
    let mut expected: Vec<&str> = DEV_MEMBERS.ok.to_vec();
    expected.extend(ANN_MEMBERS.ok);
    expected.extend(later);
    for m in &expected {
        assert_eq!(c.get(*m), Some(&1), "{m}: {c:?}");
    }
    assert_eq!(c.len(), expected.len(), "{c:?}");
    // Still scored once: the refusal was not repeated.
    assert_eq!(
        bounce_record(&lr, DEV, DEV_MEMBERS.gone).unwrap()["score"],
        1.0
    );
    lr.stop();
}
