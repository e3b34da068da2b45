//! The connection pool behind [`Client`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;

use super::connection::Connection;
use super::dotstuff::Stuffed;
use super::{transaction, Capabilities, ClientConfig, Envelope, RcptStatus, SendError, TxnOutcome};

/// A pool of persistent SMTP connections to one target. Cheap to clone; use
/// it from as many tasks as you like: at most `max_connections` transactions
/// run at once, the others wait for a connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClientConfig,
    /// Idle connections, most recently used last.
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection in use; idle connections hold none, and a
    /// connection is only opened when no idle one exists, so the total number
    /// of open connections never exceeds `max_connections`.
    permits: Semaphore,
    caps: Mutex<Option<Capabilities>>,
    next_id: AtomicU64,
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Self {
        let permits = Semaphore::new(cfg.max_connections.max(1));
        Client {
            inner: Arc::new(Inner {
                cfg,
                idle: Mutex::new(Vec::new()),
                permits,
                caps: Mutex::new(None),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// One SMTP transaction. `message` is sent in order, dot-stuffed and with
    /// bare LF turned into CRLF on the fly.
    ///
    /// `Ok` carries one status per recipient, in envelope order: the RCPT
    /// reply if it was refused, else the reply to the end of DATA. `Err` means
    /// the whole transaction failed (see [`SendError::is_transient`]).
    pub async fn send(
        &self,
        envelope: &Envelope,
        message: &[&[u8]],
    ) -> Result<TxnOutcome, SendError> {
        self.send_parts(envelope, message, None).await
    }

    /// [`Client::send`] of `head` (whole header lines, stuffed on the fly)
    /// then `body`, stuffed once for every transaction that sends it.
    pub async fn send_with_body(
        &self,
        envelope: &Envelope,
        head: &[&[u8]],
        body: &Stuffed,
    ) -> Result<TxnOutcome, SendError> {
        self.send_parts(envelope, head, Some(body)).await
    }

    async fn send_parts(
        &self,
        envelope: &Envelope,
        message: &[&[u8]],
        body: Option<&Stuffed>,
    ) -> Result<TxnOutcome, SendError> {
        let started = Instant::now();
        let res = self.send_inner(envelope, message, body).await;
        match &res {
            Ok(outcome) => {
                let mut delivered = 0usize;
                let mut temp = 0usize;
                let mut perm = 0usize;
                for s in &outcome.rcpts {
                    match s {
                        RcptStatus::Delivered(_) => delivered += 1,
                        RcptStatus::TempFailed(_) => temp += 1,
                        RcptStatus::PermFailed(_) => perm += 1,
                    }
                }
                let result = if delivered == outcome.rcpts.len() {
                    "delivered"
                } else if delivered > 0 {
                    "partial"
                } else {
                    "failed"
                };
                metrics::counter!("listrelay_smtp_transactions_total", "result" => result)
                    .increment(1);
                for (label, n) in [
                    ("delivered", delivered),
                    ("tempfail", temp),
                    ("permfail", perm),
                ] {
                    if n > 0 {
                        metrics::counter!("listrelay_smtp_recipients_total", "result" => label)
                            .increment(n as u64);
                    }
                }
                tracing::debug!(
                    from = %envelope.mail_from,
                    rcpts = outcome.rcpts.len(),
                    delivered,
                    tempfail = temp,
                    permfail = perm,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "SMTP transaction done"
                );
            }
            Err(e) => {
                metrics::counter!("listrelay_smtp_transactions_total", "result" => e.label())
                    .increment(1);
                tracing::warn!(
                    from = %envelope.mail_from,
                    rcpts = envelope.rcpts.len(),
                    error = %e,
                    "SMTP transaction failed"
                );
            }
        }
        res
    }

    async fn send_inner(
        &self,
        envelope: &Envelope,
        message: &[&[u8]],
        body: Option<&Stuffed>,
    ) -> Result<TxnOutcome, SendError> {
        transaction::validate(envelope)?;
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let (mut conn, mut reused) = match self.take_idle() {
            Some(c) => (c, true),
            None => (self.open().await?, false),
        };
        loop {
            let before = conn.replies_read;
            let res = transaction::run(
                &mut conn,
                envelope,
                message,
                body,
                self.inner.cfg.data_timeout,
            )
            .await;
            match res {
                Ok(outcome) => {
                    conn.txns += 1;
                    self.release(conn).await;
                    return Ok(outcome);
                }
                Err(e) if reused && stale(&e, conn.replies_read - before) => {
                    // A pooled connection the server has closed meanwhile
                    // (idle timeout, restart): no reply of this transaction,
                    // or only the 421 Postfix writes when it times out an idle
                    // client. Nothing was accepted, so try once more on a
                    // fresh connection.
                    tracing::debug!(conn = conn.id, error = %e, "stale pooled connection; reconnecting");
                    drop(conn);
                    conn = self.open().await?;
                    reused = false;
                }
                Err(e) => {
                    if e.connection_reusable() {
                        conn.txns += 1;
                        self.release(conn).await;
                    } else {
                        tracing::debug!(conn = conn.id, error = %e, "dropping broken SMTP connection");
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The server's capabilities (from the most recent EHLO), opening a
    /// connection if none has been made yet.
    pub async fn capabilities(&self) -> Result<Capabilities, SendError> {
        if let Some(c) = self.inner.caps.lock().unwrap().clone() {
            return Ok(c);
        }
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        if let Some(c) = self.inner.caps.lock().unwrap().clone() {
            return Ok(c);
        }
        let conn = self.open().await?;
        let caps = conn.caps.clone();
        self.release(conn).await;
        Ok(caps)
    }

    /// Sends QUIT on every idle connection and closes them. Connections in
    /// use are closed when their transaction ends and the client is dropped.
    pub async fn close_idle(&self) {
        let idle: Vec<Connection> = std::mem::take(&mut *self.inner.idle.lock().unwrap());
        for c in idle {
            c.quit().await;
        }
    }

    /// Number of idle connections (for tests and diagnostics).
    pub fn idle_connections(&self) -> usize {
        self.inner.idle.lock().unwrap().len()
    }

    async fn open(&self) -> Result<Connection, SendError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Connection::open(&self.inner.cfg, id).await?;
        *self.inner.caps.lock().unwrap() = Some(conn.caps.clone());
        Ok(conn)
    }

    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.inner.idle.lock().unwrap();
        while let Some(c) = idle.pop() {
            if c.idle_since.elapsed() < self.inner.cfg.idle_timeout
                && c.opened.elapsed() < self.inner.cfg.max_connection_age
            {
                return Some(c);
            }
            tracing::debug!(conn = c.id, "dropping SMTP connection idle too long");
        }
        None
    }

    async fn release(&self, mut conn: Connection) {
        if conn.has_unread_input() {
            tracing::warn!(
                conn = conn.id,
                "unexpected data from the server; closing connection"
            );
            return;
        }
        if conn.txns >= self.inner.cfg.max_txn_per_connection
            || conn.opened.elapsed() >= self.inner.cfg.max_connection_age
        {
            conn.quit().await;
            return;
        }
        conn.idle_since = Instant::now();
        self.inner.idle.lock().unwrap().push(conn);
    }
}

/// Whether a failure on a pooled connection looks like the server had already
/// dropped it before this transaction: the connection broke before any reply,
/// or the first reply was 421.
fn stale(e: &SendError, replies_this_txn: u64) -> bool {
    match e {
        SendError::Io { .. } => replies_this_txn == 0,
        SendError::ServiceUnavailable { .. } => replies_this_txn == 1,
        _ => false,
    }
}
