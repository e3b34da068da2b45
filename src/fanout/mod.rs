//! Fan-out: every accepted post becomes a job over the members it had at
//! acceptance, cut into chunks; worker tasks claim chunks under leases in the
//! store and hand the copies back to the MTA. See docs/architecture.md for the
//! claim protocol and its guarantees.

pub mod copy;
pub mod plan;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::config::FanoutConfig;
use crate::secret::Secret;
use crate::smtp;
use crate::store::{Job, MessageMeta, Store, StoreError};

/// Posting policy checks (sender checks, DNS) running at once; see
/// [`Fanout::planner`].
const CHECKS_IN_FLIGHT: usize = 16;

/// Members read per page while planning.
const PLAN_PAGE: usize = 10_000;

/// Chunks written to a draft job per store call: with the page, what
/// planning holds in memory (10 chunks of 1,000 members by default).
const PLAN_BATCH: usize = 10;

/// The posting policy checks running in the planner, by task.
#[derive(Default)]
struct Checks {
    tasks: tokio::task::JoinSet<(MessageMeta, Result<bool, StoreError>)>,
    /// The post each task checks: never two checks of one post at once.
    ids: HashMap<tokio::task::Id, String>,
    /// Whether the last listing left posts unchecked for want of a free
    /// slot: a check ending then lists again.
    saturated: bool,
}

/// A post's job while it is planned: begun in the store with the first
/// batch of chunks, so a post without recipients writes nothing.
struct Draft<'a> {
    fanout: &'a Fanout,
    job: &'a Job,
    /// Whether the store holds the draft yet.
    begun: bool,
}

