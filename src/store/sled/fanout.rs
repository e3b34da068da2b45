//! Jobs, chunks and leases in sled. A claim is a compare-and-swap on the
//! chunk's record, so workers never wait on a lock; multi-record changes
//! (creating a job, completing a chunk) are sled transactions.

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{get, key2, put, values, Trees};
use crate::clock::now_ms;
use crate::store::{
    ChunkState, Claim, Completion, DeliveryFailure, Job, MessageMeta, MessageState, Result,
    StoreError,
};

pub(super) fn chunk_key(job: &str, index: u32) -> Vec<u8> {
    let mut k = key2(job, "");
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub(super) fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

pub(super) fn abort(e: impl Into<StoreError>) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e.into())
}

/// A job being planned, kept until it is sealed.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Draft {
    /// The job as the planner began it (settings taken at planning).
    job: Job,
    /// Who is planning it: only they may add chunks or seal it.
    planner: String,
    /// When another planner may take it over (this one died).
    lease_expires_ms: u64,
    /// Members of each chunk written so far, by index: the chunk states
    /// are made from them at the seal.
    sizes: Vec<u32>,
}

/// The key prefix of every chunk of a job.
fn job_prefix(post: &str) -> Vec<u8> {
    key2(post, "")
}

/// Whether the post is still queued (not held, done or finished).
fn queued(messages: &sled::transaction::TransactionalTree, post: &str) -> TxResult<bool> {
    Ok(match messages.get(post)? {
        Some(v) => {
            serde_json::from_slice::<MessageMeta>(&v)
                .map_err(abort)?
                .state
                == MessageState::Queued
        }
        None => false,
    })
}

pub(super) type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

fn not_queued(post: &str) -> StoreError {
    StoreError::Exists(format!(
        "job {post} (the post is no longer queued: planned and done, or finished)"
    ))
}

fn not_the_planners(post: &str) -> StoreError {
    StoreError::Exists(format!(
        "job {post} (its draft is another planner's, or sealed: planning stops)"
    ))
}

/// Begins a post's job as a draft of `planner`, in one transaction that
/// checks the post is still queued and has no job (a planner working from
/// an old list of unplanned posts never plans one twice). A draft of a
/// planner whose lease expired, or of `planner` itself, is replaced, and its
/// member lists are removed before this returns.
pub fn begin_job(t: &Trees, job: &Job, planner: &str, lease_ms: u64) -> Result<()> {
    let now = now_ms();
    let draft = serde_json::to_vec(&Draft {
        job: job.clone(),
        planner: planner.to_string(),
        lease_expires_ms: now + lease_ms,
        sizes: Vec::new(),
    })?;
    let post = job.post_id.as_str();
    let replaced = (&t.jobs, &t.drafts, &t.messages)
        .transaction(|(jobs, drafts, messages)| {
            if jobs.get(post)?.is_some() {
                return Err(abort(StoreError::Exists(format!("job {post}"))));
            }
            if !queued(messages, post)? {
                return Err(abort(not_queued(post)));
            }
            let old = match drafts.get(post)? {
                Some(v) => Some(serde_json::from_slice::<Draft>(&v).map_err(abort)?),
                None => None,
            };
            if let Some(old) = &old {
                if old.planner != planner && old.lease_expires_ms > now {
                    return Err(abort(StoreError::Exists(format!(
                        "job {post} (being planned by {})",
                        old.planner
                    ))));
                }
            }
            drafts.insert(post.as_bytes(), draft.as_slice())?;
            Ok(old.is_some())
        })
        .map_err(tx_err)?;
    if replaced {
        // The old planner's writes are fenced from now on: its lists can go.
        remove_chunk_members(t, post)?;
    }
    Ok(())
}

/// Removes every member list written for a post's chunks.
fn remove_chunk_members(t: &Trees, post: &str) -> Result<()> {
    let mut batch = sled::Batch::default();
    for key in t.chunk_members.scan_prefix(job_prefix(post)).keys() {
        batch.remove(key?);
    }
    t.chunk_members.apply_batch(batch)?;
    Ok(())
}

