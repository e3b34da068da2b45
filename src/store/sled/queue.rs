//! The `Queue` role: accepting messages (through the committer), reading
//! and finishing them, and the Message-ID window and its pruning.

use super::*;

/// Drops the window entries whose grace has passed at `now`. Each removal
/// is a compare-and-swap on the exact bytes read: the committer may re-claim
/// an expired key between the read and the removal, and that live entry
/// must stay (`between` runs there, so a test can make the race happen).
pub(super) fn prune_window(
    trees: &Trees,
    now: u64,
    mut between: impl FnMut(&[u8]),
) -> Result<usize> {
    let mut n = 0;
    for kv in trees.window.iter() {
        let (k, v) = kv?;
        let e: WindowEntry = serde_json::from_slice(&v)?;
        if e.live(now) {
            continue;
        }
        between(&k);
        // A changed entry was re-claimed: it is not the expired one read.
        if trees
            .window
            .compare_and_swap(&k, Some(v), None as Option<&[u8]>)?
            .is_ok()
        {
            n += 1;
        }
    }
    Ok(n)
}

#[async_trait]
impl Queue for SledStore {
    async fn accept(&self, batch: Vec<NewMessage>) -> Result<Vec<AcceptOutcome>> {
        let (reply, rx) = oneshot::channel();
        self.committer
            .send(Commit { batch, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn message(&self, id: &str) -> Result<Option<MessageMeta>> {
        get(&self.trees.messages, id)
    }

    async fn message_body(&self, id: &str) -> Result<Vec<u8>> {
        let spool = self.spool.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || spool.read(&id).map(|m| m.body))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn messages(&self, queued_only: bool) -> Result<Vec<MessageMeta>> {
        self.blocking(move |t| {
            let all: Vec<MessageMeta> = values(t.messages.iter())?;
            Ok(all
                .into_iter()
                .filter(|m| !queued_only || m.state == MessageState::Queued)
                .collect())
        })
        .await
    }

    async fn finish_message(&self, id: &str, grace_secs: u64) -> Result<()> {
        // Finishing is idempotent: the worker and the sweep of done posts
        // may both finish a post whose job just completed.
        let Some(meta) = get::<MessageMeta>(&self.trees.messages, id)? else {
            return self.spool.remove(id);
        };
        if let Some(d) = &meta.dedup {
            let key = key2(&meta.list, &d.message_id);
            if let Some(mut w) = get::<WindowEntry>(&self.trees.window, &key)? {
                if w.message == id {
                    w.expires_at = Some(now() + grace_secs);
                    put(&self.trees.window, &key, &w)?;
                }
            }
        }
        self.trees.messages.remove(id)?;
        self.durable().await?;
        self.spool.remove(id)
    }

    async fn set_auth(&self, id: &str, auth: serde_json::Value) -> Result<bool> {
        let id = id.to_string();
        let set = self
            .blocking(move |t| {
                // Compare-and-swap: a concurrent transition (hold, accept)
                // of the same record is never overwritten with old fields.
                loop {
                    let Some(old) = t.messages.get(&id)? else {
                        return Ok(false);
                    };
                    let mut meta: MessageMeta = serde_json::from_slice(&old)?;
                    meta.auth = Some(auth.clone());
                    let new = serde_json::to_vec(&meta)?;
                    if t.messages
                        .compare_and_swap(&id, Some(old), Some(new))?
                        .is_ok()
                    {
                        return Ok(true);
                    }
                }
            })
            .await?;
        self.durable().await?;
        Ok(set)
    }

    async fn window_entry(&self, list: &str, message_id: &str) -> Result<Option<WindowEntry>> {
        get(&self.trees.window, key2(list, message_id))
    }

    async fn prune_window(&self) -> Result<usize> {
        self.blocking(|t| prune_window(t, now(), |_| {})).await
    }
}
