//! Hand-written samples of each bounce format the parser supports.

use listrelay::bounce::{parse, BounceReport, Kind, Reason};

fn sample(name: &str) -> BounceReport {
    let path = format!("{}/tests/bounce-samples/{name}", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse(&raw)
}

struct Case {
    file: &'static str,
    kind: Kind,
    recipients: &'static [&'static str],
    hard: Option<bool>,
    status: Option<&'static str>,
    reason: Option<Reason>,
}

const CASES: &[Case] = &[
    Case {
        file: "postfix-dsn.eml",
        kind: Kind::Bounce,
        recipients: &["alice@example.net"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    Case {
        file: "exim-dsn.eml",
        kind: Kind::Bounce,
        recipients: &["bob@example.com"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    Case {
        file: "exim-dsn-crlf.eml",
        kind: Kind::Bounce,
        recipients: &["bob@example.com"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    Case {
        file: "qmail.eml",
        kind: Kind::Bounce,
        recipients: &["carol@example.com"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    Case {
        file: "qmail-cr.eml",
        kind: Kind::Bounce,
        recipients: &["carol@example.com"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    Case {
        file: "exchange-ndr.eml",
        kind: Kind::Bounce,
        recipients: &["dave@contoso.example.com"],
        hard: Some(true),
        status: Some("5.1.10"),
        reason: Some(Reason::UserUnknown),
    },
    Case {
        file: "gmail.eml",
        kind: Kind::Bounce,
        recipients: &["erin@example.org"],
        hard: Some(false),
        status: Some("5.2.2"),
        reason: Some(Reason::MailboxFull),
    },
    Case {
        file: "sendmail-dsn.eml",
        kind: Kind::Bounce,
        recipients: &["frank@example.net"],
        hard: Some(true),
        status: Some("5.1.2"),
        reason: Some(Reason::HostUnknown),
    },
    Case {
        file: "autoreply.eml",
        kind: Kind::AutoReply,
        recipients: &[],
        hard: None,
        status: None,
        reason: None,
    },
    Case {
        file: "vacation.eml",
        kind: Kind::AutoReply,
        recipients: &[],
        hard: None,
        status: None,
        reason: None,
    },
    Case {
        file: "success-dsn.eml",
        kind: Kind::DeliveryNotice,
        recipients: &[],
        hard: None,
        status: None,
        reason: None,
    },
    Case {
        file: "arf.eml",
        kind: Kind::Feedback,
        recipients: &["kim@example.com"],
        hard: None,
        status: None,
        reason: Some(Reason::Feedback),
    },
    Case {
        file: "dmarc-policy.eml",
        kind: Kind::Bounce,
        recipients: &["leo@example.com"],
        hard: Some(false),
        status: Some("5.7.26"),
        reason: Some(Reason::Policy),
    },
    Case {
        file: "mailbox-full.eml",
        kind: Kind::Bounce,
        recipients: &["mallory@example.com"],
        hard: Some(false),
        status: Some("5.2.2"),
        reason: Some(Reason::MailboxFull),
    },
    Case {
        file: "delayed-dsn.eml",
        kind: Kind::Delay,
        recipients: &["nick@example.com"],
        hard: Some(false),
        status: Some("4.4.1"),
        reason: Some(Reason::Transient),
    },
    // The failed address is named only in X-Failed-Recipients: a group
    // system's prose rejection. The To and Cc of the returned message are
    // not taken.
    Case {
        file: "group-rejection.eml",
        kind: Kind::Bounce,
        recipients: &["team-list@groups.example.org"],
        hard: Some(false),
        status: None,
        reason: Some(Reason::Other),
    },
    // An Exim redirection ("save to"): the text names a file, the header the
    // address.
    Case {
        file: "exim-redirect-full.eml",
        kind: Kind::Bounce,
        recipients: &["quentin@example.com"],
        hard: Some(false),
        status: Some("5.2.2"),
        reason: Some(Reason::MailboxFull),
    },
    // An address alone on its line in the report's list is kept even when
    // it is a role address.
    Case {
        file: "listed-role-address.eml",
        kind: Kind::Bounce,
        recipients: &["postmaster@shop.example.jp"],
        hard: Some(false),
        status: None,
        reason: Some(Reason::MailboxFull),
    },
    // ... or the report's own To (a message the sender sent to itself).
    Case {
        file: "self-addressed.eml",
        kind: Kind::Bounce,
        recipients: &["uma@example.fr"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    // A nested multipart whose boundary line is not folded: the raw body is
    // read; RFC 5321's "Requested action not taken" marks the failure.
    Case {
        file: "broken-boundary.eml",
        kind: Kind::Bounce,
        recipients: &["5550100@sms.example.com"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    // "User unknown" only after the message was sent (end of DATA, named in
    // the text part, not in the Diagnostic-Code): a filter, not the address.
    Case {
        file: "postfix-data-stage.eml",
        kind: Kind::Bounce,
        recipients: &["xavier@mobile.example.ne.jp"],
        hard: Some(false),
        status: Some("5.0.0"),
        reason: Some(Reason::Policy),
    },
    // The remote server's own code (after its reply code) wins over the
    // reporting MTA's Status field of the same class.
    Case {
        file: "status-vs-remote-code.eml",
        kind: Kind::Bounce,
        recipients: &["zack@mail.example.net"],
        hard: Some(false),
        status: Some("5.7.1"),
        reason: Some(Reason::Policy),
    },
    // A bare "Status: 5.0.0" without Diagnostic-Code is refined from the
    // text that names the address.
    Case {
        file: "opensmtpd-bare-status.eml",
        kind: Kind::Bounce,
        recipients: &["bert@example.net"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    // Issue 12, hard/soft: Sendmail's transcript shows the refusal
    // answered DATA: about the message, not the address (soft).
    Case {
        file: "sendmail-dsn-after-data.eml",
        kind: Kind::Bounce,
        recipients: &["dora@example.net"],
        hard: Some(false),
        status: Some("5.0.0"),
        reason: Some(Reason::Policy),
    },
    // ...but with pipelining, a reply followed by DATA's own "503 Need
    // RCPT" answered the RCPT: the mailbox is unknown (hard).
    Case {
        file: "sendmail-dsn-pipelined-rcpt.eml",
        kind: Kind::Bounce,
        recipients: &["emil@example.net"],
        hard: Some(true),
        status: Some("5.0.0"),
        reason: Some(Reason::UserUnknown),
    },
    // A 5.1.1 whose text cites spam, not a missing mailbox: soft.
    Case {
        file: "policy-wording-user-status.eml",
        kind: Kind::Bounce,
        recipients: &["fritz@example.net"],
        hard: Some(false),
        status: Some("5.1.1"),
        reason: Some(Reason::Policy),
    },
    // Issue 12 kind 1: RFC 3834 asks report generators to set
    // `Auto-Submitted: auto-replied` too; a report's wording and a failed
    // address make it a bounce.
    Case {
        file: "auto-replied-bounce.eml",
        kind: Kind::Bounce,
        recipients: &["greta@example.net"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    // ...while a vacation subject keeps a reply an auto-reply.
    Case {
        file: "auto-replied-vacation.eml",
        kind: Kind::AutoReply,
        recipients: &[],
        hard: None,
        status: None,
        reason: None,
    },
    // Issue 12 kind 3: only the address of each form is the recipient:
    // type prefix, source route, quoted local part (quotes kept), display
    // name, "old <new>".
    Case {
        file: "address-forms.eml",
        kind: Kind::Bounce,
        recipients: &[
            "jo@example.net",
            "karl@example.net",
            "\"lena..ott\"@example.com",
            "mia@example.net",
            "nina@example.net",
        ],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    // The header alone does not make an ordinary message a bounce.
    Case {
        file: "failed-recipients-not-bounce.eml",
        kind: Kind::NotBounce,
        recipients: &[],
        hard: None,
        status: None,
        reason: None,
    },
    // RFC 3464 section 2: the human-readable part explains a diagnostic
    // that says nothing classifiable by itself.
    Case {
        file: "diagnostic-explained-by-text.eml",
        kind: Kind::Bounce,
        recipients: &["greta@example.net"],
        hard: Some(true),
        status: Some("5.1.0"),
        reason: Some(Reason::UserUnknown),
    },
    // RFC 7505: a null MX says the domain accepts no mail at all.
    Case {
        file: "exim-null-mx.eml",
        kind: Kind::Bounce,
        recipients: &["hans@nomail.example.net"],
        hard: Some(true),
        status: Some("5.1.2"),
        reason: Some(Reason::HostUnknown),
    },
    // RFC 3463 X.7.X from the remote server: its own words decide, not the
    // reporting MTA's "Unknown address error" around them.
    Case {
        file: "remote-policy-under-address-wrapper.eml",
        kind: Kind::Bounce,
        recipients: &["ida@example.net"],
        hard: Some(false),
        status: Some("5.7.1"),
        reason: Some(Reason::Policy),
    },
    // Issue 12 kind 2: RFC 5965's required fields written into the text
    // (no `message/feedback-report` part) under `Auto-Submitted:
    // auto-replied` still make a feedback report, not an auto-reply.
    Case {
        file: "arf-inline-auto-replied.eml",
        kind: Kind::Feedback,
        recipients: &["quinn@mail.example.net"],
        hard: None,
        status: None,
        reason: Some(Reason::Feedback),
    },
    // Issue 12 kind 4: a Message-ID, the list's own (VERP) bounce address
    // and a Return-Path are not recipients.
    Case {
        file: "not-recipients.eml",
        kind: Kind::Bounce,
        recipients: &["zack@example.net"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    // Issue 12 kind 5: a multi-recipient plain-text report listing its
    // recipients in a run after its announcement; the one that happens to
    // start a line is not the only one.
    Case {
        file: "plain-text-recipient-run.eml",
        kind: Kind::Bounce,
        recipients: &["amy@example.net", "bob@example.net", "cy@example.net"],
        hard: Some(true),
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    // Recipients that disagree give no report-level verdict (each one's
    // is checked in PER_RECIPIENT).
    Case {
        file: "sendmail-v5-multi.eml",
        kind: Kind::Bounce,
        recipients: &[
            "rosa@example.net",
            "sami@flaky.example.net",
            "tara@nowhere.example.com",
        ],
        hard: None,
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
    Case {
        file: "dsn-text-per-recipient.eml",
        kind: Kind::Bounce,
        recipients: &["uma@example.net", "vera@example.net"],
        hard: None,
        status: Some("5.1.1"),
        reason: Some(Reason::UserUnknown),
    },
];

#[test]
fn samples() {
    let mut failures = Vec::new();
    for c in CASES {
        let r = sample(c.file);
        let got = (
            r.kind,
            r.recipients.clone(),
            r.hard,
            r.status.clone(),
            r.reason,
        );
        let want = (
            c.kind,
            c.recipients
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            c.hard,
            c.status.map(str::to_string),
            c.reason,
        );
        if got != want {
            failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", c.file));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each recipient's own verdict, for reports whose recipients disagree
/// (the report-level `hard` is then `None`): file, recipient, reason, hard.
const PER_RECIPIENT: &[(&str, &str, Reason, bool)] = &[
    // A name server that failed to answer (RFC 1035 SERVFAIL, Postfix's
    // "Malformed or unexpected name server reply") says nothing about the
    // domain, whatever the X.4.4 status; "Host not found" (NXDOMAIN) does.
    (
        "postfix-dns-failure.eml",
        "olga@broken-dns.example.net",
        Reason::Other,
        false,
    ),
    (
        "postfix-dns-failure.eml",
        "pia@gone.example.net",
        Reason::HostUnknown,
        true,
    ),
    // Issue 12 kind 5: an older (v5) Sendmail's transcript writes a host's
    // lines before each address's own "554 <a@b>... reason" line; what
    // follows that line is about the next address.
    (
        "sendmail-v5-multi.eml",
        "rosa@example.net",
        Reason::UserUnknown,
        true,
    ),
    (
        "sendmail-v5-multi.eml",
        "sami@flaky.example.net",
        Reason::Other,
        false,
    ),
    (
        "sendmail-v5-multi.eml",
        "tara@nowhere.example.com",
        Reason::HostUnknown,
        true,
    ),
    // A multi-recipient report whose DSN gives only "5.0.0": each
    // recipient's own line of the human-readable part explains it, not
    // the next recipient's.
    (
        "dsn-text-per-recipient.eml",
        "uma@example.net",
        Reason::UserUnknown,
        true,
    ),
    (
        "dsn-text-per-recipient.eml",
        "vera@example.net",
        Reason::MailboxFull,
        false,
    ),
];

#[test]
fn per_recipient_verdicts() {
    let mut failures = Vec::new();
    for (file, rcpt, reason, hard) in PER_RECIPIENT {
        let r = sample(file);
        let got = r
            .details
            .iter()
            .find(|d| d.recipient == *rcpt)
            .map(|d| (d.reason, d.hard));
        if got != Some((*reason, *hard)) {
            failures.push(format!(
                "{file} {rcpt}: got {got:?}, want {:?} (recipients {:?})",
                (reason, hard),
                r.recipients
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn line_endings_agree() {
    let lf = std::fs::read(format!(
        "{}/tests/bounce-samples/postfix-dsn.eml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let crlf: Vec<u8> = String::from_utf8(lf.clone())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    let cr: Vec<u8> = lf
        .iter()
        .map(|&b| if b == b'\n' { b'\r' } else { b })
        .collect();
    let a = parse(&lf);
    assert_eq!(a.recipients, ["alice@example.net"]);
    assert_eq!(parse(&crlf), a);
    assert_eq!(parse(&cr), a);
}

#[test]
fn json_has_the_scored_fields() {
    let v = serde_json::to_value(sample("postfix-dsn.eml")).unwrap();
    assert_eq!(v["recipients"], serde_json::json!(["alice@example.net"]));
    assert_eq!(v["hard"], serde_json::json!(true));
    assert_eq!(v["status"], serde_json::json!("5.1.1"));
    assert_eq!(v["kind"], serde_json::json!("bounce"));
    assert_eq!(v["reason"], serde_json::json!("user_unknown"));
}

#[test]
fn policy_and_feedback_do_not_count_against_members() {
    assert!(!Reason::Policy.counts_against_member());
    assert!(!Reason::Feedback.counts_against_member());
    assert!(Reason::MailboxFull.counts_against_member());
}

/// A tiny deterministic generator, so the test needs no extra crate.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn never_panics_on_random_or_truncated_input() {
    let dir = format!("{}/tests/bounce-samples", env!("CARGO_MANIFEST_DIR"));
    let mut rng = Lcg(0x5eed);
    let alphabet = b"\r\n :;<>@.-=\"abcdefXYZ0123456789\t/{}[]()#?\\\x00\xff\xc3";
    for entry in std::fs::read_dir(&dir).unwrap() {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        // Every truncation point (in steps), and random byte flips.
        for cut in (0..raw.len()).step_by(7) {
            let _ = parse(&raw[..cut]);
        }
        for _ in 0..50 {
            let mut m = raw.clone();
            for _ in 0..(1 + rng.next() % 8) {
                let i = (rng.next() as usize) % m.len().max(1);
                if let Some(b) = m.get_mut(i) {
                    *b = alphabet[(rng.next() as usize) % alphabet.len()];
                }
            }
            let _ = parse(&m);
        }
    }
    for len in [0usize, 1, 2, 10, 100, 1000, 5000] {
        let buf: Vec<u8> = (0..len)
            .map(|_| alphabet[(rng.next() as usize) % alphabet.len()])
            .collect();
        let _ = parse(&buf);
    }
}

/// The hostile bounces of issue 11 item 7 (also written by
/// bench/bounce-attacks.py for timing the release binary).
mod attack {
    pub const HEAD: &str = "From: MAILER-DAEMON@example.org\nTo: list-bounces@example.com\n\
        Subject: Undeliverable Mail\n\nDelivery failed 20 user@example.net\n";

    /// A body repeating a four-line header-like block `n` times.
    pub fn repeat(n: usize) -> Vec<u8> {
        let block = "X-Mailman-Version: 2.0.3 (101270)\nReply-To: <postmaster@example.org>\n\
            Content: text\n\n";
        format!("{HEAD}{}", block.repeat(n)).into_bytes()
    }

    /// One line of `n` characters made of address-like words.
    pub fn long_line(n: usize) -> Vec<u8> {
        let line: String = "a@b.example ".chars().cycle().take(n).collect();
        format!("{HEAD}{line}\n").into_bytes()
    }

    /// A report listing `n` failed addresses, one a line.
    pub fn addresses(n: usize) -> Vec<u8> {
        let list: String = (0..n)
            .map(|i| format!("  failed-recipient-{i:06}@example.net\n"))
            .collect();
        format!("{HEAD}The following addresses failed:\n\n{list}").into_bytes()
    }

    /// The head of a delivery report with boundary `outer` and its text part.
    fn report(outer: &str) -> String {
        format!(
            "From: MAILER-DAEMON@example.org\nTo: list-bounces@example.com\n\
             Subject: Undeliverable Mail\nMIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"{outer}\"\n\n\
             --{outer}\nContent-Type: text/plain\n\nDelivery failed 20 user@example.net\n"
        )
    }

    /// A report of `n` multipart parts whose boundary never comes: each sent
    /// mail-parser to the end of the message and back (fuzzing, docs/fuzzing.md).
    pub fn multiparts(n: usize) -> Vec<u8> {
        let part = "--outer\nContent-Type: multipart/mixed; boundary=\"never\"\n\ntext\n";
        format!("{}{}--outer--\n", report("outer"), part.repeat(n)).into_bytes()
    }

    /// A report whose boundary is `n` dashes and an `x`, then `n` dashes:
    /// mail-parser compared the boundary at every `--`.
    pub fn dashes(n: usize) -> Vec<u8> {
        let boundary = format!("{}x", "-".repeat(n));
        format!("{}{}\n", report(&boundary), "-".repeat(n)).into_bytes()
    }
}

/// Fastest of three parses of `raw`.
fn parse_time(raw: &[u8]) -> std::time::Duration {
    // The fastest of several runs: a run preempted on a busy machine only
    // makes its own sample slow.
    (0..7)
        .map(|_| {
            let t = std::time::Instant::now();
            std::hint::black_box(parse(raw));
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Parsing 8 times the input within the budget takes about 8 times as
/// long, not 64 (quadratic) : the ratio, not a wall-clock threshold, so it
/// holds in debug and release builds alike. The margin (24) absorbs a busy
/// machine; the quadratic parser measured 60 and more.
#[test]
fn parse_time_is_linear_in_the_input() {
    type Make = fn(usize) -> Vec<u8>;
    let kinds: [(&str, Make, usize); 5] = [
        ("repeat", attack::repeat, 500),
        ("long line", attack::long_line, 50_000),
        ("addresses", attack::addresses, 1_000),
        ("multiparts", attack::multiparts, 500),
        ("dashes", attack::dashes, 4_000),
    ];
    for (name, make, n) in kinds {
        let (small, large) = (make(n), make(8 * n));
        assert!(
            large.len() <= listrelay::bounce::MAX_EXAMINED_BYTES,
            "{name}"
        );
        // Warm up allocator and caches.
        parse(&small);
        let ratio = parse_time(&large).as_secs_f64() / parse_time(&small).as_secs_f64().max(1e-6);
        assert!(
            ratio < 24.0,
            "{name}: 8x the input took {ratio:.1}x the time"
        );
    }
}

/// Beyond the budget the parser decides on what it examined: a message of
/// several MB gives exactly the report of its examined start, and still
/// names the failed recipient written there.
#[test]
fn huge_hostile_bounces_are_parsed_within_the_budget() {
    use listrelay::bounce::{MAX_EXAMINED_BYTES, MAX_EXAMINED_LINES};
    for raw in [attack::repeat(60_000), attack::long_line(5_000_000)] {
        assert!(raw.len() > 4 * MAX_EXAMINED_BYTES);
        let report = parse(&raw);
        assert_eq!(report.kind, Kind::Bounce);
        let end = raw
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(MAX_EXAMINED_LINES - 1)
            .map_or(raw.len(), |(i, _)| i + 1)
            .min(MAX_EXAMINED_BYTES);
        assert_eq!(parse(&raw[..end]), report);
    }
    assert_eq!(
        parse(&attack::repeat(60_000)).recipients,
        ["user@example.net"]
    );
    let listed = parse(&attack::addresses(150_000)).recipients;
    assert!(listed.len() < MAX_EXAMINED_LINES, "{}", listed.len());
    assert_eq!(
        listed[..2],
        [
            "failed-recipient-000000@example.net",
            "failed-recipient-000001@example.net"
        ]
    );
}
