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
    /// ARC-seal the copies of this domain's lists (RFC 8617), so receivers
    /// can see the post's authentication as it arrived. `None`: on when the
    /// domain has a DKIM key (a seal needs one), the recommended set-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arc_seal: Option<bool>,
}

impl Domain {
    /// The domain settings `domain set` knows, for help and errors.
    pub const KEYS: &'static str = "opaque, arc_seal";

    /// Sets one domain setting from its text form. `arc_seal` takes `true`,
    /// `false` or `default` (on when a DKIM key exists).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let bad = |reason: &str| SettingError::BadValue {
            key: key.to_string(),
            reason: format!("{value:?} {reason}"),
        };
        match key {
            "opaque" => self.opaque = value.parse().map_err(|_| bad("is not true or false"))?,
            "arc_seal" => {
                self.arc_seal = match value {
                    "default" => None,
                    v => Some(
                        v.parse()
                            .map_err(|_| bad("is not true, false or default"))?,
                    ),
                }
            }
            _ => return Err(SettingError::Unknown(key.to_string(), Self::KEYS.into())),
        }
        Ok(())
    }

    /// Whether copies are sealed, given whether the domain has a key.
    pub fn seals(&self, has_key: bool) -> bool {
        has_key && self.arc_seal.unwrap_or(true)
    }
}

/// What a list does with a post whose From domain fails DMARC and publishes
/// `p=quarantine` or `p=reject` (a forged From, most likely).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthFailAction {
    /// Keep it for the moderators, with the reason in their notice.
    #[default]
    Hold,
    /// Refuse it; no notice (the From address is forged: it would be backscatter).
    Reject,
    /// Drop it silently.
    Discard,
    /// Let the posting policy decide as if it had passed (not recommended).
    Accept,
}

/// How a copy is changed so that an author's DMARC policy does not make it
/// fail at the members' providers (docs/authentication.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DmarcMitigation {
    /// Send the copy with the author's From (it may be rejected).
    #[default]
    None,
    /// `From: "Author via list" <list@domain>`, the author in Reply-To or Cc.
    MungeFrom,
    /// An outer message from the list with the post attached (message/rfc822).
    Wrap,
}

/// When [`DmarcMitigation`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DmarcMitigateWhen {
    /// To every post.
    Always,
    /// When the From domain publishes `p=quarantine` or `p=reject` (Mailman's rule).
    Policy,
    /// Only when the copy as sent would fail DMARC: the author's aligned
    /// DKIM signature does not survive the list's changes (or there is none)
    /// and the domain's policy is not `none`.
    #[default]
    Breaks,
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
    /// A post whose From domain fails DMARC with `p=quarantine`/`p=reject`:
    /// `hold`, `reject`, `discard` or `accept`. A forged member From must
    /// not get a post through.
    pub auth_fail_action: AuthFailAction,
    /// How copies are changed for DMARC: `none`, `munge_from` or `wrap`.
    pub dmarc_mitigation: DmarcMitigation,
    /// When `dmarc_mitigation` applies: `always`, `policy` or `breaks`.
    pub dmarc_mitigate_when: DmarcMitigateWhen,
    /// Where `munge_from` puts the author: `reply_to` (replies go to the
    /// author) or `cc` (replies go to the list, the author in copy).
    pub munge_author_in: MungeAuthorIn,
    /// Digest issues collect the posts for the members in a digest mode;
    /// off, no post is kept for an issue and none is cut.
    pub digest_enabled: bool,
    /// How often an issue goes out: `daily`, `weekly` or `monthly`
    /// (calendar periods, UTC), once a post waits.
    pub digest_period: DigestPeriod,
    /// An issue goes out early once its waiting posts reach this many KB
    /// (0 = by period only).
    pub digest_size_threshold_kb: u64,
    /// Send an issue even when no post came in the period.
    pub digest_send_empty: bool,
    /// The volume of the issues: goes up with the year (the issue number
    /// starting again at 1), or when the owner sets it.
    pub digest_volume: u32,
    /// The number of the last issue of the volume (0 before the first).
    pub digest_issue: u32,
    /// The text an issue starts with: empty = the built-in one, `none` =
    /// none; placeholders `{list}`, `{name}`, `{volume}`, `{issue}`,
    /// `{date}`, `{posts}`, `{request}`, `{owner}`, `{join}`, `{leave}`,
    /// `{list_id}`, `{archive}`.
    pub digest_header: String,
    /// The text an issue ends with: empty = the built-in one, `none` = none;
    /// the same placeholders.
    pub digest_footer: String,
}

/// How often a list's digest issues go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DigestPeriod {
    /// Once a UTC day has ended.
    #[default]
    Daily,
    /// Once an ISO week (Monday to Sunday) has ended.
    Weekly,
    /// Once a calendar month has ended.
    Monthly,
}

