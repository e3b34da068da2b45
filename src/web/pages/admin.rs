//! The owners' and moderators' pages. Each reads and changes through the
//! typed requests (`web::execute`: the role rule, then the audit log), as
//! the logged-in address from `web PEER`.
//!
//! A held post is previewed as text only: the text part (or the HTML part
//! turned into text by the parser) inside a `<pre>`, HTML-escaped by the
//! template; the post's HTML is never sent to the browser, and the page's
//! Content-Security-Policy would block anything remote in any case.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::IntoResponse;
use axum::response::Redirect;
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine;

use super::{render, role_on, segment, token_for, Answer, Chrome, Form, PageError, Pages, Visit};
use crate::admin::{Request, Response};
use crate::model::{List, ListSettings, Role};
use crate::moderation::Action;
use crate::notice::rfc5322_date;
use crate::web::{execute, Ctx};

/// Members per page.
const PAGE: u32 = 50;

/// Audit entries per page.
const AUDIT_PAGE: u32 = 100;

/// Characters of a held post's text shown; the rest is cut with a note.
const PREVIEW_CHARS: usize = 100_000;

pub(super) fn routes() -> Router<Arc<Pages>> {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("admin/") }))
        .route("/admin/", get(overview))
        .route("/admin/{list}/held", get(held).post(held_act))
        .route("/admin/{list}/held/{message_id}", get(held_post))
        .route("/admin/{list}/settings", get(settings).post(settings_save))
        .route("/admin/{list}/members", get(members).post(members_change))
        .route("/admin/{list}/bounces", get(bounces).post(bounces_reset))
        .route("/admin/{list}/audit", get(audit))
}

/// The logged-in person on one list: what `web::execute` needs.
struct OnList {
    list: List,
    /// The list's address, as shown.
    name: String,
    /// The list's address as a path segment.
    lp: String,
    ctx: Ctx,
}

impl OnList {
    async fn load(p: &Pages, v: &Visit, list: &str) -> Result<OnList, PageError> {
        let who = p.who(v)?;
        let l = p.list(list).await?;
        let ctx = Ctx {
            token: token_for(&l, who),
            caller: v.caller(who),
        };
        Ok(OnList {
            name: l.address.to_string(),
            lp: segment(&l.address.to_string()),
            list: l,
            ctx,
        })
    }

    /// Runs a request as this person (refused by role like the API's).
    async fn run(&self, p: &Pages, req: Request) -> Result<Response, PageError> {
        Ok(execute(&p.web, &self.ctx, req).await?)
    }
}

fn encode_cursor(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn decode_cursor(s: &str) -> Option<String> {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    String::from_utf8(b).ok().filter(|s| s.len() <= 512)
}

/// A query string's fields.
fn query(raw: Option<String>) -> Vec<(String, String)> {
    raw.and_then(|q| serde_urlencoded::from_str(&q).ok())
        .unwrap_or_default()
}

fn field<'a>(q: &'a [(String, String)], name: &str) -> &'a str {
    q.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// `secs` as a date a person reads (UTC).
fn date(secs: u64) -> String {
    rfc5322_date(secs)
}

// The overview.

/// One list on the overview.
struct ListRow {
    address: String,
    path: String,
    description: String,
    role: &'static str,
    owner: bool,
    held: usize,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    c: Chrome,
    lists: Vec<ListRow>,
}

async fn overview(State(p): State<Arc<Pages>>, Extension(v): Extension<Visit>) -> Answer {
    let who = p.who(&v)?;
    let store = &p.service.store;
    let mut rows = Vec::new();
    for l in store.lists(None).await.map_err(PageError::unavailable)? {
        let Some(role) = role_on(&l, who) else {
            continue;
        };
        let held = store
            .held_posts(Some(&l.key()))
            .await
            .map_err(PageError::unavailable)?
            .len();
        rows.push(ListRow {
            address: l.address.to_string(),
            path: segment(&l.address.to_string()),
            description: l.settings.description.clone(),
            role: role.name(),
            owner: role == Role::Owner,
            held,
        });
    }
    Ok(render(&Overview {
        c: p.chrome(&v),
        lists: rows,
    }))
}

// Held posts.

/// One held post in the queue.
struct HeldRow {
    message_id: String,
    link: String,
    sender: String,
    subject: String,
    reason: String,
    size: u64,
    held_at: String,
}

