//! Digest requests: `digest send` (queue the list's issue now) and `digest
//! status`. They run wherever the request runs: inside the server over the
//! socket (its planner is woken), or on the store the CLI opened (the
//! server's planner finds the issue when it starts).

use super::protocol::{DigestStatusView, Response};
use super::{existing_list, Admin, AdminError};
use crate::clock::Clock;
use crate::digest::Digester;
use crate::store::Store;

pub async fn send(admin: &Admin, list: &str) -> Result<Response, AdminError> {
    let l = existing_list(admin.store.as_ref(), list).await?;
    if !l.settings.digest_enabled {
        return Err(AdminError::Invalid(format!(
            "{} has no digests: `listrelay list set {} digest_enabled true` first",
            l.address, l.address
        )));
    }
    let posts = admin.moderation.as_ref().and_then(|m| m.posts.clone());
    let digester = Digester::new(admin.store.clone(), posts, Clock::system());
    Ok(Response::DigestSent(digester.send_now(&l).await?))
}

pub async fn status(store: &dyn Store, list: &str) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    Ok(Response::DigestStatus(DigestStatusView {
        list: l.key(),
        enabled: l.settings.digest_enabled,
        pending: store.digest_pending(&l.key()).await?,
        last: store.last_issue(&l.key()).await?,
    }))
}