/// The longest digest header or footer (bytes): an issue stays bounded.
pub const MAX_DIGEST_TEMPLATE_BYTES: usize = 16 * 1024;

/// Where a munged copy names the author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MungeAuthorIn {
    /// `Reply-To: author` (added to an existing Reply-To).
    #[default]
    ReplyTo,
    /// `Cc: author`, replies stay on the list.
    Cc,
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
            auth_fail_action: AuthFailAction::Hold,
            dmarc_mitigation: DmarcMitigation::None,
            dmarc_mitigate_when: DmarcMitigateWhen::Breaks,
            munge_author_in: MungeAuthorIn::ReplyTo,
            digest_enabled: false,
            digest_period: DigestPeriod::Daily,
            digest_size_threshold_kb: 30,
            digest_send_empty: false,
            digest_volume: 1,
            digest_issue: 0,
            digest_header: String::new(),
            digest_footer: String::new(),
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
        // These go into every copy's header section: a line break there
        // would add header fields of the owner's choosing.
        for (key, text) in [
            ("subject_prefix", &self.subject_prefix),
            ("archive_url", &self.archive_url),
            ("base_url", &self.base_url),
        ] {
            if text.chars().any(char::is_control) {
                return Err(format!(
                    "{key} must be one line without control characters (it goes into mail headers)"
                ));
            }
        }
        for (key, url) in [
            ("archive_url", &self.archive_url),
            ("base_url", &self.base_url),
        ] {
            if url.contains(|c: char| c.is_whitespace() || c == '<' || c == '>') {
                return Err(format!(
                    "{key} must be a URL without spaces or angle brackets (it is written as <{key}>)"
                ));
            }
        }
        for (key, text) in [
            ("digest_header", &self.digest_header),
            ("digest_footer", &self.digest_footer),
        ] {
            if text.len() > MAX_DIGEST_TEMPLATE_BYTES {
                return Err(format!(
                    "{key} is {} bytes; keep it under {MAX_DIGEST_TEMPLATE_BYTES}",
                    text.len()
                ));
            }
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
    /// Addresses and `^` patterns refused as senders and subscribers (see
    /// [`crate::model::ban`]), in their stored form. Kept with the list
    /// because the policy reads the list on every post anyway, and export,
    /// import and list deletion then carry them with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bans: Vec<String>,
}

impl List {
    pub fn new(address: Address) -> Self {
        List {
            address,
            settings: ListSettings::default(),
            created_at: crate::clock::now(),
            bans: Vec::new(),
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

/// How a member receives the list: the member's own choice, set by mail
/// (`set digest mime`), the CLI, the admin protocol or the REST API. It is
/// apart from [`Member::delivery_enabled`], which the bounce handler turns
/// off: a `nomail` member whose address works again stays `nomail`, and a
/// bouncing digest member gets no digest either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Every post, as it comes.
    #[default]
    Regular,
    /// Nothing (the member stays subscribed and may post).
    Nomail,
    /// Digests as `multipart/digest` (RFC 2046), each post a `message/rfc822`.
    DigestMime,
    /// Digests as plain text (RFC 1153).
    DigestPlain,
}

impl DeliveryMode {
    /// Every mode, in the order help and errors name them.
    pub const ALL: [DeliveryMode; 4] = [
        DeliveryMode::Regular,
        DeliveryMode::Nomail,
        DeliveryMode::DigestMime,
        DeliveryMode::DigestPlain,
    ];

    /// The mode's name as stored and typed (`digest_mime`).
    pub fn name(self) -> &'static str {
        match self {
            DeliveryMode::Regular => "regular",
            DeliveryMode::Nomail => "nomail",
            DeliveryMode::DigestMime => "digest_mime",
            DeliveryMode::DigestPlain => "digest_plain",
        }
    }

    /// Whether the member gets digests (of either form) instead of posts.
    pub fn is_digest(self) -> bool {
        matches!(self, DeliveryMode::DigestMime | DeliveryMode::DigestPlain)
    }

    /// The mode as a person reads it in a confirmation ("digests, MIME").
    pub fn describe(self) -> &'static str {
        match self {
            DeliveryMode::Regular => "every post as it comes (regular)",
            DeliveryMode::Nomail => "no mail (you stay subscribed)",
            DeliveryMode::DigestMime => "digests, MIME (each post attached)",
            DeliveryMode::DigestPlain => "digests, plain text",
        }
    }
}

impl std::fmt::Display for DeliveryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DeliveryMode {
    type Err = SettingError;

    /// Takes the stored names, case-blind, with `-` for `_` (`digest-mime`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| SettingError::BadValue {
                key: "delivery_mode".into(),
                reason: format!(
                    "{s:?} is not a delivery mode (known: regular, nomail, digest_mime, digest_plain)"
                ),
            })
    }
}

