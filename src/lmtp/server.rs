//! LMTP listeners on TCP and Unix sockets, with a bound on concurrent sessions.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::reply::reply;
use super::session::{run, SessionConfig};
use crate::config::SocketAddress;
use crate::intake::Intake;

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

/// The bound LMTP sockets, ready to serve.
pub struct Listeners(Vec<Listener>);

/// Binds every configured address (before the server reports itself ready).
pub async fn bind(addrs: &[SocketAddress]) -> anyhow::Result<Listeners> {
    let mut out = Vec::new();
    for addr in addrs {
        out.push(match addr {
            SocketAddress::Tcp(a) => Listener::Tcp(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding LMTP on {a}"))?,
            ),
            SocketAddress::Unix(p) => {
                // A socket file left by a previous run would make bind fail.
                if p.exists() {
                    std::fs::remove_file(p)
                        .with_context(|| format!("removing stale socket {}", p.display()))?;
                }
                let listener = UnixListener::bind(p)
                    .with_context(|| format!("binding LMTP on {}", p.display()))?;
                open_to_the_mta(p)?;
                Listener::Unix(listener, p.clone())
            }
        });
        info!(%addr, "LMTP listening");
    }
    Ok(Listeners(out))
}

/// Makes the socket connectable by the MTA's user (mode 0666; connecting
/// needs write permission, and the umask, e.g. systemd's 0027, would leave
/// only listrelay's own user and group). Who may reach it is decided by the
/// directory it lives in, as for Postfix's and Dovecot's sockets; loopback
/// TCP, the default listener, has no access control at all.
fn open_to_the_mta(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).with_context(|| {
        format!(
            "making the LMTP socket {} connectable (chmod 0666); check that listrelay owns it",
            path.display()
        )
    })
}

impl Listeners {
    /// Accepts sessions until `shutdown` turns true, then waits for the open
    /// sessions (each closes at its next command boundary).
    pub async fn serve(
        self,
        intake: Arc<Intake>,
        cfg: Arc<SessionConfig>,
        max_connections: usize,
        shutdown: watch::Receiver<bool>,
    ) {
        let permits = Arc::new(Semaphore::new(max_connections));
        let mut tasks = JoinSet::new();
        for l in self.0 {
            let (intake, cfg, permits, shutdown) = (
                intake.clone(),
                cfg.clone(),
                permits.clone(),
                shutdown.clone(),
            );
            tasks.spawn(accept_loop(l, intake, cfg, permits, shutdown));
        }
        while tasks.join_next().await.is_some() {}
    }
}

async fn accept_loop(
    listener: Listener,
    intake: Arc<Intake>,
    cfg: Arc<SessionConfig>,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = shutdown.wait_for(|s| *s) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let (read, mut write) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        metrics::counter!("listrelay_lmtp_connections_total").increment(1);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("listrelay_lmtp_connections_refused_total").increment(1);
            tokio::spawn(async move {
                let mut out = Vec::new();
                reply(421, "4.3.2", "too many connections, try again later").write_to(&mut out);
                use tokio::io::AsyncWriteExt;
                let _ = write.write_all(&out).await;
                let _ = write.shutdown().await;
            });
            continue;
        };
        let (intake, cfg, shutdown) = (intake.clone(), cfg.clone(), shutdown.clone());
        sessions.spawn(async move {
            metrics::gauge!("listrelay_lmtp_sessions").increment(1.0);
            run(read, write, &intake, &cfg, shutdown).await;
            metrics::gauge!("listrelay_lmtp_sessions").decrement(1.0);
            drop(permit);
        });
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    while sessions.join_next().await.is_some() {}
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

async fn accept(listener: &Listener) -> std::io::Result<(Reader, Writer)> {
    Ok(match listener {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let (r, w) = s.into_split();
            (Box::new(r), Box::new(w))
        }
        Listener::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            let (r, w) = s.into_split();
            (Box::new(r), Box::new(w))
        }
    })
}
