//! Chaos soak (issue 11 part 4): a benchmark run by hand, not a CI test.
//!
//! `cargo bench --bench chaos` (as root: it mounts a tmpfs and runs a
//! private PostgreSQL cluster as the `postgres` user). Real Postfix in front
//! of `listrelay serve`; three lists (1,000, 10,000 and 50,000 members by
//! default, some VERP); 8 clients posting at random intervals, some reusing
//! an earlier post's Message-ID; the counting sink refuses a share of the
//! members, so Postfix's bounces come back through LMTP. Faults: kill -9 of
//! listrelay every 30-90 s, one Postfix stop and start, one full-disk
//! episode on the spool (a small tmpfs), and on PostgreSQL one database
//! restart (a private cluster on another loopback port, never the shared
//! one). Then the faults stop, the queues drain, and it prints:
//! * every acknowledged post reached every member at least once;
//! * duplicate copies, against the documented bound;
//! * no Message-ID delivered as two different posts;
//! * no panic in listrelay's log;
//! * RSS and open files after warm-up against the end, at equal process
//!   age (< 10 % growth).
//!
//! Environment: `CHAOS_SECS` (default 1200), `CHAOS_STORE=sled|postgres`
//! (default sled), `CHAOS_SIZES` (default `1000,10000,50000`),
//! `CHAOS_POST_SECS=MIN,MAX` (each client's pause between posts, default
//! `20,120`), `CHAOS_KILL_SECS=MIN,MAX` (default `30,90`), `CHAOS_SAMPLES=FILE`
//! (every resource sample as a line). Exit status 1 if
//! an invariant fails. See docs/operations.md ("Chaos soak").

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use listrelay::address::list_local_parts;
use listrelay::integration::{DomainParams, LmtpTarget};
use support::lmtp::smtp_send;
use support::postfix::{Options, Postfix};
use support::sink::{RcptVerdict, Sink};
use support::{make_traversable, ports, wait_220, MtaConfig};

const DOMAIN: &str = "lists.example.org";
/// Fan-out workers and recipients per transaction, as configured below: the
/// documented duplicate bound per crash is their product.
const WORKERS: usize = 4;
const MAX_RCPT: usize = 100;
const TAG: &str = "X-Chaos-Post";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_range(name: &str, default: (u64, u64)) -> (u64, u64) {
    std::env::var(name)
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once(',')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .filter(|(a, b)| a <= b)
        .unwrap_or(default)
}

/// A small xorshift generator: the soak needs variety, not security.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed: {text}"))
    }
}

/// A tmpfs mounted for the run, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at))
        .unwrap_or_else(|e| panic!("the soak needs root to mount its spool tmpfs: {e}"));
        Tmpfs(at.to_path_buf())
    }
}

/// Fills the file system of `dir`; returns the filler to remove.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 1 << 20];
    while f.write_all(&block).is_ok() {}
    // and the last bytes
    while f.write_all(&block[..512]).is_ok() {}
    path
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A private PostgreSQL cluster on its own loopback port, run as the
/// `postgres` user (never the machine's shared server on 5432); stopped
/// on drop.
struct PgCluster(PgCtl);

/// Where the private cluster lives, to start and restart it.
#[derive(Clone)]
struct PgCtl {
    data: PathBuf,
    log: PathBuf,
    port: u16,
}

impl PgCluster {
    fn create(base: &Path) -> PgCluster {
        let dir = base.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("chown").args(["postgres:postgres"]).arg(&dir)).unwrap();
        let pg = PgCtl {
            data: dir.join("data"),
            log: dir.join("log"),
            port: ports::free_port(),
        };
        run(PgCtl::as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&pg.data))
        .unwrap();
        pg.start();
        run(PgCtl::as_postgres("createdb").args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "chaos",
        ]))
        .unwrap();
        PgCluster(pg)
    }
}

