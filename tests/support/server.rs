//! A `listrelay serve` process under test: its own temp data dir and config,
//! CLI calls against it, and stop/kill by PID (also on Drop). With
//! `LISTRELAY_TEST_STORE=postgres` each site gets a fresh PostgreSQL database
//! (see [`super::pg`]); [`Listrelay::sharing`] makes a second host of a site.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::dns::DnsServer;
use super::pg::{self, TestDb};
use super::{ports, terminate, wait_220};

/// Starts `listrelay --config CONFIG serve` (log level info), its log
/// appended to `log`: the one way tests and benches start a server.
pub fn spawn_serve(config: &Path, log: &Path) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Command::new(bin())
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_listrelay")
}

pub struct Listrelay {
    pub dir: tempfile::TempDir,
    pub lmtp_port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The site's PostgreSQL URL when it runs on PostgreSQL.
    pub store_url: Option<String>,
    child: Option<Child>,
    /// The database this site created (dropped after the process is killed).
    db: Option<TestDb>,
    /// The loopback DNS server the site resolves through when its config
    /// names none (see [`Listrelay::start`]).
    dns: Option<DnsServer>,
}

impl Listrelay {
    /// A site whose re-injection goes to 127.0.0.1:`smtp_port`; `extra` is
    /// appended to the TOML config (more sections).
    pub fn new(lmtp_port: u16, smtp_port: u16, extra: &str) -> Listrelay {
        if pg::selected() {
            Listrelay::on_postgres(lmtp_port, smtp_port, extra)
        } else {
            Listrelay::build(lmtp_port, smtp_port, extra, None, None)
        }
    }

    /// A site on the embedded store, whatever the selected store.
    pub fn on_sled(lmtp_port: u16, smtp_port: u16, extra: &str) -> Listrelay {
        Listrelay::build(lmtp_port, smtp_port, extra, None, None)
    }

    /// A site on a fresh PostgreSQL database, whatever the selected store.
    pub fn on_postgres(lmtp_port: u16, smtp_port: u16, extra: &str) -> Listrelay {
        let db = TestDb::create();
        Listrelay::build(lmtp_port, smtp_port, extra, Some(db), None)
    }

    /// A second host of `site`: same database and site secret, its own data
    /// dir (admin socket, log) and LMTP port. `site` must be on PostgreSQL.
    pub fn sharing(site: &Listrelay, lmtp_port: u16, smtp_port: u16, extra: &str) -> Listrelay {
        assert!(site.store_url.is_some(), "only a PostgreSQL site has hosts");
        let mut lr = Listrelay::build(lmtp_port, smtp_port, extra, None, Some(site));
        lr.store_url = site.store_url.clone();
        lr
    }

    fn build(
        lmtp_port: u16,
        smtp_port: u16,
        extra: &str,
        db: Option<TestDb>,
        site: Option<&Listrelay>,
    ) -> Listrelay {
        let store_url = db
            .as_ref()
            .map(|d| d.url.clone())
            .or_else(|| site.and_then(|s| s.store_url.clone()));
        let mut head = String::new();
        if let Some(url) = &store_url {
            head.push_str(&format!("store = \"{url}\"\n"));
        }
        if let Some(site) = site {
            head.push_str(&format!(
                "secret_file = \"{}\"\n",
                site.data().join("secret").display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("listrelay-test-")
            .tempdir()
            .expect("temp dir");
        let config = dir.path().join("listrelay.toml");
        let log = dir.path().join("serve.log");
        let toml = format!(
            "{head}data_dir = \"{data}\"\nhostname = \"lists.example.org\"\n\
             [lmtp]\nlisten = [\"127.0.0.1:{lmtp_port}\"]\n\
             [smtp]\nrelay = \"127.0.0.1:{smtp_port}\"\nmax_connections = 8\n{extra}\n",
            data = dir.path().join("data").display(),
        );
        // The fan-out defaults suit production; tests want quick polls.
        let toml = if toml.contains("[fanout]") {
            toml
        } else {
            format!("{toml}[fanout]\npoll_interval_ms = 100\nmta_backoff_max_secs = 1\n")
        };
        std::fs::write(&config, toml).expect("config");
        Listrelay {
            dir,
            lmtp_port,
            config,
            log,
            store_url,
            child: None,
            db,
            dns: None,
        }
    }

    /// A fresh LMTP port for a new site.
    pub fn with_smtp(smtp_port: u16, extra: &str) -> Listrelay {
        Listrelay::new(ports::free_port(), smtp_port, extra)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run listrelay")
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "listrelay {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.cli_ok(&all)).expect("JSON output")
    }

    /// `member import` from a list of addresses.
    pub fn import(&self, list: &str, members: &[String]) {
        let path = self.dir.path().join("import.txt");
        let mut f = std::fs::File::create(&path).expect("import file");
        for m in members {
            writeln!(f, "{m}").unwrap();
        }
        drop(f);
        self.cli_ok(&["member", "import", list, path.to_str().unwrap()]);
    }

    /// Creates `list` that takes posts from anyone, with these members and
    /// settings (`list set` pairs), as the fan-out tests need it.
    pub fn open_list(&self, list: &str, members: &[String], settings: &[(&str, &str)]) {
        self.cli_ok(&["list", "create", list]);
        self.cli_ok(&["list", "set", list, "nonmember_action", "accept"]);
        self.import(list, members);
        for (key, value) in settings {
            self.cli_ok(&["list", "set", list, key, value]);
        }
    }

    /// Starts `serve` and waits for its LMTP greeting. A config without a
    /// `[dns]` section gets one naming a loopback dnsmasq
    /// ([`DnsServer::of_no_names`]).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.resolve_on_loopback();
        let child = spawn_serve(&self.config, &self.log).expect("spawn listrelay serve");
        self.child = Some(child);
        if let Err(e) = wait_220(self.lmtp_port, Duration::from_secs(20)) {
            panic!("listrelay did not start: {e}\n{}", self.log_text());
        }
    }

    fn resolve_on_loopback(&mut self) {
        let config = std::fs::read_to_string(&self.config).expect("config");
        if config.contains("[dns]") {
            return;
        }
        let (dns, section) = DnsServer::of_no_names();
        std::fs::write(&self.config, format!("{config}{section}")).expect("config");
        self.dns = Some(dns);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(c.id() as i32, || matches!(c.try_wait(), Ok(Some(_))));
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Listrelay {
    fn drop(&mut self) {
        self.kill9();
    }
}
