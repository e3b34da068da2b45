//! The black-box rig of the durability, hostile-input and LMTP protocol
//! tests: a data directory with lists set up through the CLI, the real
//! `listrelay serve` process (killed by PID on drop, also when a test
//! panics), and a raw, blocking, time-bounded LMTP client.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::dns::DnsServer;
pub use super::lmtp::dot_stuff;
use super::pg;
pub use super::ports::free_port;

pub const HOST: &str = "lists.example.org";
pub const DEV: &str = "dev@lists.example.org";
pub const OTHER: &str = "other@lists.example.org";

/// How long any single read may wait before the test fails instead of hanging.
pub const READ_LIMIT: Duration = Duration::from_secs(10);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_listrelay")
}

/// A data directory and the config file the server runs on.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// With `LISTRELAY_TEST_STORE=postgres`, the site's database.
    db: Option<pg::TestDb>,
    /// A tmpfs mounted on the data dir, unmounted on drop.
    mount: Option<PathBuf>,
    /// The loopback DNS server the config names
    /// ([`DnsServer::of_no_names`]), stopped on drop.
    _dns: DnsServer,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(m) = self.mount.take() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

/// Writes `toml` and the `[dns]` section of a loopback DNS server to
/// `dir/listrelay.toml`.
fn write_config(dir: &Path, toml: &str) -> (PathBuf, DnsServer) {
    let (dns, section) = DnsServer::of_no_names();
    let path = dir.join("listrelay.toml");
    std::fs::write(&path, format!("{toml}{section}")).expect("writing config");
    (path, dns)
}

impl Env {
    /// A fresh data dir with the lists `dev@` (one member) and `other@`.
    pub fn new() -> Env {
        Env::with_config("")
    }

    /// As [`Env::new`], with `toml` written to a config file passed to every
    /// command; on the store the test run selects (`LISTRELAY_TEST_STORE`).
    pub fn with_config(toml: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = pg::selected().then(pg::TestDb::create);
        Env::in_dir(dir, toml, db)
    }

    /// On the embedded store whatever the run selects: for tests of its spool.
    pub fn embedded() -> Env {
        Env::in_dir(tempfile::tempdir().expect("tempdir"), "", None)
    }

    fn in_dir(dir: tempfile::TempDir, toml: &str, db: Option<pg::TestDb>) -> Env {
        // The store is a top-level key: it goes before any [section].
        let toml = match &db {
            Some(db) => format!("store = \"{}\"\n{toml}", db.url),
            None => toml.to_string(),
        };
        let (config, dns) = write_config(dir.path(), &toml);
        let env = Env {
            dir,
            config,
            db,
            mount: None,
            _dns: dns,
        };
        env.setup();
        env
    }

