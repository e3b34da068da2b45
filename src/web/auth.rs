//! Who may do what: a bearer token's role against the [`Request`] it asks
//! for. One rule for every door that carries a role (the REST API now, the
//! pages next): a site token may do everything; an owner token acts on the
//! settings, members, bounces and held posts of its lists; a moderator token
//! on the held posts of its lists (and may read those lists).

use axum::http::{header, HeaderMap};

use super::problem::Problem;
use crate::address::Address;
use crate::admin::access::{self, Refused, VerifyError};
use crate::admin::{Request, Response};
use crate::model::{ApiToken, Role};
use crate::store::Store;

/// The token a request carries in `Authorization: Bearer …`, checked.
pub async fn authenticate(store: &dyn Store, headers: &HeaderMap) -> Result<ApiToken, Problem> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Problem::unauthorized(
            "no token: send `Authorization: Bearer TOKEN` (make one with `listrelay token create`)",
        ));
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| Problem::unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
    match access::verify(store, presented).await {
        Ok(t) => Ok(t),
        Err(VerifyError::Refused(r)) => {
            metrics::counter!("listrelay_api_refused_total", "why" => refused_name(r)).increment(1);
            Err(Problem::unauthorized(match r {
                Refused::Unknown => "unknown token: check it was copied whole, or make a new one",
                Refused::Revoked => "this token was revoked: ask for a new one",
                Refused::Expired => "this token has expired: ask for a new one",
            }))
        }
        Err(VerifyError::Store(e)) => Err(crate::admin::AdminError::Store(e).into()),
    }
}

fn refused_name(r: Refused) -> &'static str {
    match r {
        Refused::Unknown => "unknown",
        Refused::Revoked => "revoked",
        Refused::Expired => "expired",
    }
}

/// The key of a list as a request names it (as given, lowercased, when it is
/// not an address: it then matches no token's list).
fn key(list: &str) -> String {
    Address::parse(list)
        .map(|a| a.key())
        .unwrap_or_else(|_| list.to_ascii_lowercase())
}

/// Whether the token names `list`.
fn holds(token: &ApiToken, list: &str) -> bool {
    let k = key(list);
    token.lists.contains(&k)
}

/// What a request needs of a token's role.
enum Need<'a> {
    /// Only a site token.
    Site,
    /// Any token (the answer is then filtered by [`visible`]).
    Any,
    /// An owner (or site) token of this list.
    Owner(&'a str),
    /// A moderator or owner (or site) token of this list.
    Moderator(&'a str),
}

fn need(req: &Request) -> Need<'_> {
    match req {
        Request::ListList { .. } => Need::Any,
        Request::ListShow { address } => Need::Moderator(address),
        Request::HeldList { list }
        | Request::HeldShow { list, .. }
        | Request::HeldAct { list, .. } => Need::Moderator(list),
        Request::ListSet { address, .. } => Need::Owner(address),
        Request::MemberAdd { list, .. }
        | Request::MemberRemove { list, .. }
        | Request::MemberList { list }
        | Request::MemberSet { list, .. }
        | Request::MemberPage { list, .. }
        | Request::BounceShow { list, .. }
        | Request::BounceReset { list, .. }
        | Request::BanAdd { list, .. }
        | Request::BanRemove { list, .. }
        | Request::BanList { list }
        | Request::DigestSend { list }
        | Request::DigestStatus { list } => Need::Owner(list),
        Request::AuditList {
            list: Some(list), ..
        } => Need::Owner(list),
        // Domains, creating and deleting lists, the queue, stored messages,
        // tokens, the whole audit log, and anything added later: the site.
        _ => Need::Site,
    }
}

/// Whether `token` may make `req`; the refusal says why.
pub fn permit(token: &ApiToken, req: &Request) -> Result<(), Problem> {
    let ok = match (token.role, need(req)) {
        (Role::Site, _) | (_, Need::Any) => true,
        (_, Need::Site) => false,
        (Role::Owner, Need::Owner(l) | Need::Moderator(l)) => holds(token, l),
        (Role::Moderator, Need::Moderator(l)) => holds(token, l),
        (Role::Moderator, Need::Owner(_)) => false,
    };
    if ok {
        return Ok(());
    }
    Err(Problem::forbidden(match need(req) {
        Need::Site => format!(
            "a {} token may not do this: it needs a site token",
            token.role.name()
        ),
        Need::Owner(l) | Need::Moderator(l) if !holds(token, l) => {
            format!("this token does not act on the list {l}")
        }
        _ => format!(
            "a {} token may not do this on its lists: it needs an owner token",
            token.role.name()
        ),
    }))
}

/// The part of an answer the token may see: an owner or moderator sees only
/// its own lists in a list of lists.
pub fn visible(token: &ApiToken, response: Response) -> Response {
    match (token.role, response) {
        (Role::Site, r) => r,
        (_, Response::Lists(ls)) => Response::Lists(
            ls.into_iter()
                .filter(|l| holds(token, &l.address))
                .collect(),
        ),
        (_, r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moderation::Action;

    fn token(role: Role, lists: &[&str]) -> ApiToken {
        ApiToken {
            id: "0123456789ab".into(),
            hash: String::new(),
            role,
            lists: lists.iter().map(|s| s.to_string()).collect(),
            description: String::new(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn roles_limit_requests_to_their_lists() {
        let set = |list: &str| Request::ListSet {
            address: list.into(),
            key: "footer".into(),
            value: "x".into(),
        };
        let approve = |list: &str| Request::HeldAct {
            list: list.into(),
            message_id: "m@x".into(),
            action: Action::Approve,
            reason: None,
        };
        let site = token(Role::Site, &[]);
        let owner = token(Role::Owner, &["a@x.org"]);
        let moderator = token(Role::Moderator, &["a@x.org"]);
        assert!(permit(&site, &set("b@x.org")).is_ok());
        assert!(permit(&site, &Request::Queue).is_ok());
        assert!(permit(&owner, &set("A@X.org")).is_ok());
        assert!(permit(&owner, &set("b@x.org")).is_err());
        assert!(permit(&owner, &approve("a@x.org")).is_ok());
        assert!(permit(&owner, &Request::Queue).is_err());
        assert!(permit(&moderator, &approve("a@x.org")).is_ok());
        assert!(permit(&moderator, &approve("b@x.org")).is_err());
        assert!(permit(&moderator, &set("a@x.org")).is_err());
        assert_eq!(permit(&moderator, &set("b@x.org")).unwrap_err().status, 403);
        assert!(permit(&moderator, &Request::TokenList).is_err());
        let whole_log = Request::AuditList {
            list: None,
            since: None,
            after: None,
            limit: 10,
        };
        assert!(permit(&owner, &whole_log).is_err());
    }
}
