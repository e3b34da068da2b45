//! Input no MTA would send, and limits: the server answers clearly or closes
//! cleanly, never hangs, and keeps serving normal posts.

mod support;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use support::blackbox::*;

fn seed() -> u64 {
    std::env::var("LISTRELAY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1157)
}

fn garbage(rng: &mut impl Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let parts = rng.gen_range(1..6);
    for _ in 0..parts {
        match rng.gen_range(0..9) {
            // Binary.
            0 => out.extend((0..rng.gen_range(0..2048)).map(|_| rng.gen::<u8>())),
            // NULs.
            1 => out.extend(std::iter::repeat_n(0u8, rng.gen_range(1..300))),
            // CR-only "lines".
            2 => {
                for _ in 0..rng.gen_range(1..20) {
                    out.extend_from_slice(b"NOOP\r");
                }
            }
            // An over-long line, with or without its end.
            3 => {
                out.extend(std::iter::repeat_n(b'A', rng.gen_range(4000..40_000)));
                if rng.gen() {
                    out.extend_from_slice(b"\r\n");
                }
            }
            // Commands with broken arguments.
            4 => {
                let cmds: [&[u8]; 12] = [
                    b"LHLO \x00\xff\r\n",
                    b"MAIL FROM:<\x00@\x01>\r\n",
                    b"MAIL FROM:<a@b> SIZE=-1\r\n",
                    b"MAIL FROM:<a@b> SIZE=99999999999999999999999\r\n",
                    b"RCPT TO:<dev@lists.example.org\r\n",
                    b"RCPT TO:<\xc3\x28@lists.example.org>\r\n",
                    b"BDAT x\r\n",
                    b"BDAT 18446744073709551616 LAST\r\n",
                    b"DATA\r\n",
                    b"\r\n",
                    b"LHLO x\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<dev@lists.example.org>\r\n",
                    b"BDAT 5\r\n",
                ];
                out.extend_from_slice(cmds[rng.gen_range(0..cmds.len())]);
            }
            // Random printable text with random line ends.
            5 => {
                for _ in 0..rng.gen_range(1..50) {
                    out.push(rng.gen_range(0x20..0x7f));
                    if rng.gen_ratio(1, 10) {
                        let ends: [&[u8]; 4] = [b"\r\n", b"\n", b"\r", b"\n\r"];
                        out.extend_from_slice(ends[rng.gen_range(0..4)]);
                    }
                }
            }
            // Bare LFs and dots.
            6 => out.extend_from_slice(b".\n..\r\n.\r\n\n\n"),
            // High-bit bytes.
            7 => out.extend((0..rng.gen_range(1..500)).map(|_| rng.gen_range(0x80..=0xff))),
            // A lone terminator.
            _ => out.extend_from_slice(b"\r\n.\r\n"),
        }
    }
    out
}

/// One hostile session: send, half-close, and read every reply until the
/// server closes. Panics on a hang or a malformed reply line.
fn hostile_session(server: &Server, bytes: &[u8], quit: bool) {
    let mut c = server.connect();
    c.limit = Duration::from_secs(5);
    let mut ok = c.send(bytes).is_ok();
    if ok && quit {
        ok = c.send(b"\r\nQUIT\r\n").is_ok();
    }
    let _ = ok; // The server may have closed already (too many errors): fine.
    c.shutdown_write();
    let start = Instant::now();
    loop {
        match c.read_reply() {
            Ok(r) => assert!((200..600).contains(&r.code), "odd reply {r:?}"),
            Err(ReadEnd::Closed) => break,
            Err(e) => panic!(
                "session with {} bytes: {e:?} after {:?}",
                bytes.len(),
                start.elapsed()
            ),
        }
    }
}

#[test]
fn a_thousand_random_sessions_never_hang_the_server() {
    let env = Env::new();
    let server = env.start();
    let seed = seed();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let server = &server;
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (t << 32));
                for _ in 0..250 {
                    let bytes = garbage(&mut rng);
                    let quit = rng.gen();
                    hostile_session(server, &bytes, quit);
                }
            });
        }
    });
    eprintln!("1000 hostile sessions in {:?}", started.elapsed());
    // Still serving.
    let mut c = server.session();
    let msg = message("after-fuzz@example.net", "still here");
    assert_eq!(shorts(&c.post(&[DEV], &msg)), ["250 2.0.0"]);
    let posts = env.posts(DEV);
    let m = posts
        .iter()
        .find(|m| m["message_id"] == "after-fuzz@example.net")
        .expect("the normal post is stored");
    assert_eq!(env.spool_body(m["id"].as_str().unwrap()), msg);
}

