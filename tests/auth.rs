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

use listrelay::auth::evaluate::{DmarcPolicy, Source, Survival};
use listrelay::auth::keys::{generate, Algorithm, DkimKeyRecord};
use listrelay::auth::{
    arc::Sealer, sign::Signer, AuthResult, DnsConfig, Evaluator, Resolver, SmtpContext,
};

const LIST_DOMAIN: &str = "lists.example.org";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The list domain's RSA and Ed25519 keys (made once per test process).
fn list_keys() -> &'static [DkimKeyRecord] {
    static KEYS: std::sync::OnceLock<Vec<DkimKeyRecord>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        vec![
            generate(LIST_DOMAIN, "rsa2026", Algorithm::RsaSha256, 1).expect("rsa key"),
            generate(LIST_DOMAIN, "ed2026", Algorithm::Ed25519Sha256, 1).expect("ed25519 key"),
        ]
    })
}

/// Author domains, the list keys and the extra records of `extra`.
fn full_dns(extra: &[(&str, &str)]) -> Option<dns::DnsServer> {
    if let Some(m) = dkimpy::missing() {
        eprintln!("skipped: {m}");
        return None;
    }
    let mut zone = dkimpy::author_zone().expect("author keys");
    for k in list_keys() {
        zone = zone.txt(&k.dns_name(), &k.dns_txt().expect("txt"));
    }
    for (n, v) in extra {
        zone = zone.txt(n, v);
    }
    match dns::DnsServer::start(&zone) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn evaluator(server: &dns::DnsServer, trust: Option<&str>) -> Evaluator {
    let cfg = DnsConfig {
        resolvers: vec![server.addr()],
        timeout_secs: 1,
        attempts: 1,
        ..DnsConfig::default()
    };
    Evaluator::new(
        Resolver::new(&cfg).expect("resolver"),
        "lists.example.org",
        trust,
    )
}

/// The SMTP client the author's MTA is (SPF-authorised for `domain`).
fn author_mta(domain: &str) -> SmtpContext {
    SmtpContext {
        client_ip: Some(dkimpy::AUTHOR_MTA_IP.parse().unwrap()),
        helo: format!("mta.{domain}"),
        mail_from: format!("alice@{domain}"),
    }
}

fn post_from(domain: &str) -> Vec<u8> {
    String::from_utf8_lossy(POST)
        .replace("reject.test", domain)
        .into_bytes()
}

/// The copy as the list would build it: list headers on top, subject
/// prefix and footer when asked.
fn list_copy(post: &[u8], prefix: bool, footer: bool) -> Vec<u8> {
    let mut s = String::from_utf8_lossy(post).into_owned();
    if prefix {
        s = s.replace("Subject: hello", "Subject: [dev] hello");
    }
    if footer {
        s.push_str("-- \r\nunsubscribe: dev-leave@lists.example.org\r\n");
    }
    format!("List-Id: <dev.lists.example.org>\r\nList-Post: <mailto:dev@lists.example.org>\r\nPrecedence: list\r\n{s}").into_bytes()
}

#[test]
fn list_keys_sign_and_dkimpy_verifies_both_algorithms() {
    let Some(server) = full_dns(&[]) else { return };
    let signer = Signer::new(list_keys()).expect("signer");
    let shared = list_copy(POST, true, true);
    let post = signer.for_post(&shared);
    let slice = b"List-Unsubscribe: <https://lists.example.org/u/TOKEN>, <mailto:dev-leave@lists.example.org>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
    let sigs = post.sign_envelope(slice, now()).expect("sign");
    let copy = [&sigs[..], &slice[..], &shared[..]].concat();
    let v = dkimpy::verify(&copy, &server.addr());
    let ours: Vec<_> = v.dkim.iter().filter(|s| s.d == LIST_DOMAIN).collect();
    assert_eq!(ours.len(), 2, "{v:?}");
    assert!(ours.iter().all(|s| s.pass), "RSA and Ed25519 verify: {v:?}");
    // A batched envelope (another slice) gets its own, also valid, signatures.
    let slice2 = b"List-Unsubscribe: <mailto:dev-leave@lists.example.org>\r\n";
    let copy2 = [
        &post.sign_envelope(slice2, now()).unwrap()[..],
        &slice2[..],
        &shared[..],
    ]
    .concat();
    let v = dkimpy::verify(&copy2, &server.addr());
    assert_eq!(v.dkim.iter().filter(|s| s.pass).count(), 2, "{v:?}");
    // A notice: one whole message, signed by both keys.
    let notice = b"From: dev-bounces@lists.example.org\r\nTo: bob@example.com\r\nSubject: Your post is held\r\nDate: Tue, 1 Dec 2026 07:00:00 +0000\r\nMessage-ID: <n1@lists.example.org>\r\n\r\nA moderator will look at it.\r\n";
    let signed_notice = [
        &signer.sign_message(notice, now()).unwrap()[..],
        &notice[..],
    ]
    .concat();
    let v = dkimpy::verify(&signed_notice, &server.addr());
    assert_eq!(v.dkim.iter().filter(|s| s.pass).count(), 2, "{v:?}");
    // A changed per-envelope header breaks them: List-Unsubscribe is covered.
    let forged = [&sigs[..], &slice2[..], &shared[..]].concat();
    let v = dkimpy::verify(&forged, &server.addr());
    assert_eq!(v.dkim.iter().filter(|s| s.pass).count(), 0, "{v:?}");
}

#[tokio::test]
async fn signed_post_from_reject_domain_passes_and_forgery_fails() {
    let Some(server) = full_dns(&[]) else { return };
    let ev = evaluator(&server, None);
    let signed = dkimpy::sign(POST, &dkimpy::author("reject.test"));
    let e = ev.evaluate(&signed, &author_mta("reject.test")).await;
    assert_eq!(e.dkim.len(), 1);
    assert_eq!(
        (e.dkim[0].domain.as_str(), e.dkim[0].result),
        ("reject.test", AuthResult::Pass),
        "{e:?}"
    );
    assert_eq!(
        e.spf.as_ref().map(|s| s.result),
        Some(AuthResult::Pass),
        "{e:?}"
    );
    assert_eq!(e.dmarc.result, AuthResult::Pass, "{e:?}");
    assert_eq!(e.dmarc.policy, Some(DmarcPolicy::Reject));
    assert!(!e.fails_enforced_dmarc() && !e.is_temporary());
    assert!(
        e.auth_results.starts_with("lists.example.org; dkim=pass"),
        "{}",
        e.auth_results
    );
    assert!(!e.auth_results.contains('\n'));

    // Forged From of a p=reject domain, sent from elsewhere, unsigned.
    let forger = SmtpContext {
        client_ip: Some("198.51.100.7".parse().unwrap()),
        helo: "bad.example".into(),
        mail_from: "x@bad.example".into(),
    };
    let e = ev.evaluate(POST, &forger).await;
    assert_eq!(e.dmarc.result, AuthResult::Fail, "{e:?}");
    assert_eq!(e.dmarc.policy, Some(DmarcPolicy::Reject));
    assert!(e.fails_enforced_dmarc() && !e.is_temporary());

    // Policies of the other domains, and no DMARC record at all.
    for (domain, policy) in [
        ("quarantine.test", Some(DmarcPolicy::Quarantine)),
        ("none.test", Some(DmarcPolicy::None)),
        ("nodmarc.test", None),
    ] {
        let e = ev.evaluate(&post_from(domain), &forger).await;
        assert_eq!(e.dmarc.policy, policy, "{domain}: {e:?}");
        let want = if policy.is_some() {
            AuthResult::Fail
        } else {
            AuthResult::None
        };
        assert_eq!(e.dmarc.result, want, "{domain}: {e:?}");
        assert_eq!(e.fails_enforced_dmarc(), domain == "quarantine.test");
    }
}

#[tokio::test]
async fn dns_timeout_is_temporary_and_the_same_query_succeeds_later() {
    let Some(server) = full_dns(&[]) else { return };
    let ev = evaluator(&server, None);
    let signed = dkimpy::sign(POST, &dkimpy::author("reject.test"));
    server.pause();
    let e = ev.evaluate(&signed, &author_mta("reject.test")).await;
    server.resume();
    assert!(e.is_temporary(), "{e:?}");
    assert_eq!(e.dmarc.result, AuthResult::TempError, "{e:?}");
    assert!(!e.fails_enforced_dmarc(), "a timeout is never a fail");
    let e = ev.evaluate(&signed, &author_mta("reject.test")).await;
    assert!(!e.is_temporary(), "{e:?}");
    assert_eq!(e.dmarc.result, AuthResult::Pass, "{e:?}");
}

#[tokio::test]
async fn breaks_test_sees_footer_but_not_list_headers() {
    let Some(server) = full_dns(&[]) else { return };
    let ev = evaluator(&server, None);
    let a = dkimpy::author("reject.test");
    // Signed as many MTAs do: the usual headers, body whole.
    let signed = dkimpy::sign_headers(POST, &a, &["From", "To", "Subject", "Date", "Message-ID"]);
    assert_eq!(
        ev.would_pass_dmarc(&list_copy(&signed, false, false)).await,
        Survival::Survives
    );
    assert_eq!(
        ev.would_pass_dmarc(&list_copy(&signed, false, true)).await,
        Survival::Broken
    );
    assert_eq!(
        ev.would_pass_dmarc(&list_copy(&signed, true, false)).await,
        Survival::Broken
    );
    assert_eq!(
        ev.would_pass_dmarc(&list_copy(POST, false, false)).await,
        Survival::Broken,
        "unsigned"
    );
    server.pause();
    let t = ev.would_pass_dmarc(&list_copy(&signed, false, false)).await;
    server.resume();
    // hickory may answer from its cache; otherwise it must be temporary.
    assert!(
        matches!(t, Survival::Survives | Survival::Temporary),
        "{t:?}"
    );
}

#[tokio::test]
async fn arc_seal_of_a_changed_copy_verifies_and_a_valid_chain_stays_valid() {
    let Some(server) = full_dns(&[]) else { return };
    let ev = evaluator(&server, None);
    let sealer = Sealer::new(&list_keys()[0]).expect("sealer");

    // No chain: we start one (i=1, cv=none); dkimpy says pass.
    let signed = dkimpy::sign(POST, &dkimpy::author("reject.test"));
    let e = ev.evaluate(&signed, &author_mta("reject.test")).await;
    assert_eq!((e.arc.result, e.arc.sets), (AuthResult::None, 0));
    let copy = list_copy(&signed, true, true);
    let set = sealer
        .seal(&copy, &e.auth_results, e.arc.result)
        .expect("seal");
    let sealed = [&set[..], &copy[..]].concat();
    let v = dkimpy::verify(&sealed, &server.addr());
    assert_eq!(
        v.arc.cv,
        "pass",
        "{v:?}\n{}",
        String::from_utf8_lossy(&sealed)
    );

    // A forwarder (quarantine.test's MTA) sealed it before us: i=2, cv=pass.
    let fwd = dkimpy::author("quarantine.test");
    let with_ar = [
        &b"Authentication-Results: fwd.quarantine.test; dkim=pass header.d=reject.test\r\n"[..],
        &signed[..],
    ]
    .concat();
    let incoming = dkimpy::arc_sign(&with_ar, &fwd, "fwd.quarantine.test");
    assert_eq!(dkimpy::verify(&incoming, &server.addr()).arc.cv, "pass");
    let e = ev.evaluate(&incoming, &author_mta("reject.test")).await;
    assert_eq!((e.arc.result, e.arc.sets), (AuthResult::Pass, 1), "{e:?}");
    let copy = list_copy(&incoming, true, true);
    let set = sealer
        .seal(&copy, &e.auth_results, e.arc.result)
        .expect("seal");
    assert!(String::from_utf8_lossy(&set).contains("i=2"));
    let sealed = [&set[..], &copy[..]].concat();
    let v = dkimpy::verify(&sealed, &server.addr());
    assert_eq!(
        v.arc.cv,
        "pass",
        "{v:?}\n{}",
        String::from_utf8_lossy(&sealed)
    );
}

#[tokio::test]
async fn trusted_authentication_results_replace_the_checks() {
    let Some(server) = full_dns(&[]) else { return };
    let ev = evaluator(&server, Some("MX.Upstream.test"));
    let msg = [&b"Authentication-Results: mx.upstream.test; dkim=pass header.d=reject.test header.s=sel1; spf=pass smtp.mailfrom=alice@reject.test; dmarc=pass (p=reject dis=none) header.from=reject.test\r\n"[..], POST].concat();
    let e = ev.evaluate(&msg, &SmtpContext::default()).await;
    assert_eq!(
        e.source,
        Source::Trusted {
            authserv_id: "mx.upstream.test".into()
        }
    );
    assert_eq!(e.dmarc.result, AuthResult::Pass);
    assert_eq!(e.dmarc.policy, Some(DmarcPolicy::Reject));
    assert_eq!(e.dkim[0].domain, "reject.test");
    // Another authserv-id is not trusted: checked here (unsigned: fail).
    let forged = String::from_utf8_lossy(&msg).replace("mx.upstream.test", "mx.evil.test");
    let e = ev
        .evaluate(forged.as_bytes(), &SmtpContext::default())
        .await;
    assert_eq!(e.source, Source::Checked);
    assert_eq!(e.dmarc.result, AuthResult::Fail, "{e:?}");
}

#[tokio::test]
async fn hostile_headers_and_records_give_clear_results() {
    let Some(server) = full_dns(&[(
        "bad._domainkey.reject.test",
        "v=DKIM1; k=rsa; p=!!!not*base64!!!",
    )]) else {
        return;
    };
    let ev = evaluator(&server, Some("mx.upstream.test"));
    let smtp = author_mta("reject.test");
    let with = |h: &str| [h.as_bytes(), POST].concat();
    // A good signature whose selector points at a key that is not base64.
    let signed = dkimpy::sign(POST, &dkimpy::author("reject.test"));
    let bad_key = String::from_utf8_lossy(&signed)
        .replace("s=sel1", "s=bad")
        .into_bytes();
    let cases = [
        bad_key,
        with("DKIM-Signature: v=1; a=\r\n"),
        with("DKIM-Signature: ;;;===;;; b=\x01\x02\r\n"),
        with("ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.test; s=s; b=AAAA\r\n"),
        with("ARC-Seal: i=99999999999; cv=bogus\r\nARC-Message-Signature: i=x\r\nARC-Authentication-Results: i=\r\n"),
        with("Authentication-Results: mx.upstream.test; dkim=(((\r\n"),
        with("Authentication-Results: mx.upstream.test; ;;; =; dmarc=\r\n"),
        with(&format!("X-Huge: {}\r\n", "a".repeat(2_000_000))),
        with(&format!("Authentication-Results: mx.upstream.test; {}\r\n", "dkim=pass ".repeat(100_000))),
        b"\r\n\r\n".to_vec(),
        b"no header at all".to_vec(),
        Vec::new(),
    ];
    for (i, m) in cases.iter().enumerate() {
        let e = ev.evaluate(m, &smtp).await;
        eprintln!(
            "hostile case {i}: dkim {:?} arc {:?} dmarc {:?}",
            e.dkim
                .iter()
                .map(|d| (d.result, d.reason.as_str()))
                .collect::<Vec<_>>(),
            (e.arc.result, &e.arc.reason),
            e.dmarc.result
        );
        assert!(!e.is_temporary(), "case {i}: {e:?}");
        assert!(
            e.dkim.iter().all(|d| d.result != AuthResult::Pass),
            "case {i}: no forged pass: {e:?}"
        );
    }
    // The non-base64 key: a permanent error on that signature, said so.
    let e = ev.evaluate(&cases[0], &smtp).await;
    assert_eq!(e.dkim[0].result, AuthResult::PermError, "{e:?}");
    assert!(!e.dkim[0].reason.is_empty(), "{e:?}");
    // An unreadable signature is listed, not dropped.
    let e = ev.evaluate(&cases[2], &smtp).await;
    assert_eq!(e.dkim.len(), 1, "{e:?}");
    assert_eq!(e.dkim[0].result, AuthResult::PermError, "{e:?}");
    // A lone ARC-Seal is a broken chain, and is not sealed over.
    let e = ev.evaluate(&cases[3], &smtp).await;
    assert_eq!(e.arc.result, AuthResult::Fail, "{e:?}");
    let sealer = Sealer::new(&list_keys()[1]).expect("sealer");
    assert!(sealer
        .seal(&cases[3], &e.auth_results, e.arc.result)
        .is_err());
    assert!(sealer
        .seal(&cases[4], &e.auth_results, e.arc.result)
        .is_err());
}

#[tokio::test]
async fn resolver_reads_published_keys_and_tells_timeout_from_absence() {
    let Some(server) = full_dns(&[]) else { return };
    let cfg = DnsConfig {
        resolvers: vec![server.addr()],
        timeout_secs: 1,
        attempts: 1,
        cache_size: 0,
    };
    let r = Resolver::new(&cfg).expect("resolver");
    for k in list_keys() {
        let txt = r.txt(&k.dns_name()).await.expect("published");
        assert_eq!(txt, k.dns_txt().unwrap(), "{}", k.dns_name());
    }
    use listrelay::auth::resolver::Lookup;
    assert!(matches!(
        r.txt("nokey._domainkey.lists.example.org").await,
        Err(Lookup::NotFound(_))
    ));
    server.pause();
    let t = r.txt(&list_keys()[0].dns_name()).await;
    server.resume();
    assert!(matches!(t, Err(Lookup::Temporary(_))), "{t:?}");
    assert!(r.txt(&list_keys()[0].dns_name()).await.is_ok());
}

/// Signing cost per copy (run with `cargo test --release --test auth
/// signing_cost -- --ignored --nocapture`): body hash once per post, then
/// one signature per envelope, for RSA-2048 and Ed25519.
#[test]
#[ignore]
fn signing_cost() {
    let body =
        "A line of a typical post, about seventy characters long, for hashing.\r\n".repeat(300);
    let shared = format!(
        "{}\r\n{body}",
        String::from_utf8_lossy(&list_copy(POST, true, false))
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
    );
    for (name, key) in [
        ("rsa-sha256", &list_keys()[0]),
        ("ed25519-sha256", &list_keys()[1]),
    ] {
        let signer = Signer::new(std::slice::from_ref(key)).expect("signer");
        let n = 2000;
        let t = std::time::Instant::now();
        let post = signer.for_post(shared.as_bytes());
        let hashed = t.elapsed();
        for i in 0..n {
            let slice = format!("List-Unsubscribe: <https://lists.example.org/u/{i}>\r\n");
            post.sign_envelope(slice.as_bytes(), 1).expect("sign");
        }
        let per = (t.elapsed() - hashed) / n;
        eprintln!(
            "{name}: body hash of {} bytes once {hashed:?}; per envelope {per:?} ({:.0}/s)",
            shared.len(),
            1.0 / per.as_secs_f64()
        );
    }
}
