//! Bounce state in PostgreSQL, as the embedded store keeps it
//! (src/store/sled/bounce.rs): per-member records in `bounce_states`, keyed
//! (scope, member), and per-post policy counts in `post_bounces`, keyed
//! (list, post). Hand-off failures (recorded by fan-out, scored by the
//! bounce handler) are the `failures` rows; their id is the row's
//! `bigserial`, in decimal.

use deadpool_postgres::Client;
use tokio_postgres::types::Json;
use tokio_postgres::GenericClient;

use super::{col, i64_of, json, member_parts, pg_err};
use crate::model::{BounceState, Member, PostBounces};
use crate::store::{DeliveryFailure, Result};

pub async fn member(c: &Client, list: &str, key: &str) -> Result<Option<Member>> {
    let (domain, local) = member_parts(key);
    let row = c
        .query_opt(
            "SELECT data FROM members WHERE list = $1 AND domain = $2 AND local = $3",
            &[&list, &domain, &local],
        )
        .await
        .map_err(pg_err)?;
    row.map(|r| json(&r, "members", 0)).transpose()
}

pub async fn set_delivery(c: &Client, list: &str, key: &str, enabled: bool) -> Result<bool> {
    let (domain, local) = member_parts(key);
    let n = c
        .execute(
            "UPDATE members SET data = jsonb_set(data, '{delivery_enabled}', to_jsonb($4::boolean))
             WHERE list = $1 AND domain = $2 AND local = $3",
            &[&list, &domain, &local, &enabled],
        )
        .await
        .map_err(pg_err)?;
    Ok(n > 0)
}

pub async fn state(c: &Client, scope: &str, member: &str) -> Result<Option<BounceState>> {
    let row = c
        .query_opt(
            "SELECT data FROM bounce_states WHERE scope = $1 AND member = $2",
            &[&scope, &member],
        )
        .await
        .map_err(pg_err)?;
    row.map(|r| json(&r, "bounce_states", 0)).transpose()
}

pub async fn states(c: &Client, scope: Option<&str>) -> Result<Vec<BounceState>> {
    let rows = c
        .query(
            "SELECT data FROM bounce_states WHERE $1::text IS NULL OR scope = $1
             ORDER BY scope, member",
            &[&scope],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "bounce_states", 0)).collect()
}

pub async fn put_state(
    c: &impl GenericClient,
    s: &BounceState,
) -> std::result::Result<u64, tokio_postgres::Error> {
    c.execute(
        "INSERT INTO bounce_states (scope, member, data) VALUES ($1, $2, $3)
         ON CONFLICT (scope, member) DO UPDATE SET data = excluded.data",
        &[&s.scope, &s.member, &Json(s)],
    )
    .await
}

/// Compare-and-swap of one member's bounce state. Absent → the insert
/// only happens if nobody inserted first; present → the row is locked, its
/// record decoded and compared as the embedded store compares it (so a
/// record written by an older listrelay, with fields left to their
/// defaults, still compares equal to what a reader got), then replaced or
/// deleted in the same transaction.
pub async fn replace_state(
    c: &mut Client,
    scope: &str,
    member: &str,
    expected: Option<&BounceState>,
    new: Option<&BounceState>,
) -> Result<bool> {
    let Some(expected) = expected else {
        let Some(new) = new else {
            // Absent → absent: true while it is still absent.
            return Ok(state(c, scope, member).await?.is_none());
        };
        let n = c
            .execute(
                "INSERT INTO bounce_states (scope, member, data) VALUES ($1, $2, $3)
                 ON CONFLICT (scope, member) DO NOTHING",
                &[&scope, &member, &Json(new)],
            )
            .await
            .map_err(pg_err)?;
        return Ok(n == 1);
    };
    let tx = c.transaction().await.map_err(pg_err)?;
    let row = tx
        .query_opt(
            "SELECT data FROM bounce_states WHERE scope = $1 AND member = $2 FOR UPDATE",
            &[&scope, &member],
        )
        .await
        .map_err(pg_err)?;
    let current: Option<BounceState> = row.map(|r| json(&r, "bounce_states", 0)).transpose()?;
    if current.as_ref() != Some(expected) {
        return Ok(false);
    }
    match new {
        Some(new) => tx
            .execute(
                "UPDATE bounce_states SET data = $3 WHERE scope = $1 AND member = $2",
                &[&scope, &member, &Json(new)],
            )
            .await
            .map_err(pg_err)?,
        None => tx
            .execute(
                "DELETE FROM bounce_states WHERE scope = $1 AND member = $2",
                &[&scope, &member],
            )
            .await
            .map_err(pg_err)?,
    };
    tx.commit().await.map_err(pg_err)?;
    Ok(true)
}

