//! The shared store: every record and every message body in one PostgreSQL
//! database, so several `listrelay serve` hosts work on the same site and none
//! depends on another's disk. Replication and failover are PostgreSQL's own.
//!
//! * Durability is PostgreSQL's commit (`synchronous_commit`): a method returns
//!   after its transaction committed. Chunk progress alone commits
//!   asynchronously, on connections of its own (see `update_chunk`). `accept` stores a whole batch in one
//!   transaction; concurrent sessions share WAL flushes (PostgreSQL's group
//!   commit), so [`Store::sync`] has nothing left to do.
//! * The Message-ID window is the primary key (list, message_id) of
//!   `window_entries`: two hosts accepting the same post at once serialize on
//!   it, and the second sees the first's entry (see `accept`).
//! * Claims, fencing and leases are in `claims.rs`. Lease times are taken from
//!   the database clock (`lr_now_ms()`), so hosts' clocks never disagree on who
//!   holds a chunk; `not_before_ms` and retry times come from the workers'
//!   clocks, as in the embedded store (keep hosts on NTP).
//! * Window times (`expires_at`, seconds) come from the hosts' clocks, as in
//!   the embedded store.
//!
//! Files by role: this one holds the connection pool, opening (migrations,
//! then orphan jobs cleared), the column readers that turn a mistyped column
//! into an error, and the role traits, each method delegating to one of
//! `directory.rs` (domains, lists, members), `queue.rs` (accepted messages,
//! the Message-ID window), `claims.rs` (planning, jobs, chunks, leases),
//! `bounce.rs` (bounce state, hand-off failures), `moderation.rs` (held
//! posts, confirmations, rate counts), `transfer.rs` (export and import);
//! `access.rs` (API tokens, the audit log); `schema.rs` applies the migrations.

mod access;
mod bounce;
mod claims;
mod digest;
mod directory;
mod moderation;
mod queue;
pub mod schema;
mod transfer;

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Json};
use tokio_postgres::{NoTls, Row};
use tracing::{info, warn};

use super::{
    AcceptOutcome, Access, BounceRecords, ChunkState, Claim, Claims, Completion, DeliveryFailure,
    DeliveryPage, Directory, Job, MessageMeta, MessageState, ModerationRecords, NewMessage, Queue,
    Record, Result, Store, StoreError, Transfer, WindowEntry,
};
use crate::model::{
    ApiToken, AuditEntry, AuditQuery, BounceState, DeliveryMode, Domain, HeldPost, List, Member,
    Pending, PostBounces,
};

/// Connections each process keeps at most.
const POOL_SIZE: usize = 12;

/// Connections for chunk progress writes (one per worker is plenty).
const PROGRESS_POOL_SIZE: usize = 8;

/// How long PostgreSQL lets a session sit idle inside a transaction.
const IDLE_IN_TRANSACTION_MS: u32 = 5000;

/// Attempts of a transaction that PostgreSQL aborted to break a deadlock or a
/// serialization conflict (two hosts' batches locking window entries in
/// opposite orders).
const RETRIES: usize = 3;

/// Reads column `idx` of a row of `table`. A column whose type or content is
/// not what this listrelay expects (a schema edited by hand or left behind a
/// migration) is an error naming it, never a panic.
pub(crate) fn col<'a, T: FromSql<'a>>(r: &'a Row, table: &str, idx: usize) -> Result<T> {
    r.try_get(idx).map_err(|e| {
        let column = r.columns().get(idx).map_or("?", |c| c.name());
        StoreError::Backend(format!(
            "postgresql: column {table}.{column} does not hold what this listrelay expects ({e}); \
             run `listrelay migrate` to bring the schema up to date, or check for hand edits"
        ))
    })
}

/// Reads a JSON record column (see [`col`]).
pub(crate) fn json<T: serde::de::DeserializeOwned>(r: &Row, table: &str, idx: usize) -> Result<T> {
    Ok(col::<Json<T>>(r, table, idx)?.0)
}

pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!(
            "postgresql: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => StoreError::Backend(format!("postgresql: {e}")),
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Splits a member key `local@domain` as the embedded store keys it.
fn member_parts(key: &str) -> (String, String) {
    let (local, domain) = key.rsplit_once('@').unwrap_or((key, ""));
    (domain.to_string(), local.to_string())
}

pub struct PostgresStore {
    pool: Pool,
    /// Connections whose commits are asynchronous (`synchronous_commit =
    /// off`), for chunk progress only: a commit is then in the server's
    /// hands at once (it survives a crash of this process and is seen by
    /// every host) without waiting for a WAL flush, which was one disk
    /// round trip per transaction sent, the fan-out's bottleneck at 100 %
    /// VERP. The WAL writer flushes it within 3 x `wal_writer_delay`;
    /// [`Store::sync`] or any later synchronous commit (a claim, a
    /// completion) flushes it at once.
    progress: Pool,
    /// Members this process inserted since it last refreshed the planner's
    /// statistics of the table (`directory::refresh_member_statistics`).
    members_unanalyzed: AtomicU64,
}

impl PostgresStore {
    /// Connects to the database `url` names without touching its schema.
    pub fn connect(url: &str) -> Result<Self> {
        Ok(PostgresStore {
            pool: Self::pool(url, POOL_SIZE, "")?,
            progress: Self::pool(url, PROGRESS_POOL_SIZE, " -c synchronous_commit=off")?,
            members_unanalyzed: AtomicU64::new(0),
        })
    }

    /// A pool of `size` connections to `url`, with `options` added to the
    /// server options of each session.
    fn pool(url: &str, size: usize, options: &str) -> Result<Pool> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("bad PostgreSQL URL: {e}")))?;
        // A host paused inside a transaction (SIGSTOP, a VM stall) must not
        // keep its row locks, or claims would skip those chunks until it
        // wakes: PostgreSQL ends such a session after a few seconds.
        let options = format!(
            "{} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}{options}",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim());
        if config.get_application_name().is_none() {
            config.application_name("listrelay");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size)
            .build()
            .map_err(|e| StoreError::Backend(format!("postgresql pool: {e}")))
    }

    /// Connects, applies the schema migrations the database lacks, and
    /// clears (with a warning each) orphan jobs, whose post is gone or done.
    pub async fn open(url: &str) -> Result<Self> {
        let store = Self::connect(url)?;
        let applied = store.migrate().await?;
        for (version, name) in applied {
            info!(version, name, "applied a schema migration");
        }
        store
            .client()
            .await?
            .execute(
                "DELETE FROM sync_marks
                  WHERE pid NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)",
                &[],
            )
            .await
            .map_err(pg_err)?;
        for (post, list) in claims::clear_orphans(&store.client().await?).await? {
            warn!(%post, %list, "cleared an orphan job: its post is gone or done");
        }
        Ok(store)
    }

    /// Applies missing migrations; returns those applied.
    pub async fn migrate(&self) -> Result<Vec<(i32, &'static str)>> {
        let mut client = self.client().await?;
        schema::migrate(&mut client).await
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> Result<i32> {
        schema::version(&*self.client().await?).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Self::get(&self.pool).await
    }

    /// Counts `n` members inserted and keeps the planner's statistics of
    /// them fresh (`directory::refresh_member_statistics`). The insert is
    /// committed: a failed refresh is only logged.
    async fn members_inserted(&self, c: &deadpool_postgres::Object, n: u64) {
        let unanalyzed = self.members_unanalyzed.fetch_add(n, Ordering::SeqCst) + n;
        match directory::refresh_member_statistics(c, unanalyzed).await {
            Ok(true) => {
                self.members_unanalyzed.store(0, Ordering::SeqCst);
                info!(
                    inserted = unanalyzed,
                    "refreshed PostgreSQL's statistics of the members table after a bulk insert"
                );
            }
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, "refreshing the statistics of the members table failed; autovacuum will")
            }
        }
    }

    /// A connection whose commits are asynchronous (see `progress`).
    async fn progress_client(&self) -> Result<deadpool_postgres::Object> {
        Self::get(&self.progress).await
    }

    async fn get(pool: &Pool) -> Result<deadpool_postgres::Object> {
        pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_err(e),
            e => StoreError::Backend(format!("postgresql pool: {e}")),
        })
    }
}

#[async_trait]
impl Directory for PostgresStore {
    async fn create_domain(&self, domain: &Domain) -> Result<()> {
        directory::create_domain(&self.client().await?, domain).await
    }

    async fn domain(&self, name: &str) -> Result<Option<Domain>> {
        directory::domain(&self.client().await?, name).await
    }

    async fn domains(&self) -> Result<Vec<Domain>> {
        directory::domains(&self.client().await?).await
    }

    async fn update_domain(&self, domain: &Domain) -> Result<()> {
        directory::update_domain(&self.client().await?, domain).await
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        directory::delete_domain(&mut self.client().await?, name).await
    }

