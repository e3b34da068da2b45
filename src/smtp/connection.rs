//! One SMTP session: connect, greeting, EHLO, and timed reads and writes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::{TcpStream, UnixStream};

use super::reply::{ReadError, ReplyReader};
use super::{Capabilities, ClientConfig, Reply, SendError, Target};

/// TCP or Unix-domain stream.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// An established session, after a successful EHLO (or HELO).
pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) target: String,
    reader: ReplyReader<ReadHalf<Stream>>,
    writer: WriteHalf<Stream>,
    pub(crate) caps: Capabilities,
    /// Transactions completed (successfully or not) on this connection.
    pub(crate) txns: usize,
    /// The last transaction did not end with a final DATA reply, so the
    /// server may still hold envelope state: send RSET before the next one.
    pub(crate) needs_rset: bool,
    /// Replies read so far; lets the pool tell "failed before any reply".
    pub(crate) replies_read: u64,
    pub(crate) idle_since: Instant,
    /// When the session was opened; the pool retires it after
    /// `max_connection_age`.
    pub(crate) opened: Instant,
    command_timeout: Duration,
}

async fn timed<T, F>(
    after: Duration,
    target: &str,
    stage: &'static str,
    fut: F,
) -> Result<T, SendError>
where
    F: Future<Output = Result<T, SendError>>,
{
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r,
        Err(_) => Err(SendError::Timeout {
            target: target.to_string(),
            stage,
            after,
        }),
    }
}

fn read_error(target: &str, stage: &'static str, e: ReadError) -> SendError {
    match e {
        ReadError::Io(source) => SendError::Io {
            target: target.to_string(),
            stage,
            source,
        },
        ReadError::Eof => SendError::Io {
            target: target.to_string(),
            stage,
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ),
        },
        ReadError::Protocol(detail) => SendError::Protocol {
            target: target.to_string(),
            stage,
            detail,
        },
    }
}