/// A subscriber of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub address: Address,
    #[serde(default)]
    pub added_at: u64,
    /// Delivery disabled by bounces (the bounce handler, `bounce reset`, or
    /// an operator) without unsubscribing; the member's own choice of no
    /// mail is [`Member::delivery_mode`] `nomail`, kept apart so that
    /// re-enabling a bouncing address never overrides it.
    #[serde(default = "yes")]
    pub delivery_enabled: bool,
    /// The member's posts are held for the moderators.
    #[serde(default)]
    pub moderated: bool,
    /// What the member receives: posts, digests or nothing. Records written
    /// before modes existed read as `regular`.
    #[serde(default)]
    pub delivery_mode: DeliveryMode,
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
            delivery_mode: DeliveryMode::Regular,
        }
    }

    /// Whether the member receives what goes to `audience` now: the mode
    /// matches and bounces have not disabled delivery.
    pub fn receives(&self, audience: DeliveryMode) -> bool {
        self.delivery_enabled && self.delivery_mode == audience
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
        // Fuzzing (target `footer`): a prefix with a line break added
        // header fields to every copy.
        assert!(s.set("subject_prefix", "[x]\r\nList-Id: <y>").is_err());
        assert!(s.set("archive_url", "https://a.example/\nX: y").is_err());
        assert!(s.set("archive_url", "https://a.example/> <b").is_err());
        assert_eq!(s.subject_prefix, "[dev] ");
        assert!(s.set("verp_percent", "-1").is_err());
        assert!(s.set("duplicate_policy", "maybe").is_err());
        assert!(matches!(s.set("nope", "1"), Err(SettingError::Unknown(..))));
        assert_eq!(s.verp_percent, 30, "a refused value changes nothing");
        s.set("auth_fail_action", "reject").unwrap();
        s.set("dmarc_mitigation", "munge_from").unwrap();
        s.set("dmarc_mitigate_when", "policy").unwrap();
        s.set("munge_author_in", "cc").unwrap();
        assert_eq!(
            (
                s.auth_fail_action,
                s.dmarc_mitigation,
                s.dmarc_mitigate_when,
                s.munge_author_in
            ),
            (
                AuthFailAction::Reject,
                DmarcMitigation::MungeFrom,
                DmarcMitigateWhen::Policy,
                MungeAuthorIn::Cc
            )
        );
        assert!(s.set("dmarc_mitigation", "rewrite").is_err());
        assert_eq!(
            ListSettings::default().dmarc_mitigate_when,
            DmarcMitigateWhen::Breaks
        );
    }

    #[test]
    fn delivery_modes_parse_and_old_records_are_regular() {
        let table: &[(&str, Option<DeliveryMode>)] = &[
            ("regular", Some(DeliveryMode::Regular)),
            ("nomail", Some(DeliveryMode::Nomail)),
            ("digest_mime", Some(DeliveryMode::DigestMime)),
            ("Digest-Plain", Some(DeliveryMode::DigestPlain)),
            (" DIGEST_MIME ", Some(DeliveryMode::DigestMime)),
            ("digest", None),
            ("", None),
            ("no mail", None),
        ];
        for (text, want) in table {
            assert_eq!(text.parse::<DeliveryMode>().ok(), *want, "{text:?}");
        }
        for m in DeliveryMode::ALL {
            assert_eq!(m.name().parse::<DeliveryMode>().unwrap(), m);
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        let old: Member =
            serde_json::from_str(r#"{"address":"a@x.org","delivery_enabled":false}"#).unwrap();
        assert_eq!(old.delivery_mode, DeliveryMode::Regular);
        assert!(!old.receives(DeliveryMode::Regular), "bounce-disabled");
        let mut m = Member::new(Address::parse("a@x.org").unwrap());
        assert!(m.receives(DeliveryMode::Regular));
        m.delivery_mode = DeliveryMode::Nomail;
        assert!(!m.receives(DeliveryMode::Regular) && m.delivery_enabled);
        assert!(DeliveryMode::DigestPlain.is_digest() && !DeliveryMode::Nomail.is_digest());
    }

    #[test]
    fn domain_arc_seal_defaults_to_on_with_a_key() {
        let mut d: Domain = serde_json::from_str(r#"{"name":"x.org"}"#).unwrap();
        assert!(d.seals(true) && !d.seals(false));
        d.set("arc_seal", "false").unwrap();
        assert!(!d.seals(true));
        d.set("arc_seal", "default").unwrap();
        assert_eq!(d.arc_seal, None);
        assert!(d.set("arc_seal", "maybe").is_err());
        assert!(matches!(
            d.set("colour", "1"),
            Err(SettingError::Unknown(..))
        ));
    }
}
