//! A page of a list's members, for the REST roster: a range read after a
//! member key, with an optional prefix search. Each call reads at most
//! [`SCAN_BUDGET`] members however rare the prefix, and says where to go on,
//! so a page of a million-member list costs the same as one of a hundred.

use super::protocol::MemberPage;
use super::{existing_list, AdminError, Response};
use crate::model::Member;
use crate::store::Store;

/// The most members one page shows.
pub const MAX_PAGE: u32 = 1000;

/// The most members one call reads while searching for a prefix.
const SCAN_BUDGET: usize = 20_000;

/// Members read per store call while searching.
const READ: usize = 1000;

pub(super) async fn member_page(
    store: &dyn Store,
    list: &str,
    after: Option<String>,
    limit: u32,
    prefix: Option<&str>,
) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    let limit = limit.clamp(1, MAX_PAGE) as usize;
    let prefix = prefix.map(str::to_lowercase).filter(|p| !p.is_empty());
    let Some(prefix) = prefix else {
        let members = store
            .members_page(&l.key(), after.as_deref(), limit)
            .await?;
        let next = (members.len() == limit)
            .then(|| members.last().map(|m| m.address.key()))
            .flatten();
        return Ok(Response::MemberPage(MemberPage { members, next }));
    };
    let matches = |m: &Member| m.address.key().starts_with(&prefix);
    let mut found = Vec::new();
    let mut cursor = after;
    let mut scanned = 0;
    loop {
        let page = store
            .members_page(&l.key(), cursor.as_deref(), READ)
            .await?;
        let full = page.len() == READ;
        for m in page {
            scanned += 1;
            cursor = Some(m.address.key());
            if matches(&m) {
                found.push(m);
                if found.len() == limit {
                    return Ok(Response::MemberPage(MemberPage {
                        members: found,
                        next: cursor,
                    }));
                }
            }
        }
        if !full {
            return Ok(Response::MemberPage(MemberPage {
                members: found,
                next: None,
            }));
        }
        if scanned >= SCAN_BUDGET {
            return Ok(Response::MemberPage(MemberPage {
                members: found,
                next: cursor,
            }));
        }
    }
}
