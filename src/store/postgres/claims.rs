//! Planning, jobs, chunks and leases in PostgreSQL: the posts left to plan,
//! a job begun only for a post still queued, filled in batches and sealed, claims, progress, completion,
//! the release of a restarted host's leases and the clearing of orphan jobs.
//!
//! * A claim is ONE statement: it picks the first chunk that is free or whose
//!   lease expired (and whose `not_before_ms` passed) with
//!   `FOR UPDATE SKIP LOCKED`, so concurrent workers on any host skip each
//!   other's candidates instead of waiting, and raises its generation.
//! * Every progress, release or completion write carries
//!   `WHERE generation = $ AND owner = $` (fencing): a worker whose lease was
//!   taken over writes nothing.
//! * Leases are set and compared on the database clock (`lr_now_ms()`).
//!   Unlike the embedded store, leases are not expired at start: other hosts
//!   may be alive and holding them.

use deadpool_postgres::Client;
use tokio_postgres::types::Json;
use tokio_postgres::{GenericClient, Row};

use super::{col, i64_of, meta_of, pg_err};
use crate::store::{
    ChunkState, Claim, Completion, Job, MessageMeta, Result, RetryItem, StoreError,
};

const CHUNK_COLUMNS: &str = "job, idx, members, generation, owner, lease_expires_ms, \
     not_before_ms, cursor, retry, delivered, failed, failures";

const JOB_COLUMNS: &str = "message, list, seq, verp_percent, max_rcpt_per_txn, chunks, \
     chunks_done, recipients, delivered, failed, created_at";

fn chunk_of(r: &Row, at: usize) -> Result<ChunkState> {
    const T: &str = "chunks";
    Ok(ChunkState {
        job: col(r, T, at)?,
        index: col::<i32>(r, T, at + 1)? as u32,
        members: col::<i32>(r, T, at + 2)? as u32,
        generation: col::<i64>(r, T, at + 3)? as u64,
        owner: col(r, T, at + 4)?,
        lease_expires_ms: col::<i64>(r, T, at + 5)? as u64,
        not_before_ms: col::<i64>(r, T, at + 6)? as u64,
        cursor: col::<i32>(r, T, at + 7)? as u32,
        retry: col::<Json<Vec<RetryItem>>>(r, T, at + 8)?.0,
        delivered: col::<i32>(r, T, at + 9)? as u32,
        refused: col::<i32>(r, T, at + 10)? as u32,
        mta_failures: col::<i32>(r, T, at + 11)? as u32,
    })
}

fn job_of(r: &Row, at: usize) -> Result<Job> {
    const T: &str = "jobs";
    Ok(Job {
        post_id: col(r, T, at)?,
        list: col(r, T, at + 1)?,
        seq: col::<i64>(r, T, at + 2)? as u64,
        verp_percent: col::<i16>(r, T, at + 3)? as u8,
        max_rcpt_per_txn: col::<i32>(r, T, at + 4)? as u32,
        chunks: col::<i32>(r, T, at + 5)? as u32,
        chunks_done: col::<i32>(r, T, at + 6)? as u32,
        recipients: col::<i64>(r, T, at + 7)? as u64,
        delivered: col::<i64>(r, T, at + 8)? as u64,
        refused: col::<i64>(r, T, at + 9)? as u64,
        created_at: col::<i64>(r, T, at + 10)? as u64,
    })
}

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Inserts a job row as it is (planning and `import`).
pub async fn insert_job(
    c: &impl GenericClient,
    job: &Job,
) -> std::result::Result<u64, tokio_postgres::Error> {
    c.execute(
        &format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT DO NOTHING"
        ),
        &[
            &job.post_id,
            &job.list,
            &i64_of(job.seq),
            &i16::from(job.verp_percent),
            &i32_of(job.max_rcpt_per_txn),
            &i32_of(job.chunks),
            &i32_of(job.chunks_done),
            &i64_of(job.recipients),
            &i64_of(job.delivered),
            &i64_of(job.refused),
            &i64_of(job.created_at),
        ],
    )
    .await
}

