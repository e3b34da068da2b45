//! The routes of `/api/v1`, each a thin mapping from HTTP to one
//! [`Request`] and from its [`Response`] back to JSON (the answer's body, as
//! `listrelay --json` prints it). Paths, methods and the roles they need are
//! listed once in [`table`], which the router and the OpenAPI test read.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Extension, Router};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::problem::Problem;
use super::{execute, members, Ctx, Web};
use crate::admin::{Request, Response};
use crate::model::Role;
use crate::moderation::Action;

type Handler = MethodRouter<Arc<Web>>;

/// Every route below `/api/v1` with its methods: the router is built from
/// this table, and the OpenAPI document must list each entry.
pub fn table() -> Vec<(&'static str, &'static [Method], Handler)> {
    vec![
        (
            "/domains",
            &[Method::GET, Method::POST],
            get(domain_list).post(domain_create),
        ),
        ("/domains/{name}", &[Method::DELETE], delete(domain_delete)),
        (
            "/domains/{name}/settings/{key}",
            &[Method::PUT],
            put(domain_set),
        ),
        (
            "/lists",
            &[Method::GET, Method::POST],
            get(list_list).post(list_create),
        ),
        (
            "/lists/{list}",
            &[Method::GET, Method::DELETE],
            get(list_show).delete(list_delete),
        ),
        (
            "/lists/{list}/settings/{key}",
            &[Method::PUT],
            put(list_set),
        ),
        (
            "/lists/{list}/members",
            &[Method::GET, Method::POST],
            get(member_page).post(member_add),
        ),
        (
            "/lists/{list}/members/remove",
            &[Method::POST],
            post(member_remove),
        ),
        (
            "/lists/{list}/members/export",
            &[Method::GET],
            get(members::export),
        ),
        (
            "/lists/{list}/members/import",
            &[Method::POST],
            post(members::import).layer(axum::extract::DefaultBodyLimit::disable()),
        ),
        (
            "/lists/{list}/members/{address}",
            &[Method::DELETE],
            delete(member_delete),
        ),
        (
            "/lists/{list}/members/{address}/settings/{key}",
            &[Method::PUT],
            put(member_set),
        ),
        ("/lists/{list}/held", &[Method::GET], get(held_list)),
        (
            "/lists/{list}/held/{message_id}",
            &[Method::GET],
            get(held_show),
        ),
        (
            "/lists/{list}/held/{message_id}/{action}",
            &[Method::POST],
            post(held_act),
        ),
        ("/lists/{list}/bounces", &[Method::GET], get(bounce_show)),
        (
            "/lists/{list}/bounces/{member}/reset",
            &[Method::POST],
            post(bounce_reset),
        ),
        (
            "/lists/{list}/bans",
            &[Method::GET, Method::POST],
            get(ban_list).post(ban_add),
        ),
        (
            "/lists/{list}/bans/{pattern}",
            &[Method::DELETE],
            delete(ban_remove),
        ),
        ("/lists/{list}/digest", &[Method::GET], get(digest_status)),
        (
            "/lists/{list}/digest/send",
            &[Method::POST],
            post(digest_send),
        ),
        ("/queue", &[Method::GET], get(queue)),
        ("/queue/{id}/body", &[Method::GET], get(message_body)),
        (
            "/tokens",
            &[Method::GET, Method::POST],
            get(token_list).post(token_create),
        ),
        ("/tokens/{id}", &[Method::DELETE], delete(token_revoke)),
        ("/audit", &[Method::GET], get(audit)),
    ]
}

/// The authenticated routes.
pub fn routes(web: Arc<Web>) -> Router {
    let mut r = Router::new();
    for (path, _, handler) in table() {
        r = r.route(path, handler);
    }
    r.with_state(web)
}

/// An answer's body as JSON with `status`.
fn reply(status: StatusCode, response: &Response) -> HttpResponse {
    let mut v = match serde_json::to_value(response) {
        Ok(v) => v,
        Err(e) => {
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding",
                format!("encoding the answer failed: {e}"),
            )
            .into_response()
        }
    };
    let body = v.get_mut("body").map(serde_json::Value::take);
    let mut r = (
        status,
        serde_json::to_vec(&body.unwrap_or_default()).unwrap_or_default(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

type Answer = Result<HttpResponse, Problem>;

/// Executes and answers 200.
async fn run(web: &Web, ctx: &Ctx, req: Request) -> Answer {
    Ok(reply(StatusCode::OK, &execute(web, ctx, req).await?))
}

/// A JSON request body, or the problem with it.
pub(super) fn body<T: DeserializeOwned>(
    web: &Web,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<T, Problem> {
    let bytes = bytes.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body is larger than {} bytes (http.max_body_bytes); \
                 send members in several requests or use /members/import",
                web.limits.max_body_bytes
            ),
        ),
        _ => Problem::bad_request("body", format!("reading the body: {r}")),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Problem::bad_request(
            "bad_json",
            format!("the body is not the JSON this route takes ({e}); see /api/v1/openapi.json"),
        )
    })
}

