//! The records the store keeps, in the vocabulary the store and the domain
//! modules share: the store imports nothing above this model, and bounce,
//! moderation and subscription build their rules on these records.
//!
//! * [`directory`]: domains, lists with their settings, members and their
//!   delivery modes;
//! * [`ban`]: a list's bans (addresses and patterns);
//! * [`bounce`]: bounce states, per-post policy bounces, the bounce scope;
//! * [`moderation`]: held posts and pending confirmations;
//! * [`access`]: API tokens and the audit log.
//!
//! The records hold data and trivial constructors; the rules that change them
//! live with their domain module (e.g. `bounce::score`).

pub mod access;
pub mod ban;
pub mod bounce;
pub mod directory;
pub mod moderation;

pub use access::{ApiToken, AuditEntry, AuditQuery, Caller, Role};
pub use bounce::{BounceScope, BounceState, PostBounces};
pub use directory::{
    DeliveryMode, Domain, DuplicatePolicy, HoldExpiryAction, List, ListSettings, Member,
    NonmemberAction, SettingError,
};
pub use moderation::{message_hash, HeldPost, Pending, PendingAction};
