//! Accepted messages and the Message-ID window in PostgreSQL: `accept`
//! stores a batch in one transaction and claims each post's window entry
//! (the primary key (list, message_id) serializes two hosts accepting the
//! same post); finishing a message starts its entry's grace.

use deadpool_postgres::Client;
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use super::{col, i64_of, json, meta_of, pg_err, retryable, state_name, RETRIES};
use crate::clock::now;
use crate::store::{AcceptOutcome, MessageMeta, NewMessage, Result, StoreError, WindowEntry};

pub async fn accept(c: &mut Client, batch: Vec<NewMessage>) -> Result<Vec<AcceptOutcome>> {
    metrics::histogram!("listrelay_store_commit_batch_size").record(batch.len() as f64);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match accept_once(c, &batch).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(e) if retryable(&e) && attempt < RETRIES => continue,
            Err(e) => return Err(pg_err(e)),
        }
    }
}

async fn accept_once(
    client: &mut Client,
    batch: &[NewMessage],
) -> std::result::Result<Vec<AcceptOutcome>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let claim = tx
        .prepare_cached(
            "INSERT INTO window_entries AS w (list, message_id, message, content_hash, expires_at)
                 VALUES ($1, $2, $3, $4, NULL)
                 ON CONFLICT (list, message_id) DO UPDATE
                     SET message = excluded.message, content_hash = excluded.content_hash,
                         expires_at = NULL
                     WHERE w.expires_at IS NOT NULL AND w.expires_at <= $5
                 RETURNING 1",
        )
        .await?;
    let holder = tx
        .prepare_cached(
            "SELECT message, content_hash FROM window_entries WHERE list = $1 AND message_id = $2",
        )
        .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO messages (id, list, is_post, state, meta, body)
                 VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    let now = i64_of(now());
    let mut outcomes = Vec::with_capacity(batch.len());
    for msg in batch {
        let meta = &msg.meta;
        let outcome = match &meta.dedup {
            None => AcceptOutcome::Accepted,
            Some(d) => {
                // A new entry, or one whose grace has passed: this post
                // holds the Message-ID now. Otherwise a live entry holds
                // it (possibly committed a moment ago by another host,
                // whose insert this one waited for).
                let claimed = tx
                    .query_opt(
                        &claim,
                        &[&meta.list, &d.message_id, &meta.id, &d.content_hash, &now],
                    )
                    .await?;
                if claimed.is_some() {
                    AcceptOutcome::Accepted
                } else {
                    let row = tx.query_one(&holder, &[&meta.list, &d.message_id]).await?;
                    let (existing, hash) =
                        match (row.try_get::<_, String>(0), row.try_get::<_, String>(1)) {
                            (Ok(e), Ok(h)) => (e, h),
                            (Err(e), _) | (_, Err(e)) => return Err(e),
                        };
                    if hash == d.content_hash {
                        AcceptOutcome::Redelivery { existing }
                    } else {
                        AcceptOutcome::Duplicate { existing }
                    }
                }
            }
        };
        if outcome == AcceptOutcome::Accepted {
            let is_post = meta.suffix == crate::address::Suffix::Post;
            tx.execute(
                &insert,
                &[
                    &meta.id,
                    &meta.list,
                    &is_post,
                    &state_name(meta.state),
                    &Json(meta),
                    &msg.body,
                ],
            )
            .await?;
        }
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}

pub async fn message(c: &Client, id: &str) -> Result<Option<MessageMeta>> {
    let row = c
        .query_opt("SELECT meta, state FROM messages WHERE id = $1", &[&id])
        .await
        .map_err(pg_err)?;
    row.map(|r| meta_of(&r)).transpose()
}

pub async fn message_body(c: &Client, id: &str) -> Result<Vec<u8>> {
    let row = c
        .query_opt("SELECT body FROM messages WHERE id = $1", &[&id])
        .await
        .map_err(pg_err)?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
    col(&row, "messages", 0)
}

pub async fn messages(c: &Client, queued_only: bool) -> Result<Vec<MessageMeta>> {
    let rows = c
        .query(
            "SELECT meta, state FROM messages WHERE NOT $1 OR state = 'queued' ORDER BY id",
            &[&queued_only],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(meta_of).collect()
}

pub async fn finish_message(c: &mut Client, id: &str, grace_secs: u64) -> Result<()> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let row = tx
        .query_opt("SELECT meta FROM messages WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .map_err(pg_err)?
        .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
    let meta: MessageMeta = json(&row, "messages", 0)?;
    if let Some(d) = &meta.dedup {
        tx.execute(
            "UPDATE window_entries SET expires_at = $4
                 WHERE list = $1 AND message_id = $2 AND message = $3",
            &[
                &meta.list,
                &d.message_id,
                &id,
                &i64_of(now().saturating_add(grace_secs)),
            ],
        )
        .await
        .map_err(pg_err)?;
    }
    tx.execute("DELETE FROM messages WHERE id = $1", &[&id])
        .await
        .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)
}

/// One statement: the rest of the record (state, policy mark) stays as a
/// concurrent transition wrote it.
pub async fn set_auth(c: &Client, id: &str, auth: serde_json::Value) -> Result<bool> {
    let n = c
        .execute(
            "UPDATE messages SET meta = jsonb_set(meta, '{auth}', $2) WHERE id = $1",
            &[&id, &tokio_postgres::types::Json(auth)],
        )
        .await
        .map_err(pg_err)?;
    Ok(n == 1)
}

pub async fn window_entry(c: &Client, list: &str, message_id: &str) -> Result<Option<WindowEntry>> {
    let row = c
        .query_opt(
            "SELECT message, content_hash, expires_at FROM window_entries
                 WHERE list = $1 AND message_id = $2",
            &[&list, &message_id],
        )
        .await
        .map_err(pg_err)?;
    row.map(|r| window_of(&r, 0)).transpose()
}

pub async fn prune_window(c: &Client) -> Result<usize> {
    let n = c
        .execute(
            "DELETE FROM window_entries WHERE expires_at IS NOT NULL AND expires_at <= $1",
            &[&i64_of(now())],
        )
        .await
        .map_err(pg_err)?;
    Ok(n as usize)
}

pub(super) fn window_of(r: &Row, at: usize) -> Result<WindowEntry> {
    const T: &str = "window_entries";
    Ok(WindowEntry {
        message: col(r, T, at)?,
        content_hash: col(r, T, at + 1)?,
        expires_at: col::<Option<i64>>(r, T, at + 2)?.map(|t| t as u64),
    })
}
