//! The subscriber's pages: a list's info page with the subscribe form, the
//! request for an options link, and the options page the link opens.
//!
//! Neither form tells whether an address is a member: the answer is the
//! same sentence either way, and the work (a confirmation or a link by
//! mail, each under the per-address daily mail limit) runs after the answer
//! is sent, so its time does not tell either.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::{render, Answer, Chrome, Form, Notice, PageError, Pages, Visit};
use crate::address::Address;
use crate::admin::Request;
use crate::model::PendingAction;
use crate::web::session;

pub(super) fn routes() -> Router<Arc<Pages>> {
    Router::new()
        .route("/info/{list}", get(info))
        .route("/info/{list}/subscribe", post(subscribe))
        .route("/info/{list}/options", post(options_link))
        .route("/options/{token}", get(options).post(options_act))
}

#[derive(Template)]
#[template(path = "info.html")]
struct Info {
    c: Chrome,
    list: String,
    lp: String,
    description: String,
}

async fn info(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
) -> Answer {
    let l = p.list(&list).await?;
    Ok(render(&Info {
        c: p.chrome(&v),
        lp: super::segment(&l.address.to_string()),
        list: l.address.to_string(),
        description: l.settings.description.clone(),
    }))
}

/// The address a form names, or a page saying it is not one.
fn address(f: &Form) -> Result<Address, PageError> {
    let a = f.get("address").trim();
    Address::parse(a).map_err(|e| PageError::bad(format!("{a:?} is not an e-mail address: {e}.")))
}

/// The answer to an anonymous form, whatever happened.
fn sent(p: &Pages, v: &Visit, title: &str, message: String, back: String) -> Answer {
    Ok(render(&Notice {
        c: p.chrome(v),
        title: title.into(),
        message,
        back,
    }))
}

fn busy() -> PageError {
    PageError::Show(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "Too many requests from your address today: try again tomorrow.".into(),
    )
}

async fn subscribe(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
    body: Bytes,
) -> Answer {
    let f = Form::checked(&body, &p, &v)?;
    let l = p.list(&list).await?;
    let a = address(&f)?;
    if !p.peer_may_post(&v).await {
        return Err(busy());
    }
    metrics::counter!("listrelay_web_subscribe_total").increment(1);
    let svc = p.service.clone();
    let (l2, a2) = (l.clone(), a.clone());
    tokio::spawn(async move {
        // `begin` says nothing to a member and keeps the daily mail limit.
        match svc.begin(&l2, &a2, PendingAction::Join).await {
            Ok(r) => {
                tracing::info!(list = %l2.address, address = %a2, result = %r, "subscribe form")
            }
            Err(e) => tracing::warn!(list = %l2.address, error = %e, "subscribe form failed"),
        }
    });
    let back = format!(
        "{}info/{}",
        p.base(),
        super::segment(&l.address.to_string())
    );
    sent(
        &p,
        &v,
        "Check your mail",
        format!(
            "If {a} can join {}, a confirmation is on its way to it: answer it (or follow its \
             instructions) to be subscribed.",
            l.address
        ),
        back,
    )
}

async fn options_link(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
    body: Bytes,
) -> Answer {
    let f = Form::checked(&body, &p, &v)?;
    let l = p.list(&list).await?;
    let a = address(&f)?;
    if !p.peer_may_post(&v).await {
        return Err(busy());
    }
    let p2 = p.clone();
    let (l2, a2) = (l.clone(), a.clone());
    tokio::spawn(async move {
        if let Err(e) = mail_options_link(&p2, &l2, &a2).await {
            tracing::warn!(list = %l2.address, error = %e, "options link not sent");
        }
    });
    let back = format!(
        "{}info/{}",
        p.base(),
        super::segment(&l.address.to_string())
    );
    sent(
        &p,
        &v,
        "Check your mail",
        format!(
            "If {a} is subscribed to {}, a link to its options is on its way to it.",
            l.address
        ),
        back,
    )
}

