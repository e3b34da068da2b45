//! Sender authentication (issue 10): the test DNS server, dkimpy as the
//! independent signer/verifier, and `listrelay::auth` against both.

mod support;

use support::{dkimpy, dns};

/// The DNS server and author keys, or `None` (with a note) when the test
/// packages are missing.
fn author_dns() -> Option<dns::DnsServer> {
    if let Some(m) = dkimpy::missing() {
        eprintln!("skipped: {m}");
        return None;
    }
    let zone = dkimpy::author_zone().expect("author keys");
    match dns::DnsServer::start(&zone) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

const POST: &[u8] = b"From: Alice <alice@reject.test>\r\nTo: dev@lists.example.org\r\nSubject: hello\r\nDate: Tue, 1 Dec 2026 07:00:00 +0000\r\nMessage-ID: <p1@reject.test>\r\n\r\nHello list.\r\n";

#[test]
fn dns_harness_serves_long_keys_nxdomain_and_pauses() {
    let Some(server) = author_dns() else { return };
    let a = dkimpy::author("reject.test");
    let (rcode, txt) = server
        .query_txt("sel1._domainkey.reject.test")
        .expect("answer");
    assert_eq!(rcode, 0);
    assert_eq!(txt, vec![a.dkim_txt.clone()], "2048-bit key served whole");
    let (rcode, txt) = server.query_txt("_dmarc.nodmarc.test").expect("answer");
    assert_eq!((rcode, txt.len()), (3, 0), "NXDOMAIN for a missing record");
    server.pause();
    assert!(
        server.query_txt("_dmarc.reject.test").is_none(),
        "paused: no answer"
    );
    server.resume();
    let (_, txt) = server
        .query_txt("_dmarc.reject.test")
        .expect("answers again");
    assert_eq!(txt, vec!["v=DMARC1; p=reject; adkim=r; aspf=r".to_string()]);
}

#[test]
fn dkimpy_signs_and_verifies_through_the_test_dns() {
    let Some(server) = author_dns() else { return };
    let a = dkimpy::author("reject.test");
    let signed = dkimpy::sign(POST, &a);
    let v = dkimpy::verify(&signed, &server.addr());
    assert!(v.passes_for("reject.test"), "{v:?}");
    assert_eq!(v.arc.cv, "none");
    let mut tampered = signed.clone();
    let n = tampered.len();
    tampered[n - 3] = b'X';
    let v = dkimpy::verify(&tampered, &server.addr());
    assert!(!v.passes_for("reject.test"), "{v:?}");
}
