//! Bounce records: show them, and reset a member's.

use super::protocol::{BounceRecord, BounceResetReport};
use super::{existing_list, parse_address, AdminError, Response};
use crate::bounce::handler::{list_scope, lists_in_scope, update_bounce_state};
use crate::bounce::BounceScope;
use crate::store::Store;

/// The records in the list's scope (or the member's), of current members only.
pub(super) async fn show(
    store: &dyn Store,
    scope: BounceScope,
    list: &str,
    member: Option<&str>,
) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    let key = list_scope(store, scope, &l).await?;
    let states = match member {
        Some(m) => {
            let m = parse_address("member address", m)?.key();
            store.bounce_state(&key, &m).await?.into_iter().collect()
        }
        None => store.bounce_states(Some(&key)).await?,
    };
    let mut out = Vec::new();
    for st in states {
        let Some(m) = store.member(&l.key(), &st.member).await? else {
            continue;
        };
        out.push(BounceRecord {
            member: st.member,
            scope: st.scope,
            score: st.score,
            bounces: st.bounces,
            first_bounce: st.first_bounce,
            last_bounce: st.last_bounce,
            last_reason: st.last_reason,
            last_status: st.last_status,
            last_hard: st.last_hard,
            disabled: st.disabled,
            delivery_enabled: m.delivery_enabled,
            warnings_sent: st.warnings_sent,
            last_warning_at: st.last_warning_at,
            via_list: st.list,
        });
    }
    Ok(Response::BounceRecords(out))
}

/// Forgets the member's record in the list's scope and turns delivery back on
/// in every list of that scope.
pub(super) async fn reset(
    store: &dyn Store,
    scope: BounceScope,
    list: &str,
    member: &str,
) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    let m = parse_address("member address", member)?;
    if store.member(&l.key(), &m.key()).await?.is_none() {
        return Err(AdminError::Invalid(format!(
            "{m} is not a member of {}",
            l.address
        )));
    }
    let key = list_scope(store, scope, &l).await?;
    let member = m.key();
    // Compare-and-swap: a bounce the handler scores at this moment is either
    // before the reset (and forgotten) or after it (and kept), never lost.
    let had_record = update_bounce_state(store, &key, &member, |old| (None, old.is_some())).await?;
    let mut delivery_enabled_in = Vec::new();
    for other in lists_in_scope(store, scope, &key).await? {
        if store.set_delivery(&other.key(), &member, true).await? {
            delivery_enabled_in.push(other.key());
        }
    }
    Ok(Response::BounceReset(BounceResetReport {
        member,
        scope: key,
        had_record,
        delivery_enabled_in,
    }))
}
