//! Issue 10 end to end: sender evaluation before the policy, DMARC
//! mitigation, ARC sealing and signed notices, checked the way a receiver
//! would: posts signed by dkimpy (as the author's MTA), delivered over LMTP
//! with XFORWARD, every copy the sink receives verified by dkimpy against
//! the test DNS server (dnsmasq) that also serves listrelay's resolver.
//!
//! Needs dnsmasq and python3-dkim (scripts/install-test-deps).

mod support;

use std::time::Duration;

use support::lmtp::{dot_stuff, smtp_send, Client, Reply};
use support::postfix::Postfix;
use support::server::Listrelay;
use support::sink::{Sink, Transaction};
use support::{dkimpy, dns, ports};

const DOMAIN: &str = "lists.example.org";
const WAIT: Duration = Duration::from_secs(30);
const MEMBER: &str = "m1@d1.example.net";

fn text(t: &Transaction) -> String {
    String::from_utf8_lossy(t.data.as_deref().unwrap_or_default()).into_owned()
}

/// A header's unfolded value (first occurrence), `None` when absent.
fn header(msg: &str, name: &str) -> Option<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or_default();
    let unfolded = head.replace("\r\n\t", " ").replace("\r\n ", " ");
    let prefix = format!("{}:", name.to_ascii_lowercase());
    unfolded
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}

/// A post from `alice@DOMAIN` to `list`, signed by the author domain's key
/// unless `signed` is false.
fn post(domain: &str, list: &str, subject: &str, signed: bool) -> Vec<u8> {
    let raw = format!(
        "From: Alice Example <alice@{domain}>\r\nTo: {list}\r\nSubject: {subject}\r\n\
         Date: Tue, 1 Dec 2026 08:00:00 +0000\r\nMessage-ID: <{}.{domain}@{domain}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         Hello list,\r\nthis is {subject}.\r\n",
        subject.replace(' ', "-")
    );
    if signed {
        dkimpy::sign(raw.as_bytes(), &dkimpy::author(domain))
    } else {
        raw.into_bytes()
    }
}

/// One LMTP transaction as Postfix sends it with
/// `lmtp_send_xforward_command = yes`: the client's ADDR and HELO first.
async fn lmtp_xforward(
    port: u16,
    addr: &str,
    helo: &str,
    from: &str,
    rcpt: &str,
    msg: &[u8],
) -> Reply {
    let mut c = Client::connect_greeted(("127.0.0.1", port)).await.unwrap();
    let lhlo = c.cmd("LHLO mx.lists.example.org").await.unwrap();
    assert!(
        lhlo.text().contains("XFORWARD NAME ADDR HELO"),
        "{}",
        lhlo.text()
    );
    let x = c
        .cmd(&format!(
            "XFORWARD NAME=mta.example ADDR={addr} HELO={helo} PROTO=ESMTP"
        ))
        .await
        .unwrap();
    assert_eq!(x.code, 250, "{}", x.text());
    assert!(c
        .cmd(&format!("MAIL FROM:<{from}>"))
        .await
        .unwrap()
        .is_positive());
    assert!(c
        .cmd(&format!("RCPT TO:<{rcpt}>"))
        .await
        .unwrap()
        .is_positive());
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send(&dot_stuff(msg)).await.unwrap();
    c.read_reply().await.unwrap()
}

/// A server with an RSA and an Ed25519 key for the list domain, resolving
/// through the test DNS server, and the lists of `lists`.
struct Site {
    lr: Listrelay,
    sink: Sink,
    dns: dns::DnsServer,
    lmtp_port: u16,
}

/// A list to create: address, members, `list set` pairs.
type ListSpec<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);

