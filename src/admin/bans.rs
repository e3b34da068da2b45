//! A list's bans: addresses and `^` patterns refused as senders and
//! subscribers (`crate::model::ban` checks and matches them). They are kept
//! in the list record, so adding one is a read and a write of the list.

use super::protocol::BanView;
use super::{existing_list, AdminError, Response};
use crate::model::ban::{Ban, BanError, MAX_BANS};
use crate::model::List;
use crate::store::Store;

fn view(l: &List, changed: bool) -> Response {
    Response::Bans(BanView {
        list: l.address.to_string(),
        bans: l.bans.clone(),
        changed,
    })
}

fn invalid(e: BanError) -> AdminError {
    AdminError::Invalid(e.to_string())
}

pub(super) async fn add(
    store: &dyn Store,
    list: &str,
    pattern: &str,
) -> Result<Response, AdminError> {
    let ban = Ban::parse(pattern).map_err(invalid)?;
    let mut l = existing_list(store, list).await?;
    if l.bans.iter().any(|b| b == ban.text()) {
        return Ok(view(&l, false));
    }
    if l.bans.len() >= MAX_BANS {
        return Err(invalid(BanError::TooMany));
    }
    l.bans.push(ban.text().to_string());
    store.update_list(&l).await?;
    Ok(view(&l, true))
}

pub(super) async fn remove(
    store: &dyn Store,
    list: &str,
    pattern: &str,
) -> Result<Response, AdminError> {
    // The stored form (a lowercased address); a stored entry that no
    // longer parses can still be removed by its text.
    let text = Ban::parse(pattern)
        .map(|b| b.text().to_string())
        .unwrap_or_else(|_| pattern.trim().to_string());
    let mut l = existing_list(store, list).await?;
    let before = l.bans.len();
    l.bans.retain(|b| *b != text);
    if l.bans.len() == before {
        return Err(AdminError::NotFound(format!(
            "{} has no ban {text:?}: `listrelay ban list {}` shows them as they must be named",
            l.address, l.address
        )));
    }
    store.update_list(&l).await?;
    Ok(view(&l, true))
}

pub(super) async fn list(store: &dyn Store, list: &str) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    Ok(view(&l, false))
}
