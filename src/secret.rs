//! The site secret: the HMAC key that signs VERP tags and tokens. It lives in a
//! file (mode 0600) created with 32 bytes from the OS CSPRNG on first use.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads the secret from `path`, creating it if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let hex = String::from_utf8_lossy(&bytes);
                let key = hex::decode(hex.trim())
                    .with_context(|| format!("{}: the secret must be hex", path.display()))?;
                if key.len() < 16 {
                    bail!("{}: the secret must be at least 16 bytes", path.display());
                }
                Ok(Secret(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("creating the site secret {}", path.display()))?;
                writeln!(f, "{}", hex::encode(key))?;
                f.sync_all()?;
                Ok(Secret(key.to_vec()))
            }
            Err(e) => Err(e).with_context(|| format!("reading the site secret {}", path.display())),
        }
    }
}