    async fn create_list(&self, list: &List) -> Result<()> {
        directory::create_list(&mut self.client().await?, list).await
    }

    async fn list(&self, key: &str) -> Result<Option<List>> {
        directory::list(&self.client().await?, key).await
    }

    async fn lists(&self, domain: Option<&str>) -> Result<Vec<List>> {
        directory::lists(&self.client().await?, domain).await
    }

    async fn update_list(&self, list: &List) -> Result<()> {
        directory::update_list(&self.client().await?, list).await
    }

    async fn delete_list(&self, key: &str) -> Result<()> {
        directory::delete_list(&self.client().await?, key).await
    }

    async fn add_members(&self, list: &str, members: &[Member]) -> Result<Vec<bool>> {
        let client = self.client().await?;
        let added = directory::add_members(&client, list, members).await?;
        let n = added.iter().filter(|&&new| new).count() as u64;
        self.members_inserted(&client, n).await;
        Ok(added)
    }

    async fn remove_member(&self, list: &str, member_key: &str) -> Result<bool> {
        directory::remove_member(&self.client().await?, list, member_key).await
    }

    async fn members(&self, list: &str) -> Result<Vec<Member>> {
        directory::members(&self.client().await?, list).await
    }

    async fn members_page(
        &self,
        list: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        directory::members_page(&self.client().await?, list, after, limit).await
    }

    async fn audience_page(
        &self,
        list: &str,
        audience: DeliveryMode,
        received_at: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DeliveryPage> {
        let c = self.client().await?;
        directory::audience_page(&c, list, audience, received_at, after, limit).await
    }

    async fn member_count(&self, list: &str) -> Result<u64> {
        directory::member_count(&self.client().await?, list).await
    }

    async fn member(&self, list: &str, member_key: &str) -> Result<Option<Member>> {
        bounce::member(&self.client().await?, list, member_key).await
    }

    async fn set_delivery(&self, list: &str, member_key: &str, enabled: bool) -> Result<bool> {
        bounce::set_delivery(&self.client().await?, list, member_key, enabled).await
    }

    async fn set_delivery_mode(
        &self,
        list: &str,
        member_key: &str,
        mode: DeliveryMode,
    ) -> Result<Option<Member>> {
        directory::set_delivery_mode(&self.client().await?, list, member_key, mode).await
    }

    async fn update_member(&self, list: &str, member: &Member) -> Result<bool> {
        moderation::update_member(&self.client().await?, list, member).await
    }
}

#[async_trait]
impl Queue for PostgresStore {
    async fn accept(&self, batch: Vec<NewMessage>) -> Result<Vec<AcceptOutcome>> {
        queue::accept(&mut self.client().await?, batch).await
    }

    async fn message(&self, id: &str) -> Result<Option<MessageMeta>> {
        queue::message(&self.client().await?, id).await
    }

    async fn set_auth(&self, id: &str, auth: serde_json::Value) -> Result<bool> {
        queue::set_auth(&self.client().await?, id, auth).await
    }

    async fn message_body(&self, id: &str) -> Result<Vec<u8>> {
        queue::message_body(&self.client().await?, id).await
    }

    async fn messages(&self, queued_only: bool) -> Result<Vec<MessageMeta>> {
        queue::messages(&self.client().await?, queued_only).await
    }

    async fn finish_message(&self, id: &str, grace_secs: u64) -> Result<()> {
        queue::finish_message(&mut self.client().await?, id, grace_secs).await
    }

    async fn window_entry(&self, list: &str, message_id: &str) -> Result<Option<WindowEntry>> {
        queue::window_entry(&self.client().await?, list, message_id).await
    }

    async fn prune_window(&self) -> Result<usize> {
        queue::prune_window(&self.client().await?).await
    }
}

#[async_trait]
impl Claims for PostgresStore {
    async fn unplanned_posts(&self) -> Result<Vec<MessageMeta>> {
        claims::unplanned_posts(&self.client().await?).await
    }

    async fn begin_job(&self, job: &Job, planner: &str, lease_ms: u64) -> Result<()> {
        claims::begin_job(&mut self.client().await?, job, planner, lease_ms).await
    }

    async fn add_chunks(
        &self,
        post: &str,
        planner: &str,
        chunks: Vec<Vec<String>>,
        lease_ms: u64,
    ) -> Result<()> {
        claims::add_chunks(&mut self.client().await?, post, planner, chunks, lease_ms).await
    }

