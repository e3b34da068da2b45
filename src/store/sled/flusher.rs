//! The flusher thread: checkpoints chunk progress from the journal into
//! sled and flushes sled every [`FLUSH_EVERY`] or when asked, one flush
//! shared by every caller waiting.

use super::*;

/// How often chunk progress is checkpointed into sled and sled flushed when
/// nobody asks: the progress journal holds what was written since, so a power
/// cut loses at most this much progress.
pub(crate) const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Flushes sled when asked (sharing one flush among all waiting callers) and
/// every [`FLUSH_EVERY`], dropping the journal file the flush covered.
pub(super) fn flusher(
    rx: mpsc::Receiver<oneshot::Sender<Result<()>>>,
    trees: Trees,
    journal: Arc<std::sync::Mutex<journal::Journal>>,
) {
    loop {
        let mut waiting = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(first) => vec![first],
            Err(mpsc::RecvTimeoutError::Timeout) => Vec::new(),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        waiting.extend(rx.try_iter());
        // Checkpoint and rotate first, so this flush covers the old file.
        let result = journal
            .lock()
            .map_err(|_| StoreError::Closed)
            .and_then(|mut j| j.rotate(&trees))
            .and_then(|old| {
                trees.db.flush()?;
                if let Some(old) = old {
                    let _ = std::fs::remove_file(old);
                }
                Ok(())
            });
        if let Err(e) = &result {
            warn!(error = %e, "flushing the store failed");
        }
        for w in waiting {
            let _ = w.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| StoreError::Backend(e.to_string())),
            );
        }
    }
}
