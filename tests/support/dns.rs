//! A real DNS server for the authentication tests: Debian's dnsmasq
//! (`dnsmasq-base`, scripts/install-test-deps) on a free loopback port,
//! answering only from the records a test gives it.
//!
//! * [`Zone`]: the TXT and A records to serve. Every name is served
//!   `--local`, so a name without records gets NXDOMAIN (a permanent "no
//!   record"), never a forward to the Internet.
//! * [`DnsServer::start`]: starts dnsmasq in the foreground; killed by PID on
//!   drop.
//! * [`DnsServer::pause`] / [`DnsServer::resume`]: SIGSTOP / SIGCONT, so a
//!   query times out (the *temporary* DNS failure) and the same query
//!   succeeds once the server answers again.
//! * [`DnsServer::query_txt`]: a tiny raw UDP query, used to wait until the
//!   server answers and by tests that check a record as published.
//!
//! TXT values longer than 255 bytes (2048-bit DKIM keys) are split into
//! several character-strings, as a zone file would publish them.

use super::ports::free_port;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The dnsmasq binary (Debian's `dnsmasq-base`), or `LISTRELAY_TEST_DNSMASQ`.
pub fn dnsmasq_binary() -> Option<String> {
    if let Ok(p) = std::env::var("LISTRELAY_TEST_DNSMASQ") {
        return Some(p);
    }
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

/// Records a test DNS server answers.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    /// `(name, value)`: one TXT record each (several per name allowed).
    pub txt: Vec<(String, String)>,
    /// `(name, IPv4 address)`.
    pub a: Vec<(String, String)>,
    /// `(domain, port)`: queries under the domain are forwarded to
    /// 127.0.0.1:port, where a test holds a UDP socket that never answers,
    /// so they time out (a DNS server dropping one domain's queries).
    pub silent: Vec<(String, u16)>,
}

impl Zone {
    /// Adds one TXT record.
    pub fn txt(mut self, name: &str, value: &str) -> Self {
        self.txt.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds one A record.
    pub fn a(mut self, name: &str, ip: &str) -> Self {
        self.a.push((name.to_string(), ip.to_string()));
        self
    }

    /// Leaves the queries under `domain` unanswered: dnsmasq forwards them
    /// to `port`, a UDP socket on 127.0.0.1 the caller holds and never reads.
    pub fn silent(mut self, domain: &str, port: u16) -> Self {
        self.silent.push((domain.to_string(), port));
        self
    }
}

/// One dnsmasq process serving a [`Zone`] on 127.0.0.1:`port` (UDP and TCP).
pub struct DnsServer {
    /// The port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    /// dnsmasq's log (queries), kept for failure messages.
    log: tempfile::NamedTempFile,
    /// The records, as dnsmasq's config file.
    _conf: tempfile::NamedTempFile,
}

/// Splits a TXT value into dnsmasq's quoted character-strings of at most 255 bytes.
fn txt_strings(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(",")
}

impl DnsServer {
    /// Starts dnsmasq for `zone` and waits until it answers. `Err` says what
    /// to install when dnsmasq is missing.
    pub fn start(zone: &Zone) -> Result<DnsServer, String> {
        let bin = dnsmasq_binary().ok_or(
            "dnsmasq is not installed: run scripts/install-test-deps (package dnsmasq-base)",
        )?;
        let port = free_port();
        let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        // Records go in a config file: dnsmasq unquotes `"a","b"` (several
        // character-strings) there, not on its command line.
        // Every name is answered here (NXDOMAIN when it has no record),
        // never forwarded to the machine's resolver.
        let mut conf = String::from("local=/#/\n");
        // More specific than the catch-all `local`, so it wins for the domain.
        for (domain, port) in &zone.silent {
            conf.push_str(&format!("server=/{domain}/127.0.0.1#{port}\n"));
        }
        for (name, value) in &zone.txt {
            conf.push_str(&format!(
                "txt-record={},{}\n",
                name.trim_end_matches('.'),
                txt_strings(value)
            ));
        }
        for (name, ip) in &zone.a {
            conf.push_str(&format!(
                "host-record={},{ip}\n",
                name.trim_end_matches('.')
            ));
        }
        let conf_file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        std::fs::write(conf_file.path(), conf).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf_file.path().display()))
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg("--no-poll")
            .arg("--pid-file=")
            .arg("--user=root")
            .arg(format!("--port={port}"))
            .arg("--listen-address=127.0.0.1")
            .arg("--bind-interfaces")
            .arg("--cache-size=0")
            .arg("--log-queries")
            .arg(format!("--log-facility={}", log.path().display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start dnsmasq: {e}"))?;
        let mut server = DnsServer {
            port,
            child: Some(child),
            log,
            _conf: conf_file,
        };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if server.query_txt("listrelay-probe.invalid").is_some() {
                return Ok(server);
            }
            if let Some(Ok(Some(status))) = server.child.as_mut().map(|c| c.try_wait()) {
                let mut err = String::new();
                if let Some(mut e) = server.child.as_mut().and_then(|c| c.stderr.take()) {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("dnsmasq exited ({status}): {err}"));
            }
            if Instant::now() > end {
                return Err(format!("dnsmasq did not answer on port {port} within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The resolver address a `DnsConfig` takes: `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A server of no names (NXDOMAIN for every one) and the `[dns]` config
    /// section naming it: what a test site resolves through unless it says
    /// otherwise, so its sender checks never ask the machine's resolver
    /// (off-host, and it drops a query now and then, which costs a post the
    /// resolver's whole timeout).
    pub fn of_no_names() -> (DnsServer, String) {
        let dns = DnsServer::start(&Zone::default())
            .unwrap_or_else(|e| panic!("the test DNS server did not start: {e}"));
        let section = format!("\n[dns]\nresolvers = [\"{}\"]\n", dns.addr());
        (dns, section)
    }

    /// The process id (for tests that signal it).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// SIGSTOP: queries now time out (kept in the socket buffer).
    pub fn pause(&self) {
        // SAFETY: kill(2) on the PID of the child this harness started.
        unsafe { libc::kill(self.pid(), libc::SIGSTOP) };
    }

    /// SIGCONT: the server answers again.
    pub fn resume(&self) {
        // SAFETY: as in pause.
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
    }

    /// The query log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Asks for the TXT records of `name` over UDP. `None` when no answer
    /// came within 500 ms; `Some(rcode, strings joined per record)`.
    pub fn query_txt(&self, name: &str) -> Option<(u8, Vec<String>)> {
        let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .ok()?;
        let id: u16 = 0x4c52;
        let mut q = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.trim_end_matches('.').split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 16, 0, 1]);
        sock.send_to(&q, ("127.0.0.1", self.port)).ok()?;
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).ok()?;
        let r = &buf[..n];
        if n < 12 || r[0..2] != q[0..2] {
            return None;
        }
        let rcode = r[3] & 0x0f;
        let answers = u16::from_be_bytes([r[6], r[7]]) as usize;
        // Skip the question (our own bytes), then read each answer.
        let mut pos = q.len();
        let mut out = Vec::new();
        for _ in 0..answers {
            pos = skip_name(r, pos)?;
            let rtype = u16::from_be_bytes([*r.get(pos)?, *r.get(pos + 1)?]);
            let rdlen = u16::from_be_bytes([*r.get(pos + 8)?, *r.get(pos + 9)?]) as usize;
            let rdata = r.get(pos + 10..pos + 10 + rdlen)?;
            pos += 10 + rdlen;
            if rtype == 16 {
                let mut s = Vec::new();
                let mut i = 0;
                while i < rdata.len() {
                    let l = rdata[i] as usize;
                    s.extend_from_slice(rdata.get(i + 1..i + 1 + l)?);
                    i += 1 + l;
                }
                out.push(String::from_utf8_lossy(&s).into_owned());
            }
        }
        Some((rcode, out))
    }
}

/// Skips a (possibly compressed) domain name in a DNS message.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let l = *msg.get(pos)? as usize;
        if l == 0 {
            return Some(pos + 1);
        }
        if l & 0xc0 == 0xc0 {
            return Some(pos + 2);
        }
        pos += 1 + l;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            // A stopped process does not act on SIGTERM until continued.
            // SAFETY: kill(2) on our own child's PID.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}
