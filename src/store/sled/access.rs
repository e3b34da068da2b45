//! API tokens and the audit log in sled: `tokens` holds each token record
//! (hash, role, lists, expiry) under its id; `audit` holds the entries under
//! their time-ordered ids, so a range read from a time is a page of the log
//! in order, and pruning removes a prefix.

use async_trait::async_trait;

use super::{get, put, values, SledStore, Trees};
use crate::model::{ApiToken, AuditEntry, AuditQuery};
use crate::store::{Access, Result, StoreError};

fn create_token(t: &Trees, token: &ApiToken) -> Result<()> {
    let bytes = serde_json::to_vec(token)?;
    t.tokens
        .compare_and_swap(token.id.as_bytes(), None as Option<&[u8]>, Some(bytes))?
        .map_err(|_| StoreError::Exists(format!("token {}", token.id)))
}

fn revoke_token(t: &Trees, id: &str, at: u64) -> Result<bool> {
    // Revoking is idempotent and only ever sets the field: a plain
    // read-modify-write cannot lose another writer's change (there is none).
    let Some(mut token) = get::<ApiToken>(&t.tokens, id)? else {
        return Ok(false);
    };
    if token.revoked_at.is_none() {
        token.revoked_at = Some(at);
        put(&t.tokens, id, &token)?;
    }
    Ok(true)
}

fn audit(t: &Trees, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let start = query.start_after();
    let range = match &start {
        Some(after) => t.audit.range::<&[u8], _>((
            std::ops::Bound::Excluded(after.as_bytes()),
            std::ops::Bound::Unbounded,
        )),
        None => t.audit.iter(),
    };
    let mut out = Vec::new();
    for kv in range {
        if out.len() >= query.limit {
            break;
        }
        let (_, v) = kv?;
        let e: AuditEntry = serde_json::from_slice(&v)?;
        if query.matches(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

fn prune_audit(t: &Trees, before: u64) -> Result<usize> {
    // Ids begin with the time in milliseconds, so every entry older than
    // `before` sorts before this key.
    let end = format!("{:012x}", before.saturating_mul(1000));
    let mut n = 0;
    for kv in t.audit.range(..end.as_bytes()) {
        let (k, _) = kv?;
        t.audit.remove(k)?;
        n += 1;
    }
    Ok(n)
}

#[async_trait]
impl Access for SledStore {
    async fn create_token(&self, token: &ApiToken) -> Result<()> {
        let token = token.clone();
        self.blocking(move |t| create_token(t, &token)).await
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        get(&self.trees.tokens, id)
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        values(self.trees.tokens.iter())
    }

    async fn revoke_token(&self, id: &str, at: u64) -> Result<bool> {
        let id = id.to_string();
        self.blocking(move |t| revoke_token(t, &id, at)).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        put(&self.trees.audit, entry.id.as_bytes(), entry)
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let query = query.clone();
        self.blocking(move |t| audit(t, &query)).await
    }

    async fn prune_audit(&self, before: u64) -> Result<usize> {
        self.blocking(move |t| prune_audit(t, before)).await
    }
}
