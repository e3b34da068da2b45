//! Test support shared by the integration tests (`mod support;`).
//!
//! * [`bench`]: the benchmarks' post, peak RSS and smtp-source reference;
//! * [`blackbox`]: the real `listrelay serve` on a data dir set up through
//!   the CLI, with a blocking LMTP client (durability, hostile input, LMTP);
//! * [`ports`]: free loopback ports;
//! * [`sink`]: an in-process counting SMTP sink ("the internet");
//! * [`lmtp`]: a raw LMTP/SMTP client for pipelining tests;
//! * [`postfix`] / [`exim`]: private real MTAs in temp dirs, configured from
//!   the same templates as `listrelay integration postfix|exim`;
//! * [`dns`]: a real DNS server (dnsmasq) with test zones;
//! * [`dkimpy`]: the independent DKIM/ARC signer and verifier (python3-dkim);
//! * [`browser`]: headless Chromium over WebDriver (the pages);
//! * [`mailman3`] / [`mlmmj`]: the real list engines the importers read.
#![allow(dead_code)]

pub mod bench;
pub mod blackbox;
pub mod browser;
pub mod dkimpy;
pub mod dns;
pub mod exim;
pub mod lmtp;
pub mod mailman3;
pub mod mlmmj;
pub mod moderation;
pub mod mta;
pub mod outbox;
pub mod pg;
pub mod ports;
pub mod postfix;
pub mod server;
pub mod sink;

use listrelay::integration::{DomainParams, LmtpTarget};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a test MTA should route where.
#[derive(Debug, Clone)]
pub struct MtaConfig {
    /// The list domains and their valid local parts.
    pub domains: Vec<DomainParams>,
    /// Where the MTA delivers list mail (the list server under test).
    pub lmtp: LmtpTarget,
    /// Port of the SMTP sink on 127.0.0.1 that gets every other domain.
    pub sink_port: u16,
}

impl MtaConfig {
    /// `lists.example.org` with `list`, `list-bounces`, `list-request`,
    /// `list-owner`; LMTP at 127.0.0.1:`lmtp_port`; catch-all to the sink.
    pub fn single_list(lmtp_port: u16, sink_port: u16) -> Self {
        MtaConfig {
            domains: vec![DomainParams {
                name: "lists.example.org".into(),
                local_parts: ["list", "list-bounces", "list-request", "list-owner"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            }],
            lmtp: LmtpTarget::Tcp(format!("127.0.0.1:{lmtp_port}")),
            sink_port,
        }
    }
}

impl MtaConfig {
    /// The integration parameters for an MTA whose re-injection port is `reinject_port`.
    pub fn params(&self, reinject_port: u16) -> listrelay::integration::Params {
        self.params_with(reinject_port, '+')
    }

    /// [`MtaConfig::params`] with another recipient delimiter than `+`.
    pub fn params_with(
        &self,
        reinject_port: u16,
        delimiter: char,
    ) -> listrelay::integration::Params {
        listrelay::integration::Params {
            domains: self.domains.clone(),
            lmtp: self.lmtp.clone(),
            reinject: format!("127.0.0.1:{reinject_port}"),
            delimiter,
        }
    }
}

/// The contents of one rendered snippet (empty if there is none of that name).
pub fn snippet(snippets: &[listrelay::integration::Snippet], file: &str) -> String {
    snippets
        .iter()
        .find(|s| s.file == file)
        .map(|s| s.contents.clone())
        .unwrap_or_default()
}

/// chmod 0711 on `dir` and on each ancestor that is not traversable by
/// others (Postfix and Exim drop to their own users; a 0700 parent makes
/// them die, often silently: gotchas P2/E6).
pub fn make_traversable(dir: &Path) -> std::io::Result<()> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let meta = std::fs::metadata(d)?;
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode((mode & 0o7777) | 0o711))?;
        }
        cur = d.parent();
    }
    Ok(())
}

/// Waits until 127.0.0.1:`port` sends a 220 banner.
pub fn wait_220(port: u16, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let end = Instant::now() + timeout;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 512];
            if let Ok(n) = s.read(&mut buf) {
                if n >= 3 && &buf[..3] == b"220" {
                    let _ = s.write_all(b"QUIT\r\n");
                    return Ok(());
                }
            }
        }
        if Instant::now() > end {
            return Err(format!("port {port} did not answer 220 within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to `pid`, waits until `gone()` (up to 4 s), then SIGKILL.
pub fn terminate(pid: i32, mut gone: impl FnMut() -> bool) {
    if pid <= 1 {
        return;
    }
    // SAFETY: plain kill(2) on a PID this harness started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    if !poll_until(Duration::from_secs(4), &mut gone) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// True if the process is gone or a zombie (PID 1 reaps late here: P7/E9).
pub fn pid_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
            .unwrap_or(true),
    }
}

/// Counts regular files under `dir` (recursively) whose name passes `f`.
pub fn count_files(dir: &Path, f: &dyn Fn(&str) -> bool) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            n += count_files(&e.path(), f);
        } else if ft.is_file() && f(&e.file_name().to_string_lossy()) {
            n += 1;
        }
    }
    n
}