/// Inserts a chunk as it is, without an owner (`import`).
pub async fn insert_chunk(
    c: &impl GenericClient,
    s: &ChunkState,
    members: &[String],
) -> std::result::Result<u64, tokio_postgres::Error> {
    c.execute(
        &format!(
            "INSERT INTO chunks ({CHUNK_COLUMNS}, addresses)
             VALUES ($1, $2, $3, $4, NULL, 0, $5, $6, $7, $8, $9, $10, $11)"
        ),
        &[
            &s.job,
            &i32_of(s.index),
            &i32_of(s.members),
            &i64_of(s.generation),
            &i64_of(s.not_before_ms),
            &i32_of(s.cursor),
            &Json(&s.retry),
            &i32_of(s.delivered),
            &i32_of(s.refused),
            &i32_of(s.mta_failures),
            &members,
        ],
    )
    .await
}

/// Locks the post's row (as `complete_chunk` does first, so the two never
/// deadlock) and says whether it is still queued; `NotFound` when it is
/// gone.
async fn post_queued(tx: &deadpool_postgres::Transaction<'_>, post: &str) -> Result<bool> {
    let row = tx
        .query_opt(
            "SELECT state FROM messages WHERE id = $1 FOR SHARE",
            &[&post],
        )
        .await
        .map_err(pg_err)?
        .ok_or_else(|| StoreError::NotFound(format!("message {post}")))?;
    Ok(col::<&str>(&row, "messages", 0)? == "queued")
}

fn not_queued(post: &str) -> StoreError {
    StoreError::Exists(format!(
        "job {post} (the post is no longer queued: planned and done, held, or finished)"
    ))
}

fn not_the_planners(post: &str) -> StoreError {
    StoreError::Exists(format!(
        "job {post} (its draft is another planner's, or sealed: planning stops)"
    ))
}

/// Begins a post's job as a draft row of `planner`. The post must still be
/// queued: a job whose last chunk completed marks its post done in the same
/// transaction, so a planner on another host that saw the post before
/// cannot plan it a second time; and a post held for the moderators
/// meanwhile is not planned. A draft whose planner's lease expired (or
/// `planner`'s own) is taken over and its chunks deleted, in the same
/// transaction.
pub async fn begin_job(c: &mut Client, job: &Job, planner: &str, lease_ms: u64) -> Result<()> {
    let tx = c.transaction().await.map_err(pg_err)?;
    if !post_queued(&tx, &job.post_id).await? {
        return Err(not_queued(&job.post_id));
    }
    let row = tx
        .query_opt(
            "INSERT INTO jobs (message, list, seq, verp_percent, max_rcpt_per_txn, chunks,
                               chunks_done, recipients, delivered, failed, created_at,
                               sealed, planner, plan_expires_ms)
             VALUES ($1, $2, 0, $3, $4, 0, 0, 0, 0, 0, $5, false, $6, lr_now_ms() + $7)
             ON CONFLICT (message) DO UPDATE
                SET list = EXCLUDED.list, verp_percent = EXCLUDED.verp_percent,
                    max_rcpt_per_txn = EXCLUDED.max_rcpt_per_txn, chunks = 0,
                    recipients = 0, created_at = EXCLUDED.created_at,
                    planner = EXCLUDED.planner, plan_expires_ms = EXCLUDED.plan_expires_ms
              WHERE NOT jobs.sealed
                AND (jobs.planner = EXCLUDED.planner OR jobs.plan_expires_ms <= lr_now_ms())
             RETURNING NOT (xmax = 0)",
            &[
                &job.post_id,
                &job.list,
                &i16::from(job.verp_percent),
                &i32_of(job.max_rcpt_per_txn),
                &i64_of(job.created_at),
                &planner,
                &i64_of(lease_ms),
            ],
        )
        .await
        .map_err(pg_err)?;
    let Some(row) = row else {
        return Err(StoreError::Exists(format!(
            "job {} (planned, or being planned by a live planner)",
            job.post_id
        )));
    };
    if col::<bool>(&row, "jobs", 0)? {
        // A draft was taken over: its planner's chunks go with it.
        tx.execute("DELETE FROM chunks WHERE job = $1", &[&job.post_id])
            .await
            .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)
}

