//! The `DigestRecords` role in PostgreSQL (migration 0007): entries written
//! by the seal's transaction, a cut that locks the list's row (two hosts
//! cutting at once take turns) and assigns the oldest waiting entries.

use async_trait::async_trait;
use deadpool_postgres::Client;
use tokio_postgres::types::Json;

use super::{col, i64_of, json, pg_err, PostgresStore};
use crate::model::List;
use crate::store::{
    issue_take, DigestCut, DigestEntry, DigestIssue, DigestPending, DigestRecords, IssueState,
    Result, StoreError,
};

/// Inside the seal's transaction: enters the post for its list's digest
/// under `seq` when it is for the regular members and the list has digests
/// on (the bytes copied from its message row).
pub async fn enter(tx: &deadpool_postgres::Transaction<'_>, post: &str, seq: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO digest_entries (list, seq, post, received_at, size, body)
         SELECT m.list, $2, m.id, (m.meta->>'received_at')::bigint, octet_length(m.body), m.body
           FROM messages m JOIN lists l ON l.key = m.list
          WHERE m.id = $1
            AND coalesce(m.meta->>'audience', 'regular') = 'regular'
            AND coalesce((l.data->'settings'->>'digest_enabled')::boolean, false)",
        &[&post, &seq],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

/// See `Claims::seal_digest_only`.
pub async fn seal_digest_only(c: &mut Client, post: &str) -> Result<bool> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let row = tx
        .query_opt(
            "SELECT list FROM messages m
              WHERE id = $1 AND state = 'queued'
                AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.message = m.id)
              FOR UPDATE",
            &[&post],
        )
        .await
        .map_err(pg_err)?;
    let Some(row) = row else {
        return Ok(false);
    };
    let list: String = col(&row, "messages", 0)?;
    let counter = tx
        .query_one(
            "INSERT INTO counters (list, seq) VALUES ($1, 0)
             ON CONFLICT (list) DO UPDATE SET seq = counters.seq + 1
             RETURNING seq",
            &[&list],
        )
        .await
        .map_err(pg_err)?;
    let seq: i64 = col(&counter, "counters", 0)?;
    enter(&tx, post, seq).await?;
    tx.execute(
        "UPDATE messages SET state = 'done', meta = jsonb_set(meta, '{state}', '\"done\"')
          WHERE id = $1",
        &[&post],
    )
    .await
    .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)?;
    Ok(true)
}

const ENTRY_COLUMNS: &str = "list, seq, post, received_at, size, issue";

fn entry_of(r: &tokio_postgres::Row) -> Result<DigestEntry> {
    const T: &str = "digest_entries";
    Ok(DigestEntry {
        list: col(r, T, 0)?,
        seq: col::<i64>(r, T, 1)? as u64,
        post: col(r, T, 2)?,
        received_at: col::<i64>(r, T, 3)? as u64,
        size: col::<i64>(r, T, 4)? as u64,
        issue: col(r, T, 5)?,
        body: Vec::new(),
    })
}

