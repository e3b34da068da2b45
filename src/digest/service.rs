//! The digest lifecycle on the store: cut an issue (one transaction), compose
//! both forms, accept them into the queue as posts for the digest members,
//! mark the issue queued. A crash anywhere repeats the steps after the last
//! one recorded: the cut is recorded once; an issue left `cut` is composed
//! again, identically, and the queue's Message-ID window stores it once.

use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::schedule::{self, Calendar, Due};
use super::{compose, Form, Issue, Post, DEFAULT_FOOTER, DEFAULT_HEADER, MAX_POSTS, TAKE_BYTES};
use crate::address::Suffix;
use crate::clock::Clock;
use crate::model::directory::{DeliveryMode, DigestPeriod};
use crate::model::List;
use crate::store::{
    AcceptOutcome, DedupKey, DigestCut, DigestIssue, IssueState, MessageMeta, MessageState,
    NewMessage, PolicyMark, Store, StoreError,
};

/// What one issue became: `digest send` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sent {
    /// The list's key.
    pub list: String,
    pub volume: u32,
    pub number: u32,
    /// Posts in the issue.
    pub posts: u64,
    /// Digest members of each form when it was queued (MIME, plain).
    pub recipients_mime: u64,
    pub recipients_plain: u64,
}

/// Cuts, composes and queues issues.
#[derive(Clone)]
pub struct Digester {
    store: Arc<dyn Store>,
    /// Wakes the planner once an issue is queued (absent in the CLI, where
    /// the server's planner finds it at its next poll or start).
    posts: Option<Arc<Notify>>,
    clock: Clock,
}

