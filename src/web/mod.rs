//! The web door: the REST API at `/api/v1` and the pages (`pages/`).
//! Every route maps to the same typed [`admin::Request`] the CLI and the
//! admin socket send, executed by the same [`Admin::execute_as`], which
//! writes the audit log; this module adds what HTTP needs and nothing else:
//!
//! * `auth.rs`: bearer tokens and the role each route needs ([`auth::permit`]);
//! * `problem.rs`: every refusal as RFC 9457 `application/problem+json`;
//! * `api.rs`: the routes, one handler per request kind;
//! * `members.rs`: the NDJSON member export and import, streamed both ways;
//! * `openapi.rs`: the OpenAPI 3.1 document at `/api/v1/openapi.json`;
//! * `session.rs`: the pages' signed session cookie, CSRF token and links;
//! * `pages/`: the pages for subscribers, moderators and owners.
//!
//! Limits: a request body larger than `http.max_body_bytes` gets 413, a
//! request not answered within `http.request_timeout_secs` gets 503, and
//! beyond `http.max_concurrent_requests` at once the next gets 503 at once.

pub mod api;
pub mod auth;
mod members;
pub mod openapi;
pub mod pages;
pub mod problem;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::admin::{self, Admin};
use crate::model::{ApiToken, Caller};
use problem::Problem;

/// The API's limits, from `[http]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON body read (`http.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Largest NDJSON import (`http.max_import_bytes`).
    pub max_import_bytes: u64,
    /// How long a request may take (`http.request_timeout_secs`).
    pub timeout: Duration,
    /// Requests at once (`http.max_concurrent_requests`).
    pub concurrency: usize,
    /// The public URL of the listener (`http.base_url`), read with the
    /// limits from `[http]`: the pages put it in the links they mail and
    /// mark cookies `Secure` when it is https. Never the request's Host.
    pub base_url: String,
}

impl Limits {
    pub fn from_config(c: &crate::config::HttpConfig) -> Limits {
        Limits {
            max_body_bytes: c.max_body_bytes,
            max_import_bytes: c.max_import_bytes,
            timeout: Duration::from_secs(c.request_timeout_secs),
            concurrency: c.max_concurrent_requests,
            base_url: c.base_url.clone(),
        }
    }
}

/// What the API's handlers share.
pub struct Web {
    /// Where requests run: the same administration as the admin socket.
    pub admin: Arc<Admin>,
    pub limits: Limits,
    /// The path the listener is reached at (`/`, or a reverse proxy's
    /// prefix such as `/lists/`), for the OpenAPI document's server URL.
    pub base_path: String,
    /// Permits for requests in progress: bounded concurrency.
    permits: Arc<Semaphore>,
}

impl Web {
    pub fn new(admin: Arc<Admin>, limits: Limits, base_path: &str) -> Arc<Web> {
        Arc::new(Web {
            permits: Arc::new(Semaphore::new(limits.concurrency)),
            admin,
            limits,
            base_path: base_path.to_string(),
        })
    }
}

/// The authenticated caller of one request, put there by [`authenticated`].
#[derive(Clone)]
pub struct Ctx {
    /// The token presented: its role decides what the request may do.
    pub token: ApiToken,
    /// `token:ID` from `http:PEER`, for the audit log.
    pub caller: Caller,
}

/// The API's routes under `/api/v1`, with its limits and authentication.
pub fn router(web: Arc<Web>) -> Router {
    let api = api::routes(web.clone())
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            authenticated,
        ))
        // The document needs no token: it says what exists, nothing more.
        .route(
            "/openapi.json",
            axum::routing::get(openapi::serve).with_state(web.clone()),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(web.clone(), limited))
        .layer(axum::extract::DefaultBodyLimit::max(
            web.limits.max_body_bytes,
        ));
    Router::new().nest("/api/v1", api)
}

async fn no_route(req: Request) -> Problem {
    let mut p = Problem::not_found(
        "no such API route: see /api/v1/openapi.json for the routes and their methods",
    );
    p.instance = Some(req.uri().path().to_string());
    p
}

async fn wrong_method(req: Request) -> Problem {
    let mut p = Problem::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed here: see /api/v1/openapi.json",
            req.method()
        ),
    );
    p.instance = Some(req.uri().path().to_string());
    p
}

/// Whether a request is a streamed transfer, bounded by size, not time.
fn streamed(req: &Request) -> bool {
    let path = req.uri().path();
    path.ends_with("/members/export") || path.ends_with("/members/import")
}

