//! The admin socket: a Unix socket (mode 0600) in the data directory over which
//! the CLI sends one JSON request per connection and reads one JSON answer.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::warn;

use super::{Admin, Request};

/// Largest request accepted (a member import is sent in slices well below it).
const MAX_REQUEST: usize = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum CallError {
    /// Nothing listens: the caller opens the store itself.
    #[error("no server on {0}")]
    NoServer(String),
    #[error("admin socket: {0}")]
    Io(#[from] std::io::Error),
    /// The server refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Serves admin requests until shutdown.
pub async fn serve(
    path: &Path,
    admin: Arc<Admin>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let stream = tokio::select! {
            s = listener.accept() => s,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        match stream {
            Ok((s, _)) => {
                let admin = admin.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(s, admin).await {
                        warn!(error = %e, "admin connection failed");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

async fn handle(stream: UnixStream, admin: Arc<Admin>) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(r).take(MAX_REQUEST as u64);
    reader.read_until(b'\n', &mut line).await?;
    let answer = match serde_json::from_slice::<Request>(&line) {
        Err(e) => json!({"error": format!("bad request: {e}")}),
        Ok(req) => match admin.execute(req).await {
            Ok(v) => json!({"ok": v}),
            Err(e) => json!({"error": e.to_string()}),
        },
    };
    let mut out = serde_json::to_vec(&answer)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

/// Sends one request to a running server.
pub async fn call(path: &Path, req: &Request) -> Result<Value, CallError> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(CallError::NoServer(path.display().to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let (r, mut w) = stream.into_split();
    let mut out = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    let mut line = Vec::new();
    BufReader::new(r).read_until(b'\n', &mut line).await?;
    let mut answer: Value = serde_json::from_slice(&line).map_err(std::io::Error::other)?;
    if let Some(e) = answer.get("error").and_then(Value::as_str) {
        return Err(CallError::Refused(e.to_string()));
    }
    Ok(answer.get_mut("ok").map(Value::take).unwrap_or(Value::Null))
}
