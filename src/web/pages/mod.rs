//! The pages for subscribers, moderators and owners: server-rendered HTML
//! (askama templates under `src/web/templates/`, HTML-escaped by default),
//! no JavaScript, one stylesheet served by the binary.
//!
//! * `public.rs`: a list's info page with the subscribe form (double opt-in
//!   by mail through `subscription`), the request for an options link, and
//!   the options page that link opens (delivery on/off, leave);
//! * `login.rs`: login by a mailed, signed, single-use link, and logout;
//! * `admin.rs`: the lists overview, held posts (preview, approve, reject
//!   with a reason, discard, one or many), settings, members, bounces and
//!   the audit log.
//!
//! Every change goes through the same typed `admin::Request` as the CLI and
//! the API, run by `web::execute` (`auth::permit`, then `Admin::execute_as`)
//! with a `Caller` naming the logged-in address and `web PEER`, so it lands
//! in the audit log. A person's role on a list is read from the list's own
//! `owners` and `moderators` at each request: removing someone from them
//! takes effect at once, whatever their session says.
//!
//! Every answer carries a strict Content-Security-Policy (nothing but this
//! origin's stylesheet; no scripts, no remote images, no frames) and every
//! form a CSRF token tied to the session (`session.rs`).

mod admin;
mod login;
mod public;

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::session::{self, Session};
use super::Web;
use crate::address::Address;
use crate::model::{ApiToken, Caller, List, Role};
use crate::moderation::Service;

/// The policy every page is served under: only this origin's stylesheet;
/// no script, image, font, frame or plugin from anywhere; forms post here.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'none'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Form posts per peer address per day on the anonymous forms (subscribe,
/// options link, login link), on top of the per-address mail limit.
const FORMS_PER_PEER_PER_DAY: u32 = 100;

tokio::task_local! {
    /// The path of the request's pages (`/` or `/lists/`), for pages drawn
    /// without the state at hand (the refusals).
    static BASE: String;
}

/// The base path of the request being answered (`/` outside one).
fn current_base() -> String {
    BASE.try_with(Clone::clone).unwrap_or_else(|_| "/".into())
}

/// What the pages share.
pub struct Pages {
    /// The API's state: the administration, limits and base path.
    pub web: Arc<Web>,
    /// Moderation and subscription: mail, tokens, the site secret.
    pub service: Arc<Service>,
}

impl Pages {
    fn secret(&self) -> &crate::secret::Secret {
        &self.service.secret
    }

    /// The path the pages are reached at (`/` or a proxy's `/lists/`).
    fn base(&self) -> &str {
        &self.web.base_path
    }

    /// The public URL of the pages, for links in mail (`http.base_url`);
    /// never taken from the request's Host, which a client chooses.
    fn public_url(&self, path: &str) -> Option<String> {
        let base = self.web.limits.base_url.trim_end_matches('/');
        (!base.is_empty()).then(|| format!("{base}/{path}"))
    }

    /// Cookies are `Secure` when the site is reached over https.
    fn secure(&self) -> bool {
        self.web.limits.base_url.starts_with("https://")
    }

    /// The frame of every page: where links start, who is logged in, the
    /// form token.
    fn chrome(&self, v: &Visit) -> Chrome {
        Chrome {
            base: self.base().to_string(),
            user: v.session.address.clone(),
            csrf: v.session.csrf(self.secret()),
            flash: String::new(),
        }
    }

    /// A new session's `Set-Cookie`.
    fn cookie(&self, s: &Session) -> HeaderValue {
        let max_age = s.expires.saturating_sub(crate::clock::now());
        let v = session::set_cookie(
            &s.encode(self.secret()),
            self.base(),
            self.secure(),
            max_age,
        );
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Whether the peer may post one more anonymous form today.
    async fn peer_may_post(&self, v: &Visit) -> bool {
        let day = crate::clock::day_of(self.service.now());
        let key = format!("web-peer:{}", v.peer);
        match self
            .service
            .store
            .rate_take(&key, day, FORMS_PER_PEER_PER_DAY)
            .await
        {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!(error = %e, "rate limit check failed; refusing the form");
                false
            }
        }
    }