#[derive(Template)]
#[template(path = "held.html")]
struct Held {
    c: Chrome,
    list: String,
    lp: String,
    posts: Vec<HeldRow>,
}

async fn held_page(p: &Pages, v: &Visit, list: &str, flash: String) -> Answer {
    let on = OnList::load(p, v, list).await?;
    let Response::HeldPosts(posts) = on
        .run(
            p,
            Request::HeldList {
                list: on.list.key(),
            },
        )
        .await?
    else {
        return Err(PageError::unavailable("unexpected answer"));
    };
    let posts = posts
        .into_iter()
        .map(|h| HeldRow {
            link: segment(&h.message_id),
            message_id: h.message_id,
            sender: h.sender,
            subject: h.subject,
            reason: h.reason,
            size: h.size,
            held_at: date(h.held_at),
        })
        .collect();
    let mut c = p.chrome(v);
    c.flash = flash;
    Ok(render(&Held {
        c,
        list: on.name,
        lp: on.lp,
        posts,
    }))
}

async fn held(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
) -> Answer {
    held_page(&p, &v, &list, String::new()).await
}

async fn held_act(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
    body: Bytes,
) -> Answer {
    let f = Form::checked(&body, &p, &v)?;
    let on = OnList::load(&p, &v, &list).await?;
    let Some(action) = Action::parse(f.get("action")) else {
        return Err(PageError::bad("Choose approve, reject or discard."));
    };
    let ids = f.all("id");
    if ids.is_empty() {
        return held_page(&p, &v, &list, "Select at least one post.".into()).await;
    }
    let reason = f.get("reason").trim();
    let reason = (!reason.is_empty()).then(|| reason.chars().take(500).collect::<String>());
    let (mut done, mut already) = (0, 0);
    for message_id in ids {
        let req = Request::HeldAct {
            list: on.list.key(),
            message_id,
            action,
            reason: reason.clone(),
        };
        match on.run(&p, req).await {
            Ok(Response::HeldActed(r)) if r.done => done += 1,
            Ok(_) => already += 1,
            // Forbidden stops here; a post gone meanwhile is "already handled".
            Err(PageError::Show(s, m)) if s == axum::http::StatusCode::FORBIDDEN => {
                return Err(PageError::Show(s, m))
            }
            Err(_) => already += 1,
        }
    }
    let mut flash = format!("{} {done} post(s).", past(action));
    if already > 0 {
        flash.push_str(&format!(" {already} had already been handled."));
    }
    held_page(&p, &v, &list, flash).await
}

fn past(a: Action) -> &'static str {
    match a {
        Action::Approve => "Approved",
        Action::Reject => "Rejected",
        Action::Discard => "Discarded",
    }
}

#[derive(Template)]
#[template(path = "held_post.html")]
struct HeldPost {
    c: Chrome,
    list: String,
    lp: String,
    message_id: String,
    from: String,
    subject: String,
    date: String,
    reason: String,
    checks: String,
    /// What the preview leaves out (HTML, attachments, a cut).
    note: String,
    body: String,
}

/// The parts of a post a moderator reads, as plain text.
fn preview(raw: &str) -> (String, String, String, String, String) {
    let Some(m) = crate::mime::parse(raw.as_bytes()) else {
        return (
            String::new(),
            String::new(),
            String::new(),
            "The post could not be parsed; its raw text is shown.".into(),
            raw.chars().take(PREVIEW_CHARS).collect(),
        );
    };
    let from = m
        .from()
        .and_then(|a| a.first())
        .map(|a| match (a.name(), a.address()) {
            (Some(n), Some(e)) => format!("{n} <{e}>"),
            (None, Some(e)) => e.to_string(),
            (Some(n), None) => n.to_string(),
            (None, None) => String::new(),
        })
        .unwrap_or_default();
    let subject = m.subject().unwrap_or_default().to_string();
    let date = m.date().map(|d| d.to_rfc822()).unwrap_or_default();
    let text = m.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    let mut notes = Vec::new();
    let is_html = |p: Option<&mail_parser::MessagePart>| {
        p.is_some_and(|p| matches!(p.body, mail_parser::PartType::Html(_)))
    };
    if is_html(m.text_part(0)) {
        notes.push("The post is HTML only: shown as text, without its markup.".to_string());
    } else if is_html(m.html_part(0)) {
        notes.push("The post also has an HTML version, not shown.".to_string());
    }
    if m.attachment_count() > 0 {
        notes.push(format!(
            "{} attachment(s), not shown.",
            m.attachment_count()
        ));
    }
    let body: String = text.chars().take(PREVIEW_CHARS).collect();
    if body.len() < text.len() {
        notes.push(format!(
            "Only the first {PREVIEW_CHARS} characters are shown."
        ));
    }
    (from, subject, date, notes.join(" "), body)
}

