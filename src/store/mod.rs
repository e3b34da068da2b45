//! Durable state behind one trait: domains, lists, members, accepted messages and
//! the Message-ID window. The store is the single owner of this state; nothing
//! else keeps a copy. `sled` is the embedded implementation (one host);
//! `postgres` is shared by several hosts. [`open`] picks one from the
//! configuration.

mod jobs;
pub mod postgres;
pub mod rules;
mod sled;
mod spool;
pub mod transfer;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::address::Suffix;
use crate::model::{
    ApiToken, AuditEntry, AuditQuery, BounceState, DeliveryMode, Domain, HeldPost, List, Member,
    Pending, PostBounces,
};

pub use self::postgres::PostgresStore;
pub use self::sled::SledStore;
pub use jobs::{ChunkState, Claim, Completion, DeliveryFailure, Job, RetryItem};
pub use transfer::Record;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("storage error: {0}")]
    Backend(String),
    #[error("spool I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the store is shutting down")]
    Closed,
}

impl StoreError {
    /// Whether the error is a lack of space (the sender should retry later).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            StoreError::Backend(msg) => msg.contains("No space left"),
            _ => false,
        }
    }
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Backend(format!("corrupt record: {e}"))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What identifies a post in its list's duplicate window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupKey {
    /// The Message-ID (without `<>`), or `sha256:HASH` for a post that had none.
    pub message_id: String,
    /// Hash of the message as received: the same bytes again are a re-delivery by
    /// the MTA (its 250 was lost), not a new post.
    pub content_hash: String,
}

/// A message intake wants stored, one per accepted recipient.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewMessage {
    pub meta: MessageMeta,
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// What the store keeps about a stored message (the body lives beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// Time-ordered unique id (see [`new_id`]).
    pub id: String,
    /// Key of the list the recipient named.
    pub list: String,
    /// Which of the list's addresses it was sent to.
    pub suffix: Suffix,
    /// The `+TAG` of the recipient, if any (VERP tag, token…).
    pub tag: Option<String>,
    /// Envelope sender (empty for bounces).
    pub mail_from: String,
    /// The recipient as the MTA gave it.
    pub rcpt: String,
    pub received_at: u64,
    /// The post's Message-ID, as received or as inserted.
    pub message_id: Option<String>,
    /// Set for posts: the entry of the list's Message-ID window it holds.
    pub dedup: Option<DedupKey>,
    pub size: u64,
    #[serde(default)]
    pub state: MessageState,
    /// Set once the list's posting policy let the post through (or a
    /// moderator approved it), so it is never applied twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyMark>,
    /// The SMTP client as the MTA reported it (XFORWARD): SPF of the sender
    /// needs its address and HELO, and the evaluation may run after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
    /// The sender evaluation (`auth::Evaluation` as JSON), kept so that it
    /// is made once per post, shown to moderators and operators, and read
    /// again for the ARC seal. Opaque here: the store sits below `auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<serde_json::Value>,
}

/// What XFORWARD told about the SMTP client that sent a message to the MTA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The client's host name as the MTA resolved it (`NAME`), empty if unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The client's IP address (`ADDR`), empty if unknown: SPF needs it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// The name the client gave in HELO/EHLO (`HELO`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub helo: String,
}

/// Why a post passed the posting policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMark {
    /// The policy accepted it.
    Accepted,
    /// A moderator approved it after it was held.
    Approved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Stored and waiting for its handler.
    #[default]
    Queued,
    /// A post held for the moderators (see `moderation`).
    Held,
    /// Handled; the Message-ID stays in the window until the grace passes.
    Done,
}

/// The store's answer for one message of an [`Queue::accept`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Durably stored (synced to disk).
    Accepted,
    /// The same bytes with the same Message-ID are already stored: the MTA is
    /// re-delivering a transaction whose reply it lost. Nothing new was stored.
    Redelivery { existing: String },
    /// A different message with this Message-ID is in the window. Nothing stored.
    Duplicate { existing: String },
}

/// An entry of a list's Message-ID window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowEntry {
    pub message: String,
    pub content_hash: String,
    /// Unset while the post is queued; set when it is handed back to the MTA.
    pub expires_at: Option<u64>,
}

