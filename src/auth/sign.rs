//! DKIM signing of the copies listrelay sends, with the list domain's
//! active keys (one or two selectors, e.g. RSA and Ed25519 side by side).
//!
//! A copy is a shared part (the post with the list headers, the same for
//! every envelope) and a per-envelope header slice sent before it
//! (`fanout::copy::unsubscribe_header`). The signature must cover the
//! slice's `List-Unsubscribe` / `List-Unsubscribe-Post` (receivers require
//! it for one-click), so each distinct slice needs its own signature.
//!
//! mail-auth's `DkimSigner::sign` hashes the body on every call and takes no
//! precomputed body hash. Its public building blocks do allow it, and
//! [`PostSigner`] uses them exactly as `DkimSigner::sign` does internally:
//! the shared part is split once by `AuthenticatedMessage::parse` and its
//! body hash computed once (`Canonicalization::canonical_body` +
//! `SigningKey::hash`); per slice, `Signature::canonicalize` over the
//! slice's fields and the shared ones (headers only; the body view it
//! returns is lazy and never hashed), `SigningKey::sign` over the canonical
//! headers and the signature, and mail-auth's header writer. No splitting,
//! canonicalisation or crypto is ours. A cache by slice bytes makes the
//! batched envelopes (identical mailto slice) share one signature.

use super::arc::Sealer;
use super::keys::{Algorithm, DkimKeyRecord, KeyError};
use mail_auth::common::crypto::{DkimKey, SigningKey};
use mail_auth::common::headers::{HeaderStream, HeaderWriter, Writable, Writer};
use mail_auth::dkim::canonicalize::CanonicalHeaders;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done, Signature};
use mail_auth::AuthenticatedMessage;
use std::collections::HashMap;
use std::sync::Mutex;

/// The headers every copy's signature covers. `From` is listed twice
/// (over-signed: a second From added later breaks the signature); names
/// absent from a copy are signed as absent, so nobody can add them.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "Sender",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Post",
    "List-Help",
    "List-Subscribe",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Archive",
    "List-Owner",
];

/// Signing errors; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A key record does not load.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// No key was given (the domain has no active key).
    #[error("no active DKIM key: run `listrelay dkim keygen DOMAIN` for the list domain")]
    NoKey,
    /// The keys given belong to different domains.
    #[error("DKIM keys of {0} and {1} given to one signer: sign each domain with its own keys")]
    MixedDomains(String, String),
    /// mail-auth refused to sign (no header of the list present, crypto).
    #[error("DKIM signing failed for {domain} (selector {selector}): {reason}")]
    Sign {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// mail-auth's message.
        reason: String,
    },
}

/// One domain's loaded keys: build once (keys load slowly), sign many posts.
pub struct Signer {
    signers: Vec<DkimSigner<DkimKey, Done>>,
    /// The ARC sealer, with the domain's first RSA key: RFC 8617 defines
    /// ARC with rsa-sha256 only, so an Ed25519-only domain does not seal.
    sealer: Option<Sealer>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.signers.iter().map(|s| (&s.template.d, &s.template.s)))
            .finish()
    }
}

