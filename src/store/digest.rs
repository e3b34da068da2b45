//! Digest records: the posts waiting for an issue (entries, with their own
//! copy of the bytes, since the spool file goes when the regular fan-out
//! finishes) and the issues cut from them. The entry is written by the
//! transaction that seals the post's job (`Claims::seal_job`, or
//! `seal_digest_only` for a post without regular recipients), the cut is one
//! transaction, and an issue's entries go once the issue is queued: every
//! post is in exactly one issue. The lifecycle is in the `digest` module.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Result;

/// A post entered for a list's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The list's key.
    pub list: String,
    /// The post's `seq` in the list: issues take entries in this order.
    pub seq: u64,
    /// The post's queue id (kept for logs and the once-only check).
    pub post: String,
    /// When the post was received: its Date in an issue when it has none,
    /// and the scheduler's "oldest waiting post".
    pub received_at: u64,
    /// Its size in bytes: issues are filled by size.
    pub size: u64,
    /// The issue it was cut into, `None` while it waits.
    #[serde(default)]
    pub issue: Option<String>,
    /// The post as received (stored beside the record).
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// What waits for a list's next issue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestPending {
    pub posts: u64,
    pub bytes: u64,
    /// When the oldest waiting post was received.
    pub oldest: Option<u64>,
}

/// Where an issue is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueState {
    /// Its entries are assigned; its forms may not be in the queue yet.
    Cut,
    /// Both forms are in the queue; its entries are gone.
    Queued,
}

/// An issue as its cut recorded it: everything its bytes depend on besides
/// its posts, so composing it again gives the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestIssue {
    /// Time-ordered unique id (`new_id`): numbers may be set back by the owner.
    pub id: String,
    pub list: String,
    pub volume: u32,
    pub number: u32,
    /// When it was cut (seconds): its Date and part of its Message-ID.
    pub cut_at: u64,
    /// How many posts it holds.
    pub posts: u64,
    /// The header and footer texts at the cut (templates, unfilled).
    pub header: String,
    pub footer: String,
    pub state: IssueState,
}

/// What a cut asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCut {
    /// The list's `digest_volume` and `digest_issue` the caller read: the
    /// cut is refused (`Exists`) if they changed meanwhile, so two cutters
    /// cannot number two issues alike.
    pub expect: (u32, u32),
    /// The new issue's numbers, written back to the list's settings.
    pub volume: u32,
    pub number: u32,
    pub cut_at: u64,
    pub header: String,
    pub footer: String,
    /// The issue takes the oldest waiting entries while they stay within
    /// these (and at least one).
    pub max_posts: u64,
    pub max_bytes: u64,
    /// Cut an issue even with no entry waiting.
    pub allow_empty: bool,
}

impl DigestCut {
    /// The issue this cut makes of the list's `n` oldest waiting posts
    /// (both backends record it the same way).
    pub fn issue(&self, list: &str, n: usize) -> DigestIssue {
        DigestIssue {
            id: crate::store::new_id(),
            list: list.to_string(),
            volume: self.volume,
            number: self.number,
            cut_at: self.cut_at,
            posts: n as u64,
            header: self.header.clone(),
            footer: self.footer.clone(),
            state: IssueState::Cut,
        }
    }
}

/// How many of the waiting entries (sizes, oldest first) an issue takes:
/// while within `max_posts` and `max_bytes`, and at least one. The one rule
/// for both stores (and `digest::take`).
pub fn issue_take(sizes: impl IntoIterator<Item = u64>, max_posts: u64, max_bytes: u64) -> usize {
    let mut total = 0u64;
    let mut n = 0usize;
    for size in sizes {
        if n as u64 >= max_posts {
            break;
        }
        total = total.saturating_add(size);
        if n > 0 && total > max_bytes {
            break;
        }
        n += 1;
    }
    n
}

/// The digest role of the store.
#[async_trait]
pub trait DigestRecords: Send + Sync {
    /// What waits for the list's next issue.
    async fn digest_pending(&self, list: &str) -> Result<DigestPending>;
    /// Cuts the list's next issue in one transaction (see [`DigestCut`]);
    /// `None` when nothing waits and no empty issue is allowed.
    async fn cut_issue(&self, list: &str, cut: &DigestCut) -> Result<Option<DigestIssue>>;
    /// Issues, of one list or all, in one state or all, oldest first.
    async fn digest_issues(
        &self,
        list: Option<&str>,
        state: Option<IssueState>,
    ) -> Result<Vec<DigestIssue>>;
    /// The list's last issue cut.
    async fn last_issue(&self, list: &str) -> Result<Option<DigestIssue>> {
        Ok(self.digest_issues(Some(list), None).await?.pop())
    }
    /// An issue's entries with their bytes, in `seq` order.
    async fn issue_entries(&self, issue: &str) -> Result<Vec<DigestEntry>>;
    /// Marks the issue queued and drops its entries; `false` if it was not cut.
    async fn mark_issue_queued(&self, issue: &str) -> Result<bool>;
    /// Every entry (export), bodies included.
    async fn digest_entries(&self) -> Result<Vec<DigestEntry>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_take_by_size_and_count_and_at_least_one() {
        assert_eq!(issue_take([], 10, 10), 0);
        assert_eq!(issue_take([50, 1], 10, 10), 1);
        assert_eq!(issue_take([4, 4, 4], 10, 10), 2);
        assert_eq!(issue_take([1; 20], 5, 100), 5);
    }
}
