//! The admin socket: a Unix socket (mode 0600) in the data directory. One
//! request per connection, as NDJSON: the client writes its [`Request`] on one
//! line; the server answers with [`Frame`]s, one per line (items, then `done`
//! or `error`), written as they are produced so a long member list flows with
//! flat memory on both sides.

use std::path::Path;
use std::sync::Arc;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::warn;

use super::protocol::Refusal;
use super::{Admin, Frame, Item, ItemSink, Request, Response};
use crate::check::probe::ProbeBook;

/// Largest request accepted (a member import is sent in slices well below it).
const MAX_REQUEST: usize = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum CallError {
    /// Nothing listens: the caller opens the store itself.
    #[error("no server on {0}")]
    NoServer(String),
    #[error("admin socket: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not a frame (a version mismatch?).
    #[error(
        "the server's answer is malformed ({0}); are the CLI and the server the same version?"
    )]
    Malformed(serde_json::Error),
    /// The server closed the connection before its last frame.
    #[error("the server closed the connection before the end of its answer; see its log")]
    Truncated,
    /// The caller's item handler failed (e.g. its output was closed).
    #[error("{0}")]
    Output(std::io::Error),
    /// The server refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Serves admin requests until shutdown.
pub async fn serve(
    path: &Path,
    admin: Arc<Admin>,
    probes: Arc<ProbeBook>,
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
                let (admin, probes) = (admin.clone(), probes.clone());
                tokio::spawn(async move {
                    if let Err(e) = handle(s, admin, probes).await {
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

/// Writes frames to a connection, buffered: a full buffer waits for the
/// reader, which is what keeps a streamed answer's memory flat.
struct FrameWriter<W>(BufWriter<W>);

impl<W: AsyncWrite + Unpin + Send> FrameWriter<W> {
    async fn frame(&mut self, frame: &Frame) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(frame).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.0.write_all(&line).await
    }
}

#[async_trait::async_trait]
impl<W: AsyncWrite + Unpin + Send> ItemSink for FrameWriter<W> {
    async fn item(&mut self, item: Item) -> std::io::Result<()> {
        self.frame(&Frame::Item(item)).await
    }
}

async fn handle(
    stream: UnixStream,
    admin: Arc<Admin>,
    probes: Arc<ProbeBook>,
) -> std::io::Result<()> {
    // The audit log names the user who ran the CLI: the socket is 0600, so
    // it is the server's own user or root, but which one is worth knowing.
    let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
    let caller = crate::model::Caller::cli(uid, "socket");
    let (r, w) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(r).take(MAX_REQUEST as u64);
    reader.read_until(b'\n', &mut line).await?;
    let mut out = FrameWriter(BufWriter::new(w));
    let last = match serde_json::from_slice::<Request>(&line) {
        Err(e) => Frame::Error(Refusal {
            message: format!("bad request: {e}"),
        }),
        Ok(req) => match match req {
            // Probes live in this process only (the MTA self-check).
            Request::ProbeStart { .. } | Request::ProbeStatus { .. } => {
                admin.probe(&probes, req).await
            }
            req => admin.execute_as(&caller, req, &mut out).await,
        } {
            Ok(response) => Frame::Done(Box::new(response)),
            Err(e) => Frame::Error(Refusal {
                message: e.to_string(),
            }),
        },
    };
    out.frame(&last).await?;
    out.0.flush().await?;
    out.0.into_inner().shutdown().await
}

/// Sends one request to a running server; each streamed item goes to
/// `on_item` as it arrives, then the final answer is returned.
pub async fn call(
    path: &Path,
    req: &Request,
    on_item: &mut (dyn FnMut(Item) -> std::io::Result<()> + Send),
) -> Result<Response, CallError> {
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
    let mut reader = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Err(CallError::Truncated);
        }
        match serde_json::from_slice(&line).map_err(CallError::Malformed)? {
            Frame::Item(item) => on_item(item).map_err(CallError::Output)?,
            Frame::Done(response) => return Ok(*response),
            Frame::Error(refusal) => return Err(CallError::Refused(refusal.message)),
        }
    }
}
