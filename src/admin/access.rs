//! API tokens and the audit log, as administrative requests: minting a
//! token (from the OS CSPRNG, shown once, stored hashed), listing and
//! revoking tokens, reading the log. Checking a presented token is
//! [`verify`], which the REST API calls on every request.

use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::protocol::{AuditPage, TokenCreated, TokenInfo};
use super::{existing_list, AdminError, Response};
use crate::clock::now;
use crate::model::access::token_hash;
use crate::model::{ApiToken, AuditQuery, Role};
use crate::store::{Store, StoreError};

/// What every token starts with, so a leaked one is recognisable (secret
/// scanners, logs) and a pasted password is refused without a store read.
pub const TOKEN_PREFIX: &str = "lrt_";

/// Random bytes of a token's public id: unique among a site's tokens (a
/// collision is refused by the store and retried).
const ID_BYTES: usize = 6;

/// Random bytes of a token's secret part: 256 bits, so its plain SHA-256
/// cannot be inverted and guessing is hopeless.
const SECRET_BYTES: usize = 32;

/// The most entries one audit read returns.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// A new token: `lrt_ID_SECRET`, both parts from the OS CSPRNG.
fn mint() -> (String, String) {
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    (id.clone(), format!("{TOKEN_PREFIX}{id}_{secret}"))
}

/// The id part of a presented token, if it has the token's shape.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some(id)
}

/// Why a presented token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a token of this site (or a wrong secret).
    Unknown,
    /// Revoked by `token revoke`.
    Revoked,
    /// Past its expiry.
    Expired,
}

/// The token a caller presented, if it is one of this site's and usable
/// now. The hash is compared in constant time.
pub async fn verify(store: &dyn Store, presented: &str) -> Result<ApiToken, VerifyError> {
    let Some(id) = token_id(presented) else {
        return Err(VerifyError::Refused(Refused::Unknown));
    };
    let stored = store.token(id).await?;
    let given = token_hash(presented);
    let Some(t) = stored else {
        return Err(VerifyError::Refused(Refused::Unknown));
    };
    if !bool::from(given.as_bytes().ct_eq(t.hash.as_bytes())) {
        return Err(VerifyError::Refused(Refused::Unknown));
    }
    if t.revoked_at.is_some() {
        return Err(VerifyError::Refused(Refused::Revoked));
    }
    if !t.usable(now()) {
        return Err(VerifyError::Refused(Refused::Expired));
    }
    Ok(t)
}

/// A token check that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("token refused: {0:?}")]
    Refused(Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(super) async fn token_create(
    store: &dyn Store,
    role: Role,
    lists: &[String],
    expires_at: Option<u64>,
    description: String,
) -> Result<Response, AdminError> {
    let now = now();
    match (role, lists.is_empty()) {
        (Role::Site, false) => {
            return Err(AdminError::Invalid(
                "a site token acts on every list: drop --list".into(),
            ))
        }
        (Role::Owner | Role::Moderator, true) => {
            return Err(AdminError::Invalid(format!(
                "an {} token needs the lists it acts on: add --list LIST",
                role.name()
            )))
        }
        _ => {}
    }
    if expires_at.is_some_and(|t| t <= now) {
        return Err(AdminError::Invalid(
            "the expiry is in the past: give a later --expires".into(),
        ));
    }
    let mut keys = Vec::new();
    for l in lists {
        keys.push(existing_list(store, l).await?.key());
    }
    keys.sort();
    keys.dedup();
    // A collision of 48-bit ids is unlikely; retrying a few times makes it
    // harmless.
    for _ in 0..4 {
        let (id, token) = mint();
        let record = ApiToken {
            id,
            hash: token_hash(&token),
            role,
            lists: keys.clone(),
            description: description.clone(),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        match store.create_token(&record).await {
            Ok(()) => {
                return Ok(Response::TokenCreated(TokenCreated {
                    token,
                    info: TokenInfo::from(&record),
                }))
            }
            Err(StoreError::Exists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AdminError::Invalid(
        "could not find a free token id; try again".into(),
    ))
}

pub(super) async fn token_list(store: &dyn Store) -> Result<Response, AdminError> {
    let tokens = store.tokens().await?;
    Ok(Response::Tokens(
        tokens.iter().map(TokenInfo::from).collect(),
    ))
}

pub(super) async fn token_revoke(store: &dyn Store, id: &str) -> Result<Response, AdminError> {
    if !store.revoke_token(id, now()).await? {
        return Err(AdminError::NotFound(format!(
            "no token {id} (see `token list`)"
        )));
    }
    let t = store
        .token(id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no token {id}")))?;
    Ok(Response::Token(TokenInfo::from(&t)))
}

pub(super) async fn audit_list(
    store: &dyn Store,
    list: Option<&str>,
    since: Option<u64>,
    after: Option<String>,
    limit: u32,
) -> Result<Response, AdminError> {
    let list = match list {
        // A deleted list's entries stay readable: the key, not the list.
        Some(l) => Some(super::parse_address("list address", l)?.key()),
        None => None,
    };
    let limit = limit.clamp(1, MAX_AUDIT_PAGE) as usize;
    let entries = store
        .audit(&AuditQuery {
            list,
            since,
            after,
            limit,
        })
        .await?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id.clone()))
        .flatten();
    Ok(Response::Audit(AuditPage { entries, next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_the_shape_verify_reads() {
        let (id, token) = mint();
        assert_eq!(token_id(&token), Some(id.as_str()));
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 12 + 1 + 43);
        assert_ne!(mint().1, token);
        for bad in [
            "",
            "lrt_",
            "lrt_abc_x",
            "Bearer x",
            "lrt_zzzzzzzzzzzz_x",
            "lrt_0123456789ab_",
        ] {
            assert_eq!(token_id(bad), None, "{bad:?}");
        }
    }
}
