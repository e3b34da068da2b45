//! The shared store: every record and every message body in one PostgreSQL
//! database, so several `listrelay serve` hosts work on the same site and none
//! depends on another's disk. Replication and failover are PostgreSQL's own.
//!
//! * Durability is PostgreSQL's commit (`synchronous_commit`): a method returns
//!   after its transaction committed. `accept` stores a whole batch in one
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

mod bounce;
mod claims;
mod moderation;
pub mod schema;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Json};
use tokio_postgres::{NoTls, Row};
use tracing::{info, warn};

use super::rules;
use super::{
    AcceptOutcome, BounceRecords, ChunkState, Claim, Claims, Completion, DeliveryFailure,
    Directory, Job, MessageMeta, MessageState, ModerationRecords, NewMessage, Queue, Record,
    Result, Store, StoreError, Transfer, WindowEntry,
};
use crate::clock::now;
use crate::model::{BounceState, Domain, HeldPost, List, Member, Pending, PostBounces};

/// Connections each process keeps at most.
const POOL_SIZE: usize = 12;

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
}

impl PostgresStore {
    /// Connects to the database `url` names without touching its schema.
    pub fn connect(url: &str) -> Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("bad PostgreSQL URL: {e}")))?;
        // A host paused inside a transaction (SIGSTOP, a VM stall) must not
        // keep its row locks, or claims would skip those chunks until it
        // wakes: PostgreSQL ends such a session after a few seconds.
        let options = format!(
            "{} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
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
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Backend(format!("postgresql pool: {e}")))?;
        Ok(PostgresStore { pool })
    }

    /// Connects, applies the schema migrations the database lacks, and
    /// clears (with a warning each) orphan jobs, whose post is gone or done.
    pub async fn open(url: &str) -> Result<Self> {
        let store = Self::connect(url)?;
        let applied = store.migrate().await?;
        for (version, name) in applied {
            info!(version, name, "applied a schema migration");
        }
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
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_err(e),
            e => StoreError::Backend(format!("postgresql pool: {e}")),
        })
    }

    async fn accept_once(
        &self,
        batch: &[NewMessage],
        client: &mut deadpool_postgres::Object,
    ) -> std::result::Result<Vec<AcceptOutcome>, tokio_postgres::Error> {
        let tx = client.transaction().await?;
        let claim = tx
            .prepare_cached(
                "INSERT INTO window_entries AS w (list, message_id, message, content_hash, expires_at)
                 VALUES ($1, $2, $3, $4, NULL)
                 ON CONFLICT (list, message_id) DO UPDATE
                     SET message = excluded.message, content_hash = excluded.content_hash,
                         expires_at = NULL
                     WHERE w.expires_at IS NOT NULL AND w.expires_at <= $5
                 RETURNING 1",
            )
            .await?;
        let holder = tx
            .prepare_cached(
                "SELECT message, content_hash FROM window_entries WHERE list = $1 AND message_id = $2",
            )
            .await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO messages (id, list, is_post, state, meta, body)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await?;
        let now = i64_of(now());
        let mut outcomes = Vec::with_capacity(batch.len());
        for msg in batch {
            let meta = &msg.meta;
            let outcome = match &meta.dedup {
                None => AcceptOutcome::Accepted,
                Some(d) => {
                    // A new entry, or one whose grace has passed: this post
                    // holds the Message-ID now. Otherwise a live entry holds
                    // it (possibly committed a moment ago by another host,
                    // whose insert this one waited for).
                    let claimed = tx
                        .query_opt(
                            &claim,
                            &[&meta.list, &d.message_id, &meta.id, &d.content_hash, &now],
                        )
                        .await?;
                    if claimed.is_some() {
                        AcceptOutcome::Accepted
                    } else {
                        let row = tx.query_one(&holder, &[&meta.list, &d.message_id]).await?;
                        let (existing, hash) =
                            match (row.try_get::<_, String>(0), row.try_get::<_, String>(1)) {
                                (Ok(e), Ok(h)) => (e, h),
                                (Err(e), _) | (_, Err(e)) => return Err(e),
                            };
                        if hash == d.content_hash {
                            AcceptOutcome::Redelivery { existing }
                        } else {
                            AcceptOutcome::Duplicate { existing }
                        }
                    }
                }
            };
            if outcome == AcceptOutcome::Accepted {
                let is_post = meta.suffix == crate::address::Suffix::Post;
                tx.execute(
                    &insert,
                    &[
                        &meta.id,
                        &meta.list,
                        &is_post,
                        &state_name(meta.state),
                        &Json(meta),
                        &msg.body,
                    ],
                )
                .await?;
            }
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn restore_batch(&self, records: Vec<Record>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        for r in rules::in_restore_order(records) {
            let result = match &r {
                Record::Header { .. } => Ok(0),
                Record::Domain { domain } => {
                    tx.execute(
                        "INSERT INTO domains (name, data) VALUES ($1, $2)",
                        &[&domain.name, &Json(domain)],
                    )
                    .await
                }
                Record::List { list } => {
                    tx.execute(
                        "INSERT INTO lists (key, domain, data) VALUES ($1, $2, $3)",
                        &[&list.key(), &list.address.domain(), &Json(list)],
                    )
                    .await
                }
                Record::Member { list, member } => {
                    let (domain, local) = member_parts(&member.address.key());
                    tx.execute(
                        "INSERT INTO members (list, domain, local, data) VALUES ($1, $2, $3, $4)",
                        &[list, &domain, &local, &Json(member)],
                    )
                    .await
                }
                Record::Counter { list, seq } => {
                    tx.execute(
                        "INSERT INTO counters (list, seq) VALUES ($1, $2)
                         ON CONFLICT (list) DO UPDATE SET seq = excluded.seq",
                        &[list, &i64_of(*seq)],
                    )
                    .await
                }
                Record::Message { meta, body } => {
                    let body = super::transfer::body(body)?;
                    let is_post = meta.suffix == crate::address::Suffix::Post;
                    tx.execute(
                        "INSERT INTO messages (id, list, is_post, state, meta, body)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            &meta.id,
                            &meta.list,
                            &is_post,
                            &state_name(meta.state),
                            &Json(meta),
                            &body,
                        ],
                    )
                    .await
                }
                Record::Window {
                    list,
                    message_id,
                    entry,
                } => {
                    tx.execute(
                        "INSERT INTO window_entries (list, message_id, message, content_hash, expires_at)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (list, message_id) DO UPDATE
                         SET message = excluded.message, content_hash = excluded.content_hash,
                             expires_at = excluded.expires_at",
                        &[
                            list,
                            message_id,
                            &entry.message,
                            &entry.content_hash,
                            &entry.expires_at.map(i64_of),
                        ],
                    )
                    .await
                }
                Record::Job { job } => claims::insert_job(&*tx, job).await,
                Record::Chunk { state, members } => {
                    claims::insert_chunk(&*tx, state, members).await
                }
                Record::Failure { failure } => {
                    tx.execute(
                        "INSERT INTO failures (list, data) VALUES ($1, $2)",
                        &[&failure.list, &Json(failure)],
                    )
                    .await
                }
                Record::BounceState { state } => bounce::put_state(&*tx, state).await,
                Record::PostBounces { bounces } => bounce::put_post(&*tx, bounces).await,
                Record::Held { held } => moderation::restore_held(&*tx, held).await,
                Record::Pending {
                    token_hash,
                    pending,
                } => moderation::put_pending(&*tx, token_hash, pending).await,
                Record::Rate {
                    address,
                    day,
                    count,
                } => moderation::restore_rate(&*tx, address, *day, *count).await,
            };
            result.map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)
    }
}

