//! Moderation: the posting policy applied to every new post before fan-out
//! plans it ([`policy`]), held posts and their signed action addresses
//! ([`held`]), and what moderators and the expiry pass do to them
//! ([`actions`]). The same [`Service`] runs the handler task for the
//! `-moderate`, `-request`, `-join`, `-leave` and `-confirm` addresses (the
//! subscription side lives in `crate::subscription`). docs/moderation.md
//! tells the whole story.

pub mod actions;
pub mod held;
pub mod policy;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{info, warn};

pub use held::{Action, HeldPost};

use crate::address::Suffix;
use crate::bounce::handler::Clock;
use crate::config::ModerationConfig;
use crate::model::List;
use crate::notice::{Extras, Notifier};
use crate::secret::Secret;
use crate::store::{MessageMeta, Result, Store};

/// Moderation and subscription, shared by the planner's policy step, the
/// handler task, the admin requests and the HTTP listener.
pub struct Service {
    pub store: Arc<dyn Store>,
    pub secret: Secret,
    pub notifier: Notifier,
    pub clock: Clock,
    pub config: ModerationConfig,
    /// The recipient delimiter (`LIST-confirm+TOKEN`).
    pub delimiter: char,
    /// How long a finished post's Message-ID stays in the window.
    pub grace_secs: u64,
    /// Wakes the planner when a post is approved.
    pub posts: Option<Arc<Notify>>,
}

impl Service {
    /// The service of `listrelay serve` (and of the CLI without a server):
    /// notices through `smtp`, templates from `DATA_DIR/templates`.
    pub fn new(
        store: Arc<dyn Store>,
        config: &crate::config::Config,
        secret: Secret,
        smtp: crate::smtp::Client,
    ) -> Service {
        Service {
            store,
            secret,
            notifier: Notifier::new(
                Arc::new(smtp),
                crate::templates::Templates::new(&config.data_dir),
                &config.hostname,
            ),
            clock: crate::bounce::handler::system_clock(),
            config: config.moderation.clone(),
            delimiter: config.intake.recipient_delimiter,
            grace_secs: config.intake.duplicate_grace_secs,
            posts: None,
        }
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// `LIST-suffix+TAG@DOMAIN`.
    pub fn tagged(&self, list: &List, suffix: Suffix, tag: &str) -> String {
        crate::address::tagged(&list.address, suffix, tag, self.delimiter)
    }

    /// Whether one more automatic mail may go to `address` today (the
    /// per-address limit that keeps the list from mail-bombing anyone).
    pub async fn may_mail(&self, address: &str) -> bool {
        let day = self.now() / 86400;
        match self
            .store
            .rate_take(
                &address.to_lowercase(),
                day,
                self.config.max_mails_per_address_per_day,
            )
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                info!(%address, "daily mail limit for this address reached; not sending");
                metrics::counter!("listrelay_moderation_rate_limited_total").increment(1);
                false
            }
            Err(e) => {
                warn!(error = %e, "rate limit check failed; not sending");
                false
            }
        }
    }

    /// Sends a template to `to`, logging a failure (a lost notice never
    /// stops the action it reports).
    pub async fn notify(
        &self,
        list: &List,
        to: &[String],
        template: &str,
        vars: &[(&str, &str)],
        extras: Extras,
    ) {
        if to.is_empty() {
            return;
        }
        match self
            .notifier
            .send_with(list, to, template, vars, self.now(), extras)
            .await
        {
            Ok(()) => info!(list = %list.address, ?to, template, "notice sent"),
            Err(e) => warn!(list = %list.address, ?to, template, error = %e, "notice not sent"),
        }
    }

    /// Moderators of a list, or its owners when it has none.
    pub fn moderators(list: &List) -> Vec<String> {
        if list.settings.moderators.is_empty() {
            list.settings.owners.clone()
        } else {
            list.settings.moderators.clone()
        }
    }

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
        // A post rejected or discarded whose finish was cut short by a crash.
        for m in self.store.messages(false).await? {
            if m.suffix == Suffix::Post && m.state == crate::store::MessageState::Done {
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

    async fn handle_queued(&self) -> crate::store::Result<()> {
        self.process_queue().await.map(|_| ())
    }

    async fn periodic(&self) -> crate::store::Result<()> {
        Service::periodic(self).await
    }
}
