//! A private Exim 4.96 (exim4-daemon-light extracted by scripts/install-test-deps)
//! in a temp dir, configured from the same templates as
//! `listrelay integration exim` plus test-only settings (spool, log, fast
//! retry, catch-all router to the sink, inbound + re-injection ports).
//! Follows the recipes in real-mta-recipes.md (gotchas E1-E10).

use super::{make_traversable, pid_gone, poll_until, ports, terminate, wait_220, MtaConfig};
use listrelay::integration;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where scripts/install-test-deps puts things.
pub const DEFAULT_ROOT: &str = "/opt/listrelay-test";

pub struct Exim {
    dir: tempfile::TempDir,
    pub inbound_port: u16,
    pub reinject_port: u16,
    pub binary: PathBuf,
    pub config: PathBuf,
    pub spool_dir: PathBuf,
    /// mainlog; paniclog and rejectlog are beside it.
    pub log_file: PathBuf,
    pub panic_log: PathBuf,
    /// `address: CODE text` lines the re-injection port's RCPT ACL refuses
    /// (empty at start; [`Exim::set_reinject_access`] fills it).
    reinject_access: PathBuf,
    pid_file: PathBuf,
    pid: Option<i32>,
}

/// The exim binary: $LISTRELAY_TEST_EXIM, else /opt/listrelay-test/exim-root/usr/sbin/exim4.
pub fn find_binary() -> Result<PathBuf, String> {
    let p = std::env::var_os("LISTRELAY_TEST_EXIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT).join("exim-root/usr/sbin/exim4"));
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "exim binary not found at {} (set LISTRELAY_TEST_EXIM or run scripts/install-test-deps as root)",
            p.display()
        ))
    }
}

fn debian_exim_ids() -> Result<(u32, u32), String> {
    let pw = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    pw.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"Debian-exim") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| "user Debian-exim missing: run scripts/install-test-deps (as root)".into())
}

const TEST_MAIN: &str = r#"# --- test-only settings (tests/support/exim.rs)
exim_path = {EXIM}
primary_hostname = mta.test.invalid
qualify_domain = mta.test.invalid
spool_directory = {DIR}/spool
log_file_path = {DIR}/log/%slog
pid_file_path = {DIR}/exim.pid
log_selector = +received_recipients +sender_on_delivery +delivery_size +smtp_connection
disable_ipv6 = true
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s
tls_advertise_hosts =
tls_certificate = {CERT}
tls_privatekey = {KEY}
tls_verify_certificates =
keep_environment =
acl_smtp_rcpt = acl_check_rcpt
smtp_accept_max = 200
queue_run_max = 10
remote_max_parallel = 10
ignore_bounce_errors_after = 10s
timeout_frozen_after = 1m
delay_warning =
LISTRELAY_PUBLIC_INTERFACES = 127.0.0.1.{IN}

# --- from `listrelay integration exim` (integrations/exim/main.conf.snippet)
"#;