/// Appends chunks to `planner`'s draft in one transaction: the draft row
/// (fenced by planner) counts them and renews the lease, then the rows go
/// in, numbered after those already there.
pub async fn add_chunks(
    c: &mut Client,
    post: &str,
    planner: &str,
    chunks: Vec<Vec<String>>,
    lease_ms: u64,
) -> Result<()> {
    let n = chunks.len() as i64;
    let recipients: i64 = chunks.iter().map(|c| c.len() as i64).sum();
    let joined: Vec<String> = chunks.iter().map(|m| m.join("\n")).collect();
    drop(chunks);
    let tx = c.transaction().await.map_err(pg_err)?;
    let row = tx
        .query_opt(
            "UPDATE jobs SET chunks = chunks + $3, recipients = recipients + $4,
                    plan_expires_ms = lr_now_ms() + $5
              WHERE message = $1 AND NOT sealed AND planner = $2
             RETURNING chunks - $3",
            &[&post, &planner, &(n as i32), &recipients, &i64_of(lease_ms)],
        )
        .await
        .map_err(pg_err)?
        .ok_or_else(|| not_the_planners(post))?;
    let first: i32 = col(&row, "jobs", 0)?;
    tx.execute(
        "INSERT INTO chunks (job, idx, members, addresses)
         SELECT $1, $2 + (i - 1)::integer, cardinality(a), a
         FROM unnest($3::text[]) WITH ORDINALITY AS t(m, i),
              LATERAL (SELECT string_to_array(m, E'\\n') AS a) AS s",
        &[&post, &first, &joined],
    )
    .await
    .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)
}

/// Seals `planner`'s draft: takes the list's next post counter and marks
/// the job sealed in one transaction that checks the post is still queued
/// (a post no longer queued drops the draft and its chunks instead).
pub async fn seal_job(c: &mut Client, post: &str, planner: &str) -> Result<Job> {
    let tx = c.transaction().await.map_err(pg_err)?;
    if !post_queued(&tx, post).await? {
        tx.execute(
            "DELETE FROM jobs WHERE message = $1 AND NOT sealed AND planner = $2",
            &[&post, &planner],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        return Err(not_queued(post));
    }
    let row = tx
        .query_opt(
            "SELECT list, chunks FROM jobs
              WHERE message = $1 AND NOT sealed AND planner = $2 FOR UPDATE",
            &[&post, &planner],
        )
        .await
        .map_err(pg_err)?
        .ok_or_else(|| not_the_planners(post))?;
    let (list, chunks): (String, i32) = (col(&row, "jobs", 0)?, col(&row, "jobs", 1)?);
    if chunks == 0 {
        return Err(StoreError::Invalid(format!(
            "job {post} has no chunks: a post without recipients is finished, not planned"
        )));
    }
    let counter = tx
        .query_one(
            "INSERT INTO counters (list, seq) VALUES ($1, 0)
             ON CONFLICT (list) DO UPDATE SET seq = counters.seq + 1
             RETURNING seq",
            &[&list],
        )
        .await
        .map_err(pg_err)?;
    let seq: i64 = col(&counter, "counters", 0)?;
    super::digest::enter(&tx, post, seq).await?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE jobs SET sealed = true, planner = NULL, plan_expires_ms = 0, seq = $2
                  WHERE message = $1
                 RETURNING {JOB_COLUMNS}"
            ),
            &[&post, &seq],
        )
        .await
        .map_err(pg_err)?;
    let job = job_of(&row, 0)?;
    tx.commit().await.map_err(pg_err)?;
    Ok(job)
}

