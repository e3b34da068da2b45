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
use crate::store::ClientInfo;

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
    /// The SMTP client the MTA received the message from (XFORWARD), for
    /// the sender's SPF check.
    client: ClientInfo,
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
        // smtp-proto does not know XFORWARD (Postfix's extension).
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"XFORWARD ") {
            return self.xforward(&line[9..]).map(|()| None);
        }
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
                    "250-{h}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SIZE {size}\r\n250-CHUNKING\r\n250 XFORWARD NAME ADDR HELO\r\n"
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

    /// XFORWARD (Postfix's `lmtp_send_xforward_command = yes`): the
    /// client's NAME, ADDR and HELO for the next transaction. Other
    /// attributes Postfix sends (PORT, PROTO, IDENT, SOURCE) are accepted
    /// and ignored.
    fn xforward(&mut self, args: &[u8]) -> Result<(), Reply> {
        if !self.greeted {
            return Err(reply(503, "5.5.1", "send LHLO first"));
        }
        if self.txn.mail_from.is_some() {
            return Err(reply(503, "5.5.1", "XFORWARD must come before MAIL"));
        }
        let attrs = parse_xforward(args).map_err(|e| reply(501, "5.5.4", e))?;
        for (name, value) in attrs {
            match name.as_str() {
                "NAME" => self.txn.client.name = value,
                "ADDR" => self.txn.client.addr = value,
                "HELO" => self.txn.client.helo = value,
                _ => {}
            }
        }
        self.send(reply(250, "2.0.0", "ok"));
        Ok(())
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
        let outcomes = self
            .intake
            .deliver_from(&txn.client, &from, &txn.rcpts, &data)
            .await;
        for o in &outcomes {
            self.send(reply::outcome(o));
        }
    }
}

/// Longest XFORWARD value kept (a host name is at most 255 bytes).
const MAX_XFORWARD_VALUE: usize = 255;

/// Parses `NAME=value ADDR=value …` (values in xtext, RFC 3461 §4): each
/// attribute upper-cased with its decoded value; `[UNAVAILABLE]` and
/// `[TEMPUNAVAIL]` become empty. ADDR must be an IP address (`IPV6:` prefix
/// allowed) and NAME/HELO printable ASCII without spaces: what is kept can
/// be shown and checked without escaping. One pass over the bytes.
pub(crate) fn parse_xforward(args: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text =
        std::str::from_utf8(args).map_err(|_| "XFORWARD arguments must be ASCII".to_string())?;
    let mut out = Vec::new();
    for word in text.split_ascii_whitespace() {
        let (name, value) = word
            .split_once('=')
            .ok_or_else(|| format!("XFORWARD attribute {word:.40?} has no value"))?;
        let name = name.to_ascii_uppercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!("bad XFORWARD attribute name {name:.40?}"));
        }
        let value =
            xtext_decode(value).ok_or_else(|| format!("XFORWARD {name}: bad xtext value"))?;
        if value.len() > MAX_XFORWARD_VALUE {
            return Err(format!("XFORWARD {name}: value too long"));
        }
        let value = match value.as_str() {
            "[UNAVAILABLE]" | "[TEMPUNAVAIL]" => String::new(),
            _ => value,
        };
        let value = match name.as_str() {
            "ADDR" if !value.is_empty() => {
                let ip = value
                    .strip_prefix("IPV6:")
                    .or_else(|| value.strip_prefix("ipv6:"))
                    .unwrap_or(&value);
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("XFORWARD ADDR {value:.60?} is not an IP address"))?
                    .to_string()
            }
            "NAME" | "HELO" if value.bytes().any(|b| !b.is_ascii_graphic()) => {
                return Err(format!("XFORWARD {name}: not printable ASCII"));
            }
            _ => value,
        };
        out.push((name, value));
    }
    if out.is_empty() {
        return Err("XFORWARD needs at least one attribute".into());
    }
    Ok(out)
}

/// RFC 3461 xtext: `+XX` is a hex-encoded byte; `None` when malformed.
fn xtext_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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

#[cfg(test)]
mod tests {
    use super::parse_xforward;

    #[test]
    fn xforward_attributes_are_decoded_and_checked() {
        let a = parse_xforward(
            b"NAME=mta.reject.test ADDR=192.0.2.10 PORT=4711 HELO=mta+2Ereject.test PROTO=ESMTP",
        )
        .unwrap();
        assert_eq!(a[0], ("NAME".into(), "mta.reject.test".into()));
        assert_eq!(a[1], ("ADDR".into(), "192.0.2.10".into()));
        assert_eq!(a[3], ("HELO".into(), "mta.reject.test".into()));
        let v6 = parse_xforward(b"addr=IPV6:2001:db8::1 name=[UNAVAILABLE]").unwrap();
        assert_eq!(v6[0].1, "2001:db8::1");
        assert_eq!(v6[1].1, "");
        for bad in [
            &b"ADDR=not-an-ip"[..],
            b"NAME",
            b"",
            b"HELO=a+0Ab",
            b"NAME=x+zz",
            b"NAME=x+4",
            b"N4ME=x",
            b"\xff=1",
        ] {
            assert!(parse_xforward(bad).is_err(), "{bad:?}");
        }
        let long = format!("NAME={}", "a".repeat(300));
        assert!(parse_xforward(long.as_bytes()).is_err());
    }
}