#[async_trait]
impl Directory for PostgresStore {
    async fn create_domain(&self, domain: &Domain) -> Result<()> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO domains (name, data) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&domain.name, &Json(domain)],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::Exists(format!("domain {}", domain.name)));
        }
        Ok(())
    }

    async fn domain(&self, name: &str) -> Result<Option<Domain>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT data FROM domains WHERE name = $1", &[&name])
            .await
            .map_err(pg_err)?;
        row.map(|r| json(&r, "domains", 0)).transpose()
    }

    async fn domains(&self) -> Result<Vec<Domain>> {
        let rows = self
            .client()
            .await?
            .query("SELECT data FROM domains ORDER BY name", &[])
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| json(r, "domains", 0)).collect()
    }

    async fn update_domain(&self, domain: &Domain) -> Result<()> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE domains SET data = $2 WHERE name = $1",
                &[&domain.name, &Json(domain)],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("domain {}", domain.name)));
        }
        Ok(())
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        // The guard and the delete are one step: the domain row is locked
        // first, and `create_list` locks it too, so a list being created in
        // the domain on another host is either seen here or created after.
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let found = tx
            .query_opt("SELECT 1 FROM domains WHERE name = $1 FOR UPDATE", &[&name])
            .await
            .map_err(pg_err)?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!("domain {name}")));
        }
        let rows = tx
            .query(
                "SELECT data FROM lists WHERE domain = $1 ORDER BY key",
                &[&name],
            )
            .await
            .map_err(pg_err)?;
        let lists = rows
            .iter()
            .map(|r| json(r, "lists", 0))
            .collect::<Result<Vec<List>>>()?;
        rules::may_delete_domain(name, &lists)?;
        tx.execute("DELETE FROM domains WHERE name = $1", &[&name])
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn create_list(&self, list: &List) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        // Holds off `delete_domain` (which locks the row FOR UPDATE) until
        // the list is committed; a list may also be created without its
        // domain record, as in the embedded store.
        tx.execute(
            "SELECT 1 FROM domains WHERE name = $1 FOR KEY SHARE",
            &[&list.address.domain()],
        )
        .await
        .map_err(pg_err)?;
        let n = tx
            .execute(
                "INSERT INTO lists (key, domain, data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&list.key(), &list.address.domain(), &Json(list)],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::Exists(format!("list {}", list.address)));
        }
        tx.commit().await.map_err(pg_err)
    }

    async fn list(&self, key: &str) -> Result<Option<List>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT data FROM lists WHERE key = $1", &[&key])
            .await
            .map_err(pg_err)?;
        row.map(|r| json(&r, "lists", 0)).transpose()
    }

    async fn lists(&self, domain: Option<&str>) -> Result<Vec<List>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT data FROM lists WHERE $1::text IS NULL OR domain = $1 ORDER BY key",
                &[&domain],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| json(r, "lists", 0)).collect()
    }

    async fn update_list(&self, list: &List) -> Result<()> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE lists SET data = $2 WHERE key = $1",
                &[&list.key(), &Json(list)],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("list {}", list.address)));
        }
        Ok(())
    }

    async fn delete_list(&self, key: &str) -> Result<()> {
        // Its members go with it in the same statement (ON DELETE CASCADE),
        // so no crash leaves members behind a deleted list.
        let n = self
            .client()
            .await?
            .execute("DELETE FROM lists WHERE key = $1", &[&key])
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("list {key}")));
        }
        Ok(())
    }

    async fn add_members(&self, list: &str, members: &[Member]) -> Result<Vec<bool>> {
        let client = self.client().await?;
        let exists = client
            .query_opt("SELECT 1 FROM lists WHERE key = $1", &[&list])
            .await
            .map_err(pg_err)?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound(format!("list {list}")));
        }
        let mut domains = Vec::with_capacity(members.len());
        let mut locals = Vec::with_capacity(members.len());
        let mut data = Vec::with_capacity(members.len());
        for m in members {
            let (d, l) = member_parts(&m.address.key());
            domains.push(d);
            locals.push(l);
            data.push(serde_json::to_value(m)?);
        }
        let rows = client
            .query(
                "INSERT INTO members (list, domain, local, data)
                 SELECT $1, d, l, j FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS t(d, l, j)
                 ON CONFLICT DO NOTHING
                 RETURNING domain, local",
                &[&list, &domains, &locals, &data],
            )
            .await
            .map_err(|e| match e.code() {
                Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => {
                    StoreError::NotFound(format!("list {list}"))
                }
                _ => pg_err(e),
            })?;
        let mut new = rows
            .iter()
            .map(|r| {
                Ok((
                    col::<String>(r, "members", 0)?,
                    col::<String>(r, "members", 1)?,
                ))
            })
            .collect::<Result<std::collections::HashSet<(String, String)>>>()?;
        // The first occurrence of a key in the batch is the new one.
        Ok(domains
            .into_iter()
            .zip(locals)
            .map(|k| new.remove(&k))
            .collect())
    }

    async fn remove_member(&self, list: &str, member_key: &str) -> Result<bool> {
        let (domain, local) = member_parts(member_key);
        let n = self
            .client()
            .await?
            .execute(
                "DELETE FROM members WHERE list = $1 AND domain = $2 AND local = $3",
                &[&list, &domain, &local],
            )
            .await
            .map_err(pg_err)?;
        Ok(n > 0)
    }

    async fn members(&self, list: &str) -> Result<Vec<Member>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT data FROM members WHERE list = $1 ORDER BY domain, local",
                &[&list],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| json(r, "members", 0)).collect()
    }

    async fn members_page(
        &self,
        list: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        // A range scan of members_list_key ('' sorts before every key).
        let rows = self
            .client()
            .await?
            .query(
                "SELECT data FROM members
                 WHERE list = $1 AND key > coalesce($2::text, '')
                 ORDER BY key LIMIT $3",
                &[&list, &after, &i64_of(limit as u64)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| json(r, "members", 0)).collect()
    }

    async fn delivery_addresses(&self, list: &str, received_at: u64) -> Result<Vec<String>> {
        // Only the address leaves the database; the filters read the record
        // with the defaults `Member` deserializes with.
        let rows = self
            .client()
            .await?
            .query(
                "SELECT data->>'address' FROM members
                 WHERE list = $1
                   AND coalesce((data->>'delivery_enabled')::boolean, true)
                   AND coalesce((data->>'added_at')::bigint, 0) <= $2
                 ORDER BY domain, local",
                &[&list, &i64_of(received_at)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| col(r, "members", 0)).collect()
    }

    async fn member_count(&self, list: &str) -> Result<u64> {
        let row = self
            .client()
            .await?
            .query_one("SELECT count(*) FROM members WHERE list = $1", &[&list])
            .await
            .map_err(pg_err)?;
        Ok(col::<i64>(&row, "members", 0)? as u64)
    }

    async fn member(&self, list: &str, member_key: &str) -> Result<Option<Member>> {
        bounce::member(&self.client().await?, list, member_key).await
    }

    async fn set_delivery(&self, list: &str, member_key: &str, enabled: bool) -> Result<bool> {
        bounce::set_delivery(&self.client().await?, list, member_key, enabled).await
    }

    async fn update_member(&self, list: &str, member: &Member) -> Result<bool> {
        moderation::update_member(&self.client().await?, list, member).await
    }
}

#[async_trait]
impl Queue for PostgresStore {
    async fn accept(&self, batch: Vec<NewMessage>) -> Result<Vec<AcceptOutcome>> {
        metrics::histogram!("listrelay_store_commit_batch_size").record(batch.len() as f64);
        let mut client = self.client().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.accept_once(&batch, &mut client).await {
                Ok(outcomes) => return Ok(outcomes),
                Err(e) if retryable(&e) && attempt < RETRIES => continue,
                Err(e) => return Err(pg_err(e)),
            }
        }
    }

    async fn message(&self, id: &str) -> Result<Option<MessageMeta>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT meta, state FROM messages WHERE id = $1", &[&id])
            .await
            .map_err(pg_err)?;
        row.map(|r| meta_of(&r)).transpose()
    }

    async fn message_body(&self, id: &str) -> Result<Vec<u8>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT body FROM messages WHERE id = $1", &[&id])
            .await
            .map_err(pg_err)?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
        col(&row, "messages", 0)
    }

    async fn messages(&self, queued_only: bool) -> Result<Vec<MessageMeta>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT meta, state FROM messages WHERE NOT $1 OR state = 'queued' ORDER BY id",
                &[&queued_only],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(meta_of).collect()
    }

    async fn finish_message(&self, id: &str, grace_secs: u64) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let row = tx
            .query_opt("SELECT meta FROM messages WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(pg_err)?
            .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
        let meta: MessageMeta = json(&row, "messages", 0)?;
        if let Some(d) = &meta.dedup {
            tx.execute(
                "UPDATE window_entries SET expires_at = $4
                 WHERE list = $1 AND message_id = $2 AND message = $3",
                &[
                    &meta.list,
                    &d.message_id,
                    &id,
                    &i64_of(now().saturating_add(grace_secs)),
                ],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.execute("DELETE FROM messages WHERE id = $1", &[&id])
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn window_entry(&self, list: &str, message_id: &str) -> Result<Option<WindowEntry>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT message, content_hash, expires_at FROM window_entries
                 WHERE list = $1 AND message_id = $2",
                &[&list, &message_id],
            )
            .await
            .map_err(pg_err)?;
        row.map(|r| window_of(&r, 0)).transpose()
    }

    async fn prune_window(&self) -> Result<usize> {
        let n = self
            .client()
            .await?
            .execute(
                "DELETE FROM window_entries WHERE expires_at IS NOT NULL AND expires_at <= $1",
                &[&i64_of(now())],
            )
            .await
            .map_err(pg_err)?;
        Ok(n as usize)
    }
}