/// The query string, or the problem with it.
pub(super) fn query<T: DeserializeOwned + Default>(raw: Option<String>) -> Result<T, Problem> {
    match raw {
        None => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(&q)
            .map_err(|e| Problem::bad_request("bad_query", format!("the query string: {e}"))),
    }
}

/// Cursors are opaque to clients: base64url of the member key or audit id
/// to continue after, checked when they come back.
fn encode_cursor(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn decode_cursor(c: &str, valid: impl Fn(&str) -> bool) -> Result<String, Problem> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| s.len() <= 512 && valid(s))
        .ok_or_else(|| {
            Problem::bad_request(
                "bad_cursor",
                "the cursor is not one this API gave: start again without it",
            )
        })
}

/// `{"value": …}`: a setting's new value; strings as they are, numbers and
/// booleans as written, lists of strings comma-separated (as `list set`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Value {
    value: serde_json::Value,
}

fn setting(v: serde_json::Value) -> Result<String, Problem> {
    use serde_json::Value as J;
    Ok(match v {
        J::String(s) => s,
        J::Bool(b) => b.to_string(),
        J::Number(n) => n.to_string(),
        J::Array(items) => items
            .into_iter()
            .map(|i| match i {
                J::String(s) => Ok(s),
                other => Err(Problem::bad_request(
                    "bad_value",
                    format!("a list value holds strings only, not {other}"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        J::Null | J::Object(_) => {
            return Err(Problem::bad_request(
                "bad_value",
                "value must be a string, number, boolean or list of strings",
            ))
        }
    })
}

// Domains.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    name: String,
    #[serde(default)]
    opaque: bool,
}

async fn domain_list(State(web): State<Arc<Web>>, Extension(ctx): Extension<Ctx>) -> Answer {
    run(&web, &ctx, Request::DomainList).await
}

async fn domain_create(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let d: NewDomain = body(&web, b)?;
    let req = Request::DomainCreate {
        name: d.name,
        opaque: d.opaque,
    };
    Ok(reply(StatusCode::CREATED, &execute(&web, &ctx, req).await?))
}

async fn domain_set(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((name, key)): Path<(String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let v: Value = body(&web, b)?;
    let value = setting(v.value)?;
    run(&web, &ctx, Request::DomainSet { name, key, value }).await
}

async fn domain_delete(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Answer {
    run(&web, &ctx, Request::DomainDelete { name }).await
}

// Lists.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    domain: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewList {
    address: String,
}

async fn list_list(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    RawQuery(q): RawQuery,
) -> Answer {
    let q: ListQuery = query(q)?;
    run(&web, &ctx, Request::ListList { domain: q.domain }).await
}

async fn list_create(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let l: NewList = body(&web, b)?;
    let req = Request::ListCreate { address: l.address };
    Ok(reply(StatusCode::CREATED, &execute(&web, &ctx, req).await?))
}

async fn list_show(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(address): Path<String>,
) -> Answer {
    run(&web, &ctx, Request::ListShow { address }).await
}

async fn list_delete(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(address): Path<String>,
) -> Answer {
    run(&web, &ctx, Request::ListDelete { address }).await
}

async fn list_set(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((address, key)): Path<(String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let v: Value = body(&web, b)?;
    let value = setting(v.value)?;
    let req = Request::ListSet {
        address,
        key,
        value,
    };
    run(&web, &ctx, req).await
}

// Members.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<u32>,
    prefix: Option<String>,
}

/// Members per page unless the caller asks for another number.
const DEFAULT_PAGE: u32 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Addresses {
    addresses: Vec<String>,
}

async fn member_page(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let q: PageQuery = query(q)?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, |k| k.contains('@')))
        .transpose()?;
    let req = Request::MemberPage {
        list,
        after,
        limit: q.limit.unwrap_or(DEFAULT_PAGE),
        prefix: q.prefix,
    };
    let Response::MemberPage(page) = execute(&web, &ctx, req).await? else {
        return Err(unexpected());
    };
    let body = serde_json::json!({
        "members": page.members,
        "next": page.next.as_deref().map(encode_cursor),
    });
    Ok(json(StatusCode::OK, &body))
}

fn unexpected() -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "unexpected",
        "the server gave an unexpected answer; see its log",
    )
}

pub(super) fn json(status: StatusCode, v: &serde_json::Value) -> HttpResponse {
    let mut r = (status, serde_json::to_vec(v).unwrap_or_default()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn member_add(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let a: Addresses = body(&web, b)?;
    run(
        &web,
        &ctx,
        Request::MemberAdd {
            list,
            addresses: a.addresses,
        },
    )
    .await
}

async fn member_remove(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let a: Addresses = body(&web, b)?;
    run(
        &web,
        &ctx,
        Request::MemberRemove {
            list,
            addresses: a.addresses,
        },
    )
    .await
}

async fn member_delete(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((list, address)): Path<(String, String)>,
) -> Answer {
    let req = Request::MemberRemove {
        list,
        addresses: vec![address.clone()],
    };
    match execute(&web, &ctx, req).await? {
        Response::MembersRemoved(r) if r.removed == 0 => Err(Problem::not_found(format!(
            "{address} is not a member of this list"
        ))),
        r => Ok(reply(StatusCode::OK, &r)),
    }
}

async fn member_set(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((list, address, key)): Path<(String, String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let v: Value = body(&web, b)?;
    let value = setting(v.value)?;
    let req = Request::MemberSet {
        list,
        address,
        key,
        value,
    };
    run(&web, &ctx, req).await
}

// Held posts.

async fn held_list(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
) -> Answer {
    run(&web, &ctx, Request::HeldList { list }).await
}

async fn held_show(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((list, message_id)): Path<(String, String)>,
) -> Answer {
    run(&web, &ctx, Request::HeldShow { list, message_id }).await
}

/// The optional body of a held-post action: `{"reason": "…"}`, quoted to
/// the sender of a rejected post.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActBody {
    reason: Option<String>,
}

async fn held_act(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((list, message_id, action)): Path<(String, String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let Some(action) = Action::parse(&action) else {
        return Err(Problem::not_found(format!(
            "{action:?} is not an action: approve, reject or discard"
        )));
    };
    let act: ActBody = match &b {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => ActBody::default(),
        _ => body(&web, b)?,
    };
    let req = Request::HeldAct {
        list,
        message_id,
        action,
        reason: act.reason.filter(|r| !r.trim().is_empty()),
    };
    run(&web, &ctx, req).await
}

// Bounces.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BounceQuery {
    member: Option<String>,
}

async fn bounce_show(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let q: BounceQuery = query(q)?;
    let req = Request::BounceShow {
        list,
        member: q.member,
    };
    run(&web, &ctx, req).await
}

async fn bounce_reset(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((list, member)): Path<(String, String)>,
) -> Answer {
    run(&web, &ctx, Request::BounceReset { list, member }).await
}

// Bans.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pattern {
    pattern: String,
}

async fn ban_list(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
) -> Answer {
    run(&web, &ctx, Request::BanList { list }).await
}

/// 201 when the ban is new, 200 when it was there already (re-runs of an
/// import change nothing).
async fn ban_add(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let p: Pattern = body(&web, b)?;
    let r = execute(
        &web,
        &ctx,
        Request::BanAdd {
            list,
            pattern: p.pattern,
        },
    )
    .await?;
    let status = match &r {
        Response::Bans(b) if b.changed => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok(reply(status, &r))
}

async fn ban_remove(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((list, pattern)): Path<(String, String)>,
) -> Answer {
    let req = Request::BanRemove {
        list,
        pattern: pattern.clone(),
    };
    match execute(&web, &ctx, req).await? {
        Response::Bans(b) if !b.changed => Err(Problem::not_found(format!(
            "{pattern:?} is not on this list's ban list (GET …/bans lists them)"
        ))),
        r => Ok(reply(StatusCode::OK, &r)),
    }
}

// Digests.

async fn digest_status(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
) -> Answer {
    run(&web, &ctx, Request::DigestStatus { list }).await
}

async fn digest_send(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(list): Path<String>,
) -> Answer {
    run(&web, &ctx, Request::DigestSend { list }).await
}

// The queue.

async fn queue(State(web): State<Arc<Web>>, Extension(ctx): Extension<Ctx>) -> Answer {
    run(&web, &ctx, Request::Queue).await
}

/// A stored message exactly as it was received, as `message/rfc822`.
async fn message_body(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Answer {
    let Response::MessageBody(b) = execute(&web, &ctx, Request::MessageBody { id }).await? else {
        return Err(unexpected());
    };
    let bytes = hex::decode(&b.body_hex).map_err(|_| unexpected())?;
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("message/rfc822"),
    );
    Ok(r)
}

// Tokens.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    role: Role,
    #[serde(default)]
    lists: Vec<String>,
    expires_at: Option<u64>,
    #[serde(default)]
    description: String,
}

async fn token_list(State(web): State<Arc<Web>>, Extension(ctx): Extension<Ctx>) -> Answer {
    run(&web, &ctx, Request::TokenList).await
}

async fn token_create(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let t: NewToken = body(&web, b)?;
    let req = Request::TokenCreate {
        role: t.role,
        lists: t.lists,
        expires_at: t.expires_at,
        description: t.description,
    };
    Ok(reply(StatusCode::CREATED, &execute(&web, &ctx, req).await?))
}

async fn token_revoke(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Answer {
    run(&web, &ctx, Request::TokenRevoke { id }).await
}

// The audit log.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    list: Option<String>,
    since: Option<u64>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn audit(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    RawQuery(q): RawQuery,
) -> Answer {
    let q: AuditQuery = query(q)?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, |id| id.bytes().all(|b| b.is_ascii_hexdigit())))
        .transpose()?;
    let req = Request::AuditList {
        list: q.list,
        since: q.since,
        after,
        limit: q.limit.unwrap_or(DEFAULT_PAGE),
    };
    let Response::Audit(page) = execute(&web, &ctx, req).await? else {
        return Err(unexpected());
    };
    let body = serde_json::json!({
        "entries": page.entries,
        "next": page.next.as_deref().map(encode_cursor),
    });
    Ok(json(StatusCode::OK, &body))
}
