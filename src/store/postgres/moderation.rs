//! Moderation and subscription state in PostgreSQL, as the embedded store
//! keeps it (src/store/sled/moderation.rs): held posts in `held_posts` (the
//! post itself is its `messages` row in state 'held'), pending confirmations
//! in `pending` under the hash of their token, daily mail counts in
//! `rate_counters`.
//!
//! Every single-use operation is one statement or one transaction that checks
//! the state it changes, so whoever races for it (two moderators, two hosts,
//! a moderator and the expiry), it happens once: holding and marking only
//! while the post is queued, releasing only while it is held, a token taken
//! by `DELETE … RETURNING`, a mail counted by a conditional upsert.

use deadpool_postgres::{Client, Transaction};
use tokio_postgres::types::Json;
use tokio_postgres::GenericClient;

use super::{col, i64_of, json, member_parts, meta_of, pg_err, state_name};
use crate::model::{HeldPost, Member, Pending};
use crate::store::rules::{self, Mark};
use crate::store::{MessageMeta, Result};

/// Reads a message under its row lock, for a transition of [`rules`].
async fn locked_meta(tx: &Transaction<'_>, id: &str) -> Result<Option<MessageMeta>> {
    // The row lock makes a concurrent transition wait, then see the new state.
    let row = tx
        .query_opt(
            "SELECT meta, state FROM messages WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(pg_err)?;
    row.as_ref().map(meta_of).transpose()
}

/// Writes a message changed by a transition of [`rules`].
async fn write_meta(tx: &Transaction<'_>, meta: &MessageMeta) -> Result<()> {
    tx.execute(
        "UPDATE messages SET state = $2, meta = $3 WHERE id = $1",
        &[&meta.id, &state_name(meta.state), &Json(meta)],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

pub async fn mark_accepted(c: &mut Client, id: &str) -> Result<bool> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let Some(mut meta) = locked_meta(&tx, id).await? else {
        return Ok(false);
    };
    match rules::mark_accepted(&mut meta) {
        Mark::NotQueued => Ok(false),
        Mark::AlreadyMarked => Ok(true),
        Mark::Marked => {
            write_meta(&tx, &meta).await?;
            tx.commit().await.map_err(pg_err)?;
            Ok(true)
        }
    }
}

pub async fn hold_post(c: &mut Client, held: &HeldPost) -> Result<bool> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let Some(mut meta) = locked_meta(&tx, &held.id).await? else {
        return Ok(false);
    };
    if !rules::hold(&mut meta) {
        // Rolled back on drop: nothing written.
        return Ok(false);
    }
    write_meta(&tx, &meta).await?;
    tx.execute(
        "INSERT INTO held_posts (id, list, hash, data) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE
         SET list = excluded.list, hash = excluded.hash, data = excluded.data",
        &[&held.id, &held.list, &held.hash, &Json(held)],
    )
    .await
    .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)?;
    Ok(true)
}

pub async fn release_held(c: &mut Client, id: &str, approve: bool) -> Result<Option<MessageMeta>> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let Some(mut meta) = locked_meta(&tx, id).await? else {
        return Ok(None);
    };
    if !rules::release(&mut meta, approve) {
        return Ok(None);
    }
    tx.execute("DELETE FROM held_posts WHERE id = $1", &[&id])
        .await
        .map_err(pg_err)?;
    write_meta(&tx, &meta).await?;
    tx.commit().await.map_err(pg_err)?;
    Ok(Some(meta))
}

pub async fn held_posts(c: &Client, list: Option<&str>) -> Result<Vec<HeldPost>> {
    let rows = c
        .query(
            "SELECT data FROM held_posts WHERE $1::text IS NULL OR list = $1
             ORDER BY list, hash, id",
            &[&list],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "held_posts", 0)).collect()
}

pub async fn held_by_hash(c: &Client, list: &str, hash: &str) -> Result<Vec<HeldPost>> {
    let rows = c
        .query(
            "SELECT data FROM held_posts WHERE list = $1 AND hash = $2 ORDER BY id",
            &[&list, &hash],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "held_posts", 0)).collect()
}

/// Writes a held-post record as exported (its message is restored as held).
pub async fn restore_held(
    c: &impl GenericClient,
    held: &HeldPost,
) -> std::result::Result<u64, tokio_postgres::Error> {
    c.execute(
        "INSERT INTO held_posts (id, list, hash, data) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE
         SET list = excluded.list, hash = excluded.hash, data = excluded.data",
        &[&held.id, &held.list, &held.hash, &Json(held)],
    )
    .await
}