    async fn seal_job(&self, post: &str, planner: &str) -> Result<Job> {
        claims::seal_job(&mut self.client().await?, post, planner).await
    }

    async fn seal_digest_only(&self, post: &str) -> Result<bool> {
        digest::seal_digest_only(&mut self.client().await?, post).await
    }

    async fn claim_chunk(&self, owner: &str, lease_ms: u64) -> Result<Option<Claim>> {
        claims::claim_chunk(&self.client().await?, owner, lease_ms).await
    }

    async fn chunk_members(&self, job: &str, index: u32) -> Result<Vec<String>> {
        claims::chunk_members(&self.client().await?, job, index).await
    }

    /// Progress commits asynchronously (see `progress`): it survives a crash
    /// of this process, and a crash of the database server loses at most
    /// the last 3 x `wal_writer_delay` of it (600 ms by default), as the
    /// embedded store loses the last 200 ms on a power cut. A release
    /// (`owner: None`) commits synchronously: it is rare and lets the chunk
    /// go for a while.
    async fn update_chunk(&self, owner: &str, state: &ChunkState, lease_ms: u64) -> Result<bool> {
        let client = match state.owner {
            Some(_) => self.progress_client().await?,
            None => self.client().await?,
        };
        claims::update_chunk(&client, owner, state, lease_ms).await
    }

    async fn complete_chunk(&self, owner: &str, state: &ChunkState) -> Result<Completion> {
        claims::complete_chunk(&mut self.client().await?, owner, state).await
    }

    async fn release_leases(&self, owner_prefix: &str) -> Result<usize> {
        claims::release_leases(&self.client().await?, owner_prefix).await
    }

    async fn jobs(&self) -> Result<Vec<Job>> {
        claims::jobs(&self.client().await?).await
    }

    async fn chunks(&self) -> Result<Vec<ChunkState>> {
        claims::chunks(&self.client().await?).await
    }

    async fn record_failure(&self, failure: &DeliveryFailure) -> Result<()> {
        bounce::record_failure(&self.client().await?, failure).await
    }

    async fn failures(&self, list: &str) -> Result<Vec<DeliveryFailure>> {
        bounce::failures(&self.client().await?, list).await
    }

    async fn pending_failures(&self, max: usize) -> Result<Vec<(String, DeliveryFailure)>> {
        bounce::pending_failures(&self.client().await?, max).await
    }

    async fn delete_failure(&self, list: &str, id: &str) -> Result<()> {
        bounce::delete_failure(&self.client().await?, list, id).await
    }
}

#[async_trait]
impl BounceRecords for PostgresStore {
    async fn bounce_state(&self, scope: &str, member_key: &str) -> Result<Option<BounceState>> {
        bounce::state(&self.client().await?, scope, member_key).await
    }

    async fn bounce_states(&self, scope: Option<&str>) -> Result<Vec<BounceState>> {
        bounce::states(&self.client().await?, scope).await
    }

    async fn put_bounce_state(&self, state: &BounceState) -> Result<()> {
        let client = self.client().await?;
        bounce::put_state(&**client, state).await.map_err(pg_err)?;
        Ok(())
    }

    async fn replace_bounce_state(
        &self,
        scope: &str,
        member_key: &str,
        expected: Option<&BounceState>,
        new: Option<&BounceState>,
    ) -> Result<bool> {
        bounce::replace_state(&mut self.client().await?, scope, member_key, expected, new).await
    }

    async fn delete_bounce_state(&self, scope: &str, member_key: &str) -> Result<bool> {
        bounce::delete_state(&self.client().await?, scope, member_key).await
    }

    async fn post_bounces(&self, list: &str, post: &str) -> Result<Option<PostBounces>> {
        bounce::post(&self.client().await?, list, post).await
    }

    async fn put_post_bounces(&self, p: &PostBounces) -> Result<()> {
        let client = self.client().await?;
        bounce::put_post(&**client, p).await.map_err(pg_err)?;
        Ok(())
    }

    async fn prune_post_bounces(&self, before: u64) -> Result<usize> {
        bounce::prune_posts(&self.client().await?, before).await
    }
}

#[async_trait]
impl ModerationRecords for PostgresStore {
    async fn mark_accepted(&self, id: &str) -> Result<bool> {
        moderation::mark_accepted(&mut self.client().await?, id).await
    }

