//! The loop of the handler tasks beside the pipeline (bounces, moderation and
//! subscription): handle what is queued every `poll`, run the time-based pass
//! (expiries, warnings) every `pass`, until shutdown. A failed round is logged
//! and the next one tries again: the work stays in the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use tracing::warn;

use crate::store::StoreError;

#[async_trait]
pub trait Handler: Send + Sync {
    /// Names the handler in logs.
    fn name(&self) -> &'static str;
    /// Handles everything waiting in the store.
    async fn handle_queued(&self) -> Result<(), StoreError>;
    /// The time-based pass.
    async fn periodic(&self) -> Result<(), StoreError>;
}

pub async fn run(
    handler: Arc<dyn Handler>,
    poll: Duration,
    pass: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_pass: Option<Instant> = None;
    loop {
        if let Err(e) = handler.handle_queued().await {
            warn!(handler = handler.name(), error = %e, "handling queued messages failed");
        }
        if last_pass.is_none_or(|t| t.elapsed() >= pass) {
            if let Err(e) = handler.periodic().await {
                warn!(handler = handler.name(), error = %e, "the periodic pass failed");
            }
            last_pass = Some(Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