async fn held_post(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path((list, message_id)): Path<(String, String)>,
) -> Answer {
    let on = OnList::load(&p, &v, &list).await?;
    let req = Request::HeldShow {
        list: on.list.key(),
        message_id,
    };
    let Response::HeldPost(h) = on.run(&p, req).await? else {
        return Err(PageError::unavailable("unexpected answer"));
    };
    let (from, subject, date, note, body) = preview(&h.message);
    Ok(render(&HeldPost {
        c: p.chrome(&v),
        list: on.name,
        lp: on.lp,
        message_id: h.post.message_id,
        from: if from.is_empty() { h.post.sender } else { from },
        subject: if subject.is_empty() {
            h.post.subject
        } else {
            subject
        },
        date,
        reason: h.post.reason,
        checks: h.post.checks.unwrap_or_default(),
        note,
        body,
    }))
}

// Settings.

/// One setting in the form.
struct SettingField {
    key: String,
    value: String,
    /// Why the submitted value was refused; empty when it was not.
    error: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct Settings {
    c: Chrome,
    list: String,
    lp: String,
    fields: Vec<SettingField>,
}

/// Each setting's text form, as `list set` takes it.
fn setting_values(s: &ListSettings) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(s) else {
        return Vec::new();
    };
    map.into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect()
}

/// Only an owner sees the settings (a moderator gets the refusal page).
fn owner_only(on: &OnList) -> Result<(), PageError> {
    match on.ctx.token.role {
        Role::Owner if !on.ctx.token.lists.is_empty() => Ok(()),
        _ => Err(PageError::forbidden(format!(
            "Only an owner of {} may see this page.",
            on.name
        ))),
    }
}

async fn settings(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
) -> Answer {
    let on = OnList::load(&p, &v, &list).await?;
    owner_only(&on)?;
    let fields = setting_values(&on.list.settings)
        .into_iter()
        .map(|(key, value)| SettingField {
            key,
            value,
            error: String::new(),
        })
        .collect();
    Ok(render(&Settings {
        c: p.chrome(&v),
        list: on.name,
        lp: on.lp,
        fields,
    }))
}

async fn settings_save(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
    body: Bytes,
) -> Answer {
    let f = Form::checked(&body, &p, &v)?;
    let on = OnList::load(&p, &v, &list).await?;
    owner_only(&on)?;
    let mut fields = Vec::new();
    let (mut changed, mut refused) = (0, 0);
    for (key, current) in setting_values(&on.list.settings) {
        let Some((_, submitted)) = f.0.iter().find(|(k, _)| *k == key) else {
            fields.push(SettingField {
                key,
                value: current,
                error: String::new(),
            });
            continue;
        };
        let submitted = submitted.to_string();
        let mut error = String::new();
        if submitted != current {
            let req = Request::ListSet {
                address: on.list.key(),
                key: key.clone(),
                value: submitted.clone(),
            };
            match on.run(&p, req).await {
                Ok(_) => changed += 1,
                Err(PageError::Show(_, m)) => {
                    refused += 1;
                    error = m;
                }
                Err(e) => return Err(e),
            }
        }
        fields.push(SettingField {
            key,
            value: submitted,
            error,
        });
    }
    let mut c = p.chrome(&v);
    c.flash = match (changed, refused) {
        (0, 0) => "Nothing changed.".into(),
        (n, 0) => format!("Saved {n} setting(s)."),
        (n, r) => format!("Saved {n} setting(s); {r} refused: see the messages below."),
    };
    Ok(render(&Settings {
        c,
        list: on.name,
        lp: on.lp,
        fields,
    }))
}

// Members.

/// One member on the page.
struct MemberRow {
    address: String,
    delivery: bool,
    /// Delivery was turned off by bounces.
    disabled: bool,
    score: String,
    moderated: bool,
    added: String,
}

#[derive(Template)]
#[template(path = "members.html")]
struct Members {
    c: Chrome,
    list: String,
    lp: String,
    prefix: String,
    prefix_q: String,
    members: Vec<MemberRow>,
    /// The cursor of the next page; empty at the end.
    next: String,
}

