//! API tokens and the audit log in PostgreSQL, as the embedded store keeps
//! them (src/store/sled/access.rs): token records in `api_tokens` by id,
//! audit entries in `audit_log` by time-ordered id, with the list and the
//! time beside the record for `audit --list` and pruning.

use deadpool_postgres::Client;
use tokio_postgres::types::Json;

use super::{i64_of, json, pg_err};
use crate::model::{ApiToken, AuditEntry, AuditQuery};
use crate::store::{Result, StoreError};

pub async fn create_token(c: &Client, token: &ApiToken) -> Result<()> {
    let n = c
        .execute(
            "INSERT INTO api_tokens (id, data) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            &[&token.id, &Json(token)],
        )
        .await
        .map_err(pg_err)?;
    if n == 0 {
        return Err(StoreError::Exists(format!("token {}", token.id)));
    }
    Ok(())
}

pub async fn token(c: &Client, id: &str) -> Result<Option<ApiToken>> {
    let row = c
        .query_opt("SELECT data FROM api_tokens WHERE id = $1", &[&id])
        .await
        .map_err(pg_err)?;
    row.map(|r| json(&r, "api_tokens", 0)).transpose()
}

pub async fn tokens(c: &Client) -> Result<Vec<ApiToken>> {
    let rows = c
        .query("SELECT data FROM api_tokens ORDER BY id", &[])
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "api_tokens", 0)).collect()
}

pub async fn revoke_token(c: &Client, id: &str, at: u64) -> Result<bool> {
    // One statement: the first revocation's time stays.
    let n = c
        .execute(
            "UPDATE api_tokens SET data = CASE
                 WHEN data->'revoked_at' IS NULL OR data->'revoked_at' = 'null'::jsonb
                 THEN jsonb_set(data, '{revoked_at}', to_jsonb($2::bigint))
                 ELSE data END
             WHERE id = $1",
            &[&id, &i64_of(at)],
        )
        .await
        .map_err(pg_err)?;
    Ok(n > 0)
}

pub async fn append_audit(c: &Client, e: &AuditEntry) -> Result<()> {
    c.execute(
        "INSERT INTO audit_log (id, at, list, data) VALUES ($1, $2, $3, $4)",
        &[&e.id, &i64_of(e.at), &e.list, &Json(e)],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

pub async fn audit(c: &Client, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let after = q.start_after();
    let since = q.since.map(i64_of);
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let rows = c
        .query(
            "SELECT data FROM audit_log
             WHERE ($1::text IS NULL OR list = $1)
               AND ($2::text IS NULL OR id > $2)
               AND ($3::bigint IS NULL OR at >= $3)
             ORDER BY id LIMIT $4",
            &[&q.list, &after, &since, &limit],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "audit_log", 0)).collect()
}

pub async fn prune_audit(c: &Client, before: u64) -> Result<usize> {
    let n = c
        .execute("DELETE FROM audit_log WHERE at < $1", &[&i64_of(before)])
        .await
        .map_err(pg_err)?;
    Ok(n as usize)
}
