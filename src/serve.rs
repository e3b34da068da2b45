//! `listrelay serve`: opens the store, binds the sockets, runs LMTP intake and
//! the admin socket until SIGTERM or SIGINT, then drains and stops.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::intake::Intake;
use crate::lmtp::{self, SessionConfig};

/// How long open sessions get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

pub async fn serve(config: Config) -> Result<()> {
    crate::telemetry::init(&config)?;
    let store = crate::cli::open_store(&config)?;
    let listeners = lmtp::bind(&config.lmtp.listen).await?;
    let (stop_tx, stop) = watch::channel(false);

    let admin = Arc::new(Admin {
        store: store.clone(),
        delimiter: config.intake.recipient_delimiter,
    });
    let admin_path = config.admin_socket();
    let admin_task = {
        let stop = stop.clone();
        let path = admin_path.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve(&path, admin, stop).await {
                warn!(error = %e, path = %path.display(), "admin socket failed");
            }
        })
    };

    let intake = Arc::new(Intake::new(
        store.clone(),
        config.intake.recipient_delimiter,
    ));
    let session = Arc::new(SessionConfig {
        hostname: config.hostname.clone(),
        max_message_size: config.lmtp.max_message_size,
        max_recipients: config.lmtp.max_recipients,
        max_line_length: config.lmtp.max_line_length,
        command_timeout: config.command_timeout(),
        data_timeout: config.data_timeout(),
    });
    let lmtp_task =
        tokio::spawn(listeners.serve(intake, session, config.lmtp.max_connections, stop.clone()));
    info!(data_dir = %config.data_dir.display(), "listrelay ready");

    wait_for_signal().await?;
    info!("shutting down");
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN, lmtp_task).await.is_err() {
        warn!("sessions still open after {DRAIN:?}; stopping anyway");
    }
    let _ = admin_task.await;
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}
