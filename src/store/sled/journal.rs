//! The progress journal: every chunk-state write is also appended, as one
//! line, to a plain file. A `write` to a file is the kernel's as soon as it
//! returns, so the write survives a crash of the process without the cost of a
//! sled flush per transaction; sled's own state reaches the disk with the
//! flusher's periodic flush, after which the journal it covers is dropped. At
//! start, journals left by a crash are replayed into sled.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::{put, Trees};
use crate::store::{ChunkState, Result, StoreError};

pub struct Journal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    /// Number of the current file; files are `progress-N.log`.
    n: u64,
    /// Whether anything was appended since the last rotation.
    dirty: bool,
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
        })
    }

    /// Appends one chunk state (one `write`, so a crash leaves whole lines or
    /// a torn last line, which replay skips).
    pub fn append(&mut self, state: &ChunkState) -> Result<()> {
        let mut line = serde_json::to_vec(state)?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io(&self.path))?;
        self.dirty = true;
        Ok(())
    }

    /// Starts a new file; returns the old one, to delete once sled has been
    /// flushed (everything it holds was written to sled before it was
    /// appended, so that flush covers it).
    pub fn rotate(&mut self) -> Result<Option<PathBuf>> {
        if !self.dirty {
            return Ok(None);
        }
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
        let key = super::fanout::chunk_key(&state.job, state.index);
        let Some(current) = super::get::<ChunkState>(&trees.chunks, &key)? else {
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
