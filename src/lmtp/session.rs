//! One LMTP session (RFC 2033): commands parsed by smtp-proto, replies buffered
//! and flushed whenever the client has nothing more pipelined, and one reply per
//! accepted recipient after DATA or the last BDAT chunk.

use std::borrow::Cow;
use std::time::Duration;

use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{Error as ProtoError, Request};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tracing::debug;

use super::reply::{self, reply, Reply};
use crate::intake::{Intake, Recipient};

/// Limits and names a session needs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
}

/// A session closes after this many refused commands in a row: it is not an MTA.
const MAX_ERRORS: u32 = 20;

/// Why a session ended early.
#[derive(Debug)]
enum End {
    /// The client closed or QUIT.
    Closed,
    /// A reply has been queued; send it and close.
    Close(Reply),
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> Self {
        End::Closed
    }
}

/// The open transaction.
#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    rcpts: Vec<Recipient>,
    /// RCPT commands seen, accepted or not, for the recipient limit.
    rcpt_commands: usize,
    /// BDAT chunks so far, once BDAT has started.
    bdat: Option<Vec<u8>>,
    /// The data went over the size limit: it is being read and discarded.
    oversize: bool,
}

enum Line {
    Text(Vec<u8>),
    TooLong,
}

struct Session<'a, R, W> {
    reader: BufReader<R>,
    writer: W,
    out: Vec<u8>,
    cfg: &'a SessionConfig,
    intake: &'a Intake,
    shutdown: watch::Receiver<bool>,
    greeted: bool,
    txn: Transaction,
    errors: u32,
}