    async fn hold_post(&self, held: &HeldPost) -> Result<bool> {
        moderation::hold_post(&mut self.client().await?, held).await
    }

    async fn release_held(&self, id: &str, approve: bool) -> Result<Option<MessageMeta>> {
        moderation::release_held(&mut self.client().await?, id, approve).await
    }

    async fn held_posts(&self, list: Option<&str>) -> Result<Vec<HeldPost>> {
        moderation::held_posts(&self.client().await?, list).await
    }

    async fn held_by_hash(&self, list: &str, hash: &str) -> Result<Vec<HeldPost>> {
        moderation::held_by_hash(&self.client().await?, list, hash).await
    }

    async fn put_pending(&self, token_hash: &str, pending: &Pending) -> Result<()> {
        let client = self.client().await?;
        moderation::put_pending(&**client, token_hash, pending)
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn take_pending(&self, token_hash: &str) -> Result<Option<Pending>> {
        moderation::take_pending(&self.client().await?, token_hash).await
    }

    async fn prune_pending(&self, now: u64) -> Result<usize> {
        moderation::prune_pending(&self.client().await?, now).await
    }

    async fn prune_rate_counts(&self, now: u64) -> Result<usize> {
        moderation::prune_rate_counts(&self.client().await?, now).await
    }

    async fn rate_take(&self, address: &str, day: u64, limit: u32) -> Result<bool> {
        moderation::rate_take(&self.client().await?, address, day, limit).await
    }
}

#[async_trait]
impl Transfer for PostgresStore {
    async fn window_entries(&self) -> Result<Vec<(String, String, WindowEntry)>> {
        transfer::window_entries(&self.client().await?).await
    }

    async fn counters(&self) -> Result<Vec<(String, u64)>> {
        transfer::counters(&self.client().await?).await
    }

    async fn all_post_bounces(&self) -> Result<Vec<PostBounces>> {
        bounce::posts(&self.client().await?).await
    }

    async fn pendings(&self) -> Result<Vec<(String, Pending)>> {
        moderation::pendings(&self.client().await?).await
    }

    async fn rate_counts(&self) -> Result<Vec<(String, u64, u32)>> {
        moderation::rate_counts(&self.client().await?).await
    }

    async fn restore(&self, records: Vec<Record>) -> Result<()> {
        let members = records
            .iter()
            .filter(|r| matches!(r, Record::Member { .. }))
            .count() as u64;
        let mut client = self.client().await?;
        transfer::restore(&mut client, records).await?;
        self.members_inserted(&client, members).await;
        Ok(())
    }
}

#[async_trait]
impl Access for PostgresStore {
    async fn create_token(&self, token: &ApiToken) -> Result<()> {
        access::create_token(&self.client().await?, token).await
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        access::token(&self.client().await?, id).await
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        access::tokens(&self.client().await?).await
    }

    async fn revoke_token(&self, id: &str, at: u64) -> Result<bool> {
        access::revoke_token(&self.client().await?, id, at).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        access::append_audit(&self.client().await?, entry).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        access::audit(&self.client().await?, query).await
    }

    async fn prune_audit(&self, before: u64) -> Result<usize> {
        access::prune_audit(&self.client().await?, before).await
    }
}

#[async_trait]
impl Store for PostgresStore {
    /// Every write but chunk progress committed synchronously before it
    /// returned; a synchronous commit of a write of its own flushes the WAL
    /// up to it, so the asynchronous progress commits before it too.
    async fn sync(&self) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO sync_marks (pid, n) VALUES (pg_backend_pid(), 1)
                 ON CONFLICT (pid) DO UPDATE SET n = sync_marks.n + 1",
            )
            .await
            .map_err(pg_err)?;
        client.execute(&stmt, &[]).await.map_err(pg_err)?;
        Ok(())
    }
}

/// A message's state as the `state` column holds it.
pub(crate) fn state_name(s: MessageState) -> &'static str {
    match s {
        MessageState::Queued => "queued",
        MessageState::Held => "held",
        MessageState::Done => "done",
    }
}

/// A message record from `meta, state`: the column is authoritative.
pub(crate) fn meta_of(r: &Row) -> Result<MessageMeta> {
    let mut meta: MessageMeta = json(r, "messages", 0)?;
    meta.state = match col::<&str>(r, "messages", 1)? {
        "held" => MessageState::Held,
        "done" => MessageState::Done,
        _ => MessageState::Queued,
    };
    Ok(meta)
}
