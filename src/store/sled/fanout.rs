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

fn abort(e: impl Into<StoreError>) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e.into())
}

/// Creates a post's job, in one transaction that also checks the post is
/// still queued: a post already planned, done (its last chunk completed) or
/// finished (gone) is refused with `Exists`, so a planner working from an
/// old list of unplanned posts never plans one twice.
pub fn create_job(t: &Trees, mut job: Job, chunks: Vec<Vec<String>>) -> Result<Job> {
    job.chunks = chunks.len() as u32;
    job.recipients = chunks.iter().map(|c| c.len() as u64).sum();
    let encoded: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = chunks
        .iter()
        .enumerate()
        .map(|(i, members)| {
            let state = ChunkState {
                job: job.post_id.clone(),
                index: i as u32,
                members: members.len() as u32,
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
            Ok((
                chunk_key(&job.post_id, i as u32),
                serde_json::to_vec(&state)?,
                members.join("\n").into_bytes(),
            ))
        })
        .collect::<Result<_>>()?;
    drop(chunks);
    (
        &t.jobs,
        &t.chunks,
        &t.chunk_members,
        &t.counters,
        &t.messages,
    )
        .transaction(|(jobs, chunk_tree, member_tree, counters, messages)| {
            if jobs.get(&job.post_id)?.is_some() {
                return Err(abort(StoreError::Exists(format!("job {}", job.post_id))));
            }
            let queued = match messages.get(&job.post_id)? {
                Some(v) => {
                    serde_json::from_slice::<MessageMeta>(&v)
                        .map_err(abort)?
                        .state
                        == MessageState::Queued
                }
                None => false,
            };
            if !queued {
                return Err(abort(StoreError::Exists(format!(
                    "job {} (the post is no longer queued: planned and done, or finished)",
                    job.post_id
                ))));
            }
            let seq = match counters.get(&job.list)? {
                Some(v) => v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0) + 1,
                None => 0,
            };
            counters.insert(job.list.as_bytes(), &seq.to_be_bytes())?;
            let mut j = job.clone();
            j.seq = seq;
            jobs.insert(j.post_id.as_bytes(), serde_json::to_vec(&j).map_err(abort)?)?;
            for (key, state, members) in &encoded {
                chunk_tree.insert(key.as_slice(), state.as_slice())?;
                member_tree.insert(key.as_slice(), members.as_slice())?;
            }
            Ok(j)
        })
        .map_err(tx_err)
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
