//! Fan-out with real parts: a real Postfix in front of (and behind) listrelay,
//! a counting SMTP sink as "the internet", and `listrelay serve` killed with
//! SIGKILL in the middle of a fan-out.
//!
//! Needs root and postfix (scripts/install-test-deps).

mod support;

use std::time::Duration;

use listrelay::secret::Secret;
use listrelay::verp::{self, Decoded};
use support::lmtp::{lmtp_post, smtp_send};
use support::postfix::Postfix;
use support::server::Listrelay;
use support::sink::{copies, Sink, Transaction};
use support::{ports, MtaConfig};

const LIST: &str = "dev@lists.example.org";

fn members(n: usize, domains: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("user{i}@d{}.example.net", i % domains))
        .collect()
}

fn post(subject: &str) -> Vec<u8> {
    format!(
        "From: poster@example.com\r\nTo: {LIST}\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}.{}@example.com>\r\n\r\nHello list.\r\n",
        std::process::id()
    )
    .into_bytes()
}

/// Posts over LMTP straight to listrelay; panics unless it answers 250.
async fn posted(port: u16, subject: &str) {
    let r = lmtp_post(port, LIST, &post(subject)).await;
    assert_eq!(r.code, 250, "{}", r.text());
}

/// A post with a fixed Message-ID and the given body.
fn window(body: &str) -> Vec<u8> {
    format!("Message-ID: <window@example.com>\r\nSubject: w\r\n\r\n{body}\r\n").into_bytes()
}

fn site_secret(lr: &Listrelay) -> Secret {
    Secret::load_or_create(&lr.data().join("secret")).unwrap()
}

/// The members that got a copy with their own (valid) VERP sender.
fn verped(records: &[Transaction], secret: &Secret) -> Vec<String> {
    let mut out = Vec::new();
    for t in records {
        let Some(tag) = t
            .mail_from
            .strip_prefix("dev-bounces+")
            .and_then(|s| s.strip_suffix("@lists.example.org"))
        else {
            assert_eq!(t.mail_from, "dev-bounces@lists.example.org");
            continue;
        };
        assert_eq!(t.rcpts.len(), 1, "a VERP envelope has one recipient");
        match verp::decode(secret, LIST, tag) {
            Decoded::Verified(m) => {
                assert_eq!(m, t.rcpts[0].to_ascii_lowercase());
                out.push(m);
            }
            other => panic!("bad VERP tag {tag}: {other:?}"),
        }
    }
    out
}

