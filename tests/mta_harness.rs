//! Proves the real-MTA harness (tests/support) with a tiny stub LMTP server:
//! for Postfix and Exim, configured from the `listrelay integration` templates,
//! * a post to list@lists.example.org reaches the LMTP server;
//! * a re-injected VERP message refused by the sink (550 5.1.1) makes the MTA
//!   send its DSN over LMTP to exactly the VERP address;
//! * a message for list@ and list-bounces@ arrives in ONE LMTP transaction.
//!
//! Needs root, postfix and the extracted exim (scripts/install-test-deps).

mod support;

use support::mta::{Kind, Mta};

use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::lmtp::smtp_send;
use support::sink::Sink;
use support::MtaConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- stub LMTP

#[derive(Debug, Clone)]
struct LmtpTxn {
    mail_from: String,
    rcpts: Vec<String>,
    data: String,
}

#[derive(Default)]
struct StubState {
    txns: Mutex<Vec<LmtpTxn>>,
    changed: Notify,
}

/// LHLO, 250 per RCPT, one 250 per accepted RCPT after DATA.
struct StubLmtp {
    port: u16,
    state: Arc<StubState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubLmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn angle(arg: &str) -> String {
    let a = arg.find('<').map(|i| i + 1).unwrap_or(0);
    let b = arg[a..].find('>').map(|i| a + i).unwrap_or(arg.len());
    arg[a..b].to_string()
}

impl StubLmtp {
    async fn start() -> StubLmtp {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let state = Arc::new(StubState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((sock, _)) = l.accept().await {
                let st = st.clone();
                conns.spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut r = BufReader::new(r);
                    w.write_all(b"220 stub LMTP\r\n").await?;
                    let (mut from, mut rcpts) = (String::new(), Vec::<String>::new());
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await? == 0 {
                            return Ok::<_, std::io::Error>(());
                        }
                        let l = line.trim_end();
                        let verb = l.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
                        let reply: Vec<u8> = match verb.as_str() {
                            "LHLO" => b"250-stub\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n".to_vec(),
                            "MAIL" => {
                                from = angle(l);
                                rcpts.clear();
                                b"250 2.1.0 ok\r\n".to_vec()
                            }
                            "RCPT" => {
                                rcpts.push(angle(l));
                                b"250 2.1.5 ok\r\n".to_vec()
                            }
                            "DATA" => {
                                w.write_all(b"354 go ahead\r\n").await?;
                                let mut data = String::new();
                                loop {
                                    line.clear();
                                    if r.read_line(&mut line).await? == 0 {
                                        return Ok(());
                                    }
                                    if line == ".\r\n" || line == ".\n" {
                                        break;
                                    }
                                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                                }
                                let n = rcpts.len();
                                st.txns.lock().unwrap().push(LmtpTxn {
                                    mail_from: from.clone(),
                                    rcpts: std::mem::take(&mut rcpts),
                                    data,
                                });
                                st.changed.notify_waiters();
                                b"250 2.0.0 delivered\r\n".repeat(n)
                            }
                            "RSET" | "NOOP" => b"250 2.0.0 ok\r\n".to_vec(),
                            "QUIT" => {
                                w.write_all(b"221 2.0.0 bye\r\n").await?;
                                return Ok(());
                            }
                            _ => b"500 5.5.2 what?\r\n".to_vec(),
                        };
                        w.write_all(&reply).await?;
                    }
                });
            }
        });
        StubLmtp { port, state, task }
    }

    fn txns(&self) -> Vec<LmtpTxn> {
        self.state.txns.lock().unwrap().clone()
    }

    /// Waits for a transaction matching `pred`.
    async fn wait_for(&self, pred: impl Fn(&LmtpTxn) -> bool) -> Option<LmtpTxn> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let n = self.state.changed.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if let Some(t) = self.txns().into_iter().find(|t| pred(t)) {
                return Some(t);
            }
            if tokio::time::timeout_at(deadline, n).await.is_err() {
                return self.txns().into_iter().find(|t| pred(t));
            }
        }
    }
}

