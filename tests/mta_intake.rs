//! listrelay behind a real Postfix and a real Exim, configured from the
//! integrations/ snippets: a post sent to the MTA reaches every member exactly
//! once, and a transaction with several list recipients gets one LMTP reply per
//! recipient, which the MTA acts on one by one.
//!
//! Needs root, postfix and the extracted exim (scripts/install-test-deps).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use listrelay::address::list_local_parts;
use listrelay::integration::{DomainParams, LmtpTarget};
use support::lmtp::smtp_send;
use support::mta::{Kind, Mta};
use support::server::Listrelay;
use support::sink::Sink;
use support::{poll_until, ports, MtaConfig};

const DEV: &str = "dev@lists.example.org";
const OPS: &str = "ops@lists.example.org";

async fn start_mta(kind: Kind, lmtp_port: u16, sink_port: u16) -> Mta {
    let cfg = MtaConfig {
        domains: vec![DomainParams {
            name: "lists.example.org".into(),
            local_parts: [list_local_parts("dev"), list_local_parts("ops")].concat(),
        }],
        lmtp: LmtpTarget::Tcp(format!("127.0.0.1:{lmtp_port}")),
        sink_port,
    };
    Mta::start_async(kind, cfg).await
}

/// Whether the MTA logged a delivery (or a permanent failure) to `rcpt`
/// with a reply containing `text`.
fn logged(mta: &Mta, rcpt: &str, delivered: bool, text: &str) -> bool {
    mta.log().lines().any(|l| {
        let about = l.contains(&format!("<{rcpt}>")) || l.contains(&format!(" {rcpt} "));
        let verdict = match (mta, delivered) {
            (Mta::Postfix(_), true) => l.contains("status=sent"),
            (Mta::Postfix(_), false) => l.contains("status=bounced"),
            (Mta::Exim(_), true) => l.contains(" => "),
            (Mta::Exim(_), false) => l.contains(" ** "),
        };
        about && verdict && l.contains(text)
    })
}

fn message(id: &str, to: &str) -> Vec<u8> {
    format!(
        "From: poster@example.com\r\nTo: {to}\r\nSubject: {id}\r\nMessage-ID: <{id}@example.com>\r\n\r\nbody\r\n"
    )
    .into_bytes()
}

async fn setup(kind: Kind) -> (Sink, Mta, Listrelay) {
    let sink = Sink::builder().start().await.unwrap();
    let lmtp_port = ports::free_port();
    let mta = start_mta(kind, lmtp_port, sink.port()).await;
    let mut lr = Listrelay::new(lmtp_port, mta.reinject(), "");
    for list in [DEV, OPS] {
        lr.cli_ok(&["list", "create", list]);
        lr.cli_ok(&["list", "set", list, "nonmember_action", "accept"]);
    }
    lr.cli_ok(&[
        "member",
        "add",
        DEV,
        "a@one.example.net",
        "b@two.example.net",
    ]);
    lr.cli_ok(&["member", "add", OPS, "c@three.example.net"]);
    lr.start();
    (sink, mta, lr)
}

fn copies(sink: &Sink) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for t in sink.records() {
        for r in t.rcpts {
            *n.entry(r).or_default() += 1;
        }
    }
    n
}

async fn post_reaches_each_member_once(kind: Kind) {
    let (sink, mta, mut lr) = setup(kind).await;
    smtp_send(
        mta.inbound(),
        "poster@example.com",
        &[DEV],
        &message("once", DEV),
    )
    .await
    .unwrap();
    sink.wait_rcpts(2, Duration::from_secs(30))
        .await
        .unwrap_or_else(|n| {
            panic!(
                "{kind:?}: {n} of 2 copies\n{}\n{}",
                mta.log(),
                lr.log_text()
            )
        });
    // Give a duplicate the time to show up, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = copies(&sink);
    assert_eq!(
        counts.get("a@one.example.net"),
        Some(&1),
        "{kind:?}: {counts:?}"
    );
    assert_eq!(
        counts.get("b@two.example.net"),
        Some(&1),
        "{kind:?}: {counts:?}"
    );
    assert_eq!(counts.len(), 2);
    lr.stop();
}

/// The same Message-ID is already in ops's window and ops rejects duplicates:
/// in one LMTP transaction for dev@ and ops@, dev gets 250 and ops 550 5.7.0.
async fn per_recipient_replies(kind: Kind) {
    let (sink, mta, mut lr) = setup(kind).await;
    lr.cli_ok(&["list", "set", OPS, "duplicate_policy", "reject"]);
    let first = message("mixed", OPS);
    smtp_send(mta.inbound(), "poster@example.com", &[OPS], &first)
        .await
        .unwrap();
    sink.wait_rcpts(1, Duration::from_secs(30)).await.unwrap();
    // A different message reusing the Message-ID, to both lists at once.
    let second = message("mixed", "dev and ops")
        .into_iter()
        .chain(*b"more\r\n")
        .collect::<Vec<u8>>();
    smtp_send(mta.inbound(), "poster@example.com", &[DEV, OPS], &second)
        .await
        .unwrap();
    let both = poll_until(Duration::from_secs(30), || {
        logged(&mta, DEV, true, "250 2.0.0") && logged(&mta, OPS, false, "5.7.0")
    });
    assert!(
        both,
        "{kind:?}: expected dev delivered and ops refused with 5.7.0\n{}\n{}",
        mta.log(),
        lr.log_text()
    );
    // The MTA's own bounce for ops (to the poster) reaches the sink too, so
    // wait for dev's members by name rather than for a count.
    let dev_done = sink
        .wait_until(Duration::from_secs(30), |s| {
            let c = copies(s);
            c.contains_key("a@one.example.net") && c.contains_key("b@two.example.net")
        })
        .await;
    assert!(
        dev_done.is_ok(),
        "{kind:?}: dev's members did not get the post"
    );
    let counts = copies(&sink);
    assert_eq!(
        counts.get("c@three.example.net"),
        Some(&1),
        "ops's member got only the first post"
    );
    assert_eq!(counts.get("a@one.example.net"), Some(&1));
    lr.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_post_reaches_each_member_once() {
    post_reaches_each_member_once(Kind::Postfix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exim_post_reaches_each_member_once() {
    post_reaches_each_member_once(Kind::Exim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_multi_recipient_transaction_gets_per_recipient_replies() {
    per_recipient_replies(Kind::Postfix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exim_multi_recipient_transaction_gets_per_recipient_replies() {
    per_recipient_replies(Kind::Exim).await;
}