async fn members_page(
    p: &Pages,
    v: &Visit,
    list: &str,
    q: &[(String, String)],
    flash: String,
) -> Answer {
    let on = OnList::load(p, v, list).await?;
    let prefix = field(q, "prefix").trim().to_string();
    let after = match field(q, "after") {
        "" => None,
        c => Some(decode_cursor(c).ok_or_else(|| {
            PageError::bad("This page link is damaged: start again from the first page.")
        })?),
    };
    let req = Request::MemberPage {
        list: on.list.key(),
        after,
        limit: PAGE,
        prefix: (!prefix.is_empty()).then(|| prefix.clone()),
    };
    let Response::MemberPage(page) = on.run(p, req).await? else {
        return Err(PageError::unavailable("unexpected answer"));
    };
    // Bounce scores are read straight from the store: one record per
    // member shown (a request each would also sync the store each time).
    let store = p.service.store.as_ref();
    let scope = crate::bounce::handler::list_scope(store, p.web.admin.bounce_scope, &on.list)
        .await
        .map_err(PageError::unavailable)?;
    let mut rows = Vec::with_capacity(page.members.len());
    for m in page.members {
        let record = store
            .bounce_state(&scope, &m.address.key())
            .await
            .map_err(PageError::unavailable)?;
        rows.push(MemberRow {
            address: m.address.to_string(),
            delivery: m.delivery_enabled,
            disabled: record.as_ref().is_some_and(|r| r.disabled),
            score: record.map_or_else(|| "0".into(), |r| format!("{:.1}", r.score)),
            moderated: m.moderated,
            added: date(m.added_at),
        });
    }
    let mut c = p.chrome(v);
    c.flash = flash;
    Ok(render(&Members {
        c,
        list: on.name,
        lp: on.lp,
        prefix_q: segment(&prefix),
        prefix,
        members: rows,
        next: page.next.as_deref().map(encode_cursor).unwrap_or_default(),
    }))
}

async fn members(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    members_page(&p, &v, &list, &query(q), String::new()).await
}

async fn members_change(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
    body: Bytes,
) -> Answer {
    let f = Form::checked(&body, &p, &v)?;
    let on = OnList::load(&p, &v, &list).await?;
    let flash = match f.get("do") {
        "add" => {
            let addresses: Vec<String> = f
                .get("addresses")
                .split(['\n', ',', ';'])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect();
            let req = Request::MemberAdd {
                list: on.list.key(),
                addresses,
            };
            match on.run(&p, req).await? {
                Response::MembersAdded(r) => {
                    let mut s = format!("Added {}; {} already members.", r.added, r.already);
                    for i in r.invalid.iter().take(20) {
                        s.push_str(&format!(" Refused {:?}: {}.", i.address, i.error));
                    }
                    s
                }
                _ => "Done.".into(),
            }
        }
        "remove" => {
            let addresses = f.all("address");
            if addresses.is_empty() {
                "Select at least one member.".into()
            } else {
                let req = Request::MemberRemove {
                    list: on.list.key(),
                    addresses,
                };
                match on.run(&p, req).await? {
                    Response::MembersRemoved(r) => format!("Removed {}.", r.removed),
                    _ => "Done.".into(),
                }
            }
        }
        other => return Err(PageError::bad(format!("{other:?} is not an action here."))),
    };
    members_page(&p, &v, &list, &[], flash).await
}

// Bounces.

/// One bounce record.
struct BounceRow {
    member: String,
    score: String,
    bounces: u32,
    reason: String,
    delivery: bool,
}

#[derive(Template)]
#[template(path = "bounces.html")]
struct Bounces {
    c: Chrome,
    list: String,
    lp: String,
    records: Vec<BounceRow>,
    /// Members whose delivery is off.
    disabled: usize,
}

async fn bounce_records(
    p: &Pages,
    on: &OnList,
) -> Result<Vec<crate::admin::protocol::BounceRecord>, PageError> {
    let req = Request::BounceShow {
        list: on.list.key(),
        member: None,
    };
    match on.run(p, req).await? {
        Response::BounceRecords(r) => Ok(r),
        _ => Err(PageError::unavailable("unexpected answer")),
    }
}

