//! Result types of the bounce parser.

use serde::Serialize;

/// What kind of message was parsed.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// At least one recipient failed permanently or was given up on.
    Bounce,
    /// Delivery is delayed (a warning), no recipient has failed yet.
    Delay,
    /// An automatic reply (vacation, out of office): not a bounce.
    AutoReply,
    /// An ARF (RFC 5965) feedback / abuse report.
    Feedback,
    /// A success DSN (delivered, relayed, expanded).
    DeliveryNotice,
    /// Anything else.
    NotBounce,
}

/// Why a recipient failed.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    UserUnknown,
    HostUnknown,
    MailboxFull,
    MessageTooLarge,
    /// Policy, spam, DMARC, blocking or content rejection.
    Policy,
    Transient,
    Expired,
    Feedback,
    Other,
}

impl Reason {
    /// Whether this failure should count against the list member's address.
    /// Policy rejections and feedback reports say nothing about the address.
    pub fn counts_against_member(&self) -> bool {
        !matches!(self, Reason::Policy | Reason::Feedback)
    }
}

/// One failed (or delayed) recipient.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecipientDetail {
    pub recipient: String,
    pub original_recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    pub reason: Reason,
    pub hard: bool,
}

/// What `parse` found in a message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BounceReport {
    pub kind: Kind,
    /// Every recipient reported failed or delayed, in order, without duplicates.
    pub recipients: Vec<String>,
    /// Hard verdict of the first recipient; `None` without recipients, for
    /// feedback reports, or when recipients disagree.
    pub hard: Option<bool>,
    /// D.S.N. of the first recipient.
    pub status: Option<String>,
    /// Reason of the first recipient.
    pub reason: Option<Reason>,
    pub details: Vec<RecipientDetail>,
}

impl BounceReport {
    /// A report for a message that is not a bounce of any kind.
    pub fn not_bounce(kind: Kind) -> Self {
        BounceReport {
            kind,
            recipients: Vec::new(),
            hard: None,
            status: None,
            reason: None,
            details: Vec::new(),
        }
    }

    /// Builds a report from per-recipient details (deduplicated by recipient).
    pub fn from_details(kind: Kind, details: Vec<RecipientDetail>) -> Self {
        let mut seen = Vec::new();
        let mut unique = std::collections::HashSet::new();
        let mut kept = Vec::new();
        for d in details {
            if d.recipient.is_empty() || !unique.insert(d.recipient.clone()) {
                continue;
            }
            seen.push(d.recipient.clone());
            kept.push(d);
        }
        if kept.is_empty() {
            return Self::not_bounce(kind);
        }
        let first = &kept[0];
        let hard = if kind == Kind::Feedback || kept.iter().any(|d| d.hard != first.hard) {
            None
        } else {
            Some(first.hard)
        };
        BounceReport {
            kind,
            recipients: seen,
            hard,
            status: first.status.clone(),
            reason: Some(first.reason),
            details: kept,
        }
    }
}