pub async fn delete_state(c: &Client, scope: &str, member: &str) -> Result<bool> {
    let n = c
        .execute(
            "DELETE FROM bounce_states WHERE scope = $1 AND member = $2",
            &[&scope, &member],
        )
        .await
        .map_err(pg_err)?;
    Ok(n > 0)
}

/// The first `max` failures in the embedded store's order (list, then id).
pub async fn pending_failures(c: &Client, max: usize) -> Result<Vec<(String, DeliveryFailure)>> {
    let rows = c
        .query(
            "SELECT id, data FROM failures ORDER BY list, id LIMIT $1",
            &[&i64_of(max as u64)],
        )
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| {
            Ok((
                col::<i64>(r, "failures", 0)?.to_string(),
                json(r, "failures", 1)?,
            ))
        })
        .collect()
}

pub async fn delete_failure(c: &Client, list: &str, id: &str) -> Result<()> {
    // An id this store never gave out names no row.
    let Ok(id) = id.parse::<i64>() else {
        return Ok(());
    };
    c.execute(
        "DELETE FROM failures WHERE list = $1 AND id = $2",
        &[&list, &id],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

pub async fn post(c: &Client, list: &str, post: &str) -> Result<Option<PostBounces>> {
    let row = c
        .query_opt(
            "SELECT data FROM post_bounces WHERE list = $1 AND post = $2",
            &[&list, &post],
        )
        .await
        .map_err(pg_err)?;
    row.map(|r| json(&r, "post_bounces", 0)).transpose()
}

pub async fn put_post(
    c: &impl GenericClient,
    p: &PostBounces,
) -> std::result::Result<u64, tokio_postgres::Error> {
    c.execute(
        "INSERT INTO post_bounces (list, post, first_at, data) VALUES ($1, $2, $3, $4)
         ON CONFLICT (list, post) DO UPDATE SET first_at = excluded.first_at, data = excluded.data",
        &[&p.list, &p.post, &i64_of(p.first_at), &Json(p)],
    )
    .await
}

/// Every post record, for `listrelay export`.
pub async fn posts(c: &Client) -> Result<Vec<PostBounces>> {
    let rows = c
        .query("SELECT data FROM post_bounces ORDER BY list, post", &[])
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "post_bounces", 0)).collect()
}

pub async fn prune_posts(c: &Client, before: u64) -> Result<usize> {
    let n = c
        .execute(
            "DELETE FROM post_bounces WHERE first_at < $1",
            &[&i64_of(before)],
        )
        .await
        .map_err(pg_err)?;
    Ok(n as usize)
}

pub async fn record_failure(c: &Client, failure: &DeliveryFailure) -> Result<()> {
    c.execute(
        "INSERT INTO failures (list, data) VALUES ($1, $2)",
        &[&failure.list, &Json(failure)],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

pub async fn failures(c: &Client, list: &str) -> Result<Vec<DeliveryFailure>> {
    let rows = c
        .query(
            "SELECT data FROM failures WHERE list = $1 ORDER BY id",
            &[&list],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "failures", 0)).collect()
}