/// Runs one session to its end. Never panics on input; I/O errors end the session.
pub async fn run<R, W>(
    read: R,
    write: W,
    intake: &Intake,
    cfg: &SessionConfig,
    shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut s = Session {
        reader: BufReader::with_capacity(64 * 1024, read),
        writer: write,
        out: Vec::with_capacity(1024),
        cfg,
        intake,
        shutdown,
        greeted: false,
        txn: Transaction::default(),
        errors: 0,
    };
    s.send(reply(
        220,
        "2.0.0",
        format!("{} LMTP listrelay ready", cfg.hostname),
    ));
    let end = s.serve().await;
    if let End::Close(r) = end {
        s.send(r);
    }
    let _ = s.flush().await;
    let _ = s.writer.shutdown().await;
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<'_, R, W> {
    fn send(&mut self, r: Reply) {
        r.write_to(&mut self.out);
    }

    fn send_raw(&mut self, lines: &str) {
        self.out.extend_from_slice(lines.as_bytes());
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.writer.write_all(&self.out).await?;
            self.writer.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Flushes the replies unless more pipelined input is already buffered.
    async fn flush_if_idle(&mut self) -> std::io::Result<()> {
        if self.reader.buffer().is_empty() {
            self.flush().await?;
        }
        Ok(())
    }

    fn timeout_reply(&self) -> Reply {
        reply(
            421,
            "4.4.2",
            format!("{} timeout, closing connection", self.cfg.hostname),
        )
    }

    async fn serve(&mut self) -> End {
        loop {
            if let Err(e) = self.flush_if_idle().await {
                return e.into();
            }
            let line = tokio::select! {
                line = tokio::time::timeout(self.cfg.command_timeout, read_line(&mut self.reader, self.cfg.max_line_length)) => line,
                _ = self.shutdown.wait_for(|stop| *stop) => {
                    return End::Close(reply(421, "4.3.2", "shutting down, try again later"));
                }
            };
            let line = match line {
                Err(_) => return End::Close(self.timeout_reply()),
                Ok(Err(e)) => return e.into(),
                Ok(Ok(None)) => return End::Closed,
                Ok(Ok(Some(l))) => l,
            };
            let result = match line {
                Line::TooLong => Err(reply(500, "5.5.2", "line too long")),
                Line::Text(text) => self.command(&text).await,
            };
            match result {
                Ok(None) => self.errors = 0,
                Ok(Some(end)) => return end,
                Err(r) => {
                    self.send(r);
                    self.errors += 1;
                    if self.errors >= MAX_ERRORS {
                        return End::Close(reply(
                            421,
                            "4.7.0",
                            "too many errors, closing connection",
                        ));
                    }
                }
            }
        }
    }

    /// Handles one command line. `Err` is a refusal that counts as an error.
    async fn command(&mut self, line: &[u8]) -> Result<Option<End>, Reply> {
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(e) => return Err(parse_error(e)),
        };
        match request {
            Request::Lhlo { host } => {
                debug!(%host, "LHLO");
                self.txn = Transaction::default();
                self.greeted = true;
                let h = &self.cfg.hostname;
                let size = self.cfg.max_message_size;
                self.send_raw(&format!(
                    "250-{h}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SIZE {size}\r\n250 CHUNKING\r\n"
                ));
            }
            Request::Ehlo { .. } | Request::Helo { .. } => {
                return Err(reply(500, "5.5.1", "this is an LMTP server: use LHLO"));
            }
            Request::Mail { from } => self.mail(from.address, from.size)?,
            Request::Rcpt { to } => self.rcpt(&to.address).await?,
            Request::Data => return self.data().await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => return self.bdat(chunk_size, is_last).await,
            Request::Rset => {
                self.txn = Transaction::default();
                self.send(reply(250, "2.0.0", "reset"));
            }
            Request::Noop { .. } => self.send(reply(250, "2.0.0", "ok")),
            Request::Quit => {
                return Ok(Some(End::Close(reply(
                    221,
                    "2.0.0",
                    format!("{} closing connection", self.cfg.hostname),
                ))))
            }
            Request::Vrfy { .. } => self.send(reply(
                252,
                "2.5.0",
                "cannot verify, but will accept the message and attempt delivery",
            )),
            Request::Help { .. } => self.send(reply(
                214,
                "2.0.0",
                "commands: LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
            )),
            other => {
                return Err(reply(
                    502,
                    "5.5.1",
                    format!("{} is not implemented", other.name()),
                ))
            }
        }
        Ok(None)
    }

    fn mail(&mut self, from: Cow<'_, str>, size: usize) -> Result<(), Reply> {
        if !self.greeted {
            return Err(reply(503, "5.5.1", "send LHLO first"));
        }
        if self.txn.mail_from.is_some() {
            return Err(reply(503, "5.5.1", "nested MAIL command"));
        }
        if size > self.cfg.max_message_size {
            return Err(reply(
                552,
                "5.3.4",
                format!(
                    "message size exceeds the limit of {} bytes",
                    self.cfg.max_message_size
                ),
            ));
        }
        self.txn.mail_from = Some(from.into_owned());
        self.send(reply(250, "2.1.0", "sender ok"));
        Ok(())
    }

    async fn rcpt(&mut self, to: &str) -> Result<(), Reply> {
        if self.txn.mail_from.is_none() {
            return Err(reply(503, "5.5.1", "need MAIL before RCPT"));
        }
        if self.txn.bdat.is_some() {
            return Err(reply(503, "5.5.1", "RCPT after BDAT"));
        }
        if self.txn.rcpt_commands >= self.cfg.max_recipients {
            // Not an error of the client's: the MTA sends the rest later.
            self.send(reply(452, "4.5.3", "too many recipients"));
            return Ok(());
        }
        self.txn.rcpt_commands += 1;
        match self.intake.resolve(to).await {
            Ok(r) => {
                self.txn.rcpts.push(r);
                self.send(reply(250, "2.1.5", "recipient ok"));
                Ok(())
            }
            Err(refusal) => {
                // Unknown recipients are normal traffic, not a sign of abuse.
                self.send(reply::refusal(&refusal));
                Ok(())
            }
        }
    }

    async fn data(&mut self) -> Result<Option<End>, Reply> {
        if self.txn.mail_from.is_none() {
            return Err(reply(503, "5.5.1", "need MAIL before DATA"));
        }
        if self.txn.bdat.is_some() {
            return Err(reply(503, "5.5.1", "DATA after BDAT"));
        }
        if self.txn.rcpts.is_empty() {
            return Err(reply(503, "5.5.1", "no valid recipients"));
        }
        self.send(reply(354, "", "end data with <CR><LF>.<CR><LF>"));
        if let Err(e) = self.flush().await {
            return Ok(Some(e.into()));
        }
        let data = match tokio::time::timeout(self.cfg.data_timeout, self.read_data()).await {
            Err(_) => return Ok(Some(End::Close(self.timeout_reply()))),
            Ok(Err(e)) => return Ok(Some(e.into())),
            Ok(Ok(d)) => d,
        };
        self.finish(data).await;
        Ok(None)
    }

    /// Reads dot-terminated data, unstuffing dots; over the size limit it keeps
    /// reading to the end but drops the bytes.
    async fn read_data(&mut self) -> std::io::Result<Vec<u8>> {
        let mut receiver = DataReceiver::new();
        let mut data = Vec::with_capacity(16 * 1024);
        // smtp-proto's DataReceiver does not treat the start of the data as the
        // start of a line: prime it with a line end, then drop those two bytes.
        receiver.ingest(&mut b"\r\n".iter(), &mut data);
        let mut primed = true;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let mut iter = buf.iter();
            let done = receiver.ingest(&mut iter, &mut data);
            let used = buf.len() - iter.as_slice().len();
            self.reader.consume(used);
            if data.len() > self.cfg.max_message_size + 2 {
                self.txn.oversize = true;
                // Keep the tail: the receiver may still remove a trailing CR.
                data.drain(..data.len() - 2);
                primed = false;
            }
            if done {
                if primed {
                    data.drain(..2);
                }
                return Ok(data);
            }
        }
    }

    async fn bdat(&mut self, size: usize, last: bool) -> Result<Option<End>, Reply> {
        // The chunk follows the command whatever we answer: read it first.
        let keep = self.txn.mail_from.is_some()
            && !self.txn.rcpts.is_empty()
            && !self.txn.oversize
            && self.txn.bdat.as_ref().map_or(0, Vec::len) + size <= self.cfg.max_message_size;
        let mut chunk = Vec::new();
        let read = tokio::time::timeout(
            self.cfg.data_timeout,
            read_exact_or_discard(&mut self.reader, size, keep.then_some(&mut chunk)),
        )
        .await;
        match read {
            Err(_) => return Ok(Some(End::Close(self.timeout_reply()))),
            Ok(Err(e)) => return Ok(Some(e.into())),
            Ok(Ok(())) => {}
        }
        if self.txn.mail_from.is_none() {
            return Err(reply(503, "5.5.1", "need MAIL before BDAT"));
        }
        if self.txn.rcpts.is_empty() {
            return Err(reply(503, "5.5.1", "no valid recipients"));
        }
        let buf = self.txn.bdat.get_or_insert_with(Vec::new);
        if keep {
            buf.extend_from_slice(&chunk);
        } else {
            self.txn.oversize = true;
        }
        if !last {
            self.send(reply(250, "2.0.0", format!("{size} octets received")));
            return Ok(None);
        }
        let data = self.txn.bdat.take().unwrap_or_default();
        self.finish(data).await;
        Ok(None)
    }

    /// Replies once per accepted recipient, in RCPT order, and ends the transaction.
    async fn finish(&mut self, data: Vec<u8>) {
        let txn = std::mem::take(&mut self.txn);
        if txn.oversize {
            let r = reply(
                552,
                "5.3.4",
                format!(
                    "message size exceeds the limit of {} bytes",
                    self.cfg.max_message_size
                ),
            );
            for _ in &txn.rcpts {
                self.send(r.clone());
            }
            return;
        }
        let from = txn.mail_from.unwrap_or_default();
        let outcomes = self.intake.deliver(&from, &txn.rcpts, &data).await;
        for o in &outcomes {
            self.send(reply::outcome(o));
        }
    }
}