pub async fn put_pending(
    c: &impl GenericClient,
    hash: &str,
    p: &Pending,
) -> std::result::Result<u64, tokio_postgres::Error> {
    c.execute(
        "INSERT INTO pending (token_hash, expires_at, data) VALUES ($1, $2, $3)
         ON CONFLICT (token_hash) DO UPDATE
         SET expires_at = excluded.expires_at, data = excluded.data",
        &[&hash, &i64_of(p.expires_at), &Json(p)],
    )
    .await
}

pub async fn take_pending(c: &Client, hash: &str) -> Result<Option<Pending>> {
    let row = c
        .query_opt(
            "DELETE FROM pending WHERE token_hash = $1 RETURNING data",
            &[&hash],
        )
        .await
        .map_err(pg_err)?;
    row.map(|r| json(&r, "pending", 0)).transpose()
}

/// Every pending confirmation with its token hash, for `listrelay export`.
pub async fn pendings(c: &Client) -> Result<Vec<(String, Pending)>> {
    let rows = c
        .query(
            "SELECT token_hash, data FROM pending ORDER BY token_hash",
            &[],
        )
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| Ok((col(r, "pending", 0)?, json(r, "pending", 1)?)))
        .collect()
}

pub async fn prune_pending(c: &Client, now: u64) -> Result<usize> {
    let n = c
        .execute(
            "DELETE FROM pending WHERE expires_at <= $1",
            &[&i64_of(now)],
        )
        .await
        .map_err(pg_err)?;
    Ok(n as usize)
}

/// Drops the counters of days before `now`'s: they no longer limit anything.
pub async fn prune_rate_counts(c: &Client, now: u64) -> Result<usize> {
    let n = c
        .execute(
            "DELETE FROM rate_counters WHERE day < $1",
            &[&i64_of(crate::clock::day_of(now))],
        )
        .await
        .map_err(pg_err)?;
    Ok(n as usize)
}

pub async fn rate_take(c: &Client, address: &str, day: u64, limit: u32) -> Result<bool> {
    let limit = i64::from(limit);
    // A first mail is counted when the limit allows one; a later one only
    // while the count is below the limit (the row stays locked meanwhile).
    let row = c
        .query_opt(
            "INSERT INTO rate_counters AS r (address, day, count)
             VALUES ($1, $2, CASE WHEN $3::bigint > 0 THEN 1 ELSE 0 END)
             ON CONFLICT (address, day) DO UPDATE SET count = r.count + 1
                 WHERE r.count < $3::bigint
             RETURNING count",
            &[&address, &i64_of(day), &limit],
        )
        .await
        .map_err(pg_err)?;
    match row {
        Some(r) => Ok(col::<i32>(&r, "rate_counters", 0)? > 0),
        None => Ok(false),
    }
}

/// Every daily count: (address, day, count), for `listrelay export`.
pub async fn rate_counts(c: &Client) -> Result<Vec<(String, u64, u32)>> {
    let rows = c
        .query(
            "SELECT address, day, count FROM rate_counters ORDER BY address, day",
            &[],
        )
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| {
            const T: &str = "rate_counters";
            Ok((
                col(r, T, 0)?,
                col::<i64>(r, T, 1)? as u64,
                col::<i32>(r, T, 2)? as u32,
            ))
        })
        .collect()
}

pub async fn restore_rate(
    c: &impl GenericClient,
    address: &str,
    day: u64,
    count: u32,
) -> std::result::Result<u64, tokio_postgres::Error> {
    c.execute(
        "INSERT INTO rate_counters (address, day, count) VALUES ($1, $2, $3)
         ON CONFLICT (address, day) DO UPDATE SET count = excluded.count",
        &[
            &address,
            &i64_of(day),
            &i32::try_from(count).unwrap_or(i32::MAX),
        ],
    )
    .await
}

pub async fn update_member(c: &Client, list: &str, member: &Member) -> Result<bool> {
    let (domain, local) = member_parts(&member.address.key());
    let n = c
        .execute(
            "UPDATE members SET data = $4 WHERE list = $1 AND domain = $2 AND local = $3",
            &[&list, &domain, &local, &Json(member)],
        )
        .await
        .map_err(pg_err)?;
    Ok(n > 0)
}
