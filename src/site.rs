//! The configured site as both `serve` and the CLI's local mode open it: its
//! store (with context saying which) and its re-injection client settings.
//! It lives apart from both so that neither imports the other for it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::{Config, SocketAddress, StoreKind};
use crate::smtp;
use crate::store::Store;

/// Opens the configured store (sled under `data_dir`, or PostgreSQL, migrated).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    crate::store::open(config)
        .await
        .with_context(|| match config.store_kind() {
            StoreKind::Sled => format!("opening the store in {}", config.data_dir.display()),
            StoreKind::Postgres(_) => "opening the PostgreSQL store".to_string(),
        })
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
    smtp_cfg
}
