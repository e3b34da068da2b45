//! SMTP replies: the public [`Reply`] type and an incremental reader built on
//! smtp-proto's `ResponseReceiver`.

use std::fmt;
use std::io;

use smtp_proto::response::parser::ResponseReceiver;
use smtp_proto::Response;
use tokio::io::{AsyncRead, AsyncReadExt};

/// One (possibly multi-line) SMTP reply.
///
/// `text` holds the reply text without the code and without the enhanced
/// status code; the lines of a multi-line reply are joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<[u8; 3]>,
    pub text: String,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: the caller should retry later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: permanent failure.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    pub(crate) fn from_response(r: Response<String>) -> Self {
        Reply {
            code: r.code,
            enhanced: if r.esc == [0, 0, 0] {
                None
            } else {
                Some(r.esc)
            },
            text: r.message,
        }
    }
}

impl fmt::Display for Reply {
    /// `550 5.1.1 text`; the lines of a multi-line reply are joined by a space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some([a, b, c]) = self.enhanced {
            write!(f, " {a}.{b}.{c}")?;
        }
        if !self.text.is_empty() {
            f.write_str(" ")?;
            for (i, line) in self.text.split('\n').enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                f.write_str(line)?;
            }
        }
        Ok(())
    }
}

/// Why reading a reply failed (before timeouts, which the caller adds).
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    /// The peer closed the connection (possibly in the middle of a reply).
    Eof,
    /// The bytes received are not an SMTP reply.
    Protocol(String),
}

const READ_BUF: usize = 8 * 1024;

/// Reads replies from a stream, keeping bytes that belong to later replies
/// (pipelining) in its buffer.
pub(crate) struct ReplyReader<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    receiver: ResponseReceiver,
}

impl<R: AsyncRead + Unpin> ReplyReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        ReplyReader {
            inner,
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            receiver: ResponseReceiver::default(),
        }
    }

    /// Reads one complete reply. When `raw` is given, the bytes of the reply
    /// as received are appended to it (used to hand EHLO replies to
    /// `EhloResponse::parse`).
    pub(crate) async fn read_reply(
        &mut self,
        mut raw: Option<&mut Vec<u8>>,
    ) -> Result<Reply, ReadError> {
        loop {
            if self.start < self.end {
                let avail = &self.buf[self.start..self.end];
                let mut iter = avail.iter();
                let res = self.receiver.parse(&mut iter);
                let consumed = avail.len() - iter.len();
                if let Some(raw) = raw.as_deref_mut() {
                    raw.extend_from_slice(&avail[..consumed]);
                }
                self.start += consumed;
                match res {
                    Ok(resp) => {
                        self.receiver.reset();
                        return Ok(Reply::from_response(resp));
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                    Err(e) => {
                        self.receiver.reset();
                        return Err(ReadError::Protocol(format!("unparsable reply: {e:?}")));
                    }
                }
            }
            // Everything buffered has been consumed by the parser (it keeps its
            // own state for a partial reply), so the buffer can be refilled.
            self.start = 0;
            self.end = 0;
            let n = self
                .inner
                .read(&mut self.buf)
                .await
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Eof);
            }
            self.end = n;
        }
    }

    /// Whether bytes that were not yet parsed are waiting in the buffer.
    pub(crate) fn has_buffered(&self) -> bool {
        self.start < self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], chunk: usize) -> Vec<Reply> {
        // Feed the receiver in chunks to check partial-input handling.
        let mut receiver = ResponseReceiver::default();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            let mut iter = piece.iter();
            loop {
                match receiver.parse(&mut iter) {
                    Ok(r) => {
                        out.push(Reply::from_response(r));
                        receiver.reset();
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => {
                        assert_eq!(iter.len(), 0, "NeedsMoreData must consume the input");
                        break;
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        out
    }

    #[test]
    fn smtp_proto_multiline_and_partial_input() {
        let input = b"250-first line\r\n250-2.0.0 second\r\n250 third\r\n\
550 5.1.1 <x@example.org>: Recipient address rejected\r\n\
354 End data with <CR><LF>.<CR><LF>\r\n\
421-4.3.2 going\r\n421 4.3.2 down\r\n\
250 ok\n";
        for chunk in [1, 2, 3, 5, 7, 16, 1000] {
            let replies = parse_all(input, chunk);
            assert_eq!(replies.len(), 5, "chunk {chunk}");
            assert_eq!(replies[0].code, 250);
            // Learned: an enhanced code on a continuation line is stripped from
            // the text and becomes the reply's enhanced code.
            assert_eq!(replies[0].enhanced, Some([2, 0, 0]));
            // Lines joined by \n, no CR kept.
            assert_eq!(replies[0].text, "first line\nsecond\nthird");
            assert_eq!(replies[1].code, 550);
            assert_eq!(replies[1].enhanced, Some([5, 1, 1]));
            assert_eq!(
                replies[1].text,
                "<x@example.org>: Recipient address rejected"
            );
            assert_eq!(
                replies[1].to_string(),
                "550 5.1.1 <x@example.org>: Recipient address rejected"
            );
            assert_eq!(replies[2].code, 354);
            assert_eq!(replies[3].code, 421);
            assert_eq!(replies[3].enhanced, Some([4, 3, 2]));
            assert_eq!(replies[3].text, "going\ndown");
            assert_eq!(replies[3].to_string(), "421 4.3.2 going down");
            // Bare LF line ending is accepted too.
            assert_eq!(replies[4].code, 250);
            assert_eq!(replies[4].text, "ok");
        }
    }

    #[test]
    fn smtp_proto_digits_that_are_not_an_enhanced_code() {
        let replies = parse_all(b"250-8BITMIME\r\n250 SIZE 1000\r\n", 3);
        assert_eq!(replies[0].text, "8BITMIME\nSIZE 1000");
        let replies = parse_all(b"250 2.0.0\r\n", 1);
        assert_eq!(replies[0].enhanced, Some([2, 0, 0]));
        assert_eq!(replies[0].text, "");
        assert_eq!(replies[0].to_string(), "250 2.0.0");
    }

    #[test]
    fn smtp_proto_rejects_garbage() {
        let mut receiver = ResponseReceiver::default();
        let res = receiver.parse(&mut b"HTTP/1.1 400 Bad\r\n".iter());
        assert!(!matches!(
            res,
            Ok(_) | Err(smtp_proto::Error::NeedsMoreData { .. })
        ));
    }

    #[tokio::test]
    async fn reader_keeps_pipelined_replies() {
        let data: &[u8] =
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.5.1 Error: no valid recipients\r\n";
        let mut r = ReplyReader::new(data);
        let mut raw = Vec::new();
        let a = r.read_reply(Some(&mut raw)).await.unwrap();
        assert_eq!(raw, b"250 2.1.0 Ok\r\n");
        assert!(r.has_buffered());
        let b = r.read_reply(None).await.unwrap();
        let c = r.read_reply(None).await.unwrap();
        assert_eq!((a.code, b.code, c.code), (250, 250, 554));
        assert!(matches!(r.read_reply(None).await, Err(ReadError::Eof)));
    }
}
