//! The embedded store: sled for records, the spool for message bodies, one
//! committer thread that turns concurrent `accept` calls into group commits
//! (one directory sync and one sled flush per batch), and one flusher thread
//! that makes concurrent progress writes durable with shared flushes.
//!
//! This file opens the store (trees, recovery, threads) and holds the key
//! and record helpers every part uses. The rest, by role:
//! `committer.rs` (group commit and the window check), `flusher.rs`,
//! `recovery.rs` (spool files sled does not know), `directory.rs`,
//! `queue.rs` (messages, the window and its pruning), `claims.rs` with
//! `fanout.rs` (jobs, chunks, leases) and `journal.rs` (chunk progress),
//! `bounce.rs`, `moderation.rs`, `restore.rs` (export reads, import) and
//! `access.rs` (API tokens, the audit log).

mod access;
mod bounce;
mod claims;
mod committer;
mod digest;
mod directory;
mod fanout;
mod flusher;
mod journal;
mod moderation;
mod queue;
mod recovery;
mod restore;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{mpsc, Arc};

use async_trait::async_trait;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::rules;
use super::spool::{self, Spool};
use super::{
    AcceptOutcome, BounceRecords, ChunkState, Claim, Claims, Completion, DeliveryFailure,
    DeliveryPage, Directory, Job, MessageMeta, MessageState, ModerationRecords, NewMessage, Queue,
    Record, Result, Store, StoreError, Transfer, WindowEntry,
};
use crate::clock::now;
use crate::model::{DeliveryMode, Domain, List, Member, Pending, PostBounces};
use committer::{committer, Commit};
use directory::finish_list_purges;
use flusher::flusher;
use recovery::recover;

/// sled's page cache.
const SLED_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Keys written (or removed) per sled batch when many go in at once (member
/// imports, list purges). sled keeps every node a batch rewrites until the
/// batch ends, so a process's peak memory follows the batch, not the data:
/// importing 1,000,000 members in batches of 10,000 peaked at 149 MiB in
/// sled alone, in batches of 1,000 at 38 MiB and of 500 at 35 MiB, and was
/// faster too (21.1 s, 14.6 s, 14.5 s; `/proc` VmHWM of a sled-only program
/// writing the store's member keys and records).
const SLED_BATCH: usize = 500;

#[derive(Clone)]
struct Trees {
    db: sled::Db,
    domains: sled::Tree,
    lists: sled::Tree,
    members: sled::Tree,
    messages: sled::Tree,
    window: sled::Tree,
    jobs: sled::Tree,
    chunks: sled::Tree,
    chunk_members: sled::Tree,
    /// Jobs being planned (post id → `fanout::Draft`): their member lists
    /// are in `chunk_members` already, their chunk states and job record
    /// come at the seal, so no worker sees a job before it is whole.
    drafts: sled::Tree,
    counters: sled::Tree,
    failures: sled::Tree,
    bounces: sled::Tree,
    moderation: sled::Tree,
    /// Tombstones of deleted lists whose members are still being removed
    /// (list key → nothing): a list is not re-created over them, and open
    /// finishes a removal a crash cut short.
    purges: sled::Tree,
    /// API tokens by id (access.rs).
    tokens: sled::Tree,
    /// The audit log by time-ordered entry id (access.rs).
    audit: sled::Tree,
    /// Posts entered for a digest (list, seq → `DigestEntry`, digest.rs).
    digest_entries: sled::Tree,
    /// Their bytes, same keys: the spool file goes with the regular fan-out.
    digest_bodies: sled::Tree,
    /// Digest issues by id.
    digest_issues: sled::Tree,
}

impl Trees {
    fn open(db: sled::Db) -> Result<Self> {
        Ok(Trees {
            domains: db.open_tree("domains")?,
            lists: db.open_tree("lists")?,
            members: db.open_tree("members")?,
            messages: db.open_tree("messages")?,
            window: db.open_tree("window")?,
            jobs: db.open_tree("jobs")?,
            chunks: db.open_tree("chunks")?,
            chunk_members: db.open_tree("chunk_members")?,
            drafts: db.open_tree("job_drafts")?,
            counters: db.open_tree("counters")?,
            failures: db.open_tree("failures")?,
            bounces: db.open_tree("bounces")?,
            moderation: db.open_tree("moderation")?,
            purges: db.open_tree("list_purges")?,
            tokens: db.open_tree("tokens")?,
            audit: db.open_tree("audit")?,
            digest_entries: db.open_tree("digest_entries")?,
            digest_bodies: db.open_tree("digest_bodies")?,
            digest_issues: db.open_tree("digest_issues")?,
            db,
        })
    }
}

pub struct SledStore {
    trees: Trees,
    spool: Arc<Spool>,
    committer: mpsc::Sender<Commit>,
    flusher: mpsc::Sender<oneshot::Sender<Result<()>>>,
    /// Chunk progress between checkpoints; claims and completions take its
    /// lock too (see journal.rs).
    journal: Arc<std::sync::Mutex<journal::Journal>>,
    /// Held while a change checks the directory and acts on it (creating or
    /// deleting a list, deleting a domain, adding members), so the check and
    /// the act are one step: sled admits one process, so this is all writers.
    directory: Arc<std::sync::Mutex<()>>,
}

/// Members are keyed list, domain, local part: a scan yields them grouped by
/// domain, which is how fan-out cuts chunks.
fn member_key(list: &str, member_key: &str) -> Vec<u8> {
    let (local, domain) = member_key.rsplit_once('@').unwrap_or((member_key, ""));
    let mut k = key2(list, domain);
    k.push(0);
    k.extend_from_slice(local.as_bytes());
    k
}

fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn get<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: impl AsRef<[u8]>,
) -> Result<Option<T>> {
    tree.get(key)?
        .map(|v| serde_json::from_slice(&v).map_err(StoreError::from))
        .transpose()
}

