//! The embedded store: sled for records, the spool for message bodies, one
//! committer thread that turns concurrent `accept` calls into group commits
//! (one directory sync and one sled flush per batch), and one flusher thread
//! that makes concurrent progress writes durable with shared flushes.

mod bounce;
mod fanout;
mod journal;
mod moderation;
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
    Directory, Job, MessageMeta, MessageState, ModerationRecords, NewMessage, Queue, Record,
    Result, Store, StoreError, Transfer, WindowEntry,
};
use crate::clock::now;
use crate::model::{BounceState, Domain, HeldPost, List, Member, Pending, PostBounces};

/// sled's page cache.
const SLED_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Most accept calls folded into one group commit.
const MAX_BATCH: usize = 256;

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
    counters: sled::Tree,
    failures: sled::Tree,
    bounces: sled::Tree,
    moderation: sled::Tree,
    /// Tombstones of deleted lists whose members are still being removed
    /// (list key → nothing): a list is not re-created over them, and open
    /// finishes a removal a crash cut short.
    purges: sled::Tree,
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
            counters: db.open_tree("counters")?,
            failures: db.open_tree("failures")?,
            bounces: db.open_tree("bounces")?,
            moderation: db.open_tree("moderation")?,
            purges: db.open_tree("list_purges")?,
            db,
        })
    }
}

struct Commit {
    batch: Vec<NewMessage>,
    reply: oneshot::Sender<Result<Vec<AcceptOutcome>>>,
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

/// How often chunk progress is checkpointed into sled and sled flushed when
/// nobody asks: the progress journal holds what was written since, so a power
/// cut loses at most this much progress.
pub(crate) const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Flushes sled when asked (sharing one flush among all waiting callers) and
/// every [`FLUSH_EVERY`], dropping the journal file the flush covered.
fn flusher(
    rx: mpsc::Receiver<oneshot::Sender<Result<()>>>,
    trees: Trees,
    journal: Arc<std::sync::Mutex<journal::Journal>>,
) {
    loop {
        let mut waiting = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(first) => vec![first],
            Err(mpsc::RecvTimeoutError::Timeout) => Vec::new(),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        waiting.extend(rx.try_iter());
        // Checkpoint and rotate first, so this flush covers the old file.
        let result = journal
            .lock()
            .map_err(|_| StoreError::Closed)
            .and_then(|mut j| j.rotate(&trees))
            .and_then(|old| {
                trees.db.flush()?;
                if let Some(old) = old {
                    let _ = std::fs::remove_file(old);
                }
                Ok(())
            });
        if let Err(e) = &result {
            warn!(error = %e, "flushing the store failed");
        }
        for w in waiting {
            let _ = w.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| StoreError::Backend(e.to_string())),
            );
        }
    }
}

/// The group-commit loop: takes every request waiting, writes their files, syncs
/// the spool directory once, records them in sled, flushes once, answers all.
fn committer(rx: mpsc::Receiver<Commit>, trees: Trees, spool: Arc<Spool>) {
    while let Ok(first) = rx.recv() {
        let mut commits = vec![first];
        while commits.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => commits.push(c),
                Err(_) => break,
            }
        }
        metrics::histogram!("listrelay_store_commit_batch_size").record(commits.len() as f64);
        let results = commit_batch(&trees, &spool, &commits);
        for (commit, result) in commits.into_iter().zip(results) {
            let _ = commit.reply.send(result);
        }
    }
}