/// Appends chunks to `planner`'s draft: their member lists and the draft's
/// sizes in one transaction, so a planner that lost the draft writes
/// nothing.
pub fn add_chunks(
    t: &Trees,
    post: &str,
    planner: &str,
    chunks: &[Vec<String>],
    lease_ms: u64,
) -> Result<()> {
    let lists: Vec<Vec<u8>> = chunks.iter().map(|m| m.join("\n").into_bytes()).collect();
    let now = now_ms();
    (&t.drafts, &t.chunk_members)
        .transaction(|(drafts, members)| {
            let Some(v) = drafts.get(post)? else {
                return Err(abort(not_the_planners(post)));
            };
            let mut draft: Draft = serde_json::from_slice(&v).map_err(abort)?;
            if draft.planner != planner {
                return Err(abort(not_the_planners(post)));
            }
            for (list, chunk) in lists.iter().zip(chunks) {
                let index = draft.sizes.len() as u32;
                members.insert(chunk_key(post, index), list.as_slice())?;
                draft.sizes.push(chunk.len() as u32);
            }
            draft.lease_expires_ms = now + lease_ms;
            drafts.insert(post.as_bytes(), serde_json::to_vec(&draft).map_err(abort)?)?;
            Ok(())
        })
        .map_err(tx_err)
}

/// Seals `planner`'s draft: the job, its chunk states and the list's next
/// post counter in one transaction that checks the post is still queued.
/// A post no longer queued drops the draft (and its lists) instead.
///
/// With `digest` (the post's bytes, when its list has digests on and the
/// post is for the regular members), the same transaction enters the post
/// for the list's next digest issue under its `seq`: exactly once, since a
/// post is sealed once.
pub fn seal_job(t: &Trees, post: &str, planner: &str, digest: Option<&[u8]>) -> Result<Job> {
    let trees = (
        &t.jobs,
        &t.chunks,
        &t.drafts,
        &t.counters,
        &t.messages,
        &t.digest_entries,
        &t.digest_bodies,
    );
    let sealed = trees
        .transaction(
            |(jobs, chunk_tree, drafts, counters, messages, entries, bodies)| {
                let Some(v) = drafts.get(post)? else {
                    return Err(abort(not_the_planners(post)));
                };
                let draft: Draft = serde_json::from_slice(&v).map_err(abort)?;
                if draft.planner != planner || jobs.get(post)?.is_some() {
                    return Err(abort(not_the_planners(post)));
                }
                if !queued(messages, post)? {
                    drafts.remove(post.as_bytes())?;
                    return Ok(Err(not_queued(post)));
                }
                if draft.sizes.is_empty() {
                    return Err(abort(StoreError::Invalid(format!(
                    "job {post} has no chunks: a post without recipients is finished, not planned"
                ))));
                }
                let seq = match counters.get(&draft.job.list)? {
                    Some(v) => v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0) + 1,
                    None => 0,
                };
                counters.insert(draft.job.list.as_bytes(), &seq.to_be_bytes())?;
                if let Some(body) = digest {
                    let meta: MessageMeta = match messages.get(post)? {
                        Some(v) => serde_json::from_slice(&v).map_err(abort)?,
                        None => return Err(abort(not_queued(post))),
                    };
                    super::digest::enter(entries, bodies, &meta, seq, body)?;
                }
                let mut job = draft.job.clone();
                job.seq = seq;
                job.chunks = draft.sizes.len() as u32;
                job.recipients = draft.sizes.iter().map(|&n| u64::from(n)).sum();
                jobs.insert(post.as_bytes(), serde_json::to_vec(&job).map_err(abort)?)?;
                for (i, &members) in draft.sizes.iter().enumerate() {
                    let state = ChunkState {
                        job: post.to_string(),
                        index: i as u32,
                        members,
                        generation: 0,
                        owner: None,
                        lease_expires_ms: 0,
                        not_before_ms: 0,
                        cursor: 0,
                        retry: Vec::new(),
                        delivered: 0,
                        refused: 0,
                        mta_failures: 0,
                    };
                    let v = serde_json::to_vec(&state).map_err(abort)?;
                    chunk_tree.insert(chunk_key(post, i as u32), v)?;
                }
                drafts.remove(post.as_bytes())?;
                Ok(Ok(job))
            },
        )
        .map_err(tx_err)?;
    if sealed.is_err() {
        remove_chunk_members(t, post)?;
    }
    sealed
}

