//! Held posts and their action addresses.
//!
//! A held post is known by its list and Message-ID. Addresses carry a short
//! hash of the Message-ID (40 bits, base32: 8 characters) to find it, and the
//! site signer's signature (purpose `Moderate`) of list, action and that hash,
//! so that only someone who got the notice can act:
//! `LIST-moderate+approve-HASH-SIG@DOMAIN`. The same signature goes into
//! `approve <Message-ID> SIG` commands to `LIST-request`.
//!
//! The signature covers the hash, not the Message-ID, so that it can be
//! checked without the held post: a valid address for a post no longer held
//! was handled already, while an invalid one is a forgery. A post crafted to
//! share another's hash gains nothing: when two held posts of a list share a
//! hash, an address names neither (see `actions.rs`). Signatures minted
//! before the one framing covered the Message-ID itself and are still
//! accepted ([`verify`]; secret's module doc says until when).

use serde::{Deserialize, Serialize};

pub use crate::model::{message_hash, HeldPost};
use crate::secret::{self, Purpose, Secret};

/// A moderator's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Approve,
    Reject,
    Discard,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Approve, Action::Reject, Action::Discard];

    pub fn name(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Discard => "discard",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
    }
}

/// The signature of an action on a held post.
pub fn signature(secret: &Secret, list: &str, action: Action, message_id: &str) -> String {
    secret::sign(
        secret,
        Purpose::Moderate,
        &[list, action.name(), &message_hash(message_id)],
    )
}

/// Whether `sig` signs `action` on the posts of `list` whose Message-ID hash
/// is `hash` (the held post need not exist any more), in constant time.
pub fn verify_hash(secret: &Secret, list: &str, action: Action, hash: &str, sig: &str) -> bool {
    secret::verify(secret, Purpose::Moderate, &[list, action.name(), hash], sig)
}

/// Whether `sig` is a signature of `action` on the post minted before the
/// one framing (it covered the Message-ID; see secret's module doc).
pub fn verify_legacy(
    secret: &Secret,
    list: &str,
    action: Action,
    message_id: &str,
    sig: &str,
) -> bool {
    secret::verify_legacy(
        secret,
        Purpose::Moderate,
        &[list, action.name(), message_id],
        sig,
    )
}

/// Whether `sig` is the signature of `action` on the post, in constant time.
pub fn verify(secret: &Secret, list: &str, action: Action, message_id: &str, sig: &str) -> bool {
    verify_hash(secret, list, action, &message_hash(message_id), sig)
        || verify_legacy(secret, list, action, message_id, sig)
}

/// The tag of an action address: `approve-HASH-SIG`.
pub fn tag(secret: &Secret, list: &str, action: Action, message_id: &str) -> String {
    format!(
        "{}-{}-{}",
        action.name(),
        message_hash(message_id),
        signature(secret, list, action, message_id)
    )
}

/// Splits a tag into action, hash and signature (not yet checked).
pub fn parse_tag(tag: &str) -> Option<(Action, String, String)> {
    let tag = tag.to_ascii_lowercase();
    let mut parts = tag.splitn(3, '-');
    let action = Action::parse(parts.next()?)?;
    let hash = parts.next()?.to_string();
    let sig = parts.next()?.to_string();
    (!hash.is_empty() && !sig.is_empty()).then_some((action, hash, sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn tags_round_trip_and_bind_list_action_and_message() {
        let s = secret();
        let t = tag(&s, "dev@l.org", Action::Approve, "abc@x.org");
        let (a, h, sig) = parse_tag(&t).unwrap();
        assert_eq!(a, Action::Approve);
        assert_eq!(h, message_hash("abc@x.org"));
        assert_eq!(h.len(), 8);
        assert!(verify(&s, "dev@l.org", a, "abc@x.org", &sig));
        assert!(verify(&s, "dev@l.org", a, "abc@x.org", &sig.to_uppercase()));
        assert!(!verify(&s, "dev@l.org", Action::Reject, "abc@x.org", &sig));
        assert!(!verify(&s, "ops@l.org", a, "abc@x.org", &sig));
        assert!(!verify(&s, "dev@l.org", a, "abd@x.org", &sig));
        let other = Secret::from_bytes(b"another secret, thirty-two bytes".to_vec());
        assert!(!verify(&other, "dev@l.org", a, "abc@x.org", &sig));
        assert!(!verify(&s, "dev@l.org", a, "abc@x.org", ""));
        assert_eq!(parse_tag(&t.to_uppercase()).unwrap().0, Action::Approve);
        for bad in ["", "approve", "approve-h", "approve--s", "accept-h-s"] {
            assert!(parse_tag(bad).is_none(), "{bad}");
        }
    }
}