#[async_trait]
impl Claims for PostgresStore {
    async fn unplanned_posts(&self) -> Result<Vec<MessageMeta>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT meta, state FROM messages m
                 WHERE is_post AND state = 'queued'
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.message = m.id)
                 ORDER BY id",
                &[],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(meta_of).collect()
    }

    async fn create_job(&self, job: Job, chunks: Vec<Vec<String>>) -> Result<Job> {
        claims::create_job(&mut self.client().await?, job, chunks).await
    }

    async fn claim_chunk(&self, owner: &str, lease_ms: u64) -> Result<Option<Claim>> {
        claims::claim_chunk(&self.client().await?, owner, lease_ms).await
    }

    async fn chunk_members(&self, job: &str, index: u32) -> Result<Vec<String>> {
        claims::chunk_members(&self.client().await?, job, index).await
    }

    async fn update_chunk(&self, owner: &str, state: &ChunkState, lease_ms: u64) -> Result<bool> {
        claims::update_chunk(&self.client().await?, owner, state, lease_ms).await
    }

    async fn complete_chunk(&self, owner: &str, state: &ChunkState) -> Result<Completion> {
        claims::complete_chunk(&mut self.client().await?, owner, state).await
    }

    async fn release_leases(&self, owner_prefix: &str) -> Result<usize> {
        // Owners written before the host-id came first were
        // `HOSTNAME#HOSTID:…`: those are released by the host-id too,
        // whatever hostname they ran under ('#' is in no host name).
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE chunks SET lease_expires_ms = 0
                 WHERE owner IS NOT NULL AND lease_expires_ms > 0
                   AND (starts_with(owner, $1)
                        OR (position('#' IN owner) > 0
                            AND starts_with(split_part(owner, '#', 2), $1)))",
                &[&owner_prefix],
            )
            .await
            .map_err(pg_err)?;
        Ok(n as usize)
    }

    async fn jobs(&self) -> Result<Vec<Job>> {
        claims::jobs(&self.client().await?).await
    }

    async fn chunks(&self) -> Result<Vec<ChunkState>> {
        claims::chunks(&self.client().await?).await
    }

    async fn record_failure(&self, failure: &DeliveryFailure) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO failures (list, data) VALUES ($1, $2)",
                &[&failure.list, &Json(failure)],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn failures(&self, list: &str) -> Result<Vec<DeliveryFailure>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT data FROM failures WHERE list = $1 ORDER BY id",
                &[&list],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| json(r, "failures", 0)).collect()
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
        let rows = self
            .client()
            .await?
            .query(
                "SELECT message, content_hash, expires_at, list, message_id FROM window_entries
                 ORDER BY list, message_id",
                &[],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    col(r, "window_entries", 3)?,
                    col(r, "window_entries", 4)?,
                    window_of(r, 0)?,
                ))
            })
            .collect()
    }

    async fn counters(&self) -> Result<Vec<(String, u64)>> {
        let rows = self
            .client()
            .await?
            .query("SELECT list, seq FROM counters ORDER BY list", &[])
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| Ok((col(r, "counters", 0)?, col::<i64>(r, "counters", 1)? as u64)))
            .collect()
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
        self.restore_batch(records).await
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn sync(&self) -> Result<()> {
        // Every write committed before it returned.
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

fn window_of(r: &Row, at: usize) -> Result<WindowEntry> {
    const T: &str = "window_entries";
    Ok(WindowEntry {
        message: col(r, T, at)?,
        content_hash: col(r, T, at + 1)?,
        expires_at: col::<Option<i64>>(r, T, at + 2)?.map(|t| t as u64),
    })
}
