//! VERP: which members of a post get their own envelope, and the signed tag
//! that carries the member's address in `LIST-bounces+TAG@DOMAIN`.
//!
//! A tag is `LOCAL=DOMAIN=SIG`: the member's lowercased address with `@` as
//! `=`, characters outside `[a-z0-9._-]` in the local part escaped as `~XX`
//! (so `+`, `=`, `~`, quotes and spaces round-trip), and SIG the site signer's
//! signature ([`secret::sign`], purpose `Verp`) of the list and the member.
//! Domains hold no `=`, so the tag splits unambiguously from the right.

use sha2::{Digest, Sha256};

use crate::secret::{self, Purpose, Secret};

/// Whether a member gets its own VERP envelope for the post with list counter
/// `seq`. Each member sits at a fixed point of a ring of 10,000 positions (a
/// hash of its address); post `seq` covers the arc that starts where post
/// `seq - 1`'s ended, so across posts every member takes its turn, and the
/// same (post, member) always gives the same answer.
pub fn selected(seq: u64, percent: u8, member_key: &str) -> bool {
    const RING: u64 = 10_000;
    let percent = u64::from(percent.min(100));
    if percent == 100 {
        return true;
    }
    let digest = Sha256::digest(member_key.as_bytes());
    let point = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8])) % RING;
    let width = percent * RING / 100;
    let start = seq.wrapping_mul(width) % RING;
    (point + RING - start) % RING < width
}

fn signature(secret: &Secret, list: &str, member_key: &str) -> String {
    secret::sign(secret, Purpose::Verp, &[list, member_key])
}

fn escape_local(local: &str) -> String {
    let mut out = String::with_capacity(local.len());
    for b in local.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02x}"));
        }
    }
    out
}

fn unescape_local(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'~' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The tag for a member (given by its lowercased key `local@domain`).
pub fn encode(secret: &Secret, list: &str, member_key: &str) -> String {
    let (local, domain) = member_key.rsplit_once('@').unwrap_or((member_key, ""));
    format!(
        "{}={}={}",
        escape_local(local),
        domain,
        signature(secret, list, member_key)
    )
}

/// What a tag says, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The signature matches: the tag names this member (lowercased key).
    Verified(String),
    /// The tag reads as an address but its signature is wrong or missing:
    /// never act on it alone.
    Unverified(String),
    Malformed,
}

/// Decodes and verifies a tag in constant time. MTAs may change the case of a
/// local part, so the tag is lowercased first (the signature is lowercase).
pub fn decode(secret: &Secret, list: &str, tag: &str) -> Decoded {
    let tag = tag.to_ascii_lowercase();
    let mut parts = tag.rsplitn(3, '=');
    let (Some(last), Some(middle)) = (parts.next(), parts.next()) else {
        return Decoded::Malformed;
    };
    let (local, domain, sig) = match parts.next() {
        Some(local) => (local, middle, Some(last)),
        // Unsigned `local=domain`, as Postfix's XVERP writes it.
        None => (middle, last, None),
    };
    let Some(local) = unescape_local(local) else {
        return Decoded::Malformed;
    };
    if local.is_empty() || domain.is_empty() {
        return Decoded::Malformed;
    }
    let key = format!("{local}@{domain}");
    let fields = [list, key.as_str()];
    match sig {
        // Tags minted before the one framing: see secret's module doc.
        Some(s)
            if secret::verify(secret, Purpose::Verp, &fields, s)
                || secret::verify_legacy(secret, Purpose::Verp, &fields, s) =>
        {
            Decoded::Verified(key)
        }
        _ => Decoded::Unverified(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn tags_round_trip_any_address() {
        let s = secret();
        for member in [
            "bob@example.com",
            "a+b=c-d@x.org",
            "\"john doe\"@x.org",
            "o'neil~x@x.co.uk",
            "a=b=c@x.org",
            "ünï@x.org",
        ] {
            let tag = encode(&s, "dev@l.org", member);
            assert!(
                !tag.contains('@') && !tag.contains(' ') && !tag.contains('"'),
                "{tag}"
            );
            assert_eq!(
                decode(&s, "dev@l.org", &tag),
                Decoded::Verified(member.into()),
                "{tag}"
            );
            assert_eq!(
                decode(&s, "dev@l.org", &tag.to_ascii_uppercase()),
                Decoded::Verified(member.into())
            );
        }
    }

    #[test]
    fn forged_or_foreign_tags_are_not_verified() {
        let s = secret();
        let tag = encode(&s, "dev@l.org", "bob@example.com");
        let forged = tag.replace("bob", "eve");
        assert_eq!(
            decode(&s, "dev@l.org", &forged),
            Decoded::Unverified("eve@example.com".into())
        );
        assert!(matches!(
            decode(&s, "other@l.org", &tag),
            Decoded::Unverified(_)
        ));
        let other = Secret::from_bytes(b"another secret, thirty-two bytes".to_vec());
        assert!(matches!(
            decode(&other, "dev@l.org", &tag),
            Decoded::Unverified(_)
        ));
        assert_eq!(
            decode(&s, "dev@l.org", "bob=example.com"),
            Decoded::Unverified("bob@example.com".into())
        );
        for bad in ["", "nothing", "=x.org", "a~zz=x.org=sig"] {
            assert_eq!(decode(&s, "dev@l.org", bad), Decoded::Malformed, "{bad}");
        }
    }

    #[test]
    fn selection_is_deterministic_proportional_and_rotates() {
        let members: Vec<String> = (0..10_000)
            .map(|i| format!("m{i}@d{}.org", i % 30))
            .collect();
        let pick = |seq| -> Vec<bool> { members.iter().map(|m| selected(seq, 30, m)).collect() };
        let first = pick(0);
        assert_eq!(first, pick(0));
        let n = first.iter().filter(|&&b| b).count();
        assert!((2700..3300).contains(&n), "{n} of 10000 selected at 30 %");
        let second = pick(1);
        let overlap = first
            .iter()
            .zip(&second)
            .filter(|(a, b)| **a && **b)
            .count();
        assert!(
            overlap < n / 10,
            "consecutive posts pick different members ({overlap})"
        );
        // Four posts at 25 % cover everyone exactly once.
        let mut count = vec![0; members.len()];
        for seq in 0..4 {
            for (i, m) in members.iter().enumerate() {
                count[i] += usize::from(selected(seq, 25, m));
            }
        }
        assert!(count.iter().all(|&c| c == 1));
        assert!(members.iter().all(|m| selected(7, 100, m)));
        assert!(!members.iter().any(|m| selected(7, 0, m)));
    }
}
