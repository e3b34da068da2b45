//! LMTP ingest benchmark: 1,000 posts of 10 KiB from 1, 4 and 16 concurrent
//! clients against the release `listrelay serve` (durable acks), and the same
//! client against a no-op LMTP sink measured in the same run.
//!
//! Run: `cargo bench --bench ingest` (builds the release binary itself). Set
//! `LISTRELAY_BIN` to bench another binary, `INGEST_POSTS` to change the count.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const LIST: &str = "dev@lists.example.org";
const POST_SIZE: usize = 10 * 1024;
const CLIENTS: [usize; 3] = [1, 4, 16];
const TARGET_POSTS_PER_SEC: f64 = 500.0;

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("LISTRELAY_BIN") {
        return PathBuf::from(p);
    }
    let built = PathBuf::from(env!("CARGO_BIN_EXE_listrelay"));
    if built.exists() {
        return built;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/listrelay")
}

/// The server process, stopped with SIGTERM (then SIGKILL) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_cli(bin: &PathBuf, data: &std::path::Path, args: &[&str]) {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running the listrelay CLI");
    assert!(
        out.status.success(),
        "listrelay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_listrelay(bin: &PathBuf, data: &std::path::Path) -> (Server, String) {
    run_cli(bin, data, &["list", "create", LIST]);
    run_cli(
        bin,
        data,
        &["list", "set", LIST, "nonmember_action", "accept"],
    );
    run_cli(bin, data, &["member", "add", LIST, "alice@example.net"]);
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args(["--hostname", "lists.example.org", "--lmtp", &addr])
        // Ingest alone: fan-out finds the MTA closed and waits (backing off).
        .args(["--smtp", "127.0.0.1:9", "serve"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting listrelay serve");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::net::TcpStream::connect(&addr) {
            let mut b = [0u8; 3];
            use std::io::Read;
            let mut s = s;
            if s.read_exact(&mut b).is_ok() && &b == b"220" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "listrelay did not answer on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, addr)
}

/// A no-op LMTP server: answers 250 at once and stores nothing.
async fn sink(listener: TcpListener) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            if w.write_all(b"220 sink ready\r\n").await.is_err() {
                return;
            }
            let mut line = Vec::new();
            let mut rcpts = 0usize;
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let cmd = line.get(..4).unwrap_or(b"").to_ascii_uppercase();
                let answer: Vec<u8> = match &cmd[..] {
                    b"LHLO" => b"250-sink\r\n250-PIPELINING\r\n250 CHUNKING\r\n".to_vec(),
                    b"MAIL" => {
                        rcpts = 0;
                        b"250 2.1.0 ok\r\n".to_vec()
                    }
                    b"RCPT" => {
                        rcpts += 1;
                        b"250 2.1.5 ok\r\n".to_vec()
                    }
                    b"DATA" => {
                        if w.write_all(b"354 go ahead\r\n").await.is_err() {
                            return;
                        }
                        loop {
                            line.clear();
                            if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == b".\r\n" {
                                break;
                            }
                        }
                        b"250 2.0.0 ok\r\n".repeat(rcpts.max(1))
                    }
                    b"QUIT" => {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    }
                    _ => b"250 2.0.0 ok\r\n".to_vec(),
                };
                if w.write_all(&answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    line: String,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let (r, w) = s.into_split();
        let mut c = Conn {
            r: BufReader::new(r),
            w,
            line: String::new(),
        };
        c.expect(220).await;
        c.w.write_all(b"LHLO bench.example.net\r\n").await.unwrap();
        c.expect(250).await;
        c
    }

    /// Reads one (multi-line) reply and checks its code.
    async fn expect(&mut self, code: u16) {
        loop {
            self.line.clear();
            let n = self.r.read_line(&mut self.line).await.expect("read");
            assert!(n > 0, "server closed the connection");
            let got: u16 = self.line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            assert_eq!(got, code, "unexpected reply {:?}", self.line);
            if self.line.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    }

    /// One post; returns the time from sending the final `.` to its 250.
    async fn post(&mut self, message_id: &str, body: &[u8]) -> Duration {
        let head = format!(
            "MAIL FROM:<bench@example.net> SIZE={}\r\nRCPT TO:<{LIST}>\r\nDATA\r\n",
            body.len() + 64
        );
        self.w.write_all(head.as_bytes()).await.unwrap();
        self.expect(250).await;
        self.expect(250).await;
        self.expect(354).await;
        let headers = format!(
            "From: bench@example.net\r\nTo: {LIST}\r\nSubject: ingest\r\nMessage-ID: <{message_id}>\r\n\r\n"
        );
        self.w.write_all(headers.as_bytes()).await.unwrap();
        self.w.write_all(body).await.unwrap();
        let start = Instant::now();
        self.w.write_all(b".\r\n").await.unwrap();
        self.expect(250).await;
        start.elapsed()
    }
}

fn body() -> Vec<u8> {
    let mut b = Vec::with_capacity(POST_SIZE);
    let mut i = 0u32;
    while b.len() + 80 <= POST_SIZE - 200 {
        let line = format!("{i:06} {}\r\n", "lorem ipsum dolor sit amet ".repeat(3));
        b.extend_from_slice(&line.as_bytes()[..line.len().min(78)]);
        if !b.ends_with(b"\r\n") {
            b.extend_from_slice(b"\r\n");
        }
        i += 1;
    }
    while b.len() < POST_SIZE - 200 {
        b.extend_from_slice(b"x\r\n");
    }
    b
}

struct Result {
    posts_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(addr: &str, clients: usize, posts: usize, tag: &str) -> Result {
    let body = std::sync::Arc::new(body());
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(Conn::open(addr).await);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (k, mut c) in conns.into_iter().enumerate() {
        let n = posts / clients + usize::from(k < posts % clients);
        let body = body.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                lat.push(
                    c.post(&format!("{tag}-{k}-{i}@bench.example.net"), &body)
                        .await,
                );
            }
            let _ = c.w.write_all(b"QUIT\r\n").await;
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), c.r.read_to_end(&mut rest)).await;
            lat
        }));
    }
    let mut lat = Vec::with_capacity(posts);
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    Result {
        posts_per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, and then it does nothing.
    if !std::env::args().any(|a| a == "--bench") {
        println!("ingest: skipped (run it with `cargo bench --bench ingest`)");
        return;
    }
    let posts: usize = std::env::var("INGEST_POSTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let bin = binary();
    if !bin.exists() {
        eprintln!(
            "error: no listrelay binary at {}: build it with `cargo build --release` (or set LISTRELAY_BIN)",
            bin.display()
        );
        std::process::exit(2);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (server, lr_addr) = start_listrelay(&bin, &data);

    // The sink runs on its own thread and runtime.
    let sink_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("sink bind");
    let sink_addr = sink_listener.local_addr().unwrap().to_string();
    sink_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            sink(TcpListener::from_std(sink_listener).unwrap()).await;
        });
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let run_id = std::process::id();
    println!(
        "listrelay LMTP ingest: {posts} posts of {} KiB, durable acks",
        POST_SIZE / 1024
    );
    println!("binary: {}", bin.display());
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!();
    println!("| clients | listrelay posts/s | p50 ack ms | p99 ack ms | sink posts/s | sink p50 ms | sink p99 ms | listrelay/sink |");
    println!("|--------:|------------------:|-----------:|-----------:|-------------:|------------:|------------:|---------------:|");
    let mut at16 = 0.0;
    rt.block_on(async {
        // Warm-up (not measured).
        run(&lr_addr, 4, 100, &format!("warm-{run_id}")).await;
        run(&sink_addr, 4, 100, "warm").await;
        for clients in CLIENTS {
            let lr = run(&lr_addr, clients, posts, &format!("r{run_id}-c{clients}")).await;
            let sk = run(&sink_addr, clients, posts, "sink").await;
            println!(
                "| {clients} | {:.0} | {} | {} | {:.0} | {} | {} | {:.3} |",
                lr.posts_per_sec,
                ms(lr.p50),
                ms(lr.p99),
                sk.posts_per_sec,
                ms(sk.p50),
                ms(sk.p99),
                lr.posts_per_sec / sk.posts_per_sec
            );
            if clients == 16 {
                at16 = lr.posts_per_sec;
            }
        }
    });
    println!();
    println!(
        "target: >= {TARGET_POSTS_PER_SEC:.0} posts/s with 16 clients: {} ({at16:.0} posts/s)",
        if at16 >= TARGET_POSTS_PER_SEC {
            "MET"
        } else {
            "NOT MET"
        }
    );
    drop(server);
}