impl Draft<'_> {
    /// Reads the post's recipients page by page into chunks, written in
    /// batches; `false` when there were none (nothing written).
    async fn fill(&mut self, post: &MessageMeta) -> Result<bool, StoreError> {
        let store = &self.fanout.store;
        let mut chunker = plan::Chunker::new(self.fanout.config.chunk_size);
        let mut batch = Vec::with_capacity(PLAN_BATCH);
        let mut after: Option<String> = None;
        loop {
            // A post goes to the regular members; a digest issue to the
            // members of its form.
            let page = store
                .audience_page(
                    &post.list,
                    post.audience,
                    post.received_at,
                    after.as_deref(),
                    PLAN_PAGE,
                )
                .await?;
            for address in page.addresses {
                batch.extend(chunker.push(address));
                if batch.len() >= PLAN_BATCH {
                    self.add(std::mem::take(&mut batch)).await?;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        batch.extend(chunker.finish());
        if !batch.is_empty() {
            self.add(batch).await?;
        }
        Ok(self.begun)
    }

    async fn add(&mut self, chunks: Vec<Vec<String>>) -> Result<(), StoreError> {
        let (planner, lease) = (self.fanout.planner_id(), self.fanout.plan_lease_ms());
        let store = &self.fanout.store;
        if !self.begun {
            store.begin_job(self.job, &planner, lease).await?;
            self.begun = true;
        }
        store
            .add_chunks(&self.job.post_id, &planner, chunks, lease)
            .await
    }
}

/// The posting policy, applied to each new post before it is planned.
#[async_trait::async_trait]
pub trait PostGate: Send + Sync {
    /// `true`: plan the post now; `false`: it was held, rejected or discarded.
    async fn check(&self, post: &MessageMeta) -> Result<bool, StoreError>;
}

/// What `serve` adds to fan-out: the policy step and the site's one-click
/// base URL. Without them every post is planned as it is (benchmarks, tests).
pub struct Hooks {
    pub gate: Option<Arc<dyn PostGate>>,
    /// `http.base_url`, for lists without their own `base_url`.
    pub base_url: String,
}

/// What the planner and the workers share.
pub struct Fanout {
    store: Arc<dyn Store>,
    smtp: smtp::Client,
    secret: Secret,
    config: FanoutConfig,
    /// `intake.recipient_delimiter`: VERP senders and XVERP use it, so that
    /// bounces come back to addresses intake routes.
    delimiter: char,
    /// How long a done post's Message-ID stays in the window.
    grace_secs: u64,
    /// Wakes the planner when intake stores a post.
    pub posts: Arc<Notify>,
    /// Wakes idle workers when a job is created or a chunk released.
    work: Notify,
    /// Prepared copies of posts being delivered: each body is read once.
    copies: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    /// Identifies this process's workers in leases: `HOSTID:HOSTNAME:PID:RANDOM`
    /// (the host-id first, so a restarted host releases its leases by it).
    instance: String,
    hooks: OnceLock<Hooks>,
}

impl Fanout {
    pub fn new(
        store: Arc<dyn Store>,
        smtp: smtp::Client,
        secret: Secret,
        config: FanoutConfig,
        delimiter: char,
        grace_secs: u64,
        host: &str,
    ) -> Arc<Self> {
        Arc::new(Fanout {
            store,
            smtp,
            secret,
            config,
            delimiter,
            grace_secs,
            posts: Arc::new(Notify::new()),
            work: Notify::new(),
            copies: Mutex::new(HashMap::new()),
            instance: format!(
                "{host}:{}:{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
            hooks: OnceLock::new(),
        })
    }

    /// Installs the policy step and the one-click base URL (once, before `run`).
    pub fn set_hooks(&self, hooks: Hooks) {
        let _ = self.hooks.set(hooks);
    }

    /// The base URL of a list's one-click links, if it has one.
    fn one_click_base(&self, list: &crate::model::List) -> Option<String> {
        let site = self.hooks.get().map(|h| h.base_url.as_str()).unwrap_or("");
        let base = if list.settings.base_url.is_empty() {
            site
        } else {
            list.settings.base_url.as_str()
        };
        (!base.is_empty()).then(|| base.to_string())
    }

    /// The per-envelope `List-Unsubscribe` header of a transaction, for
    /// lists with one-click links (see `copy::unsubscribe_header`).
    fn envelope_headers(
        &self,
        list: &crate::model::List,
        verp_member: Option<&str>,
    ) -> Option<Vec<u8>> {
        let base = self.one_click_base(list)?;
        let url = verp_member.map(|m| {
            let token = crate::oneclick::encode(&self.secret, &list.key(), &m.to_lowercase());
            crate::oneclick::url(&base, &token)
        });
        Some(copy::unsubscribe_header(list, url.as_deref()))
    }

    /// Runs the planner and the workers until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.clone().planner(shutdown.clone()));
        for i in 0..self.config.workers {
            let owner = format!("{}:w{i}", self.instance);
            tasks.spawn(self.clone().worker(owner, shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }

    fn poll(&self) -> Duration {
        Duration::from_millis(self.config.poll_interval_ms)
    }

    /// Plans posts as they come. Each post's posting policy (sender checks
    /// that wait on DNS) runs in its own task, [`CHECKS_IN_FLIGHT`] at most,
    /// and the post is planned when its own check ends: a dropped DNS query
    /// costs the resolver's whole timeout (5 s by default), and one slow
    /// answer must hold neither the posts behind it nor the planner.
    async fn planner(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut checks = Checks::default();
        let mut list = true;
        loop {
            if list {
                match self.plan_ready(&mut checks).await {
                    Ok(0) => {}
                    Ok(n) => info!(jobs = n, "planned fan-out jobs"),
                    Err(e) => warn!(error = %e, "planning failed; retrying"),
                }
            }
            let done = tokio::select! {
                _ = self.posts.notified() => None,
                Some(done) = checks.tasks.join_next_with_id(), if !checks.tasks.is_empty() => Some(done),
                _ = tokio::time::sleep(self.poll()) => None,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let Some(done) = done else {
                list = true;
                continue;
            };
            let post = match done {
                Ok((id, (post, verdict))) => {
                    checks.ids.remove(&id);
                    self.checked(&post, verdict).then_some(post)
                }
                Err(e) => {
                    let post = checks.ids.remove(&e.id());
                    warn!(id = ?post, error = %e,
                          "a posting policy check ended abnormally; the post is checked again");
                    None
                }
            };
            if let Some(post) = post {
                match self.plan(&post).await {
                    Ok(true) => info!(jobs = 1, "planned fan-out jobs"),
                    Ok(false) => {}
                    Err(e) => warn!(id = %post.id, error = %e, "planning failed; retrying"),
                }
            }
            // Posts left waiting for a free check start now.
            list = checks.saturated;
        }
    }

    /// Plans the unplanned posts that need no check (approved, or no
    /// policy installed) and starts the checks of the others, skipping
    /// those being checked. Returns the jobs created.
    async fn plan_ready(&self, checks: &mut Checks) -> Result<usize, StoreError> {
        let gate = self.hooks.get().and_then(|h| h.gate.clone());
        let mut planned = 0;
        checks.saturated = false;
        for post in self.store.unplanned_posts().await? {
            match (&gate, post.policy) {
                (Some(gate), None) => {
                    if checks.ids.values().any(|id| *id == post.id) {
                        continue;
                    }
                    if checks.tasks.len() >= CHECKS_IN_FLIGHT {
                        checks.saturated = true;
                        continue;
                    }
                    let (gate, id) = (gate.clone(), post.id.clone());
                    let task = checks.tasks.spawn(async move {
                        let verdict = gate.check(&post).await;
                        (post, verdict)
                    });
                    checks.ids.insert(task.id(), id);
                }
                _ => {
                    if self.plan(&post).await? {
                        planned += 1;
                    }
                }
            }
        }
        Ok(planned)
    }

    /// Whether a checked post is to be planned now.
    fn checked(&self, post: &MessageMeta, verdict: Result<bool, StoreError>) -> bool {
        match verdict {
            Ok(plan) => plan,
            Err(e) => {
                warn!(id = %post.id, error = %e, "the posting policy failed; retrying");
                false
            }
        }
    }

    /// Creates the job of one post over the members it had when it arrived,
    /// streaming: the members are read a page at a time, cut into chunks as
    /// they come, and the chunks written in batches to a draft job that is
    /// sealed at the end, so planning holds one page and one batch whatever
    /// the list's size. Each step is a short store call and the cutting is
    /// a few microseconds per page, so intake keeps answering meanwhile.
    async fn plan(&self, post: &MessageMeta) -> Result<bool, StoreError> {
        let Some(list) = self.store.list(&post.list).await? else {
            warn!(id = %post.id, list = %post.list, "the list of a queued post is gone; dropping it");
            self.store.finish_message(&post.id, self.grace_secs).await?;
            return Ok(false);
        };
        let job = Job {
            post_id: post.id.clone(),
            list: post.list.clone(),
            seq: 0,
            verp_percent: list.settings.verp_percent,
            max_rcpt_per_txn: list.settings.max_rcpt_per_txn,
            chunks: 0,
            chunks_done: 0,
            recipients: 0,
            delivered: 0,
            refused: 0,
            created_at: crate::clock::now(),
        };
        let mut draft = Draft {
            fanout: self,
            job: &job,
            begun: false,
        };
        match draft.fill(post).await {
            Ok(true) => {}
            Ok(false) => {
                // No regular recipient, but digest members may take it: it
                // is entered for the next issue (once) before it finishes.
                if list.settings.digest_enabled
                    && post.audience == crate::model::DeliveryMode::Regular
                    && self.store.seal_digest_only(&post.id).await?
                {
                    info!(id = %post.id, list = %post.list, "post for the digest only");
                } else {
                    info!(id = %post.id, list = %post.list, "post to a list without members");
                }
                self.store.finish_message(&post.id, self.grace_secs).await?;
                return Ok(false);
            }
            Err(StoreError::Exists(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        match self.store.seal_job(&post.id, &self.planner_id()).await {
            Ok(job) => {
                info!(id = %job.post_id, list = %job.list, recipients = job.recipients,
                      chunks = job.chunks, verp_percent = job.verp_percent, seq = job.seq, "job created");
                metrics::counter!("listrelay_fanout_jobs_created_total").increment(1);
                // The workers start on it now, not when the whole pass ends.
                self.work.notify_waiters();
                Ok(true)
            }
            Err(StoreError::Exists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Who plans in this process, in drafts: the host-id first, as in
    /// worker leases, so a restarted host releases its drafts by it.
    fn planner_id(&self) -> String {
        format!("{}:planner", self.instance)
    }

    /// The planner's lease on a draft, renewed by each batch of chunks.
    fn plan_lease_ms(&self) -> u64 {
        self.config.lease_secs * 1000
    }

    /// The prepared copy of a post, read and built once while in use.
    async fn copy(&self, job: &Job, list: &crate::model::List) -> Result<Arc<Vec<u8>>, StoreError> {
        if let Some(c) = self
            .copies
            .lock()
            .ok()
            .and_then(|m| m.get(&job.post_id).cloned())
        {
            return Ok(c);
        }
        let raw = self.store.message_body(&job.post_id).await?;
        let shared_unsubscribe = self.one_click_base(list).is_none();
        // A digest issue carries its own subject and footer.
        let issue = self
            .store
            .message(&job.post_id)
            .await?
            .is_some_and(|m| m.audience != crate::model::DeliveryMode::Regular);
        let copy = Arc::new(copy::prepare_for(list, &raw, shared_unsubscribe, !issue));
        if let Ok(mut m) = self.copies.lock() {
            // Few posts are in flight at once; an unbounded map would only grow
            // if jobs never finished, so keep it small.
            if m.len() >= 16 {
                m.clear();
            }
            m.insert(job.post_id.clone(), copy.clone());
        }
        Ok(copy)
    }

    fn forget_copy(&self, message: &str) {
        if let Ok(mut m) = self.copies.lock() {
            m.remove(message);
        }
    }
}
