//! The real bounce loop, with the real Postfix and the real Exim from
//! tests/support: `listrelay serve` fans a post out through the MTA; the sink
//! refuses bob with 550 5.1.1; the MTA writes its own DSN back to bob's VERP
//! address; listrelay receives it over LMTP and scores exactly bob (hard,
//! 5.1.1; Exim says `Status: 5.0.0` and has 5.1.1 only in Diagnostic-Code).
//! Then a forged bounce (bad HMAC) to `dev-bounces+victim=example.net=badsig`
//! and an auto-reply to a valid VERP address change nothing. The Postfix loop
//! runs again with `recipient_delimiter = #` on both sides, with signed VERP
//! senders and with Postfix's XVERP (issue 11 item 2: a literal `+` in the
//! VERP sender and `XVERP=+=` made every bounce get 550 at RCPT).
//!
//! Needs root, postfix and the extracted exim (scripts/install-test-deps).

mod support;

use support::mta::{Kind, Mta};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use listrelay::integration::{DomainParams, LmtpTarget};
use serde_json::Value;
use support::lmtp::smtp_send;
use support::sink::Sink;
use support::MtaConfig;

const LIST: &str = "dev@lists.example.org";
const WAIT: Duration = Duration::from_secs(15);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_listrelay")
}

/// The `listrelay serve` this test started; stopped by PID on drop.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        support::terminate(pid, || matches!(self.child.try_wait(), Ok(Some(_))));
        let _ = self.child.wait();
    }
}

struct Dirs {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
    /// The site's database with `LISTRELAY_TEST_STORE=postgres`.
    _db: Option<support::pg::TestDb>,
    /// The loopback DNS server the config names.
    _dns: support::dns::DnsServer,
}

/// How the loop is set up: the recipient delimiter on both sides, and
/// whether listrelay asks Postfix for XVERP instead of signing each sender.
#[derive(Clone, Copy, Debug)]
struct Setup {
    delimiter: char,
    xverp: bool,
}

const PLUS: Setup = Setup {
    delimiter: '+',
    xverp: false,
};

fn dirs(setup: Setup) -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("listrelay.toml");
    let db = support::pg::selected().then(support::pg::TestDb::create);
    let store = db
        .as_ref()
        .map(|db| format!("store = \"{}\"\n", db.url))
        .unwrap_or_default();
    let (dns, dns_section) = support::dns::DnsServer::of_no_names();
    std::fs::write(
        &config,
        format!(
            "{store}[fanout]\npoll_interval_ms = 100\nxverp = {}\n\
             [bounce]\npoll_interval_ms = 100\n\
             [intake]\nrecipient_delimiter = \"{}\"\n{dns_section}",
            setup.xverp, setup.delimiter
        ),
    )
    .unwrap();
    Dirs {
        data,
        config,
        _tmp: tmp,
        _db: db,
        _dns: dns,
    }
}

fn cli(d: &Dirs, args: &[&str]) -> Value {
    let out = Command::new(bin())
        .arg("--config")
        .arg(&d.config)
        .arg("--data-dir")
        .arg(&d.data)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "listrelay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn serve(d: &Dirs, lmtp: u16, reinject: u16) -> Server {
    let log = std::fs::File::create(d.data.join("serve.log")).unwrap();
    let child = Command::new(bin())
        .arg("--config")
        .arg(&d.config)
        .arg("--data-dir")
        .arg(&d.data)
        .arg("--lmtp")
        .arg(format!("127.0.0.1:{lmtp}"))
        .arg("--smtp")
        .arg(format!("127.0.0.1:{reinject}"))
        .arg("--hostname")
        .arg("lists.example.org")
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let s = Server { child };
    support::wait_220(lmtp, WAIT).expect("listrelay LMTP");
    s
}

fn serve_log(d: &Dirs) -> String {
    std::fs::read_to_string(d.data.join("serve.log")).unwrap_or_default()
}

fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn queue_empty(d: &Dirs) -> bool {
    cli(d, &["queue"])["messages"]
        .as_array()
        .is_some_and(|a| a.is_empty())
}

fn secret(data: &Path) -> listrelay::secret::Secret {
    listrelay::secret::Secret::load_or_create(&data.join("secret")).unwrap()
}

