//! DKIM signing of the copies listrelay sends, with the list domain's
//! active keys (one or two selectors, e.g. RSA and Ed25519 side by side).
//!
//! A copy is a shared part (the post with the list headers, the same for
//! every envelope) and a per-envelope header slice sent before it
//! (`fanout::copy::unsubscribe_header`). The signature must cover the
//! slice's `List-Unsubscribe` / `List-Unsubscribe-Post` (receivers require
//! it for one-click), so each distinct slice needs its own signature.
//!
//! mail-auth's `DkimSigner::sign` hashes the body and splits and
//! canonicalises every header on every call. Its public building blocks
//! allow doing once per post what is the same for every copy, and
//! [`PostSigner`] uses them in the order `DkimSigner::sign` does
//! (`Signature::canonicalize` then `SigningKey::sign` of the canonical
//! headers and the signature without `b=`):
//!
//! * per post and key: the shared part split by mail-auth
//!   (`AuthenticatedMessage::parse`; `DkimSigner::sign`'s own splitter is
//!   not public), its body hash
//!   (`Canonicalization::canonical_body` + `SigningKey::hash`), and the
//!   canonical form of its signed fields (`canonicalize_headers`). mail-auth
//!   hashes the signed fields bottom-up, and the slice comes before the
//!   shared part, so the shared fields are a prefix of what is hashed, the
//!   same for every copy;
//! * per copy and key: the slice split and canonicalised (one or two
//!   fields), `h=` composed as `Signature::canonicalize` composes it (the
//!   fields found bottom-up, then the names not found, which signs them as
//!   absent and over-signs From), and `SigningKey::sign` over the prefix,
//!   the slice's canonical fields and the signature: one SHA-256 of about a
//!   kilobyte and one Ed25519 (or RSA) signature.
//!
//! No splitting, canonicalisation or crypto is ours; a unit test checks the
//! lines are byte for byte those of mail-auth's own signer over the whole
//! copy. A one-entry memo makes consecutive batched envelopes (identical
//! mailto slice) share one signature; a VERP copy (a slice of its own)
//! costs a comparison and a copy of its lines (a cache keyed by slice
//! grew by every VERP copy and never hit).

use super::arc::Sealer;
use super::keys::{Algorithm, DkimKeyRecord, KeyError};
use mail_auth::common::crypto::{DkimKey, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable, Writer};
use mail_auth::dkim::{Canonicalization, DkimSigner, Done, Signature};
use mail_auth::AuthenticatedMessage;
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

    /// Prepares signing of one post's copies: per key, the body hash and the
    /// shared part's signed fields in canonical form, once.
    pub fn for_post<'a>(&'a self, shared: &'a [u8]) -> PostSigner<'a> {
        let parsed = AuthenticatedMessage::parse(shared);
        let fields = parsed.as_ref().map_or(&[][..], |m| m.raw_parsed_headers());
        let body = parsed.as_ref().map_or(&b""[..], |m| {
            m.raw_message.get(m.body_offset()..).unwrap_or_default()
        });
        PostSigner {
            keys: self
                .signers
                .iter()
                .map(|s| SharedPart::new(s, fields, body))
                .collect(),
            memo: Mutex::new(None),
        }
    }
}

/// What every copy of a post shares, for one key.
struct SharedPart<'a> {
    /// The key and its signature template (`d=`, `s=`, `h=`, canonicalisation).
    signer: &'a DkimSigner<DkimKey, Done>,
    /// `bh=`: the shared body is every copy's body.
    body_hash: Vec<u8>,
    /// The shared part's signed fields, canonicalised bottom-up as mail-auth
    /// hashes them: the first bytes every copy's signature hashes.
    canonical: Vec<u8>,
    /// Their names bottom-up: the start of every copy's `h=`.
    names: Vec<String>,
    /// Which entries of the template's `h=` the shared part has, so that a
    /// copy's `h=` can end with the names neither part has.
    found: Vec<bool>,
}

impl<'a> SharedPart<'a> {
    fn new(
        signer: &'a DkimSigner<DkimKey, Done>,
        fields: &[(&[u8], &[u8])],
        body: &[u8],
    ) -> SharedPart<'a> {
        let template = &signer.template;
        let mut found = vec![false; template.h.len()];
        let signed = signed_fields(&template.h, fields, &mut found);
        let mut canonical = Vec::with_capacity(1024);
        template
            .ch
            .canonicalize_headers(signed.iter().rev().copied(), &mut canonical);
        SharedPart {
            signer,
            body_hash: signer
                .key
                .hash(template.cb.canonical_body(body, u64::MAX))
                .as_ref()
                .to_vec(),
            canonical,
            names: signed.iter().rev().map(|(n, _)| field_name(n)).collect(),
            found,
        }
    }

    /// The DKIM-Signature line for the copy `slice` + shared part.
    fn sign(&self, slice: &[(&[u8], &[u8])], now: u64) -> Result<String, SignError> {
        let template = &self.signer.template;
        let mut found = self.found.clone();
        let slice_signed = signed_fields(&template.h, slice, &mut found);
        let mut h = Vec::with_capacity(template.h.len() + 2);
        h.extend(self.names.iter().cloned());
        h.extend(slice_signed.iter().rev().map(|(n, _)| field_name(n)));
        let err = |reason: String| SignError::Sign {
            domain: template.d.clone(),
            selector: template.s.clone(),
            reason,
        };
        if h.is_empty() {
            return Err(err("the copy has none of the headers to sign".into()));
        }
        h.extend(
            template
                .h
                .iter()
                .zip(&found)
                .filter(|(_, f)| !**f)
                .map(|(n, _)| n.clone()),
        );
        let mut signature = template.clone();
        signature.bh = self.body_hash.clone();
        signature.t = now;
        signature.h = h;
        signature.b = self
            .signer
            .key
            .sign(Signable {
                prefix: &self.canonical,
                slice: &slice_signed,
                canonicalization: template.ch,
                signature: &signature,
            })
            .map_err(|e| err(e.to_string()))?;
        Ok(keep_last_semicolon(signature.to_header()))
    }
}