impl Connection {
    /// Connects, reads the greeting and sends EHLO (falling back to HELO if
    /// EHLO is refused with 5xx). Any failure here is `SendError::Connect`,
    /// except timeouts which are `SendError::Timeout`.
    pub(crate) async fn open(cfg: &ClientConfig, id: u64) -> Result<Self, SendError> {
        let target = cfg.target.to_string();
        let connect_err = |source: io::Error| SendError::Connect {
            target: target.clone(),
            source,
        };
        let connect = async {
            match &cfg.target {
                Target::Tcp(addr) => {
                    let s = TcpStream::connect(addr.as_str())
                        .await
                        .map_err(connect_err)?;
                    let _ = s.set_nodelay(true);
                    Ok(Stream::Tcp(s))
                }
                Target::Unix(path) => Ok(Stream::Unix(
                    UnixStream::connect(path).await.map_err(connect_err)?,
                )),
            }
        };
        let stream = match tokio::time::timeout(cfg.connect_timeout, connect).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(connect_err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {:?}", cfg.connect_timeout),
                )))
            }
        };
        let (r, w) = tokio::io::split(stream);
        let mut conn = Connection {
            id,
            target: target.clone(),
            reader: ReplyReader::new(r),
            writer: w,
            caps: Capabilities::default(),
            txns: 0,
            needs_rset: false,
            replies_read: 0,
            idle_since: Instant::now(),
            opened: Instant::now(),
            command_timeout: cfg.command_timeout,
        };
        let refused = |what: &str, reply: &Reply| {
            connect_err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("{what} refused: {reply}"),
            ))
        };

        let greeting = conn.read_reply("greeting", cfg.command_timeout).await?;
        if greeting.code != 220 {
            return Err(refused("session", &greeting));
        }

        let ehlo = format!("EHLO {}\r\n", cfg.helo_name);
        conn.write_all(ehlo.as_bytes(), "EHLO", cfg.command_timeout)
            .await?;
        let mut raw = Vec::with_capacity(256);
        let reply = timed(cfg.command_timeout, &target, "EHLO", async {
            conn.reader
                .read_reply(Some(&mut raw))
                .await
                .map_err(|e| read_error(&target, "EHLO", e))
        })
        .await?;
        conn.replies_read += 1;
        if reply.code == 250 {
            conn.caps = Capabilities::from_ehlo(&raw, &reply.text);
        } else if reply.is_permanent() {
            let helo = format!("HELO {}\r\n", cfg.helo_name);
            conn.write_all(helo.as_bytes(), "HELO", cfg.command_timeout)
                .await?;
            let reply = conn.read_reply("HELO", cfg.command_timeout).await?;
            if reply.code != 250 {
                return Err(refused("HELO", &reply));
            }
        } else {
            return Err(refused("EHLO", &reply));
        }
        tracing::info!(
            conn = id,
            target = %target,
            pipelining = conn.caps.pipelining,
            xverp = conn.caps.xverp,
            size = ?conn.caps.size,
            "SMTP connection opened"
        );
        metrics::counter!("listrelay_smtp_connections_opened_total").increment(1);
        Ok(conn)
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Reads one reply; a 421 is turned into `ServiceUnavailable`.
    pub(crate) async fn read_reply(
        &mut self,
        stage: &'static str,
        after: Duration,
    ) -> Result<Reply, SendError> {
        let target = &self.target;
        let reader = &mut self.reader;
        let reply = timed(after, target, stage, async {
            reader
                .read_reply(None)
                .await
                .map_err(|e| read_error(target, stage, e))
        })
        .await?;
        self.replies_read += 1;
        tracing::trace!(conn = self.id, stage, reply = %reply, "SMTP reply");
        if reply.code == 421 {
            return Err(SendError::ServiceUnavailable {
                target: self.target.clone(),
                stage,
                reply,
            });
        }
        Ok(reply)
    }

    pub(crate) async fn write_all(
        &mut self,
        bytes: &[u8],
        stage: &'static str,
        after: Duration,
    ) -> Result<(), SendError> {
        let target = &self.target;
        let writer = &mut self.writer;
        timed(
            after,
            target,
            stage,
            write_flush(writer, bytes, target, stage),
        )
        .await
    }

    /// Pipelining: writes `batch` while reading `count` replies, so a large
    /// batch cannot deadlock against a server that writes replies before it
    /// has read everything. Stops at the first 421 or I/O error.
    pub(crate) async fn pipeline(
        &mut self,
        batch: &[u8],
        count: usize,
        stage: &'static str,
    ) -> Result<Vec<Reply>, SendError> {
        let after = self.command_timeout;
        let target = self.target.as_str();
        let writer = &mut self.writer;
        let reader = &mut self.reader;
        let replies_read = &mut self.replies_read;
        let write = timed(
            after,
            target,
            stage,
            write_flush(writer, batch, target, stage),
        );
        let read = async {
            let mut replies = Vec::with_capacity(count);
            for _ in 0..count {
                let reply = timed(after, target, stage, async {
                    reader
                        .read_reply(None)
                        .await
                        .map_err(|e| read_error(target, stage, e))
                })
                .await?;
                *replies_read += 1;
                if reply.code == 421 {
                    return Err(SendError::ServiceUnavailable {
                        target: target.to_string(),
                        stage,
                        reply,
                    });
                }
                replies.push(reply);
            }
            Ok(replies)
        };
        let ((), replies) = tokio::try_join!(write, read)?;
        Ok(replies)
    }

    /// A reply arrived that we did not ask for (or the server is out of sync).
    pub(crate) fn has_unread_input(&self) -> bool {
        self.reader.has_buffered()
    }

    /// Polite close: QUIT, wait briefly for the reply, drop.
    pub(crate) async fn quit(mut self) {
        let after = self.command_timeout.min(Duration::from_secs(5));
        if self.write_all(b"QUIT\r\n", "QUIT", after).await.is_ok() {
            let _ = self.read_reply("QUIT", after).await;
        }
        let _ = self.writer.shutdown().await;
        tracing::debug!(conn = self.id, txns = self.txns, "SMTP connection closed");
    }
}

/// Writes and flushes `bytes`; an I/O error names the target and the stage.
async fn write_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    target: &str,
    stage: &'static str,
) -> Result<(), SendError> {
    let io = |source| SendError::Io {
        target: target.to_string(),
        stage,
        source,
    };
    writer.write_all(bytes).await.map_err(io)?;
    writer.flush().await.map_err(io)
}
