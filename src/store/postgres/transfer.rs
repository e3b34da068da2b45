//! `listrelay export` and `import` on PostgreSQL: the records other modules
//! do not read for their own role (window entries, post counters), and the
//! restore of a batch of records in one transaction, in the order of
//! `rules::in_restore_order`.

use deadpool_postgres::Client;
use tokio_postgres::types::Json;

use super::queue::window_of;
use super::{bounce, claims, col, i64_of, member_parts, moderation, pg_err, state_name};
use crate::store::{rules, Record, Result, StoreError, WindowEntry};

pub async fn window_entries(c: &Client) -> Result<Vec<(String, String, WindowEntry)>> {
    let rows = c
        .query(
            "SELECT message, content_hash, expires_at, list, message_id FROM window_entries
                 ORDER BY list, message_id",
            &[],
        )
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| {
            Ok((
                col(r, "window_entries", 3)?,
                col(r, "window_entries", 4)?,
                window_of(r, 0)?,
            ))
        })
        .collect()
}

pub async fn counters(c: &Client) -> Result<Vec<(String, u64)>> {
    let rows = c
        .query("SELECT list, seq FROM counters ORDER BY list", &[])
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| Ok((col(r, "counters", 0)?, col::<i64>(r, "counters", 1)? as u64)))
        .collect()
}

pub async fn restore(c: &mut Client, records: Vec<Record>) -> Result<()> {
    let tx = c.transaction().await.map_err(pg_err)?;
    for r in rules::in_restore_order(records) {
        let result = match &r {
                Record::Header { .. } => Ok(0),
                Record::Domain { domain } => {
                    tx.execute(
                        "INSERT INTO domains (name, data) VALUES ($1, $2)",
                        &[&domain.name, &Json(domain)],
                    )
                    .await
                }
                Record::List { list } => {
                    tx.execute(
                        "INSERT INTO lists (key, domain, data) VALUES ($1, $2, $3)",
                        &[&list.key(), &list.address.domain(), &Json(list)],
                    )
                    .await
                }
                Record::Member { list, member } => {
                    let (domain, local) = member_parts(&member.address.key());
                    tx.execute(
                        "INSERT INTO members (list, domain, local, data) VALUES ($1, $2, $3, $4)",
                        &[list, &domain, &local, &Json(member)],
                    )
                    .await
                }
                Record::Counter { list, seq } => {
                    tx.execute(
                        "INSERT INTO counters (list, seq) VALUES ($1, $2)
                         ON CONFLICT (list) DO UPDATE SET seq = excluded.seq",
                        &[list, &i64_of(*seq)],
                    )
                    .await
                }
                Record::Message { meta, body } => {
                    let body = crate::store::transfer::body(body)?;
                    let is_post = meta.suffix == crate::address::Suffix::Post;
                    tx.execute(
                        "INSERT INTO messages (id, list, is_post, state, meta, body)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            &meta.id,
                            &meta.list,
                            &is_post,
                            &state_name(meta.state),
                            &Json(meta),
                            &body,
                        ],
                    )
                    .await
                }
                Record::Window {
                    list,
                    message_id,
                    entry,
                } => {
                    tx.execute(
                        "INSERT INTO window_entries (list, message_id, message, content_hash, expires_at)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (list, message_id) DO UPDATE
                         SET message = excluded.message, content_hash = excluded.content_hash,
                             expires_at = excluded.expires_at",
                        &[
                            list,
                            message_id,
                            &entry.message,
                            &entry.content_hash,
                            &entry.expires_at.map(i64_of),
                        ],
                    )
                    .await
                }
                Record::Job { job } => claims::insert_job(&*tx, job).await,
                Record::Chunk { state, members } => {
                    claims::insert_chunk(&*tx, state, members).await
                }
                Record::Failure { failure } => {
                    tx.execute(
                        "INSERT INTO failures (list, data) VALUES ($1, $2)",
                        &[&failure.list, &Json(failure)],
                    )
                    .await
                }
                Record::BounceState { state } => bounce::put_state(&*tx, state).await,
                Record::PostBounces { bounces } => bounce::put_post(&*tx, bounces).await,
                Record::Held { held } => moderation::restore_held(&*tx, held).await,
                Record::Pending {
                    token_hash,
                    pending,
                } => moderation::put_pending(&*tx, token_hash, pending).await,
                Record::Rate {
                    address,
                    day,
                    count,
                } => moderation::restore_rate(&*tx, address, *day, *count).await,
                Record::DigestEntry { entry, body } => {
                    let body = hex::decode(body).map_err(|e| {
                        StoreError::Invalid(format!(
                            "digest entry {} {}: body: {e}",
                            entry.list, entry.seq
                        ))
                    })?;
                    tx.execute(
                        "INSERT INTO digest_entries (list, seq, post, received_at, size, issue, body)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[
                            &entry.list,
                            &i64_of(entry.seq),
                            &entry.post,
                            &i64_of(entry.received_at),
                            &i64_of(entry.size),
                            &entry.issue,
                            &body,
                        ],
                    )
                    .await
                }
                Record::DigestIssue { issue } => {
                    let state = match issue.state {
                        crate::store::IssueState::Cut => "cut",
                        crate::store::IssueState::Queued => "queued",
                    };
                    tx.execute(
                        "INSERT INTO digest_issues (id, list, state, data) VALUES ($1, $2, $3, $4)",
                        &[&issue.id, &issue.list, &state, &Json(issue)],
                    )
                    .await
                }
            };
        result.map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)
}