fn commit_batch(
    trees: &Trees,
    spool: &Spool,
    commits: &[Commit],
) -> Vec<Result<Vec<AcceptOutcome>>> {
    // Window claims made earlier in this batch, not yet in sled.
    let mut claimed: HashMap<Vec<u8>, WindowEntry> = HashMap::new();
    let mut results: Vec<Result<Vec<AcceptOutcome>>> = Vec::with_capacity(commits.len());
    // Files written for the batch: (commit index, message id, file).
    let mut files: Vec<(usize, String, std::fs::File)> = Vec::new();
    let now = now();
    for (c, commit) in commits.iter().enumerate() {
        let mut outcomes = Vec::with_capacity(commit.batch.len());
        let mut failure = None;
        for msg in &commit.batch {
            let outcome = match window_check(trees, &claimed, msg, now) {
                Ok(o) => o,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if outcome == AcceptOutcome::Accepted {
                match spool.write(msg) {
                    Ok(f) => files.push((c, msg.meta.id.clone(), f)),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
                if let Some(d) = &msg.meta.dedup {
                    claimed.insert(
                        key2(&msg.meta.list, &d.message_id),
                        WindowEntry {
                            message: msg.meta.id.clone(),
                            content_hash: d.content_hash.clone(),
                            expires_at: None,
                        },
                    );
                }
            }
            outcomes.push(outcome);
        }
        results.push(failure.map_or(Ok(outcomes), Err));
    }
    // Sync every file of the batch together, then publish them.
    let synced = spool::sync_files(&files.iter().map(|(_, _, f)| f).collect::<Vec<_>>());
    for ((c, id, _), sync) in files.iter().zip(synced) {
        if let Err(e) = sync
            .map_err(|e| StoreError::Io {
                path: id.clone(),
                source: e,
            })
            .and_then(|_| spool.publish(id))
        {
            if results[*c].is_ok() {
                results[*c] = Err(e);
            }
        }
    }
    // A failed commit drops all its files, and so fails any commit of the
    // batch that was told it duplicates one of them.
    let failed: std::collections::HashSet<&str> = files
        .iter()
        .filter(|(c, _, _)| results[*c].is_err())
        .map(|(_, id, _)| id.as_str())
        .collect();
    for id in &failed {
        spool.discard(id);
    }
    for r in results.iter_mut() {
        let leans_on_failed = r.as_ref().is_ok_and(|outcomes| {
            outcomes.iter().any(|o| match o {
                AcceptOutcome::Redelivery { existing } | AcceptOutcome::Duplicate { existing } => {
                    failed.contains(existing.as_str())
                }
                AcceptOutcome::Accepted => false,
            })
        });
        if leans_on_failed {
            *r = Err(StoreError::Backend(
                "a copy in the same batch failed to store".into(),
            ));
        }
    }
    if let Err(e) = spool.sync_dir() {
        for (_, id, _) in &files {
            spool.discard(id);
        }
        return commits
            .iter()
            .map(|_| Err(StoreError::Backend(e.to_string())))
            .collect();
    }
    // The files are durable; recording them in sled can be redone from the spool.
    for (commit, result) in commits.iter().zip(results.iter_mut()) {
        let Ok(outcomes) = result else { continue };
        let recorded = commit
            .batch
            .iter()
            .zip(outcomes.iter())
            .filter(|(_, o)| **o == AcceptOutcome::Accepted)
            .try_for_each(|(msg, _)| record(trees, msg));
        if let Err(e) = recorded {
            warn!(error = %e, "recording accepted messages in sled failed; the spool keeps them");
            *result = Err(e);
        }
    }
    if let Err(e) = trees.db.flush() {
        warn!(error = %e, "sled flush failed; the spool keeps the batch");
    }
    results
}

fn window_check(
    trees: &Trees,
    claimed: &HashMap<Vec<u8>, WindowEntry>,
    msg: &NewMessage,
    now: u64,
) -> Result<AcceptOutcome> {
    let Some(dedup) = &msg.meta.dedup else {
        return Ok(AcceptOutcome::Accepted);
    };
    let key = key2(&msg.meta.list, &dedup.message_id);
    let entry = match claimed.get(&key) {
        Some(e) => Some(e.clone()),
        None => get::<WindowEntry>(&trees.window, &key)?,
    };
    Ok(match entry {
        Some(e) if e.live(now) && e.content_hash == dedup.content_hash => {
            AcceptOutcome::Redelivery {
                existing: e.message,
            }
        }
        Some(e) if e.live(now) => AcceptOutcome::Duplicate {
            existing: e.message,
        },
        _ => AcceptOutcome::Accepted,
    })
}

fn record(trees: &Trees, msg: &NewMessage) -> Result<()> {
    put(&trees.messages, &msg.meta.id, &msg.meta)?;
    if let Some(d) = &msg.meta.dedup {
        put(
            &trees.window,
            key2(&msg.meta.list, &d.message_id),
            &WindowEntry {
                message: msg.meta.id.clone(),
                content_hash: d.content_hash.clone(),
                expires_at: None,
            },
        )?;
    }
    Ok(())
}

/// Drops the window entries whose grace has passed at `now`. Each removal
/// is a compare-and-swap on the exact bytes read: the committer may re-claim
/// an expired key between the read and the removal, and that live entry
/// must stay (`between` runs there, so a test can make the race happen).
fn prune_window(trees: &Trees, now: u64, mut between: impl FnMut(&[u8])) -> Result<usize> {
    let mut n = 0;
    for kv in trees.window.iter() {
        let (k, v) = kv?;
        let e: WindowEntry = serde_json::from_slice(&v)?;
        if e.live(now) {
            continue;
        }
        between(&k);
        // A changed entry was re-claimed: it is not the expired one read.
        if trees
            .window
            .compare_and_swap(&k, Some(v), None as Option<&[u8]>)?
            .is_ok()
        {
            n += 1;
        }
    }
    Ok(n)
}

/// The lists of one domain, or every list.
fn lists_of(t: &Trees, domain: Option<&str>) -> Result<Vec<List>> {
    let all: Vec<List> = values(t.lists.iter())?;
    Ok(all
        .into_iter()
        .filter(|l| domain.is_none_or(|d| l.address.domain() == d))
        .collect())
}

/// Adds the members that are new, in one batch (written at once, no flush
/// per member); says for each whether it was new. The caller holds the
/// directory lock, so the list cannot be deleted in between.
fn add_members(t: &Trees, list: &str, members: &[Member]) -> Result<Vec<bool>> {
    if !t.lists.contains_key(list)? {
        return Err(StoreError::NotFound(format!("list {list}")));
    }
    let mut batch = sled::Batch::default();
    let mut added = std::collections::HashSet::new();
    let mut new = Vec::with_capacity(members.len());
    for m in members {
        let key = member_key(list, &m.address.key());
        let fresh = !t.members.contains_key(&key)? && added.insert(key.clone());
        if fresh {
            batch.insert(key, serde_json::to_vec(m)?);
        }
        new.push(fresh);
    }
    t.members.apply_batch(batch)?;
    Ok(new)
}

/// Members removed per batch when a deleted list's members are purged.
const PURGE_BATCH: usize = 10_000;

/// Deletes a list: the list record goes and a tombstone comes in one
/// transaction (under the directory lock); then its members are removed in
/// batches and the tombstone last. A crash in between leaves the tombstone,
/// and open finishes the purge, so old members never come back under a
/// re-created list. `between` runs after the transaction (a test makes it
/// fail, as a crash would).
fn delete_list(
    t: &Trees,
    lock: &std::sync::Mutex<()>,
    key: &str,
    between: impl FnOnce() -> Result<()>,
) -> Result<()> {
    {
        let _held = lock.lock().map_err(|_| StoreError::Closed)?;
        use sled::Transactional;
        (&t.lists, &t.purges)
            .transaction(|(lists, purges)| {
                if lists.remove(key.as_bytes())?.is_none() {
                    return Err(sled::transaction::ConflictableTransactionError::Abort(
                        StoreError::NotFound(format!("list {key}")),
                    ));
                }
                purges.insert(key.as_bytes(), &[])?;
                Ok(())
            })
            .map_err(fanout::tx_err)?;
    }
    between()?;
    purge_members(t, key)
}

/// Removes a deleted list's members, then its tombstone.
fn purge_members(t: &Trees, list: &str) -> Result<()> {
    let prefix = key2(list, "");
    loop {
        let keys = t
            .members
            .scan_prefix(&prefix)
            .keys()
            .take(PURGE_BATCH)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            break;
        }
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k);
        }
        t.members.apply_batch(batch)?;
    }
    t.purges.remove(list)?;
    Ok(())
}

