//! Issue 14, digests, end to end through real Postfix: posts to a list with
//! members in every delivery mode become one issue per form; the issue's
//! recipients are exactly the digest members of that form; its MIME
//! structure, parsed back by mail-parser, holds every post, and the plain
//! issue every post's text. A kill -9 while an issue is built or sent loses
//! and repeats nothing.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use support::lmtp::smtp_send;
use support::ports;
use support::postfix::Postfix;
use support::server::Listrelay;
use support::sink::{Sink, Transaction};

const LIST: &str = "dev@lists.example.org";
const WAIT: Duration = Duration::from_secs(30);
/// One member per mode: what each must receive differs.
const REGULAR: &str = "reg@d1.example.net";
const NOMAIL: &str = "quiet@d1.example.net";
const MIME_1: &str = "mime1@d2.example.net";
const MIME_2: &str = "mime2@d3.example.net";
const PLAIN: &str = "plain@d2.example.net";

fn text(t: &Transaction) -> String {
    String::from_utf8_lossy(t.data.as_deref().unwrap_or_default()).into_owned()
}

/// A post with a recognisable subject, Message-ID and text.
fn post(n: usize) -> Vec<u8> {
    format!(
        "From: Poster {n} <poster{n}@example.net>\r\nTo: {LIST}\r\nSubject: digest topic {n}\r\n\
         Date: Tue, 1 Dec 2026 08:0{n}:00 +0000\r\nMessage-ID: <digest-post-{n}@example.net>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         The words of post {n}.\r\n"
    )
    .into_bytes()
}

/// Sets a member's delivery mode (the modes branch's command).
fn set_mode(lr: &Listrelay, member: &str, mode: &str) {
    lr.cli_ok(&["member", "set", LIST, member, "delivery_mode", mode]);
}

/// A list with one member per mode and digests on, behind a real Postfix
/// in front of the sink.
struct Site {
    lr: Listrelay,
    sink: Sink,
    pf: Postfix,
}

async fn site() -> Site {
    let sink = Sink::builder().keep_data(true).start().await.unwrap();
    let lmtp_port = ports::free_port();
    let pf = Postfix::start_for_list(lmtp_port, sink.port(), "dev")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lr = Listrelay::new(lmtp_port, pf.reinject_port, "");
    let members: Vec<String> = [REGULAR, NOMAIL, MIME_1, MIME_2, PLAIN]
        .iter()
        .map(|m| m.to_string())
        .collect();
    // A subject prefix and a footer decorate the posts, not the issues,
    // which have their own subject and footer.
    let settings = [
        ("digest_enabled", "true"),
        ("subject_prefix", "[dev] "),
        ("footer", "THE LIST FOOTER"),
    ];
    lr.open_list(LIST, &members, &settings);
    set_mode(&lr, NOMAIL, "nomail");
    set_mode(&lr, MIME_1, "digest_mime");
    set_mode(&lr, MIME_2, "digest_mime");
    set_mode(&lr, PLAIN, "digest_plain");
    lr.start();
    Site { lr, sink, pf }
}

impl Site {
    async fn post_all(&self, n: usize) {
        for i in 1..=n {
            smtp_send(
                self.pf.inbound_port,
                "poster@example.net",
                &[LIST],
                &post(i),
            )
            .await
            .unwrap();
        }
    }

    /// Waits for `n` transactions whose message matches `pred`.
    async fn wait(&self, n: usize, pred: impl Fn(&str) -> bool) -> Vec<Transaction> {
        self.sink
            .wait_records(n, WAIT, |t| pred(&text(t)))
            .await
            .unwrap_or_else(|r| panic!("{n} expected, got {r:?}\n{}", self.lr.log_text()))
    }
}