impl Signer {
    /// Loads the active keys of one domain (each signs every copy).
    pub fn new(keys: &[DkimKeyRecord]) -> Result<Signer, SignError> {
        let mut signers = Vec::new();
        for k in keys {
            signers.push(
                DkimSigner::from_key(k.signing_key()?)
                    .domain(k.domain.clone())
                    .selector(k.selector.clone())
                    .headers(SIGNED_HEADERS.iter().copied())
                    .header_canonicalization(Canonicalization::Relaxed)
                    .body_canonicalization(Canonicalization::Relaxed),
            );
        }
        if let Some(other) = keys.iter().find(|k| k.domain != keys[0].domain) {
            return Err(SignError::MixedDomains(
                keys[0].domain.clone(),
                other.domain.clone(),
            ));
        }
        if signers.is_empty() {
            return Err(SignError::NoKey);
        }
        let sealer = match keys.iter().find(|k| k.algorithm == Algorithm::RsaSha256) {
            Some(k) => Some(Sealer::new(k).map_err(|e| SignError::Sign {
                domain: k.domain.clone(),
                selector: k.selector.clone(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        Ok(Signer { signers, sealer })
    }

    /// The domain's ARC sealer, when it has an RSA key.
    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_ref()
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.signers[0].template.d
    }

    /// DKIM-Signature header lines (one per key, CRLF-terminated) for a whole
    /// message: a notice, or a copy with no per-envelope slice.
    pub fn sign_message(&self, message: &[u8], now: u64) -> Result<Vec<u8>, SignError> {
        self.for_post(message).sign_envelope(b"", now)
    }

    /// Prepares signing of one post's copies: hashes `shared`'s body once.
    pub fn for_post<'a>(&'a self, shared: &'a [u8]) -> PostSigner<'a> {
        let parsed = AuthenticatedMessage::parse(shared);
        let (headers, body) = match parsed {
            Some(m) => {
                let body = m
                    .raw_message
                    .get(m.body_offset as usize..)
                    .unwrap_or_default();
                (m.headers, body)
            }
            None => (Vec::new(), &b""[..]),
        };
        let body_hashes = self
            .signers
            .iter()
            .map(|s| {
                s.key
                    .hash(s.template.cb.canonical_body(body, u64::MAX))
                    .as_ref()
                    .to_vec()
            })
            .collect();
        PostSigner {
            signer: self,
            headers,
            body,
            body_hashes,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

/// Signs the copies of one post: one body hash per key for the post, one
/// signature per key per distinct per-envelope header slice.
pub struct PostSigner<'a> {
    signer: &'a Signer,
    /// The shared part's header fields, as mail-auth splits them.
    headers: Vec<(&'a [u8], &'a [u8])>,
    /// The shared part's body.
    body: &'a [u8],
    /// `bh=` per key (all relaxed/SHA-256 today, but kept per key so a key
    /// with other parameters stays correct).
    body_hashes: Vec<Vec<u8>>,
    /// Slice bytes → the DKIM-Signature lines made for it.
    cache: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
}

/// What a key signs: the canonical headers, then the signature itself
/// without `b=` (as mail-auth's own `SignableMessage`).
struct Signable<'a> {
    headers: CanonicalHeaders<'a>,
    signature: &'a Signature,
}

impl Writable for Signable<'_> {
    fn write(self, writer: &mut impl Writer) {
        self.headers.write(writer);
        self.signature.write(writer, false);
    }
}

/// A copy as mail-auth's signer reads it: the slice's fields, then the
/// shared part's (both split by mail-auth), then the shared body.
struct Copy<'a, I: Iterator<Item = &'a (&'a [u8], &'a [u8])>> {
    fields: I,
    body: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a (&'a [u8], &'a [u8])>> HeaderStream<'a> for Copy<'a, I> {
    fn next_header(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        self.fields.next().copied()
    }

    fn body(&mut self) -> &'a [u8] {
        self.body
    }
}

impl PostSigner<'_> {
    /// DKIM-Signature header lines (CRLF-terminated, one per key) for the
    /// copy `slice` + shared part; send them before the slice. `slice` is
    /// header lines (possibly empty). Identical slices get the same lines.
    pub fn sign_envelope(&self, slice: &[u8], now: u64) -> Result<Vec<u8>, SignError> {
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(slice).cloned()) {
            return Ok(hit);
        }
        let slice_msg = AuthenticatedMessage::parse(slice);
        let slice_fields = slice_msg
            .as_ref()
            .map_or(&[][..], |m| m.raw_parsed_headers());
        let mut out = Vec::new();
        for (s, bh) in self.signer.signers.iter().zip(&self.body_hashes) {
            let err = |reason: String| SignError::Sign {
                domain: s.template.d.clone(),
                selector: s.template.s.clone(),
                reason,
            };
            let (_, headers, signed, _) = s.template.canonicalize(Copy {
                fields: slice_fields.iter().chain(self.headers.iter()),
                body: self.body,
            });
            let mut signature = s.template.clone();
            signature.bh = bh.clone();
            signature.t = now;
            signature.h = signed;
            signature.b = s
                .key
                .sign(Signable {
                    headers,
                    signature: &signature,
                })
                .map_err(|e| err(e.to_string()))?;
            out.extend_from_slice(keep_last_semicolon(signature.to_header()).as_bytes());
        }
        if let Ok(mut c) = self.cache.lock() {
            c.insert(slice.to_vec(), out.clone());
        }
        Ok(out)
    }
}

/// mail-auth folds a header as `b=…\r\n\t;` when the `b=` value fills the
/// line. RFC 6376 §3.5 deletes the whitespace around the `b=` value before
/// hashing, and mail-auth signs that; dkimpy (and so, likely, other
/// verifiers) keeps the trailing fold and computes `b= ;`, and the
/// signature fails there. Moving the `;` up makes both readings agree;
/// nothing signed changes (the `b=` value and its whitespace are removed
/// for hashing either way).
pub(crate) fn keep_last_semicolon(header: String) -> String {
    header.replace("\r\n\t;\r\n", ";\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::generate;

    const SHARED: &[u8] = b"List-Id: <dev.lists.example.org>\r\nFrom: Alice <alice@example.com>\r\nTo: dev@lists.example.org\r\nSubject: hi\r\n\r\nbody\r\n";

    #[test]
    fn same_signature_as_mail_auth_own_signer() {
        let k = generate("lists.example.org", "ed", Algorithm::Ed25519Sha256, 0).unwrap();
        let signer = Signer::new(std::slice::from_ref(&k)).unwrap();
        let slice = b"List-Unsubscribe: <https://l.example.org/u/T>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
        let whole = [&slice[..], SHARED].concat();
        // mail-auth's own signer over the whole copy; ours over slice + shared.
        // Ed25519 signatures are deterministic: equal when t= is equal.
        let Ok(key) = k.signing_key() else {
            panic!("key loads")
        };
        let theirs = DkimSigner::from_key(key)
            .domain("lists.example.org")
            .selector("ed")
            .headers(SIGNED_HEADERS.iter().copied())
            .sign(&whole)
            .unwrap();
        let ours = signer
            .for_post(SHARED)
            .sign_envelope(slice, theirs.t)
            .unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            keep_last_semicolon(theirs.to_header())
        );
    }

    #[test]
    fn no_lone_semicolon_line() {
        // What mail-auth writes when b= ends a line (seen with RSA keys in
        // tests/auth.rs list_keys_sign_and_dkimpy_verifies_both_algorithms,
        // which dkimpy failed before this).
        let raw =
            "DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=AAAA\r\n\tBBBB==\r\n\t;\r\n".to_string();
        assert_eq!(
            keep_last_semicolon(raw),
            "DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=AAAA\r\n\tBBBB==;\r\n"
        );
    }

    #[test]
    fn identical_slices_share_a_signature_and_no_key_is_an_error() {
        let k = generate("lists.example.org", "ed", Algorithm::Ed25519Sha256, 0).unwrap();
        let signer = Signer::new(&[k]).unwrap();
        let post = signer.for_post(SHARED);
        let a = post
            .sign_envelope(b"List-Unsubscribe: <mailto:x@y>\r\n", 5)
            .unwrap();
        let b = post
            .sign_envelope(b"List-Unsubscribe: <mailto:x@y>\r\n", 5)
            .unwrap();
        assert_eq!(a, b);
        let s = String::from_utf8(a).unwrap();
        assert!(
            s.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; s=ed; d=lists.example.org;"),
            "{s}"
        );
        assert_eq!(s.matches("From").count(), 2, "From over-signed: {s}");
        assert!(matches!(Signer::new(&[]), Err(SignError::NoKey)));
    }
}
