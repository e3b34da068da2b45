//! The site secret and the one signer every signed token uses.
//!
//! The secret is the HMAC key that signs VERP tags, moderation action
//! addresses, confirmation tokens and one-click unsubscribe links. It lives
//! in a file (mode 0600) created with 32 bytes from the OS CSPRNG on first
//! use.
//!
//! [`sign`] and [`verify`] frame the MAC input one way for every use: the
//! [`Purpose`]'s name and then each field, every one preceded by its length
//! (8 bytes, big-endian), so that no two (purpose, fields) inputs can frame
//! to the same bytes, whatever the fields contain. The signature is the first
//! [`Purpose::sig_bytes`] bytes of HMAC-SHA256 in [`base32`], checked in
//! constant time.
//!
//! **Legacy framing.** Before this signer, each use framed its input itself:
//! the purpose name and the fields each followed by a NUL byte (VERP: with no
//! NUL after the last field). Tokens minted that way are in mailboxes and
//! archives (tests/fixtures/tokens.tsv holds examples), so new tokens use the
//! one framing above and [`verify_legacy`] still accepts the old one where a
//! caller asks for it. It can be dropped once no old token can matter any
//! more: for VERP 30 days after the upgrade (bounces come back within the
//! MTAs' 5-day retry), for moderation once no post held before the upgrade
//! is still held, and for one-click links, which never expire, after a year
//! (links in archived posts, announced in the release notes).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC key of the site (see the module doc).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret from raw key bytes (tests and `load_or_create`).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// The raw key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads the secret from `path`, creating it if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let hex = String::from_utf8_lossy(&bytes);
                let key = hex::decode(hex.trim())
                    .with_context(|| format!("{}: the secret must be hex", path.display()))?;
                if key.len() < 16 {
                    bail!("{}: the secret must be at least 16 bytes", path.display());
                }
                Ok(Secret(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("creating the site secret {}", path.display()))?;
                writeln!(f, "{}", hex::encode(key))?;
                f.sync_all()?;
                Ok(Secret(key.to_vec()))
            }
            Err(e) => Err(e).with_context(|| format!("reading the site secret {}", path.display())),
        }
    }
}

/// What a signature is for. Its name separates the uses (a signature made for
/// one purpose never verifies for another) and it fixes the signature length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A VERP tag: fields list, member key.
    Verp,
    /// A moderator's action on a held post: fields list, action, Message-ID
    /// hash (legacy: list, action, Message-ID).
    Moderate,
    /// A confirmation token: fields list, the token's random part.
    Confirm,
    /// A one-click unsubscribe link: fields list, member key.
    Unsubscribe,
    /// A probe of `listrelay check mta`: fields domain, probe id.
    Probe,
    /// The web pages' session cookies, CSRF tokens, login and options links:
    /// a label field (`web-session`, `web-csrf`, `web-login`, `web-options`)
    /// first, then the value's fields.
    Web,
}

impl Purpose {
    /// The name that starts the MAC input.
    fn name(self) -> &'static str {
        match self {
            Purpose::Verp => "verp",
            Purpose::Moderate => "moderate",
            Purpose::Confirm => "confirm",
            Purpose::Unsubscribe => "unsubscribe",
            Purpose::Probe => "probe",
            Purpose::Web => "web",
        }
    }

    /// How much of the MAC is kept: 64 bits where the signature sits in an
    /// address local part (at most 64 characters), 128 bits in a URL.
    pub fn sig_bytes(self) -> usize {
        match self {
            Purpose::Verp | Purpose::Moderate | Purpose::Confirm | Purpose::Probe => 8,
            Purpose::Unsubscribe | Purpose::Web => 16,
        }
    }
}

/// The base32 alphabet: lowercase, so an MTA that folds case cannot break a
/// signature once it is lowercased again, and only characters every MTA
/// keeps in a local part.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32 in lowercase, without padding.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn mac(secret: &Secret) -> HmacSha256 {
    HmacSha256::new_from_slice(secret.bytes()).expect("HMAC takes any key length")
}

