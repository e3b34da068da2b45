//! Moderation: the posting policy applied to every new post before fan-out
//! plans it ([`policy`]), held posts and their signed action addresses
//! ([`held`]), and what moderators and the expiry pass do to them
//! ([`actions`]). The same [`Service`] carries the subscription rules (the
//! `subscription` module adds them) and runs the handler task for the
//! `-moderate`, `-request`, `-join`, `-leave` and `-confirm` addresses (the
//! `requests` module, above both). docs/moderation.md tells the whole story.

pub mod actions;
pub mod checks;
pub mod held;
pub mod policy;

use std::sync::Arc;
use tokio::sync::Notify;
use tracing::{info, warn};

pub use held::{Action, HeldPost};

use crate::address::Suffix;
use crate::clock::{day_of, Clock};
use crate::config::ModerationConfig;
use crate::fanout::PostGate;
use crate::model::List;
use crate::notice::{Extras, Notifier};
use crate::secret::Secret;
use crate::store::{MessageMeta, Store, StoreError};

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
            clock: Clock::system(),
            config: config.moderation.clone(),
            delimiter: config.intake.recipient_delimiter,
            grace_secs: config.intake.duplicate_grace_secs,
            posts: None,
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// `LIST-suffix+TAG@DOMAIN`.
    pub fn tagged(&self, list: &List, suffix: Suffix, tag: &str) -> String {
        crate::address::tagged(&list.address, suffix, tag, self.delimiter)
    }

    /// Whether one more automatic mail may go to `address` today (the
    /// per-address limit that keeps the list from mail-bombing anyone).
    pub async fn may_mail(&self, address: &str) -> bool {
        let day = day_of(self.now());
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
}

/// The planner's policy step is the posting policy ([`policy`]).
#[async_trait::async_trait]
impl PostGate for Service {
    async fn check(&self, post: &MessageMeta) -> Result<bool, StoreError> {
        self.check_post(post).await
    }
}