/// Enters a post without regular recipients for the digest: its `seq`, its
/// entry and its state done, in one transaction that checks it is still
/// queued and has no job; `false` otherwise (never entered twice).
pub fn seal_digest_only(t: &Trees, post: &str, body: &[u8]) -> Result<bool> {
    let trees = (
        &t.jobs,
        &t.counters,
        &t.messages,
        &t.digest_entries,
        &t.digest_bodies,
    );
    trees
        .transaction(|(jobs, counters, messages, entries, bodies)| {
            if jobs.get(post)?.is_some() || !queued(messages, post)? {
                return Ok(false);
            }
            let Some(v) = messages.get(post)? else {
                return Ok(false);
            };
            let mut meta: MessageMeta = serde_json::from_slice(&v).map_err(abort)?;
            let seq = match counters.get(&meta.list)? {
                Some(v) => v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0) + 1,
                None => 0,
            };
            counters.insert(meta.list.as_bytes(), &seq.to_be_bytes())?;
            super::digest::enter(entries, bodies, &meta, seq, body)?;
            meta.state = MessageState::Done;
            messages.insert(post.as_bytes(), serde_json::to_vec(&meta).map_err(abort)?)?;
            Ok(true)
        })
        .map_err(tx_err)
}

/// Discards every draft with its member lists: in an embedded store they
/// were left by a crash (sled admits one process), and their posts are
/// planned again from the start. The lists go first, so a crash in between
/// leaves the draft to discard again. Returns how many.
pub fn discard_drafts(t: &Trees) -> Result<usize> {
    let mut n = 0;
    for key in t.drafts.iter().keys() {
        let key = key?;
        let post = String::from_utf8_lossy(&key).into_owned();
        tracing::warn!(%post, "discarding a job a crash left half planned");
        remove_chunk_members(t, &post)?;
        t.drafts.remove(&key)?;
        n += 1;
    }
    Ok(n)
}

pub fn claim_chunk(t: &Trees, owner: &str, lease_ms: u64) -> Result<Option<Claim>> {
    let now = now_ms();
    for kv in t.chunks.iter() {
        let (key, old) = kv?;
        let state: ChunkState = serde_json::from_slice(&old)?;
        if !state.claimable(now) {
            continue;
        }
        let takeover = state.owner.is_some();
        let mut new = state;
        new.generation += 1;
        new.owner = Some(owner.to_string());
        new.lease_expires_ms = now + lease_ms;
        let bytes = serde_json::to_vec(&new)?;
        // Lost the race for this chunk: another worker has it; look further.
        if t.chunks
            .compare_and_swap(&key, Some(old), Some(bytes))?
            .is_err()
        {
            continue;
        }
        let Some(job) = get::<Job>(&t.jobs, &new.job)? else {
            // A chunk without its job cannot happen (one transaction makes both).
            return Err(StoreError::Backend(format!(
                "chunk of missing job {}",
                new.job
            )));
        };
        return Ok(Some(Claim {
            job,
            chunk: new,
            takeover,
        }));
    }
    Ok(None)
}

