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
//!
//! The accept loop is this module's own (hyper's HTTP/1 connection with a
//! timer), because `axum::serve` sets no header read timeout: a client that
//! sends its request head a byte every few seconds (slowloris) would hold a
//! connection for ever. Here it is dropped [`HEADER_READ_TIMEOUT`] after the
//! head began.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use std::time::Duration;
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

/// How long a client may take to send a request's head (the request line
/// and headers); then the connection is closed. A reverse proxy sends a
/// head at once, a person's browser too.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the listener serves: one-click unsubscribe, the API and the
/// pages, at `/` and under `base_path` when that is not `/`.
pub fn app(service: Arc<Service>, web: Arc<crate::web::Web>, base_path: &str) -> Router {
    let base = router(service.clone())
        .merge(crate::web::router(web.clone()))
        .merge(crate::web::pages::router(web, service));
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
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_with(listener, app, stop, HEADER_READ_TIMEOUT).await
}

/// [`serve`] with another bound on reading a request's head.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
    header_timeout: Duration,
) -> std::io::Result<()> {
    let listen = listener.local_addr()?;
    info!(%listen, "HTTP listener ready (one-click unsubscribe, /api/v1, pages)");
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    let _ = sock.set_nodelay(true);
                    conns.spawn(connection(sock, peer, app.clone(), stop.clone(), header_timeout));
                }
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    // Connections in progress finish their request, then close.
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// Resolves once `stop` says stop (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One HTTP/1.1 connection: requests in turn, each with the peer's
/// address, the head read within `header_timeout`.
async fn connection(
    sock: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    mut stop: watch::Receiver<bool>,
    header_timeout: Duration,
) {
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A result page (one sentence) in the pages' frame, with their headers.
fn html(base: &str, status: StatusCode, title: &str, message: &str) -> Response {
    let page = crate::web::pages::Notice {
        c: crate::web::pages::Chrome {
            base: base.to_string(),
            user: None,
            csrf: String::new(),
            flash: String::new(),
        },
        title: title.to_string(),
        message: message.to_string(),
        back: String::new(),
    };
    let mut r = crate::web::pages::render(&page);
    *r.status_mut() = status;
    secure_headers(&mut r);
    r
}

fn forged(base: &str) -> Response {
    html(
        base,
        StatusCode::FORBIDDEN,
        "Invalid link",
        "This unsubscribe link is not valid.",
    )
}

/// The landing page of a one-click link (GET): a button that makes the POST.
#[derive(askama::Template)]
#[template(path = "unsubscribe.html")]
struct Landing {
    c: crate::web::pages::Chrome,
    list: String,
    /// The member, lowercased; the form posts back to the link itself.
    member: String,
}

async fn page(
    State(s): State<Arc<Service>>,
    Path(token): Path<String>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> Response {
    let (_, base) = paths(&uri);
    let Some((list, member)) = oneclick::decode(&s.secret, &token) else {
        return forged(&base);
    };
    let landing = Landing {
        c: crate::web::pages::Chrome {
            base,
            user: None,
            csrf: String::new(),
            flash: String::new(),
        },
        list,
        member,
    };
    let mut r = crate::web::pages::render(&landing);
    secure_headers(&mut r);
    r
}

/// The path the browser used (prefix included: a proxy may pass it on)
/// and the base path before `unsubscribe/`, where the stylesheet is.
fn paths(uri: &axum::http::Uri) -> (String, String) {
    let path = uri.path().to_string();
    let base = path
        .rfind("unsubscribe/")
        .map_or("/".to_string(), |i| path[..i].to_string());
    (path, base)
}

/// The pages' security headers, on the one-click answers too.
fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(crate::web::pages::CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        axum::http::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
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
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    body: Bytes,
) -> Response {
    let (_, base) = paths(&uri);
    let base = base.as_str();
    let Some((list_key, member)) = oneclick::decode(&s.secret, &token) else {
        warn!("one-click unsubscribe with a forged or damaged token; refused");
        metrics::counter!("listrelay_oneclick_refused_total").increment(1);
        return forged(base);
    };
    if !one_click_body(&body) {
        return html(
            base,
            StatusCode::BAD_REQUEST,
            "Bad request",
            "Expected List-Unsubscribe=One-Click.",
        );
    }
    let list = match s.store.list(&list_key).await {
        Ok(Some(l)) => l,
        Ok(None) => return html(base, StatusCode::NOT_FOUND, "No such list", ""),
        Err(e) => {
            warn!(error = %e, "one-click unsubscribe: store error");
            return html(base, StatusCode::SERVICE_UNAVAILABLE, "Try again later", "");
        }
    };
    match s.leave_now(&list, &member, "one-click").await {
        Ok(r) => {
            metrics::counter!("listrelay_oneclick_unsubscribed_total").increment(1);
            info!(list = %list.address, %member, result = %r, "one-click unsubscribe");
            html(
                base,
                StatusCode::OK,
                "Unsubscribed",
                &format!("{member} will get no more mail from {}.", list.address),
            )
        }
        Err(e) => {
            warn!(error = %e, "one-click unsubscribe: store error");
            html(base, StatusCode::SERVICE_UNAVAILABLE, "Try again later", "")
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
