//! The handler task for mail to a list's request addresses: `-moderate`
//! (moderation), `-request`, `-join`, `-leave` and `-confirm`
//! (subscription). It sits above both modules so that neither imports the
//! other's dispatch: moderation knows nothing of subscription, and
//! subscription builds on moderation's [`Service`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::address::Suffix;
use crate::moderation::{policy, Service};
use crate::store::{MessageMeta, MessageState, Result};

impl Service {
    /// Starts the handler task of `listrelay serve`.
    pub fn start(self: Arc<Self>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let pass = Duration::from_secs(self.config.pass_interval_secs);
        tokio::spawn(self.run(poll, pass, stop))
    }

    /// Polls for work every `poll` and runs the periodic pass every `pass`,
    /// until `stop`.
    pub async fn run(self: Arc<Self>, poll: Duration, pass: Duration, stop: watch::Receiver<bool>) {
        crate::poll_loop::run(self, poll, pass, stop).await
    }

    /// Handles every queued message to a moderation or subscription
    /// address; returns how many.
    pub async fn process_queue(&self) -> Result<usize> {
        let mut n = 0;
        for meta in self.store.messages(true).await? {
            if !matches!(
                meta.suffix,
                Suffix::Moderate | Suffix::Request | Suffix::Join | Suffix::Leave | Suffix::Confirm
            ) {
                continue;
            }
            if let Err(e) = self.handle(&meta).await {
                warn!(id = %meta.id, error = %e, "handling a request failed; it stays queued");
                continue;
            }
            self.store.finish_message(&meta.id, 0).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Handles one stored message to a moderation or subscription address.
    pub async fn handle(&self, meta: &MessageMeta) -> Result<()> {
        let Some(list) = self.store.list(&meta.list).await? else {
            return Ok(());
        };
        let raw = self.store.message_body(&meta.id).await?;
        let sender = policy::sender(&meta.mail_from, &raw);
        let outcome = match meta.suffix {
            Suffix::Moderate => {
                self.moderate_address(&list, meta.tag.as_deref().unwrap_or(""), &sender)
                    .await?
            }
            Suffix::Request => self.request(&list, &sender, &raw).await?,
            Suffix::Join => self.join_by_mail(&list, &sender).await?,
            Suffix::Leave => self.leave_by_mail(&list, &sender).await?,
            Suffix::Confirm => {
                self.confirm(&list, meta.tag.as_deref().unwrap_or(""), &sender)
                    .await?
            }
            _ => String::new(),
        };
        info!(id = %meta.id, list = %list.address, kind = meta.suffix.name(),
              sender = %sender.display(), %outcome, "request handled");
        Ok(())
    }

    /// Expires held posts, drops expired tokens, cleans up after crashes.
    pub async fn periodic(&self) -> Result<()> {
        self.expire_held().await?;
        let pruned = self.store.prune_pending(self.now()).await?;
        if pruned > 0 {
            info!(tokens = pruned, "expired confirmation tokens dropped");
        }
        self.store.prune_rate_counts(self.now()).await?;
        // A post rejected or discarded whose finish was cut short by a crash.
        for m in self.store.messages(false).await? {
            if m.suffix == Suffix::Post && m.state == MessageState::Done {
                self.store.finish_message(&m.id, self.grace_secs).await?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::poll_loop::Handler for Service {
    fn name(&self) -> &'static str {
        "moderation"
    }

    async fn handle_queued(&self) -> Result<()> {
        self.process_queue().await.map(|_| ())
    }

    async fn periodic(&self) -> Result<()> {
        Service::periodic(self).await
    }
}
