//! Directory records: virtual domains, lists with their settings, and members.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::address::{Address, Suffix};
use crate::clock::days;

/// A virtual domain that lists live in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub name: String,
    /// An opaque domain neither shares its members' bounce state with other
    /// domains nor receives theirs (see docs/bounces.md, the scope matrix).
    #[serde(default)]
    pub opaque: bool,
    #[serde(default)]
    pub created_at: u64,
}

/// What a list does with a second copy of a Message-ID still in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DuplicatePolicy {
    /// Answer 250 and drop the copy (logged and counted).
    #[default]
    Discard,
    /// Answer 550 5.7.0 so the sender learns of it.
    Reject,
}

/// What a list does with a post from an address that is not a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NonmemberAction {
    /// Keep it for the moderators to approve, reject or discard.
    #[default]
    Hold,
    /// Refuse it with a notice to the sender.
    Reject,
    /// Drop it silently.
    Discard,
    /// Distribute it like a member's post.
    Accept,
}

/// What happens to a held post nobody acted on in `max_days_to_hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HoldExpiryAction {
    /// Drop it; the sender and the moderators are told.
    #[default]
    Discard,
    /// Refuse it with the rejection notice; the moderators are told.
    Reject,
}

/// Per-list settings, stored with the list and read on every post, so a change
/// made with `listrelay list set` applies at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListSettings {
    pub description: String,
    pub duplicate_policy: DuplicatePolicy,
    /// Share of each post's members (0–100) that get their own VERP envelope.
    pub verp_percent: u8,
    /// Most recipients in one batched (non-VERP) SMTP transaction.
    pub max_rcpt_per_txn: u32,
    /// Prepended to the Subject, e.g. "[dev] "; empty = off (it breaks DKIM).
    pub subject_prefix: String,
    /// Appended to text bodies; empty = off (it breaks DKIM).
    pub footer: String,
    /// URL for the List-Archive header; empty = no header.
    pub archive_url: String,
    /// Addresses behind `LIST-owner`, told of removals and problems.
    pub owners: Vec<String>,
    /// Addresses that approve held posts.
    pub moderators: Vec<String>,
    /// Bounce score at which a member's delivery is disabled (a hard failure
    /// scores 1, a soft one 0.5, at most once a day).
    pub bounce_score_threshold: f64,
    /// A score whose last bounce is older than this starts again from zero.
    pub bounce_info_stale_after_secs: u64,
    /// Warnings a disabled member gets before removal (0 = remove at once).
    pub bounce_warnings: u32,
    pub bounce_warning_interval_secs: u64,
    /// Tell the owners when a member is removed for bouncing.
    pub bounce_notify_owner_on_removal: bool,
    /// Share (0–1) of one post's recipients whose policy/spam/DMARC bounces
    /// suspend scoring for that post and alert the owners.
    pub bounce_policy_suspend_share: f64,
    /// Posts from non-members: `hold`, `reject`, `discard` or `accept`.
    pub nonmember_action: NonmemberAction,
    /// Posts larger than this many bytes are held (0 = only the site limit).
    pub max_message_size: u64,
    /// Hold every post, members' too.
    pub emergency: bool,
    /// Days a held post waits for a moderator (0 = forever).
    pub max_days_to_hold: u32,
    /// What becomes of a held post after `max_days_to_hold`.
    pub hold_expiry_action: HoldExpiryAction,
    /// Leaving by email needs a confirmation from the address.
    pub confirm_leave: bool,
    /// Tell the owners when someone joins or leaves.
    pub notify_owner_on_join_leave: bool,
    /// Base URL of the one-click unsubscribe listener for this list (empty =
    /// the site's `http.base_url`; both empty = no one-click links).
    pub base_url: String,
}

impl Default for ListSettings {
    fn default() -> Self {
        ListSettings {
            description: String::new(),
            duplicate_policy: DuplicatePolicy::Discard,
            verp_percent: 100,
            max_rcpt_per_txn: 100,
            subject_prefix: String::new(),
            footer: String::new(),
            archive_url: String::new(),
            owners: Vec::new(),
            moderators: Vec::new(),
            bounce_score_threshold: 5.0,
            bounce_info_stale_after_secs: days(7),
            bounce_warnings: 3,
            bounce_warning_interval_secs: days(7),
            bounce_notify_owner_on_removal: true,
            bounce_policy_suspend_share: 0.1,
            nonmember_action: NonmemberAction::Hold,
            max_message_size: 0,
            emergency: false,
            max_days_to_hold: 14,
            hold_expiry_action: HoldExpiryAction::Discard,
            confirm_leave: true,
            notify_owner_on_join_leave: false,
            base_url: String::new(),
        }
    }
}

#[derive(Debug, Error)]
pub enum SettingError {
    #[error("unknown list setting {0:?} (known: {1})")]
    Unknown(String, String),
    #[error("bad value for {key}: {reason}")]
    BadValue { key: String, reason: String },
}

