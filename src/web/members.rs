//! The member export and import as NDJSON, streamed both ways so neither
//! side ever holds a whole list: the export runs `MemberList` (the same
//! paged read as `listrelay member list`) into a bounded channel that the
//! response body drains; the import reads the request body as it arrives
//! and sends `MemberAdd` slices, as `listrelay member import` does.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Extension;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::warn;

use super::problem::Problem;
use super::{auth, execute, Ctx, Web};
use crate::address::Address;
use crate::admin::{Item, ItemSink, Request, Response};

/// Bytes of NDJSON gathered before they go to the client: large enough that
/// per-chunk costs vanish, small enough to keep memory flat.
const CHUNK: usize = 64 * 1024;

/// Chunks waiting for a slow client before the reader waits too.
const CHUNKS_AHEAD: usize = 4;

/// Addresses per `MemberAdd` during an import (as the CLI's import).
const SLICE: usize = 10_000;

/// Longest import line read; a longer one is refused, not buffered.
const MAX_LINE: usize = 4096;

/// Refused lines reported one by one; beyond, only counted.
const MAX_REPORTED: usize = 1000;

/// Writes members as NDJSON lines into the response body's channel.
struct NdjsonSink {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl NdjsonSink {
    async fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.send(Ok(chunk)).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client closed the export",
            )
        })
    }
}

#[async_trait::async_trait]
impl ItemSink for NdjsonSink {
    async fn item(&mut self, item: Item) -> std::io::Result<()> {
        let Item::Member(m) = item;
        serde_json::to_writer(&mut self.buf, &m).map_err(std::io::Error::other)?;
        self.buf.push(b'\n');
        if self.buf.len() >= CHUNK {
            self.send().await?;
        }
        Ok(())
    }
}

/// `GET /lists/{list}/members/export`: every member, one JSON object a line
/// (`address`, `added_at`, `delivery_enabled`, `moderated`). A failure
/// half-way ends the body without its final chunk, so the client sees an
/// incomplete transfer, never a silently short list.
pub async fn export(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
) -> Result<HttpResponse, Problem> {
    let req = Request::MemberList { list: list.clone() };
    auth::permit(&ctx.token, &req)?;
    // A missing list is a 404 before the 200 head is sent.
    must_exist(&web, &list).await?;
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    let caller = ctx.caller.clone();
    tokio::spawn(async move {
        let mut sink = NdjsonSink {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let done = match web.admin.execute_as(&caller, req, &mut sink).await {
            Ok(_) => sink.send().await,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        if let Err(e) = done {
            warn!(error = %e, "member export ended early");
            let _ = tx.send(Err(e)).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut r = (StatusCode::OK, Body::from_stream(stream)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// A 404 for a list that does not exist: one record read (`ListShow`
/// would also count the members, a scan of the whole list).
async fn must_exist(web: &Web, list: &str) -> Result<(), Problem> {
    let a = Address::parse(list)
        .map_err(|e| Problem::bad_request("invalid", format!("list address {list:?}: {e}")))?;
    match web.admin.store.list(&a.key()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Problem::not_found(format!("no list {a}"))),
        Err(e) => Err(crate::admin::AdminError::Store(e).into()),
    }
}

/// One line of an import: an object with `address` (what the export
/// writes; other fields are ignored) or a bare JSON string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Address(String),
    Member { address: String },
}

/// A refused import line.
#[derive(Serialize)]
struct Refused {
    /// Line number, from 1.
    line: usize,
    /// Why.
    error: String,
}

/// What an import did.
#[derive(Serialize, Default)]
struct Report {
    added: u64,
    already: u64,
    /// How many lines were refused.
    refused: usize,
    /// The first refused lines, with the reason.
    invalid: Vec<Refused>,
}

impl Report {
    fn refuse(&mut self, line: usize, error: String) {
        self.refused += 1;
        if self.invalid.len() < MAX_REPORTED {
            self.invalid.push(Refused { line, error });
        }
    }
}

/// Reads the import line by line.
struct Importer<'a> {
    web: &'a Web,
    ctx: &'a Ctx,
    list: String,
    slice: Vec<String>,
    report: Report,
    line_no: usize,
    line: Vec<u8>,
    /// The current line passed [`MAX_LINE`]: it is skipped to its end.
    overlong: bool,
}

impl Importer<'_> {
    fn byte_run(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        if self.line.len() + bytes.len() > MAX_LINE {
            self.overlong = true;
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    async fn chunk(&mut self, mut chunk: &[u8]) -> Result<(), Problem> {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            self.byte_run(&chunk[..nl]);
            self.end_line().await?;
            chunk = &chunk[nl + 1..];
        }
        self.byte_run(chunk);
        Ok(())
    }

    async fn end_line(&mut self) -> Result<(), Problem> {
        self.line_no += 1;
        let line = std::mem::take(&mut self.line);
        if std::mem::replace(&mut self.overlong, false) {
            self.report
                .refuse(self.line_no, format!("longer than {MAX_LINE} bytes"));
            return Ok(());
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            return Ok(());
        }
        let address = match serde_json::from_slice::<Line>(text) {
            Ok(Line::Address(a) | Line::Member { address: a }) => a,
            Err(e) => {
                self.report.refuse(
                    self.line_no,
                    format!("not a JSON string or an object with \"address\": {e}"),
                );
                return Ok(());
            }
        };
        if let Err(e) = Address::parse(&address) {
            self.report
                .refuse(self.line_no, format!("{address:?}: {e}"));
            return Ok(());
        }
        self.slice.push(address);
        if self.slice.len() >= SLICE {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<(), Problem> {
        if self.slice.is_empty() {
            return Ok(());
        }
        let req = Request::MemberAdd {
            list: self.list.clone(),
            addresses: std::mem::take(&mut self.slice),
        };
        match execute(self.web, self.ctx, req).await? {
            Response::MembersAdded(r) => {
                self.report.added += r.added;
                self.report.already += r.already;
                Ok(())
            }
            _ => Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unexpected",
                "the server gave an unexpected answer to a member add; see its log",
            )),
        }
    }
}

/// `POST /lists/{list}/members/import`: NDJSON in, the report out. Read as
/// it arrives and added in slices, so a million lines never sit in memory.
pub async fn import(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<HttpResponse, Problem> {
    auth::permit(
        &ctx.token,
        &Request::MemberAdd {
            list: list.clone(),
            addresses: Vec::new(),
        },
    )?;
    let max = web.limits.max_import_bytes;
    let too_large = |added: u64| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the import is larger than {max} bytes (http.max_import_bytes); \
                 {added} members were added before it stopped: split the file"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(0));
    }
    must_exist(&web, &list).await?;
    let mut imp = Importer {
        web: &web,
        ctx: &ctx,
        list,
        slice: Vec::with_capacity(SLICE),
        report: Report::default(),
        line_no: 0,
        line: Vec::new(),
        overlong: false,
    };
    let mut stream = body.into_data_stream();
    let mut read: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Problem::bad_request("body", format!("reading the import: {e}")))?;
        read += chunk.len() as u64;
        if read > max {
            imp.send().await?;
            return Err(too_large(imp.report.added));
        }
        imp.chunk(&chunk).await?;
    }
    if !imp.line.is_empty() || imp.overlong {
        imp.end_line().await?;
    }
    imp.send().await?;
    let status = StatusCode::OK;
    let body = serde_json::to_value(&imp.report).unwrap_or_default();
    Ok(super::api::json(status, &body))
}
