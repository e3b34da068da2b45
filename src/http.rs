//! The HTTP listener, off unless `http.listen` is set: one-click
//! unsubscribe (RFC 8058) and the REST API (`web`, at `/api/v1`).
//! `POST /unsubscribe/TOKEN` with the body `List-Unsubscribe=One-Click`
//! removes the member the signed token names at once; `GET` shows a minimal
//! page with a button that makes that POST (mail scanners follow links with
//! GET, so GET never unsubscribes).
//!
//! Everything answers both at `/` and under the path of `http.base_url`
//! (`https://host/lists/` → `/lists/…`), so a reverse proxy may pass the
//! prefix on or strip it. A listener that cannot bind stops `serve` at start:
//! links to it would go out and nothing would answer them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::moderation::Service;
use crate::subscription::oneclick;

/// The router, for `serve` and for tests.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/unsubscribe/{token}", get(page).post(unsubscribe))
        .with_state(service)
}

/// Everything the listener serves: one-click unsubscribe and the API, at
/// `/` and under `base_path` when that is not `/`.
pub fn app(service: Arc<Service>, web: Arc<crate::web::Web>, base_path: &str) -> Router {
    let base = router(service).merge(crate::web::router(web));
    match base_path.trim_end_matches('/') {
        "" => base,
        prefix => Router::new().nest(prefix, base.clone()).merge(base),
    }
}

/// The path part of a base URL (`https://host/lists/` → `/lists/`), where
/// the listener is reached through a reverse proxy; `/` when it has none.
pub fn base_path(base_url: &str) -> String {
    let after_scheme = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    match after_scheme.find('/') {
        Some(i) => {
            let path = &after_scheme[i..];
            let path = path.split(['?', '#']).next().unwrap_or("/");
            if path.ends_with('/') {
                path.to_string()
            } else {
                format!("{path}/")
            }
        }
        None => "/".into(),
    }
}

/// Binds the listener; a failure names the setting to change.
pub async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on http.listen = {listen:?}: is another process using the port? \
             Change http.listen or stop the other process"
            )
        })
}

/// Serves `app` on a bound listener until `stop`; each request knows its
/// peer's address (the audit log records it).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listen = listener.local_addr()?;
    info!(%listen, "HTTP listener ready (one-click unsubscribe, /api/v1)");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Html(format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
             <meta name=\"robots\" content=\"noindex\"></head>\
             <body><h1>{t}</h1>{body}</body></html>\n",
            t = escape(title)
        )),
    )
        .into_response()
}

fn forged() -> Response {
    html(
        StatusCode::FORBIDDEN,
        "Invalid link",
        "<p>This unsubscribe link is not valid.</p>",
    )
}

async fn page(State(s): State<Arc<Service>>, Path(token): Path<String>) -> Response {
    let Some((list, member)) = oneclick::decode(&s.secret, &token) else {
        return forged();
    };
    html(
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<p>Unsubscribe <b>{}</b> from the list <b>{}</b>?</p>\
             <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <button type=\"submit\">Unsubscribe</button></form>",
            escape(&member),
            escape(&list)
        ),
    )
}

/// Whether the body says `List-Unsubscribe=One-Click`, form-encoded or
/// multipart (RFC 8058 allows both).
fn one_click_body(body: &[u8]) -> bool {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    if form
        .iter()
        .any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click")
    {
        return true;
    }
    let text = String::from_utf8_lossy(body);
    text.contains("name=\"List-Unsubscribe\"") && text.contains("One-Click")
}

async fn unsubscribe(
    State(s): State<Arc<Service>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let Some((list_key, member)) = oneclick::decode(&s.secret, &token) else {
        warn!("one-click unsubscribe with a forged or damaged token; refused");
        metrics::counter!("listrelay_oneclick_refused_total").increment(1);
        return forged();
    };
    if !one_click_body(&body) {
        return html(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "<p>Expected List-Unsubscribe=One-Click.</p>",
        );
    }
    let list = match s.store.list(&list_key).await {
        Ok(Some(l)) => l,
        Ok(None) => return html(StatusCode::NOT_FOUND, "No such list", ""),
        Err(e) => {
            warn!(error = %e, "one-click unsubscribe: store error");
            return html(StatusCode::SERVICE_UNAVAILABLE, "Try again later", "");
        }
    };
    match s.leave_now(&list, &member, "one-click").await {
        Ok(r) => {
            metrics::counter!("listrelay_oneclick_unsubscribed_total").increment(1);
            info!(list = %list.address, %member, result = %r, "one-click unsubscribe");
            html(
                StatusCode::OK,
                "Unsubscribed",
                &format!(
                    "<p>{} will get no more mail from {}.</p>",
                    escape(&member),
                    escape(&list.address.to_string())
                ),
            )
        }
        Err(e) => {
            warn!(error = %e, "one-click unsubscribe: store error");
            html(StatusCode::SERVICE_UNAVAILABLE, "Try again later", "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert!(one_click_body(b"List-Unsubscribe=One-Click"));
        assert!(one_click_body(b"List-Unsubscribe=One%2DClick"));
        assert!(one_click_body(
            b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n"
        ));
        assert!(!one_click_body(b""));
        assert!(!one_click_body(b"List-Unsubscribe=no"));
    }

    #[test]
    fn base_paths() {
        assert_eq!(base_path(""), "/");
        assert_eq!(base_path("http://127.0.0.1:8025"), "/");
        assert_eq!(base_path("https://host/"), "/");
        assert_eq!(base_path("https://host/lists"), "/lists/");
        assert_eq!(base_path("https://host/lists/"), "/lists/");
        assert_eq!(base_path("https://host/a/b/?x"), "/a/b/");
    }
}
