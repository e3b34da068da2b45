//! DKIM signing wired in (issue 10): `listrelay dkim keygen` stores an RSA
//! and an Ed25519 key and prints the records; the test DNS server publishes
//! them; a post goes through real Postfix and listrelay, and every copy the
//! sink receives, and a notice, verifies with dkimpy under both keys, with
//! List-Unsubscribe and List-Unsubscribe-Post signed.
//!
//! Needs root, postfix, dnsmasq and python3-dkim (scripts/install-test-deps).

mod support;

use std::time::Duration;

use support::lmtp::smtp_send;
use support::postfix::Postfix;
use support::server::Listrelay;
use support::sink::{Sink, Transaction};
use support::{dkimpy, dns, ports};

const LIST: &str = "dev@lists.example.org";
const DOMAIN: &str = "lists.example.org";
const WAIT: Duration = Duration::from_secs(30);

fn text(t: &Transaction) -> String {
    String::from_utf8_lossy(t.data.as_deref().unwrap_or_default()).into_owned()
}

/// The `h=` tag of every DKIM-Signature of `msg`, lower-cased.
fn signed_headers(msg: &str) -> Vec<Vec<String>> {
    let head = msg.split("\r\n\r\n").next().unwrap_or_default();
    let unfolded = head.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("dkim-signature:"))
        .map(|l| {
            let h = l
                .split(';')
                .map(str::trim)
                .find_map(|t| t.strip_prefix("h="))
                .unwrap_or_default();
            h.split(':')
                .map(|n| n.trim().to_ascii_lowercase())
                .collect()
        })
        .collect()
}

#[test]
fn keygen_list_and_remove() {
    let lr = Listrelay::with_smtp(ports::free_port(), "");
    let out = lr.cli_ok(&["dkim", "keygen", DOMAIN, "--selector", "r1"]);
    assert!(
        out.starts_with("r1._domainkey.lists.example.org rsa-sha256"),
        "{out}"
    );
    // One TXT record in zone-file syntax, an RSA key in 255-byte strings.
    let record = out.lines().nth(1).unwrap();
    assert!(
        record.starts_with("r1._domainkey.lists.example.org. IN TXT \"v=DKIM1; k=rsa; p=MIIB"),
        "{record}"
    );
    assert_eq!(record.matches('"').count(), 4, "two strings: {record}");
    lr.cli_ok(&[
        "dkim",
        "keygen",
        DOMAIN,
        "--selector",
        "e1",
        "--algorithm",
        "ed25519-sha256",
    ]);
    let again = lr.cli(&["dkim", "keygen", DOMAIN, "--selector", "r1"]);
    assert!(!again.status.success(), "a selector is never replaced");
    assert!(String::from_utf8_lossy(&again.stderr).contains("dkim remove"));
    let bad = lr.cli(&["dkim", "keygen", DOMAIN, "--algorithm", "dsa"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("rsa-sha256 or ed25519-sha256"));
    let listed = lr.cli_ok(&["dkim", "list"]);
    assert!(listed.contains("r1._domainkey") && listed.contains("e1._domainkey"));
    assert!(listed.contains("k=ed25519; p="));
    lr.cli_ok(&["dkim", "remove", DOMAIN, "r1"]);
    let listed = lr.cli_ok(&["dkim", "list", DOMAIN]);
    assert!(!listed.contains("r1._domainkey") && listed.contains("e1._domainkey"));
    assert!(!lr.cli(&["dkim", "remove", DOMAIN, "r1"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_through_postfix_and_notices_verify_with_dkimpy() {
    if let Some(m) = dkimpy::missing() {
        eprintln!("skipped: {m}");
        return;
    }
    let sink = Sink::builder().keep_data(true).start().await.unwrap();
    let lmtp_port = ports::free_port();
    let pf = Postfix::start_for_list(lmtp_port, sink.port(), "dev")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lr = Listrelay::new(
        lmtp_port,
        pf.reinject_port,
        "[moderation]\npoll_interval_ms = 100\n",
    );
    let zone = dkimpy::zone_with_list_keys(&lr, DOMAIN);
    let server = match dns::DnsServer::start(&zone) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let members = [
        "m1@d1.example.net",
        "m2@d2.example.net",
        "m3@d1.example.net",
    ];
    let members: Vec<String> = members.iter().map(|s| s.to_string()).collect();
    lr.open_list(
        LIST,
        &members,
        &[
            ("verp_percent", "100"),
            ("subject_prefix", "[dev] "),
            ("footer", "leave: dev-leave@lists.example.org"),
            ("base_url", "https://lists.example.org/"),
        ],
    );
    lr.start();
    let post = b"From: Poster <poster@example.com>\r\nTo: dev@lists.example.org\r\nSubject: signed\r\nMessage-ID: <signed.1@example.com>\r\nDate: Tue, 1 Dec 2026 08:00:00 +0000\r\n\r\nHello list.\r\n";
    smtp_send(pf.inbound_port, "poster@example.com", &[LIST], post)
        .await
        .unwrap();
    let got = sink
        .wait_records(members.len(), WAIT, |t| text(t).contains("[dev] signed"))
        .await
        .unwrap_or_else(|r| panic!("copies missing: {r:?}\n{}", lr.log_text()));
    for t in &got {
        let msg = text(t);
        let v = dkimpy::verify(msg.as_bytes(), &server.addr());
        for s in ["rsa1", "ed1"] {
            assert!(
                v.dkim.iter().any(|d| d.pass && d.d == DOMAIN && d.s == s),
                "selector {s} does not verify for {:?}: {v:?}\n{msg}",
                t.rcpts
            );
        }
        assert!(msg.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        for h in signed_headers(&msg) {
            for name in [
                "from",
                "list-id",
                "list-unsubscribe",
                "list-unsubscribe-post",
                "subject",
            ] {
                assert!(h.contains(&name.to_string()), "{name} not signed: {h:?}");
            }
        }
    }
    // A notice: the confirmation a join request gets.
    smtp_send(
        pf.inbound_port,
        "carol@example.com",
        &["dev-join@lists.example.org"],
        b"From: carol@example.com\r\nTo: dev-join@lists.example.org\r\nSubject: join\r\nMessage-ID: <j1@example.com>\r\n\r\n\r\n",
    )
    .await
    .unwrap();
    let notice = sink
        .wait_records(1, WAIT, |t| {
            t.rcpts.iter().any(|r| r == "carol@example.com")
        })
        .await
        .unwrap_or_else(|r| panic!("no notice: {r:?}\n{}", lr.log_text()));
    let msg = text(&notice[0]);
    let v = dkimpy::verify(msg.as_bytes(), &server.addr());
    assert_eq!(
        v.dkim.iter().filter(|d| d.pass && d.d == DOMAIN).count(),
        2,
        "the notice verifies under both keys: {v:?}\n{msg}"
    );
    lr.stop();
}
