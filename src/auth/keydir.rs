//! Where a site's DKIM keys live: one file per key,
//! `DATA_DIR/dkim/DOMAIN/SELECTOR.json` (a [`DkimKeyRecord`], mode 0600),
//! written by `listrelay dkim keygen` and read by the server.
//!
//! Files rather than the store: a key is a site secret like `DATA_DIR/secret`
//! (hosts that share a store share the directory, or a copy of it), and the
//! operator can back it up, copy or remove it with ordinary tools. A key is
//! written to a temporary file, fsynced, renamed, and the directory fsynced,
//! so a crash never leaves half a key. [`KeyRing`] reloads a domain's keys
//! when its directory's mtime changes (every add or remove renames or
//! unlinks inside it), so `keygen` and `remove` apply without a restart.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use tracing::warn;

use super::keys::DkimKeyRecord;
use super::sign::Signer;

/// `DATA_DIR/dkim`: the key directory of a data directory.
pub fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("dkim")
}

/// A domain name safe to use as a directory name (no `/`, no `..`).
fn domain_dir(root: &Path, domain: &str) -> Result<PathBuf> {
    let d = domain.trim().to_ascii_lowercase();
    if d.is_empty()
        || d.starts_with('.')
        || !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        bail!("{domain:?} is not a domain name: give the list domain, e.g. lists.example.org");
    }
    Ok(root.join(d))
}

/// Stores `key` as `ROOT/DOMAIN/SELECTOR.json` (atomically, fsynced, 0600);
/// refuses to replace an existing selector (remove it first).
pub fn save(root: &Path, key: &DkimKeyRecord) -> Result<PathBuf> {
    let dir = domain_dir(root, &key.domain)?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Only the server's user reads the keys.
    for d in [root, dir.as_path()] {
        fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("making {} private", d.display()))?;
    }
    let path = dir.join(format!("{}.json", key.selector));
    if path.exists() {
        bail!(
            "{} already has a key for selector {}: choose another --selector, or `listrelay dkim remove {} {}` first",
            key.domain,
            key.selector,
            key.domain,
            key.selector
        );
    }
    let tmp = dir.join(format!(".{}.json.tmp", key.selector));
    let json = serde_json::to_vec_pretty(key).context("encoding the DKIM key")?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&json)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
    sync_dir(&dir)?;
    Ok(path)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Removes one key; an error if there is none.
pub fn remove(root: &Path, domain: &str, selector: &str) -> Result<()> {
    let dir = domain_dir(root, domain)?;
    let path = dir.join(format!("{selector}.json"));
    fs::remove_file(&path).with_context(|| {
        format!(
            "no DKIM key {selector} for {domain} ({}): see `listrelay dkim list`",
            path.display()
        )
    })?;
    sync_dir(&dir)
}

/// The keys of one domain, oldest first (an unreadable file is reported and
/// skipped: the other selector keeps signing).
pub fn load_domain(root: &Path, domain: &str) -> Result<Vec<DkimKeyRecord>> {
    let dir = domain_dir(root, domain)?;
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        match fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|b| serde_json::from_slice::<DkimKeyRecord>(&b).map_err(Into::into))
        {
            Ok(k) => keys.push(k),
            Err(e) => warn!(path = %path.display(), error = %e,
                "an unreadable DKIM key file is skipped: remove it and run `listrelay dkim keygen` again"),
        }
    }
    keys.sort_by(|a, b| (a.created_at, &a.selector).cmp(&(b.created_at, &b.selector)));
    Ok(keys)
}

/// Every key of every domain, by domain then age.
pub fn load_all(root: &Path) -> Result<Vec<DkimKeyRecord>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
    };
    let mut domains: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    domains.sort();
    let mut all = Vec::new();
    for d in domains {
        all.extend(load_domain(root, &d)?);
    }
    Ok(all)
}

/// What a domain's directory held: its mtime and each key file's name and
/// mtime (the directory mtime alone can miss two changes within one clock
/// tick).
type Fingerprint = (Option<SystemTime>, Vec<(String, Option<SystemTime>)>);

