//! The spool: one file per accepted message, written to `ID.tmp`, synced,
//! renamed to `ID.msg`, and made durable by syncing the directory once per batch.
//! A file holds its own metadata, so a message the store lost (power cut before
//! sled's log reached the disk) is recovered from the spool alone.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{NewMessage, Result, StoreError};

const MAGIC: &[u8; 8] = b"LRSPOOL1";

pub struct Spool {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Spool {
    pub fn open(dir: PathBuf) -> Result<Self> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Spool { dir })
    }

    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    /// Writes one message's file as `ID.tmp`, not yet synced: a batch syncs
    /// its files together ([`sync_files`]) and then [`Spool::publish`]es them.
    pub fn write(&self, msg: &NewMessage) -> Result<File> {
        let tmp = self.path(&msg.meta.id, "tmp");
        let meta = serde_json::to_vec(msg)?;
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            let mut head = Vec::with_capacity(MAGIC.len() + 12 + meta.len());
            head.extend_from_slice(MAGIC);
            head.extend_from_slice(&(meta.len() as u32).to_le_bytes());
            head.extend_from_slice(&(msg.body.len() as u64).to_le_bytes());
            head.extend_from_slice(&meta);
            f.write_all(&head)?;
            f.write_all(&msg.body)?;
            Ok(f)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io_err(&tmp))
    }

    /// Renames a synced `ID.tmp` to `ID.msg`; durable after [`Spool::sync_dir`].
    pub fn publish(&self, id: &str) -> Result<()> {
        let tmp = self.path(id, "tmp");
        fs::rename(&tmp, self.path(id, "msg")).map_err(io_err(&tmp))
    }

    /// Drops a message's file, published or not.
    pub fn discard(&self, id: &str) {
        let _ = fs::remove_file(self.path(id, "tmp"));
        let _ = self.remove(id);
    }

    /// Makes the renames of the batch durable.
    pub fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }

    pub fn read(&self, id: &str) -> Result<NewMessage> {
        let path = self.path(id, "msg");
        let mut buf = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(io_err(&path))?;
        decode(&buf)
            .ok_or_else(|| StoreError::Backend(format!("corrupt spool file {}", path.display())))
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        let path = self.path(id, "msg");
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Ids of every complete spool file; leftover `.tmp` files (a crash before
    /// the rename, never acknowledged) are deleted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let path = entry.map_err(io_err(&self.dir))?.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            match ext {
                "msg" => ids.push(stem.to_string()),
                "tmp" => {
                    let _ = fs::remove_file(&path);
                }
                _ => {}
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// Syncs the data of several files at once, from a few threads: concurrent
/// syncs share the file system's journal commits, where one thread syncing
/// them in turn pays one commit each.
pub fn sync_files(files: &[&File]) -> Vec<std::io::Result<()>> {
    const THREADS: usize = 8;
    let per = files.len().div_ceil(THREADS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(|f| f.sync_data()).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err(std::io::Error::other("sync thread panicked"))])
            })
            .collect()
    })
}

fn decode(buf: &[u8]) -> Option<NewMessage> {
    let rest = buf.strip_prefix(MAGIC)?;
    let meta_len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let body_len = u64::from_le_bytes(rest.get(4..12)?.try_into().ok()?) as usize;
    let meta = rest.get(12..12 + meta_len)?;
    let body = rest.get(12 + meta_len..)?;
    if body.len() != body_len {
        return None;
    }
    let mut msg: NewMessage = serde_json::from_slice(meta).ok()?;
    msg.body = body.to_vec();
    Some(msg)
}
