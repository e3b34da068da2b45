//! Moderation through a real Postfix (tests/support): a non-member's post is
//! held; the moderator notice (with the post attached) arrives at the sink;
//! a forged approve address and a command from a non-moderator change
//! nothing; a mail to the approve address releases the post to every member;
//! a second approve does nothing and is "already handled", not a refusal; a moderator's signed `discard` command to
//! LIST-request drops another held post. Then, in process on a real store
//! with a moved clock, held posts expire as each list says.
//!
//! Needs root and postfix (scripts/install-test-deps).

mod support;

use std::time::{Duration, Instant};

use listrelay::address::Address;
use listrelay::clock::DAY;
use listrelay::integration::{DomainParams, LmtpTarget};
use listrelay::model::{List, Member};
use support::lmtp::smtp_send;
use support::postfix::Postfix;
use support::server::Listrelay;
use support::sink::{Sink, Transaction};
use support::MtaConfig;

const LIST: &str = "dev@lists.example.org";
const WAIT: Duration = Duration::from_secs(15);

pub fn text(t: &Transaction) -> String {
    String::from_utf8_lossy(t.data.as_deref().unwrap_or_default()).into_owned()
}

/// The first word in `s` that starts with `prefix`.
fn word<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.split_whitespace().find(|w| w.starts_with(prefix))
}

fn post(from: &str, subject: &str, mid: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {LIST}\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n\r\nbody of {subject}\r\n"
    )
    .into_bytes()
}

fn mail(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}@example.com>\r\n\r\n{body}\r\n",
        rand_id()
    )
    .into_bytes()
}

fn rand_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn delivered_to(sink: &Sink, rcpt: &str, needle: &str) -> usize {
    sink.records()
        .iter()
        .filter(|t| t.rcpts.iter().any(|r| r == rcpt) && text(t).contains(needle))
        .count()
}

