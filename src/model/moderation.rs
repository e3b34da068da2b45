//! Moderation records: held posts (indexed by their list and the short hash
//! of their Message-ID) and pending confirmations of joins and leaves. The
//! rules that create and act on them live in `moderation` and `subscription`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the store keeps about a held post (the post itself stays in the
/// spool under `id`, in state `Held`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldPost {
    /// The stored message.
    pub id: String,
    pub list: String,
    pub message_id: String,
    /// [`message_hash`] of the Message-ID.
    pub hash: String,
    /// Why it was held (`nonmember`, `moderated`, `emergency`, `size`).
    pub reason: String,
    /// The sender (From header, else envelope sender); may be empty.
    pub sender: String,
    /// Whether the sender may be written to (not an auto-generated message).
    pub notify_sender: bool,
    pub subject: String,
    pub size: u64,
    pub held_at: u64,
}

/// The short hash of a Message-ID (without `<>`) used in addresses.
pub fn message_hash(message_id: &str) -> String {
    crate::secret::base32(&Sha256::digest(message_id.as_bytes())[..5])
}

/// What a confirmation token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingAction {
    Join,
    Leave,
    /// A login link to the web pages, for an owner or moderator; single use.
    Login,
    /// A member's change of delivery mode asked by mail (`set digest mime`);
    /// the mode is in [`Pending::detail`].
    SetDelivery,
}

/// A confirmation waiting for its reply, stored under the token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub list: String,
    pub address: String,
    pub action: PendingAction,
    pub token_hash: String,
    pub created_at: u64,
    pub expires_at: u64,
    /// What the action needs beyond the list and the address (the delivery
    /// mode of a `SetDelivery`); empty for the others.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}
