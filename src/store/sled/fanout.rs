//! Jobs, chunks and leases in sled. A claim is a compare-and-swap on the
//! chunk's record, so workers never wait on a lock; multi-record changes
//! (creating a job, completing a chunk) are sled transactions.

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{get, key2, put, values, Trees};
use crate::clock::now_ms;
use crate::store::{ChunkState, Claim, Completion, DeliveryFailure, Job, Result, StoreError};

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
    (&t.jobs, &t.chunks, &t.chunk_members, &t.counters)
        .transaction(|(jobs, chunk_tree, member_tree, counters)| {
            if jobs.get(&job.post_id)?.is_some() {
                return Err(abort(StoreError::Exists(format!("job {}", job.post_id))));
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
    let result = (&t.jobs, &t.chunks, &t.chunk_members).transaction(|(jobs, chunks, members)| {
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
