//! The bounce handler: consumes the bounces intake stored (suffix `bounces`)
//! and the refusals fan-out recorded at SMTP hand-off, decides which members
//! they are about, scores them ([`super::score`]) under their scope key
//! ([`super::scope`]) and acts: disables delivery, warns, removes, alerts
//! owners. Time-based actions run in [`Handler::periodic`]; "now" comes from
//! an injectable clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mail_parser::MessageParser;
use tokio::sync::watch;
use tracing::{info, warn};

use super::score::{Due, Failure, PolicyShare, Scored, Scoring};
use super::{classify, scope_key, BounceScope, BounceState, Kind, PostBounces, RecipientDetail};
use crate::address::Suffix;
use crate::clock::{days, Clock};
use crate::model::{List, ListSettings};
use crate::notice::Notifier;
use crate::secret::Secret;
use crate::store::{DeliveryFailure, MessageMeta, Result, Store};
use crate::verp::{self, Decoded};

/// Post records older than this are dropped.
const POST_RECORD_DAYS: u64 = 30;

/// One member's failure, about to be scored.
#[derive(Debug, Clone)]
pub struct Event {
    pub member: String,
    pub failure: Failure,
    pub diagnostic: String,
}

/// What the handler did with one message or failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// Why nothing was scored, if so (`auto_reply`, `not_bounce`, `delay`…).
    pub ignored: Option<String>,
    pub scored: Vec<(String, Scored)>,
}

pub struct Handler {
    pub store: Arc<dyn Store>,
    pub secret: Secret,
    pub scope: BounceScope,
    pub notifier: Notifier,
    pub clock: Clock,
}

/// How many times a bounce state's read-modify-write is retried when someone
/// else changed it in between; more than a handful means something rewrites
/// it in a loop.
const CAS_ATTEMPTS: usize = 16;

/// Read-modify-write of one member's bounce state under a scope, with
/// compare-and-swap: `change` gets the stored state (`None`: absent) and
/// returns the new one (`None` deletes) and a value for the caller; when the
/// state changed in between (`bounce reset` racing the handler) it is read
/// again and `change` runs again, so neither update is lost.
pub async fn update_bounce_state<T>(
    store: &dyn Store,
    scope: &str,
    member: &str,
    mut change: impl FnMut(Option<&BounceState>) -> (Option<BounceState>, T) + Send,
) -> Result<T> {
    for _ in 0..CAS_ATTEMPTS {
        let old = store.bounce_state(scope, member).await?;
        let (new, out) = change(old.as_ref());
        if store
            .replace_bounce_state(scope, member, old.as_ref(), new.as_ref())
            .await?
        {
            return Ok(out);
        }
    }
    Err(crate::store::StoreError::Backend(format!(
        "the bounce state of {member} under {scope} kept changing during {CAS_ATTEMPTS} \
         attempts to update it; retry, and check that only one bounce handler runs per store"
    )))
}

/// The scope key of a list, reading its domain's `opaque` flag.
pub async fn list_scope(store: &dyn Store, scope: BounceScope, list: &List) -> Result<String> {
    let domain = list.address.domain();
    let opaque = store.domain(domain).await?.is_some_and(|d| d.opaque);
    Ok(scope_key(scope, domain, opaque, &list.key()))
}

/// Every list whose scope key is `key`.
pub async fn lists_in_scope(store: &dyn Store, scope: BounceScope, key: &str) -> Result<Vec<List>> {
    let opaque: HashMap<String, bool> = store
        .domains()
        .await?
        .into_iter()
        .map(|d| (d.name, d.opaque))
        .collect();
    Ok(store
        .lists(None)
        .await?
        .into_iter()
        .filter(|l| {
            let d = l.address.domain();
            scope_key(scope, d, opaque.get(d).copied().unwrap_or(false), &l.key()) == key
        })
        .collect())
}