/// In tests only: `LISTRELAY_TEST_CRASH_AT=POINT` makes the process SIGKILL
/// itself at that point of an issue's life, so a test can prove a crash
/// there loses and repeats nothing. Never set in production.
fn crash_point(point: &str) {
    if std::env::var("LISTRELAY_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        warn!(point, "LISTRELAY_TEST_CRASH_AT: killing this process");
        // SAFETY: sending a signal to this very process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

fn calendar(p: DigestPeriod) -> Calendar {
    match p {
        DigestPeriod::Daily => Calendar::Day,
        DigestPeriod::Weekly => Calendar::Week,
        DigestPeriod::Monthly => Calendar::Month,
    }
}

/// The header (footer) template of a list's issues: its setting, the
/// built-in text when empty, none for `none`.
fn template(setting: &str, default: &str) -> String {
    match setting.trim() {
        "" => default.to_string(),
        "none" => String::new(),
        _ => setting.to_string(),
    }
}

impl Digester {
    pub fn new(store: Arc<dyn Store>, posts: Option<Arc<Notify>>, clock: Clock) -> Self {
        Digester {
            store,
            posts,
            clock,
        }
    }

    /// `digest send`: queues an issue left cut, then cuts and queues the
    /// list's pending posts now. `None` when nothing was pending.
    pub async fn send_now(&self, list: &List) -> Result<Option<Sent>, StoreError> {
        self.finish_cut(Some(&list.key())).await?;
        self.cut_and_queue(list, true).await
    }

    /// One pass of the scheduler: every issue left cut is queued, then each
    /// list with digests on gets an issue if one is due. Returns how many
    /// issues were queued.
    pub async fn run_due(&self) -> Result<usize, StoreError> {
        let mut n = self.finish_cut(None).await?;
        for list in self.store.lists(None).await? {
            if !list.settings.digest_enabled {
                continue;
            }
            let s = &list.settings;
            let pending = self.store.digest_pending(&list.key()).await?;
            let last = self.store.last_issue(&list.key()).await?;
            let now = self.clock.now();
            let due = schedule::due(
                calendar(s.digest_period),
                schedule::Pending {
                    posts: pending.posts,
                    bytes: pending.bytes,
                    oldest: pending.oldest,
                },
                s.digest_size_threshold_kb.saturating_mul(1024),
                s.digest_send_empty,
                last.as_ref().map(|i| i.cut_at),
                list.created_at,
                now,
            );
            let Some(why) = due else { continue };
            info!(list = %list.key(), reason = ?why, "a digest issue is due");
            if self
                .cut_and_queue(&list, why == Due::Period)
                .await?
                .is_some()
            {
                n += 1;
            }
        }
        metrics::gauge!("listrelay_digest_entries_pending").set(self.pending_total().await? as f64);
        Ok(n)
    }

    async fn pending_total(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for list in self.store.lists(None).await? {
            if list.settings.digest_enabled {
                n += self.store.digest_pending(&list.key()).await?.posts;
            }
        }
        Ok(n)
    }

    /// Cuts the list's next issue and queues it. An empty issue only with
    /// `digest_send_empty` when `empty_ok` (a period ended).
    async fn cut_and_queue(&self, list: &List, empty_ok: bool) -> Result<Option<Sent>, StoreError> {
        let s = &list.settings;
        let now = self.clock.now();
        let last = self.store.last_issue(&list.key()).await?;
        let (volume, number) = schedule::next_number(
            s.digest_volume,
            s.digest_issue,
            last.as_ref().map(|i| i.cut_at),
            now,
        );
        let cut = DigestCut {
            expect: (s.digest_volume, s.digest_issue),
            volume,
            number,
            cut_at: now,
            header: template(&s.digest_header, DEFAULT_HEADER),
            footer: template(&s.digest_footer, DEFAULT_FOOTER),
            max_posts: MAX_POSTS as u64,
            max_bytes: TAKE_BYTES,
            allow_empty: empty_ok && s.digest_send_empty,
        };
        let Some(issue) = self.store.cut_issue(&list.key(), &cut).await? else {
            return Ok(None);
        };
        metrics::counter!("listrelay_digest_issues_cut_total").increment(1);
        info!(list = %list.key(), volume, number, posts = issue.posts, "cut a digest issue");
        crash_point("digest-after-cut");
        self.queue(list, &issue).await.map(Some)
    }

    /// Queues every issue left cut (by a crash, or a failed accept).
    async fn finish_cut(&self, list: Option<&str>) -> Result<usize, StoreError> {
        let mut n = 0;
        for issue in self
            .store
            .digest_issues(list, Some(IssueState::Cut))
            .await?
        {
            let Some(l) = self.store.list(&issue.list).await? else {
                continue;
            };
            warn!(list = %issue.list, volume = issue.volume, number = issue.number,
                  "queueing a digest issue a crash left cut");
            self.queue(&l, &issue).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Composes both forms, accepts them in one batch, marks the issue
    /// queued (which drops its entries).
    async fn queue(&self, list: &List, issue: &DigestIssue) -> Result<Sent, StoreError> {
        let entries = self.store.issue_entries(&issue.id).await?;
        let posts: Vec<Post<'_>> = entries
            .iter()
            .map(|e| Post {
                raw: &e.body,
                received_at: e.received_at,
            })
            .collect();
        let spec = Issue {
            list,
            volume: issue.volume,
            number: issue.number,
            cut_at: issue.cut_at,
            header: &issue.header,
            footer: &issue.footer,
        };
        let now = self.clock.now();
        let mut batch = Vec::with_capacity(2);
        for form in Form::ALL {
            let c = compose(&spec, form, &posts);
            if c.stubbed > 0 {
                warn!(list = %list.key(), posts = c.stubbed, "posts too large for the digest issue were named, not included");
            }
            batch.push(new_issue_message(list, form, c.message_id, c.bytes, now));
        }
        let outcomes = self.store.accept(batch).await?;
        for o in &outcomes {
            // A window hit is this very issue accepted before a crash.
            if let AcceptOutcome::Duplicate { existing } = o {
                warn!(list = %list.key(), %existing, "the issue was queued before (a different composition); not again");
            }
        }
        crash_point("digest-after-accept");
        self.store.mark_issue_queued(&issue.id).await?;
        metrics::counter!("listrelay_digest_issues_sent_total").increment(1);
        if let Some(p) = &self.posts {
            p.notify_one();
        }
        let count = |mode| async move {
            self.store
                .audience_addresses(&list.key(), mode, now)
                .await
                .map(|a| a.len() as u64)
        };
        Ok(Sent {
            list: list.key(),
            volume: issue.volume,
            number: issue.number,
            posts: issue.posts,
            recipients_mime: count(DeliveryMode::DigestMime).await?,
            recipients_plain: count(DeliveryMode::DigestPlain).await?,
        })
    }
}

/// The queue record of one form of an issue: a post of the list for the
/// members of that form, past the posting policy, with its own window key.
fn new_issue_message(
    list: &List,
    form: Form,
    message_id: String,
    body: Vec<u8>,
    now: u64,
) -> NewMessage {
    let audience = match form {
        Form::Mime => DeliveryMode::DigestMime,
        Form::Plain => DeliveryMode::DigestPlain,
    };
    NewMessage {
        meta: MessageMeta {
            id: crate::store::new_id(),
            list: list.key(),
            suffix: Suffix::Post,
            tag: None,
            mail_from: list.suffix_address(Suffix::Bounces),
            rcpt: list.address.to_string(),
            received_at: now,
            message_id: Some(message_id.clone()),
            dedup: Some(DedupKey {
                message_id,
                content_hash: hex::encode(Sha256::digest(&body)),
            }),
            size: body.len() as u64,
            state: MessageState::Queued,
            policy: Some(PolicyMark::Accepted),
            client: None,
            auth: None,
            audience,
        },
        body,
    }
}