fn parse_error(e: ProtoError) -> Reply {
    match e {
        ProtoError::UnknownCommand => reply(500, "5.5.1", "unknown command"),
        ProtoError::InvalidSenderAddress => reply(501, "5.1.7", "bad sender address syntax"),
        ProtoError::InvalidRecipientAddress => reply(501, "5.1.3", "bad recipient address syntax"),
        ProtoError::SyntaxError { syntax } => reply(501, "5.5.4", format!("syntax: {syntax}")),
        ProtoError::InvalidParameter { param } => {
            reply(501, "5.5.4", format!("invalid parameter {param}"))
        }
        ProtoError::UnsupportedParameter { param } => {
            reply(555, "5.5.4", format!("unsupported parameter {param}"))
        }
        ProtoError::ResponseTooLong => reply(500, "5.5.2", "line too long"),
        ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
            reply(500, "5.5.2", "syntax error")
        }
    }
}

/// Reads one line (up to LF). A line longer than `max` is read to its end and
/// reported as too long. `None` at end of input.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            // A truncated last line is not a command.
            return Ok(None);
        }
        let (part, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        if !too_long {
            if line.len() + part.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(part);
            }
        }
        reader.consume(used);
        if done {
            return Ok(Some(if too_long {
                Line::TooLong
            } else {
                Line::Text(line)
            }));
        }
    }
}

/// Reads exactly `size` bytes, into `into` if given.
async fn read_exact_or_discard<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    mut size: usize,
    mut into: Option<&mut Vec<u8>>,
) -> std::io::Result<()> {
    while size > 0 {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = buf.len().min(size);
        if let Some(v) = into.as_deref_mut() {
            v.extend_from_slice(&buf[..n]);
        }
        reader.consume(n);
        size -= n;
    }
    Ok(())
}
