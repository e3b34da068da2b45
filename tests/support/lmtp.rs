//! A raw LMTP (or SMTP) client for tests: send raw bytes, read N replies
//! (multi-line aware), so tests can pipeline whatever they like.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One (possibly multi-line) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Text of every line, without code, separator and CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

pub struct Client {
    stream: BufReader<TcpStream>,
    /// Timeout for each read of a reply (default 10 s).
    pub timeout: Duration,
}

impl Client {
    /// Connects; does NOT read the greeting (use `read_reply`).
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> std::io::Result<Client> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Client {
            stream: BufReader::new(s),
            timeout: Duration::from_secs(10),
        })
    }

    /// Connects and reads the 220 greeting.
    pub async fn connect_greeted(addr: impl tokio::net::ToSocketAddrs) -> std::io::Result<Client> {
        let mut c = Self::connect(addr).await?;
        let r = c.read_reply().await?;
        if r.code != 220 {
            return Err(other(format!("greeting {r:?}")));
        }
        Ok(c)
    }

    /// Sends raw bytes (no CRLF added).
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes).await
    }

    /// Reads one reply, following `NNN-` continuation lines.
    pub async fn read_reply(&mut self) -> std::io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(self.timeout, self.stream.read_line(&mut line))
                .await
                .map_err(|_| other("timeout reading reply".into()))??;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.len() < 3 {
                return Err(other(format!("short reply line {l:?}")));
            }
            let code: u16 = l[..3]
                .parse()
                .map_err(|_| other(format!("bad reply {l:?}")))?;
            let sep = l.as_bytes().get(3).copied().unwrap_or(b' ');
            lines.push(l.get(4..).unwrap_or("").to_string());
            if sep != b'-' {
                return Ok(Reply { code, lines });
            }
        }
    }

    /// Reads `n` replies.
    pub async fn read_replies(&mut self, n: usize) -> std::io::Result<Vec<Reply>> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.read_reply().await?);
        }
        Ok(v)
    }

    /// Sends `line` + CRLF and reads one reply.
    pub async fn cmd(&mut self, line: &str) -> std::io::Result<Reply> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }
}

fn other(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

/// Dot-stuffs `msg` and appends the terminating `.` line (an empty message
/// is the terminator alone).
pub fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 8);
    let mut at_line_start = true;
    for &c in msg {
        if at_line_start && c == b'.' {
            out.push(b'.');
        }
        out.push(c);
        at_line_start = c == b'\n';
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Sends one message over SMTP (EHLO, one step at a time) and QUITs
/// without waiting for the 221 (Exim delays it 200 ms: gotcha E7).
/// Errors if any step, including a RCPT, is refused.
pub async fn smtp_send(
    port: u16,
    mail_from: &str,
    rcpts: &[&str],
    msg: &[u8],
) -> std::io::Result<()> {
    let mut c = Client::connect_greeted(("127.0.0.1", port)).await?;
    let expect = |r: Reply, what: &str| {
        if r.is_positive() {
            Ok(())
        } else {
            Err(other(format!("{what}: {} {}", r.code, r.text())))
        }
    };
    expect(c.cmd("EHLO client.example.com").await?, "EHLO")?;
    expect(c.cmd(&format!("MAIL FROM:<{mail_from}>")).await?, "MAIL")?;
    for r in rcpts {
        expect(c.cmd(&format!("RCPT TO:<{r}>")).await?, r)?;
    }
    expect(c.cmd("DATA").await?, "DATA")?;
    c.send(&dot_stuff(msg)).await?;
    expect(c.read_reply().await?, "end of DATA")?;
    c.send(b"QUIT\r\n").await?;
    Ok(())
}

/// One LMTP transaction from `poster@example.com` to `rcpt` carrying `msg`
/// (dot-stuffed here); returns the reply to the end of the data.
pub async fn lmtp_post(port: u16, rcpt: &str, msg: &[u8]) -> Reply {
    let mut c = Client::connect_greeted(("127.0.0.1", port)).await.unwrap();
    c.cmd("LHLO test").await.unwrap();
    let mail = c.cmd("MAIL FROM:<poster@example.com>").await.unwrap();
    assert!(mail.is_positive(), "MAIL: {}", mail.text());
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await.unwrap();
    assert!(r.is_positive(), "RCPT {rcpt}: {}", r.text());
    assert_eq!(c.cmd("DATA").await.unwrap().code, 354);
    c.send(&dot_stuff(msg)).await.unwrap();
    c.read_reply().await.unwrap()
}
