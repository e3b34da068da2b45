//! A private GNU Mailman 3 core (Debian's `mailman3`) on loopback, for the
//! importer's tests and benchmark: sqlite, its REST API on a free port, the
//! null MTA (nothing is ever delivered), every path under a temp dir.
//! Started as root (`--run-as-root … start --force`), ~1.3 GB for its
//! runners: start one per test binary. Drop stops the master and its
//! runners by PID.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{pid_gone, ports, terminate};

pub const USER: &str = "restadmin";
pub const PASSWORD: &str = "restpass";

pub struct Mailman {
    pub dir: tempfile::TempDir,
    /// The REST API's port on 127.0.0.1.
    pub port: u16,
    pub config: PathBuf,
}

/// Whether this machine can run one (the package, and root).
pub fn available() -> bool {
    Path::new("/usr/bin/mailman").exists() && unsafe { libc::geteuid() } == 0
}

impl Mailman {
    /// Starts a core and waits (up to 120 s) until its REST API answers.
    pub fn start() -> Mailman {
        let dir = tempfile::Builder::new()
            .prefix("mailman3-test-")
            .tempdir()
            .expect("temp dir");
        let port = ports::free_port();
        let v = dir.path().join("var");
        let v = v.display();
        let config = dir.path().join("mailman.cfg");
        let mut paths = String::new();
        for name in [
            "queue",
            "log",
            "lock",
            "data",
            "cache",
            "etc",
            "ext",
            "messages",
            "archive",
            "template",
            "list_data",
        ] {
            let sub = match name {
                "log" => "logs".to_string(),
                "lock" => "locks".to_string(),
                "archive" => "archives".to_string(),
                "template" => "templates".to_string(),
                "list_data" => "lists".to_string(),
                n => n.to_string(),
            };
            paths.push_str(&format!("{name}_dir: {v}/{sub}\n"));
        }
        let cfg = format!(
            "[mailman]\nlayout: t\nsite_owner: owner@lists.example\n\
             [paths.t]\nvar_dir: {v}\n{paths}bin_dir: /usr/lib/mailman3/bin\n\
             pid_file: {v}/master.pid\nlock_file: {v}/locks/master.lck\n\
             [database]\nclass: mailman.database.sqlite.SQLiteDatabase\n\
             url: sqlite:///{v}/data/mailman.db\n\
             [webservice]\nhostname: 127.0.0.1\nport: {port}\n\
             admin_user: {USER}\nadmin_pass: {PASSWORD}\n\
             [mta]\nincoming: mailman.mta.null.NullMTA\nlmtp_host: 127.0.0.1\n\
             lmtp_port: {lmtp}\nsmtp_host: 127.0.0.1\nsmtp_port: {smtp}\n",
            lmtp = ports::free_port(),
            smtp = ports::free_port(),
        );
        std::fs::write(&config, cfg).expect("mailman.cfg");
        let mm = Mailman { dir, port, config };
        let log = std::fs::File::create(mm.dir.path().join("start.log")).expect("log");
        let status = Command::new("mailman")
            .args(["--run-as-root", "-C"])
            .arg(&mm.config)
            .args(["start", "--force"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .status()
            .expect("run mailman start");
        assert!(status.success(), "mailman start failed: {}", mm.log());
        let end = Instant::now() + Duration::from_secs(120);
        while mm.get("system/versions").is_err() {
            assert!(
                Instant::now() < end,
                "Mailman's REST API did not answer: {}",
                mm.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        mm
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.path().join("start.log")).unwrap_or_default();
        s.push_str(
            &std::fs::read_to_string(self.dir.path().join("var/logs/mailman.log"))
                .unwrap_or_default(),
        );
        s
    }

    fn call(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Result<String, String> {
        let url = format!("{}/3.1/{}", self.url(), path.trim_start_matches('/'));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-u"])
            .arg(format!("{USER}:{PASSWORD}"))
            .args(["-X", method, &url]);
        for (k, v) in form {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        match code {
            "200" | "201" | "204" => Ok(body.to_string()),
            c => Err(format!("{method} {path}: {c} {body}")),
        }
    }

    /// GET, as JSON.
    pub fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        let body = self.call("GET", path, &[])?;
        serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))
    }

    /// POST a form; panics unless Mailman accepts it.
    pub fn post(&self, path: &str, form: &[(&str, &str)]) {
        self.call("POST", path, form)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// PATCH a form; panics unless Mailman accepts it.
    pub fn patch(&self, path: &str, form: &[(&str, &str)]) {
        self.call("PATCH", path, form)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Creates a domain and a list, returns its list id.
    pub fn create_list(&self, address: &str) -> String {
        let domain = address.split('@').nth(1).expect("list address");
        let _ = self.call("POST", "domains", &[("mail_host", domain)]);
        self.post("lists", &[("fqdn_listname", address)]);
        address.replacen('@', ".", 1)
    }

    /// Subscribes `email` to `list_id` as `role` (member, owner, moderator)
    /// without confirmations.
    pub fn subscribe(&self, list_id: &str, email: &str, role: &str) {
        self.post(
            "members",
            &[
                ("list_id", list_id),
                ("subscriber", email),
                ("role", role),
                ("pre_verified", "true"),
                ("pre_confirmed", "true"),
                ("pre_approved", "true"),
                ("send_welcome_message", "false"),
            ],
        );
    }

    /// The member resource of `email` on `list_id`.
    pub fn member_path(&self, list_id: &str, email: &str) -> String {
        let found = self
            .get(&format!(
                "members/find?list_id={list_id}&subscriber={email}&role=member"
            ))
            .expect("find member");
        let link = found["entries"][0]["self_link"]
            .as_str()
            .expect("member found")
            .to_string();
        link.split("/3.1/").nth(1).expect("a 3.1 link").to_string()
    }

    /// `mailman addmembers` (Mailman's own bulk tool): the benchmark's reference.
    pub fn addmembers(&self, list: &str, file: &Path) -> std::process::Output {
        Command::new("mailman")
            .args(["--run-as-root", "-C"])
            .arg(&self.config)
            .args(["addmembers", "-W"])
            .arg(file)
            .arg(list)
            .output()
            .expect("run mailman addmembers")
    }

    /// The master's PID and its runners'.
    fn pids(&self) -> Vec<i32> {
        let Ok(master) = std::fs::read_to_string(self.dir.path().join("var/master.pid")) else {
            return Vec::new();
        };
        let Ok(master) = master.trim().parse::<i32>() else {
            return Vec::new();
        };
        let mut pids = children(master);
        pids.push(master);
        pids
    }
}

/// The PIDs whose parent is `parent` (from /proc).
fn children(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

impl Drop for Mailman {
    fn drop(&mut self) {
        // The runners' PIDs are read first: once the master is gone they
        // are init's children and no longer found. The master stops its
        // runners on SIGTERM; any left are stopped one by one.
        let pids = self.pids();
        if let Some((&master, runners)) = pids.split_last() {
            terminate(master, || pid_gone(master));
            for &pid in runners {
                terminate(pid, || pid_gone(pid));
            }
        }
    }
}