// ---------------------------------------------------------------- MTAs

struct Rig {
    stub: StubLmtp,
    sink: Sink,
    mta: Mta,
}

async fn rig(kind: Kind) -> Rig {
    let stub = StubLmtp::start().await;
    let sink = Sink::builder()
        .reject(["bob@example.com"])
        .keep_data(true)
        .start()
        .await
        .unwrap();
    let cfg = MtaConfig::single_list(stub.port, sink.port());
    let mta = tokio::task::spawn_blocking(move || Mta::start(kind, &cfg))
        .await
        .unwrap();
    Rig { stub, sink, mta }
}

fn msg(subject: &str) -> Vec<u8> {
    format!("From: poster@example.com\r\nTo: list@lists.example.org\r\nSubject: {subject}\r\nMessage-ID: <{subject}@harness.test>\r\n\r\nbody\r\n.leading dot\r\n")
        .into_bytes()
}

async fn post_reaches_lmtp(kind: Kind) {
    let r = rig(kind).await;
    smtp_send(
        r.mta.inbound(),
        "poster@example.com",
        &["list@lists.example.org"],
        &msg("post-1"),
    )
    .await
    .unwrap();
    let t = r
        .stub
        .wait_for(|t| t.rcpts == ["list@lists.example.org"])
        .await
        .unwrap_or_else(|| {
            panic!(
                "{kind:?}: post not at LMTP: {:?}\n{}",
                r.stub.txns(),
                r.mta.log()
            )
        });
    assert_eq!(t.mail_from, "poster@example.com");
    assert!(t.data.contains("Subject: post-1"), "{}", t.data);
    assert!(
        t.data.contains("\r\n.leading dot\r\n"),
        "dot-unstuffing: {}",
        t.data
    );
    assert!(
        r.mta.wait_queue_empty(WAIT),
        "{kind:?}: queue not empty\n{}",
        r.mta.log()
    );
}

async fn dsn_goes_to_verp_address(kind: Kind) {
    let r = rig(kind).await;
    let verp = "list-bounces+bob=example.com@lists.example.org";
    smtp_send(
        r.mta.reinject(),
        verp,
        &["bob@example.com"],
        &msg("reinject-bob"),
    )
    .await
    .unwrap();
    let t = r
        .stub
        .wait_for(|t| t.rcpts.iter().any(|x| x.contains("bob")))
        .await
        .unwrap_or_else(|| {
            panic!(
                "{kind:?}: no DSN at LMTP: {:?}\n{}",
                r.stub.txns(),
                r.mta.log()
            )
        });
    assert_eq!(
        t.rcpts,
        [verp],
        "{kind:?}: DSN must go to exactly the VERP address"
    );
    assert_eq!(t.mail_from, "", "{kind:?}: DSN sender must be <>");
    assert!(t.data.contains("multipart/report"), "{kind:?}: {}", t.data);
    assert!(t.data.contains("bob@example.com"), "{kind:?}: {}", t.data);
    assert_eq!(
        r.sink.rejected_count(),
        1,
        "{kind:?}: the sink refused bob once"
    );
    assert_eq!(r.sink.rcpt_count(), 0);
    assert!(
        r.mta.wait_queue_empty(WAIT),
        "{kind:?}: queue not empty\n{}",
        r.mta.log()
    );
}

