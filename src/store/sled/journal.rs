//! The progress journal: a worker's progress writes go, as one line each, to a
//! plain file, and reach sled only at the next checkpoint. A `write` to a file
//! is the kernel's as soon as it returns, so progress survives a crash of the
//! process without a sled write and flush per transaction (which also made
//! sled's memory grow with every transaction). Every [`FLUSH_EVERY`] the
//! flusher checkpoints the latest state of each chunk into sled, flushes it,
//! and drops the journal file that checkpoint covered. At start, journals left
//! by a crash are replayed into sled.
//!
//! Claims, completions and checkpoints all take the journal's lock, and sled
//! always holds each chunk's current owner and generation: the fencing check
//! of a progress write reads them there.
//!
//! [`FLUSH_EVERY`]: super::flusher::FLUSH_EVERY

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::fanout::{chunk_key, holds};
use super::{get, put, Trees};
use crate::clock::now_ms;
use crate::store::{ChunkState, Result, StoreError};

pub struct Journal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    /// Number of the current file; files are `progress-N.log`.
    n: u64,
    /// Whether anything was appended since the last rotation.
    dirty: bool,
    /// The latest journaled state of each chunk not yet checkpointed to sled.
    pending: HashMap<Vec<u8>, ChunkState>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The journal files in `dir`, oldest first.
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let n = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("progress-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

fn create(dir: &Path, n: u64) -> Result<(File, PathBuf)> {
    let path = dir.join(format!("progress-{n}.log"));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    Ok((file, path))
}

impl Journal {
    /// Replays what a previous run left into sled, flushes it, deletes those
    /// files and starts a new one.
    pub fn open(dir: PathBuf, trees: &Trees) -> Result<Journal> {
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let old = files(&dir)?;
        let replayed = old
            .iter()
            .map(|(_, p)| replay(p, trees))
            .sum::<Result<usize>>()?;
        if replayed > 0 {
            info!(
                chunks = replayed,
                "replayed chunk progress from the journal"
            );
        }
        trees.db.flush()?;
        let n = old.last().map_or(1, |(n, _)| n + 1);
        for (_, p) in &old {
            fs::remove_file(p).map_err(io(p))?;
        }
        let (file, path) = create(&dir, n)?;
        Ok(Journal {
            dir,
            file,
            path,
            n,
            dirty: false,
            pending: HashMap::new(),
        })
    }

    /// A holder's progress write, fenced by the owner and generation sled
    /// holds: journaled (in the kernel's hands when this returns) and kept for
    /// the next checkpoint; a release goes to sled at once. `false` when the
    /// lease was taken over.
    pub fn record(
        &mut self,
        t: &Trees,
        owner: &str,
        state: &ChunkState,
        lease_ms: u64,
    ) -> Result<bool> {
        let key = chunk_key(&state.job, state.index);
        let Some(current) = get::<ChunkState>(&t.chunks, &key)? else {
            return Ok(false);
        };
        if !holds(&current, owner, state.generation) {
            metrics::counter!("listrelay_fanout_fenced_writes_total").increment(1);
            return Ok(false);
        }
        let mut new = state.clone();
        if new.owner.is_some() {
            new.lease_expires_ms = now_ms() + lease_ms;
            self.pending.insert(key, new.clone());
        } else {
            put(&t.chunks, &key, &new)?;
            self.pending.remove(&key);
        }
        self.append(&new)?;
        Ok(true)
    }

    /// Forgets a chunk's pending state (it was completed).
    pub fn forget(&mut self, job: &str, index: u32) {
        self.pending.remove(&chunk_key(job, index));
    }

    /// Writes the latest journaled state of every chunk to sled, where its
    /// holder still holds it.
    pub fn checkpoint(&mut self, t: &Trees) -> Result<()> {
        for (key, state) in self.pending.drain() {
            let current = get::<ChunkState>(&t.chunks, &key)?;
            if current.is_some_and(|c| c.generation == state.generation && c.owner == state.owner) {
                put(&t.chunks, &key, &state)?;
            }
        }
        Ok(())
    }

    /// Appends one chunk state (one `write`, so a crash leaves whole lines or
    /// a torn last line, which replay skips).
    fn append(&mut self, state: &ChunkState) -> Result<()> {
        let mut line = serde_json::to_vec(state)?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io(&self.path))?;
        self.dirty = true;
        Ok(())
    }

    /// Checkpoints to sled and starts a new file; returns the old one, to
    /// delete once sled has been flushed (the checkpoint put everything it
    /// holds into sled, so that flush covers it).
    pub fn rotate(&mut self, t: &Trees) -> Result<Option<PathBuf>> {
        if !self.dirty {
            return Ok(None);
        }
        self.checkpoint(t)?;
        let (file, path) = create(&self.dir, self.n + 1)?;
        self.n += 1;
        self.file = file;
        self.dirty = false;
        Ok(Some(std::mem::replace(&mut self.path, path)))
    }
}

/// Applies a file's chunk states that are newer than sled's: a later claim
/// (higher generation) or more progress under the same one.
fn replay(path: &Path, trees: &Trees) -> Result<usize> {
    let file = File::open(path).map_err(io(path))?;
    let mut n = 0;
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        let Ok(state) = serde_json::from_str::<ChunkState>(&line) else {
            warn!(path = %path.display(), "skipping a torn journal line");
            continue;
        };
        let key = chunk_key(&state.job, state.index);
        let Some(current) = get::<ChunkState>(&trees.chunks, &key)? else {
            continue; // completed since
        };
        let newer = state.generation > current.generation
            || (state.generation == current.generation && state.cursor >= current.cursor);
        if newer && state != current {
            put(&trees.chunks, &key, &state)?;
            n += 1;
        }
    }
    Ok(n)
}