/// The fields of `fields` that `h` names, in message order, marking in
/// `found` the entries of `h` they match: what mail-auth's
/// `Signature::canonicalize` keeps of a message (a name matches its first
/// entry, so the second `From` of `h` is always "not found": over-signed).
fn signed_fields<'x>(
    h: &[String],
    fields: &[(&'x [u8], &'x [u8])],
    found: &mut [bool],
) -> Vec<(&'x [u8], &'x [u8])> {
    let mut signed = Vec::new();
    for &(name, value) in fields {
        if let Some(pos) = h
            .iter()
            .position(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        {
            signed.push((name, value));
            found[pos] = true;
        }
    }
    signed
}

/// A field name as `h=` lists it (as mail-auth writes it: as received).
fn field_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Signs the copies of one post: per key, the body hash and the shared
/// fields' canonical form for the post; per copy, the slice and a signature.
pub struct PostSigner<'a> {
    /// One per active key of the domain.
    keys: Vec<SharedPart<'a>>,
    /// The last slice signed and its lines: batched envelopes (the same
    /// mailto slice, one after the other) share one signature.
    memo: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
}

/// What a key signs for one copy: the canonical fields bottom-up (the
/// shared part's, already canonical, then the slice's, which sit above
/// them), then the signature itself without `b=` (as mail-auth's own
/// `SignableMessage`).
struct Signable<'a> {
    prefix: &'a [u8],
    slice: &'a [(&'a [u8], &'a [u8])],
    canonicalization: Canonicalization,
    signature: &'a Signature,
}

impl Writable for Signable<'_> {
    fn write(self, writer: &mut impl Writer) {
        writer.write(self.prefix);
        self.canonicalization
            .canonicalize_headers(self.slice.iter().rev().copied(), writer);
        self.signature.write(writer, false);
    }
}

impl PostSigner<'_> {
    /// DKIM-Signature header lines (CRLF-terminated, one per key) for the
    /// copy `slice` + shared part; send them before the slice. `slice` is
    /// header lines (possibly empty). Consecutive identical slices get the
    /// same lines.
    pub fn sign_envelope(&self, slice: &[u8], now: u64) -> Result<Vec<u8>, SignError> {
        if let Ok(memo) = self.memo.lock() {
            if let Some((last, lines)) = memo.as_ref() {
                if last == slice {
                    return Ok(lines.clone());
                }
            }
        }
        let parsed = AuthenticatedMessage::parse(slice);
        let fields = parsed.as_ref().map_or(&[][..], |m| m.raw_parsed_headers());
        let mut out = Vec::with_capacity(512 * self.keys.len());
        for key in &self.keys {
            out.extend_from_slice(key.sign(fields, now)?.as_bytes());
        }
        if let Ok(mut memo) = self.memo.lock() {
            *memo = Some((slice.to_vec(), out.clone()));
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

    /// What mail-auth's own signer writes over the whole copy (slice +
    /// shared part), and the `t=` it used.
    fn mail_auth_lines(k: &DkimKeyRecord, whole: &[u8]) -> (String, u64) {
        let Ok(key) = k.signing_key() else {
            panic!("key loads")
        };
        let theirs = DkimSigner::from_key(key)
            .domain(k.domain.clone())
            .selector(k.selector.clone())
            .headers(SIGNED_HEADERS.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(whole)
            .unwrap();
        (keep_last_semicolon(theirs.to_header()), theirs.t)
    }

    #[test]
    fn same_signature_as_mail_auth_own_signer() {
        let shared_parts: &[&[u8]] = &[
            SHARED,
            // Upper/lower case names, a repeated field, a folded one, an
            // author's signature, fields nobody signs.
            b"Received: by a\r\nreceived: by b\r\nDKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=x;\r\n\th=from; bh=AAAA; b=BBBB\r\nlist-id: <dev.lists.example.org>\r\nFROM: Alice\r\n <alice@example.com>\r\nSubject:  two  spaces \r\nX-Other: x\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\nbody  line \r\n\r\n\r\n",
        ];
        let slices: &[&[u8]] = &[
            b"",
            b"List-Unsubscribe: <mailto:dev-leave@lists.example.org>\r\n",
            b"List-Unsubscribe: <https://l.example.org/u/T>, <mailto:dev-leave@lists.example.org>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        ];
        for algorithm in [Algorithm::Ed25519Sha256, Algorithm::RsaSha256] {
            let k = generate("lists.example.org", "sel", algorithm, 0).unwrap();
            let signer = Signer::new(std::slice::from_ref(&k)).unwrap();
            for &shared in shared_parts {
                let post = signer.for_post(shared);
                for &slice in slices {
                    // Ed25519 and RSA PKCS#1 v1.5 signatures are
                    // deterministic: equal when t= is equal.
                    let (theirs, t) = mail_auth_lines(&k, &[slice, shared].concat());
                    let ours = post.sign_envelope(slice, t).unwrap();
                    assert_eq!(
                        String::from_utf8(ours).unwrap(),
                        theirs,
                        "{algorithm:?}, slice {:?}",
                        String::from_utf8_lossy(slice)
                    );
                }
            }
        }
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