async fn cut(c: &mut Client, list: &str, cut: &DigestCut) -> Result<Option<DigestIssue>> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let row = tx
        .query_opt("SELECT data FROM lists WHERE key = $1 FOR UPDATE", &[&list])
        .await
        .map_err(pg_err)?
        .ok_or_else(|| StoreError::NotFound(format!("list {list}")))?;
    let mut l: List = json(&row, "lists", 0)?;
    if (l.settings.digest_volume, l.settings.digest_issue) != cut.expect {
        return Err(StoreError::Exists(format!(
            "digest issue {} of {list} (the numbers changed meanwhile: try again)",
            cut.number
        )));
    }
    let waiting = tx
        .query(
            "SELECT seq, size FROM digest_entries
              WHERE list = $1 AND issue IS NULL ORDER BY seq LIMIT $2",
            &[&list, &i64_of(cut.max_posts)],
        )
        .await
        .map_err(pg_err)?;
    let mut sizes = Vec::with_capacity(waiting.len());
    let mut seqs = Vec::with_capacity(waiting.len());
    for r in &waiting {
        seqs.push(col::<i64>(r, "digest_entries", 0)?);
        sizes.push(col::<i64>(r, "digest_entries", 1)? as u64);
    }
    let n = issue_take(sizes, cut.max_posts, cut.max_bytes);
    if n == 0 && !cut.allow_empty {
        return Ok(None);
    }
    let issue = cut.issue(list, n);
    tx.execute(
        "UPDATE digest_entries SET issue = $3 WHERE list = $1 AND seq = ANY($2)",
        &[&list, &&seqs[..n], &issue.id],
    )
    .await
    .map_err(pg_err)?;
    l.settings.digest_volume = cut.volume;
    l.settings.digest_issue = cut.number;
    tx.execute(
        "UPDATE lists SET data = $2 WHERE key = $1",
        &[&list, &Json(&l)],
    )
    .await
    .map_err(pg_err)?;
    tx.execute(
        "INSERT INTO digest_issues (id, list, state, data) VALUES ($1, $2, 'cut', $3)",
        &[&issue.id, &list, &Json(&issue)],
    )
    .await
    .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)?;
    Ok(Some(issue))
}

#[async_trait]
impl DigestRecords for PostgresStore {
    async fn digest_pending(&self, list: &str) -> Result<DigestPending> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT count(*), coalesce(sum(size), 0)::bigint, min(received_at)
                   FROM digest_entries WHERE list = $1 AND issue IS NULL",
                &[&list],
            )
            .await
            .map_err(pg_err)?;
        const T: &str = "digest_entries";
        Ok(DigestPending {
            posts: col::<i64>(&row, T, 0)? as u64,
            bytes: col::<i64>(&row, T, 1)? as u64,
            oldest: col::<Option<i64>>(&row, T, 2)?.map(|v| v as u64),
        })
    }

    async fn cut_issue(&self, list: &str, c: &DigestCut) -> Result<Option<DigestIssue>> {
        cut(&mut self.client().await?, list, c).await
    }

    async fn digest_issues(
        &self,
        list: Option<&str>,
        state: Option<IssueState>,
    ) -> Result<Vec<DigestIssue>> {
        let state = state.map(|s| match s {
            IssueState::Cut => "cut",
            IssueState::Queued => "queued",
        });
        let rows = self
            .client()
            .await?
            .query(
                "SELECT data FROM digest_issues
                  WHERE ($1::text IS NULL OR list = $1) AND ($2::text IS NULL OR state = $2)
                  ORDER BY id",
                &[&list, &state],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| json(r, "digest_issues", 0)).collect()
    }

    async fn issue_entries(&self, issue: &str) -> Result<Vec<DigestEntry>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {ENTRY_COLUMNS}, body FROM digest_entries WHERE issue = $1 ORDER BY seq"
                ),
                &[&issue],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let mut e = entry_of(r)?;
                e.body = col(r, "digest_entries", 6)?;
                Ok(e)
            })
            .collect()
    }

    async fn mark_issue_queued(&self, issue: &str) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let n = tx
            .execute(
                "UPDATE digest_issues
                    SET state = 'queued', data = jsonb_set(data, '{state}', '\"queued\"')
                  WHERE id = $1 AND state = 'cut'",
                &[&issue],
            )
            .await
            .map_err(pg_err)?;
        if n == 1 {
            tx.execute("DELETE FROM digest_entries WHERE issue = $1", &[&issue])
                .await
                .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(n == 1)
    }

    async fn digest_entries(&self) -> Result<Vec<DigestEntry>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {ENTRY_COLUMNS}, body FROM digest_entries ORDER BY list, seq"),
                &[],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let mut e = entry_of(r)?;
                e.body = col(r, "digest_entries", 6)?;
                Ok(e)
            })
            .collect()
    }
}