async fn multi_rcpt_one_transaction(kind: Kind) {
    let r = rig(kind).await;
    let rcpts = ["list@lists.example.org", "list-bounces@lists.example.org"];
    smtp_send(r.mta.inbound(), "poster@example.com", &rcpts, &msg("multi"))
        .await
        .unwrap();
    let t = r
        .stub
        .wait_for(|t| t.data.contains("Subject: multi"))
        .await
        .unwrap_or_else(|| panic!("{kind:?}: nothing at LMTP\n{}", r.mta.log()));
    let mut got = t.rcpts.clone();
    got.sort();
    assert_eq!(
        got,
        ["list-bounces@lists.example.org", "list@lists.example.org"],
        "{kind:?}: {:?}",
        r.stub.txns()
    );
    assert!(r.mta.wait_queue_empty(WAIT), "{kind:?}\n{}", r.mta.log());
    assert_eq!(
        r.stub.txns().len(),
        1,
        "{kind:?}: one LMTP transaction: {:?}",
        r.stub.txns()
    );
    // an unknown address at the list domain is refused at RCPT time
    let err = smtp_send(
        r.mta.inbound(),
        "poster@example.com",
        &["nosuch@lists.example.org"],
        &msg("x"),
    )
    .await
    .expect_err("unknown list address must be refused");
    assert!(err.to_string().contains("55"), "{kind:?}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_post_reaches_lmtp() {
    post_reaches_lmtp(Kind::Postfix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exim_post_reaches_lmtp() {
    post_reaches_lmtp(Kind::Exim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_dsn_goes_to_verp_address() {
    dsn_goes_to_verp_address(Kind::Postfix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exim_dsn_goes_to_verp_address() {
    dsn_goes_to_verp_address(Kind::Exim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_multi_rcpt_one_lmtp_transaction() {
    multi_rcpt_one_transaction(Kind::Postfix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exim_multi_rcpt_one_lmtp_transaction() {
    multi_rcpt_one_transaction(Kind::Exim).await;
}

// ---------------------------------------------------------------- the sink itself

/// The sink under pipelined load from many connections, with 550/451 verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sink_pipelined_load_and_verdicts() {
    use support::lmtp::{dot_stuff, Client};
    use support::sink::RcptVerdict;
    let sink = Sink::builder()
        .reject(["bob@example.com"])
        .tempfail(["tim@example.com"])
        .policy(|r| {
            if r.starts_with("no") {
                RcptVerdict::Reject
            } else {
                RcptVerdict::Accept
            }
        })
        .start()
        .await
        .unwrap();
    let (conns, msgs, rcpts) = (8usize, 250usize, 5usize);
    let t0 = std::time::Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let port = sink.port();
        tasks.push(tokio::spawn(async move {
            let mut cl = Client::connect_greeted(("127.0.0.1", port)).await.unwrap();
            assert_eq!(cl.cmd("EHLO x").await.unwrap().code, 250);
            // one write per message: MAIL, RCPT*n, DATA, body (PIPELINING)
            for m in 0..msgs {
                let mut b = format!("MAIL FROM:<list-bounces+m{m}=example.net@lists.example.org>\r\n");
                for r in 0..rcpts {
                    b += &format!("RCPT TO:<u{c}-{m}-{r}@example.net>\r\n");
                }
                b += "RCPT TO:<bob@example.com>\r\nRCPT TO:<tim@example.com>\r\nRCPT TO:<nobody@example.com>\r\nDATA\r\n";
                let mut bytes = b.into_bytes();
                bytes.extend(dot_stuff(b"Subject: x\r\n\r\n.dot\r\nbody\r\n"));
                cl.send(&bytes).await.unwrap();
                let replies = cl.read_replies(1 + rcpts + 3 + 2).await.unwrap();
                let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
                let mut want = vec![250];
                want.extend(std::iter::repeat_n(250, rcpts));
                want.extend([550, 451, 550, 354, 250]);
                assert_eq!(codes, want);
            }
            cl.cmd("QUIT").await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = conns * msgs * rcpts;
    sink.wait_rcpts(n, WAIT).await.unwrap();
    let el = t0.elapsed();
    eprintln!(
        "sink: {n} recipients in {el:?} = {:.0} rcpt/s",
        n as f64 / el.as_secs_f64()
    );
    assert_eq!(sink.rcpt_count(), n);
    assert_eq!(sink.rejected_count(), 2 * conns * msgs);
    assert_eq!(sink.tempfailed_count(), conns * msgs);
    assert_eq!(sink.transaction_count(), conns * msgs);
    let recs = sink.records();
    assert_eq!(recs[0].refused.len(), 3);
    assert_eq!(recs[0].bytes, "Subject: x\r\n\r\n.dot\r\nbody\r\n".len());
}