async fn bounces_page(p: &Pages, v: &Visit, list: &str, flash: String) -> Answer {
    let on = OnList::load(p, v, list).await?;
    let mut records = bounce_records(p, &on).await?;
    // Disabled members first, then by score.
    records.sort_by(|a, b| {
        a.delivery_enabled
            .cmp(&b.delivery_enabled)
            .then(b.score.total_cmp(&a.score))
    });
    let disabled = records.iter().filter(|r| !r.delivery_enabled).count();
    let rows = records
        .into_iter()
        .map(|r| BounceRow {
            member: r.member,
            score: format!("{:.1}", r.score),
            bounces: r.bounces,
            reason: match r.last_status {
                Some(s) => format!("{} ({s})", r.last_reason),
                None => r.last_reason,
            },
            delivery: r.delivery_enabled,
        })
        .collect();
    let mut c = p.chrome(v);
    c.flash = flash;
    Ok(render(&Bounces {
        c,
        list: on.name,
        lp: on.lp,
        records: rows,
        disabled,
    }))
}

async fn bounces(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
) -> Answer {
    bounces_page(&p, &v, &list, String::new()).await
}

async fn bounces_reset(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
    body: Bytes,
) -> Answer {
    let f = Form::checked(&body, &p, &v)?;
    let on = OnList::load(&p, &v, &list).await?;
    let members = match f.get("do") {
        "reset" => f.all("member"),
        // After an incident (the MTA or a big provider refused everything
        // for a while): every member bounces disabled, back on.
        "reenable_all" => bounce_records(&p, &on)
            .await?
            .into_iter()
            .filter(|r| !r.delivery_enabled)
            .map(|r| r.member)
            .collect(),
        other => return Err(PageError::bad(format!("{other:?} is not an action here."))),
    };
    let mut n = 0;
    for member in members {
        let req = Request::BounceReset {
            list: on.list.key(),
            member,
        };
        if on.run(&p, req).await.is_ok() {
            n += 1;
        }
    }
    bounces_page(
        &p,
        &v,
        &list,
        format!("Reset {n} member(s); their delivery is on."),
    )
    .await
}

// The audit log.

/// One audit entry.
struct AuditRow {
    at: String,
    actor: String,
    origin: String,
    action: String,
    target: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct Audit {
    c: Chrome,
    list: String,
    lp: String,
    entries: Vec<AuditRow>,
    next: String,
}

async fn audit(
    State(p): State<Arc<Pages>>,
    Extension(v): Extension<Visit>,
    Path(list): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let on = OnList::load(&p, &v, &list).await?;
    let q = query(q);
    let after = match field(&q, "after") {
        "" => None,
        c => Some(
            decode_cursor(c)
                .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| PageError::bad("This page link is damaged: start again."))?,
        ),
    };
    let req = Request::AuditList {
        list: Some(on.list.key()),
        since: None,
        after,
        limit: AUDIT_PAGE,
    };
    let Response::Audit(page) = on.run(&p, req).await? else {
        return Err(PageError::unavailable("unexpected answer"));
    };
    let entries = page
        .entries
        .into_iter()
        .map(|e| AuditRow {
            at: date(e.at),
            actor: e.actor,
            origin: e.origin,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
        })
        .collect();
    Ok(render(&Audit {
        c: p.chrome(&v),
        list: on.name,
        lp: on.lp,
        entries,
        next: page.next.as_deref().map(encode_cursor).unwrap_or_default(),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_is_text() {
        let raw = "From: \"<script>x</script>\" <a@b.org>\r\nSubject: <b>hi</b>\r\n\
                   Content-Type: text/html\r\n\r\n<p>Hello <img src=\"http://evil/x.png\"></p>";
        let (from, subject, _, note, body) = preview(raw);
        assert_eq!(subject, "<b>hi</b>");
        assert!(from.contains("<script>"), "{from}");
        assert!(note.contains("HTML only"), "{note}");
        assert!(!body.contains("<img"), "{body}");
        assert!(body.contains("Hello"), "{body}");
    }

    #[test]
    fn settings_render_as_list_set_takes_them() {
        let s = ListSettings {
            owners: vec!["a@x.org".into(), "b@x.org".into()],
            ..Default::default()
        };
        let v = setting_values(&s);
        let owners = v.iter().find(|(k, _)| k == "owners").unwrap();
        assert_eq!(owners.1, "a@x.org, b@x.org");
        for (k, text) in &v {
            let mut t = ListSettings {
                owners: s.owners.clone(),
                ..Default::default()
            };
            t.set(k, text)
                .unwrap_or_else(|e| panic!("{k}={text}: {e:?}"));
        }
    }
}