impl Exim {
    /// Writes the configuration into a fresh temp dir, starts `exim -bd -q1s`
    /// and returns once both SMTP ports answer 220.
    pub fn start(cfg: &MtaConfig) -> Result<Exim, String> {
        let binary = find_binary()?;
        let (uid, gid) = debian_exim_ids()?;
        let dir = tempfile::Builder::new()
            .prefix("listrelay-exim-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let base = dir.path().to_path_buf();
        make_traversable(&base).map_err(|e| format!("chmod 0711 {}: {e}", base.display()))?;
        for sub in ["spool", "log"] {
            let p = base.join(sub);
            std::fs::create_dir(&p).map_err(|e| e.to_string())?;
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        // E4: a pre-made EC cert keeps the first banner fast
        let tls = PathBuf::from(DEFAULT_ROOT).join("tls");
        let (cert, key) = if tls.join("key.pem").is_file() {
            (tls.join("cert.pem"), tls.join("key.pem"))
        } else {
            let (c, k) = (base.join("cert.pem"), base.join("key.pem"));
            let ok = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                ])
                .args(["-subj", "/CN=mta.test.invalid", "-days", "3650", "-keyout"])
                .arg(&k)
                .arg("-out")
                .arg(&c)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !ok {
                return Err("no TLS cert: run scripts/install-test-deps".into());
            }
            std::os::unix::fs::chown(&k, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            (c, k)
        };

        let inbound_port = ports::free_port();
        let reinject_port = ports::free_port();
        let snippets = integration::exim(&cfg.params(reinject_port));
        let get = |name: &str| super::snippet(&snippets, name);
        let d = base.display().to_string();
        let mut conf = TEST_MAIN
            .replace("{EXIM}", &binary.display().to_string())
            .replace("{DIR}", &d)
            .replace("{CERT}", &cert.display().to_string())
            .replace("{KEY}", &key.display().to_string())
            .replace("{IN}", &inbound_port.to_string());
        conf += &get("main.conf.snippet");
        // Hand-off refusals a test chooses (`set_reinject_access`), on the
        // re-injection port only, before the snippet accepts the relay:
        // `address: CODE text`, a 5xx denied, a 4xx deferred. lsearch
        // rereads the file for every new SMTP connection.
        let access = base.join("reinject_access");
        std::fs::write(&access, "").map_err(|e| e.to_string())?;
        let lookup = format!(
            "${{lookup{{$local_part@$domain}}lsearch{{{}}}}}",
            access.display()
        );
        conf += "\nbegin acl\n\nacl_check_rcpt:\n";
        for (verb, class) in [("deny", '5'), ("defer", '4')] {
            conf += &format!(
                "  {verb}  condition = ${{if eq{{$received_port}}{{{reinject_port}}}}}\n          \
                 condition = ${{if match{{{lookup}}}{{\\N^{class}\\N}}}}\n          \
                 message = {lookup}\n"
            );
        }
        conf += "  accept  hosts = :\n";
        conf += &get("acl.conf.snippet");
        conf += "  # --- test-only: nothing else relays\n  deny    message = relay not permitted\n";
        conf += "\nbegin routers\n\n";
        conf += &get("router.conf.snippet");
        conf += "\n# --- test-only: everything else -> the sink\nto_sink:\n  driver = manualroute\n  domains = ! +listrelay_domains\n  route_list = * 127.0.0.1\n  self = send\n  transport = to_sink\n  no_more\n";
        conf += "\nbegin transports\n\n";
        conf += &get("transport.conf.snippet");
        conf += &format!(
            "\n# --- test-only\nto_sink:\n  driver = smtp\n  port = {}\n  hosts_avoid_tls = *\n  tls_verify_certificates =\n",
            cfg.sink_port
        );
        conf += "\nbegin retry\n*   *   F,2m,1s\n";
        let config = base.join("exim.conf");
        std::fs::write(&config, conf).map_err(|e| e.to_string())?;

        let mut ex = Exim {
            inbound_port,
            reinject_port,
            binary,
            config,
            spool_dir: base.join("spool"),
            log_file: base.join("log/mainlog"),
            panic_log: base.join("log/paniclog"),
            reinject_access: access,
            pid_file: base.join("exim.pid"),
            pid: None,
            dir,
        };
        let out = Command::new(&ex.binary)
            .arg("-C")
            .arg(&ex.config)
            .args(["-bd", "-q1s"])
            .output()
            .map_err(|e| format!("{}: {e}", ex.binary.display()))?;
        if !out.status.success() {
            return Err(format!(
                "exim -bd failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if !poll_until(Duration::from_secs(10), || ex.read_pid().is_some()) {
            return Err(format!(
                "exim wrote no pid file\n--- mainlog:\n{}\n--- paniclog:\n{}",
                ex.log(),
                ex.panic_log()
            ));
        }
        ex.pid = ex.read_pid();
        for p in [inbound_port, reinject_port] {
            wait_220(p, Duration::from_secs(15)).map_err(|e| {
                format!(
                    "{e}\n--- mainlog:\n{}\n--- paniclog:\n{}",
                    ex.log(),
                    ex.panic_log()
                )
            })?;
        }
        Ok(ex)
    }

    fn read_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    pub fn panic_log(&self) -> String {
        std::fs::read_to_string(&self.panic_log).unwrap_or_default()
    }

    /// Stops the daemon this handle started (SIGTERM to its PID). Idempotent;
    /// also called on Drop. Delivery processes already forked finish on their own.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            terminate(pid, || pid_gone(pid));
        }
    }

    /// Makes the re-injection port refuse these recipients with these
    /// replies (`550 5.1.1 …` denies, `450 …` defers) from the next SMTP
    /// connection on; an empty slice lifts every refusal.
    pub fn set_reinject_access(&self, entries: &[(&str, &str)]) -> Result<(), String> {
        let text: String = entries
            .iter()
            .map(|(addr, reply)| format!("{addr}: {reply}\n"))
            .collect();
        std::fs::write(&self.reinject_access, text)
            .map_err(|e| format!("{}: {e}", self.reinject_access.display()))
    }

    /// `exim -qff`: one queue run, frozen messages included.
    pub fn flush(&self) {
        let _ = Command::new(&self.binary)
            .arg("-C")
            .arg(&self.config)
            .arg("-qff")
            .output();
    }

    /// No message (`*-H` spool file) left in spool/input.
    pub fn queue_is_empty(&self) -> bool {
        super::count_files(&self.spool_dir.join("input"), &|n| n.ends_with("-H")) == 0
    }

    pub fn wait_queue_empty(&self, timeout: Duration) -> bool {
        poll_until(timeout, || self.queue_is_empty())
    }
}

impl Drop for Exim {
    fn drop(&mut self) {
        self.stop();
    }
}
