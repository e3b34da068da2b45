//! The configured site as both `serve` and the CLI's local mode open it: its
//! store (with context saying which) and its re-injection client settings.
//! It lives apart from both so that neither imports the other for it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::{Config, SocketAddress, StoreKind};
use crate::smtp;
use crate::store::Store;

/// Opens the configured store (sled under `data_dir`, or PostgreSQL, migrated),
/// creating it when there is none yet: `serve`, `import` and the commands
/// that create a list or a domain.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    refuse_foreign_data_dir(&config.data_dir)?;
    crate::store::open(config)
        .await
        .with_context(|| match config.store_kind() {
            StoreKind::Sled => format!("opening the store in {}", config.data_dir.display()),
            StoreKind::Postgres(_) => "opening the PostgreSQL store".to_string(),
        })
}

/// Opens the configured store only if it exists: a command that reads must
/// not leave a new, empty store (owned by whoever ran it) where the server
/// will look for its own.
pub async fn open_existing_store(config: &Config) -> Result<Arc<dyn Store>> {
    // Any part of a sled store makes one: a lost `db/` is rebuilt from the spool.
    let parts = ["db", "spool", "journal"];
    if config.store_kind() == StoreKind::Sled
        && !parts.iter().any(|p| config.data_dir.join(p).exists())
    {
        bail!(
            "there is no store in {}: check --data-dir or \
             `data_dir` in the configuration, or create a list first with `listrelay list create`",
            config.data_dir.display()
        );
    }
    open_store(config).await
}

/// Refuses to work as root in a data directory that belongs to another user:
/// the files root would create there (store pages, journal, spool, secret)
/// could not be opened by the server, which runs as that user.
pub fn refuse_foreign_data_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    if meta.uid() == 0 {
        return Ok(());
    }
    let owner = user_name(meta.uid()).unwrap_or_else(|| format!("uid {}", meta.uid()));
    bail!(
        "{} belongs to user {owner}, and this command runs as root: files it created there \
         could not be opened by the server. Run it as that user, e.g. \
         `runuser -u {owner} -- listrelay …`",
        dir.display()
    )
}

/// The login name of a user id, from the password database.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: getpwuid_r writes only into `pwd` and `buf` (whose length it is
    // given) and sets `result` to `&pwd` or null.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// The re-injection client's settings from the configuration.
pub fn smtp_config(config: &Config) -> smtp::ClientConfig {
    let mut smtp_cfg = smtp::ClientConfig::new(
        match &config.smtp.relay {
            SocketAddress::Tcp(a) => smtp::Target::Tcp(a.clone()),
            SocketAddress::Unix(p) => smtp::Target::Unix(p.clone()),
        },
        config.hostname.clone(),
    );
    smtp_cfg.max_connections = config.smtp.max_connections;
    smtp_cfg.connect_timeout = Duration::from_secs(config.smtp.connect_timeout_secs);
    smtp_cfg.command_timeout = Duration::from_secs(config.smtp.command_timeout_secs);
    smtp_cfg.max_connection_age = Duration::from_secs(config.smtp.connection_reuse_secs);
    smtp_cfg
}
