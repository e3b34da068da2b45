//! The group commit: one thread takes every `accept` call waiting, writes
//! and syncs their spool files together, syncs the spool directory once,
//! checks and claims their Message-ID window entries and records them in
//! sled, flushes sled once and answers them all.

use super::*;

/// Most accept calls folded into one group commit.
pub(super) const MAX_BATCH: usize = 256;

/// One `accept` call waiting for the committer.
pub(super) struct Commit {
    /// The messages to store together.
    pub(super) batch: Vec<NewMessage>,
    /// Where the outcome of each message (or the batch's failure) goes.
    pub(super) reply: oneshot::Sender<Result<Vec<AcceptOutcome>>>,
}

/// The group-commit loop: takes every request waiting, writes their files, syncs
/// the spool directory once, records them in sled, flushes once, answers all.
pub(super) fn committer(rx: mpsc::Receiver<Commit>, trees: Trees, spool: Arc<Spool>) {
    while let Ok(first) = rx.recv() {
        let mut commits = vec![first];
        while commits.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => commits.push(c),
                Err(_) => break,
            }
        }
        metrics::histogram!("listrelay_store_commit_batch_size").record(commits.len() as f64);
        let results = commit_batch(&trees, &spool, &commits);
        for (commit, result) in commits.into_iter().zip(results) {
            let _ = commit.reply.send(result);
        }
    }
}

pub(super) fn commit_batch(
    trees: &Trees,
    spool: &Spool,
    commits: &[Commit],
) -> Vec<Result<Vec<AcceptOutcome>>> {
    // Window claims made earlier in this batch, not yet in sled.
    let mut claimed: HashMap<Vec<u8>, WindowEntry> = HashMap::new();
    let mut results: Vec<Result<Vec<AcceptOutcome>>> = Vec::with_capacity(commits.len());
    // Files written for the batch: (commit index, message id, file).
    let mut files: Vec<(usize, String, std::fs::File)> = Vec::new();
    let now = now();
    for (c, commit) in commits.iter().enumerate() {
        let mut outcomes = Vec::with_capacity(commit.batch.len());
        let mut failure = None;
        for msg in &commit.batch {
            let outcome = match window_check(trees, &claimed, msg, now) {
                Ok(o) => o,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if outcome == AcceptOutcome::Accepted {
                match spool.write(msg) {
                    Ok(f) => files.push((c, msg.meta.id.clone(), f)),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
                if let Some(d) = &msg.meta.dedup {
                    claimed.insert(
                        key2(&msg.meta.list, &d.message_id),
                        WindowEntry {
                            message: msg.meta.id.clone(),
                            content_hash: d.content_hash.clone(),
                            expires_at: None,
                        },
                    );
                }
            }
            outcomes.push(outcome);
        }
        results.push(failure.map_or(Ok(outcomes), Err));
    }
    // Sync every file of the batch together, then publish them.
    let synced = spool::sync_files(&files.iter().map(|(_, _, f)| f).collect::<Vec<_>>());
    for ((c, id, _), sync) in files.iter().zip(synced) {
        if let Err(e) = sync
            .map_err(|e| StoreError::Io {
                path: id.clone(),
                source: e,
            })
            .and_then(|_| spool.publish(id))
        {
            if results[*c].is_ok() {
                results[*c] = Err(e);
            }
        }
    }
    // A failed commit drops all its files, and so fails any commit of the
    // batch that was told it duplicates one of them.
    let failed: std::collections::HashSet<&str> = files
        .iter()
        .filter(|(c, _, _)| results[*c].is_err())
        .map(|(_, id, _)| id.as_str())
        .collect();
    for id in &failed {
        spool.discard(id);
    }
    for r in results.iter_mut() {
        let leans_on_failed = r.as_ref().is_ok_and(|outcomes| {
            outcomes.iter().any(|o| match o {
                AcceptOutcome::Redelivery { existing } | AcceptOutcome::Duplicate { existing } => {
                    failed.contains(existing.as_str())
                }
                AcceptOutcome::Accepted => false,
            })
        });
        if leans_on_failed {
            *r = Err(StoreError::Backend(
                "a copy in the same batch failed to store".into(),
            ));
        }
    }
    if let Err(e) = spool.sync_dir() {
        for (_, id, _) in &files {
            spool.discard(id);
        }
        return commits
            .iter()
            .map(|_| Err(StoreError::Backend(e.to_string())))
            .collect();
    }
    // The files are durable; recording them in sled can be redone from the spool.
    for (commit, result) in commits.iter().zip(results.iter_mut()) {
        let Ok(outcomes) = result else { continue };
        let recorded = commit
            .batch
            .iter()
            .zip(outcomes.iter())
            .filter(|(_, o)| **o == AcceptOutcome::Accepted)
            .try_for_each(|(msg, _)| record(trees, msg));
        if let Err(e) = recorded {
            warn!(error = %e, "recording accepted messages in sled failed; the spool keeps them");
            *result = Err(e);
        }
    }
    if let Err(e) = trees.db.flush() {
        warn!(error = %e, "sled flush failed; the spool keeps the batch");
    }
    results
}

pub(super) fn window_check(
    trees: &Trees,
    claimed: &HashMap<Vec<u8>, WindowEntry>,
    msg: &NewMessage,
    now: u64,
) -> Result<AcceptOutcome> {
    let Some(dedup) = &msg.meta.dedup else {
        return Ok(AcceptOutcome::Accepted);
    };
    let key = key2(&msg.meta.list, &dedup.message_id);
    let entry = match claimed.get(&key) {
        Some(e) => Some(e.clone()),
        None => get::<WindowEntry>(&trees.window, &key)?,
    };
    Ok(match entry {
        Some(e) if e.live(now) && e.content_hash == dedup.content_hash => {
            AcceptOutcome::Redelivery {
                existing: e.message,
            }
        }
        Some(e) if e.live(now) => AcceptOutcome::Duplicate {
            existing: e.message,
        },
        _ => AcceptOutcome::Accepted,
    })
}

pub(super) fn record(trees: &Trees, msg: &NewMessage) -> Result<()> {
    put(&trees.messages, &msg.meta.id, &msg.meta)?;
    if let Some(d) = &msg.meta.dedup {
        put(
            &trees.window,
            key2(&msg.meta.list, &d.message_id),
            &WindowEntry {
                message: msg.meta.id.clone(),
                content_hash: d.content_hash.clone(),
                expires_at: None,
            },
        )?;
    }
    Ok(())
}
