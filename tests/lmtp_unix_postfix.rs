//! listrelay on a Unix-socket LMTP listener behind the real Postfix,
//! configured with exactly the files `listrelay integration postfix --out`
//! writes for it (issue 11 part 3). The stock `lmtp` service runs chrooted,
//! as in Debian's master.cf: the snippet's own `listrelay` service must
//! reach the socket anyway. A post reaches the members through the socket,
//! and the MTA's bounce for a refused member comes back through it and is
//! scored.
//!
//! Needs root and postfix (scripts/install-test-deps).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use listrelay::integration::{LmtpTarget, Snippet};
use serde_json::Value;
use support::lmtp::smtp_send;
use support::postfix::{Options, Postfix};
use support::sink::{copies, Sink};
use support::{make_traversable, poll_until, ports, MtaConfig};

const LIST: &str = "dev@lists.example.org";
const WAIT: Duration = Duration::from_secs(30);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_listrelay")
}

/// The `listrelay serve` this test started; stopped by PID on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        support::terminate(pid, || matches!(self.0.try_wait(), Ok(Some(_))));
        let _ = self.0.wait();
    }
}

struct Site {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
    socket: PathBuf,
    _db: Option<support::pg::TestDb>,
}

impl Site {
    fn new(reinject_port: u16) -> Site {
        let tmp = tempfile::Builder::new()
            .prefix("listrelay-unix-")
            .tempdir()
            .unwrap();
        // Postfix's lmtp client runs as the postfix user: it must reach the
        // socket's directory.
        make_traversable(tmp.path()).unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir(&run).unwrap();
        make_traversable(&run).unwrap();
        let socket = run.join("lmtp.sock");
        let db = support::pg::selected().then(support::pg::TestDb::create);
        let store = db
            .as_ref()
            .map(|db| format!("store = \"{}\"\n", db.url))
            .unwrap_or_default();
        let config = tmp.path().join("listrelay.toml");
        std::fs::write(
            &config,
            format!(
                "{store}data_dir = \"{}\"\nhostname = \"lists.example.org\"\n\
                 [lmtp]\nlisten = [\"unix:{}\"]\n\
                 [smtp]\nrelay = \"127.0.0.1:{reinject_port}\"\n\
                 [fanout]\npoll_interval_ms = 100\nmta_backoff_max_secs = 1\n\
                 [bounce]\npoll_interval_ms = 100\n",
                tmp.path().join("data").display(),
                socket.display()
            ),
        )
        .unwrap();
        Site {
            log: tmp.path().join("serve.log"),
            _tmp: tmp,
            config,
            socket,
            _db: db,
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "listrelay {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.cli(&all)).unwrap_or(Value::Null)
    }

    fn serve(&self) -> Server {
        let child = support::server::spawn_serve(&self.config, &self.log).unwrap();
        let up = poll_until(Duration::from_secs(20), || {
            greets(&self.socket).unwrap_or(false)
        });
        assert!(up, "no LMTP greeting on the socket\n{}", self.log_text());
        Server(child)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Whether the socket answers with a 220 greeting.
fn greets(socket: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf)?;
    let _ = s.write_all(b"QUIT\r\n");
    Ok(buf[..n].starts_with(b"220"))
}

/// The four files `listrelay integration postfix --out DIR` wrote.
fn written_snippets(dir: &Path) -> Vec<Snippet> {
    [
        "main.cf.snippet",
        "master.cf.snippet",
        "transport",
        "relay_recipients",
    ]
    .into_iter()
    .map(|file| Snippet {
        file,
        description: "written by listrelay integration postfix --out",
        contents: std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{file} not written: {e}")),
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_delivers_over_the_unix_socket_with_the_printed_snippet() {
    let sink = Sink::builder()
        .reject(["bob@example.com"])
        .start()
        .await
        .unwrap();
    let reinject_port = ports::free_port();
    let site = Site::new(reinject_port);
    site.cli(&["list", "create", LIST]);
    site.cli(&["list", "set", LIST, "nonmember_action", "accept"]);
    site.cli(&["list", "set", LIST, "verp_percent", "100"]);
    site.cli(&[
        "member",
        "add",
        LIST,
        "alice@example.net",
        "bob@example.com",
    ]);

    let out = tempfile::tempdir().unwrap();
    site.cli(&[
        "integration",
        "postfix",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let snippets = written_snippets(out.path());
    let transport = &snippets[2].contents;
    assert!(
        transport.contains(&format!(
            "lists.example.org\tlistrelay:unix:{}",
            site.socket.display()
        )),
        "{transport}"
    );
    let cfg = MtaConfig {
        domains: Vec::new(), // the rendered snippets say it all
        lmtp: LmtpTarget::Unix(site.socket.clone()),
        sink_port: sink.port(),
    };
    let opts = Options {
        lmtp_chroot: true,
        rendered: Some((snippets, reinject_port)),
        ..Options::default()
    };
    let pf = tokio::task::spawn_blocking(move || Postfix::start_opts(&cfg, &opts))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("postfix: {e}"));
    let _server = site.serve();
    let logs = || {
        format!(
            "--- listrelay:\n{}\n--- postfix:\n{}",
            site.log_text(),
            pf.log()
        )
    };

    let msg = b"From: poster@example.com\r\nTo: dev@lists.example.org\r\n\
Subject: over the socket\r\nMessage-ID: <unix-1@example.com>\r\n\r\nhello\r\n";
    smtp_send(pf.inbound_port, "poster@example.com", &[LIST], msg)
        .await
        .unwrap();
    let got = sink
        .wait_until(WAIT, |s| {
            copies(&s.records()).contains_key("alice@example.net")
        })
        .await;
    assert!(got.is_ok(), "alice got no copy\n{}", logs());
    assert!(
        pf.log()
            .lines()
            .any(|l| l.contains("postfix/listrelay-lmtp/lmtp[")
                && l.contains(&format!("[{}]", site.socket.display()))
                && l.contains("status=sent")),
        "the post did not go over the socket\n{}",
        logs()
    );

    // bob's refusal comes back as Postfix's DSN to his VERP address, over
    // the socket, and is scored.
    let scored = poll_until(WAIT, || {
        site.json(&["bounce", "show", LIST, "bob@example.com"])
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    assert!(scored, "bob's bounce not scored\n{}", logs());
    let b = &site.json(&["bounce", "show", LIST, "bob@example.com"])[0];
    assert_eq!(b["last_reason"], "user_unknown", "{b:#}");
    assert_eq!(copies(&sink.records()).get("alice@example.net"), Some(&1));
}