    /// A data dir on a fresh tmpfs of `size` (e.g. "8m"); `None` if mounting
    /// is not possible here (not root, no tmpfs).
    pub fn on_tmpfs(size: &str) -> Option<Env> {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir data");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&data)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return None;
        }
        let (config, dns) = write_config(dir.path(), "");
        let env = Env {
            dir,
            config,
            db: None,
            mount: Some(data),
            _dns: dns,
        };
        env.setup();
        Some(env)
    }

    fn setup(&self) {
        let env = self;
        env.cli_ok(&["list", "create", DEV]);
        env.cli_ok(&["list", "create", OTHER]);
        // The posts come from non-members: let them through the policy.
        for list in [DEV, OTHER] {
            env.cli_ok(&["list", "set", list, "nonmember_action", "accept"]);
        }
        // Members on both lists: a post to a list without members is done at
        // once and leaves the queue.
        env.cli_ok(&["member", "add", DEV, "alice@example.net"]);
        env.cli_ok(&["member", "add", OTHER, "bob@example.net"]);
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn base_command(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--data-dir").arg(self.data());
        c.arg("--hostname").arg(HOST);
        // Intake tests look at the queue: re-injection goes to a closed port
        // (discard, 9) so fan-out keeps every post queued, waiting for the MTA.
        c.arg("--smtp").arg("127.0.0.1:9");
        c.arg("--config").arg(&self.config);
        c.env_remove("LISTRELAY_CONFIG");
        c
    }

    /// Runs a CLI command (bounded in time) and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut c = self.base_command();
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c.spawn().expect("spawning the CLI");
        let guard = Guard::new(child);
        guard.wait_output(Duration::from_secs(30))
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "listrelay {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The stored messages, as `--json queue` prints them.
    pub fn queue(&self) -> Vec<serde_json::Value> {
        let out = self.cli_ok(&["--json", "queue"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("queue JSON");
        match &v["messages"] {
            serde_json::Value::Array(a) => a.clone(),
            _ => panic!("queue has no messages array: {v}"),
        }
    }

    /// Queue entries of one list that are posts.
    pub fn posts(&self, list: &str) -> Vec<serde_json::Value> {
        self.queue()
            .into_iter()
            .filter(|m| m["list"] == list && m["suffix"] == "post")
            .collect()
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.data().join("spool")
    }

    /// The raw message stored in `spool/ID.msg`.
    /// A stored message's bytes, as `listrelay queue --body ID` prints them
    /// (from the spool or from PostgreSQL).
    pub fn spool_body(&self, id: &str) -> Vec<u8> {
        let out = self.cli(&["queue", "--body", id]);
        assert!(
            out.status.success(),
            "queue --body {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Starts `serve` on a free 127.0.0.1 port and waits for its 220.
    pub fn start(&self) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            match self.spawn(&addr, Target::Tcp(addr.clone())) {
                Some(s) => return s,
                None => continue, // the port was taken meanwhile: try another
            }
        }
        panic!("the server did not start; see {}", self.log().display());
    }

    /// Starts `serve` on a Unix socket.
    pub fn start_unix(&self, path: &Path) -> Server {
        let addr = format!("unix:{}", path.display());
        self.spawn(&addr, Target::Unix(path.to_path_buf()))
            .unwrap_or_else(|| panic!("the server did not start; see {}", self.log().display()))
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    fn spawn(&self, lmtp: &str, target: Target) -> Option<Server> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("log file");
        let mut c = self.base_command();
        c.arg("--lmtp")
            .arg(lmtp)
            .arg("serve")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = c.spawn().expect("spawning listrelay serve");
        let mut server = Server {
            guard: Guard::new(child),
            target,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if server.guard.exited() {
                return None;
            }
            if let Ok(mut c) = server.try_connect() {
                if let Ok(r) = c.read_reply() {
                    if r.code == 220 {
                        let _ = c.send(b"QUIT\r\n");
                        let _ = c.read_reply();
                        return Some(server);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.guard.kill();
        panic!("listrelay did not answer 220 within 20 s");
    }
}

/// Kills the child it holds (by its PID) when dropped.
pub struct Guard {
    child: Option<Child>,
}

impl Guard {
    pub fn new(child: Child) -> Guard {
        Guard { child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to `limit`, SIGKILL if it is still there.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    fn wait_output(mut self, limit: Duration) -> Output {
        let mut c = self.child.take().expect("child");
        let mut stdout = c.stdout.take().expect("stdout");
        let mut stderr = c.stderr.take().expect("stderr");
        let out_t = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = stdout.read_to_end(&mut v);
            v
        });
        let err_t = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = stderr.read_to_end(&mut v);
            v
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(s)) = c.try_wait() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("CLI command took longer than {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Output {
            status,
            stdout: out_t.join().unwrap_or_default(),
            stderr: err_t.join().unwrap_or_default(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Clone)]
enum Target {
    Tcp(String),
    Unix(PathBuf),
}

/// A running `listrelay serve`.
pub struct Server {
    pub guard: Guard,
    target: Target,
}

impl Server {
    pub fn addr(&self) -> String {
        match &self.target {
            Target::Tcp(a) => a.clone(),
            Target::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    pub fn try_connect(&self) -> std::io::Result<Client> {
        let stream: Box<dyn Stream> = match &self.target {
            Target::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(Duration::from_millis(500)))?;
                s.set_write_timeout(Some(READ_LIMIT))?;
                Box::new(s)
            }
            Target::Unix(p) => {
                let s = UnixStream::connect(p)?;
                s.set_read_timeout(Some(Duration::from_millis(500)))?;
                s.set_write_timeout(Some(READ_LIMIT))?;
                Box::new(s)
            }
        };
        Ok(Client {
            stream,
            buf: Vec::new(),
            limit: READ_LIMIT,
        })
    }

    /// A connection that has read the 220 greeting.
    pub fn connect(&self) -> Client {
        let mut c = self.try_connect().expect("connecting to listrelay");
        c.expect(220, "");
        c
    }

    /// A connection after the greeting and LHLO.
    pub fn session(&self) -> Client {
        let mut c = self.connect();
        c.send(b"LHLO test.example.net\r\n").expect("LHLO");
        c.expect(250, "");
        c
    }

    pub fn kill9(&mut self) {
        self.guard.kill();
    }

    pub fn stop(&mut self) {
        assert!(
            self.guard.terminate(Duration::from_secs(20)),
            "listrelay did not stop on SIGTERM"
        );
    }
}

pub trait Stream: Read + Write + Send {
    fn shutdown_write(&self) -> std::io::Result<()>;
}

impl Stream for TcpStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Stream for UnixStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// One reply, possibly multi-line.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The enhanced status code of the last line ("" if none).
    pub fn status(&self) -> &str {
        let last = self.lines.last().map(String::as_str).unwrap_or("");
        last.get(4..)
            .and_then(|t| t.split(' ').next())
            .filter(|s| s.chars().next().is_some_and(|c| c.is_ascii_digit()) && s.contains('.'))
            .unwrap_or("")
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// `"250 2.0.0"`-like summary.
    pub fn short(&self) -> String {
        let s = self.status();
        if s.is_empty() {
            self.code.to_string()
        } else {
            format!("{} {}", self.code, s)
        }
    }
}

/// Why a read ended without a reply.
#[derive(Debug)]
pub enum ReadEnd {
    /// The server closed the connection cleanly (or reset it after closing).
    Closed,
    /// Nothing complete arrived within the time limit.
    Timeout,
    /// A line that is not a reply.
    Garbage(String),
}

/// A raw LMTP client on a blocking socket; every read is time-bounded.
pub struct Client {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    pub limit: Duration,
}

impl Client {
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    pub fn send_ok(&mut self, bytes: &[u8]) {
        self.send(bytes).expect("writing to listrelay");
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown_write();
    }

    /// Reads one line (CRLF removed) within `self.limit`.
    fn read_line(&mut self) -> Result<String, ReadEnd> {
        let deadline = Instant::now() + self.limit;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = line
                    .strip_suffix(b"\r\n")
                    .ok_or_else(|| ReadEnd::Garbage(String::from_utf8_lossy(&line).into()))?;
                return String::from_utf8(line.to_vec())
                    .map_err(|e| ReadEnd::Garbage(format!("not UTF-8: {e}")));
            }
            if Instant::now() > deadline {
                return Err(ReadEnd::Timeout);
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return if self.buf.is_empty() {
                        Err(ReadEnd::Closed)
                    } else {
                        Err(ReadEnd::Garbage(format!(
                            "unterminated line {:?}",
                            String::from_utf8_lossy(&self.buf)
                        )))
                    }
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadEnd::Closed),
            }
        }
    }

    /// Reads one (multi-line aware) reply.
    pub fn read_reply(&mut self) -> Result<Reply, ReadEnd> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            let b = line.as_bytes();
            let ok = b.len() >= 3
                && b[..3].iter().all(u8::is_ascii_digit)
                && (b.len() == 3 || b[3] == b' ' || b[3] == b'-');
            if !ok {
                return Err(ReadEnd::Garbage(line));
            }
            let code: u16 = line[..3].parse().expect("digits");
            let more = b.len() > 3 && b[3] == b'-';
            if let Some(first) = lines.first() {
                let first: &String = first;
                if !first.starts_with(&line[..3]) {
                    return Err(ReadEnd::Garbage(format!(
                        "code changed within a multi-line reply: {line}"
                    )));
                }
            }
            lines.push(line);
            if !more {
                return Ok(Reply { code, lines });
            }
        }
    }

    pub fn reply(&mut self) -> Reply {
        match self.read_reply() {
            Ok(r) => r,
            Err(e) => panic!("expected a reply, got {e:?}"),
        }
    }

    pub fn replies(&mut self, n: usize) -> Vec<Reply> {
        (0..n).map(|_| self.reply()).collect()
    }

    /// Reads one reply and checks its code and (if not empty) enhanced status.
    pub fn expect(&mut self, code: u16, status: &str) -> Reply {
        let r = self.reply();
        assert!(
            r.code == code && (status.is_empty() || r.status() == status),
            "expected {code} {status}, got {:?}",
            r.lines
        );
        r
    }

    /// After the server said it closes: the next read sees the end.
    pub fn expect_closed(&mut self) {
        match self.read_reply() {
            Err(ReadEnd::Closed) => {}
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }

    /// MAIL, RCPT (each), DATA; returns the RCPT replies. Panics unless MAIL
    /// got 250 and DATA got 354.
    pub fn begin(&mut self, rcpts: &[&str]) -> Vec<Reply> {
        let mut cmd = String::from("MAIL FROM:<sender@example.net>\r\n");
        for r in rcpts {
            cmd.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        self.send_ok(cmd.as_bytes());
        self.expect(250, "2.1.0");
        let rr = self.replies(rcpts.len());
        self.send_ok(b"DATA\r\n");
        self.expect(354, "");
        rr
    }

    /// A whole transaction: `message` is the raw message (CRLF lines, no final
    /// dot); it is dot-stuffed here. Returns the per-recipient replies.
    pub fn post(&mut self, rcpts: &[&str], message: &[u8]) -> Vec<Reply> {
        let accepted = self
            .begin(rcpts)
            .iter()
            .filter(|r| r.code / 100 == 2)
            .count();
        self.send_ok(&dot_stuff(message));
        self.replies(accepted)
    }
}

/// A simple post with a Message-ID.
pub fn message(message_id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.net>\r\nTo: {DEV}\r\nSubject: test\r\nMessage-ID: <{message_id}>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Splits a spool file into (meta JSON, body).
pub fn decode_spool(buf: &[u8]) -> Option<(serde_json::Value, Vec<u8>)> {
    let rest = buf.strip_prefix(b"LRSPOOL1")?;
    let meta_len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let body_len = u64::from_le_bytes(rest.get(4..12)?.try_into().ok()?) as usize;
    let meta = serde_json::from_slice(rest.get(12..12 + meta_len)?).ok()?;
    let body = rest.get(12 + meta_len..)?;
    (body.len() == body_len).then(|| (meta, body.to_vec()))
}

/// Builds a spool file as the server writes it.
pub fn encode_spool(meta: &serde_json::Value, body: &[u8]) -> Vec<u8> {
    let meta = serde_json::to_vec(meta).expect("meta");
    let mut out = Vec::new();
    out.extend_from_slice(b"LRSPOOL1");
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(body);
    out
}

/// Short replies, for comparing a sequence at once.
pub fn shorts(replies: &[Reply]) -> Vec<String> {
    replies.iter().map(Reply::short).collect()
}