fn held(lr: &Listrelay) -> Vec<serde_json::Value> {
    lr.json(&["held", "list", LIST])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn wait_log(lr: &Listrelay, needle: &str, n: usize) -> bool {
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        if lr.log_text().matches(needle).count() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_post_approved_once_through_postfix() {
    let t0 = Instant::now();
    let sink = Sink::builder().keep_data(true).start().await.unwrap();
    let lmtp = support::ports::free_port();
    let cfg = MtaConfig {
        domains: vec![DomainParams {
            name: "lists.example.org".into(),
            local_parts: listrelay::address::list_local_parts("dev"),
        }],
        lmtp: LmtpTarget::Tcp(format!("127.0.0.1:{lmtp}")),
        sink_port: sink.port(),
    };
    let pf = tokio::task::spawn_blocking(move || Postfix::start(&cfg))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lr = Listrelay::new(
        lmtp,
        pf.reinject_port,
        "[moderation]\npoll_interval_ms = 100\n[bounce]\npoll_interval_ms = 100\n",
    );
    lr.cli_ok(&["list", "create", LIST]);
    lr.cli_ok(&["list", "set", LIST, "moderators", "mod@example.com"]);
    lr.cli_ok(&["list", "set", LIST, "owners", "owner@example.com"]);
    lr.cli_ok(&[
        "member",
        "add",
        LIST,
        "alice@example.com",
        "bob@example.com",
    ]);
    lr.start();

    // A non-member's post is held; the moderator gets the notice with the
    // post attached, the sender a hold notice.
    smtp_send(
        pf.inbound_port,
        "stranger@example.net",
        &[LIST],
        &post("stranger@example.net", "first", "first@example.net"),
    )
    .await
    .unwrap();
    let notices = sink
        .wait_records(1, WAIT, |t| {
            t.rcpts.iter().any(|r| r == "mod@example.com") && text(t).contains("awaits approval")
        })
        .await
        .unwrap_or_else(|r| {
            panic!(
                "no moderator notice: {r:?}\n{}\n{}",
                lr.log_text(),
                pf.log()
            )
        });
    let notice = text(&notices[0]);
    assert!(notice.contains("message/rfc822"), "{notice}");
    assert!(notice.contains("body of first"), "post attached: {notice}");
    let approve = word(&notice, "dev-moderate+approve-").unwrap().to_string();
    let discard_addr = word(&notice, "dev-moderate+discard-").unwrap().to_string();
    assert!(approve.ends_with("@lists.example.org"), "{approve}");
    assert!(discard_addr.ends_with("@lists.example.org"));
    sink.wait_records(1, WAIT, |t| {
        t.rcpts.iter().any(|r| r == "stranger@example.net") && text(t).contains("awaits approval")
    })
    .await
    .expect("hold notice to the sender");
    let h = held(&lr);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["message_id"], "first@example.net");
    assert_eq!(h[0]["reason"], "nonmember");
    assert_eq!(delivered_to(&sink, "alice@example.com", "body of first"), 0);

    // A forged approve address: right hash, wrong signature.
    let (head, _) = approve.rsplit_once('-').unwrap();
    let forged = format!("{head}-aaaaaaaaaaaaa@lists.example.org");
    smtp_send(
        pf.inbound_port,
        "eve@example.net",
        &[&forged],
        &mail("eve@example.net", &forged, "ok", "ok"),
    )
    .await
    .unwrap();
    // A command from a non-moderator, even with the right signature.
    let sig = approve
        .trim_end_matches("@lists.example.org")
        .rsplit('-')
        .next()
        .unwrap()
        .to_string();
    let cmd = format!("approve <first@example.net> {sig}");
    smtp_send(
        pf.inbound_port,
        "alice@example.com",
        &["dev-request@lists.example.org"],
        &mail(
            "alice@example.com",
            "dev-request@lists.example.org",
            "cmd",
            &cmd,
        ),
    )
    .await
    .unwrap();
    assert!(
        wait_log(&lr, "wrong signature or for no held post; refused", 1).await,
        "{}",
        lr.log_text()
    );
    assert!(
        wait_log(&lr, "moderation command from a non-moderator; refused", 1).await,
        "{}",
        lr.log_text()
    );
    assert_eq!(held(&lr).len(), 1, "still held");

    // The approve address, from anyone holding it: released to all members.
    smtp_send(
        pf.inbound_port,
        "mod@example.com",
        &[&approve],
        &mail("mod@example.com", &approve, "yes", "yes"),
    )
    .await
    .unwrap();
    sink.wait_until(WAIT, |s| {
        delivered_to(s, "alice@example.com", "body of first") == 1
            && delivered_to(s, "bob@example.com", "body of first") == 1
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "approved post not delivered\n{}\n{}",
            lr.log_text(),
            pf.log()
        )
    });
    assert!(held(&lr).is_empty());
    // A second approve does nothing.
    smtp_send(
        pf.inbound_port,
        "mod@example.com",
        &[&approve],
        &mail("mod@example.com", &approve, "yes", "again"),
    )
    .await
    .unwrap();
    // It is no longer held: the address finds nothing to act on, and says
    // so without calling it a forgery (issue 11 item 10).
    assert!(
        wait_log(&lr, "no longer held; already handled", 1).await,
        "{}",
        lr.log_text()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(delivered_to(&sink, "alice@example.com", "body of first"), 1);
    assert_eq!(delivered_to(&sink, "bob@example.com", "body of first"), 1);

    // A moderated member is held too; the moderator discards by command.
    lr.cli_ok(&[
        "member",
        "set",
        LIST,
        "bob@example.com",
        "moderated",
        "true",
    ]);
    smtp_send(
        pf.inbound_port,
        "bob@example.com",
        &[LIST],
        &post("bob@example.com", "second", "second@example.com"),
    )
    .await
    .unwrap();
    let n = sink
        .wait_records(2, WAIT, |t| {
            t.rcpts.iter().any(|r| r == "mod@example.com") && text(t).contains("awaits approval")
        })
        .await
        .expect("second moderator notice");
    let notice = text(
        n.iter()
            .find(|t| text(t).contains("second@example.com"))
            .unwrap(),
    );
    let dsig = word(&notice, "dev-moderate+discard-")
        .unwrap()
        .trim_end_matches("@lists.example.org")
        .rsplit('-')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(held(&lr)[0]["reason"], "moderated");
    let cmd = format!("discard <second@example.com> {dsig}");
    smtp_send(
        pf.inbound_port,
        "mod@example.com",
        &["dev-request@lists.example.org"],
        &mail(
            "Mod <mod@example.com>",
            "dev-request@lists.example.org",
            "mod",
            &cmd,
        ),
    )
    .await
    .unwrap();
    let end = Instant::now() + WAIT;
    while !held(&lr).is_empty() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(held(&lr).is_empty(), "{}", lr.log_text());
    assert_eq!(
        delivered_to(&sink, "alice@example.com", "body of second"),
        0
    );
    eprintln!("moderation through postfix in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_posts_expire_as_configured() {
    let rig = support::moderation::Rig::new(listrelay::clock::now()).await;
    let store = rig.store.clone();
    let mut lists = Vec::new();
    for (name, action) in [("dev", "discard"), ("ops", "reject")] {
        let mut l = List::new(Address::parse(&format!("{name}@lists.example.org")).unwrap());
        l.settings.set("hold_expiry_action", action).unwrap();
        l.settings.set("max_days_to_hold", "3").unwrap();
        l.settings.set("moderators", "mod@example.com").unwrap();
        store.create_list(&l).await.unwrap();
        store
            .add_members(
                &l.key(),
                &[Member::new(Address::parse("alice@example.com").unwrap())],
            )
            .await
            .unwrap();
        lists.push(l);
    }
    let (svc, outbox, now) = (&rig.svc, &rig.outbox, &rig.now);
    let intake = listrelay::intake::Intake::new(store.clone(), '+');
    for l in &lists {
        let r = intake.resolve(&l.address.to_string()).await.unwrap();
        let raw = format!(
            "From: stranger@example.net\r\nSubject: to {}\r\nMessage-ID: <{}@example.net>\r\n\r\nhi\r\n",
            l.key(),
            l.address.local()
        );
        let out = intake
            .deliver("stranger@example.net", &[r], raw.as_bytes())
            .await;
        assert!(
            matches!(out[0], listrelay::intake::Outcome::Stored { .. }),
            "{out:?}"
        );
    }
    for post in store.unplanned_posts().await.unwrap() {
        assert!(!svc.check_post(&post).await.unwrap(), "held");
    }
    assert_eq!(store.held_posts(None).await.unwrap().len(), 2);
    assert!(
        store.unplanned_posts().await.unwrap().is_empty(),
        "held posts are not planned"
    );
    // Two days on: nothing expires.
    now.advance(2 * DAY);
    assert_eq!(svc.expire_held().await.unwrap(), 0);
    // Four days on: both expire, each list's way; sender and moderators told.
    outbox.clear();
    now.advance(2 * DAY);
    assert_eq!(svc.expire_held().await.unwrap(), 2);
    assert!(store.held_posts(None).await.unwrap().is_empty());
    assert!(
        store.messages(false).await.unwrap().is_empty(),
        "bodies dropped"
    );
    let sent = outbox.sent();
    let to = |who: &str, what: &str| {
        sent.iter()
            .filter(|(e, m)| e.rcpts.iter().any(|x| x == who) && m.contains(what))
            .count()
    };
    assert_eq!(
        to(
            "stranger@example.net",
            "Subject: Your post to dev@lists.example.org expired"
        ),
        1,
        "{sent:#?}"
    );
    assert_eq!(
        to(
            "stranger@example.net",
            "Subject: Your post to ops@lists.example.org expired"
        ),
        1
    );
    assert_eq!(
        to("mod@example.com", "handled as the list says: discarded"),
        1,
        "{sent:#?}"
    );
    assert_eq!(
        to("mod@example.com", "handled as the list says: rejected"),
        1
    );
    // Expired posts are gone for good: a late approve does nothing.
    assert_eq!(svc.expire_held().await.unwrap(), 0);
    let l = &lists[0];
    assert!(svc.find_held(l, "dev@example.net").await.unwrap().is_none());
}

/// Issue 11 item 10: a second approve of the same held post answers "already
/// handled" (it is no forgery), by address and by command, while a forged
/// signature is still refused; the moderator's notice keeps its indentation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_approve_is_already_handled() {
    let rig = support::moderation::Rig::new(listrelay::clock::now()).await;
    let store = rig.store.clone();
    let mut l = List::new(Address::parse("dev@lists.example.org").unwrap());
    l.settings.set("moderators", "mod@example.com").unwrap();
    store.create_list(&l).await.unwrap();
    let (svc, outbox) = (&rig.svc, &rig.outbox);
    let intake = listrelay::intake::Intake::new(store.clone(), '+');
    for n in 1..=2 {
        let r = intake.resolve("dev@lists.example.org").await.unwrap();
        let raw = format!(
            "From: stranger@example.net\r\nSubject: post {n}\r\nMessage-ID: <p{n}@example.net>\r\n\r\nhi\r\n"
        );
        intake
            .deliver("stranger@example.net", &[r], raw.as_bytes())
            .await;
    }
    for post in store.unplanned_posts().await.unwrap() {
        assert!(!svc.check_post(&post).await.unwrap(), "held");
    }
    let notices: Vec<String> = outbox
        .sent()
        .into_iter()
        .filter(|(e, _)| e.rcpts.iter().any(|r| r == "mod@example.com"))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(notices.len(), 2);
    let notice = |n: usize| {
        notices
            .iter()
            .find(|m| m.contains(&format!("<p{n}@example.net>")))
            .unwrap()
            .clone()
    };
    let first = notice(1);
    for line in [
        "\n  From:       stranger@example.net",
        "\n  approve: dev-moderate+approve-",
        "\n  approve <p1@example.net> ",
    ] {
        assert!(first.contains(line), "{line:?} in\n{first}");
    }
    let tag = first
        .split("dev-moderate+")
        .nth(1)
        .and_then(|s| s.split('@').next())
        .unwrap()
        .to_string();
    assert!(tag.starts_with("approve-"), "{tag}");
    let moderator = listrelay::moderation::policy::sender(
        "mod@example.com",
        b"From: mod@example.com\r\nSubject: ok\r\n\r\n",
    );
    assert_eq!(
        svc.moderate_address(&l, &tag, &moderator).await.unwrap(),
        "approve done"
    );
    assert_eq!(
        svc.moderate_address(&l, &tag, &moderator).await.unwrap(),
        "already handled"
    );
    let forged = format!("{}a", &tag[..tag.len() - 1]);
    let forged = if forged == tag {
        format!("{}b", &tag[..tag.len() - 1])
    } else {
        forged
    };
    assert!(svc
        .moderate_address(&l, &forged, &moderator)
        .await
        .unwrap()
        .starts_with("refused"));

    // By command: the second post, twice.
    let second = notice(2);
    let line = second
        .lines()
        .find(|l| l.trim_start().starts_with("discard <p2@example.net>"))
        .unwrap()
        .trim()
        .to_string();
    let raw = format!("From: mod@example.com\r\nSubject: x\r\n\r\n{line}\r\n");
    assert_eq!(
        svc.request(&l, &moderator, raw.as_bytes()).await.unwrap(),
        "discard done"
    );
    assert_eq!(
        svc.request(&l, &moderator, raw.as_bytes()).await.unwrap(),
        "already handled"
    );
}