impl PgCtl {
    fn as_postgres(program: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join(program));
        c
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/chaos", self.port)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=100",
            self.port
        );
        run(Self::as_postgres("pg_ctl")
            .args(["-w", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-o", &opts, "start"]))
        .unwrap();
    }

    /// Stop as a crash would (`-m immediate`), then start again.
    fn restart(&self) {
        let _ = run(Self::as_postgres("pg_ctl")
            .args(["-w", "-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop"));
        std::thread::sleep(Duration::from_secs(3));
        self.start();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = run(PgCtl::as_postgres("pg_ctl")
            .args(["-w", "-m", "fast", "-D"])
            .arg(&self.0.data)
            .arg("stop"));
    }
}

/// `listrelay serve`, killed and started again by the soak.
struct Serve {
    config: PathBuf,
    log: PathBuf,
    lmtp_port: u16,
    child: Option<Child>,
    started: Instant,
}

impl Serve {
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new(support::server::bin())
            .arg("--config")
            .arg(&self.config)
            .args(args))
    }

    /// Starts `serve` and waits for its LMTP greeting; a process that exits
    /// first (its store not reachable yet) is started again after 2 s, as
    /// systemd's `Restart=on-failure` would.
    fn start(&mut self) {
        for _ in 0..30 {
            self.spawn();
            let up = support::poll_until(Duration::from_secs(120), || {
                self.exited() || wait_220(self.lmtp_port, Duration::from_millis(100)).is_ok()
            });
            if up && !self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        eprintln!("listrelay did not come back after 30 starts");
    }

    fn spawn(&mut self) {
        let child = support::server::spawn_serve(&self.config, &self.log).unwrap();
        self.child = Some(child);
        self.started = Instant::now();
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process exited by itself (e.g. it could not open its
    /// store while the database was starting up).
    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            support::terminate(c.id() as i32, || matches!(c.try_wait(), Ok(Some(_))));
            let _ = c.wait();
        }
    }
}

/// One list of the soak.
struct SoakList {
    address: String,
    members: Vec<String>,
}

/// Members whose local part starts with `nx-` are refused by the sink
/// (so Postfix bounces them back to the list); they are not expected.
fn refused(addr: &str) -> bool {
    addr.starts_with("nx-")
}

fn make_lists(sizes: &[usize]) -> Vec<SoakList> {
    sizes
        .iter()
        .enumerate()
        .map(|(n, &size)| {
            let name = format!("soak{n}");
            let members = (0..size)
                .map(|i| {
                    let nx = if i % 200 == 7 { "nx-" } else { "" };
                    format!("{nx}{name}-m{i}@d{}.example.net", i % 20)
                })
                .collect();
            SoakList {
                address: format!("{name}@{DOMAIN}"),
                members,
            }
        })
        .collect()
}

/// One post a client had acknowledged by Postfix.
#[derive(Clone)]
struct Posted {
    tag: String,
    list: usize,
    message_id: String,
    /// Reuses an earlier post's Message-ID (a duplicate the list discards).
    duplicate: bool,
}

#[derive(Default)]
struct Log {
    posted: Vec<Posted>,
    refused_posts: usize,
    kills: usize,
    postfix_restarts: usize,
    disk_full_episodes: usize,
    pg_restarts: usize,
    /// Starts after listrelay exited by itself, as systemd's
    /// `Restart=on-failure` does.
    supervisor_restarts: usize,
    /// The running listrelay's resources, sampled at least 15 s after each
    /// start.
    samples: Vec<Sample>,
}

/// One sample of the running listrelay.
struct Sample {
    /// Seconds since the soak started.
    t: f64,
    /// Seconds since this process started: RSS climbs with it (see
    /// [`growth_at_equal_age`]).
    age: u64,
    rss_kib: u64,
    fds: usize,
}

/// Growth (%) of the median of `value` from the warm-up quarter to the last
/// one, comparing samples of processes of the same age. A process killed
/// every 30-90 s is always young, and a young process's RSS climbs with its
/// age (19 MiB at start to 40-50 MiB after a minute of fan-out, then flat:
/// CHAOS_SAMPLES dumps of a 10-minute soak), so pooling every sample of a
/// quarter compares how long the processes it caught had lived, not the
/// same process over time. Ages are bucketed (15-30, 30-45, 45-60, 60-90 s,
/// and 90 s or more, where a soak without kills has all its samples); the
/// growth is the sample-weighted mean over the buckets both quarters have.
/// Also returns the two quarters' medians over all samples, for the record.
fn growth_at_equal_age(
    samples: &[Sample],
    quarters: [(f64, f64); 2],
    value: impl Fn(&Sample) -> f64,
) -> (f64, f64, f64) {
    const BUCKETS: [(u64, u64); 5] = [(15, 30), (30, 45), (45, 60), (60, 90), (90, u64::MAX)];
    let pick = |(lo, hi): (f64, f64), ages: (u64, u64)| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.t >= lo && s.t < hi && s.age >= ages.0 && s.age < ages.1)
            .map(&value)
            .collect()
    };
    let (mut weighted, mut weight) = (0.0, 0.0);
    for ages in BUCKETS {
        let (mut warm, mut end) = (pick(quarters[0], ages), pick(quarters[1], ages));
        if warm.is_empty() || end.is_empty() {
            continue;
        }
        let n = (warm.len() + end.len()) as f64;
        let (a, b) = (median(&mut warm), median(&mut end));
        if a > 0.0 {
            weighted += (b / a - 1.0) * 100.0 * n;
            weight += n;
        }
    }
    let all = |q| pick(q, (0, u64::MAX));
    let growth = if weight > 0.0 {
        weighted / weight
    } else {
        f64::NAN
    };
    (
        growth,
        median(&mut all(quarters[0])),
        median(&mut all(quarters[1])),
    )
}