/// Mails the options link to a member (nothing to anyone else).
async fn mail_options_link(
    p: &Pages,
    l: &crate::model::List,
    a: &Address,
) -> Result<(), crate::store::StoreError> {
    let svc = &p.service;
    if svc.store.member(&l.key(), &a.key()).await?.is_none() {
        tracing::info!(list = %l.address, address = %a, "options link asked for a non-member; nothing sent");
        return Ok(());
    }
    let Some(_) = p.public_url("") else {
        tracing::warn!("options link not sent: set http.base_url to the pages' public URL");
        return Ok(());
    };
    if !svc.may_mail(&a.key()).await {
        return Ok(());
    }
    let ttl = svc.config.confirm_token_ttl_secs.max(3600);
    let token = session::options_token(&p.service.secret, &l.key(), &a.key(), svc.now() + ttl);
    let link = p
        .public_url(&format!("options/{token}"))
        .unwrap_or_default();
    let hours = (ttl / 3600).to_string();
    let address = a.to_string();
    let vars = [
        ("address", address.as_str()),
        ("hours", hours.as_str()),
        ("link", link.as_str()),
    ];
    svc.notify(
        l,
        std::slice::from_ref(&address),
        "options-link",
        &vars,
        Default::default(),
    )
    .await;
    Ok(())
}

#[derive(Template)]
#[template(path = "options.html")]
struct Options {
    c: Chrome,
    list: String,
    address: String,
    token: String,
    /// Whether delivery is on; `None`: not a member (any more).
    delivery: Option<bool>,
}

/// The list and member of an options link, or a page saying it is not one.
async fn options_of(p: &Pages, token: &str) -> Result<(crate::model::List, String), PageError> {
    let Some((list, address)) = session::options_check(p.secret(), token, p.service.now()) else {
        metrics::counter!("listrelay_web_links_refused_total", "link" => "options").increment(1);
        return Err(PageError::forbidden(
            "This options link is not valid or has expired: ask for a new one on the list's page.",
        ));
    };
    Ok((p.list(&list).await?, address))
}

async fn options_page(p: &Pages, v: &Visit, token: String, flash: String) -> Answer {
    let (l, address) = options_of(p, &token).await?;
    let member = p
        .service
        .store
        .member(&l.key(), &address)
        .await
        .map_err(PageError::unavailable)?;
    let mut c = p.chrome(v);
    c.flash = flash;
    Ok(render(&Options {
        c,
        list: l.address.to_string(),
        address,
        token,
        // The member's own choice (nomail or not), not the bounce handler's
        // switch: resuming here must not undo what bounces decided.
        delivery: member.map(|m| m.delivery_mode != crate::model::DeliveryMode::Nomail),
    }))
}

async fn options(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(token): Path<String>,
) -> Answer {
    options_page(&p, &v, token, String::new()).await
}

async fn options_act(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(token): Path<String>,
    body: Bytes,
) -> Answer {
    let f = Form::checked(&body, &p, &v)?;
    let (l, address) = options_of(&p, &token).await?;
    // The signed link is the member's authority over their own address;
    // the change runs as a request like any other, so it is audited.
    let req = match f.get("do") {
        "delivery_on" | "delivery_off" => Request::MemberSet {
            list: l.key(),
            address: address.clone(),
            key: "delivery_mode".into(),
            value: if f.get("do") == "delivery_on" {
                "regular"
            } else {
                "nomail"
            }
            .into(),
        },
        "leave" => Request::MemberRemove {
            list: l.key(),
            addresses: vec![address.clone()],
        },
        other => return Err(PageError::bad(format!("{other:?} is not an option here."))),
    };
    let flash = match p
        .web
        .admin
        .execute_as(&v.caller(&address), req, &mut Vec::new())
        .await
    {
        Ok(_) => match f.get("do") {
            "leave" => format!("{address} has left {}.", l.address),
            "delivery_on" => "Delivery is on again.".to_string(),
            _ => "Delivery is stopped; you stay subscribed.".to_string(),
        },
        Err(e) => format!("Nothing changed: {e}"),
    };
    options_page(&p, &v, token, flash).await
}
