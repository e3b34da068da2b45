//! Held posts: list, show, and the moderator's actions.

use super::protocol::{HeldActReport, HeldInfo, HeldMessage};
use super::{existing_list, AdminError, Response};
use crate::auth::Evaluation;
use crate::model::List;
use crate::moderation::actions::Acted;
use crate::moderation::{Action, HeldPost, Service};
use crate::store::{MessageMeta, Store};

/// The summary of a stored post's sender checks, if it was checked.
pub(super) fn checks(meta: &MessageMeta) -> Option<String> {
    let v = meta.auth.clone()?;
    serde_json::from_value::<Evaluation>(v)
        .ok()
        .map(|e| e.summary())
}

fn info(h: &HeldPost) -> HeldInfo {
    HeldInfo {
        id: h.id.clone(),
        message_id: h.message_id.clone(),
        hash: h.hash.clone(),
        reason: h.reason.clone(),
        sender: h.sender.clone(),
        subject: h.subject.clone(),
        size: h.size,
        held_at: h.held_at,
        checks: None,
    }
}

pub(super) async fn list(store: &dyn Store, list: &str) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    let posts = store.held_posts(Some(&l.key())).await?;
    Ok(Response::HeldPosts(posts.iter().map(info).collect()))
}

async fn find(svc: &Service, l: &List, message_id: &str) -> Result<HeldPost, AdminError> {
    svc.find_held(l, message_id).await?.ok_or_else(|| {
        AdminError::Invalid(format!(
            "nothing held with Message-ID {message_id} (see `held list`)"
        ))
    })
}

pub(super) async fn show(
    store: &dyn Store,
    svc: &Service,
    list: &str,
    message_id: &str,
) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    let h = find(svc, &l, message_id).await?;
    let body = store.message_body(&h.id).await?;
    let mut post = info(&h);
    post.checks = store.message(&h.id).await?.as_ref().and_then(checks);
    Ok(Response::HeldPost(HeldMessage {
        post,
        message: String::from_utf8_lossy(&body).into_owned(),
    }))
}

pub(super) async fn act(
    store: &dyn Store,
    svc: &Service,
    list: &str,
    message_id: &str,
    action: Action,
    reason: &str,
) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    let h = find(svc, &l, message_id).await?;
    let done = svc.act(&l, &h, action, "admin", reason).await?;
    Ok(Response::HeldActed(HeldActReport {
        message_id: h.message_id,
        action,
        done: done == Acted::Done(action),
    }))
}
