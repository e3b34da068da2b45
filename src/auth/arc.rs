//! ARC sealing (RFC 8617) of a message listrelay changed, with mail-auth's
//! `ArcSealer` and the list domain's key.
//!
//! The seal needs the results of the checks made when the post arrived
//! ([`super::evaluate::Evaluation`]: its Authentication-Results text and the
//! incoming chain's validation). They are stored with the post, so sealing
//! at fan-out time needs no DNS: the earlier ARC sets are read back from
//! the message itself (they travel unchanged), and the chain result is the
//! stored one.
//!
//! The ARC-Message-Signature covers [`arc_signed_headers`]: the shared
//! headers of a copy, without `List-Unsubscribe` / `List-Unsubscribe-Post`,
//! which may differ per envelope. So the shared part is sealed once per post
//! and each envelope's slice (DKIM-signed) goes before it without breaking
//! the seal.

use super::keys::DkimKeyRecord;
use super::sign::{SignError, SIGNED_HEADERS};
use super::AuthResult;
use mail_auth::arc::{ArcSealer, Set};
use mail_auth::common::crypto::DkimKey;
use mail_auth::common::headers::{Header, HeaderWriter};
use mail_auth::dkim::Done;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult};

/// The headers the ARC-Message-Signature covers (see the module doc):
/// derived from the copy's [`SIGNED_HEADERS`], each name once (no
/// over-signing) and without the per-envelope `List-Unsubscribe` pair.
pub fn arc_signed_headers() -> impl Iterator<Item = &'static str> {
    SIGNED_HEADERS
        .iter()
        .enumerate()
        .filter(|&(i, h)| !SIGNED_HEADERS[..i].contains(h) && !h.starts_with("List-Unsubscribe"))
        .map(|(_, h)| *h)
}

/// Why a message was not sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key does not load.
    #[error(transparent)]
    Key(#[from] SignError),
    /// The message has no header mail-auth can read.
    #[error("the message has no header block to seal")]
    Unparsable,
    /// The incoming chain already ends in `cv=fail` (RFC 8617 §5.1.2: do not
    /// seal again) or its ARC headers are malformed. Send the copy
    /// DKIM-signed, unsealed.
    #[error(
        "the incoming ARC chain failed upstream or is malformed: the copy is not sealed again"
    )]
    ChainFailed,
    /// mail-auth refused (e.g. more than 50 sets).
    #[error("ARC sealing failed for {domain}: {reason}")]
    Seal {
        /// The sealing domain.
        domain: String,
        /// mail-auth's message.
        reason: String,
    },
}

/// One domain's ARC sealer (its first active key; build once).
pub struct Sealer {
    inner: ArcSealer<DkimKey, Done>,
    domain: String,
}

impl Sealer {
    /// The sealer for `key`'s domain and selector.
    pub fn new(key: &DkimKeyRecord) -> Result<Sealer, SealError> {
        let k = key.signing_key().map_err(SignError::from)?;
        Ok(Sealer {
            inner: ArcSealer::from_key(k)
                .domain(key.domain.clone())
                .selector(key.selector.clone())
                .headers(arc_signed_headers()),
            domain: key.domain.clone(),
        })
    }

    /// The three ARC header lines (ARC-Seal, ARC-Message-Signature,
    /// ARC-Authentication-Results; CRLF-terminated) to put on top of
    /// `message`. `auth_results` is the stored
    /// `Evaluation::auth_results` (one line: `authserv-id; dkim=…`);
    /// `chain` the stored `Evaluation::arc.result` of the incoming chain:
    /// `pass` seals with `cv=pass`, `none` starts a chain (`i=1`, `cv=none`),
    /// anything else seals with `cv=fail`.
    pub fn seal(
        &self,
        message: &[u8],
        auth_results: &str,
        chain: AuthResult,
    ) -> Result<Vec<u8>, SealError> {
        let parsed = AuthenticatedMessage::parse(message).ok_or(SealError::Unparsable)?;
        let sets = parsed.as_headers.len();
        if parsed.has_arc_errors
            || sets != parsed.ams_headers.len()
            || sets != parsed.aar_headers.len()
        {
            // Malformed ARC headers upstream: a new set could not name its
            // instance; the copy goes out DKIM-signed only.
            return Err(SealError::ChainFailed);
        }
        // The sets already on the message (sealing adds i = last + 1).
        let mut output = ArcOutput::default();
        {
            for ((seal, sig), res) in parsed
                .as_headers
                .iter()
                .zip(&parsed.ams_headers)
                .zip(&parsed.aar_headers)
            {
                output = output.with_set(Set {
                    signature: Header::new(sig.name, sig.value, &sig.header),
                    seal: Header::new(seal.name, seal.value, &seal.header),
                    results: Header::new(res.name, res.value, &res.header),
                });
            }
        }
        output = output.with_result(match chain {
            AuthResult::Pass => DkimResult::Pass,
            AuthResult::None => DkimResult::None,
            _ => DkimResult::Fail(mail_auth::Error::Arc(mail_auth::arc::ArcError::BrokenChain)),
        });
        if !output.can_be_sealed() {
            return Err(SealError::ChainFailed);
        }
        // mail-auth writes the "hostname" verbatim: the stored text is
        // already one line with single spaces, i.e. its relaxed form.
        let results = AuthenticationResults::new(auth_results);
        let set = self
            .inner
            .seal(&parsed, &results, &output)
            .map_err(|e| SealError::Seal {
                domain: self.domain.clone(),
                reason: e.to_string(),
            })?;
        Ok(super::sign::keep_last_semicolon(set.to_header()).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::arc_signed_headers;

    #[test]
    fn the_seal_covers_the_shared_headers_once_each() {
        let names: Vec<&str> = arc_signed_headers().collect();
        assert_eq!(names.iter().filter(|h| **h == "From").count(), 1);
        assert!(!names.iter().any(|h| h.starts_with("List-Unsubscribe")));
        for h in ["Subject", "Message-ID", "List-Id", "List-Owner"] {
            assert!(names.contains(&h), "{h} must be sealed");
        }
    }
}
