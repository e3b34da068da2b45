//! In-process counting SMTP sink ("the internet" behind the MTA).
//!
//! Listens on 127.0.0.1 (port 0), speaks ESMTP with PIPELINING, records every
//! completed transaction and counts recipients. Chosen recipients get
//! `550 5.1.1` or `451 4.3.0`. Parsing is smtp-proto's `RequestReceiver` /
//! `DataReceiver`; replies to a pipelined batch go out in one write.

use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{Error as ProtoError, Request};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What the sink answers to one RCPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptVerdict {
    /// `250 2.1.5`
    Accept,
    /// `550 5.1.1`
    Reject,
    /// `451 4.3.0`
    TempFail,
}

/// One completed transaction (DATA finished with 250).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub mail_from: String,
    /// Accepted recipients.
    pub rcpts: Vec<String>,
    /// Recipients refused in this transaction, with the reply code.
    pub refused: Vec<(String, u16)>,
    /// Message size after dot-unstuffing.
    pub bytes: usize,
    /// The message, if the sink was built with `keep_data(true)`.
    pub data: Option<Vec<u8>>,
    /// The value of the header named by [`SinkBuilder::tag_header`], if the
    /// message's header block has it (which post a copy belongs to, without
    /// keeping every copy's bytes).
    pub tag: Option<String>,
}

type Policy = Arc<dyn Fn(&str) -> RcptVerdict + Send + Sync>;

#[derive(Default)]
struct State {
    records: Mutex<Vec<Transaction>>,
    rcpts: AtomicUsize,
    rejected: AtomicUsize,
    tempfailed: AtomicUsize,
    transactions: AtomicUsize,
    connections: AtomicUsize,
    changed: Notify,
}

/// Builder for [`Sink`].
pub struct SinkBuilder {
    reject: HashSet<String>,
    tempfail: HashSet<String>,
    policy: Option<Policy>,
    keep_data: bool,
    tag_header: Option<String>,
}

impl SinkBuilder {
    /// Record the value of this header of each message as its `tag`.
    pub fn tag_header(mut self, name: &str) -> Self {
        self.tag_header = Some(name.to_string());
        self
    }

    /// Answer 550 5.1.1 to these recipients (case-insensitive).
    pub fn reject<S: AsRef<str>>(mut self, addrs: impl IntoIterator<Item = S>) -> Self {
        self.reject
            .extend(addrs.into_iter().map(|a| a.as_ref().to_ascii_lowercase()));
        self
    }

    /// Answer 451 4.3.0 to these recipients (case-insensitive).
    pub fn tempfail<S: AsRef<str>>(mut self, addrs: impl IntoIterator<Item = S>) -> Self {
        self.tempfail
            .extend(addrs.into_iter().map(|a| a.as_ref().to_ascii_lowercase()));
        self
    }

    /// Decide per recipient with a predicate (consulted after the sets).
    pub fn policy(mut self, f: impl Fn(&str) -> RcptVerdict + Send + Sync + 'static) -> Self {
        self.policy = Some(Arc::new(f));
        self
    }

    /// Keep the message bytes in the records (off by default: benchmarks).
    pub fn keep_data(mut self, keep: bool) -> Self {
        self.keep_data = keep;
        self
    }

    /// Binds 127.0.0.1:0 and starts accepting (on the current tokio runtime).
    pub async fn start(self) -> std::io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let reject = self.reject;
        let tempfail = self.tempfail;
        let user = self.policy;
        let policy: Policy = Arc::new(move |rcpt: &str| {
            let l = rcpt.to_ascii_lowercase();
            if reject.contains(&l) {
                RcptVerdict::Reject
            } else if tempfail.contains(&l) {
                RcptVerdict::TempFail
            } else if let Some(f) = &user {
                f(rcpt)
            } else {
                RcptVerdict::Accept
            }
        });
        let keep = Keep {
            data: self.keep_data,
            tag: self.tag_header.map(Arc::new),
        };
        let st = state.clone();
        let accept = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    r = listener.accept() => {
                        let Ok((sock, _)) = r else { continue };
                        let _ = sock.set_nodelay(true);
                        st.connections.fetch_add(1, Ordering::Relaxed);
                        conns.spawn(session(sock, st.clone(), policy.clone(), keep.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Sink {
            addr,
            state,
            accept,
        })
    }
}

/// A running sink; stops (and drops all its connections) on Drop.
pub struct Sink {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Sink {
    pub fn builder() -> SinkBuilder {
        SinkBuilder {
            reject: HashSet::new(),
            tempfail: HashSet::new(),
            policy: None,
            keep_data: false,
            tag_header: None,
        }
    }