fn put<T: serde::Serialize>(tree: &sled::Tree, key: impl AsRef<[u8]>, value: &T) -> Result<()> {
    tree.insert(key.as_ref(), serde_json::to_vec(value)?)?;
    Ok(())
}

fn values<T: serde::de::DeserializeOwned>(iter: sled::Iter) -> Result<Vec<T>> {
    iter.map(|kv| {
        let (_, v) = kv?;
        Ok(serde_json::from_slice(&v)?)
    })
    .collect()
}

impl SledStore {
    /// Opens (or creates) the store under `data_dir`, recovers spool files the
    /// store does not know, and starts the committer thread.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(data_dir.join("db"))
            // sled's default page cache is 1 GiB; records are small and the
            // hot set (chunk states, lists) is tiny.
            .cache_capacity(SLED_CACHE_BYTES)
            .open()
            .map_err(|e| {
                StoreError::Backend(format!("opening {}: {e}", data_dir.join("db").display()))
            })?;
        let trees = Trees::open(db)?;
        let spool = Arc::new(Spool::open(data_dir.join("spool"))?);
        recover(&trees, &spool)?;
        finish_list_purges(&trees)?;
        let journal = Arc::new(std::sync::Mutex::new(journal::Journal::open(
            data_dir.join("journal"),
            &trees,
        )?));
        let drafts = fanout::discard_drafts(&trees)?;
        if drafts > 0 {
            info!(
                jobs = drafts,
                "discarded the jobs a crash left half planned; their posts are planned again"
            );
        }
        let orphans = fanout::clear_orphan_jobs(&trees)?;
        if orphans > 0 {
            warn!(
                records = orphans,
                "removed orphan jobs and chunks (their post or job was gone)"
            );
            metrics::counter!("listrelay_store_orphan_jobs_total").increment(orphans as u64);
        }
        let expired = fanout::expire_leases(&trees)?;
        if expired > 0 {
            info!(
                chunks = expired,
                "released the chunk leases of the previous run"
            );
        }
        let (tx, rx) = mpsc::channel::<Commit>();
        let (t, s) = (trees.clone(), spool.clone());
        std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || committer(rx, t, s))
            .map_err(|e| StoreError::Backend(format!("starting committer: {e}")))?;
        let (ftx, frx) = mpsc::channel();
        let (t, j) = (trees.clone(), journal.clone());
        std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || flusher(frx, t, j))
            .map_err(|e| StoreError::Backend(format!("starting flusher: {e}")))?;
        Ok(SledStore {
            trees,
            spool,
            committer: tx,
            flusher: ftx,
            journal,
            directory: Arc::default(),
        })
    }

    /// Runs a blocking directory change under the directory lock.
    async fn directory_change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Trees) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let lock = self.directory.clone();
        self.blocking(move |t| {
            let _held = lock.lock().map_err(|_| StoreError::Closed)?;
            f(t)
        })
        .await
    }

    /// Returns once every write made before the call is on disk; concurrent
    /// callers share one flush.
    async fn durable(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.flusher.send(tx).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a blocking sled operation off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Trees) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let trees = self.trees.clone();
        tokio::task::spawn_blocking(move || f(&trees))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

#[async_trait]
impl Store for SledStore {
    async fn sync(&self) -> Result<()> {
        self.durable().await
    }
}
