//! Login without passwords: an owner or moderator asks for a link, which is
//! mailed only to addresses that own or moderate a list (the form answers
//! the same either way); the link is signed, works once (its hash is a
//! `PendingAction::Login` taken from the store) and for 15 minutes. Opening
//! it shows a button: a mail scanner that follows links with GET cannot use
//! it up. The POST starts a new session (a new random nonce: a session
//! fixed before login is worth nothing after it).

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::{render, role_on, Answer, Chrome, Form, Notice, PageError, Pages, Visit};
use crate::address::Address;
use crate::model::{Pending, PendingAction};
use crate::subscription::token_hash;
use crate::web::session::{self, Session};

pub(super) fn routes() -> Router<Arc<Pages>> {
    Router::new()
        .route("/login", get(form).post(ask))
        .route("/login/{token}", get(link).post(enter))
        .route("/logout", post(logout))
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    c: Chrome,
}

async fn form(State(p): State<Arc<Pages>>, Extension(v): Extension<Visit>) -> Answer {
    Ok(render(&Login { c: p.chrome(&v) }))
}

async fn ask(State(p): State<Arc<Pages>>, Extension(v): Extension<Visit>, body: Bytes) -> Answer {
    let f = Form::checked(&body, &p, &v)?;
    let raw = f.get("address").trim().to_string();
    let a = Address::parse(&raw)
        .map_err(|e| PageError::bad(format!("{raw:?} is not an e-mail address: {e}.")))?;
    if !p.peer_may_post(&v).await {
        return Err(PageError::Show(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests from your address today: try again tomorrow.".into(),
        ));
    }
    metrics::counter!("listrelay_web_login_asked_total").increment(1);
    let p2 = p.clone();
    let a2 = a.clone();
    tokio::spawn(async move {
        if let Err(e) = mail_link(&p2, &a2).await {
            tracing::warn!(address = %a2, error = %e, "login link not sent");
        }
    });
    Ok(render(&Notice {
        c: p.chrome(&v),
        title: "Check your mail".into(),
        message: format!(
            "If {a} is an owner or moderator of a list here, a login link is on its way to it. \
             It works once, within {} minutes.",
            session::LINK_SECS / 60
        ),
        back: String::new(),
    }))
}

/// Mails a login link to `a` if it owns or moderates a list.
async fn mail_link(p: &Pages, a: &Address) -> Result<(), crate::store::StoreError> {
    let svc = &p.service;
    let key = a.key();
    let lists = svc.store.lists(None).await?;
    let Some(list) = lists.iter().find(|l| role_on(l, &key).is_some()) else {
        tracing::info!(address = %a, "login link asked by an address with no role; nothing sent");
        return Ok(());
    };
    if p.public_url("").is_none() {
        tracing::warn!("login link not sent: set http.base_url to the pages' public URL");
        return Ok(());
    }
    if !svc.may_mail(&key).await {
        return Ok(());
    }
    let token = session::login_token(&svc.secret);
    let hash = token_hash(&token);
    let now = svc.now();
    let pending = Pending {
        list: list.key(),
        address: key.clone(),
        action: PendingAction::Login,
        token_hash: hash.clone(),
        created_at: now,
        expires_at: now + session::LINK_SECS,
        detail: String::new(),
    };
    svc.store.put_pending(&hash, &pending).await?;
    svc.store.sync().await?;
    let link = p.public_url(&format!("login/{token}")).unwrap_or_default();
    let minutes = (session::LINK_SECS / 60).to_string();
    let vars = [("minutes", minutes.as_str()), ("link", link.as_str())];
    svc.notify(
        list,
        &[a.to_string()],
        "login-link",
        &vars,
        Default::default(),
    )
    .await;
    Ok(())
}

#[derive(Template)]
#[template(path = "login_link.html")]
struct LoginLink {
    c: Chrome,
    token: String,
}

fn forged() -> PageError {
    metrics::counter!("listrelay_web_links_refused_total", "link" => "login").increment(1);
    PageError::forbidden("This login link is not valid: ask for a new one.")
}

async fn link(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(token): Path<String>,
) -> Answer {
    if !session::login_token_ok(p.secret(), &token) {
        return Err(forged());
    }
    Ok(render(&LoginLink {
        c: p.chrome(&v),
        token,
    }))
}

async fn enter(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(token): Path<String>,
    body: Bytes,
) -> Answer {
    Form::checked(&body, &p, &v)?;
    if !session::login_token_ok(p.secret(), &token) {
        return Err(forged());
    }
    let hash = token_hash(&token);
    let taken = p
        .service
        .store
        .take_pending(&hash)
        .await
        .map_err(PageError::unavailable)?;
    let used = || {
        metrics::counter!("listrelay_web_links_refused_total", "link" => "login_used").increment(1);
        PageError::forbidden("This login link was already used or has expired: ask for a new one.")
    };
    let Some(pending) = taken else {
        return Err(used());
    };
    let same = bool::from(subtle::ConstantTimeEq::ct_eq(
        pending.token_hash.as_bytes(),
        hash.as_bytes(),
    ));
    if !same || pending.action != PendingAction::Login || pending.expires_at <= p.service.now() {
        return Err(used());
    }
    p.service
        .store
        .sync()
        .await
        .map_err(PageError::unavailable)?;
    tracing::info!(address = %pending.address, peer = %v.peer, "logged in to the pages");
    metrics::counter!("listrelay_web_logins_total").increment(1);
    let s = Session::new(Some(pending.address), p.service.now());
    let mut r = Redirect::to(&format!("{}admin/", p.base())).into_response();
    r.headers_mut().insert(header::SET_COOKIE, p.cookie(&s));
    Ok(r)
}

async fn logout(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    body: Bytes,
) -> Answer {
    Form::checked(&body, &p, &v)?;
    let s = Session::new(None, p.service.now());
    let mut r = Redirect::to(&format!("{}login", p.base())).into_response();
    r.headers_mut().insert(header::SET_COOKIE, p.cookie(&s));
    Ok(r)
}
