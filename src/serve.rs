//! `listrelay serve`: opens the store, binds the sockets, runs LMTP intake and
//! the admin socket until SIGTERM or SIGINT, then drains and stops.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admin::{self, Admin};
use crate::check::probe::ProbeBook;
use crate::config::Config;
use crate::fanout::{Fanout, Hooks};
use crate::intake::Intake;
use crate::lmtp::{self, SessionConfig};
use crate::moderation::Service;
use crate::secret::Secret;
use crate::smtp;
use crate::store::Store;

/// How long open sessions get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

pub async fn serve(config: Config) -> Result<()> {
    crate::telemetry::init(&config)?;
    crate::site::refuse_foreign_data_dir(&config.data_dir)?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let store = crate::site::open_store(&config).await?;
    // Chunk leases name this host by its stable id (kept in its data
    // directory) first, then by its name for whoever reads `listrelay
    // queue`: `HOSTID:HOSTNAME:…`. The lock above proves the previous run of
    // this host is gone, so its leases are released at once, whatever
    // hostname it ran under. Other hosts' leases run their course.
    let id = host_id(&config.data_dir)?;
    let host = format!("{id}:{}", config.hostname);
    match store.release_leases(&format!("{id}:")).await? {
        0 => {}
        n => info!(
            chunks = n,
            "released the chunk leases of this host's previous run"
        ),
    }
    let listeners = lmtp::bind(&config.lmtp.listen).await?;
    let (stop_tx, stop) = watch::channel(false);

    let secret = Secret::load_or_create(&config.secret_path())?;
    // Copies and notices are DKIM-signed with DATA_DIR/dkim's keys.
    crate::auth::keydir::install(&config.data_dir);
    // Posts are checked (DKIM, ARC, SPF, DMARC) through the one resolver.
    if config.auth.evaluate_senders {
        crate::auth::site::install(
            &config.dns,
            &config.hostname,
            config.auth.trust_authserv_id.as_deref(),
        )
        .context("starting the sender checks ([dns], [auth])")?;
    }
    let smtp_cfg = crate::site::smtp_config(&config);
    let bounces = crate::bounce::handler::Handler::start(
        store.clone(),
        &config,
        secret.clone(),
        smtp::Client::new(smtp_cfg.clone()),
        stop.clone(),
    );
    let fanout = Fanout::new(
        store.clone(),
        smtp::Client::new(smtp_cfg.clone()),
        secret.clone(),
        config.fanout.clone(),
        config.intake.recipient_delimiter,
        config.intake.duplicate_grace_secs,
        &host,
    );
    // The MTA self-check's probes (`check mta`), noted by intake, asked
    // about over the admin socket.
    let probes = Arc::new(ProbeBook::new(
        secret.clone(),
        config.intake.recipient_delimiter,
    ));
    let mut moderation = Service::new(store.clone(), &config, secret, smtp::Client::new(smtp_cfg));
    moderation.posts = Some(fanout.posts.clone());
    let moderation = Arc::new(moderation);
    fanout.set_hooks(Hooks {
        gate: Some(moderation.clone()),
        base_url: config.http.base_url.clone(),
    });
    let moderation_task = moderation.clone().start(stop.clone());
    let admin = Arc::new(Admin {
        store: store.clone(),
        delimiter: config.intake.recipient_delimiter,
        bounce_scope: config.bounce.scope,
        moderation: Some(moderation.clone()),
    });
    let http_task = match &config.http.listen {
        None => None,
        Some(listen) => {
            // Bound before anything else starts: a listener that cannot bind
            // is fatal, not a warning under links nothing answers.
            let listener = crate::http::bind(listen).await?;
            let base_path = crate::http::base_path(&config.http.base_url);
            let web = crate::web::Web::new(
                admin.clone(),
                crate::web::Limits::from_config(&config.http),
                &base_path,
            );
            let app = crate::http::app(moderation.clone(), web, &base_path);
            let stop = stop.clone();
            Some(tokio::spawn(async move {
                if let Err(e) = crate::http::serve(listener, app, stop).await {
                    warn!(error = %e, "the HTTP listener failed");
                }
            }))
        }
    };
    let audit_task = tokio::spawn(prune_audit(
        store.clone(),
        config.http.audit_retention_days,
        stop.clone(),
    ));
    let admin_path = config.admin_socket();
    let admin_task = {
        let stop = stop.clone();
        let path = admin_path.clone();
        let probes = probes.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve(&path, admin, probes, stop).await {
                warn!(error = %e, path = %path.display(), "admin socket failed");
            }
        })
    };
    let fanout_task = tokio::spawn(fanout.clone().run(stop.clone()));
    let prune_task = tokio::spawn(prune_window(store.clone(), stop.clone()));
    let digest_task = tokio::spawn(digests(
        crate::digest::Digester::new(
            store.clone(),
            Some(fanout.posts.clone()),
            crate::clock::Clock::system(),
        ),
        stop.clone(),
    ));

    let intake = Arc::new(
        Intake::new(store.clone(), config.intake.recipient_delimiter)
            .notify(fanout.posts.clone())
            .probes(probes),
    );
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
    let _ = tokio::time::timeout(DRAIN, fanout_task).await;
    let _ = prune_task.await;
    let _ = digest_task.await;
    let _ = bounces.await;
    let _ = moderation_task.await;
    if let Some(t) = http_task {
        let _ = t.await;
    }
    let _ = admin_task.await;
    let _ = audit_task.await;
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

/// Drops Message-IDs whose grace has passed, every few minutes.
async fn prune_window(store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
    loop {
        match store.prune_window().await {
            Ok(0) => {}
            Ok(n) => info!(entries = n, "pruned the Message-ID window"),
            Err(e) => warn!(error = %e, "pruning the Message-ID window failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(300)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// How often the digest task looks for issues due (and issues a crash left
/// cut); the first look is at start.
const DIGEST_POLL: Duration = Duration::from_secs(60);

/// Cuts and queues the digest issues that are due, every minute.
async fn digests(digester: crate::digest::Digester, mut stop: watch::Receiver<bool>) {
    loop {
        match digester.run_due().await {
            Ok(0) => {}
            Ok(n) => info!(issues = n, "queued digest issues"),
            Err(e) => warn!(error = %e, "the digest pass failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(DIGEST_POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Drops audit entries older than `http.audit_retention_days`, daily.
async fn prune_audit(store: Arc<dyn Store>, days: u64, mut stop: watch::Receiver<bool>) {
    loop {
        let before = crate::clock::now().saturating_sub(crate::clock::days(days));
        match store.prune_audit(before).await {
            Ok(0) => {}
            Ok(n) => info!(entries = n, days, "pruned the audit log"),
            Err(e) => warn!(error = %e, "pruning the audit log failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(crate::clock::DAY)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Holds an exclusive lock on `DATA_DIR/serve.lock` while the server runs:
/// one `serve` per data directory (the kernel drops it when the process dies).
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let path = dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "another listrelay serve is running on {} (each host needs its own data_dir)",
            dir.display()
        );
    }
    Ok(file)
}

/// This host's stable id, `DATA_DIR/host-id` (created on first start).
fn host_id(dir: &std::path::Path) -> Result<String> {
    let path = dir.join("host-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let id = format!("{:016x}", rand::random::<u64>());
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
    }
}