    /// A sink that accepts everything.
    pub async fn start() -> std::io::Result<Sink> {
        Self::builder().start().await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Accepted recipients of completed transactions.
    pub fn rcpt_count(&self) -> usize {
        self.state.rcpts.load(Ordering::Acquire)
    }

    /// Recipients answered 550.
    pub fn rejected_count(&self) -> usize {
        self.state.rejected.load(Ordering::Acquire)
    }

    /// Recipients answered 451.
    pub fn tempfailed_count(&self) -> usize {
        self.state.tempfailed.load(Ordering::Acquire)
    }

    pub fn transaction_count(&self) -> usize {
        self.state.transactions.load(Ordering::Acquire)
    }

    pub fn connection_count(&self) -> usize {
        self.state.connections.load(Ordering::Acquire)
    }

    /// A copy of all completed transactions so far.
    pub fn records(&self) -> Vec<Transaction> {
        self.state.records.lock().unwrap().clone()
    }

    /// Waits until at least `n` recipients were accepted in completed
    /// transactions; returns the count, or Err(count) on timeout.
    pub async fn wait_rcpts(&self, n: usize, timeout: Duration) -> Result<usize, usize> {
        self.wait_until(timeout, |s| s.rcpt_count() >= n)
            .await
            .map(|_| self.rcpt_count())
            .map_err(|_| self.rcpt_count())
    }

    /// Waits until `cond(self)` holds (re-checked after every transaction and
    /// every refused recipient).
    pub async fn wait_until(
        &self,
        timeout: Duration,
        cond: impl Fn(&Sink) -> bool,
    ) -> Result<(), ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return if cond(self) { Ok(()) } else { Err(()) };
            }
        }
    }

    /// Waits until `pred` matches at least `count` records; returns them.
    pub async fn wait_records(
        &self,
        count: usize,
        timeout: Duration,
        pred: impl Fn(&Transaction) -> bool,
    ) -> Result<Vec<Transaction>, Vec<Transaction>> {
        let pick = |s: &Sink| -> Vec<Transaction> {
            s.state
                .records
                .lock()
                .unwrap()
                .iter()
                .filter(|t| pred(t))
                .cloned()
                .collect()
        };
        match self.wait_until(timeout, |s| pick(s).len() >= count).await {
            Ok(()) => Ok(pick(self)),
            Err(()) => Err(pick(self)),
        }
    }
}

#[derive(Default)]
struct Txn {
    mail_from: Option<String>,
    rcpts: Vec<String>,
    refused: Vec<(String, u16)>,
}

/// What a session keeps of each message.
#[derive(Clone)]
struct Keep {
    data: bool,
    tag: Option<Arc<String>>,
}

/// The value of header `name` in the header block of `msg` (unfolded lines
/// only: enough for a test's own header).
fn header_value(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    text.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
}