/// Bounded concurrency and the request timeout (see [`gate`]).
pub(crate) async fn limited(State(web): State<Arc<Web>>, req: Request, next: Next) -> Response {
    gate(&web.permits, web.limits.timeout, req, next).await
}

/// At most as many requests at once as `permits` has, each answered within
/// `timeout`. A streamed export keeps its permit until its body is finished
/// or dropped, so N exports hold N permits for as long as they stream (they
/// cannot pile up behind the answers' heads).
async fn gate(permits: &Arc<Semaphore>, timeout: Duration, req: Request, next: Next) -> Response {
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        metrics::counter!("listrelay_api_busy_total").increment(1);
        return Problem::unavailable(
            "busy",
            "too many requests at once (http.max_concurrent_requests); retry shortly",
        )
        .into_response();
    };
    metrics::counter!("listrelay_api_requests_total").increment(1);
    if streamed(&req) {
        let (parts, body) = next.run(req).await.into_parts();
        let body = body.into_data_stream().map(move |chunk| {
            let _held = &permit;
            chunk
        });
        return Response::from_parts(parts, axum::body::Body::from_stream(body));
    }
    let r = tokio::time::timeout(timeout, next.run(req)).await;
    drop(permit);
    match r {
        Ok(r) => r,
        Err(_) => {
            metrics::counter!("listrelay_api_timeouts_total").increment(1);
            Problem::unavailable(
                "timeout",
                format!(
                    "the request took longer than {timeout:?} (http.request_timeout_secs); \
                     it may still complete: check before retrying"
                ),
            )
            .into_response()
        }
    }
}

/// Checks the bearer token and records who calls from where.
async fn authenticated(State(web): State<Arc<Web>>, mut req: Request, next: Next) -> Response {
    let token = match auth::authenticate(web.admin.store.as_ref(), req.headers()).await {
        Ok(t) => t,
        Err(p) => return p.into_response(),
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or("unknown".to_string(), |c| c.0.to_string());
    let caller = Caller {
        actor: format!("token:{}", token.id),
        origin: format!("http:{peer}"),
    };
    req.extensions_mut().insert(Ctx { token, caller });
    next.run(req).await
}

/// Runs a request the token may make, as the token's caller; a refusal by
/// role is written to the audit log too when the request would change
/// something.
pub async fn execute(
    web: &Web,
    ctx: &Ctx,
    req: admin::Request,
) -> Result<admin::Response, Problem> {
    if let Err(p) = auth::permit(&ctx.token, &req) {
        if let Some((action, target, list)) = admin::audited(&req) {
            let entry = crate::model::AuditEntry::new(
                crate::store::new_id(),
                crate::clock::now(),
                &ctx.caller,
                action,
                target,
                list,
                format!("forbidden: {}", p.detail),
            );
            crate::store::write_audit(web.admin.store.as_ref(), &entry).await;
        }
        return Err(p);
    }
    let response = web
        .admin
        .execute_as(&ctx.caller, req, &mut Vec::new())
        .await?;
    Ok(auth::visible(&ctx.token, response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// A streamed export holds its permit until its body is dropped: a
    /// client that stops reading cannot free it for the next export.
    #[tokio::test]
    async fn a_streamed_export_holds_its_permit_while_it_streams() {
        let permits = Arc::new(Semaphore::new(1));
        let p = permits.clone();
        let app = Router::new()
            .route(
                "/members/export",
                axum::routing::get(|| async {
                    // A body that never ends, as a client that stopped reading sees it.
                    Body::from_stream(futures_util::stream::pending::<
                        Result<Vec<u8>, std::io::Error>,
                    >())
                }),
            )
            .route("/other", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    let p = p.clone();
                    async move { gate(&p, Duration::from_secs(5), req, next).await }
                },
            ));
        let get = |path: &str| axum::http::Request::get(path).body(Body::empty()).unwrap();
        let export = app.clone().oneshot(get("/members/export")).await.unwrap();
        assert_eq!(export.status(), 200);
        let busy = app.clone().oneshot(get("/other")).await.unwrap();
        assert_eq!(busy.status(), 503, "the export still holds the permit");
        drop(export);
        assert_eq!(permits.available_permits(), 1);
        let ok = app.clone().oneshot(get("/other")).await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(
            permits.available_permits(),
            1,
            "a plain request gives it back"
        );
    }
}
