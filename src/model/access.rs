//! Access records: the REST API's bearer tokens (kept hashed) and the audit
//! log of administrative actions. The rules that mint and check tokens live
//! in `web`; the store keeps these records as they are.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do. A site token may do everything; an owner or a
/// moderator only acts on the lists the token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The whole site: domains, lists, the queue, tokens.
    Site,
    /// Settings, members, bounces and held posts of its lists.
    Owner,
    /// Held posts of its lists (and reading the list itself).
    Moderator,
}

impl Role {
    /// The role's name as the CLI and the API spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Site => "site",
            Role::Owner => "owner",
            Role::Moderator => "moderator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "site" => Ok(Role::Site),
            "owner" => Ok(Role::Owner),
            "moderator" => Ok(Role::Moderator),
            _ => Err(format!("{s:?} is not a role: use site, owner or moderator")),
        }
    }
}

/// A bearer token as the store keeps it: never the token itself, only its
/// hash, so a copy of the store grants nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// The public part of the token (`lrt_ID_…`): how it is listed, revoked
    /// and named in the audit log without revealing it.
    pub id: String,
    /// SHA-256 of the whole token, hex: compared in constant time with the
    /// hash of what a caller presents (the token has 256 random bits, so a
    /// plain hash cannot be inverted).
    pub hash: String,
    /// What it may do.
    pub role: Role,
    /// The list keys an owner or moderator token acts on (empty for site).
    pub lists: Vec<String>,
    /// A note for whoever reads `token list` (who it was made for).
    #[serde(default)]
    pub description: String,
    /// When it was made, seconds since the epoch.
    pub created_at: u64,
    /// After this it is refused (seconds since the epoch); `None`: never.
    pub expires_at: Option<u64>,
    /// Set by `token revoke`: refused from then on, kept for the record.
    pub revoked_at: Option<u64>,
}

impl ApiToken {
    /// Whether the token may be used at `now`.
    pub fn usable(&self, now: u64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// SHA-256 of a presented token, hex: what [`ApiToken::hash`] holds.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Who acted and through which door, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// `token:ID`, `cli:UID` or the e-mail address of a moderator.
    pub actor: String,
    /// `http:PEER`, `socket`, `direct` (the CLI on the store) or `mail`.
    pub origin: String,
}

impl Caller {
    /// The CLI run by this process's user on the store it opened itself.
    pub fn local() -> Caller {
        // SAFETY: getuid(2) cannot fail and touches no memory.
        let uid = unsafe { libc::getuid() };
        Caller::cli(uid, "direct")
    }

    /// The CLI run by `uid`, reaching the store through `origin`.
    pub fn cli(uid: u32, origin: &str) -> Caller {
        Caller {
            actor: format!("cli:{uid}"),
            origin: origin.to_string(),
        }
    }
}

/// One administrative action, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Time-ordered unique id: entries sort by time, and a page of the log
    /// continues after the last id it showed.
    pub id: String,
    /// When, seconds since the epoch.
    pub at: u64,
    /// Who (see [`Caller::actor`]).
    pub actor: String,
    /// From where (see [`Caller::origin`]).
    pub origin: String,
    /// What: the request's operation (`list_set`, `held_act`…).
    pub action: String,
    /// On what: the domain, list, member, post or token acted on, with the
    /// request's arguments where they say what changed.
    pub target: String,
    /// The list key the action concerns, for `audit --list`; `None` for
    /// site-wide actions.
    pub list: Option<String>,
    /// `ok`, or the refusal or error the action ended in.
    pub outcome: String,
}

impl AuditEntry {
    /// An entry for an action done now.
    pub fn new(
        id: String,
        at: u64,
        caller: &Caller,
        action: &str,
        target: String,
        list: Option<String>,
        outcome: String,
    ) -> AuditEntry {
        AuditEntry {
            id,
            at,
            actor: caller.actor.clone(),
            origin: caller.origin.clone(),
            action: action.to_string(),
            target,
            list,
            outcome,
        }
    }
}

/// Which part of the audit log to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only entries about this list key.
    pub list: Option<String>,
    /// Only entries at or after this time (seconds since the epoch).
    pub since: Option<u64>,
    /// Continue after this entry id (the previous page's last).
    pub after: Option<String>,
    /// At most this many entries.
    pub limit: usize,
}

impl AuditQuery {
    /// Whether an entry is one the query asks for (apart from paging).
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.since.is_none_or(|s| e.at >= s)
            && self
                .list
                .as_ref()
                .is_none_or(|l| e.list.as_deref() == Some(l.as_str()))
    }

    /// The id to start reading after: the later of `after` and the first id
    /// `since` allows (ids begin with the time in milliseconds, hex).
    pub fn start_after(&self) -> Option<String> {
        let since = self
            .since
            .map(|s| format!("{:012x}", s.saturating_mul(1000)));
        match (&self.after, since) {
            (Some(a), Some(s)) => Some(if *a > s { a.clone() } else { s }),
            (Some(a), None) => Some(a.clone()),
            (None, s) => s,
        }
    }
}
