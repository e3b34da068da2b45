//! A private Postfix 3.7 in a temp dir, configured from the same templates as
//! `listrelay integration postfix` plus test-only settings (queue, log, fast
//! retry, relayhost = the sink, inbound + re-injection ports on 127.0.0.1).
//! Follows the recipes in real-mta-recipes.md (gotchas P1-P11).

use super::{make_traversable, poll_until, ports, terminate, wait_220, MtaConfig};
use listrelay::integration;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Postfix {
    dir: tempfile::TempDir,
    /// "Internet-side" SMTP port (127.0.0.1).
    pub inbound_port: u16,
    /// Re-injection SMTP port for the list server (127.0.0.1), from master.cf.snippet.
    pub reinject_port: u16,
    /// `-c` directory (main.cf, master.cf, listrelay/{transport,relay_recipients}).
    pub config_dir: PathBuf,
    pub queue_dir: PathBuf,
    /// The Postfix log (maillog_file).
    pub log_file: PathBuf,
    /// The re-injection smtpd's `check_recipient_access` table (hash:), if
    /// [`Options::reinject_access`] asked for one.
    reinject_access: Option<PathBuf>,
    master: Option<Child>,
}

/// How [`Postfix::start_opts`] sets the instance up.
#[derive(Clone)]
pub struct Options {
    /// `recipient_delimiter` on both sides.
    pub delimiter: char,
    /// Give the re-injection smtpd a `check_recipient_access` hash table
    /// (empty at start; [`Postfix::set_reinject_access`] fills it), so a test
    /// can make Postfix refuse chosen members at hand-off.
    pub reinject_access: bool,
    /// Run the stock `lmtp` service chrooted, as Debian's master.cf does.
    pub lmtp_chroot: bool,
    /// Snippets rendered elsewhere (e.g. by `listrelay integration postfix`)
    /// and the re-injection port they name, instead of rendering them here.
    pub rendered: Option<(Vec<integration::Snippet>, u16)>,
    /// More main.cf lines, after everything else (the last setting wins),
    /// e.g. a longer queue lifetime for a long run.
    pub extra_main: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            delimiter: '+',
            reinject_access: false,
            lmtp_chroot: false,
            rendered: None,
            extra_main: String::new(),
        }
    }
}

const TEST_MAIN: &str = r#"# --- test-only settings (tests/support/postfix.rs)
compatibility_level = 3.6
config_directory = {DIR}/etc
queue_directory  = {DIR}/queue
data_directory   = {DIR}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.test.invalid
mydomain   = test.invalid
myorigin   = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 no local delivery in this test MTA
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols  = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_banner = $myhostname ESMTP test-postfix
relayhost = [127.0.0.1]:{SINK}
maillog_file_prefixes = /var, /dev/stdout, {DIR}
maillog_file = {DIR}/log/maillog
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = 60s
bounce_queue_lifetime = 60s
delay_warning_time = 0
in_flow_delay = 0
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtp_connect_timeout = 5s
lmtp_connect_timeout = 5s
default_destination_rate_delay = 0
smtp_destination_concurrency_failed_cohort_limit = 10
biff = no
smtputf8_enable = no
readme_directory = no
html_directory = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
lmtp_tls_security_level = none
notify_classes = resource, software

# --- from `listrelay integration postfix` (integrations/postfix/main.cf.snippet)
"#;

const TEST_MASTER_HEAD: &str = "# --- test-only inbound port
127.0.0.1:{IN} inet  n       -       n       -       -       smtpd
# --- from `listrelay integration postfix` (integrations/postfix/master.cf.snippet)
";

const TEST_MASTER_SERVICES: &str = "# --- standard services, chroot n (P5)
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed ({}): {text}", out.status))
    }
}

/// Debian's daemon_directory. (Not `postconf -d`: it resolves the host name,
/// which takes seconds with the sandbox's unreachable resolver.)
fn master_binary() -> PathBuf {
    std::env::var_os("LISTRELAY_TEST_POSTFIX_MASTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postfix/sbin/master"))
}

/// uid/gid of a user from /etc/passwd, gid of a group from /etc/group.
fn ids(file: &str, name: &str) -> Result<(u32, u32), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() != Some(&name) || f.len() < 3 {
                return None;
            }
            let a: u32 = f[2].parse().ok()?;
            let b: u32 = f.get(3).and_then(|x| x.parse().ok()).unwrap_or(a);
            Some((a, b))
        })
        .ok_or_else(|| {
            format!("{name} not in {file}: is postfix installed? (scripts/install-test-deps)")
        })
}

