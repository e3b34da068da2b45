//! Tests for the SMTP re-injection client against a fake SMTP server.
//!
//! The fake server processes every complete command line it has buffered and
//! only then writes the queued replies (like Postfix). It records each command
//! and each write of replies ("flush"), so the tests can see whether commands
//! arrived together (pipelining) or one per round trip (lock-step).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use listrelay::smtp::{Client, ClientConfig, Envelope, RcptStatus, SendError, Target, TxnOutcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

#[derive(Clone, Default)]
struct Behaviour {
    pipelining: bool,
    xverp: bool,
    size: Option<usize>,
    /// Recipient address -> reply line (without CRLF).
    rcpt_replies: HashMap<String, String>,
    mail_reply: Option<String>,
    final_reply: Option<String>,
    /// (connection index, verb): close the socket without replying.
    close_on: Option<(usize, &'static str)>,
    /// (connection index, verb): answer 421 and close.
    reply_421_on: Option<(usize, &'static str)>,
    /// Never answer this verb.
    stall_on: Option<&'static str>,
    /// Close connection 0 right after its first completed transaction
    /// (simulates an idle timeout on the server side).
    close_conn0_after_txn: bool,
    /// Like `close_conn0_after_txn`, but 20 ms later and with the 421 Postfix
    /// sends when it times out an idle client.
    idle_421_conn0_after_txn: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Cmd(String),
    Flush,
}

#[derive(Default)]
struct ConnLog {
    raw: Vec<u8>,
    events: Vec<Ev>,
    /// Raw DATA contents, each including the terminating ".\r\n".
    bodies: Vec<Vec<u8>>,
}

impl ConnLog {
    fn commands(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Ev::Cmd(c) => Some(c.clone()),
                Ev::Flush => None,
            })
            .collect()
    }

    /// Commands grouped by the reply flushes between them.
    fn groups(&self) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new()];
        for e in &self.events {
            match e {
                Ev::Cmd(c) => out.last_mut().unwrap().push(c.clone()),
                Ev::Flush => {
                    if !out.last().unwrap().is_empty() {
                        out.push(Vec::new());
                    }
                }
            }
        }
        out.retain(|g| !g.is_empty());
        out
    }
}

struct Fake {
    target: Target,
    conns: Arc<Mutex<Vec<Arc<Mutex<ConnLog>>>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Fake {
    async fn start(b: Behaviour) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<Mutex<ConnLog>>>>> = Arc::default();
        let c2 = conns.clone();
        tokio::spawn(async move {
            let counter = AtomicUsize::new(0);
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let idx = counter.fetch_add(1, Ordering::SeqCst);
                let log = Arc::new(Mutex::new(ConnLog::default()));
                c2.lock().unwrap().push(log.clone());
                tokio::spawn(serve(sock, idx, b.clone(), log));
            }
        });
        Fake {
            target: Target::Tcp(addr.to_string()),
            conns,
            _dir: None,
        }
    }

    async fn start_unix(b: Behaviour) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("smtp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let conns: Arc<Mutex<Vec<Arc<Mutex<ConnLog>>>>> = Arc::default();
        let c2 = conns.clone();
        tokio::spawn(async move {
            let mut idx = 0;
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let log = Arc::new(Mutex::new(ConnLog::default()));
                c2.lock().unwrap().push(log.clone());
                tokio::spawn(serve(sock, idx, b.clone(), log));
                idx += 1;
            }
        });
        Fake {
            target: Target::Unix(path),
            conns,
            _dir: Some(dir),
        }
    }

    fn client(&self) -> Client {
        Client::new(self.config())
    }

    fn config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new(self.target.clone(), "listrelay.test");
        cfg.command_timeout = Duration::from_secs(5);
        cfg.data_timeout = Duration::from_secs(5);
        cfg
    }

    fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    fn conn(&self, i: usize) -> Arc<Mutex<ConnLog>> {
        self.conns.lock().unwrap()[i].clone()
    }
}