    /// The logged-in address, or a redirect to the login page.
    fn who<'a>(&self, v: &'a Visit) -> Result<&'a str, PageError> {
        v.session
            .address
            .as_deref()
            .ok_or_else(|| PageError::Redirect(format!("{}login", self.base())))
    }

    /// A list by the address in a path, or 404.
    async fn list(&self, address: &str) -> Result<List, PageError> {
        let a = Address::parse(address)
            .map_err(|_| PageError::not_found(format!("{address} is not a list address")))?;
        match self.service.store.list(&a.key()).await {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(PageError::not_found(format!("There is no list {a}."))),
            Err(e) => Err(PageError::unavailable(e)),
        }
    }
}

/// `address`'s role on `list`, from the list's settings: owner first.
pub fn role_on(list: &List, address: &str) -> Option<Role> {
    let has = |people: &[String]| {
        people.iter().any(|p| {
            Address::parse(p)
                .map(|a| a.key())
                .is_ok_and(|k| k == address)
        })
    };
    if has(&list.settings.owners) {
        Some(Role::Owner)
    } else if has(&list.settings.moderators) {
        Some(Role::Moderator)
    } else {
        None
    }
}

/// The role a logged-in person has on `list`, as a token `auth::permit`
/// reads: the one role rule, whichever door. No role is a moderator of no
/// list, which `permit` refuses everything but reading the list names.
fn token_for(list: &List, address: &str) -> ApiToken {
    let role = role_on(list, address);
    ApiToken {
        id: "web".into(),
        hash: String::new(),
        role: role.unwrap_or(Role::Moderator),
        lists: role.map(|_| vec![list.key()]).unwrap_or_default(),
        description: format!("web session of {address}"),
        created_at: 0,
        expires_at: None,
        revoked_at: None,
    }
}

/// One request's visitor: their session (a new visitor session when the
/// cookie was missing or did not verify) and where they come from.
#[derive(Clone)]
pub struct Visit {
    /// The checked session.
    pub session: Session,
    /// Whether the session is new and its cookie must be set.
    pub fresh: bool,
    /// The peer address (the proxy's behind a proxy), for the audit log and
    /// the per-peer form limit.
    pub peer: String,
}

impl Visit {
    /// The audit log's caller for this person: their address, from where.
    fn caller(&self, actor: &str) -> Caller {
        Caller {
            actor: actor.to_string(),
            origin: format!("web {}", self.peer),
        }
    }
}

/// The frame every template extends (`base.html`).
pub struct Chrome {
    /// The path links start with, ending in `/`.
    pub base: String,
    /// The logged-in address, shown with a logout button.
    pub user: Option<String>,
    /// This session's form token.
    pub csrf: String,
    /// What the last action did, shown at the top.
    pub flash: String,
}

/// A page that could not be shown: its status and what to do.
#[derive(Debug)]
pub enum PageError {
    /// A status and a message for the person.
    Show(StatusCode, String),
    /// Go there instead (to log in).
    Redirect(String),
}

impl PageError {
    fn not_found(m: impl Into<String>) -> PageError {
        PageError::Show(StatusCode::NOT_FOUND, m.into())
    }

    fn forbidden(m: impl Into<String>) -> PageError {
        PageError::Show(StatusCode::FORBIDDEN, m.into())
    }

    fn bad(m: impl Into<String>) -> PageError {
        PageError::Show(StatusCode::BAD_REQUEST, m.into())
    }

    fn unavailable(e: impl std::fmt::Display) -> PageError {
        tracing::warn!(error = %e, "a page failed on the store");
        PageError::Show(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server could not read its store just now: try again in a moment.".into(),
        )
    }

    /// The form's token was missing or not this session's.
    fn csrf() -> PageError {
        metrics::counter!("listrelay_web_csrf_refused_total").increment(1);
        PageError::forbidden(
            "This form has expired or did not come from this site: reload the page and try again.",
        )
    }
}