impl ListSettings {
    /// The names of every setting, for help and error messages.
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(ListSettings::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Sets one setting from its text form, checking type and range. Goes through
    /// the serde form so every field is settable without a hand-written table.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let bad = |reason: String| SettingError::BadValue {
            key: key.to_string(),
            reason,
        };
        let serde_json::Value::Object(mut map) =
            serde_json::to_value(&*self).map_err(|e| bad(e.to_string()))?
        else {
            return Err(bad("settings are not an object".into()));
        };
        let old = map
            .get(key)
            .ok_or_else(|| SettingError::Unknown(key.to_string(), Self::keys().join(", ")))?;
        let new = match old {
            serde_json::Value::String(_) => serde_json::Value::String(value.to_string()),
            // Lists of addresses: "a@x.org, b@y.org" (or a JSON array).
            serde_json::Value::Array(_) if !value.trim_start().starts_with('[') => {
                let mut items = Vec::new();
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let a = Address::parse(item).map_err(|e| bad(format!("{item:?}: {e}")))?;
                    items.push(serde_json::Value::String(a.to_string()));
                }
                serde_json::Value::Array(items)
            }
            _ => serde_json::from_str(value).map_err(|e| bad(format!("{value:?}: {e}")))?,
        };
        map.insert(key.to_string(), new);
        let parsed: ListSettings = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| bad(format!("{value:?}: {e}")))?;
        parsed.validate().map_err(bad)?;
        *self = parsed;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.verp_percent > 100 {
            return Err(format!("verp_percent {} is over 100", self.verp_percent));
        }
        if self.max_rcpt_per_txn == 0 {
            return Err("max_rcpt_per_txn must be at least 1".into());
        }
        if self.bounce_score_threshold.is_nan() || self.bounce_score_threshold <= 0.0 {
            return Err("bounce_score_threshold must be greater than 0".into());
        }
        if !(0.0..=1.0).contains(&self.bounce_policy_suspend_share) {
            return Err("bounce_policy_suspend_share must be between 0 and 1".into());
        }
        if !(self.base_url.is_empty()
            || self.base_url.starts_with("https://")
            || self.base_url.starts_with("http://"))
        {
            return Err("base_url must start with https:// (or http://)".into());
        }
        Ok(())
    }
}

/// A mailing list, identified by its posting address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List {
    pub address: Address,
    #[serde(default)]
    pub settings: ListSettings,
    #[serde(default)]
    pub created_at: u64,
}

impl List {
    pub fn new(address: Address) -> Self {
        List {
            address,
            settings: ListSettings::default(),
            created_at: crate::clock::now(),
        }
    }

    /// The store key of the list: its lowercased address.
    pub fn key(&self) -> String {
        self.address.key()
    }

    /// The RFC 2919 list identifier, `local.domain` (without the `<>`).
    pub fn list_id(&self) -> String {
        let label: String = self
            .address
            .local()
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{label}.{}", self.address.domain())
    }

    /// The address of one of the list's handlers, e.g. `dev-bounces@domain`.
    pub fn suffix_address(&self, suffix: Suffix) -> String {
        match suffix {
            Suffix::Post => self.address.to_string(),
            _ => format!(
                "{}-{}@{}",
                self.address.local(),
                suffix.name(),
                self.address.domain()
            ),
        }
    }
}

/// A subscriber of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub address: Address,
    #[serde(default)]
    pub added_at: u64,
    /// Delivery can be disabled (by bounces or by the member) without unsubscribing.
    #[serde(default = "yes")]
    pub delivery_enabled: bool,
    /// The member's posts are held for the moderators.
    #[serde(default)]
    pub moderated: bool,
}

fn yes() -> bool {
    true
}

impl Member {
    pub fn new(address: Address) -> Self {
        Member {
            address,
            added_at: crate::clock::now(),
            delivery_enabled: true,
            moderated: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_set_by_name_with_checks() {
        let mut s = ListSettings::default();
        s.set("verp_percent", "30").unwrap();
        assert_eq!(s.verp_percent, 30);
        s.set("duplicate_policy", "reject").unwrap();
        assert_eq!(s.duplicate_policy, DuplicatePolicy::Reject);
        s.set("subject_prefix", "[dev] ").unwrap();
        s.set("owners", "a@x.org, B@Y.org").unwrap();
        assert_eq!(s.owners, vec!["a@x.org".to_string(), "B@y.org".to_string()]);
        assert!(s.set("moderators", "not-an-address").is_err());
        s.set("moderators", "").unwrap();
        assert!(s.moderators.is_empty());
        assert_eq!(s.subject_prefix, "[dev] ");
        assert!(s.set("verp_percent", "101").is_err());
        assert!(s.set("verp_percent", "-1").is_err());
        assert!(s.set("duplicate_policy", "maybe").is_err());
        assert!(matches!(s.set("nope", "1"), Err(SettingError::Unknown(..))));
        assert_eq!(s.verp_percent, 30, "a refused value changes nothing");
    }
}
