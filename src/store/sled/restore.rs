//! The `Transfer` role: whole-store reads for `listrelay export` and the
//! restore that `listrelay import` writes through.

use super::*;

#[async_trait]
impl Transfer for SledStore {
    async fn window_entries(&self) -> Result<Vec<(String, String, WindowEntry)>> {
        self.blocking(window_entries).await
    }

    async fn counters(&self) -> Result<Vec<(String, u64)>> {
        self.blocking(counters).await
    }

    async fn all_post_bounces(&self) -> Result<Vec<PostBounces>> {
        self.blocking(bounce::posts).await
    }

    async fn pendings(&self) -> Result<Vec<(String, Pending)>> {
        self.blocking(moderation::pendings).await
    }

    async fn rate_counts(&self) -> Result<Vec<(String, u64, u32)>> {
        self.blocking(moderation::rate_counts).await
    }

    async fn restore(&self, records: Vec<Record>) -> Result<()> {
        let (trees, spool) = (self.trees.clone(), self.spool.clone());
        tokio::task::spawn_blocking(move || restore(&trees, &spool, records))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))??;
        self.durable().await
    }
}

/// Every Message-ID window entry: (list, Message-ID, entry).
pub(super) fn window_entries(t: &Trees) -> Result<Vec<(String, String, WindowEntry)>> {
    t.window
        .iter()
        .map(|kv| {
            let (k, v) = kv?;
            let k = String::from_utf8_lossy(&k);
            let (list, message_id) = k.split_once('\0').unwrap_or((&k, ""));
            Ok((
                list.to_string(),
                message_id.to_string(),
                serde_json::from_slice(&v)?,
            ))
        })
        .collect()
}

/// Every list's post counter.
pub(super) fn counters(t: &Trees) -> Result<Vec<(String, u64)>> {
    t.counters
        .iter()
        .map(|kv| {
            let (k, v) = kv?;
            let seq = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            Ok((String::from_utf8_lossy(&k).into_owned(), seq))
        })
        .collect()
}

/// Writes exported records as they are. Message files are written, synced
/// and published (renamed to `ID.msg`) before the directory is synced.
pub(super) fn restore(trees: &Trees, spool: &Spool, records: Vec<Record>) -> Result<()> {
    let mut files: Vec<(String, std::fs::File)> = Vec::new();
    for r in rules::in_restore_order(records) {
        match r {
            Record::Header { .. } => {}
            Record::Domain { domain } => put(&trees.domains, &domain.name, &domain)?,
            Record::List { list } => put(&trees.lists, list.key(), &list)?,
            Record::Member { list, member } => put(
                &trees.members,
                member_key(&list, &member.address.key()),
                &member,
            )?,
            Record::Counter { list, seq } => {
                trees.counters.insert(list.as_bytes(), &seq.to_be_bytes())?;
            }
            Record::Message { meta, body } => {
                let msg = NewMessage {
                    body: crate::store::transfer::body(&body)?,
                    meta,
                };
                files.push((msg.meta.id.clone(), spool.write(&msg)?));
                put(&trees.messages, &msg.meta.id, &msg.meta)?;
            }
            Record::Window {
                list,
                message_id,
                entry,
            } => put(&trees.window, key2(&list, &message_id), &entry)?,
            Record::Job { job } => put(&trees.jobs, &job.post_id, &job)?,
            Record::Chunk { state, members } => fanout::restore_chunk(trees, &state, &members)?,
            Record::Failure { failure } => fanout::record_failure(trees, &failure)?,
            Record::BounceState { state } => bounce::put_state(trees, &state)?,
            Record::PostBounces { bounces } => bounce::put_post(trees, &bounces)?,
            Record::Held { held } => moderation::restore_held(trees, &held)?,
            Record::Pending {
                token_hash,
                pending,
            } => moderation::put_pending(trees, &token_hash, &pending)?,
            Record::Rate {
                address,
                day,
                count,
            } => moderation::restore_rate(trees, &address, day, count)?,
            Record::DigestEntry { entry, body } => digest::restore_entry(trees, &entry, &body)?,
            Record::DigestIssue { issue } => put(&trees.digest_issues, &issue.id, &issue)?,
        }
    }
    if !files.is_empty() {
        let synced = spool::sync_files(&files.iter().map(|(_, f)| f).collect::<Vec<_>>());
        for ((id, _), sync) in files.iter().zip(synced) {
            sync.map_err(|source| StoreError::Io {
                path: id.clone(),
                source,
            })?;
            spool.publish(id)?;
        }
        spool.sync_dir()?;
    }
    Ok(())
}