impl From<super::problem::Problem> for PageError {
    fn from(p: super::problem::Problem) -> PageError {
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
        let detail = if status == StatusCode::FORBIDDEN {
            "You may not do this on this list: it needs its owner (or, for held posts, a moderator)."
                .to_string()
        } else {
            p.detail
        };
        PageError::Show(status, detail)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Redirect(to) => Redirect::to(&to).into_response(),
            PageError::Show(status, message) => {
                let title = status.canonical_reason().unwrap_or("Error").to_string();
                let page = Notice {
                    c: Chrome {
                        base: current_base(),
                        user: None,
                        csrf: String::new(),
                        flash: String::new(),
                    },
                    title,
                    message,
                    back: String::new(),
                };
                let mut r = render(&page);
                *r.status_mut() = status;
                r
            }
        }
    }
}

type Answer = Result<Response, PageError>;

/// A message page: a title and a sentence.
#[derive(Template)]
#[template(path = "notice.html")]
pub struct Notice {
    pub c: Chrome,
    pub title: String,
    pub message: String,
    /// Where "Back" goes; empty: no link.
    pub back: String,
}

/// A rendered template as an HTML answer.
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the page failed",
            )
                .into_response()
        }
    }
}

/// A form body's fields, in order (a field may repeat: checkboxes).
pub struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Form, PageError> {
        serde_urlencoded::from_bytes(body).map(Form).map_err(|_| {
            PageError::bad("The form could not be read: reload the page and try again.")
        })
    }

    /// The first value of `name`, or "".
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The form, if it carries this session's CSRF token.
    fn checked(body: &[u8], pages: &Pages, v: &Visit) -> Result<Form, PageError> {
        let f = Form::parse(body)?;
        if !v.session.csrf_ok(pages.secret(), f.get("csrf")) {
            return Err(PageError::csrf());
        }
        Ok(f)
    }
}

/// A path segment with everything but unreserved characters and `@`
/// percent-encoded (list addresses, Message-IDs in links).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The stylesheet, compiled into the binary.
async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../templates/style.css"),
    )
        .into_response()
}

/// Reads the session cookie (or starts a visitor session), and sets the
/// security headers on every answer.
async fn visit(State(pages): State<Arc<Pages>>, mut req: Request, next: Next) -> Response {
    let now = crate::clock::now();
    let found = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .find_map(session::cookie_value)
        .and_then(|c| Session::decode(pages.secret(), c, now));
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or("unknown".to_string(), |c| c.0.ip().to_string());
    let (session, fresh) = match found {
        Some(s) => (s, false),
        None => (Session::new(None, now), true),
    };
    let v = Visit {
        session: session.clone(),
        fresh,
        peer,
    };
    req.extensions_mut().insert(v);
    let mut r = BASE.scope(pages.base().to_string(), next.run(req)).await;
    let h = r.headers_mut();
    if fresh && !h.contains_key(header::SET_COOKIE) {
        h.insert(header::SET_COOKIE, pages.cookie(&session));
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Links carry tokens: never send them on as a Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// The pages' routes, with the API's limits (bounded concurrency, the
/// request timeout, the body limit) and the session layer.
pub fn router(web: Arc<Web>, service: Arc<Service>) -> Router {
    let pages = Arc::new(Pages {
        web: web.clone(),
        service,
    });
    Router::new()
        .route("/static/style.css", get(stylesheet))
        .merge(public::routes())
        .merge(login::routes())
        .merge(admin::routes())
        .with_state(pages.clone())
        .layer(axum::middleware::from_fn_with_state(pages, visit))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            super::limited,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            web.limits.max_body_bytes,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("dev@l.org"), "dev@l.org");
        assert_eq!(segment("a/b%c <d>"), "a%2Fb%25c%20%3Cd%3E");
    }

    #[test]
    fn roles_come_from_the_list() {
        let mut l = List::new(Address::parse("dev@l.org").unwrap());
        l.settings.owners = vec!["Own@X.org".into()];
        l.settings.moderators = vec!["mod@x.org".into()];
        assert_eq!(role_on(&l, "own@x.org"), Some(Role::Owner));
        assert_eq!(role_on(&l, "mod@x.org"), Some(Role::Moderator));
        assert_eq!(role_on(&l, "eve@x.org"), None);
        let t = token_for(&l, "eve@x.org");
        assert!(t.lists.is_empty());
    }
}