pub fn chunk_members(t: &Trees, job: &str, index: u32) -> Result<Vec<String>> {
    let v = t
        .chunk_members
        .get(chunk_key(job, index))?
        .ok_or_else(|| StoreError::NotFound(format!("members of chunk {job}/{index}")))?;
    Ok(String::from_utf8_lossy(&v)
        .split('\n')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

/// Whether `cur` is still held by `owner` under the generation it claimed.
pub(super) fn holds(cur: &ChunkState, owner: &str, generation: u64) -> bool {
    cur.generation == generation && cur.owner.as_deref() == Some(owner)
}

pub fn complete_chunk(t: &Trees, owner: &str, state: &ChunkState) -> Result<Completion> {
    let key = chunk_key(&state.job, state.index);
    let trees = (&t.jobs, &t.chunks, &t.chunk_members, &t.messages);
    let result = trees.transaction(|(jobs, chunks, members, messages)| {
        let Some(old) = chunks.get(&key)? else {
            return Ok(None);
        };
        let cur: ChunkState = serde_json::from_slice(&old).map_err(abort)?;
        if !holds(&cur, owner, state.generation) {
            return Ok(None);
        }
        chunks.remove(key.as_slice())?;
        members.remove(key.as_slice())?;
        let Some(jv) = jobs.get(&state.job)? else {
            // A chunk whose job is gone: nothing to count it in.
            return Ok(Some(Completion::ChunkDone));
        };
        let mut job: Job = serde_json::from_slice(&jv).map_err(abort)?;
        job.chunks_done += 1;
        job.delivered += u64::from(state.delivered);
        job.refused += u64::from(state.refused);
        if job.chunks_done >= job.chunks {
            jobs.remove(job.post_id.as_bytes())?;
            // Done in the same step, so it is never planned again; the
            // worker finishes it next (or, after a crash, moderation's
            // periodic sweep of done posts).
            if let Some(mv) = messages.get(&job.post_id)? {
                let mut meta: MessageMeta = serde_json::from_slice(&mv).map_err(abort)?;
                meta.state = MessageState::Done;
                messages.insert(
                    job.post_id.as_bytes(),
                    serde_json::to_vec(&meta).map_err(abort)?,
                )?;
            }
            Ok(Some(Completion::JobDone(job)))
        } else {
            jobs.insert(
                job.post_id.as_bytes(),
                serde_json::to_vec(&job).map_err(abort)?,
            )?;
            Ok(Some(Completion::ChunkDone))
        }
    });
    match result.map_err(tx_err)? {
        None => {
            metrics::counter!("listrelay_fanout_fenced_writes_total").increment(1);
            tracing::warn!(job = %state.job, chunk = state.index, %owner,
                "completion refused: the chunk's lease was taken over");
            Ok(Completion::LeaseLost)
        }
        Some(done) => Ok(done),
    }
}

/// Leases in an embedded store belong to a process that has exited: sled
/// admits one process at a time. Expire them so work resumes at once.
pub fn expire_leases(t: &Trees) -> Result<usize> {
    expire_leases_of(t, "")
}

/// Expires the leases whose owner starts with `prefix`.
pub fn expire_leases_of(t: &Trees, prefix: &str) -> Result<usize> {
    let mut n = 0;
    for kv in t.chunks.iter() {
        let (key, v) = kv?;
        let mut state: ChunkState = serde_json::from_slice(&v)?;
        if state
            .owner
            .as_deref()
            .is_some_and(|o| o.starts_with(prefix) && state.lease_expires_ms > 0)
        {
            state.lease_expires_ms = 0;
            put(&t.chunks, key, &state)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Removes the jobs whose post is gone and the chunks whose job is gone
/// (none should exist: a crash or an old defect left them), so no chunk
/// fails forever on a missing spool file. Returns how many were removed.
pub fn clear_orphan_jobs(t: &Trees) -> Result<usize> {
    let mut n = 0;
    for kv in t.jobs.iter() {
        let (id, _) = kv?;
        if !t.messages.contains_key(&id)? {
            tracing::warn!(job = %String::from_utf8_lossy(&id), "removing a job whose post is gone");
            t.jobs.remove(&id)?;
            n += 1;
        }
    }
    for key in t.chunks.iter().keys() {
        let key = key?;
        let job = key.split(|&b| b == 0).next().unwrap_or_default();
        if !t.jobs.contains_key(job)? {
            t.chunks.remove(&key)?;
            t.chunk_members.remove(&key)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Writes a chunk as exported (without an owner) with its member list.
pub fn restore_chunk(t: &Trees, state: &ChunkState, members: &[String]) -> Result<()> {
    let key = chunk_key(&state.job, state.index);
    let mut state = state.clone();
    state.owner = None;
    state.lease_expires_ms = 0;
    put(&t.chunks, &key, &state)?;
    t.chunk_members
        .insert(key.as_slice(), members.join("\n").into_bytes())?;
    Ok(())
}

pub fn record_failure(t: &Trees, f: &DeliveryFailure) -> Result<()> {
    let id = crate::store::new_id();
    put(&t.failures, key2(&f.list, &id), f)
}

pub fn failures(t: &Trees, list: &str) -> Result<Vec<DeliveryFailure>> {
    values(t.failures.scan_prefix(key2(list, "")))
}