fn verb_of(line: &str) -> String {
    line.split([' ', ':'])
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    idx: usize,
    b: Behaviour,
    log: Arc<Mutex<ConnLog>>,
) {
    let mut inbuf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = b"220 fake.test ESMTP\r\n".to_vec();
    let mut in_data = false;
    let mut body = Vec::new();
    let mut have_mail = false;
    let mut accepted = 0usize;
    let mut txns = 0usize;
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        while let Some(pos) = inbuf.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = inbuf.drain(..=pos).collect();
            if in_data {
                body.extend_from_slice(&line);
                if line == b".\r\n" {
                    in_data = false;
                    log.lock().unwrap().bodies.push(std::mem::take(&mut body));
                    log.lock().unwrap().events.push(Ev::Cmd(".".into()));
                    if b.close_on == Some((idx, ".")) {
                        return;
                    }
                    if b.stall_on == Some(".") {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    out.extend_from_slice(
                        b.final_reply
                            .as_deref()
                            .unwrap_or("250 2.0.0 Ok: queued as ABC123")
                            .as_bytes(),
                    );
                    out.extend_from_slice(b"\r\n");
                    have_mail = false;
                    accepted = 0;
                    txns += 1;
                    if b.close_conn0_after_txn && idx == 0 && txns == 1 {
                        let _ = sock.write_all(&out).await;
                        return;
                    }
                    if b.idle_421_conn0_after_txn && idx == 0 && txns == 1 {
                        let _ = sock.write_all(&out).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let _ = sock
                            .write_all(b"421 4.4.2 fake.test Error: timeout exceeded\r\n")
                            .await;
                        return;
                    }
                }
                continue;
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            log.lock().unwrap().events.push(Ev::Cmd(text.clone()));
            let verb = verb_of(&text);
            if b.close_on.is_some_and(|(i, v)| i == idx && v == verb) {
                return;
            }
            if b.reply_421_on.is_some_and(|(i, v)| i == idx && v == verb) {
                out.extend_from_slice(b"421 4.3.2 Service shutting down\r\n");
                let _ = sock.write_all(&out).await;
                return;
            }
            if b.stall_on == Some(verb.as_str()) {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let reply: String = match verb.as_str() {
                "EHLO" => {
                    let mut r = String::from("250-fake.test\r\n");
                    if b.pipelining {
                        r.push_str("250-PIPELINING\r\n");
                    }
                    if let Some(s) = b.size {
                        r.push_str(&format!("250-SIZE {s}\r\n"));
                    }
                    if b.xverp {
                        r.push_str("250-XVERP\r\n");
                    }
                    r.push_str("250-ENHANCEDSTATUSCODES\r\n250 8BITMIME");
                    r
                }
                "HELO" => "250 fake.test".into(),
                "MAIL" => {
                    let r = b
                        .mail_reply
                        .clone()
                        .unwrap_or_else(|| "250 2.1.0 Ok".into());
                    have_mail = r.starts_with('2');
                    r
                }
                "RCPT" => {
                    let addr = text
                        .split_once('<')
                        .and_then(|(_, r)| r.split_once('>'))
                        .map(|(a, _)| a.to_string())
                        .unwrap_or_default();
                    if !have_mail {
                        "503 5.5.1 Error: need MAIL command".into()
                    } else {
                        let r = b
                            .rcpt_replies
                            .get(&addr)
                            .cloned()
                            .unwrap_or_else(|| "250 2.1.5 Ok".into());
                        if r.starts_with('2') {
                            accepted += 1;
                        }
                        r
                    }
                }
                "DATA" => {
                    if !have_mail || accepted == 0 {
                        "554 5.5.1 Error: no valid recipients".into()
                    } else {
                        in_data = true;
                        "354 End data with <CR><LF>.<CR><LF>".into()
                    }
                }
                "RSET" => {
                    have_mail = false;
                    accepted = 0;
                    "250 2.0.0 Ok".into()
                }
                "QUIT" => {
                    out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                    let _ = sock.write_all(&out).await;
                    return;
                }
                _ => "502 5.5.2 Error: command not recognized".into(),
            };
            out.extend_from_slice(reply.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !out.is_empty() {
            if sock.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
            log.lock().unwrap().events.push(Ev::Flush);
        }
        let n = match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        log.lock().unwrap().raw.extend_from_slice(&tmp[..n]);
        inbuf.extend_from_slice(&tmp[..n]);
    }
}

fn env(rcpts: &[&str]) -> Envelope {
    Envelope {
        mail_from: "list-bounces@example.org".into(),
        rcpts: rcpts.iter().map(|s| s.to_string()).collect(),
        xverp: None,
    }
}

fn mixed_behaviour(pipelining: bool) -> Behaviour {
    let mut b = Behaviour {
        pipelining,
        ..Default::default()
    };
    b.rcpt_replies.insert(
        "gone@example.net".into(),
        "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown".into(),
    );
    b.rcpt_replies.insert(
        "later@example.net".into(),
        "451 4.3.0 <later@example.net>: Temporary lookup failure".into(),
    );
    b
}

fn assert_mixed(outcome: &TxnOutcome) {
    assert_eq!(outcome.rcpts.len(), 4);
    assert!(
        matches!(&outcome.rcpts[0], RcptStatus::Delivered(r) if r.code == 250 && r.text.contains("queued as ABC123"))
    );
    match &outcome.rcpts[1] {
        RcptStatus::PermFailed(r) => {
            assert_eq!(r.code, 550);
            assert_eq!(r.enhanced, Some([5, 1, 1]));
            assert_eq!(
                r.to_string(),
                "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&outcome.rcpts[2], RcptStatus::TempFailed(r) if r.code == 451 && r.enhanced == Some([4, 3, 0]))
    );
    assert!(matches!(&outcome.rcpts[3], RcptStatus::Delivered(_)));
    assert_eq!(outcome.delivered_count(), 2);
}

const MIXED: &[&str] = &[
    "a@example.net",
    "gone@example.net",
    "later@example.net",
    "d@example.net",
];

#[tokio::test]
async fn mixed_results_in_order_with_pipelining() {
    let fake = Fake::start(mixed_behaviour(true)).await;
    let client = fake.client();
    let outcome = client
        .send(&env(MIXED), &[b"Subject: hi\r\n\r\n", b"body\r\n"])
        .await
        .unwrap();
    assert_mixed(&outcome);

    let log = fake.conn(0);
    let log = log.lock().unwrap();
    // MAIL, every RCPT and DATA arrived before any reply was written.
    let groups = log.groups();
    let txn = groups
        .iter()
        .find(|g| g[0].starts_with("MAIL"))
        .expect("MAIL group");
    assert_eq!(
        txn,
        &vec![
            "MAIL FROM:<list-bounces@example.org>".to_string(),
            "RCPT TO:<a@example.net>".into(),
            "RCPT TO:<gone@example.net>".into(),
            "RCPT TO:<later@example.net>".into(),
            "RCPT TO:<d@example.net>".into(),
            "DATA".into(),
        ]
    );
    assert_eq!(
        log.bodies,
        vec![b"Subject: hi\r\n\r\nbody\r\n.\r\n".to_vec()]
    );
}

#[tokio::test]
async fn pipelining_many_recipients_single_batch() {
    let fake = Fake::start(mixed_behaviour(true)).await;
    let client = fake.client();
    let rcpts: Vec<String> = (0..500).map(|i| format!("member{i}@example.net")).collect();
    let e = Envelope {
        mail_from: "l@example.org".into(),
        rcpts,
        xverp: None,
    };
    let outcome = client.send(&e, &[b"x\r\n"]).await.unwrap();
    assert!(outcome.all_delivered());
    assert_eq!(outcome.rcpts.len(), 500);
    let log = fake.conn(0);
    let groups = log.lock().unwrap().groups();
    let txn = groups.iter().find(|g| g[0].starts_with("MAIL")).unwrap();
    assert_eq!(txn.len(), 502, "MAIL + 500 RCPT + DATA in one batch");
}

#[tokio::test]
async fn lock_step_without_pipelining() {
    let fake = Fake::start(mixed_behaviour(false)).await;
    let client = fake.client();
    let caps = client.capabilities().await.unwrap();
    assert!(!caps.pipelining);
    let outcome = client
        .send(&env(MIXED), &[b"Subject: hi\r\n\r\nbody\r\n"])
        .await
        .unwrap();
    assert_mixed(&outcome);
    let log = fake.conn(0);
    let log = log.lock().unwrap();
    // Each command was answered before the next one arrived.
    for g in log.groups() {
        assert_eq!(g.len(), 1, "commands sent without waiting: {g:?}");
    }
    assert_eq!(
        log.commands(),
        vec![
            "EHLO listrelay.test",
            "MAIL FROM:<list-bounces@example.org>",
            "RCPT TO:<a@example.net>",
            "RCPT TO:<gone@example.net>",
            "RCPT TO:<later@example.net>",
            "RCPT TO:<d@example.net>",
            "DATA",
            "."
        ]
    );
}

#[tokio::test]
async fn all_recipients_refused_lock_step_no_data_then_rset() {
    let fake = Fake::start(mixed_behaviour(false)).await;
    let client = fake.client();
    let outcome = client
        .send(
            &env(&["gone@example.net", "later@example.net"]),
            &[b"x\r\n"],
        )
        .await
        .unwrap();
    assert!(matches!(outcome.rcpts[0], RcptStatus::PermFailed(_)));
    assert!(matches!(outcome.rcpts[1], RcptStatus::TempFailed(_)));
    // The connection is reused; RSET precedes the next transaction.
    let outcome = client
        .send(&env(&["ok@example.net"]), &[b"x\r\n"])
        .await
        .unwrap();
    assert!(outcome.all_delivered());
    assert_eq!(fake.connections(), 1);
    let cmds = fake.conn(0).lock().unwrap().commands();
    assert_eq!(
        cmds,
        vec![
            "EHLO listrelay.test",
            "MAIL FROM:<list-bounces@example.org>",
            "RCPT TO:<gone@example.net>",
            "RCPT TO:<later@example.net>",
            "RSET",
            "MAIL FROM:<list-bounces@example.org>",
            "RCPT TO:<ok@example.net>",
            "DATA",
            "."
        ]
    );
}

#[tokio::test]
async fn all_recipients_refused_pipelined() {
    let fake = Fake::start(mixed_behaviour(true)).await;
    let client = fake.client();
    let outcome = client
        .send(&env(&["gone@example.net"]), &[b"x\r\n"])
        .await
        .unwrap();
    assert!(matches!(&outcome.rcpts[0], RcptStatus::PermFailed(r) if r.code == 550));
    let outcome = client
        .send(&env(&["ok@example.net"]), &[b"x\r\n"])
        .await
        .unwrap();
    assert!(outcome.all_delivered());
    assert_eq!(fake.connections(), 1);
    let log = fake.conn(0);
    let log = log.lock().unwrap();
    // No message was sent for the refused transaction; the RSET rides in the
    // same write as the next MAIL.
    assert_eq!(log.bodies.len(), 1);
    let groups = log.groups();
    assert!(groups.contains(&vec![
        "RSET".to_string(),
        "MAIL FROM:<list-bounces@example.org>".into(),
        "RCPT TO:<ok@example.net>".into(),
        "DATA".into()
    ]));
}

#[tokio::test]
async fn dot_stuffing_byte_exact() {
    let cases: Vec<(Vec<&[u8]>, &[u8])> = vec![
        (
            vec![b".leading dot\r\nx\r\n"],
            b"..leading dot\r\nx\r\n.\r\n",
        ),
        (
            vec![b"H: v\r\n\r\nline\r\n", b".dot at slice start\r\n"],
            b"H: v\r\n\r\nline\r\n..dot at slice start\r\n.\r\n",
        ),
        (vec![b"a\r", b"\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
        (vec![b"bare\nlf\n.\n"], b"bare\r\nlf\r\n..\r\n.\r\n"),
        (vec![b"no final crlf"], b"no final crlf\r\n.\r\n"),
        (vec![b"final crlf\r\n"], b"final crlf\r\n.\r\n"),
        (vec![b""], b".\r\n"),
        (vec![], b".\r\n"),
    ];
    for pipelining in [true, false] {
        let fake = Fake::start(Behaviour {
            pipelining,
            ..Default::default()
        })
        .await;
        let client = fake.client();
        for (slices, _) in &cases {
            let outcome = client.send(&env(&["r@example.net"]), slices).await.unwrap();
            assert!(outcome.all_delivered());
        }
        let log = fake.conn(0);
        let log = log.lock().unwrap();
        assert_eq!(log.bodies.len(), cases.len());
        for (i, (_, want)) in cases.iter().enumerate() {
            assert_eq!(
                String::from_utf8_lossy(&log.bodies[i]),
                String::from_utf8_lossy(want),
                "case {i}"
            );
        }
        // The bytes on the wire after "DATA\r\n" are exactly the stuffed body.
        let raw = String::from_utf8_lossy(&log.raw).into_owned();
        assert!(raw.contains("DATA\r\n..leading dot\r\nx\r\n.\r\n"));
    }
}

#[tokio::test]
async fn large_message_streams() {
    let fake = Fake::start(Behaviour {
        pipelining: true,
        ..Default::default()
    })
    .await;
    let client = fake.client();
    let line = b".0123456789abcdefghijklmnopqrstuvwxyz\n";
    let body: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(line.len() * 100_000)
        .collect();
    let outcome = client
        .send(&env(&["r@example.net"]), &[b"Subject: big\n\n", &body])
        .await
        .unwrap();
    assert!(outcome.all_delivered());
    let log = fake.conn(0);
    let log = log.lock().unwrap();
    let got = &log.bodies[0];
    // 14-byte header block becomes 16; each of 100 000 lines gains a dot and a CR.
    assert_eq!(got.len(), 16 + body.len() + 100_000 * 2 + 3);
    assert!(got.starts_with(b"Subject: big\r\n\r\n..0123"));
}

#[tokio::test]
async fn connection_reuse_without_rset_after_success() {
    let fake = Fake::start(Behaviour {
        pipelining: true,
        ..Default::default()
    })
    .await;
    let client = fake.client();
    for _ in 0..2 {
        let o = client
            .send(&env(&["r@example.net"]), &[b"x\r\n"])
            .await
            .unwrap();
        assert!(o.all_delivered());
    }
    assert_eq!(fake.connections(), 1);
    assert_eq!(client.idle_connections(), 1);
    let cmds = fake.conn(0).lock().unwrap().commands();
    assert_eq!(cmds.iter().filter(|c| c.starts_with("EHLO")).count(), 1);
    assert_eq!(cmds.iter().filter(|c| c.starts_with("MAIL")).count(), 2);
    assert!(!cmds.iter().any(|c| c == "RSET"), "{cmds:?}");
}

#[tokio::test]
async fn broken_connection_is_not_reused() {
    let fake = Fake::start(Behaviour {
        pipelining: true,
        close_on: Some((0, "DATA")),
        ..Default::default()
    })
    .await;
    let client = fake.client();
    let err = client
        .send(&env(&["r@example.net"]), &[b"x\r\n"])
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Io { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(client.idle_connections(), 0);
    let o = client
        .send(&env(&["r@example.net"]), &[b"x\r\n"])
        .await
        .unwrap();
    assert!(o.all_delivered());
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn close_after_body_is_an_error() {
    let fake = Fake::start(Behaviour {
        pipelining: false,
        close_on: Some((0, ".")),
        ..Default::default()
    })
    .await;
    let client = fake.client();
    let err = client
        .send(&env(&["r@example.net"]), &[b"x\r\n"])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SendError::Io {
                stage: "end of data",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(client.idle_connections(), 0);
}

#[tokio::test]
async fn reply_421_fails_transaction_and_drops_connection() {
    for pipelining in [true, false] {
        let fake = Fake::start(Behaviour {
            pipelining,
            reply_421_on: Some((0, "RCPT")),
            ..Default::default()
        })
        .await;
        let client = fake.client();
        let err = client
            .send(&env(&["r@example.net"]), &[b"x\r\n"])
            .await
            .unwrap_err();
        match &err {
            SendError::ServiceUnavailable { reply, .. } => assert_eq!(reply.code, 421),
            other => panic!("{other:?}"),
        }
        assert_eq!(client.idle_connections(), 0);
        client
            .send(&env(&["r@example.net"]), &[b"x\r\n"])
            .await
            .unwrap();
        assert_eq!(fake.connections(), 2);
    }
}

#[tokio::test]
async fn stale_pooled_connection_is_replaced_transparently() {
    let fake = Fake::start(Behaviour {
        pipelining: true,
        close_conn0_after_txn: true,
        ..Default::default()
    })
    .await;
    let client = fake.client();
    client
        .send(&env(&["r@example.net"]), &[b"x\r\n"])
        .await
        .unwrap();
    // Let the server's close reach us.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let o = client
        .send(&env(&["r@example.net"]), &[b"y\r\n"])
        .await
        .unwrap();
    assert!(o.all_delivered());
    assert_eq!(fake.connections(), 2);
    assert_eq!(
        fake.conn(1).lock().unwrap().bodies,
        vec![b"y\r\n.\r\n".to_vec()]
    );
}

#[tokio::test]
async fn idle_timeout_421_on_pooled_connection_is_retried() {
    for pipelining in [true, false] {
        let fake = Fake::start(Behaviour {
            pipelining,
            idle_421_conn0_after_txn: true,
            ..Default::default()
        })
        .await;
        let client = fake.client();
        client
            .send(&env(&["r@example.net"]), &[b"x\r\n"])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let o = client
            .send(&env(&["r@example.net"]), &[b"y\r\n"])
            .await
            .unwrap();
        assert!(o.all_delivered());
        assert_eq!(fake.connections(), 2);
    }
}

#[tokio::test]
async fn connect_refused_quickly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new(ClientConfig::new(Target::Tcp(addr.to_string()), "t"));
    let start = Instant::now();
    let err = client
        .send(&env(&["r@example.net"]), &[b"x\r\n"])
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Connect { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(err.to_string().contains(&addr.to_string()));
}

#[tokio::test]
async fn command_timeout() {
    for pipelining in [true, false] {
        let fake = Fake::start(Behaviour {
            pipelining,
            stall_on: Some("MAIL"),
            ..Default::default()
        })
        .await;
        let mut cfg = fake.config();
        cfg.command_timeout = Duration::from_millis(200);
        let client = Client::new(cfg);
        let start = Instant::now();
        let err = client
            .send(&env(&["r@example.net"]), &[b"x\r\n"])
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Timeout { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(client.idle_connections(), 0);
    }
}

#[tokio::test]
async fn data_timeout() {
    let fake = Fake::start(Behaviour {
        pipelining: true,
        stall_on: Some("."),
        ..Default::default()
    })
    .await;
    let mut cfg = fake.config();
    cfg.data_timeout = Duration::from_millis(200);
    let client = Client::new(cfg);
    let err = client
        .send(&env(&["r@example.net"]), &[b"x\r\n"])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SendError::Timeout {
                stage: "end of data",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn mail_from_rejected() {
    for pipelining in [true, false] {
        let fake = Fake::start(Behaviour {
            pipelining,
            mail_reply: Some("553 5.7.1 <list-bounces@example.org>: Sender rejected".into()),
            ..Default::default()
        })
        .await;
        let client = fake.client();
        let err = client
            .send(&env(&["r@example.net"]), &[b"x\r\n"])
            .await
            .unwrap_err();
        match &err {
            SendError::MailFromRejected(r) => {
                assert_eq!(r.code, 553);
                assert_eq!(r.enhanced, Some([5, 7, 1]));
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.is_transient());
        // The connection stays usable (with RSET before the next MAIL).
        assert_eq!(client.idle_connections(), 1);
        let log = fake.conn(0);
        assert!(log.lock().unwrap().bodies.is_empty());
    }
}

#[tokio::test]
async fn mail_from_tempfail_is_transient() {
    let fake = Fake::start(Behaviour {
        pipelining: true,
        mail_reply: Some("451 4.3.0 try later".into()),
        ..Default::default()
    })
    .await;
    let err = fake
        .client()
        .send(&env(&["r@example.net"]), &[b"x\r\n"])
        .await
        .unwrap_err();
    assert!(matches!(&err, SendError::MailFromRejected(r) if r.code == 451));
    assert!(err.is_transient());
}

#[tokio::test]
async fn final_data_reply_applies_to_accepted_recipients() {
    let mut b = mixed_behaviour(true);
    b.final_reply = Some("452 4.3.1 Insufficient system storage".into());
    let fake = Fake::start(b).await;
    let o = fake
        .client()
        .send(&env(&["a@example.net", "gone@example.net"]), &[b"x\r\n"])
        .await
        .unwrap();
    assert!(matches!(&o.rcpts[0], RcptStatus::TempFailed(r) if r.code == 452));
    assert!(matches!(&o.rcpts[1], RcptStatus::PermFailed(r) if r.code == 550));
}

#[tokio::test]
async fn xverp_only_when_requested_and_offered() {
    for offered in [true, false] {
        let fake = Fake::start(Behaviour {
            pipelining: true,
            xverp: offered,
            ..Default::default()
        })
        .await;
        let client = fake.client();
        assert_eq!(client.capabilities().await.unwrap().xverp, offered);
        let mut e = env(&["r@example.net"]);
        client.send(&e, &[b"x\r\n"]).await.unwrap();
        e.xverp = Some('+');
        client.send(&e, &[b"x\r\n"]).await.unwrap();
        // The configured recipient delimiter, not a literal '+'.
        e.xverp = Some('#');
        client.send(&e, &[b"x\r\n"]).await.unwrap();
        let mails: Vec<String> = fake
            .conn(0)
            .lock()
            .unwrap()
            .commands()
            .into_iter()
            .filter(|c| c.starts_with("MAIL"))
            .collect();
        let xverp = |d: &str| {
            if offered {
                format!("MAIL FROM:<list-bounces@example.org> XVERP={d}=")
            } else {
                "MAIL FROM:<list-bounces@example.org>".to_string()
            }
        };
        assert_eq!(
            mails,
            vec![
                "MAIL FROM:<list-bounces@example.org>".to_string(),
                xverp("+"),
                xverp("#")
            ]
        );
    }
}

#[tokio::test]
async fn size_is_announced_and_respected() {
    let fake = Fake::start(Behaviour {
        pipelining: true,
        size: Some(100),
        ..Default::default()
    })
    .await;
    let client = fake.client();
    assert_eq!(client.capabilities().await.unwrap().size, Some(100));
    client
        .send(&env(&["r@example.net"]), &[b"0123456789\r\n"])
        .await
        .unwrap();
    let big = vec![b'x'; 101];
    let err = client
        .send(&env(&["r@example.net"]), &[&big])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SendError::MessageTooLarge {
                size: 101,
                limit: 100
            }
        ),
        "{err:?}"
    );
    assert_eq!(client.idle_connections(), 1);
    let cmds = fake.conn(0).lock().unwrap().commands();
    assert!(cmds.contains(&"MAIL FROM:<list-bounces@example.org> SIZE=12".to_string()));
    assert_eq!(cmds.iter().filter(|c| c.starts_with("MAIL")).count(), 1);
}

#[tokio::test]
async fn concurrent_sends_share_a_bounded_pool() {
    let fake = Fake::start(Behaviour {
        pipelining: true,
        ..Default::default()
    })
    .await;
    let mut cfg = fake.config();
    cfg.max_connections = 3;
    let client = Client::new(cfg);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("message {i}\r\n");
            client
                .send(&env(&[&format!("m{i}@example.net")]), &[body.as_bytes()])
                .await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap().all_delivered());
    }
    assert!(
        fake.connections() <= 3,
        "{} connections",
        fake.connections()
    );
    let total: usize = (0..fake.connections())
        .map(|i| fake.conn(i).lock().unwrap().bodies.len())
        .sum();
    assert_eq!(total, 40);
}

#[tokio::test]
async fn max_transactions_per_connection() {
    let fake = Fake::start(Behaviour {
        pipelining: true,
        ..Default::default()
    })
    .await;
    let mut cfg = fake.config();
    cfg.max_txn_per_connection = 2;
    let client = Client::new(cfg);
    for _ in 0..3 {
        client
            .send(&env(&["r@example.net"]), &[b"x\r\n"])
            .await
            .unwrap();
    }
    assert_eq!(fake.connections(), 2);
    let cmds = fake.conn(0).lock().unwrap().commands();
    assert_eq!(cmds.last().unwrap(), "QUIT");
}

#[tokio::test]
async fn unix_socket_target() {
    let fake = Fake::start_unix(mixed_behaviour(true)).await;
    let client = fake.client();
    let o = client.send(&env(MIXED), &[b"x\r\n"]).await.unwrap();
    assert_mixed(&o);
    client.close_idle().await;
    assert_eq!(client.idle_connections(), 0);
}

#[tokio::test]
async fn invalid_envelope_is_refused_locally() {
    let fake = Fake::start(Behaviour::default()).await;
    let client = fake.client();
    let err = client.send(&env(&[]), &[b"x"]).await.unwrap_err();
    assert!(matches!(err, SendError::InvalidEnvelope(_)));
    let err = client
        .send(&env(&["a@b\r\nRCPT TO:<evil@x>"]), &[b"x"])
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::InvalidEnvelope(_)));
    assert_eq!(fake.connections(), 0);
}

#[tokio::test]
async fn null_sender() {
    let fake = Fake::start(Behaviour::default()).await;
    let e = Envelope {
        mail_from: String::new(),
        rcpts: vec!["r@example.net".into()],
        xverp: None,
    };
    fake.client().send(&e, &[b"x\r\n"]).await.unwrap();
    let cmds = fake.conn(0).lock().unwrap().commands();
    assert!(cmds.contains(&"MAIL FROM:<>".to_string()));
}