async fn session(mut sock: TcpStream, st: Arc<State>, policy: Policy, keep: Keep) {
    if sock
        .write_all(b"220 sink.test.invalid ESMTP counting sink\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut rx = RequestReceiver::default();
    let mut data: Option<(DataReceiver, Vec<u8>)> = None;
    let mut txn = Txn::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let n = match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut it = buf[..n].iter();
        let mut quit = false;
        loop {
            if let Some((dr, body)) = data.as_mut() {
                if !dr.ingest(&mut it, body) {
                    break;
                }
                let (_, body) = data.take().unwrap();
                // drop the "\r\n" fed first (DataReceiver start-of-line quirk)
                let bytes = body.len().saturating_sub(2);
                let t = std::mem::take(&mut txn);
                let rc = t.rcpts.len();
                st.records.lock().unwrap().push(Transaction {
                    mail_from: t.mail_from.unwrap_or_default(),
                    rcpts: t.rcpts,
                    refused: t.refused,
                    bytes,
                    data: keep.data.then(|| body[2.min(body.len())..].to_vec()),
                    tag: keep
                        .tag
                        .as_ref()
                        .and_then(|name| header_value(&body[2.min(body.len())..], name)),
                });
                st.transactions.fetch_add(1, Ordering::AcqRel);
                st.rcpts.fetch_add(rc, Ordering::AcqRel);
                st.changed.notify_waiters();
                out.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
                continue;
            }
            let before = it.len();
            match rx.ingest(&mut it) {
                Ok(req) => match req {
                    Request::Ehlo { .. } | Request::Lhlo { .. } => out.extend_from_slice(
                        b"250-sink.test.invalid\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 0\r\n250 ENHANCEDSTATUSCODES\r\n",
                    ),
                    Request::Helo { .. } => out.extend_from_slice(b"250 sink.test.invalid\r\n"),
                    Request::Mail { from } => {
                        txn = Txn { mail_from: Some(from.address.to_string()), ..Txn::default() };
                        out.extend_from_slice(b"250 2.1.0 Ok\r\n");
                    }
                    Request::Rcpt { to } => {
                        if txn.mail_from.is_none() {
                            out.extend_from_slice(b"503 5.5.1 MAIL first\r\n");
                        } else {
                            let a = to.address.to_string();
                            match policy(&a) {
                                RcptVerdict::Accept => {
                                    txn.rcpts.push(a);
                                    out.extend_from_slice(b"250 2.1.5 Ok\r\n");
                                }
                                RcptVerdict::Reject => {
                                    txn.refused.push((a, 550));
                                    st.rejected.fetch_add(1, Ordering::AcqRel);
                                    st.changed.notify_waiters();
                                    out.extend_from_slice(b"550 5.1.1 User unknown (sink)\r\n");
                                }
                                RcptVerdict::TempFail => {
                                    txn.refused.push((a, 451));
                                    st.tempfailed.fetch_add(1, Ordering::AcqRel);
                                    st.changed.notify_waiters();
                                    out.extend_from_slice(b"451 4.3.0 Try again later (sink)\r\n");
                                }
                            }
                        }
                    }
                    Request::Data => {
                        if txn.rcpts.is_empty() {
                            out.extend_from_slice(b"554 5.5.1 No valid recipients\r\n");
                        } else {
                            let mut dr = DataReceiver::new();
                            let mut body = Vec::with_capacity(8192);
                            dr.ingest(&mut b"\r\n".iter(), &mut body);
                            data = Some((dr, body));
                            out.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                        }
                    }
                    Request::Rset => {
                        txn = Txn::default();
                        out.extend_from_slice(b"250 2.0.0 Ok\r\n");
                    }
                    Request::Noop { .. } => out.extend_from_slice(b"250 2.0.0 Ok\r\n"),
                    Request::Quit => {
                        out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                        quit = true;
                        break;
                    }
                    _ => out.extend_from_slice(b"502 5.5.1 Not implemented\r\n"),
                },
                Err(ProtoError::NeedsMoreData { .. }) => break,
                Err(_) => {
                    out.extend_from_slice(b"500 5.5.2 Syntax error\r\n");
                    if it.len() == before {
                        // nothing consumed: drop the rest of this line
                        let rest = it.as_slice();
                        let skip = rest.iter().position(|&c| c == b'\n').map_or(rest.len(), |p| p + 1);
                        it = rest[skip..].iter();
                    }
                }
            }
        }
        if !out.is_empty() {
            if sock.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if quit {
            return;
        }
    }
}

/// How many copies each recipient (lowercased) got in `records`.
pub fn copies(records: &[Transaction]) -> std::collections::HashMap<String, usize> {
    let mut n = std::collections::HashMap::new();
    for t in records {
        for r in &t.rcpts {
            *n.entry(r.to_ascii_lowercase()).or_default() += 1;
        }
    }
    n
}