/// The Message-ID of the message a bounce reports on: the first Message-ID
/// header in the bounce that is not the bounce's own.
pub fn original_message_id(raw: &[u8]) -> Option<String> {
    let own = MessageParser::default()
        .parse_headers(raw)
        .and_then(|m| m.message_id().map(str::to_string));
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .filter_map(|line| {
            let name = line.get(..11)?;
            name.eq_ignore_ascii_case("message-id:").then(|| {
                line[11..]
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
        })
        .find(|id| !id.is_empty() && Some(id) != own.as_ref())
}

/// Whether a detail is a failure (not a delay or a success).
fn is_failure(d: &RecipientDetail) -> bool {
    !d.action.as_deref().is_some_and(|a| {
        matches!(
            a.to_ascii_lowercase().as_str(),
            "delayed" | "delivered" | "relayed" | "expanded"
        )
    })
}

fn event(member: &str, d: &RecipientDetail) -> Event {
    Event {
        member: member.to_string(),
        failure: Failure {
            reason: d.reason,
            status: d.status.clone(),
            hard: d.hard,
        },
        diagnostic: d.diagnostic.clone().unwrap_or_default(),
    }
}

fn key_of(addr: &str) -> String {
    addr.trim().trim_matches(['<', '>']).to_lowercase()
}

/// Classifies the SMTP reply of a hand-off refusal, e.g.
/// `550 5.1.1 <bob@x.org>: Recipient address rejected: User unknown`.
pub fn classify_reply(reply: &str) -> Failure {
    let status = classify::best_status(None, reply);
    let reason = classify::reason(status.as_deref(), reply);
    Failure {
        hard: classify::is_hard(reason, status.as_deref()),
        reason,
        status,
    }
}

impl Handler {
    /// Starts the handler task of `listrelay serve`: notices go through
    /// `smtp`, templates come from `DATA_DIR/templates`.
    pub fn start(
        store: Arc<dyn Store>,
        config: &crate::config::Config,
        secret: Secret,
        smtp: crate::smtp::Client,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let handler = Arc::new(Handler {
            store,
            secret,
            scope: config.bounce.scope,
            notifier: Notifier::new(
                Arc::new(smtp),
                crate::templates::Templates::new(&config.data_dir),
                &config.hostname,
            ),
            clock: Clock::system(),
        });
        tokio::spawn(handler.run(
            Duration::from_millis(config.bounce.poll_interval_ms),
            Duration::from_secs(config.bounce.pass_interval_secs),
            stop,
        ))
    }

    /// Polls for work every `poll` and runs the periodic pass every `pass`,
    /// until `stop`.
    /// Polls for work every `poll` and runs the periodic pass every `pass`,
    /// until `stop`.
    pub async fn run(self: Arc<Self>, poll: Duration, pass: Duration, stop: watch::Receiver<bool>) {
        crate::poll_loop::run(self, poll, pass, stop).await
    }

    /// Handles every queued bounce; returns how many.
    pub async fn process_queue(&self) -> Result<usize> {
        let mut n = 0;
        for meta in self.store.messages(true).await? {
            if meta.suffix != Suffix::Bounces {
                continue;
            }
            match self.handle_message(&meta).await {
                Ok(h) => {
                    info!(id = %meta.id, list = %meta.list, ignored = ?h.ignored, scored = ?h.scored, "bounce handled")
                }
                Err(e) => {
                    warn!(id = %meta.id, error = %e, "handling a bounce failed; it stays queued");
                    continue;
                }
            }
            self.store.finish_message(&meta.id, 0).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Decides whom a stored bounce is about and scores them: a verified
    /// VERP tag names the member; otherwise (no tag, a forged or stale one)
    /// only members of the list that the report itself names count.
    pub async fn handle_message(&self, meta: &MessageMeta) -> Result<Handled> {
        let ignored = |why: &str| Handled {
            ignored: Some(why.to_string()),
            scored: Vec::new(),
        };
        let Some(list) = self.store.list(&meta.list).await? else {
            return Ok(ignored("no_such_list"));
        };
        let raw = self.store.message_body(&meta.id).await?;
        let report = super::parse(&raw);
        match report.kind {
            Kind::Bounce | Kind::Feedback => {}
            other => return Ok(ignored(&reason_kind(other))),
        }
        let failures: Vec<&RecipientDetail> =
            report.details.iter().filter(|d| is_failure(d)).collect();
        let mut events = Vec::new();
        let verified = match meta
            .tag
            .as_deref()
            .map(|t| verp::decode(&self.secret, &list.key(), t))
        {
            Some(Decoded::Verified(m)) => Some(m),
            Some(other) => {
                warn!(list = %list.key(), tag = ?meta.tag, decoded = ?other, "bounce with an unverified VERP tag: acting only on members the report names");
                None
            }
            None => None,
        };
        match verified {
            Some(member) => {
                // The detail for the member, else the first: an MTA may
                // report a rewritten (forwarded, aliased) address.
                let d = failures
                    .iter()
                    .find(|d| {
                        key_of(&d.recipient) == member
                            || d.original_recipient.as_deref().map(key_of) == Some(member.clone())
                    })
                    .or(failures.first());
                if let Some(d) = d {
                    events.push(event(&member, d));
                }
            }
            None => {
                for d in &failures {
                    events.push(event(&key_of(&d.recipient), d));
                }
            }
        }
        if events.is_empty() {
            return Ok(ignored("no_failed_recipient"));
        }
        let post = original_message_id(&raw);
        Ok(Handled {
            ignored: None,
            scored: self.score(&list, events, post.as_deref()).await?,
        })
    }

    /// Scores the refusals fan-out recorded at SMTP hand-off; returns how many.
    pub async fn process_failures(&self) -> Result<usize> {
        let pending = self.store.pending_failures(500).await?;
        let n = pending.len();
        for (id, f) in pending {
            if let Err(e) = self.handle_failure(&f).await {
                warn!(list = %f.list, member = %f.member, error = %e, "scoring a hand-off failure failed; retrying later");
                continue;
            }
            self.store.delete_failure(&f.list, &id).await?;
        }
        Ok(n)
    }

    pub async fn handle_failure(&self, f: &DeliveryFailure) -> Result<Vec<(String, Scored)>> {
        let Some(list) = self.store.list(&f.list).await? else {
            return Ok(Vec::new());
        };
        let post = match self.store.message(&f.message).await? {
            Some(m) => m.message_id.unwrap_or_else(|| format!("id:{}", f.message)),
            None => format!("id:{}", f.message),
        };
        let ev = Event {
            member: key_of(&f.member),
            failure: classify_reply(&f.reply),
            diagnostic: f.reply.clone(),
        };
        let scored = self.score(&list, vec![ev], Some(&post)).await?;
        info!(list = %f.list, member = %f.member, reply = %f.reply, scored = ?scored, "hand-off failure scored");
        Ok(scored)
    }

    /// Scores failures that came through `list` for members of it.
    pub async fn score(
        &self,
        list: &List,
        events: Vec<Event>,
        post: Option<&str>,
    ) -> Result<Vec<(String, Scored)>> {
        let now = self.clock.now();
        let scope = list_scope(self.store.as_ref(), self.scope, list).await?;
        let settings = &list.settings;
        let mut post_rec = match post {
            Some(p) => self.store.post_bounces(&list.key(), p).await?,
            None => None,
        };
        let mut out = Vec::new();
        for ev in events {
            if self.store.member(&list.key(), &ev.member).await?.is_none() {
                continue;
            }
            if !ev.failure.reason.counts_against_member() {
                if let Some(p) = post {
                    if post_rec.is_none() {
                        let recipients = self
                            .store
                            .members(&list.key())
                            .await?
                            .iter()
                            .filter(|m| m.delivery_enabled)
                            .count() as u64;
                        post_rec = Some(PostBounces::new(&list.key(), p, recipients, now));
                    }
                    if let Some(rec) = post_rec.as_mut() {
                        let suspend =
                            rec.add_policy(&ev.member, settings.bounce_policy_suspend_share);
                        self.store.put_post_bounces(rec).await?;
                        if suspend {
                            self.policy_alert(list, rec, &ev, now).await;
                        }
                    }
                }
                out.push((ev.member, Scored::NotCounted));
                continue;
            }
            if post_rec.as_ref().is_some_and(|p| p.suspended) {
                out.push((ev.member, Scored::PostSuspended));
                continue;
            }
            let (st, r) = update_bounce_state(self.store.as_ref(), &scope, &ev.member, |old| {
                let mut st = old
                    .cloned()
                    .unwrap_or_else(|| BounceState::new(&scope, &ev.member, &list.key(), now));
                let r = st.record(&ev.failure, &list.key(), settings, now);
                (Some(st.clone()), (st, r))
            })
            .await?;
            if let Scored::Disable { score } = r {
                info!(member = %ev.member, scope = %scope, score, "bounce score reached the threshold: delivery disabled");
                metrics::counter!("listrelay_bounce_disabled_total").increment(1);
                self.set_delivery(&scope, &ev.member, false).await?;
                self.act(st, settings, now).await?;
            }
            out.push((ev.member, r));
        }
        self.store.sync().await?;
        Ok(out)
    }

    async fn set_delivery(&self, scope: &str, member: &str, enabled: bool) -> Result<Vec<String>> {
        let mut changed = Vec::new();
        for l in lists_in_scope(self.store.as_ref(), self.scope, scope).await? {
            if self.store.set_delivery(&l.key(), member, enabled).await? {
                changed.push(l.key());
            }
        }
        Ok(changed)
    }

    /// Does what is due for one record: a warning, the removal, forgetting.
    async fn act(&self, st: BounceState, settings: &ListSettings, now: u64) -> Result<Due> {
        let due = st.due(settings, now);
        match due {
            Due::Nothing => {}
            Due::Forget => {
                // Only the record judged stale: a bounce scored meanwhile stays.
                self.store
                    .replace_bounce_state(&st.scope, &st.member, Some(&st), None)
                    .await?;
            }
            Due::Warn => {
                let list = self.store.list(&st.list).await?;
                if let Some(list) = list {
                    let (warning, warnings) = (
                        (st.warnings_sent + 1).to_string(),
                        settings.bounce_warnings.to_string(),
                    );
                    let vars = [
                        ("member", st.member.as_str()),
                        ("reason", st.last_reason.as_str()),
                        ("warning", warning.as_str()),
                        ("warnings", warnings.as_str()),
                    ];
                    if let Err(e) = self
                        .notifier
                        .send(
                            &list,
                            std::slice::from_ref(&st.member),
                            "bounce-disabled",
                            &vars,
                            now,
                        )
                        .await
                    {
                        warn!(member = %st.member, error = %e, "sending a bounce warning failed");
                    }
                }
                // The warning went: record it on the state as it is now, and
                // not at all if a reset forgot the record meanwhile.
                let (scope, member) = (st.scope.clone(), st.member.clone());
                update_bounce_state(self.store.as_ref(), &scope, &member, |old| {
                    let new = old.cloned().map(|mut cur| {
                        cur.warned(now);
                        cur
                    });
                    (new, ())
                })
                .await?;
            }
            Due::Remove => {
                let score = format!("{}", st.score);
                let status = st.last_status.clone().unwrap_or_else(|| "-".into());
                for l in lists_in_scope(self.store.as_ref(), self.scope, &st.scope).await? {
                    if !self.store.remove_member(&l.key(), &st.member).await? {
                        continue;
                    }
                    info!(list = %l.key(), member = %st.member, "removed for bouncing");
                    metrics::counter!("listrelay_bounce_removed_total").increment(1);
                    if l.settings.bounce_notify_owner_on_removal {
                        let vars = [
                            ("member", st.member.as_str()),
                            ("reason", st.last_reason.as_str()),
                            ("score", score.as_str()),
                            ("status", status.as_str()),
                        ];
                        if let Err(e) = self
                            .notifier
                            .send(&l, &l.settings.owners, "bounce-owner-removed", &vars, now)
                            .await
                        {
                            warn!(list = %l.key(), error = %e, "telling the owners of a removal failed");
                        }
                    }
                }
                // The member is gone from every list of the scope: the
                // record goes too, whatever happened to it meanwhile.
                self.store
                    .delete_bounce_state(&st.scope, &st.member)
                    .await?;
            }
        }
        Ok(due)
    }

    async fn policy_alert(&self, list: &List, rec: &PostBounces, ev: &Event, now: u64) {
        warn!(list = %list.key(), post = %rec.post, count = rec.policy_members.len(), recipients = rec.recipients, "policy rejections of a post: scoring suspended for it");
        metrics::counter!("listrelay_bounce_policy_suspensions_total").increment(1);
        let (count, recipients) = (
            rec.policy_members.len().to_string(),
            rec.recipients.to_string(),
        );
        let vars = [
            ("post", rec.post.as_str()),
            ("count", count.as_str()),
            ("recipients", recipients.as_str()),
            ("member", ev.member.as_str()),
            ("diagnostic", ev.diagnostic.as_str()),
        ];
        if let Err(e) = self
            .notifier
            .send(
                list,
                &list.settings.owners,
                "bounce-policy-alert",
                &vars,
                now,
            )
            .await
        {
            warn!(list = %list.key(), error = %e, "alerting the owners failed");
        }
    }

    /// The time-based part: warnings, removals, stale records, old posts.
    pub async fn periodic(&self) -> Result<()> {
        let now = self.clock.now();
        for st in self.store.bounce_states(None).await? {
            let settings = match self.store.list(&st.list).await? {
                Some(l) => l.settings,
                None => ListSettings::default(),
            };
            self.act(st, &settings, now).await?;
        }
        self.store
            .prune_post_bounces(now.saturating_sub(days(POST_RECORD_DAYS)))
            .await?;
        self.store.sync().await
    }
}

fn reason_kind(k: Kind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl crate::poll_loop::Handler for Handler {
    fn name(&self) -> &'static str {
        "bounces"
    }

    async fn handle_queued(&self) -> Result<()> {
        // Both kinds of work, whatever became of the other.
        let queued = self.process_queue().await;
        let failures = self.process_failures().await;
        queued.and(failures).map(|_| ())
    }

    async fn periodic(&self) -> Result<()> {
        Handler::periodic(self).await
    }
}