/// Finishes the member purges of lists deleted before a crash.
fn finish_list_purges(t: &Trees) -> Result<()> {
    for k in t.purges.iter().keys() {
        let list = String::from_utf8_lossy(&k?).into_owned();
        warn!(%list, "finishing the deletion of a list's members cut short by a crash");
        purge_members(t, &list)?;
    }
    Ok(())
}

/// Records spool files the store does not know (their sled writes were lost);
/// a recovered post whose Message-ID another post now holds is dropped.
fn recover(trees: &Trees, spool: &Spool) -> Result<()> {
    let now = now();
    for id in spool.ids()? {
        if trees.messages.contains_key(&id)? {
            continue;
        }
        let msg = match spool.read(&id) {
            Ok(m) => m,
            Err(e) => {
                warn!(%id, error = %e, "unreadable spool file left in place");
                continue;
            }
        };
        match window_check(trees, &HashMap::new(), &msg, now)? {
            AcceptOutcome::Accepted => {
                record(trees, &msg)?;
                info!(%id, list = %msg.meta.list, "recovered a spooled message the store did not know");
                metrics::counter!("listrelay_store_recovered_total").increment(1);
            }
            AcceptOutcome::Redelivery { existing } | AcceptOutcome::Duplicate { existing } => {
                info!(%id, %existing, "dropping a spooled copy of a message already stored");
                spool.remove(&id)?;
            }
        }
    }
    trees.db.flush()?;
    Ok(())
}