/// The bytes of the files under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn rss_and_fds(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

fn message(tag: &str, list: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: poster@example.com\r\nTo: {list}\r\nSubject: soak {tag}\r\n\
         Message-ID: <{message_id}>\r\n{TAG}: {tag}\r\n\r\nchaos soak post {tag}\r\n"
    )
    .into_bytes()
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let secs = env_secs("CHAOS_SECS", 1200);
    let postgres = std::env::var("CHAOS_STORE").is_ok_and(|s| s == "postgres");
    let sizes: Vec<usize> = std::env::var("CHAOS_SIZES")
        .unwrap_or_else(|_| "1000,10000,50000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let post_secs = env_range("CHAOS_POST_SECS", (20, 120));
    let kill_secs = env_range("CHAOS_KILL_SECS", (30, 90));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(soak(secs, postgres, sizes, post_secs, kill_secs));
    std::process::exit(if ok { 0 } else { 1 });
}

async fn soak(
    secs: u64,
    postgres: bool,
    sizes: Vec<usize>,
    post_secs: (u64, u64),
    kill_secs: (u64, u64),
) -> bool {
    let store = if postgres { "postgres" } else { "sled" };
    println!("chaos soak: {secs} s on {store}, lists {sizes:?}, posts every {post_secs:?} s per client, kill -9 every {kill_secs:?} s");
    let base = tempfile::Builder::new()
        .prefix("listrelay-chaos-")
        .tempdir()
        .unwrap();
    make_traversable(base.path()).unwrap();
    let data = base.path().join("data");
    // The spool lives on a small tmpfs, so it can be filled.
    let spool = Tmpfs::mount(&data.join("spool"), "64m");
    let pg = postgres.then(|| PgCluster::create(base.path()));

    let sink = Arc::new(
        Sink::builder()
            .tag_header(TAG)
            .policy(|rcpt| {
                if refused(rcpt) {
                    RcptVerdict::Reject
                } else {
                    RcptVerdict::Accept
                }
            })
            .start()
            .await
            .unwrap(),
    );
    let lists = Arc::new(make_lists(&sizes));
    let lmtp_port = ports::free_port();
    let cfg = MtaConfig {
        domains: vec![DomainParams {
            name: DOMAIN.into(),
            local_parts: lists
                .iter()
                .flat_map(|l| list_local_parts(l.address.split('@').next().unwrap()))
                .collect(),
        }],
        lmtp: LmtpTarget::Tcp(format!("127.0.0.1:{lmtp_port}")),
        sink_port: sink.port(),
    };
    let opts = Options {
        // the harness's 60 s suits tests; a soak's outages must not bounce posts
        extra_main: "maximal_queue_lifetime = 1d\nbounce_queue_lifetime = 1d\n".into(),
        ..Options::default()
    };
    // A loaded machine can make the first start miss the harness's 15 s.
    let pf = tokio::task::spawn_blocking(move || {
        let mut last = String::new();
        for _ in 0..3 {
            match Postfix::start_opts(&cfg, &opts) {
                Ok(pf) => return pf,
                Err(e) => last = e,
            }
        }
        panic!("postfix did not start (3 tries): {last}")
    })
    .await
    .unwrap();
    let (inbound, reinject) = (pf.inbound_port, pf.reinject_port);
    let pf = Arc::new(Mutex::new(pf));

    let config = base.path().join("listrelay.toml");
    let store_line = pg
        .as_ref()
        .map(|p| format!("store = \"{}\"\n", p.0.url()))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "{store_line}data_dir = \"{}\"\nhostname = \"{DOMAIN}\"\n\
             [lmtp]\nlisten = [\"127.0.0.1:{lmtp_port}\"]\n\
             [smtp]\nrelay = \"127.0.0.1:{reinject}\"\nmax_connections = 8\n\
             [fanout]\nworkers = {WORKERS}\npoll_interval_ms = 200\nmta_backoff_max_secs = 2\n\
             lease_secs = 20\nretry_min_secs = 5\nretry_max_secs = 30\n\
             [bounce]\npoll_interval_ms = 500\n",
            data.display()
        ),
    )
    .unwrap();
    let mut serve = Serve {
        config,
        log: base.path().join("serve.log"),
        lmtp_port,
        child: None,
        started: Instant::now(),
    };
    let t_setup = Instant::now();
    for (i, l) in lists.iter().enumerate() {
        serve.cli(&["list", "create", &l.address]).unwrap();
        serve
            .cli(&["list", "set", &l.address, "nonmember_action", "accept"])
            .unwrap();
        let verp = ["50", "2", "0"].get(i).copied().unwrap_or("0");
        serve
            .cli(&["list", "set", &l.address, "verp_percent", verp])
            .unwrap();
        let file = base.path().join(format!("members{i}.txt"));
        std::fs::write(&file, l.members.join("\n") + "\n").unwrap();
        serve
            .cli(&["member", "import", &l.address, file.to_str().unwrap()])
            .unwrap();
    }
    serve.start();
    println!(
        "set up in {:.1} s; running for {secs} s",
        t_setup.elapsed().as_secs_f64()
    );
    let serve = Arc::new(Mutex::new(serve));
    let log = Arc::new(Mutex::new(Log::default()));
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);

    // 8 clients
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..8u64 {
        let (lists, log) = (lists.clone(), log.clone());
        tasks.spawn(async move {
            let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ (c + 1).wrapping_mul(0xbf58_476d));
            let mut n = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(rng.range(post_secs))).await;
                if Instant::now() >= deadline {
                    return;
                }
                // lists weighted towards the small ones: 70 %, 25 %, 5 %
                let roll = rng.next() % 100;
                let list = match roll {
                    0..70 => 0,
                    70..95 => 1,
                    _ => 2,
                }
                .min(lists.len() - 1);
                n += 1;
                let tag = format!("c{c}p{n}");
                let earlier = {
                    let l = log.lock().unwrap();
                    let mine: Vec<&Posted> = l
                        .posted
                        .iter()
                        .filter(|p| p.list == list && !p.duplicate)
                        .collect();
                    (rng.next().is_multiple_of(10) && !mine.is_empty())
                        .then(|| mine[rng.next() as usize % mine.len()].message_id.clone())
                };
                let duplicate = earlier.is_some();
                let message_id = earlier.unwrap_or_else(|| format!("{tag}@soak.example.com"));
                let addr = &lists[list].address;
                let msg = message(&tag, addr, &message_id);
                match smtp_send(inbound, "poster@example.com", &[addr], &msg).await {
                    Ok(()) => log.lock().unwrap().posted.push(Posted {
                        tag,
                        list,
                        message_id,
                        duplicate,
                    }),
                    Err(_) => log.lock().unwrap().refused_posts += 1,
                }
            }
        });
    }

    // kill -9 every 30-90 s
    {
        let (serve, log) = (serve.clone(), log.clone());
        tasks.spawn_blocking(move || {
            let mut rng = Rng::new(0x5eed);
            loop {
                let wait = Duration::from_secs(rng.range(kill_secs));
                if Instant::now() + wait >= deadline {
                    return;
                }
                std::thread::sleep(wait);
                let mut s = serve.lock().unwrap();
                s.kill9();
                log.lock().unwrap().kills += 1;
                s.start();
            }
        });
    }

    // resource samples, and the supervisor (systemd's Restart=on-failure)
    {
        let (serve, log) = (serve.clone(), log.clone());
        // CHAOS_SAMPLES=FILE: every sample also as a line `t age rss_kib fds
        // data_bytes`, to tell a process that grows from one that starts
        // larger on a larger store.
        let mut dump = std::env::var_os("CHAOS_SAMPLES").map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("CHAOS_SAMPLES {}: {e}", path.display()))
        });
        let data_dir = data.clone();
        tasks.spawn_blocking(move || {
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_secs(2));
                let (pid, age) = {
                    let mut s = serve.lock().unwrap();
                    if s.exited() {
                        std::thread::sleep(Duration::from_secs(2)); // RestartSec=2
                        s.start();
                        log.lock().unwrap().supervisor_restarts += 1;
                    }
                    (s.pid(), s.started.elapsed())
                };
                if age < Duration::from_secs(15) {
                    continue;
                }
                if let Some((rss, fds)) = pid.and_then(rss_and_fds) {
                    let t = t0.elapsed().as_secs_f64();
                    log.lock().unwrap().samples.push(Sample {
                        t,
                        age: age.as_secs(),
                        rss_kib: rss,
                        fds,
                    });
                    if let Some(f) = &mut dump {
                        let line = format!(
                            "{t:.0} {} {rss} {fds} {}\n",
                            age.as_secs(),
                            dir_bytes(&data_dir)
                        );
                        std::io::Write::write_all(f, line.as_bytes()).unwrap();
                    }
                }
            }
        });
    }

    // the one-off faults at fixed points of the run
    {
        let (pf, log) = (pf.clone(), log.clone());
        let spool_path = spool.0.clone();
        let pg_ctl = pg.as_ref().map(|p| p.0.clone());
        tasks.spawn_blocking(move || {
            let at = |share: f64| t0 + Duration::from_secs_f64(secs as f64 * share);
            let sleep_until = |t: Instant| {
                let now = Instant::now();
                if t > now {
                    std::thread::sleep(t - now);
                }
            };
            sleep_until(at(0.3));
            {
                let mut p = pf.lock().unwrap();
                p.stop();
                std::thread::sleep(Duration::from_secs(10));
                if let Err(e) = p.restart() {
                    eprintln!("postfix did not come back: {e}");
                }
            }
            log.lock().unwrap().postfix_restarts += 1;
            println!(
                "[{:>5.0} s] postfix stopped for 10 s and started",
                t0.elapsed().as_secs_f64()
            );

            sleep_until(at(0.5));
            let filler = fill(&spool_path);
            std::thread::sleep(Duration::from_secs(20));
            let _ = std::fs::remove_file(&filler);
            log.lock().unwrap().disk_full_episodes += 1;
            println!(
                "[{:>5.0} s] spool full for 20 s, freed",
                t0.elapsed().as_secs_f64()
            );

            if let Some(pg) = pg_ctl {
                sleep_until(at(0.65));
                pg.restart();
                log.lock().unwrap().pg_restarts += 1;
                println!(
                    "[{:>5.0} s] PostgreSQL killed (immediate) and started",
                    t0.elapsed().as_secs_f64()
                );
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            eprintln!("a soak task failed: {e}");
        }
    }
    println!(
        "[{:>5.0} s] faults over; draining",
        t0.elapsed().as_secs_f64()
    );
    let drained = drain(&sink, &pf, &serve).await;
    let t_drain = t0.elapsed().as_secs_f64();

    let log = log.lock().unwrap();
    let serve = serve.lock().unwrap();
    let mta_log = pf.lock().unwrap().log();
    print_deferrals(&mta_log);
    let ok = report(&log, &lists, &sink, &serve, drained, t_drain, secs);
    drop(serve);
    drop(spool);
    drop(pg);
    ok
}

/// Waits until Postfix's queue and listrelay's are empty and the sink has
/// seen nothing new for 15 s (at most 20 minutes).
async fn drain(sink: &Sink, pf: &Arc<Mutex<Postfix>>, serve: &Arc<Mutex<Serve>>) -> bool {
    let end = Instant::now() + Duration::from_secs(1200);
    let mut last = (sink.rcpt_count(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let n = sink.rcpt_count();
        if n != last.0 {
            last = (n, Instant::now());
        }
        {
            let mut s = serve.lock().unwrap();
            if s.exited() {
                s.start();
            }
        }
        let pf_empty = pf.lock().unwrap().queue_is_empty();
        let lr_empty = serve
            .lock()
            .unwrap()
            .cli(&["--json", "queue"])
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|v| {
                v["messages"].as_array().is_some_and(Vec::is_empty)
                    && v["jobs"].as_array().is_some_and(Vec::is_empty)
            });
        if pf_empty && lr_empty && last.1.elapsed() > Duration::from_secs(15) {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
    }
}

/// What Postfix saw of the faults: LMTP deliveries to listrelay it had to
/// defer, by cause (the mail stayed in its queue and went later).
fn print_deferrals(mta_log: &str) {
    let deferred: Vec<&str> = mta_log
        .lines()
        .filter(|l| l.contains("/lmtp[") && l.contains("status=deferred"))
        .collect();
    let count = |text: &str| deferred.iter().filter(|l| l.contains(text)).count();
    println!(
        "postfix deferred {} LMTP deliveries: {} refused connections (listrelay down), {} answered 452 (spool full), {} answered 451, {} other",
        deferred.len(),
        count("Connection refused"),
        count("452 "),
        count("451 "),
        deferred.len() - count("Connection refused") - count("452 ") - count("451 ")
    );
}

fn report(
    log: &Log,
    lists: &[SoakList],
    sink: &Sink,
    serve: &Serve,
    drained: bool,
    t_drain: f64,
    secs: u64,
) -> bool {
    // copies per (post tag, member)
    let mut copies: HashMap<&str, HashMap<String, u32>> = HashMap::new();
    let records = sink.records();
    for t in &records {
        let Some(tag) = &t.tag else { continue };
        let per = copies.entry(tag.as_str()).or_default();
        for r in &t.rcpts {
            *per.entry(r.to_ascii_lowercase()).or_default() += 1;
        }
    }
    let originals: Vec<&Posted> = log.posted.iter().filter(|p| !p.duplicate).collect();
    // Posts sharing a Message-ID: listrelay keeps whichever reaches it first
    // (Postfix may hold the earlier one back while listrelay is down), so
    // the group's delivered post is the one expected at every member.
    let mut groups: HashMap<&str, Vec<&Posted>> = HashMap::new();
    for p in &log.posted {
        groups.entry(p.message_id.as_str()).or_default().push(p);
    }
    let mut expected = 0usize;
    let mut missing = 0usize;
    let mut missing_posts = HashSet::new();
    let mut duplicates = 0u64;
    for group in groups.values() {
        let p = group
            .iter()
            .max_by_key(|p| copies.get(p.tag.as_str()).map_or(0, HashMap::len))
            .unwrap();
        let got = copies.get(p.tag.as_str());
        for m in lists[p.list].members.iter().filter(|m| !refused(m)) {
            expected += 1;
            match got.and_then(|g| g.get(m)) {
                Some(&n) => duplicates += u64::from(n - 1),
                None => {
                    missing += 1;
                    missing_posts.insert(p.tag.as_str());
                }
            }
        }
    }
    // A Message-ID delivered as two different posts to one member.
    let mut by_id: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in &log.posted {
        by_id
            .entry(p.message_id.as_str())
            .or_default()
            .push(p.tag.as_str());
    }
    let mut id_twice = 0usize;
    let mut dup_posts_delivered = 0usize;
    for tags in by_id.values().filter(|t| t.len() > 1) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for tag in tags {
            if let Some(g) = copies.get(tag) {
                for m in g.keys() {
                    *seen.entry(m.as_str()).or_default() += 1;
                }
            }
        }
        id_twice += seen.values().filter(|&&n| n > 1).count();
    }
    for group in groups.values() {
        let delivered = group
            .iter()
            .filter(|p| copies.contains_key(p.tag.as_str()))
            .count();
        dup_posts_delivered += delivered.saturating_sub(1);
    }
    let bound = (log.kills * WORKERS * MAX_RCPT) as u64;
    let serve_log = std::fs::read_to_string(&serve.log).unwrap_or_default();
    let panics = serve_log.matches("panicked").count();

    // RSS and open files: the second quarter (after warm-up) against the
    // last, at equal process age.
    let quarters = [(0.25, 0.5), (0.75, 1.01)].map(|(a, b)| (a * secs as f64, b * secs as f64));
    let (rss_growth, rss_warm, rss_end) =
        growth_at_equal_age(&log.samples, quarters, |s| s.rss_kib as f64 / 1024.0);
    let (fds_growth, fds_warm, fds_end) =
        growth_at_equal_age(&log.samples, quarters, |s| s.fds as f64);

    let pass = |b: bool| if b { "PASS" } else { "FAIL" };
    let all_reached = missing == 0 && drained;
    let dups_ok = duplicates <= bound;
    let ids_ok = id_twice == 0 && dup_posts_delivered == 0;
    let panic_ok = panics == 0;
    // no samples in a quarter (listrelay down all along) proves nothing
    let flat = rss_growth < 10.0 && fds_growth < 10.0; // NaN (no common age) fails
    println!("\n== chaos soak results ({secs} s of faults, drained at {t_drain:.0} s)");
    println!(
        "posts acknowledged: {} ({} reusing a Message-ID), refused by the MTA while down: {}",
        log.posted.len(),
        log.posted.len() - originals.len(),
        log.refused_posts
    );
    println!(
        "faults: {} kill -9, {} postfix stop/start, {} full spool, {} PostgreSQL restarts; listrelay exited by itself {} times (started again after 2 s)",
        log.kills, log.postfix_restarts, log.disk_full_episodes, log.pg_restarts, log.supervisor_restarts
    );
    println!(
        "copies at the sink: {} in {} transactions",
        sink.rcpt_count(),
        sink.transaction_count()
    );
    println!(
        "{}  every acknowledged post reached every member: {} of {expected} member copies missing ({} posts){}",
        pass(all_reached),
        missing,
        missing_posts.len(),
        if drained { "" } else { "; the queues did not drain" }
    );
    println!(
        "{}  duplicates within the bound: {duplicates} extra copies, bound {bound} ({} kills x {WORKERS} workers x {MAX_RCPT} rcpt/txn)",
        pass(dups_ok),
        log.kills
    );
    println!(
        "{}  no Message-ID delivered twice: {id_twice} members got two posts with one Message-ID; {dup_posts_delivered} of {} reused-ID posts delivered as well as their first",
        pass(ids_ok),
        log.posted.len() - originals.len()
    );
    println!("{}  no panic in the logs: {panics}", pass(panic_ok));
    println!(
        "{}  RSS and open files flat after warm-up, at equal process age: RSS {rss_growth:+.1} %, open files {fds_growth:+.1} % (all samples: RSS {rss_warm:.1} -> {rss_end:.1} MiB, open files {fds_warm:.0} -> {fds_end:.0}), {} samples",
        pass(flat),
        log.samples.len()
    );
    all_reached && dups_ok && ids_ok && panic_ok && flat
}