fn fingerprint(dir: &Path) -> Fingerprint {
    let mtime = fs::metadata(dir).and_then(|m| m.modified()).ok();
    let mut files: Vec<(String, Option<SystemTime>)> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let t = e.metadata().and_then(|m| m.modified()).ok();
                    (e.file_name().to_string_lossy().into_owned(), t)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    (mtime, files)
}

/// A domain's loaded signer, with what its directory held then.
struct Loaded {
    mtime: Fingerprint,
    signer: Option<Arc<Signer>>,
}

/// The server's view of the key directory: one [`Signer`] per domain,
/// loaded on first use and again when the domain's directory changes
/// (checked at each call: one `readdir`, cheap next to signing).
pub struct KeyRing {
    root: PathBuf,
    loaded: Mutex<HashMap<String, Loaded>>,
}

impl KeyRing {
    /// The keys under `root` (usually [`root`] of the data directory).
    pub fn new(root: PathBuf) -> KeyRing {
        KeyRing {
            root,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The signer of `domain`, or `None` when it has no (usable) key.
    pub fn signer(&self, domain: &str) -> Option<Arc<Signer>> {
        let domain = domain.to_ascii_lowercase();
        let dir = domain_dir(&self.root, &domain).ok()?;
        let mtime = fingerprint(&dir);
        if let Some(l) = self.loaded.lock().ok()?.get(&domain) {
            if l.mtime == mtime {
                return l.signer.clone();
            }
        }
        let signer = match load_domain(&self.root, &domain) {
            Ok(keys) if keys.is_empty() => None,
            Ok(keys) => match Signer::new(&keys) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    warn!(%domain, error = %e, "the DKIM keys do not load; copies go out unsigned");
                    None
                }
            },
            Err(e) => {
                warn!(%domain, error = %e, "reading the DKIM keys failed; copies go out unsigned");
                None
            }
        };
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(
                domain,
                Loaded {
                    mtime,
                    signer: signer.clone(),
                },
            );
        }
        signer
    }
}

/// The key ring of this process's data directory, once `serve` has
/// installed it. One per process (`serve` locks its data directory), read by
/// fan-out and notices alike; a process-wide handle keeps their
/// constructors, shared with the rest of the server, unchanged.
static SITE: std::sync::OnceLock<Arc<KeyRing>> = std::sync::OnceLock::new();

/// Makes `DATA_DIR/dkim` the keys every copy and notice is signed with
/// (first call wins).
pub fn install(data_dir: &Path) -> Arc<KeyRing> {
    SITE.get_or_init(|| Arc::new(KeyRing::new(root(data_dir))))
        .clone()
}

/// The signer of `domain` from the installed key ring, if any.
pub fn site_signer(domain: &str) -> Option<Arc<Signer>> {
    SITE.get()?.signer(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{generate, Algorithm};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_saved_private_listed_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = root(tmp.path());
        let ring = KeyRing::new(root.clone());
        assert!(ring.signer("lists.example.org").is_none());
        let rsa = generate("lists.example.org", "r1", Algorithm::RsaSha256, 1).unwrap();
        let ed = generate("lists.example.org", "e1", Algorithm::Ed25519Sha256, 2).unwrap();
        let path = save(&root, &rsa).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(save(&root, &rsa).is_err(), "no silent replacement");
        save(&root, &ed).unwrap();
        let all = load_all(&root).unwrap();
        assert_eq!(
            all.iter().map(|k| k.selector.as_str()).collect::<Vec<_>>(),
            ["r1", "e1"]
        );
        assert!(ring.signer("Lists.Example.org").is_some());
        remove(&root, "lists.example.org", "r1").unwrap();
        remove(&root, "lists.example.org", "e1").unwrap();
        assert!(remove(&root, "lists.example.org", "e1").is_err());
        assert!(ring.signer("lists.example.org").is_none(), "reloaded");
        assert!(domain_dir(&root, "../etc").is_err());
    }
}