async fn bounce_loop(kind: Kind, setup: Setup) {
    let delimiter = setup.delimiter;
    let t0 = Instant::now();
    let sink = Sink::builder()
        .reject(["bob@example.com"])
        .start()
        .await
        .unwrap();
    let lmtp = support::ports::free_port();
    let cfg = MtaConfig {
        domains: vec![DomainParams {
            name: "lists.example.org".into(),
            local_parts: listrelay::address::list_local_parts("dev"),
        }],
        lmtp: LmtpTarget::Tcp(format!("127.0.0.1:{lmtp}")),
        sink_port: sink.port(),
    };
    let mta = Mta::start_with_async(kind, cfg, delimiter).await;

    let d = dirs(setup);
    cli(&d, &["list", "create", LIST]);
    cli(&d, &["list", "set", LIST, "nonmember_action", "accept"]);
    cli(
        &d,
        &[
            "member",
            "add",
            LIST,
            "alice@example.com",
            "bob@example.com",
            "victim@example.net",
        ],
    );
    let _server = serve(&d, lmtp, mta.reinject());

    // A post through the MTA's inbound port.
    let post = "From: poster@example.com\r\nTo: dev@lists.example.org\r\nSubject: hello\r\n\
                Message-ID: <loop-1@test>\r\n\r\nhi\r\n";
    smtp_send(
        mta.inbound(),
        "poster@example.com",
        &[LIST],
        post.as_bytes(),
    )
    .await
    .unwrap();
    let show = || cli(&d, &["bounce", "show", LIST]);
    let scored = poll(WAIT, || show().as_array().is_some_and(|a| !a.is_empty()));
    assert!(
        scored,
        "{kind:?}: no bounce scored\n--- listrelay:\n{}\n--- mta:\n{}",
        serve_log(&d),
        mta.log()
    );
    let v = show();
    let recs = v.as_array().unwrap();
    assert_eq!(recs.len(), 1, "{kind:?}: {v:#}");
    let b = &recs[0];
    assert_eq!(b["member"], "bob@example.com", "{kind:?}: {v:#}");
    assert_eq!(b["score"], 1.0, "{kind:?}: {v:#}");
    assert_eq!(b["last_hard"], true, "{kind:?}: {v:#}");
    assert_eq!(b["last_status"], "5.1.1", "{kind:?}: {v:#}");
    assert_eq!(b["last_reason"], "user_unknown", "{kind:?}: {v:#}");
    assert_eq!(b["disabled"], false);
    assert_eq!(
        sink.rcpt_count(),
        2,
        "{kind:?}: alice and victim got the post"
    );
    assert_eq!(sink.rejected_count(), 1, "{kind:?}: bob was refused once");
    let one = cli(&d, &["bounce", "show", LIST, "Bob@Example.com"]);
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one:#}");

    // A forged bounce: the tag names victim, the signature is wrong, and the
    // report names nobody on the list. Nothing may change.
    let forged = "From: MAILER-DAEMON@evil.example\r\nTo: dev-bounces@lists.example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <forged@evil.example>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; evil.example\r\n\r\n\
Final-Recipient: rfc822; stranger@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--b--\r\n";
    // An auto-reply to alice's valid VERP address.
    let tag = listrelay::verp::encode(&secret(&d.data), LIST, "alice@example.com");
    let alice_verp = format!("dev-bounces{delimiter}{tag}@lists.example.org");
    let vacation =
        "From: alice@example.com\r\nTo: dev@lists.example.org\r\nSubject: Out of office\r\n\
Auto-Submitted: auto-replied\r\nMessage-ID: <away@example.com>\r\n\r\nI am away until Monday.\r\n";
    smtp_send(
        mta.inbound(),
        "",
        &[&format!(
            "dev-bounces{delimiter}victim=example.net=badsig@lists.example.org"
        )],
        forged.as_bytes(),
    )
    .await
    .unwrap();
    smtp_send(mta.inbound(), "", &[&alice_verp], vacation.as_bytes())
        .await
        .unwrap();
    assert!(mta.wait_queue_empty(WAIT), "{kind:?}\n{}", mta.log());
    assert!(
        poll(WAIT, || queue_empty(&d)),
        "{kind:?}: bounces not handled\n{}",
        serve_log(&d)
    );
    let log = serve_log(&d);
    assert!(
        log.contains("unverified VERP tag"),
        "{kind:?}: forged bounce not seen\n{log}"
    );
    assert!(
        log.contains("auto_reply"),
        "{kind:?}: auto-reply not seen\n{log}"
    );
    assert_eq!(
        show(),
        v,
        "{kind:?}: forged bounce or auto-reply changed state"
    );
    let members = cli(&d, &["member", "list", LIST]);
    assert!(
        members
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["delivery_enabled"] == true),
        "{members:#}"
    );

    // reset forgets bob's record
    let r = cli(&d, &["bounce", "reset", LIST, "bob@example.com"]);
    assert_eq!(r["had_record"], true, "{r:#}");
    assert_eq!(show(), Value::Array(vec![]));
    eprintln!("{kind:?}: bounce loop in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_bounce_loop() {
    bounce_loop(Kind::Postfix, PLUS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_bounce_loop_with_hash_delimiter() {
    let setup = Setup {
        delimiter: '#',
        xverp: false,
    };
    bounce_loop(Kind::Postfix, setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_xverp_bounce_loop_with_hash_delimiter() {
    let setup = Setup {
        delimiter: '#',
        xverp: true,
    };
    bounce_loop(Kind::Postfix, setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exim_bounce_loop() {
    bounce_loop(Kind::Exim, PLUS).await;
}