fn mta(lmtp_port: u16, sink_port: u16) -> MtaConfig {
    let mut cfg = MtaConfig::single_list(lmtp_port, sink_port);
    cfg.domains[0].local_parts = listrelay::address::list_local_parts("dev");
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verp_share_rotation_and_runtime_change_through_postfix() {
    let sink = Sink::builder().start().await.unwrap();
    let lmtp_port = ports::free_port();
    let cfg = mta(lmtp_port, sink.port());
    let pf = tokio::task::spawn_blocking(move || Postfix::start(&cfg))
        .await
        .unwrap()
        .unwrap();
    let mut lr = Listrelay::new(lmtp_port, pf.reinject_port, "");
    let all = members(1000, 30);
    lr.open_list(LIST, &all, &[("verp_percent", "30")]);
    lr.start();
    let secret = site_secret(&lr);

    let mut seen = 0;
    let mut runs: Vec<Vec<String>> = Vec::new();
    for (i, subject) in ["first", "second", "third"].iter().enumerate() {
        if i == 2 {
            // Changed on the running server: applies to the next post.
            lr.cli_ok(&["list", "set", LIST, "verp_percent", "0"]);
        }
        let before = sink.records().len();
        smtp_send(
            pf.inbound_port,
            "poster@example.com",
            &[LIST],
            &post(subject),
        )
        .await
        .unwrap();
        let want = seen + all.len();
        if let Err(got) = sink.wait_rcpts(want, Duration::from_secs(60)).await {
            panic!(
                "post {subject}: the sink has {got} of {want} copies\n{}",
                lr.log_text()
            );
        }
        let this_post = sink.records().split_off(before);
        let counts = copies(&this_post);
        assert_eq!(counts.len(), all.len(), "every member got post {subject}");
        assert!(
            counts.values().all(|&c| c == 1),
            "exactly one copy per member"
        );
        runs.push(verped(&this_post, &secret));
        seen = want;
    }
    let (first, second, third) = (&runs[0], &runs[1], &runs[2]);
    for (name, set) in [("first", first), ("second", second)] {
        assert!(
            (240..=360).contains(&set.len()),
            "{name} post: {} of 1000 VERPed at 30 %",
            set.len()
        );
    }
    let overlap = first.iter().filter(|m| second.contains(m)).count();
    assert!(
        overlap < 60,
        "the second post VERPs a different set (overlap {overlap})"
    );
    assert!(third.is_empty(), "verp_percent 0 applied to the next post");
    lr.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_fanout_every_member_gets_a_copy() {
    kill9_five_times_during_fanout("30").await;
}

/// At 100 % VERP a worker records its progress once per `max_rcpt_per_txn`
/// envelopes, not after each: the duplicates per crash stay within the same
/// bound in copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_all_verp_fanout_repeats_within_the_bound() {
    kill9_five_times_during_fanout("100").await;
}

/// Kills the server five times during a 5,000-member fan-out at
/// `verp_percent`, then checks every member got a copy and the duplicates
/// stayed within docs/architecture.md's bound.
async fn kill9_five_times_during_fanout(verp_percent: &str) {
    let sink = Sink::builder().start().await.unwrap();
    let workers = 4;
    let max_rcpt = 20;
    let mut lr = Listrelay::with_smtp(
        sink.port(),
        &format!("[fanout]\nworkers = {workers}\nchunk_size = 250\npoll_interval_ms = 100\n"),
    );
    let all = members(5000, 100);
    let max = max_rcpt.to_string();
    lr.open_list(
        LIST,
        &all,
        &[("verp_percent", verp_percent), ("max_rcpt_per_txn", &max)],
    );
    lr.start();
    posted(lr.lmtp_port, "killed").await;

    let unique = |s: &Sink| copies(&s.records()).len();
    let mut kills = 0;
    for threshold in [400, 1400, 2400, 3400, 4400] {
        let reached = sink
            .wait_until(Duration::from_secs(60), |s| unique(s) >= threshold)
            .await;
        assert!(
            reached.is_ok(),
            "fan-out stalled below {threshold}\n{}",
            lr.log_text()
        );
        lr.kill9();
        kills += 1;
        lr.start();
    }
    let done = sink
        .wait_until(Duration::from_secs(90), |s| unique(s) >= all.len())
        .await;
    assert!(
        done.is_ok(),
        "{} of {} members reached\n{}",
        unique(&sink),
        all.len(),
        lr.log_text()
    );
    let counts = copies(&sink.records());
    assert!(
        all.iter().all(|m| counts.contains_key(m)),
        "every member got a copy"
    );
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    // docs/architecture.md: per crash of the process at most what each
    // worker sent since its last progress write, max_rcpt_per_txn copies.
    let bound = kills * workers * max_rcpt;
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates over the bound {bound}"
    );
    eprintln!(
        "verp {verp_percent} %, {kills} kills: {duplicates} duplicate copies (bound {bound})"
    );
    // The job finishes and leaves the queue.
    let queue_empty = support::poll_until(Duration::from_secs(20), || {
        lr.json(&["queue"])["jobs"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    assert!(queue_empty, "the job is done after recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_stopped_during_fanout_nothing_is_lost() {
    let sink = Sink::builder().start().await.unwrap();
    let lmtp_port = ports::free_port();
    let cfg = mta(lmtp_port, sink.port());
    let mut pf = tokio::task::spawn_blocking(move || Postfix::start(&cfg))
        .await
        .unwrap()
        .unwrap();
    let mut lr = Listrelay::new(lmtp_port, pf.reinject_port, "");
    let all = members(2000, 40);
    lr.open_list(LIST, &all, &[("verp_percent", "100")]);
    lr.start();
    posted(lr.lmtp_port, "mta-down").await;
    sink.wait_rcpts(200, Duration::from_secs(60)).await.unwrap();
    let mut pf = tokio::task::spawn_blocking(move || {
        pf.stop();
        std::thread::sleep(Duration::from_secs(2));
        pf.restart().map(|_| pf)
    })
    .await
    .unwrap()
    .unwrap();
    // Copies refused mid-transaction are sent again, so count members, not copies.
    let done = sink
        .wait_until(Duration::from_secs(120), |s| {
            copies(&s.records()).len() >= all.len()
        })
        .await;
    let counts = copies(&sink.records());
    assert!(
        done.is_ok() && all.iter().all(|m| counts.contains_key(m)),
        "{} of {} members reached\n{}",
        counts.len(),
        all.len(),
        lr.log_text()
    );
    pf.stop();
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A post's Message-ID leaves the window when its job is done plus the grace:
/// the same Message-ID is then a new post, while before it is a duplicate.
/// The operator's counters show it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_id_leaves_the_window_after_delivery_and_grace() {
    let sink = Sink::builder().start().await.unwrap();
    let metrics_port = ports::free_port();
    let mut lr = Listrelay::with_smtp(
        sink.port(),
        &format!("[intake]\nduplicate_grace_secs = 2\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
    );
    lr.cli_ok(&["list", "create", LIST]);
    lr.cli_ok(&["list", "set", LIST, "duplicate_policy", "reject"]);
    lr.cli_ok(&["list", "set", LIST, "nonmember_action", "accept"]);
    lr.cli_ok(&["member", "add", LIST, "a@one.example.net"]);
    lr.start();
    assert_eq!(
        lmtp_post(lr.lmtp_port, LIST, &window("first")).await.code,
        250
    );
    sink.wait_rcpts(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        lmtp_post(lr.lmtp_port, LIST, &window("second")).await.code,
        550,
        "in the window during the grace"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        lmtp_post(lr.lmtp_port, LIST, &window("third")).await.code,
        250,
        "out of the window after the grace"
    );
    sink.wait_rcpts(2, Duration::from_secs(30)).await.unwrap();

    let done = support::poll_until(Duration::from_secs(10), || {
        scrape(metrics_port).contains("listrelay_fanout_jobs_completed_total 2")
    });
    let text = scrape(metrics_port);
    assert!(done, "{text}");
    assert!(
        text.contains("listrelay_intake_recipients_total{outcome=\"stored\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("listrelay_intake_recipients_total{outcome=\"duplicate_rejected\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("listrelay_fanout_envelopes_total{verp=\"true\"} 2"),
        "{text}"
    );
    lr.stop();
}