async fn site(lists: &[ListSpec<'_>]) -> Option<Site> {
    if let Some(m) = dkimpy::missing() {
        eprintln!("skipped: {m}");
        return None;
    }
    let sink = Sink::builder().keep_data(true).start().await.unwrap();
    let (lmtp_port, relay) = (ports::free_port(), sink.port());
    site_with(lists, sink, lmtp_port, relay)
}

/// [`site`] re-injecting into `relay` (a real MTA in front of the sink).
fn site_with(lists: &[ListSpec<'_>], sink: Sink, lmtp_port: u16, relay: u16) -> Option<Site> {
    let mut lr = Listrelay::new(lmtp_port, relay, "[moderation]\npoll_interval_ms = 100\n");
    let zone = dkimpy::zone_with_list_keys(&lr, DOMAIN);
    let dns = match dns::DnsServer::start(&zone) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: {e}");
            return None;
        }
    };
    let mut config = std::fs::read_to_string(&lr.config).unwrap();
    config.push_str(&format!(
        "[dns]\nresolvers = [\"{}\"]\ntimeout_secs = 1\nattempts = 1\n",
        dns.addr()
    ));
    std::fs::write(&lr.config, config).unwrap();
    for (list, members, settings) in lists {
        let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        lr.open_list(list, &members, settings);
    }
    lr.start();
    Some(Site {
        lr,
        sink,
        dns,
        lmtp_port,
    })
}

impl Site {
    async fn copies(&self, n: usize, subject: &str) -> Vec<String> {
        self.sink
            .wait_records(n, WAIT, |t| text(t).contains(subject))
            .await
            .unwrap_or_else(|r| {
                panic!(
                    "copies of {subject:?} missing: {r:?}\n{}",
                    self.lr.log_text()
                )
            })
            .iter()
            .map(text)
            .collect()
    }

    fn verify(&self, msg: &str) -> dkimpy::Verdict {
        dkimpy::verify(msg.as_bytes(), &self.dns.addr())
    }

