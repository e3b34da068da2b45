//! Fan-out work as the store keeps it: a job per post, cut into chunks of
//! members, each chunk claimed by one worker at a time under a lease.

use serde::{Deserialize, Serialize};

/// The fan-out of one post, over the members it had when it was accepted.
/// What [`super::Claims::complete_chunk`] did: the worker must tell a lost
/// lease (stop, write nothing more) from a chunk that was simply not the
/// job's last one.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// The chunk is gone and its counts are in the job; other chunks remain.
    ChunkDone,
    /// That was the job's last chunk: the job is gone and its post is done.
    JobDone(Job),
    /// The chunk's lease was taken over (or the chunk is gone): nothing was
    /// written.
    LeaseLost,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The store id of the post being fanned out (serialized as `message`,
    /// its name in existing records).
    #[serde(rename = "message")]
    pub post_id: String,
    /// Key of the list.
    pub list: String,
    /// The list's post counter at planning: rotates which members get VERP.
    pub seq: u64,
    /// Settings taken at planning, so a recovered chunk repeats its choices.
    pub verp_percent: u8,
    pub max_rcpt_per_txn: u32,
    pub chunks: u32,
    pub chunks_done: u32,
    pub recipients: u64,
    pub delivered: u64,
    /// Recipients the MTA refused for good (5xx) at hand-off.
    #[serde(rename = "failed")]
    pub refused: u64,
    pub created_at: u64,
}

/// The mutable state of one chunk. Only the lease holder may change it; each
/// claim raises `generation`, and every write checks it (fencing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkState {
    pub job: String,
    pub index: u32,
    pub members: u32,
    pub generation: u64,
    pub owner: Option<String>,
    pub lease_expires_ms: u64,
    /// Not to be claimed before this (backoff after a failure or for retries).
    pub not_before_ms: u64,
    /// Transactions of the chunk's plan the MTA has accepted, in plan order.
    pub cursor: u32,
    /// Recipients the MTA deferred (4xx), to be sent again.
    pub retry: Vec<RetryItem>,
    pub delivered: u32,
    /// Recipients the MTA refused for good (5xx) at hand-off.
    #[serde(rename = "failed")]
    pub refused: u32,
    /// Consecutive times the MTA could not be reached or refused the
    /// session, for the backoff.
    #[serde(rename = "failures")]
    pub mta_failures: u32,
}

impl ChunkState {
    pub fn claimable(&self, now: u64) -> bool {
        self.not_before_ms <= now && (self.owner.is_none() || self.lease_expires_ms <= now)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryItem {
    pub address: String,
    pub attempts: u32,
    pub first_ms: u64,
    pub next_ms: u64,
    /// The last temporary failure, e.g. "452 4.3.1 insufficient storage".
    pub last_error: String,
}

/// A chunk held by a worker.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job: Job,
    pub chunk: ChunkState,
    /// Whether the previous holder's lease expired (a takeover).
    pub takeover: bool,
}

/// A recipient the MTA refused for good at hand-off (5xx), for bounce scoring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFailure {
    pub list: String,
    pub member: String,
    pub message: String,
    pub reply: String,
    pub at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renamed fields keep their stored names: records written before the
    /// rename (sled trees, progress journals, exports) stay readable.
    #[test]
    fn stored_field_names_do_not_change() {
        let job: Job = serde_json::from_str(
            r#"{"message":"m1","list":"dev@l.org","seq":1,"verp_percent":100,
                "max_rcpt_per_txn":100,"chunks":1,"chunks_done":0,"recipients":3,
                "delivered":1,"failed":2,"created_at":5}"#,
        )
        .unwrap();
        assert_eq!((job.post_id.as_str(), job.refused), ("m1", 2));
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(
            (v["message"].as_str(), v["failed"].as_u64()),
            (Some("m1"), Some(2))
        );
        let chunk: ChunkState = serde_json::from_str(
            r#"{"job":"m1","index":0,"members":3,"generation":1,"owner":null,
                "lease_expires_ms":0,"not_before_ms":0,"cursor":0,"retry":[],
                "delivered":1,"failed":2,"failures":3}"#,
        )
        .unwrap();
        assert_eq!((chunk.refused, chunk.mta_failures), (2, 3));
        let v = serde_json::to_value(&chunk).unwrap();
        assert_eq!(
            (v["failed"].as_u64(), v["failures"].as_u64()),
            (Some(2), Some(3))
        );
    }
}
