//! What the server announced in its EHLO reply.

use smtp_proto::{EhloResponse, EXT_8BIT_MIME, EXT_DSN, EXT_PIPELINING, EXT_SIZE, EXT_SMTP_UTF8};

/// Server capabilities, from the EHLO reply (all false after a HELO fallback).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server accepted EHLO (false: we fell back to HELO).
    pub esmtp: bool,
    pub pipelining: bool,
    /// `Some(limit)` when SIZE is announced; `Some(0)` means "no fixed limit".
    pub size: Option<usize>,
    /// Postfix's XVERP extension.
    pub xverp: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub enhanced_status_codes: bool,
    /// Every EHLO keyword, upper-cased, without parameters.
    pub keywords: Vec<String>,
}

impl Capabilities {
    /// Builds the capabilities from the raw EHLO reply bytes (as received)
    /// and its parsed text (lines joined with `\n`, first line = greeting).
    ///
    /// smtp-proto's `EhloResponse` provides the standard extensions; it does
    /// not know XVERP, so the keyword list is also scanned here, which is also
    /// the fallback if `EhloResponse::parse` does not accept the reply.
    pub(crate) fn from_ehlo(raw: &[u8], text: &str) -> Self {
        let keywords: Vec<String> = text
            .split('\n')
            .skip(1)
            .filter_map(|line| line.split_ascii_whitespace().next())
            .map(|k| k.to_ascii_uppercase())
            .collect();
        let has = |k: &str| keywords.iter().any(|x| x == k);
        let scanned_size = || {
            text.split('\n').skip(1).find_map(|line| {
                let mut words = line.split_ascii_whitespace();
                let k = words.next()?;
                if k.eq_ignore_ascii_case("SIZE") {
                    Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0))
                } else {
                    None
                }
            })
        };
        let mut caps = Capabilities {
            esmtp: true,
            xverp: has("XVERP"),
            enhanced_status_codes: has("ENHANCEDSTATUSCODES"),
            ..Default::default()
        };
        match EhloResponse::parse(&mut raw.iter()) {
            Ok(ehlo) => {
                caps.pipelining = ehlo.has_capability(EXT_PIPELINING);
                caps.size = ehlo.has_capability(EXT_SIZE).then_some(ehlo.size);
                caps.eight_bit_mime = ehlo.has_capability(EXT_8BIT_MIME);
                caps.smtputf8 = ehlo.has_capability(EXT_SMTP_UTF8);
                caps.dsn = ehlo.has_capability(EXT_DSN);
            }
            Err(e) => {
                tracing::debug!(error = ?e, "EhloResponse::parse failed; using keyword scan");
                caps.pipelining = has("PIPELINING");
                caps.size = scanned_size();
                caps.eight_bit_mime = has("8BITMIME");
                caps.smtputf8 = has("SMTPUTF8");
                caps.dsn = has("DSN");
            }
        }
        caps.keywords = keywords;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::ReplyReader;

    async fn caps_of(raw: &[u8]) -> Capabilities {
        let mut r = ReplyReader::new(raw);
        let mut captured = Vec::new();
        let reply = r.read_reply(Some(&mut captured)).await.unwrap();
        assert_eq!(captured, raw);
        Capabilities::from_ehlo(&captured, &reply.text)
    }

    #[tokio::test]
    async fn postfix_ehlo() {
        let raw = b"250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
250-ETRN\r\n250-XVERP\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n\
250 CHUNKING\r\n";
        let caps = caps_of(raw).await;
        assert!(caps.pipelining && caps.xverp && caps.eight_bit_mime && caps.smtputf8 && caps.dsn);
        assert!(caps.enhanced_status_codes);
        assert_eq!(caps.size, Some(10_240_000));
        assert_eq!(caps.keywords.len(), 10);
    }

    #[tokio::test]
    async fn minimal_ehlo() {
        let caps = caps_of(b"250 localhost\r\n").await;
        assert!(caps.esmtp && !caps.pipelining && !caps.xverp);
        assert_eq!(caps.size, None);
        let caps = caps_of(b"250-localhost\r\n250 SIZE\r\n").await;
        assert_eq!(caps.size, Some(0));
    }

    #[test]
    fn fallback_scan_agrees() {
        // Malformed for EhloResponse (first code not 250) -> keyword scan.
        let caps = Capabilities::from_ehlo(b"garbage", "host\nPIPELINING\nSIZE 5000\nxverp");
        assert!(caps.pipelining && caps.xverp);
        assert_eq!(caps.size, Some(5000));
    }
}