    /// The author's MTA delivering through Postfix: SPF-authorised client.
    async fn post_from_author(&self, domain: &str, list: &str, msg: &[u8]) {
        let r = lmtp_xforward(
            self.lmtp_port,
            dkimpy::AUTHOR_MTA_IP,
            &format!("mta.{domain}"),
            &format!("alice@{domain}"),
            list,
            msg,
        )
        .await;
        assert_eq!(r.code, 250, "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mitigation_keeps_copies_passing_dmarc_and_arc_seals_them() {
    let settings_munge: &[(&str, &str)] = &[
        ("footer", "leave: munge-leave@lists.example.org"),
        ("subject_prefix", "[munge] "),
        ("dmarc_mitigation", "munge_from"),
    ];
    let settings_intact: &[(&str, &str)] = &[("dmarc_mitigation", "munge_from")];
    let settings_wrap: &[(&str, &str)] = &[
        ("dmarc_mitigation", "wrap"),
        ("dmarc_mitigate_when", "always"),
        ("footer", "leave: wrap-leave@lists.example.org"),
    ];
    let Some(s) = site(&[
        ("munge@lists.example.org", &[MEMBER], settings_munge),
        ("intact@lists.example.org", &[MEMBER], settings_intact),
        ("wrap@lists.example.org", &[MEMBER], settings_wrap),
    ])
    .await
    else {
        return;
    };

    // 1. p=reject author, footer and prefix: the copy is munged, our DKIM
    //    passes and aligns with the new From; a new ARC chain (cv=none) verifies.
    s.post_from_author(
        "reject.test",
        "munge@lists.example.org",
        &post(
            "reject.test",
            "munge@lists.example.org",
            "footer case",
            true,
        ),
    )
    .await;
    let copy = &s.copies(1, "footer-case").await[0];
    assert_eq!(
        header(copy, "From").as_deref(),
        Some("\"Alice Example via munge\" <munge@lists.example.org>"),
        "{copy}"
    );
    assert_eq!(
        header(copy, "Reply-To").as_deref(),
        Some("Alice Example <alice@reject.test>")
    );
    assert!(
        copy.contains("-- \r\nleave: munge-leave@"),
        "footer: {copy}"
    );
    let v = s.verify(copy);
    assert!(
        v.passes_for(DOMAIN),
        "list DKIM (aligned with From {DOMAIN}): {v:?}\n{copy}"
    );
    assert!(
        !v.passes_for("reject.test"),
        "the footer broke the author's signature: {v:?}"
    );
    assert_eq!(v.arc.cv, "pass", "our new ARC chain: {v:?}\n{copy}");
    let seal = header(copy, "ARC-Seal").unwrap();
    assert!(seal.contains("i=1") && seal.contains("cv=none"), "{seal}");
    let aar = header(copy, "ARC-Authentication-Results").unwrap();
    assert!(
        aar.contains("dkim=pass") && aar.contains("dmarc=pass"),
        "{aar}"
    );

    // 2. An intact signed post under `breaks`: From kept, author DKIM passes.
    s.post_from_author(
        "reject.test",
        "intact@lists.example.org",
        &post(
            "reject.test",
            "intact@lists.example.org",
            "intact case",
            true,
        ),
    )
    .await;
    let copy = &s.copies(1, "intact-case").await[0];
    assert_eq!(
        header(copy, "From").as_deref(),
        Some("Alice Example <alice@reject.test>")
    );
    assert!(header(copy, "Reply-To").is_none(), "{copy}");
    let v = s.verify(copy);
    assert!(
        v.passes_for("reject.test") && v.passes_for(DOMAIN),
        "{v:?}\n{copy}"
    );

    // 4. An ARC chain that arrives valid leaves valid, with cv=pass.
    let signed = post("reject.test", "intact@lists.example.org", "arc case", true);
    let forwarded = [
        &b"Authentication-Results: fwd.none.test; dkim=pass header.d=reject.test; dmarc=pass\r\n"[..],
        &signed[..],
    ]
    .concat();
    let arced = dkimpy::arc_sign(&forwarded, &dkimpy::author("none.test"), "fwd.none.test");
    s.post_from_author("none.test", "intact@lists.example.org", &arced)
        .await;
    let copy = &s.copies(1, "arc-case").await[0];
    let v = s.verify(copy);
    assert_eq!(v.arc.cv, "pass", "{v:?}\n{copy}");
    let seal = header(copy, "ARC-Seal").unwrap();
    assert!(
        seal.contains("i=2") && seal.contains("cv=pass"),
        "our set follows the valid chain: {seal}"
    );
    assert!(
        header(copy, "ARC-Authentication-Results")
            .unwrap()
            .contains("arc=pass"),
        "{copy}"
    );

    // 5. wrap: a well-formed MIME message from the list, the post inside
    //    with the author's signature still valid.
    s.post_from_author(
        "quarantine.test",
        "wrap@lists.example.org",
        &post(
            "quarantine.test",
            "wrap@lists.example.org",
            "wrap case",
            true,
        ),
    )
    .await;
    let copy = &s.copies(1, "wrap-case").await[0];
    let m = mail_parser::MessageParser::new()
        .parse(copy.as_bytes())
        .expect("MIME");
    assert_eq!(
        m.from().unwrap().first().unwrap().address(),
        Some("wrap@lists.example.org")
    );
    assert!(header(copy, "Content-Type")
        .unwrap()
        .starts_with("multipart/mixed; boundary="));
    let inner = m
        .attachment(0)
        .and_then(|a| a.message())
        .expect("the post attached as message/rfc822");
    assert_eq!(inner.subject(), Some("wrap case"));
    assert!(
        s.verify(copy).passes_for(DOMAIN),
        "outer signed by the list"
    );
    let v = s.verify(&String::from_utf8_lossy(inner.raw_message()));
    assert!(v.passes_for("quarantine.test"), "inner untouched: {v:?}");

    // `queue` and the log show the checks; nothing failed on the way.
    let log = s.lr.log_text();
    assert!(log.contains("sender checked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_member_from_is_held_and_dns_failure_only_delays() {
    let owner = "owner@d2.example.net";
    let forged_settings: &[(&str, &str)] = &[("owners", owner), ("nonmember_action", "hold")];
    let Some(s) = site(&[
        (
            "forged@lists.example.org",
            &[MEMBER, "alice@reject.test"],
            forged_settings,
        ),
        ("late@lists.example.org", &[MEMBER], &[]),
    ])
    .await
    else {
        return;
    };

    // 3. A member's From at a p=reject domain, not signed by it and sent
    //    from a host its SPF does not allow: held, the moderators told why.
    let r = lmtp_xforward(
        s.lmtp_port,
        "198.51.100.7",
        "evil.example",
        "alice@reject.test",
        "forged@lists.example.org",
        &post(
            "reject.test",
            "forged@lists.example.org",
            "forged case",
            false,
        ),
    )
    .await;
    assert_eq!(r.code, 250);
    let notice = s
        .sink
        .wait_records(1, WAIT, |t| t.rcpts.iter().any(|r| r == owner))
        .await
        .unwrap_or_else(|r| panic!("no moderator notice: {r:?}\n{}", s.lr.log_text()));
    let n = text(&notice[0]);
    assert!(n.contains("reject.test publishes p=reject"), "{n}");
    assert!(n.contains("probably forged"), "{n}");
    assert!(
        n.contains("dmarc=fail"),
        "the checks are in the notice: {n}"
    );
    // 7. Notices are signed with the list domain's keys.
    let v = s.verify(&n);
    assert_eq!(
        v.dkim.iter().filter(|d| d.pass && d.d == DOMAIN).count(),
        2,
        "{v:?}"
    );
    let held = s.lr.cli_ok(&["held", "list", "forged@lists.example.org"]);
    assert!(held.contains("\tdmarc\t"), "{held}");
    let show = s.lr.cli(&[
        "held",
        "show",
        "forged@lists.example.org",
        "forged-case.reject.test@reject.test",
    ]);
    assert!(
        String::from_utf8_lossy(&show.stderr).contains("dmarc=fail"),
        "{show:?}"
    );
    assert!(
        !s.sink
            .records()
            .iter()
            .any(|t| t.rcpts.iter().any(|r| r == MEMBER) && text(t).contains("forged-case")),
        "no member got the forged post"
    );

    // 6. DNS does not answer: the post waits; it goes out once DNS is back.
    s.dns.pause();
    s.post_from_author(
        "quarantine.test",
        "late@lists.example.org",
        &post(
            "quarantine.test",
            "late@lists.example.org",
            "late case",
            true,
        ),
    )
    .await;
    // Each lookup times out (1 s, UDP then TCP): wait for the logged delay.
    let deadline = std::time::Instant::now() + WAIT;
    while !s.lr.log_text().contains("DNS did not answer") {
        assert!(
            std::time::Instant::now() < deadline,
            "no delay logged\n{}",
            s.lr.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !s.sink
            .records()
            .iter()
            .any(|t| text(t).contains("late-case")),
        "decided without DNS"
    );
    let queue = s.lr.cli_ok(&["queue"]);
    assert!(
        queue.contains("late@lists.example.org"),
        "still queued: {queue}"
    );
    s.dns.resume();
    let copy = &s.copies(1, "late-case").await[0];
    assert!(s.verify(copy).passes_for("quarantine.test"), "{copy}");
}

/// Copies that went through real Postfix (author's post in on the
/// Internet side, copies re-injected and relayed to the sink) verify in
/// dkimpy; and hostile authentication headers get a clear result, never
/// a crash or a stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_postfix_and_hostile_headers() {
    if let Some(m) = dkimpy::missing() {
        eprintln!("skipped: {m}");
        return;
    }
    let sink = Sink::builder().keep_data(true).start().await.unwrap();
    let lmtp_port = ports::free_port();
    let pf = Postfix::start_for_list(lmtp_port, sink.port(), "dev")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let settings: &[(&str, &str)] = &[
        ("subject_prefix", "[dev] "),
        ("dmarc_mitigation", "munge_from"),
        ("verp_percent", "100"),
    ];
    let members: &[&str] = &[MEMBER, "m2@d2.example.net"];
    let Some(s) = site_with(
        &[("dev@lists.example.org", members, settings)],
        sink,
        lmtp_port,
        pf.reinject_port,
    ) else {
        return;
    };
    let msg = post("reject.test", "dev@lists.example.org", "postfix case", true);
    smtp_send(
        pf.inbound_port,
        "alice@reject.test",
        &["dev@lists.example.org"],
        &msg,
    )
    .await
    .unwrap();
    for copy in s.copies(2, "postfix-case").await {
        assert!(
            header(&copy, "From")
                .unwrap()
                .ends_with("<dev@lists.example.org>"),
            "{copy}"
        );
        let v = s.verify(&copy);
        assert!(v.passes_for(DOMAIN), "{v:?}\n{copy}");
        assert_eq!(v.arc.cv, "pass", "{v:?}\n{copy}");
    }

    // Hostile headers straight over LMTP: a DKIM-Signature that is not a
    // tag list, a key that is not base64, ARC headers without a chain,
    // an Authentication-Results of garbage, and a 200 KB header.
    let huge = format!("X-Huge: {}\r\n", "a".repeat(200_000));
    let hostile = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; d=reject.test; s=sel1; b=!!!not base64!!!; bh=%%%; h=from\r\n\
         DKIM-Signature: ;;;===;;;\r\n\
         ARC-Seal: i=1; cv=none; a=rsa-sha256; d=none.test; s=sel1; b=AAAA\r\n\
         ARC-Authentication-Results: i=x; garbage\r\n\
         Authentication-Results: (((; dkim=😀\r\n{huge}\
         From: Alice Example <alice@none.test>\r\nTo: dev@lists.example.org\r\n\
         Subject: hostile case\r\nMessage-ID: <hostile-case@none.test>\r\n\r\nbody\r\n"
    );
    s.post_from_author("none.test", "dev@lists.example.org", hostile.as_bytes())
        .await;
    let copies = s.copies(2, "hostile-case").await;
    let v = s.verify(&copies[0]);
    assert!(v.passes_for(DOMAIN), "still signed by the list: {v:?}");
    let log = s.lr.log_text();
    assert!(!log.contains("panicked"), "{log}");
    let checked = log
        .lines()
        .find(|l| l.contains("sender checked") && l.contains("none.test"))
        .unwrap_or_else(|| panic!("no evaluation logged: {log}"));
    // The broken ARC headers are a broken chain, not a pass; DMARC still
    // passes through SPF (the author's MTA is authorised).
    assert!(
        checked.contains("arc=neutral") || checked.contains("arc=fail"),
        "{checked}"
    );
    assert!(checked.contains("dmarc=pass"), "{checked}");
    drop(pf);
}

/// A post whose sender checks wait on DNS (its domain's queries go
/// unanswered) holds only itself: a post that arrives behind it is checked,
/// planned and delivered meanwhile. The planner used to check one post at a
/// time, so every post behind waited out the slow one's resolver timeout
/// (5 s per dropped query by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_check_waiting_on_dns_holds_only_its_own_post() {
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let zone = dns::Zone::default().silent("slow.example", black_hole.local_addr().unwrap().port());
    let dns = match dns::DnsServer::start(&zone) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let sink = Sink::builder().keep_data(true).start().await.unwrap();
    let lmtp_port = ports::free_port();
    // One attempt of 20 s: far longer than the fast post needs.
    let mut lr = Listrelay::new(
        lmtp_port,
        sink.port(),
        &format!(
            "[moderation]\npoll_interval_ms = 100\n[dns]\nresolvers = [\"{}\"]\ntimeout_secs = 20\nattempts = 1\n",
            dns.addr()
        ),
    );
    let list = format!("chat@{DOMAIN}");
    lr.open_list(
        &list,
        &[MEMBER.to_string()],
        &[("nonmember_action", "accept")],
    );
    lr.start();

    let send = |domain: &'static str, subject: &'static str| {
        let list = list.clone();
        async move {
            let msg = post(domain, &list, subject, false);
            let from = format!("alice@{domain}");
            let r = lmtp_xforward(
                lmtp_port,
                "192.0.2.99",
                &format!("mta.{domain}"),
                &from,
                &list,
                &msg,
            )
            .await;
            assert_eq!(r.code, 250, "{}", r.text());
        }
    };
    send("slow.example", "slow post").await;
    // Its checks are under way once dnsmasq has forwarded a query of it.
    let end = std::time::Instant::now() + WAIT;
    while !dns.log().contains("slow.example") {
        assert!(
            std::time::Instant::now() < end,
            "no DNS query for the slow post:\n{}",
            lr.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send("fast.example", "fast post").await;
    sink.wait_records(1, WAIT, |t| text(t).contains("fast post"))
        .await
        .unwrap_or_else(|r| panic!("the fast post was not delivered: {r:?}\n{}", lr.log_text()));
    let log = lr.log_text();
    assert!(
        !log.contains("DNS did not answer"),
        "the fast post was delivered only after the slow post's DNS timeout:\n{log}"
    );
    assert!(
        sink.records()
            .iter()
            .all(|t| !text(t).contains("slow post")),
        "the slow post went out without its checks"
    );
    drop(black_hole);
}