pub async fn claim_chunk(c: &Client, owner: &str, lease_ms: u64) -> Result<Option<Claim>> {
    let sql = format!(
        "WITH candidate AS (
             SELECT job, idx, owner AS previous FROM chunks
             WHERE not_before_ms <= lr_now_ms()
               AND (owner IS NULL OR lease_expires_ms <= lr_now_ms())
               AND EXISTS (SELECT 1 FROM jobs WHERE message = chunks.job AND sealed)
             ORDER BY job, idx
             LIMIT 1
             FOR UPDATE SKIP LOCKED)
         UPDATE chunks AS c
            SET generation = c.generation + 1, owner = $1,
                lease_expires_ms = lr_now_ms() + $2
           FROM candidate, jobs AS j
          WHERE c.job = candidate.job AND c.idx = candidate.idx AND j.message = c.job
         RETURNING {}, candidate.previous IS NOT NULL, {}",
        prefixed("c", CHUNK_COLUMNS),
        prefixed("j", JOB_COLUMNS)
    );
    let stmt = c.prepare_cached(&sql).await.map_err(pg_err)?;
    let row = c
        .query_opt(&stmt, &[&owner, &i64_of(lease_ms)])
        .await
        .map_err(pg_err)?;
    row.map(|r| {
        Ok(Claim {
            chunk: chunk_of(&r, 0)?,
            takeover: col(&r, "chunks", 12)?,
            job: job_of(&r, 13)?,
        })
    })
    .transpose()
}

