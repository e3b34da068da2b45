//! A `listrelay serve` process under test: its own temp data dir and config,
//! CLI calls against it, and stop/kill by PID (also on Drop).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{ports, terminate, wait_220};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_listrelay")
}

pub struct Listrelay {
    pub dir: tempfile::TempDir,
    pub lmtp_port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Listrelay {
    /// A site whose re-injection goes to 127.0.0.1:`smtp_port`; `extra` is
    /// appended to the TOML config (more sections).
    pub fn new(lmtp_port: u16, smtp_port: u16, extra: &str) -> Listrelay {
        let dir = tempfile::Builder::new()
            .prefix("listrelay-test-")
            .tempdir()
            .expect("temp dir");
        let config = dir.path().join("listrelay.toml");
        let log = dir.path().join("serve.log");
        let toml = format!(
            "data_dir = \"{data}\"\nhostname = \"lists.example.org\"\n\
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
            child: None,
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

    /// Starts `serve` and waits for its LMTP greeting.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn listrelay serve");
        self.child = Some(child);
        if let Err(e) = wait_220(self.lmtp_port, Duration::from_secs(20)) {
            panic!("listrelay did not start: {e}\n{}", self.log_text());
        }
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