#[test]
fn five_hundred_idle_connections_and_a_post_gets_through() {
    let env = Env::with_config("[lmtp]\nmax_connections = 600\n");
    let server = env.start();
    let idle: Vec<Client> = (0..500).map(|_| server.connect()).collect();
    let mut c = server.session();
    assert_eq!(
        shorts(&c.post(&[DEV], &message("busy@example.net", "x"))),
        ["250 2.0.0"]
    );
    assert_eq!(idle.len(), 500);
    drop(idle);
}

#[test]
fn over_the_connection_limit_is_421() {
    let env = Env::with_config("[lmtp]\nmax_connections = 2\n");
    let server = env.start();
    // Let the readiness probe's session end and free its slot.
    std::thread::sleep(Duration::from_millis(300));
    let a = server.connect();
    let b = server.connect();
    let mut c = server.try_connect().unwrap();
    c.expect(421, "4.3.2");
    c.expect_closed();
    drop(a);
    // The slot frees again once a session ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = server.try_connect().unwrap();
        let r = d.reply();
        if r.code == 220 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(b);
}

#[test]
fn over_size_is_552_per_recipient_and_the_session_goes_on() {
    let env = Env::with_config("[lmtp]\nmax_message_size = 1024\n");
    let server = env.start();
    let mut c = server.session();
    c.send_ok(b"MAIL FROM:<a@example.net> SIZE=2000\r\n");
    c.expect(552, "5.3.4");
    let big = message("big@example.net", &"z".repeat(3000));
    let r = c.post(&[DEV, "dev-bounces@lists.example.org"], &big);
    assert_eq!(shorts(&r), ["552 5.3.4", "552 5.3.4"]);
    // BDAT too, with the chunk consumed.
    c.send_ok(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<dev@lists.example.org>\r\n");
    c.replies(2);
    c.send_ok(format!("BDAT {} LAST\r\n", big.len()).as_bytes());
    c.send_ok(&big);
    c.expect(552, "5.3.4");
    // Still usable.
    let small = message("small@example.net", "fits");
    assert_eq!(shorts(&c.post(&[DEV], &small)), ["250 2.0.0"]);
    let posts = env.posts(DEV);
    assert_eq!(posts.len(), 1);
    assert_eq!(env.spool_body(posts[0]["id"].as_str().unwrap()), small);
}

#[test]
fn over_long_command_line_is_500_and_the_session_goes_on() {
    let env = Env::new();
    let server = env.start();
    let mut c = server.session();
    c.send_ok(format!("NOOP {}\r\n", "L".repeat(100_000)).as_bytes());
    c.expect(500, "5.5.2");
    c.send_ok(format!("RCPT TO:<{}@lists.example.org>\r\n", "r".repeat(5000)).as_bytes());
    c.expect(500, "5.5.2");
    c.send_ok(b"NOOP\r\n");
    c.expect(250, "2.0.0");
    assert_eq!(
        shorts(&c.post(&[DEV], &message("long@example.net", "x"))),
        ["250 2.0.0"]
    );
}

#[test]
fn command_timeout_is_421() {
    let env = Env::with_config("[lmtp]\ncommand_timeout_secs = 1\n");
    let server = env.start();
    let mut c = server.session();
    let start = Instant::now();
    c.limit = Duration::from_secs(5);
    c.expect(421, "4.4.2");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    c.expect_closed();
    // Half a command line counts as idle too.
    let mut c = server.connect();
    c.send_ok(b"LHLO x\r\nMAIL FROM:<a@exa");
    c.expect(250, "");
    c.expect(421, "4.4.2");
}

#[test]
fn a_truncated_session_stores_nothing() {
    let env = Env::new();
    let server = env.start();
    {
        let mut c = server.session();
        c.begin(&[DEV, "dev-bounces@lists.example.org"]);
        c.send_ok(b"Subject: cut\r\nMessage-ID: <cut@example.net>\r\n\r\nhalf a bo");
    } // closed mid-DATA
    {
        let mut c = server.session();
        c.send_ok(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<dev@lists.example.org>\r\n");
        c.replies(2);
        c.send_ok(b"BDAT 1000 LAST\r\nSubject: cut too\r\n");
    } // closed mid-BDAT
    {
        let mut c = server.session();
        c.begin(&[DEV]);
        // The end marker without its final CRLF is not the end.
        c.send_ok(b"Subject: cut three\r\n\r\nbody\r\n.");
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut c = server.session();
    let ok = message("whole@example.net", "complete");
    assert_eq!(shorts(&c.post(&[DEV], &ok)), ["250 2.0.0"]);
    let q = env.queue();
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(q[0]["message_id"], "whole@example.net");
    // The embedded store leaves no partial spool file behind.
    if let Ok(dir) = std::fs::read_dir(env.spool_dir()) {
        assert_eq!(dir.count(), 1);
    }
}
