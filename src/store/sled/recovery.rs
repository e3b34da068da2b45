//! Recovery at open: spool files the store does not know (their sled write
//! was lost in a power cut) are recorded through the window check.

use super::committer::{record, window_check};
use super::*;

/// Records spool files the store does not know (their sled writes were lost);
/// a recovered post whose Message-ID another post now holds is dropped.
pub(super) fn recover(trees: &Trees, spool: &Spool) -> Result<()> {
    let now = now();
    for id in spool.ids()? {
        if trees.messages.contains_key(&id)? {
            continue;
        }
        let msg = match spool.read(&id) {
            Ok(m) => m,
            Err(e) => {
                warn!(%id, error = %e, "unreadable spool file left in place");
                continue;
            }
        };
        match window_check(trees, &HashMap::new(), &msg, now)? {
            AcceptOutcome::Accepted => {
                record(trees, &msg)?;
                info!(%id, list = %msg.meta.list, "recovered a spooled message the store did not know");
                metrics::counter!("listrelay_store_recovered_total").increment(1);
            }
            AcceptOutcome::Redelivery { existing } | AcceptOutcome::Duplicate { existing } => {
                info!(%id, %existing, "dropping a spooled copy of a message already stored");
                spool.remove(&id)?;
            }
        }
    }
    trees.db.flush()?;
    Ok(())
}