impl Site {
    /// Waits until the issues reached `n` recipients in all (Postfix may
    /// deliver one issue to two domains in two transactions).
    async fn issue_copies(&self, n: usize) -> Vec<Transaction> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let records: Vec<Transaction> = self
                .sink
                .records()
                .into_iter()
                .filter(|t| is_issue(&text(t)))
                .collect();
            let got: usize = records.iter().map(|t| t.rcpts.len()).sum();
            if got >= n {
                return records;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{got} issue copies of {n}: {records:?}\n{}",
                self.lr.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn is_issue(msg: &str) -> bool {
    msg.contains("Subject: dev Digest, Vol ")
}

/// Per recipient, how many issues of each Message-ID it got.
fn issues_by_rcpt(records: &[Transaction]) -> HashMap<(String, String), usize> {
    let mut n = HashMap::new();
    for t in records.iter().filter(|t| is_issue(&text(t))) {
        let m = MessageParser::default()
            .parse(t.data.as_deref().unwrap())
            .unwrap();
        let id = m.message_id().unwrap().to_string();
        for r in &t.rcpts {
            *n.entry((r.to_ascii_lowercase(), id.clone())).or_default() += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_posts_becomes_one_issue_per_form() {
    let s = site().await;
    s.post_all(5).await;
    // Regular copies: the regular member only (nomail and digest members none).
    let copies = s.wait(5, |m| m.contains("digest topic")).await;
    for t in &copies {
        assert_eq!(t.rcpts, [REGULAR], "{t:?}");
        let m = text(t);
        assert!(m.contains("Subject: [dev] digest topic"), "{m}");
        assert!(m.contains("THE LIST FOOTER"), "{m}");
    }
    let out = s.lr.cli_ok(&["digest", "send", LIST]);
    assert!(out.contains("volume 1, issue 1: 5 posts"), "{out}");
    let issues = s.issue_copies(3).await;
    let by_rcpt = issues_by_rcpt(&issues);
    let mut rcpts: Vec<&str> = by_rcpt.keys().map(|(r, _)| r.as_str()).collect();
    rcpts.sort();
    assert_eq!(rcpts, [MIME_1, MIME_2, PLAIN], "exactly the digest members");
    for t in &issues {
        let raw = t.data.as_deref().unwrap();
        let m = MessageParser::default().parse(raw).unwrap();
        assert_eq!(m.subject(), Some("dev Digest, Vol 1, Issue 1"));
        assert!(!text(t).contains("THE LIST FOOTER"), "no list footer");
        assert!(
            m.header("List-Id").is_some(),
            "the issue carries the List-* headers"
        );
        if t.rcpts.contains(&PLAIN.to_string()) {
            let body = m.body_text(0).unwrap();
            for i in 1..=5 {
                assert!(body.contains(&format!("The words of post {i}.")), "{body}");
                assert!(body.contains(&format!("Message-ID: <digest-post-{i}@example.net>")));
            }
        } else {
            let mut posts: Vec<String> = m
                .attachments()
                .filter_map(|p| match &p.body {
                    PartType::Message(inner) => inner.message_id().map(str::to_string),
                    _ => None,
                })
                .collect();
            // In the order the list took them (Postfix may reorder arrivals).
            posts.sort();
            let want: Vec<String> = (1..=5)
                .map(|i| format!("digest-post-{i}@example.net"))
                .collect();
            assert_eq!(posts, want);
        }
    }
    // Nothing pending: no empty issue.
    let out = s.lr.cli_ok(&["digest", "send", LIST]);
    assert!(out.contains("no posts"), "{out}");
}

/// Every post's Message-ID found in the MIME issues, and in how many
/// issues (an issue delivered in two transactions counts once).
fn posts_in_mime_issues(records: &[Transaction]) -> HashMap<String, usize> {
    let mut issues: HashMap<String, Vec<String>> = HashMap::new();
    for t in records.iter().filter(|t| is_issue(&text(t))) {
        let m = MessageParser::default()
            .parse(t.data.as_deref().unwrap())
            .unwrap();
        if m.content_type().and_then(|c| c.subtype()) != Some("digest") {
            continue;
        }
        let posts = m
            .attachments()
            .filter_map(|p| match &p.body {
                PartType::Message(inner) => inner.message_id().map(str::to_string),
                _ => None,
            })
            .collect();
        issues.insert(m.message_id().unwrap().to_string(), posts);
    }
    let mut n = HashMap::new();
    for id in issues.into_values().flatten() {
        *n.entry(id).or_default() += 1;
    }
    n
}

/// `digest send` in a CLI process of its own (the server stopped: it works
/// on the store itself) that SIGKILLs itself at `point`.
fn send_and_crash_at(lr: &Listrelay, point: &str) {
    let out = std::process::Command::new(support::server::bin())
        .arg("--config")
        .arg(&lr.config)
        .args(["digest", "send", LIST])
        .env("LISTRELAY_TEST_CRASH_AT", point)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(9),
        "the CLI did not crash at {point}: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_an_issue_is_built_or_sent_loses_and_repeats_nothing() {
    let mut s = site().await;
    let mut all_posts = 0;
    // Round by round: posts, then an issue whose life is cut short at one
    // point; the server's next start finishes it.
    for (round, point) in ["digest-after-cut", "digest-after-accept", "server"]
        .iter()
        .enumerate()
    {
        for i in 0..3 {
            let n = 10 * (round + 1) + i;
            smtp_send(s.pf.inbound_port, "poster@example.net", &[LIST], &post(n))
                .await
                .unwrap();
        }
        all_posts += 3;
        // Sealed (and so entered for the digest) once the regular copy left.
        s.wait(all_posts, |m| m.contains("digest topic") && !is_issue(m))
            .await;
        if *point == "server" {
            // kill -9 of the server right after it queued the issue.
            s.lr.cli_ok(&["digest", "send", LIST]);
            s.lr.kill9();
        } else {
            s.lr.stop();
            send_and_crash_at(&s.lr, point);
        }
        s.lr.start();
        s.issue_copies(3 * (round + 1)).await;
    }
    // Settle: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records = s.sink.records();
    for ((rcpt, issue), n) in issues_by_rcpt(&records) {
        assert_eq!(n, 1, "{rcpt} got issue {issue} {n} times");
    }
    let issues: std::collections::HashSet<String> = issues_by_rcpt(&records)
        .into_keys()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(issues.len(), 6, "three issues, two forms each: {issues:?}");
    let posts = posts_in_mime_issues(&records);
    assert_eq!(posts.len(), all_posts, "{posts:?}");
    assert!(
        posts.values().all(|&k| k == 1),
        "a post in two issues: {posts:?}"
    );
}

/// A list whose members all take digests: a post has no regular recipient,
/// yet it waits for the next issue (once), and export/import carry what
/// waits; `digest send` on the store (no server) cuts the issue.
/// A running site whose list's one member takes the MIME digest, and two
/// posts waiting for its next issue.
async fn two_posts_for_the_digest_only() -> (Sink, Listrelay) {
    let sink = Sink::builder().start().await.unwrap();
    let mut lr = Listrelay::with_smtp(sink.port(), "");
    lr.open_list(LIST, &[MIME_1.to_string()], &[("digest_enabled", "true")]);
    set_mode(&lr, MIME_1, "digest_mime");
    lr.start();
    for i in 1..=2 {
        let r = support::lmtp::lmtp_post(lr.lmtp_port, LIST, &post(i)).await;
        assert_eq!(r.code, 250, "{}", r.text());
    }
    let waiting = || lr.json(&["digest", "status", LIST])["pending"]["posts"].clone();
    assert!(
        support::poll_until(WAIT, || waiting() == 2),
        "{}\n{}",
        waiting(),
        lr.log_text()
    );
    (sink, lr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_only_posts_wait_and_move_with_export() {
    let (sink, mut lr) = two_posts_for_the_digest_only().await;
    assert_eq!(sink.rcpt_count(), 0, "no regular copy");
    lr.stop();
    let file = lr.path().join("export.ndjson");
    lr.cli_ok(&["export", file.to_str().unwrap()]);
    let other = Listrelay::with_smtp(sink.port(), "");
    other.cli_ok(&["import", file.to_str().unwrap()]);
    let status = other.json(&["digest", "status", LIST]);
    assert_eq!(status["pending"]["posts"], 2, "{status}");
    let out = other.cli_ok(&["digest", "send", LIST]);
    assert!(
        out.contains("volume 1, issue 1: 2 posts to 1 recipients (1 MIME, 0 plain)"),
        "{out}"
    );
    let status = other.json(&["digest", "status", LIST]);
    assert_eq!(status["pending"]["posts"], 0, "{status}");
    assert_eq!(status["last"]["state"], "queued", "{status}");
}

/// Deleting a list takes its digest with it: posts waiting for the next
/// issue do not come back in the issues of a new list of the same name
/// (they did: the entries stayed behind, keyed by the list's address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_lists_waiting_digest_posts_do_not_come_back() {
    let (_sink, lr) = two_posts_for_the_digest_only().await;
    lr.cli_ok(&["list", "delete", LIST]);
    lr.cli_ok(&["list", "create", LIST]);
    lr.cli_ok(&["list", "set", LIST, "digest_enabled", "true"]);
    let status = lr.json(&["digest", "status", LIST]);
    assert_eq!(status["pending"]["posts"], 0, "{status}");
    assert!(status["last"].is_null(), "{status}");
}