fn finish(purpose: Purpose, mac: HmacSha256) -> String {
    base32(&mac.finalize().into_bytes()[..purpose.sig_bytes()])
}

/// The signature of `fields` for `purpose` (see the module doc).
pub fn sign(secret: &Secret, purpose: Purpose, fields: &[&str]) -> String {
    let mut m = mac(secret);
    for part in std::iter::once(purpose.name()).chain(fields.iter().copied()) {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part.as_bytes());
    }
    finish(purpose, m)
}

/// The signature as listrelay made it before [`sign`] (module doc, "Legacy
/// framing"); only for verifying tokens minted then.
fn sign_legacy(secret: &Secret, purpose: Purpose, fields: &[&str]) -> String {
    let mut m = mac(secret);
    let parts: Vec<&str> = std::iter::once(purpose.name())
        .chain(fields.iter().copied())
        .collect();
    for (i, part) in parts.iter().enumerate() {
        m.update(part.as_bytes());
        if i + 1 < parts.len() || purpose != Purpose::Verp {
            m.update(b"\0");
        }
    }
    finish(purpose, m)
}

/// Whether two signatures are equal, in constant time; `sig` may have been
/// upper-cased or padded with spaces on the way.
fn same(sig: &str, expected: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(
        sig.trim().to_ascii_lowercase().as_bytes(),
        expected.as_bytes(),
    )
    .into()
}

/// Whether `sig` is the signature of `fields` for `purpose`.
pub fn verify(secret: &Secret, purpose: Purpose, fields: &[&str], sig: &str) -> bool {
    same(sig, &sign(secret, purpose, fields))
}

/// Whether `sig` is a signature minted before the one framing (module doc,
/// "Legacy framing"). Remove with its callers after the stated period.
pub fn verify_legacy(secret: &Secret, purpose: Purpose, fields: &[&str], sig: &str) -> bool {
    same(sig, &sign_legacy(secret, purpose, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn base32_is_rfc4648_lowercase() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn signatures_bind_purpose_fields_and_their_boundaries() {
        let s = secret();
        let sig = sign(&s, Purpose::Verp, &["dev@l.org", "bob@x.org"]);
        assert_eq!(sig.len(), 13);
        assert!(verify(&s, Purpose::Verp, &["dev@l.org", "bob@x.org"], &sig));
        assert!(verify(
            &s,
            Purpose::Verp,
            &["dev@l.org", "bob@x.org"],
            &sig.to_uppercase()
        ));
        assert!(!verify(
            &s,
            Purpose::Unsubscribe,
            &["dev@l.org", "bob@x.org"],
            &sig
        ));
        assert!(!verify(
            &s,
            Purpose::Verp,
            &["dev@l.orgb", "ob@x.org"],
            &sig
        ));
        assert!(!verify(&s, Purpose::Verp, &["dev@l.org\0bob@x.org"], &sig));
        assert!(!verify(&s, Purpose::Verp, &["dev@l.org", "bob@x.org"], ""));
        let other = Secret::from_bytes(b"another secret, thirty-two bytes".to_vec());
        assert!(!verify(
            &other,
            Purpose::Verp,
            &["dev@l.org", "bob@x.org"],
            &sig
        ));
        assert_eq!(sign(&s, Purpose::Unsubscribe, &["a"]).len(), 26);
    }

    #[test]
    fn legacy_signatures_verify_only_as_legacy() {
        let s = secret();
        let fields = ["dev@l.org", "bob@x.org"];
        for p in [Purpose::Verp, Purpose::Moderate, Purpose::Unsubscribe] {
            let old = sign_legacy(&s, p, &fields);
            assert!(verify_legacy(&s, p, &fields, &old));
            assert!(!verify(&s, p, &fields, &old));
            assert!(!verify_legacy(&s, p, &fields, &sign(&s, p, &fields)));
        }
    }
}