/// The `$queue_directory/*` lines of postfix-files: (name, owned by postfix?, group postdrop?, mode).
const QUEUE_DIRS: &[(&str, bool, bool, u32)] = &[
    ("active", true, false, 0o700),
    ("bounce", true, false, 0o700),
    ("corrupt", true, false, 0o700),
    ("defer", true, false, 0o700),
    ("deferred", true, false, 0o700),
    ("flush", true, false, 0o700),
    ("hold", true, false, 0o700),
    ("incoming", true, false, 0o700),
    ("private", true, false, 0o700),
    ("maildrop", true, true, 0o730),
    ("public", true, true, 0o710),
    ("pid", false, false, 0o755),
    ("saved", true, false, 0o700),
    ("trace", true, false, 0o700),
];

fn create_queue_dirs(queue: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let (pf_uid, pf_gid) = ids("/etc/passwd", "postfix")?;
    let (postdrop, _) = ids("/etc/group", "postdrop")?;
    for (name, pf_owned, drop_group, mode) in QUEUE_DIRS {
        let d = queue.join(name);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        let uid = if *pf_owned { pf_uid } else { 0 };
        let gid = if *drop_group {
            postdrop
        } else if *pf_owned {
            pf_gid
        } else {
            0
        };
        std::os::unix::fs::chown(&d, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", d.display()))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(*mode))
            .map_err(|e| format!("chmod {}: {e}", d.display()))?;
    }
    Ok(())
}

impl Postfix {
    /// Writes the configuration into a fresh temp dir, starts the master and
    /// returns once both SMTP ports answer 220.
    /// A Postfix in front of `sink_port` that routes the single list
    /// `list`'s addresses (post, -bounces, -request, …) to LMTP on
    /// `lmtp_port`, started off the async runtime's threads.
    pub async fn start_for_list(
        lmtp_port: u16,
        sink_port: u16,
        list: &str,
    ) -> Result<Postfix, String> {
        let mut cfg = MtaConfig::single_list(lmtp_port, sink_port);
        cfg.domains[0].local_parts = listrelay::address::list_local_parts(list);
        tokio::task::spawn_blocking(move || Postfix::start(&cfg))
            .await
            .map_err(|e| format!("starting Postfix: {e}"))?
    }

    pub fn start(cfg: &MtaConfig) -> Result<Postfix, String> {
        Postfix::start_with(cfg, '+')
    }

    /// [`Postfix::start`] with `recipient_delimiter = delimiter`.
    pub fn start_with(cfg: &MtaConfig, delimiter: char) -> Result<Postfix, String> {
        Postfix::start_opts(
            cfg,
            &Options {
                delimiter,
                ..Options::default()
            },
        )
    }

    /// [`Postfix::start`] with the choices of [`Options`].
    pub fn start_opts(cfg: &MtaConfig, opts: &Options) -> Result<Postfix, String> {
        let delimiter = opts.delimiter;
        if Command::new("postconf")
            .arg("-d")
            .arg("mail_version")
            .output()
            .is_err()
        {
            return Err("postfix is not installed: run scripts/install-test-deps (as root)".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("listrelay-postfix-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let base = dir.path().to_path_buf();
        make_traversable(&base).map_err(|e| format!("chmod 0711 {}: {e}", base.display()))?;
        let inbound_port = ports::free_port();
        let (snippets, reinject_port) = match &opts.rendered {
            Some((snippets, port)) => (snippets.clone(), *port),
            None => {
                let port = ports::free_port();
                (
                    integration::postfix(&cfg.params_with(port, delimiter)),
                    port,
                )
            }
        };
        let etc = base.join("etc");
        std::fs::create_dir_all(etc.join("listrelay")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(base.join("queue")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(base.join("log")).map_err(|e| e.to_string())?;
        run(Command::new("install")
            .args(["-d", "-o", "postfix", "-g", "postfix", "-m", "0700"])
            .arg(base.join("data")))?;

        let get = |name: &str| super::snippet(&snippets, name);
        let d = base.display().to_string();
        let main = TEST_MAIN
            .replace("{DIR}", &d)
            .replace("{SINK}", &cfg.sink_port.to_string())
            + &get("main.cf.snippet")
            + &opts.extra_main;
        let access = etc.join("reinject_access");
        let mut reinject_service = get("master.cf.snippet");
        if opts.reinject_access {
            // After the snippet's own empty smtpd_recipient_restrictions:
            // the last -o of a service wins.
            reinject_service.push_str(&format!(
                "  -o smtpd_recipient_restrictions=check_recipient_access,hash:{}\n",
                access.display()
            ));
        }
        let services = if opts.lmtp_chroot {
            TEST_MASTER_SERVICES.replace(
                "lmtp      unix  -       -       n",
                "lmtp      unix  -       -       y",
            )
        } else {
            TEST_MASTER_SERVICES.to_string()
        };
        let master = TEST_MASTER_HEAD.replace("{IN}", &inbound_port.to_string())
            + &reinject_service
            + &services;
        let w = |p: PathBuf, s: &str| {
            std::fs::write(&p, s).map_err(|e| format!("{}: {e}", p.display()))
        };
        w(etc.join("main.cf"), &main)?;
        w(etc.join("master.cf"), &master)?;
        w(etc.join("listrelay/transport"), &get("transport"))?;
        w(
            etc.join("listrelay/relay_recipients"),
            &get("relay_recipients"),
        )?;

        // P1: the queue subdirectories, as `postfix check` (post-install
        // create-missing, from postfix-files) would make them, but in ~1 ms
        // instead of ~2 s
        create_queue_dirs(&base.join("queue"))?;
        let mut pf = Postfix {
            reinject_access: opts.reinject_access.then_some(access),
            inbound_port,
            reinject_port,
            config_dir: etc.clone(),
            queue_dir: base.join("queue"),
            log_file: base.join("log/maillog"),
            master: None,
            dir,
        };
        if opts.reinject_access {
            pf.postmap_reinject_access(&[])?;
        }
        pf.spawn_master()?;
        Ok(pf)
    }

    /// Starts the master again after [`Postfix::stop`], same ports and queue.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn_master()
    }

    fn spawn_master(&mut self) -> Result<(), String> {
        // The master in the foreground as our child (like pf.sh start-fg):
        // `master -w` took ~1.5 s here, and a child of ours is reaped at once
        // on stop (no PID-1 zombie delay: P7).
        let child = Command::new(master_binary())
            .arg("-c")
            .arg(&self.config_dir)
            .arg("-s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", master_binary().display()))?;
        self.master = Some(child);
        for p in [self.inbound_port, self.reinject_port] {
            wait_220(p, Duration::from_secs(15))
                .map_err(|e| format!("{e}\n--- maillog:\n{}", self.log()))?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The whole Postfix log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Whether a master holds this instance's master.pid lock.
    pub fn is_running(&self) -> bool {
        // master -t exits 0 when the master is NOT running (P7)
        !Command::new(master_binary())
            .arg("-c")
            .arg(&self.config_dir)
            .arg("-t")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(true)
    }

    /// Stops the master this handle started (SIGTERM to its PID; it passes it on
    /// to its children). Idempotent; also called on Drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.master.take() {
            // the master passes SIGTERM on to its children
            terminate(child.id() as i32, || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            let _ = child.wait();
        }
    }

    /// Writes the re-injection access table (`address  action` lines, e.g.
    /// `("bob@example.net", "550 5.1.1 no such user")`), runs `postmap` on
    /// it and reloads Postfix, as an operator would.
    pub fn set_reinject_access(&self, entries: &[(&str, &str)]) -> Result<(), String> {
        self.postmap_reinject_access(entries)?;
        self.reload()
    }

    fn postmap_reinject_access(&self, entries: &[(&str, &str)]) -> Result<(), String> {
        let path = self
            .reinject_access
            .as_ref()
            .ok_or("started without Options::reinject_access")?;
        let text: String = entries
            .iter()
            .map(|(addr, action)| format!("{addr}\t{action}\n"))
            .collect();
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        run(Command::new("postmap")
            .arg("-c")
            .arg(&self.config_dir)
            .arg(format!("hash:{}", path.display())))?;
        Ok(())
    }

    /// `postfix reload`: SIGHUP to the master this handle started (what
    /// `postfix reload` sends); new processes read the new configuration.
    pub fn reload(&self) -> Result<(), String> {
        let child = self.master.as_ref().ok_or("postfix is not running")?;
        // SAFETY: plain kill(2) on the master this handle started.
        if unsafe { libc::kill(child.id() as i32, libc::SIGHUP) } != 0 {
            return Err(format!(
                "SIGHUP to postfix master {}: {}",
                child.id(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// `postqueue -f`: retry deferred mail now.
    pub fn flush(&self) {
        let _ = Command::new("postqueue")
            .arg("-c")
            .arg(&self.config_dir)
            .arg("-f")
            .output();
    }

    /// No message in incoming/active/deferred/hold/maildrop.
    pub fn queue_is_empty(&self) -> bool {
        ["maildrop", "incoming", "active", "deferred", "hold"]
            .iter()
            .all(|q| super::count_files(&self.queue_dir.join(q), &|_| true) == 0)
    }

    pub fn wait_queue_empty(&self, timeout: Duration) -> bool {
        poll_until(timeout, || self.queue_is_empty())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}