impl WindowEntry {
    pub fn live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// A new time-ordered id: milliseconds since the epoch and 64 random bits, in hex,
/// so that ids sort by arrival and never collide across hosts.
pub fn new_id() -> String {
    let ms = crate::clock::now_ms();
    format!("{ms:012x}{:016x}", rand::random::<u64>())
}

/// A page of [`Directory::delivery_page`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryPage {
    /// The page's members who get the post, in planning order.
    pub addresses: Vec<String>,
    /// The member key to read the next page after; `None` at the end of the
    /// list. Also set when every member of a page was filtered out, so a
    /// page's work is bounded by `limit` whatever the filter drops.
    pub next: Option<String>,
}

/// The directory: domains, lists and their members (including a member's
/// delivery and moderation flags).
#[async_trait]
pub trait Directory: Send + Sync {
    async fn create_domain(&self, domain: &Domain) -> Result<()>;
    async fn domain(&self, name: &str) -> Result<Option<Domain>>;
    async fn domains(&self) -> Result<Vec<Domain>>;
    async fn update_domain(&self, domain: &Domain) -> Result<()>;
    /// Fails while the domain still has lists.
    async fn delete_domain(&self, name: &str) -> Result<()>;
    async fn create_list(&self, list: &List) -> Result<()>;
    async fn list(&self, key: &str) -> Result<Option<List>>;
    /// Every list, or those of one domain.
    async fn lists(&self, domain: Option<&str>) -> Result<Vec<List>>;
    async fn update_list(&self, list: &List) -> Result<()>;
    /// Deletes the list and its members.
    async fn delete_list(&self, key: &str) -> Result<()>;
    /// Adds members; returns for each whether it was new.
    async fn add_members(&self, list: &str, members: &[Member]) -> Result<Vec<bool>>;
    async fn remove_member(&self, list: &str, member_key: &str) -> Result<bool>;
    async fn members(&self, list: &str) -> Result<Vec<Member>>;
    /// Up to `limit` members of a list in the store's member-key order,
    /// after the member key `after` (from the start when `None`): a range
    /// read, the way to walk a large list with flat memory (`member list`,
    /// export, the REST roster).
    async fn members_page(
        &self,
        list: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>>;
    /// One page of the addresses of `audience`: the members whose
    /// [`DeliveryMode`] is `audience`, with delivery enabled (not disabled
    /// by bounces), who had joined by `received_at`; the next `limit`
    /// members after the member key `after` (from the start when `None`) in
    /// the order fan-out plans in, grouped by domain (list, domain, local
    /// part). A post's audience is `regular`; a digest issue's is its form
    /// (`digest_mime` or `digest_plain`). A range read: the planner walks a
    /// list of any size with the memory of a page.
    async fn audience_page(
        &self,
        list: &str,
        audience: DeliveryMode,
        received_at: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DeliveryPage>;
    /// One page of the addresses a post received at `received_at` goes to:
    /// [`Directory::audience_page`] of the `regular` members.
    async fn delivery_page(
        &self,
        list: &str,
        received_at: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DeliveryPage> {
        self.audience_page(list, DeliveryMode::Regular, received_at, after, limit)
            .await
    }
    /// Every address of `audience` at `received_at`, in planning order: the
    /// pages of [`Directory::audience_page`] collected (tests and small
    /// lists; the planner walks the pages).
    async fn audience_addresses(
        &self,
        list: &str,
        audience: DeliveryMode,
        received_at: u64,
    ) -> Result<Vec<String>> {
        let (mut out, mut after) = (Vec::new(), None::<String>);
        loop {
            let page = self
                .audience_page(list, audience, received_at, after.as_deref(), 10_000)
                .await?;
            out.extend(page.addresses);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }
    /// Every address a post received at `received_at` goes to (the
    /// `regular` audience), in planning order.
    async fn delivery_addresses(&self, list: &str, received_at: u64) -> Result<Vec<String>> {
        self.audience_addresses(list, DeliveryMode::Regular, received_at)
            .await
    }
    async fn member_count(&self, list: &str) -> Result<u64>;
    /// One member of a list (by lowercased address).
    async fn member(&self, list: &str, member_key: &str) -> Result<Option<Member>>;
    /// Turns a member's delivery on or off (the bounce handler's switch);
    /// `false` if not a member.
    async fn set_delivery(&self, list: &str, member_key: &str, enabled: bool) -> Result<bool>;
    /// Sets a member's delivery mode (the member's own choice), changing
    /// nothing else of the record in the same atomic step, so it never
    /// undoes a bounce handler's `set_delivery` made meanwhile; `None` if
    /// not a member, else the member as written.
    async fn set_delivery_mode(
        &self,
        list: &str,
        member_key: &str,
        mode: DeliveryMode,
    ) -> Result<Option<Member>>;
    /// Replaces a member's record (e.g. its `moderated` flag); `false` if not a member.
    async fn update_member(&self, list: &str, member: &Member) -> Result<bool>;
}

/// Accepted messages and the Message-ID window they hold entries in.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Stores a batch durably (on disk, synced) and claims each post's
    /// Message-ID window entry. Concurrent callers share their syncs.
    async fn accept(&self, batch: Vec<NewMessage>) -> Result<Vec<AcceptOutcome>>;
    async fn message(&self, id: &str) -> Result<Option<MessageMeta>>;
    async fn message_body(&self, id: &str) -> Result<Vec<u8>>;
    /// Messages in arrival order, optionally only those still queued.
    async fn messages(&self, queued_only: bool) -> Result<Vec<MessageMeta>>;
    /// Marks a message handled: its record and body are dropped and its
    /// Message-ID leaves the window `grace_secs` from now.
    async fn finish_message(&self, id: &str, grace_secs: u64) -> Result<()>;
    /// Keeps the sender evaluation with a post, durably (replacing any);
    /// `false` when the message is gone.
    async fn set_auth(&self, id: &str, auth: serde_json::Value) -> Result<bool>;
    async fn window_entry(&self, list: &str, message_id: &str) -> Result<Option<WindowEntry>>;
    /// Drops window entries whose grace has passed; returns how many.
    async fn prune_window(&self) -> Result<usize>;
}

/// Fan-out work: posts to plan, jobs, chunks under leases (claimed by
/// compare-and-swap, fenced by generation) and hand-off failures.
#[async_trait]
pub trait Claims: Send + Sync {
    /// Queued posts that have no job yet (never held ones): no sealed job,
    /// and (PostgreSQL) no draft another planner is still working on.
    async fn unplanned_posts(&self) -> Result<Vec<MessageMeta>>;
    /// Starts planning a post: its job as a draft held by `planner` for
    /// `lease_ms`, whose chunks no worker can claim until
    /// [`Claims::seal_job`]. A job is planned in steps so that planning a
    /// million members holds one batch of chunks in memory, not the list.
    /// Fails with `Exists` when the post already has a sealed job, is no
    /// longer queued, or another planner's draft of it is live (lease not
    /// expired); a draft left by a planner whose lease expired (it died), or
    /// by `planner` itself (a retry after an error), is discarded with its
    /// chunks and begun afresh. `job.seq`, `chunks` and `recipients` are
    /// ignored: the store sets them.
    async fn begin_job(&self, job: &Job, planner: &str, lease_ms: u64) -> Result<()>;
    /// Appends chunks (member lists, in planning order) to `planner`'s draft
    /// of post `post`'s job and renews its lease. `Exists` when the draft
    /// is no longer the planner's (taken over, or sealed): stop planning.
    async fn add_chunks(
        &self,
        post: &str,
        planner: &str,
        chunks: Vec<Vec<String>>,
        lease_ms: u64,
    ) -> Result<()>;
    /// Seals `planner`'s draft of post `post`'s job in one transaction that
    /// takes the list's next post counter into `seq` and checks the post is
    /// still queued: from then on its chunks can be claimed. `Exists` when
    /// the draft is not the planner's or the post is no longer queued (the
    /// draft is then dropped); `Invalid` for a draft without chunks.
    async fn seal_job(&self, post: &str, planner: &str) -> Result<Job>;
    /// Creates a post's job with all its chunks at once (begin, add, seal,
    /// under a planner id of its own): for small jobs, tests and tools.
    async fn create_job(&self, job: Job, chunks: Vec<Vec<String>>) -> Result<Job> {
        let planner = format!("create-job:{:016x}", rand::random::<u64>());
        const LEASE_MS: u64 = 60_000;
        self.begin_job(&job, &planner, LEASE_MS).await?;
        self.add_chunks(&job.post_id, &planner, chunks, LEASE_MS)
            .await?;
        self.seal_job(&job.post_id, &planner).await
    }
    /// Takes a claimable chunk (free, or its lease expired) under a new lease
    /// and generation, by compare-and-swap; `None` when there is nothing to do.
    async fn claim_chunk(&self, owner: &str, lease_ms: u64) -> Result<Option<Claim>>;
    async fn chunk_members(&self, job: &str, index: u32) -> Result<Vec<String>>;
    /// Writes the holder's new state (progress, retries; `owner: None`
    /// releases) and renews the lease. When it returns the write survives a
    /// crash of the process (sled: its progress journal; PostgreSQL: the
    /// commit); it survives a power cut after the next [`Store::sync`] (sled:
    /// within 200 ms anyway). `false` when the lease was taken over: the write
    /// was refused.
    async fn update_chunk(&self, owner: &str, state: &ChunkState, lease_ms: u64) -> Result<bool>;
    /// Ends a chunk the holder finished, adding its counts to the job; says
    /// whether that finished the job (the job is then gone), or whether the
    /// lease was lost (nothing written).
    async fn complete_chunk(&self, owner: &str, state: &ChunkState) -> Result<Completion>;
    /// Expires the leases whose owner starts with `owner_prefix`: those of a
    /// previous run of this host, which is known dead (serve holds a lock on
    /// its data directory). Returns how many.
    async fn release_leases(&self, owner_prefix: &str) -> Result<usize>;
    async fn jobs(&self) -> Result<Vec<Job>>;
    async fn chunks(&self) -> Result<Vec<ChunkState>>;
    async fn record_failure(&self, failure: &DeliveryFailure) -> Result<()>;
    async fn failures(&self, list: &str) -> Result<Vec<DeliveryFailure>>;
    /// Hand-off failures not yet scored, up to `max`, with their ids.
    async fn pending_failures(&self, max: usize) -> Result<Vec<(String, DeliveryFailure)>>;
    async fn delete_failure(&self, list: &str, id: &str) -> Result<()>;
}

/// Bounce states per member and scope, and per-post policy-bounce records.
#[async_trait]
pub trait BounceRecords: Send + Sync {
    /// A member's bounce state under a scope key (see `bounce::scope_key`).
    async fn bounce_state(&self, scope: &str, member_key: &str) -> Result<Option<BounceState>>;
    /// Every bounce state, or those under one scope key.
    async fn bounce_states(&self, scope: Option<&str>) -> Result<Vec<BounceState>>;
    async fn put_bounce_state(&self, state: &BounceState) -> Result<()>;
    /// Compare-and-swap of one member's bounce state under a scope: writes
    /// `new` (`None` deletes) only if the stored state still equals
    /// `expected` (`None`: absent). `false` when it changed in between (the
    /// caller reads again and retries), so `bounce reset` racing the handler
    /// never loses an update.
    async fn replace_bounce_state(
        &self,
        scope: &str,
        member_key: &str,
        expected: Option<&BounceState>,
        new: Option<&BounceState>,
    ) -> Result<bool>;
    async fn delete_bounce_state(&self, scope: &str, member_key: &str) -> Result<bool>;
    /// The policy bounces of one post of a list.
    async fn post_bounces(&self, list: &str, post: &str) -> Result<Option<PostBounces>>;
    async fn put_post_bounces(&self, p: &PostBounces) -> Result<()>;
    /// Drops post records first seen before `before` (seconds); returns how many.
    async fn prune_post_bounces(&self, before: u64) -> Result<usize>;
}

/// Held posts and their moderation state transitions, pending
/// confirmations and per-address daily mail counts.
#[async_trait]
pub trait ModerationRecords: Send + Sync {
    /// Marks a queued post as having passed the posting policy; `false` if it
    /// is no longer queued.
    async fn mark_accepted(&self, id: &str) -> Result<bool>;
    /// Holds a queued post and indexes it by its list and hash, at once;
    /// `false` if it was no longer queued (nothing written).
    async fn hold_post(&self, held: &HeldPost) -> Result<bool>;
    /// Takes a held post out of the hold, once: approved, it goes back to
    /// `Queued` marked `Approved`; otherwise to `Done` (the caller then
    /// finishes it). `None` if it was not held (already acted on).
    async fn release_held(&self, id: &str, approve: bool) -> Result<Option<MessageMeta>>;
    /// Held posts of one list, or of every list.
    async fn held_posts(&self, list: Option<&str>) -> Result<Vec<HeldPost>>;
    /// Held posts of a list whose Message-ID hash is `hash`.
    async fn held_by_hash(&self, list: &str, hash: &str) -> Result<Vec<HeldPost>>;
    /// Stores a pending confirmation under the hash of its token.
    async fn put_pending(&self, token_hash: &str, pending: &Pending) -> Result<()>;
    /// Removes and returns a pending confirmation: a token works once.
    async fn take_pending(&self, token_hash: &str) -> Result<Option<Pending>>;
    /// Drops pending confirmations that expired before `now`; returns how many.
    async fn prune_pending(&self, now: u64) -> Result<usize>;
    /// Drops the daily mail counts of days before `now`'s day (they no
    /// longer limit anything); returns how many.
    async fn prune_rate_counts(&self, now: u64) -> Result<usize>;
    /// Counts one mail to `address` on `day` if fewer than `limit` were sent;
    /// `false` (nothing counted) when the limit is reached.
    async fn rate_take(&self, address: &str, day: u64, limit: u32) -> Result<bool>;
}

/// API tokens (hashed) and the audit log of administrative actions.
#[async_trait]
pub trait Access: Send + Sync {
    /// Stores a new token; `Exists` if its id is taken.
    async fn create_token(&self, token: &ApiToken) -> Result<()>;
    /// One token by its id (the public part).
    async fn token(&self, id: &str) -> Result<Option<ApiToken>>;
    /// Every token, revoked and expired ones included, by id.
    async fn tokens(&self) -> Result<Vec<ApiToken>>;
    /// Marks a token revoked at `at`; `false` if there is no such token.
    async fn revoke_token(&self, id: &str, at: u64) -> Result<bool>;
    /// Appends an entry to the audit log.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// Entries in time order that `query` asks for, at most `query.limit`.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;
    /// Drops entries older than `before` (seconds); returns how many.
    async fn prune_audit(&self, before: u64) -> Result<usize>;
}

/// Appends an audit entry for every door (admin requests, e-mail
/// moderation). The action it records has happened already, so a failure to
/// write it is logged and counted rather than reported as the action's.
pub async fn write_audit(store: &dyn Access, entry: &AuditEntry) {
    match store.append_audit(entry).await {
        Ok(()) => metrics::counter!("listrelay_audit_entries_total").increment(1),
        Err(e) => {
            tracing::error!(error = %e, action = %entry.action, actor = %entry.actor,
                            target = %entry.target, "writing the audit log failed; check the store");
            metrics::counter!("listrelay_audit_write_failures_total").increment(1);
        }
    }
}

/// Whole-store reads and the restore that `listrelay export` / `import` use.
#[async_trait]
pub trait Transfer: Send + Sync {
    /// Every Message-ID window entry: (list, Message-ID, entry).
    async fn window_entries(&self) -> Result<Vec<(String, String, WindowEntry)>>;
    /// Every list's post counter.
    async fn counters(&self) -> Result<Vec<(String, u64)>>;
    /// Every post's policy-bounce record.
    async fn all_post_bounces(&self) -> Result<Vec<PostBounces>>;
    /// Every pending confirmation with the hash of its token.
    async fn pendings(&self) -> Result<Vec<(String, Pending)>>;
    /// Every daily mail count: (address, day, count).
    async fn rate_counts(&self) -> Result<Vec<(String, u64, u32)>>;
    /// Writes exported records as they are (no window check, no new ids),
    /// durably, into a store being filled by `listrelay import`.
    async fn restore(&self, records: Vec<Record>) -> Result<()>;
}

/// Storage for everything listrelay keeps, by role. Every method is atomic
/// on its own. Callers hold an `Arc<dyn Store>`; a function that needs one
/// role only can take that role's trait.
#[async_trait]
pub trait Store:
    Directory + Queue + Claims + BounceRecords + ModerationRecords + Transfer + Access
{
    /// Returns once every write made so far is on disk.
    async fn sync(&self) -> Result<()>;
}

/// Opens the store the configuration names: `sled` under `data_dir`, or a
/// PostgreSQL database (`postgres://…`), whose schema is migrated first.
pub async fn open(config: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>> {
    use crate::config::StoreKind;
    Ok(match config.store_kind() {
        StoreKind::Sled => {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| StoreError::Io {
                path: config.data_dir.display().to_string(),
                source,
            })?;
            std::sync::Arc::new(SledStore::open(&config.data_dir)?)
        }
        StoreKind::Postgres(url) => std::sync::Arc::new(PostgresStore::open(&url).await?),
    })
}