#[async_trait]
impl Directory for SledStore {
    async fn create_domain(&self, domain: &Domain) -> Result<()> {
        let v = serde_json::to_vec(domain)?;
        match self
            .trees
            .domains
            .compare_and_swap(&domain.name, None as Option<&[u8]>, Some(v))?
        {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Exists(format!("domain {}", domain.name))),
        }
    }

    async fn domain(&self, name: &str) -> Result<Option<Domain>> {
        get(&self.trees.domains, name)
    }

    async fn domains(&self) -> Result<Vec<Domain>> {
        self.blocking(|t| values(t.domains.iter())).await
    }

    async fn update_domain(&self, domain: &Domain) -> Result<()> {
        if !self.trees.domains.contains_key(&domain.name)? {
            return Err(StoreError::NotFound(format!("domain {}", domain.name)));
        }
        put(&self.trees.domains, &domain.name, domain)
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        // Under the directory lock no list is created between the guard and
        // the removal.
        self.directory_change(move |t| {
            rules::may_delete_domain(&name, &lists_of(t, Some(&name))?)?;
            match t.domains.remove(&name)? {
                Some(_) => Ok(()),
                None => Err(StoreError::NotFound(format!("domain {name}"))),
            }
        })
        .await?;
        self.durable().await
    }

    async fn create_list(&self, list: &List) -> Result<()> {
        let list = list.clone();
        self.directory_change(move |t| {
            if t.purges.contains_key(list.key())? {
                return Err(StoreError::Invalid(format!(
                    "list {} is still being deleted; retry in a moment",
                    list.address
                )));
            }
            let v = serde_json::to_vec(&list)?;
            match t
                .lists
                .compare_and_swap(list.key(), None as Option<&[u8]>, Some(v))?
            {
                Ok(()) => Ok(()),
                Err(_) => Err(StoreError::Exists(format!("list {}", list.address))),
            }
        })
        .await
    }

    async fn list(&self, key: &str) -> Result<Option<List>> {
        get(&self.trees.lists, key)
    }

    async fn lists(&self, domain: Option<&str>) -> Result<Vec<List>> {
        let domain = domain.map(str::to_string);
        self.blocking(move |t| lists_of(t, domain.as_deref())).await
    }

    async fn update_list(&self, list: &List) -> Result<()> {
        if !self.trees.lists.contains_key(list.key())? {
            return Err(StoreError::NotFound(format!("list {}", list.address)));
        }
        put(&self.trees.lists, list.key(), list)
    }

    async fn delete_list(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        let lock = self.directory.clone();
        self.blocking(move |t| delete_list(t, &lock, &key, || Ok(())))
            .await?;
        self.durable().await
    }

    async fn add_members(&self, list: &str, members: &[Member]) -> Result<Vec<bool>> {
        let (list, members) = (list.to_string(), members.to_vec());
        self.directory_change(move |t| add_members(t, &list, &members))
            .await
    }

    async fn remove_member(&self, list: &str, member_key: &str) -> Result<bool> {
        Ok(self
            .trees
            .members
            .remove(self::member_key(list, member_key))?
            .is_some())
    }

    async fn members(&self, list: &str) -> Result<Vec<Member>> {
        let prefix = key2(list, "");
        self.blocking(move |t| values(t.members.scan_prefix(prefix)))
            .await
    }

    /// Pages follow sled's key order, list/domain/local: a list's members
    /// grouped by domain (the order fan-out plans in), not sorted by address.
    async fn members_page(
        &self,
        list: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        let prefix = key2(list, "");
        let start = after.map(|a| member_key(list, a));
        self.blocking(move |t| {
            let iter = match start {
                Some(k) => t
                    .members
                    .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded)),
                None => t.members.range(prefix.clone()..),
            };
            let mut out = Vec::with_capacity(limit.min(10_000));
            for kv in iter {
                let (k, v) = kv?;
                if !k.starts_with(&prefix) || out.len() >= limit {
                    break;
                }
                out.push(serde_json::from_slice(&v)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delivery_addresses(&self, list: &str, received_at: u64) -> Result<Vec<String>> {
        /// The fields planning needs, borrowed from the record.
        #[derive(serde::Deserialize)]
        struct View<'a> {
            #[serde(borrow)]
            address: std::borrow::Cow<'a, str>,
            #[serde(default)]
            added_at: u64,
            #[serde(default = "enabled")]
            delivery_enabled: bool,
        }
        fn enabled() -> bool {
            true
        }
        let prefix = key2(list, "");
        self.blocking(move |t| {
            let mut out = Vec::new();
            for kv in t.members.scan_prefix(prefix) {
                let (_, v) = kv?;
                let m: View = serde_json::from_slice(&v)?;
                if m.delivery_enabled && m.added_at <= received_at {
                    out.push(m.address.into_owned());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn member_count(&self, list: &str) -> Result<u64> {
        let prefix = key2(list, "");
        self.blocking(move |t| Ok(t.members.scan_prefix(prefix).keys().count() as u64))
            .await
    }

    async fn member(&self, list: &str, member_key: &str) -> Result<Option<Member>> {
        get(&self.trees.members, self::member_key(list, member_key))
    }

    async fn set_delivery(&self, list: &str, member_key: &str, enabled: bool) -> Result<bool> {
        bounce::set_delivery(&self.trees, &self::member_key(list, member_key), enabled)
    }

    async fn update_member(&self, list: &str, member: &Member) -> Result<bool> {
        moderation::update_member(&self.trees, list, member)
    }
}

#[async_trait]
impl Queue for SledStore {
    async fn accept(&self, batch: Vec<NewMessage>) -> Result<Vec<AcceptOutcome>> {
        let (reply, rx) = oneshot::channel();
        self.committer
            .send(Commit { batch, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn message(&self, id: &str) -> Result<Option<MessageMeta>> {
        get(&self.trees.messages, id)
    }

    async fn message_body(&self, id: &str) -> Result<Vec<u8>> {
        let spool = self.spool.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || spool.read(&id).map(|m| m.body))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn messages(&self, queued_only: bool) -> Result<Vec<MessageMeta>> {
        self.blocking(move |t| {
            let all: Vec<MessageMeta> = values(t.messages.iter())?;
            Ok(all
                .into_iter()
                .filter(|m| !queued_only || m.state == MessageState::Queued)
                .collect())
        })
        .await
    }

    async fn finish_message(&self, id: &str, grace_secs: u64) -> Result<()> {
        // Finishing is idempotent: the worker and the sweep of done posts
        // may both finish a post whose job just completed.
        let Some(meta) = get::<MessageMeta>(&self.trees.messages, id)? else {
            return self.spool.remove(id);
        };
        if let Some(d) = &meta.dedup {
            let key = key2(&meta.list, &d.message_id);
            if let Some(mut w) = get::<WindowEntry>(&self.trees.window, &key)? {
                if w.message == id {
                    w.expires_at = Some(now() + grace_secs);
                    put(&self.trees.window, &key, &w)?;
                }
            }
        }
        self.trees.messages.remove(id)?;
        self.durable().await?;
        self.spool.remove(id)
    }

    async fn window_entry(&self, list: &str, message_id: &str) -> Result<Option<WindowEntry>> {
        get(&self.trees.window, key2(list, message_id))
    }

    async fn prune_window(&self) -> Result<usize> {
        self.blocking(|t| prune_window(t, now(), |_| {})).await
    }
}

#[async_trait]
impl Claims for SledStore {
    async fn unplanned_posts(&self) -> Result<Vec<MessageMeta>> {
        self.blocking(|t| {
            let mut out = Vec::new();
            for kv in t.messages.iter() {
                let (_, v) = kv?;
                let m: MessageMeta = serde_json::from_slice(&v)?;
                if m.suffix == crate::address::Suffix::Post
                    && m.state == MessageState::Queued
                    && !t.jobs.contains_key(&m.id)?
                {
                    out.push(m);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn create_job(&self, job: Job, chunks: Vec<Vec<String>>) -> Result<Job> {
        let job = self
            .blocking(move |t| fanout::create_job(t, job, chunks))
            .await?;
        self.durable().await?;
        Ok(job)
    }

    async fn claim_chunk(&self, owner: &str, lease_ms: u64) -> Result<Option<Claim>> {
        let owner = owner.to_string();
        let journal = self.journal.clone();
        let claim = self
            .blocking(move |t| {
                // Claims see every holder's latest progress and lease.
                let mut j = journal.lock().map_err(|_| StoreError::Closed)?;
                j.checkpoint(t)?;
                fanout::claim_chunk(t, &owner, lease_ms)
            })
            .await?;
        if claim.is_some() {
            self.durable().await?;
        }
        Ok(claim)
    }

    async fn chunk_members(&self, job: &str, index: u32) -> Result<Vec<String>> {
        let job = job.to_string();
        self.blocking(move |t| fanout::chunk_members(t, &job, index))
            .await
    }

    async fn update_chunk(&self, owner: &str, state: &ChunkState, lease_ms: u64) -> Result<bool> {
        self.journal.lock().map_err(|_| StoreError::Closed)?.record(
            &self.trees,
            owner,
            state,
            lease_ms,
        )
    }

    async fn complete_chunk(&self, owner: &str, state: &ChunkState) -> Result<Completion> {
        let (owner, state) = (owner.to_string(), state.clone());
        let journal = self.journal.clone();
        let done = self
            .blocking(move |t| {
                let mut j = journal.lock().map_err(|_| StoreError::Closed)?;
                let done = fanout::complete_chunk(t, &owner, &state)?;
                if !t
                    .chunks
                    .contains_key(fanout::chunk_key(&state.job, state.index))?
                {
                    j.forget(&state.job, state.index);
                }
                Ok(done)
            })
            .await?;
        self.durable().await?;
        Ok(done)
    }

    async fn release_leases(&self, owner_prefix: &str) -> Result<usize> {
        let n = {
            let mut j = self.journal.lock().map_err(|_| StoreError::Closed)?;
            j.checkpoint(&self.trees)?;
            fanout::expire_leases_of(&self.trees, owner_prefix)?
        };
        self.durable().await?;
        Ok(n)
    }

    async fn jobs(&self) -> Result<Vec<Job>> {
        self.blocking(|t| values(t.jobs.iter())).await
    }

    async fn chunks(&self) -> Result<Vec<ChunkState>> {
        self.blocking(|t| values(t.chunks.iter())).await
    }

    async fn record_failure(&self, failure: &DeliveryFailure) -> Result<()> {
        fanout::record_failure(&self.trees, failure)
    }

    async fn failures(&self, list: &str) -> Result<Vec<DeliveryFailure>> {
        fanout::failures(&self.trees, list)
    }

    async fn pending_failures(&self, max: usize) -> Result<Vec<(String, DeliveryFailure)>> {
        bounce::pending_failures(&self.trees, max)
    }

    async fn delete_failure(&self, list: &str, id: &str) -> Result<()> {
        self.trees.failures.remove(key2(list, id))?;
        Ok(())
    }
}

#[async_trait]
impl BounceRecords for SledStore {
    async fn bounce_state(&self, scope: &str, member_key: &str) -> Result<Option<BounceState>> {
        bounce::state(&self.trees, scope, member_key)
    }

    async fn bounce_states(&self, scope: Option<&str>) -> Result<Vec<BounceState>> {
        let scope = scope.map(str::to_string);
        self.blocking(move |t| bounce::states(t, scope.as_deref()))
            .await
    }

    async fn put_bounce_state(&self, state: &BounceState) -> Result<()> {
        bounce::put_state(&self.trees, state)
    }

    async fn replace_bounce_state(
        &self,
        scope: &str,
        member_key: &str,
        expected: Option<&BounceState>,
        new: Option<&BounceState>,
    ) -> Result<bool> {
        bounce::replace_state(&self.trees, scope, member_key, expected, new)
    }

    async fn delete_bounce_state(&self, scope: &str, member_key: &str) -> Result<bool> {
        bounce::delete_state(&self.trees, scope, member_key)
    }

    async fn post_bounces(&self, list: &str, post: &str) -> Result<Option<PostBounces>> {
        bounce::post(&self.trees, list, post)
    }

    async fn put_post_bounces(&self, p: &PostBounces) -> Result<()> {
        bounce::put_post(&self.trees, p)
    }

    async fn prune_post_bounces(&self, before: u64) -> Result<usize> {
        self.blocking(move |t| bounce::prune_posts(t, before)).await
    }
}

#[async_trait]
impl ModerationRecords for SledStore {
    async fn mark_accepted(&self, id: &str) -> Result<bool> {
        moderation::mark_accepted(&self.trees, id)
    }

    async fn hold_post(&self, held: &HeldPost) -> Result<bool> {
        let held = held.clone();
        let ok = self
            .blocking(move |t| moderation::hold_post(t, &held))
            .await?;
        self.durable().await?;
        Ok(ok)
    }

    async fn release_held(&self, id: &str, approve: bool) -> Result<Option<MessageMeta>> {
        let id = id.to_string();
        let meta = self
            .blocking(move |t| moderation::release_held(t, &id, approve))
            .await?;
        self.durable().await?;
        Ok(meta)
    }

    async fn held_posts(&self, list: Option<&str>) -> Result<Vec<HeldPost>> {
        let list = list.map(str::to_string);
        self.blocking(move |t| moderation::held_posts(t, list.as_deref()))
            .await
    }

    async fn held_by_hash(&self, list: &str, hash: &str) -> Result<Vec<HeldPost>> {
        moderation::held_by_hash(&self.trees, list, hash)
    }

    async fn put_pending(&self, token_hash: &str, pending: &Pending) -> Result<()> {
        moderation::put_pending(&self.trees, token_hash, pending)?;
        self.durable().await
    }

    async fn take_pending(&self, token_hash: &str) -> Result<Option<Pending>> {
        let p = moderation::take_pending(&self.trees, token_hash)?;
        self.durable().await?;
        Ok(p)
    }

    async fn prune_pending(&self, now: u64) -> Result<usize> {
        self.blocking(move |t| moderation::prune_pending(t, now))
            .await
    }

    async fn prune_rate_counts(&self, now: u64) -> Result<usize> {
        self.blocking(move |t| moderation::prune_rate_counts(t, now))
            .await
    }

    async fn rate_take(&self, address: &str, day: u64, limit: u32) -> Result<bool> {
        moderation::rate_take(&self.trees, address, day, limit)
    }
}

#[async_trait]
impl Transfer for SledStore {
    async fn window_entries(&self) -> Result<Vec<(String, String, WindowEntry)>> {
        self.blocking(window_entries).await
    }

    async fn counters(&self) -> Result<Vec<(String, u64)>> {
        self.blocking(counters).await
    }

    async fn all_post_bounces(&self) -> Result<Vec<PostBounces>> {
        self.blocking(bounce::posts).await
    }

    async fn pendings(&self) -> Result<Vec<(String, Pending)>> {
        self.blocking(moderation::pendings).await
    }

    async fn rate_counts(&self) -> Result<Vec<(String, u64, u32)>> {
        self.blocking(moderation::rate_counts).await
    }

    async fn restore(&self, records: Vec<Record>) -> Result<()> {
        let (trees, spool) = (self.trees.clone(), self.spool.clone());
        tokio::task::spawn_blocking(move || restore(&trees, &spool, records))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))??;
        self.durable().await
    }
}

#[async_trait]
impl Store for SledStore {
    async fn sync(&self) -> Result<()> {
        self.durable().await
    }
}

/// Every Message-ID window entry: (list, Message-ID, entry).
fn window_entries(t: &Trees) -> Result<Vec<(String, String, WindowEntry)>> {
    t.window
        .iter()
        .map(|kv| {
            let (k, v) = kv?;
            let k = String::from_utf8_lossy(&k);
            let (list, message_id) = k.split_once('\0').unwrap_or((&k, ""));
            Ok((
                list.to_string(),
                message_id.to_string(),
                serde_json::from_slice(&v)?,
            ))
        })
        .collect()
}

/// Every list's post counter.
fn counters(t: &Trees) -> Result<Vec<(String, u64)>> {
    t.counters
        .iter()
        .map(|kv| {
            let (k, v) = kv?;
            let seq = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            Ok((String::from_utf8_lossy(&k).into_owned(), seq))
        })
        .collect()
}

/// Writes exported records as they are. Message files are written, synced
/// and published (renamed to `ID.msg`) before the directory is synced.
fn restore(trees: &Trees, spool: &Spool, records: Vec<Record>) -> Result<()> {
    let mut files: Vec<(String, std::fs::File)> = Vec::new();
    for r in rules::in_restore_order(records) {
        match r {
            Record::Header { .. } => {}
            Record::Domain { domain } => put(&trees.domains, &domain.name, &domain)?,
            Record::List { list } => put(&trees.lists, list.key(), &list)?,
            Record::Member { list, member } => put(
                &trees.members,
                member_key(&list, &member.address.key()),
                &member,
            )?,
            Record::Counter { list, seq } => {
                trees.counters.insert(list.as_bytes(), &seq.to_be_bytes())?;
            }
            Record::Message { meta, body } => {
                let msg = NewMessage {
                    body: super::transfer::body(&body)?,
                    meta,
                };
                files.push((msg.meta.id.clone(), spool.write(&msg)?));
                put(&trees.messages, &msg.meta.id, &msg.meta)?;
            }
            Record::Window {
                list,
                message_id,
                entry,
            } => put(&trees.window, key2(&list, &message_id), &entry)?,
            Record::Job { job } => put(&trees.jobs, &job.post_id, &job)?,
            Record::Chunk { state, members } => fanout::restore_chunk(trees, &state, &members)?,
            Record::Failure { failure } => fanout::record_failure(trees, &failure)?,
            Record::BounceState { state } => bounce::put_state(trees, &state)?,
            Record::PostBounces { bounces } => bounce::put_post(trees, &bounces)?,
            Record::Held { held } => moderation::restore_held(trees, &held)?,
            Record::Pending {
                token_hash,
                pending,
            } => moderation::put_pending(trees, &token_hash, &pending)?,
            Record::Rate {
                address,
                day,
                count,
            } => moderation::restore_rate(trees, &address, day, count)?,
        }
    }
    if !files.is_empty() {
        let synced = spool::sync_files(&files.iter().map(|(_, f)| f).collect::<Vec<_>>());
        for ((id, _), sync) in files.iter().zip(synced) {
            sync.map_err(|source| StoreError::Io {
                path: id.clone(),
                source,
            })?;
            spool.publish(id)?;
        }
        spool.sync_dir()?;
    }
    Ok(())
}