fn prefixed(table: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{table}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn chunk_members(c: &Client, job: &str, index: u32) -> Result<Vec<String>> {
    let row = c
        .query_opt(
            "SELECT addresses FROM chunks WHERE job = $1 AND idx = $2",
            &[&job, &i32_of(index)],
        )
        .await
        .map_err(pg_err)?
        .ok_or_else(|| StoreError::NotFound(format!("members of chunk {job}/{index}")))?;
    col(&row, "chunks", 0)
}

pub async fn update_chunk(c: &Client, owner: &str, s: &ChunkState, lease_ms: u64) -> Result<bool> {
    let stmt = c
        .prepare_cached(
            "UPDATE chunks
                SET owner = $3,
                    lease_expires_ms = CASE WHEN $3::text IS NULL THEN $4
                                            ELSE lr_now_ms() + $5 END,
                    not_before_ms = $6, cursor = $7, retry = $8, delivered = $9,
                    failed = $10, failures = $11
              WHERE job = $1 AND idx = $2 AND generation = $12 AND owner = $13",
        )
        .await
        .map_err(pg_err)?;
    let n = c
        .execute(
            &stmt,
            &[
                &s.job,
                &i32_of(s.index),
                &s.owner,
                &i64_of(s.lease_expires_ms),
                &i64_of(lease_ms),
                &i64_of(s.not_before_ms),
                &i32_of(s.cursor),
                &Json(&s.retry),
                &i32_of(s.delivered),
                &i32_of(s.refused),
                &i32_of(s.mta_failures),
                &i64_of(s.generation),
                &owner,
            ],
        )
        .await
        .map_err(pg_err)?;
    if n == 0 {
        metrics::counter!("listrelay_fanout_fenced_writes_total").increment(1);
    }
    Ok(n > 0)
}

pub async fn complete_chunk(c: &mut Client, owner: &str, s: &ChunkState) -> Result<Completion> {
    let tx = c.transaction().await.map_err(pg_err)?;
    // The post's row is locked first, as `create_job` locks it first: a
    // planner on another host that listed the post before it was planned
    // waits for this completion, then sees the post done; and the two never
    // deadlock on the job row.
    tx.execute(
        "SELECT 1 FROM messages WHERE id = $1 FOR NO KEY UPDATE",
        &[&s.job],
    )
    .await
    .map_err(pg_err)?;
    let removed = tx
        .execute(
            "DELETE FROM chunks WHERE job = $1 AND idx = $2 AND generation = $3 AND owner = $4",
            &[&s.job, &i32_of(s.index), &i64_of(s.generation), &owner],
        )
        .await
        .map_err(pg_err)?;
    if removed == 0 {
        metrics::counter!("listrelay_fanout_fenced_writes_total").increment(1);
        tracing::warn!(job = %s.job, chunk = s.index, %owner,
            "completion refused: the chunk's lease was taken over");
        return Ok(Completion::LeaseLost);
    }
    let row = tx
        .query_opt(
            &format!(
                "UPDATE jobs SET chunks_done = chunks_done + 1,
                        delivered = delivered + $2, failed = failed + $3
                  WHERE message = $1
                 RETURNING {JOB_COLUMNS}"
            ),
            &[&s.job, &i64::from(s.delivered), &i64::from(s.refused)],
        )
        .await
        .map_err(pg_err)?;
    let Some(row) = row else {
        // A chunk whose job is gone: nothing to count it in.
        tx.commit().await.map_err(pg_err)?;
        return Ok(Completion::ChunkDone);
    };
    let job = job_of(&row, 0)?;
    let done = job.chunks_done >= job.chunks;
    if done {
        tx.execute("DELETE FROM jobs WHERE message = $1", &[&job.post_id])
            .await
            .map_err(pg_err)?;
        tx.execute(
            "UPDATE messages SET state = 'done', meta = jsonb_set(meta, '{state}', '\"done\"')
             WHERE id = $1",
            &[&job.post_id],
        )
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(if done {
        Completion::JobDone(job)
    } else {
        Completion::ChunkDone
    })
}

/// Deletes the jobs (and, by cascade, the chunks) whose post is gone or
/// done: a job ends with its post in one transaction, so these are left by
/// an older listrelay or a hand edit, and their chunks would fail forever
/// (or, worse, deliver a post twice). Returns the posts and lists cleared.
pub async fn clear_orphans(c: &Client) -> Result<Vec<(String, String)>> {
    let rows = c
        .query(
            "DELETE FROM jobs AS j
              WHERE NOT EXISTS (SELECT 1 FROM messages AS m
                                 WHERE m.id = j.message AND m.state <> 'done')
             RETURNING message, list",
            &[],
        )
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| Ok((col(r, "jobs", 0)?, col(r, "jobs", 1)?)))
        .collect()
}

pub async fn jobs(c: &Client) -> Result<Vec<Job>> {
    let rows = c
        .query(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE sealed ORDER BY message"),
            &[],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| job_of(r, 0)).collect()
}

pub async fn chunks(c: &Client) -> Result<Vec<ChunkState>> {
    let rows = c
        .query(
            &format!(
                "SELECT {CHUNK_COLUMNS} FROM chunks
                  WHERE EXISTS (SELECT 1 FROM jobs WHERE message = chunks.job AND sealed)
                  ORDER BY job, idx"
            ),
            &[],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| chunk_of(r, 0)).collect()
}

pub async fn unplanned_posts(c: &Client) -> Result<Vec<MessageMeta>> {
    let rows = c
        .query(
            "SELECT meta, state FROM messages m
                 WHERE is_post AND state = 'queued'
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.message = m.id
                                     AND (j.sealed OR j.plan_expires_ms > lr_now_ms()))
                 ORDER BY id",
            &[],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(meta_of).collect()
}

/// Expires the chunk leases and the planning leases (drafts) of a previous
/// run of this host: its chunks are claimed and its half-planned posts
/// planned again at once.
pub async fn release_leases(c: &Client, owner_prefix: &str) -> Result<usize> {
    let drafts = c
        .execute(
            "UPDATE jobs SET plan_expires_ms = 0
              WHERE NOT sealed AND plan_expires_ms > 0 AND starts_with(planner, $1)",
            &[&owner_prefix],
        )
        .await
        .map_err(pg_err)?;
    // Owners written before the host-id came first were
    // `HOSTNAME#HOSTID:…`: those are released by the host-id too,
    // whatever hostname they ran under ('#' is in no host name).
    let n = c
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
    Ok((n + drafts) as usize)
}
