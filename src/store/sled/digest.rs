//! The `DigestRecords` role in sled: entries (list, seq → record, bytes in
//! `digest_bodies` under the same key), issues by id. An entry is written
//! inside the seal's transaction (fanout.rs calls [`enter`]); a cut scans
//! the waiting entries, then re-checks and assigns them in one transaction
//! (sled transactions cannot scan).

use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::fanout::{abort, tx_err, TxResult};
use super::*;
use crate::model::DeliveryMode;
use crate::store::{issue_take, DigestCut, DigestEntry, DigestIssue, DigestPending, IssueState};

/// list, 0, seq (big-endian): a list's entries in `seq` order.
fn entry_key(list: &str, seq: u64) -> Vec<u8> {
    let mut k = key2(list, "");
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Writes a post's entry and bytes inside a transaction.
pub(super) fn enter(
    entries: &TransactionalTree,
    bodies: &TransactionalTree,
    meta: &MessageMeta,
    seq: u64,
    body: &[u8],
) -> TxResult<()> {
    let key = entry_key(&meta.list, seq);
    let entry = DigestEntry {
        list: meta.list.clone(),
        seq,
        post: meta.id.clone(),
        received_at: meta.received_at,
        size: body.len() as u64,
        issue: None,
        body: Vec::new(),
    };
    entries.insert(key.as_slice(), serde_json::to_vec(&entry).map_err(abort)?)?;
    bodies.insert(key.as_slice(), body)?;
    Ok(())
}

/// Removes a deleted list's digest: its entries, their bytes and its
/// issues (part of the list's purge, directory.rs, so a crash midway is
/// finished at start like the members').
pub(super) fn purge(t: &Trees, list: &str) -> Result<()> {
    let prefix = key2(list, "");
    // Entries first: an entry never outlives its bytes.
    super::directory::remove_prefix(&t.digest_entries, &prefix)?;
    super::directory::remove_prefix(&t.digest_bodies, &prefix)?;
    for kv in t.digest_issues.iter() {
        let (k, v) = kv?;
        if serde_json::from_slice::<DigestIssue>(&v)?.list == list {
            t.digest_issues.remove(k)?;
        }
    }
    Ok(())
}

/// A list's entries with their keys, in `seq` order.
fn list_entries(t: &Trees, list: &str) -> Result<Vec<(sled::IVec, DigestEntry)>> {
    t.digest_entries
        .scan_prefix(key2(list, ""))
        .map(|kv| {
            let (k, v) = kv?;
            Ok((k, serde_json::from_slice(&v)?))
        })
        .collect()
}

fn issue_of(v: &[u8]) -> TxResult<DigestIssue> {
    serde_json::from_slice(v).map_err(abort)
}

/// The cut's transaction; `Ok(None)` when an entry changed under it (try
/// again).
fn cut_once(t: &Trees, list: &str, cut: &DigestCut) -> Result<Option<Option<DigestIssue>>> {
    let waiting: Vec<(sled::IVec, DigestEntry)> = list_entries(t, list)?
        .into_iter()
        .filter(|(_, e)| e.issue.is_none())
        .collect();
    let n = issue_take(
        waiting.iter().map(|(_, e)| e.size),
        cut.max_posts,
        cut.max_bytes,
    );
    if n == 0 && !cut.allow_empty {
        return Ok(Some(None));
    }
    let picked = &waiting[..n];
    let issue = cut.issue(list, n);
    let r =
        (&t.lists, &t.digest_entries, &t.digest_issues).transaction(|(lists, entries, issues)| {
            let Some(v) = lists.get(list)? else {
                return Err(abort(StoreError::NotFound(format!("list {list}"))));
            };
            let mut l: List = serde_json::from_slice(&v).map_err(abort)?;
            if (l.settings.digest_volume, l.settings.digest_issue) != cut.expect {
                return Err(abort(StoreError::Exists(format!(
                    "digest issue {} of {list} (the numbers changed meanwhile: try again)",
                    cut.number
                ))));
            }
            for (key, _) in picked {
                let Some(v) = entries.get(key)? else {
                    return Ok(None);
                };
                let mut e: DigestEntry = serde_json::from_slice(&v).map_err(abort)?;
                if e.issue.is_some() {
                    return Ok(None);
                }
                e.issue = Some(issue.id.clone());
                entries.insert(key, serde_json::to_vec(&e).map_err(abort)?)?;
            }
            l.settings.digest_volume = cut.volume;
            l.settings.digest_issue = cut.number;
            lists.insert(list.as_bytes(), serde_json::to_vec(&l).map_err(abort)?)?;
            issues.insert(
                issue.id.as_bytes(),
                serde_json::to_vec(&issue).map_err(abort)?,
            )?;
            Ok(Some(issue.clone()))
        });
    Ok(r.map_err(tx_err)?.map(Some))
}

/// Import: writes an exported entry (its body hex-encoded).
pub(super) fn restore_entry(t: &Trees, entry: &DigestEntry, body: &str) -> Result<()> {
    let body = hex::decode(body).map_err(|e| {
        StoreError::Invalid(format!(
            "digest entry {} {}: body: {e}",
            entry.list, entry.seq
        ))
    })?;
    let key = entry_key(&entry.list, entry.seq);
    put(&t.digest_entries, &key, entry)?;
    t.digest_bodies.insert(key, body)?;
    Ok(())
}

impl SledStore {
    /// The post's bytes when it must be entered for its list's digest: a
    /// post for the regular members of a list with digests on.
    pub(super) async fn digest_body(&self, post: &str) -> Result<Option<Vec<u8>>> {
        let Some(meta) = get::<MessageMeta>(&self.trees.messages, post)? else {
            return Ok(None);
        };
        if meta.audience != DeliveryMode::Regular {
            return Ok(None);
        }
        let on =
            get::<List>(&self.trees.lists, &meta.list)?.is_some_and(|l| l.settings.digest_enabled);
        if !on {
            return Ok(None);
        }
        self.message_body(post).await.map(Some)
    }
}

#[async_trait]
impl crate::store::DigestRecords for SledStore {
    async fn digest_pending(&self, list: &str) -> Result<DigestPending> {
        let list = list.to_string();
        self.blocking(move |t| {
            let mut p = DigestPending::default();
            for (_, e) in list_entries(t, &list)? {
                if e.issue.is_none() {
                    p.posts += 1;
                    p.bytes += e.size;
                    p.oldest = Some(p.oldest.map_or(e.received_at, |o| o.min(e.received_at)));
                }
            }
            Ok(p)
        })
        .await
    }

    async fn cut_issue(&self, list: &str, cut: &DigestCut) -> Result<Option<DigestIssue>> {
        let (list, cut) = (list.to_string(), cut.clone());
        let issue = self
            .blocking(move |t| loop {
                if let Some(done) = cut_once(t, &list, &cut)? {
                    return Ok(done);
                }
            })
            .await?;
        self.durable().await?;
        Ok(issue)
    }

    async fn digest_issues(
        &self,
        list: Option<&str>,
        state: Option<IssueState>,
    ) -> Result<Vec<DigestIssue>> {
        let list = list.map(str::to_string);
        self.blocking(move |t| {
            let all: Vec<DigestIssue> = values(t.digest_issues.iter())?;
            Ok(all
                .into_iter()
                .filter(|i| list.as_ref().is_none_or(|l| *l == i.list))
                .filter(|i| state.is_none_or(|s| s == i.state))
                .collect())
        })
        .await
    }

    async fn issue_entries(&self, issue: &str) -> Result<Vec<DigestEntry>> {
        let issue = issue.to_string();
        self.blocking(move |t| {
            let Some(i) = get::<DigestIssue>(&t.digest_issues, &issue)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for (k, mut e) in list_entries(t, &i.list)? {
                if e.issue.as_deref() == Some(issue.as_str()) {
                    e.body = t
                        .digest_bodies
                        .get(&k)?
                        .map(|b| b.to_vec())
                        .unwrap_or_default();
                    out.push(e);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn mark_issue_queued(&self, issue: &str) -> Result<bool> {
        let id = issue.to_string();
        let marked = self
            .blocking(move |t| {
                let Some(i) = get::<DigestIssue>(&t.digest_issues, &id)? else {
                    return Ok(false);
                };
                let keys: Vec<sled::IVec> = list_entries(t, &i.list)?
                    .into_iter()
                    .filter(|(_, e)| e.issue.as_deref() == Some(id.as_str()))
                    .map(|(k, _)| k)
                    .collect();
                (&t.digest_issues, &t.digest_entries, &t.digest_bodies)
                    .transaction(|(issues, entries, bodies)| {
                        let Some(v) = issues.get(id.as_bytes())? else {
                            return Ok(false);
                        };
                        let mut i = issue_of(&v)?;
                        if i.state != IssueState::Cut {
                            return Ok(false);
                        }
                        i.state = IssueState::Queued;
                        issues.insert(id.as_bytes(), serde_json::to_vec(&i).map_err(abort)?)?;
                        for k in &keys {
                            entries.remove(k)?;
                            bodies.remove(k)?;
                        }
                        Ok(true)
                    })
                    .map_err(tx_err)
            })
            .await?;
        self.durable().await?;
        Ok(marked)
    }

    async fn digest_entries(&self) -> Result<Vec<DigestEntry>> {
        self.blocking(|t| {
            let mut out = Vec::new();
            for kv in t.digest_entries.iter() {
                let (k, v) = kv?;
                let mut e: DigestEntry = serde_json::from_slice(&v)?;
                e.body = t
                    .digest_bodies
                    .get(&k)?
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                out.push(e);
            }
            Ok(out)
        })
        .await
    }
}
