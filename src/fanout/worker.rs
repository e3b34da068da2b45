//! A delivery worker: claims a chunk, sends its transactions in plan order,
//! records progress (which renews the lease) whenever the recipients sent
//! since the last record would otherwise pass the duplicate bound, retries
//! deferred recipients with backoff, and completes the chunk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tracing::{debug, info, warn};

use super::copy;
use super::plan::{self, Txn};
use super::Fanout;
use crate::address::{self, Suffix};
use crate::auth::evaluate::Survival;
use crate::auth::sign::Signer;
use crate::auth::{Evaluation, PostSigner};
use crate::clock::now_ms;
use crate::model::directory::{DmarcMitigateWhen, DmarcMitigation};
use crate::model::List;
use crate::smtp::{Envelope, RcptStatus, SendError, Stuffed};
use crate::store::{ChunkState, Claim, Completion, DeliveryFailure, Job, RetryItem, StoreError};
use crate::verp;

/// The copy of a post and its signer, shared by a chunk's transactions.
#[derive(Clone, Copy)]
struct Shared<'a> {
    /// The prepared copy (`copy::prepare_for`), stuffed for DATA once for
    /// all of the chunk's transactions.
    body: &'a Stuffed,
    /// Signs each envelope's slice over it; `None` when the domain has no key.
    signing: Option<&'a PostSigner<'a>>,
}

/// What a transaction came to.
enum Sent {
    /// The MTA answered for every recipient.
    Answered(Vec<RcptStatus>),
    /// The MTA could not be reached or refused the session: try the chunk later.
    MtaDown(SendError),
}

/// Why a chunk's delivery stopped before its end.
enum Halt {
    /// Another worker holds it now; nothing more may be written.
    LeaseLost,
    /// Released for later (MTA down, retries not due, shutdown).
    Released,
    /// A store call failed: the lease runs out and the chunk is retried.
    Store(StoreError),
}

impl From<StoreError> for Halt {
    fn from(e: StoreError) -> Halt {
        Halt::Store(e)
    }
}

/// The state of the chunk this worker holds under its lease, shared with the
/// lease-renewal task; the lock is held across each store write so writes
/// never reorder.
struct HeldChunk {
    state: Mutex<ChunkState>,
    lost: AtomicBool,
    /// When the store last accepted a write of this chunk (progress or
    /// renewal), on this host's clock: a worker that was paused for half
    /// its lease writes before it sends again, so it learns of a takeover
    /// before it could deliver beside the new holder.
    saved_ms: AtomicU64,
}

impl Fanout {
    fn lease_ms(&self) -> u64 {
        self.config.lease_secs * 1000
    }

    pub(super) async fn worker(
        self: Arc<Self>,
        owner: String,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.store.claim_chunk(&owner, self.lease_ms()).await {
                Ok(Some(claim)) => {
                    self.run_claim(&owner, claim, &shutdown).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => warn!(error = %e, "claiming a chunk failed"),
            }
            tokio::select! {
                _ = self.work.notified() => {}
                _ = tokio::time::sleep(self.poll()) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    async fn run_claim(&self, owner: &str, claim: Claim, shutdown: &watch::Receiver<bool>) {
        if claim.takeover {
            metrics::counter!("listrelay_fanout_lease_takeovers_total").increment(1);
            info!(job = %claim.job.post_id, chunk = claim.chunk.index, generation = claim.chunk.generation,
                  "took over a chunk whose lease expired");
        }
        let held = Arc::new(HeldChunk {
            state: Mutex::new(claim.chunk.clone()),
            lost: AtomicBool::new(false),
            saved_ms: AtomicU64::new(now_ms()),
        });
        let renewal = tokio::spawn(renew(
            self.store.clone(),
            owner.to_string(),
            held.clone(),
            self.lease_ms(),
        ));
        let result = self.deliver(owner, &claim.job, &held, shutdown).await;
        renewal.abort();
        match result {
            Ok(()) | Err(Halt::Released) => {}
            Err(Halt::LeaseLost) => {
                warn!(job = %claim.job.post_id, chunk = claim.chunk.index, "lease lost; another worker has the chunk");
            }
            Err(Halt::Store(e)) => {
                // The lease runs out and another worker (or this one) retries.
                warn!(job = %claim.job.post_id, chunk = claim.chunk.index, error = %e, "chunk failed");
            }
        }
    }

    /// Writes the held state (renewing the lease); a refused write means the
    /// lease was taken over.
    async fn save(
        &self,
        owner: &str,
        held: &HeldChunk,
        state: &mut ChunkState,
    ) -> Result<(), Halt> {
        if held.lost.load(Ordering::SeqCst)
            || !self
                .store
                .update_chunk(owner, state, self.lease_ms())
                .await?
        {
            held.lost.store(true, Ordering::SeqCst);
            return Err(Halt::LeaseLost);
        }
        held.saved_ms.store(now_ms(), Ordering::SeqCst);
        Ok(())
    }

    /// Whether the last accepted write of the chunk is half a lease old: the
    /// worker was paused (or the store slow), and must renew before it sends.
    fn lease_aging(&self, held: &HeldChunk) -> bool {
        now_ms().saturating_sub(held.saved_ms.load(Ordering::SeqCst)) > self.lease_ms() / 2
    }

    /// Lets the chunk go until `not_before_ms`.
    async fn release(&self, owner: &str, held: &HeldChunk, not_before_ms: u64) -> Halt {
        self.try_release(owner, held, not_before_ms)
            .await
            .unwrap_or_else(Halt::Store)
    }

    async fn try_release(
        &self,
        owner: &str,
        held: &HeldChunk,
        not_before_ms: u64,
    ) -> Result<Halt, StoreError> {
        let mut s = held.state.lock().await;
        let mut released = s.clone();
        released.owner = None;
        released.not_before_ms = not_before_ms;
        if held.lost.load(Ordering::SeqCst) || !self.store.update_chunk(owner, &released, 0).await?
        {
            return Ok(Halt::LeaseLost);
        }
        self.store.sync().await?;
        *s = released;
        self.work.notify_waiters();
        Ok(Halt::Released)
    }

    async fn deliver(
        &self,
        owner: &str,
        job: &Job,
        held: &HeldChunk,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), Halt> {
        let index = held.state.lock().await.index;
        let Some(list) = self.store.list(&job.list).await? else {
            warn!(job = %job.post_id, list = %job.list, "list deleted during fan-out; dropping its chunks");
            return self.complete(owner, job, held).await;
        };
        let members = self.store.chunk_members(&job.post_id, index).await?;
        let copy = self.copy(job, &list).await?;
        let evaluation = self.evaluation(job).await?;
        let copy = self.mitigate(job, &list, copy, evaluation.as_ref()).await?;
        // DKIM with the list domain's keys when it has some: the body hash
        // once for this chunk's copies, one signature per distinct slice.
        let signer = crate::auth::keydir::site_signer(list.address.domain());
        let copy = self
            .seal(job, &list, copy, signer.as_deref(), evaluation.as_ref())
            .await?;
        let signing = signer.as_ref().map(|s| s.for_post(&copy));
        let body = Stuffed::new(&copy);
        let xverp = self.config.xverp
            && job.verp_percent == 100
            && self
                .smtp
                .capabilities()
                .await
                .map(|c| c.xverp)
                .unwrap_or(false);
        // With XVERP the MTA splits the envelopes: plan batches instead.
        let percent = if xverp { 0 } else { job.verp_percent };
        let txns = plan::transactions(&members, job.seq, percent, job.max_rcpt_per_txn as usize);
        let start = held.state.lock().await.cursor as usize;
        // Progress is written once the recipients accepted since the last
        // write, with the next transaction's, would pass the bound of
        // docs/architecture.md ("Bounded duplicates"): a crash repeats at
        // most max_rcpt_per_txn copies per worker. A batch transaction fills
        // the bound alone and is recorded at once; a run of VERP envelopes
        // is recorded every max_rcpt_per_txn of them, which spares the store
        // a write per member (on PostgreSQL, a statement per member).
        let bound = (job.max_rcpt_per_txn as usize).max(1);
        let mut unsaved = 0;
        for (i, txn) in txns.iter().enumerate().skip(start) {
            if *shutdown.borrow() {
                return Err(self.release(owner, held, 0).await);
            }
            if held.lost.load(Ordering::SeqCst) {
                return Err(Halt::LeaseLost);
            }
            if self.lease_aging(held) {
                let mut s = held.state.lock().await;
                self.save(owner, held, &mut s).await?;
                unsaved = 0;
            }
            let sent = self
                .send(
                    &list,
                    job,
                    txn,
                    xverp.then_some(self.delimiter),
                    &body,
                    signing.as_ref(),
                )
                .await;
            match sent {
                Sent::MtaDown(e) => return Err(self.mta_down(owner, held, e).await),
                Sent::Answered(statuses) => {
                    let mut s = held.state.lock().await;
                    let failures = self.apply(&mut s, job, &txn.rcpts, statuses);
                    s.cursor = i as u32 + 1;
                    s.mta_failures = 0;
                    unsaved += txn.rcpts.len();
                    let next = txns.get(i + 1).map_or(bound, |t| t.rcpts.len());
                    if unsaved + next > bound {
                        self.save(owner, held, &mut s).await?;
                        unsaved = 0;
                    }
                    drop(s);
                    self.record(failures).await;
                }
            }
        }
        self.store.sync().await?;
        let shared = Shared {
            body: &body,
            signing: signing.as_ref(),
        };
        self.retry_due(owner, job, &list, held, shared, shutdown)
            .await?;
        let next = held
            .state
            .lock()
            .await
            .retry
            .iter()
            .map(|r| r.next_ms)
            .min();
        match next {
            None => self.complete(owner, job, held).await,
            Some(at) => Err(self.release(owner, held, at).await),
        }
    }

    /// The sender evaluation stored with the post, if it was evaluated.
    async fn evaluation(&self, job: &Job) -> Result<Option<Evaluation>, Halt> {
        Ok(self
            .store
            .message(&job.post_id)
            .await?
            .and_then(|m| m.auth)
            .and_then(|v| serde_json::from_value(v).ok()))
    }

    /// The copy as members get it under the list's `dmarc_mitigation`
    /// (copy.rs: `munge_from`, `wrap`) when `dmarc_mitigate_when` says so.
    async fn mitigate(
        &self,
        job: &Job,
        list: &List,
        copy: Arc<Vec<u8>>,
        evaluation: Option<&Evaluation>,
    ) -> Result<Arc<Vec<u8>>, Halt> {
        let s = &list.settings;
        if s.dmarc_mitigation == DmarcMitigation::None
            || !mitigation_needed(s.dmarc_mitigate_when, &copy, evaluation).await
        {
            return Ok(copy);
        }
        metrics::counter!("listrelay_fanout_dmarc_mitigations_total",
            "mode" => if s.dmarc_mitigation == DmarcMitigation::Wrap { "wrap" } else { "munge_from" })
        .increment(1);
        debug!(job = %job.post_id, mode = ?s.dmarc_mitigation, "DMARC mitigation applied to the copy");
        Ok(Arc::new(match s.dmarc_mitigation {
            DmarcMitigation::Wrap => {
                let original = self.store.message_body(&job.post_id).await?;
                copy::wrap(list, &copy, &original, s.munge_author_in)
            }
            _ => copy::munge_from(list, &copy, s.munge_author_in),
        }))
    }

    /// The copy with an ARC set on top (RFC 8617) when the list's domain
    /// seals (`arc_seal`, on by default with an RSA key) and the post was
    /// evaluated (the set attests those results). A chain that failed
    /// upstream is not sealed again; the copy still goes out DKIM-signed.
    async fn seal(
        &self,
        job: &Job,
        list: &List,
        copy: Arc<Vec<u8>>,
        signer: Option<&Signer>,
        evaluation: Option<&Evaluation>,
    ) -> Result<Arc<Vec<u8>>, Halt> {
        let (Some(sealer), Some(e)) = (signer.and_then(Signer::sealer), evaluation) else {
            return Ok(copy);
        };
        let seals = self
            .store
            .domain(list.address.domain())
            .await?
            .is_none_or(|d| d.seals(true));
        if !seals {
            return Ok(copy);
        }
        match sealer.seal(&copy, &e.auth_results, e.arc.result) {
            Ok(set) => Ok(Arc::new([&set[..], &copy[..]].concat())),
            Err(err) => {
                debug!(job = %job.post_id, error = %err, "copy not ARC-sealed");
                Ok(copy)
            }
        }
    }

    /// Sends again the deferred recipients whose time has come.
    async fn retry_due(
        &self,
        owner: &str,
        job: &Job,
        list: &List,
        held: &HeldChunk,
        shared: Shared<'_>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), Halt> {
        let now = now_ms();
        let due: Vec<String> = {
            let s = held.state.lock().await;
            s.retry
                .iter()
                .filter(|r| r.next_ms <= now)
                .map(|r| r.address.clone())
                .collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        for txn in plan::transactions(
            &due,
            job.seq,
            job.verp_percent,
            job.max_rcpt_per_txn as usize,
        ) {
            if *shutdown.borrow() {
                return Err(self.release(owner, held, 0).await);
            }
            metrics::counter!("listrelay_fanout_retries_total").increment(txn.rcpts.len() as u64);
            match self
                .send(list, job, &txn, None, shared.body, shared.signing)
                .await
            {
                Sent::MtaDown(e) => return Err(self.mta_down(owner, held, e).await),
                Sent::Answered(statuses) => {
                    let mut s = held.state.lock().await;
                    let failures = self.apply(&mut s, job, &txn.rcpts, statuses);
                    self.save(owner, held, &mut s).await?;
                    self.store.sync().await?;
                    drop(s);
                    self.record(failures).await;
                }
            }
        }
        Ok(())
    }

    async fn complete(&self, owner: &str, job: &Job, held: &HeldChunk) -> Result<(), Halt> {
        let s = held.state.lock().await;
        match self.store.complete_chunk(owner, &s).await? {
            Completion::JobDone(done) => {
                self.forget_copy(&done.post_id);
                self.store
                    .finish_message(&done.post_id, self.grace_secs)
                    .await?;
                metrics::counter!("listrelay_fanout_jobs_completed_total").increment(1);
                info!(id = %done.post_id, list = %done.list, recipients = done.recipients,
                      delivered = done.delivered, failed = done.refused, "job done");
            }
            Completion::ChunkDone => debug!(job = %job.post_id, chunk = s.index, "chunk done"),
            Completion::LeaseLost => return Err(Halt::LeaseLost),
        }
        Ok(())
    }

    async fn mta_down(&self, owner: &str, held: &HeldChunk, e: SendError) -> Halt {
        let failures = {
            let mut s = held.state.lock().await;
            s.mta_failures += 1;
            s.mta_failures
        };
        let backoff = (1000u64 << failures.min(16)).min(self.config.mta_backoff_max_secs * 1000);
        warn!(error = %e, retry_in_ms = backoff, "the MTA did not take the transaction; the chunk waits");
        metrics::counter!("listrelay_fanout_mta_failures_total").increment(1);
        self.release(owner, held, now_ms() + backoff).await
    }

    async fn send(
        &self,
        list: &List,
        job: &Job,
        txn: &Txn,
        xverp: Option<char>,
        body: &Stuffed,
        signing: Option<&PostSigner<'_>>,
    ) -> Sent {
        let mail_from = if txn.verp {
            let member = txn.rcpts[0].to_lowercase();
            let tag = verp::encode(&self.secret, &job.list, &member);
            address::tagged(&list.address, Suffix::Bounces, &tag, self.delimiter)
        } else {
            list.suffix_address(Suffix::Bounces)
        };
        let envelope = Envelope {
            mail_from,
            rcpts: txn.rcpts.clone(),
            xverp,
        };
        metrics::counter!("listrelay_fanout_envelopes_total", "verp" => if txn.verp || xverp.is_some() { "true" } else { "false" })
            .increment(txn.rcpts.len() as u64);
        // Lists with one-click links: the envelope's own List-Unsubscribe
        // goes before the shared copy (which then has none).
        let verp_member = txn.verp.then(|| txn.rcpts[0].as_str());
        let header = self.envelope_headers(list, verp_member);
        let signature = signing.and_then(|p| {
            p.sign_envelope(header.as_deref().unwrap_or_default(), crate::clock::now())
                .inspect_err(|e| warn!(list = %job.list, error = %e, "DKIM signing failed; the copy goes out unsigned"))
                .ok()
        });
        let head: Vec<&[u8]> = [signature.as_deref(), header.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        match self.smtp.send_with_body(&envelope, &head, body).await {
            Ok(outcome) => Sent::Answered(outcome.rcpts),
            Err(SendError::MailFromRejected(r)) if r.is_permanent() => {
                // Our own MTA refusing our bounce address is a configuration
                // problem, not the members' fault: keep the mail and wait.
                Sent::MtaDown(SendError::MailFromRejected(r))
            }
            Err(e) if e.is_transient() || matches!(e, SendError::MailFromRejected(_)) => {
                Sent::MtaDown(e)
            }
            Err(e) => {
                // Refused for good as a whole (e.g. over the MTA's SIZE): every
                // recipient failed at hand-off.
                let reply = crate::smtp::Reply {
                    code: 554,
                    enhanced: Some([5, 3, 4]),
                    text: e.to_string(),
                };
                Sent::Answered(
                    txn.rcpts
                        .iter()
                        .map(|_| RcptStatus::PermFailed(reply.clone()))
                        .collect(),
                )
            }
        }
    }

    /// Counts the results of one transaction into the chunk state; deferred
    /// recipients go to the retry list; returns the failures to record.
    fn apply(
        &self,
        s: &mut ChunkState,
        job: &Job,
        rcpts: &[String],
        statuses: Vec<RcptStatus>,
    ) -> Vec<DeliveryFailure> {
        let now = now_ms();
        let mut failures = Vec::new();
        let mut fail = |s: &mut ChunkState, member: &str, reply: String| {
            s.refused += 1;
            failures.push(DeliveryFailure {
                list: job.list.clone(),
                member: member.to_string(),
                message: job.post_id.clone(),
                reply,
                at: now / 1000,
            });
        };
        for (rcpt, status) in rcpts.iter().zip(statuses) {
            let previous = s
                .retry
                .iter()
                .position(|r| &r.address == rcpt)
                .map(|i| s.retry.remove(i));
            match status {
                RcptStatus::Delivered(_) => s.delivered += 1,
                RcptStatus::PermFailed(r) => fail(s, rcpt, r.to_string()),
                RcptStatus::TempFailed(r) => {
                    let mut item = previous.unwrap_or(RetryItem {
                        address: rcpt.clone(),
                        attempts: 0,
                        first_ms: now,
                        next_ms: now,
                        last_error: String::new(),
                    });
                    item.attempts += 1;
                    item.last_error = r.to_string();
                    if now.saturating_sub(item.first_ms) >= self.config.retry_give_up_secs * 1000 {
                        fail(
                            s,
                            rcpt,
                            format!("gave up after {} attempts: {}", item.attempts, r),
                        );
                        continue;
                    }
                    let backoff = (self.config.retry_min_secs * 1000)
                        .saturating_mul(1u64 << (item.attempts - 1).min(20))
                        .min(self.config.retry_max_secs * 1000);
                    item.next_ms = now + backoff;
                    s.retry.push(item);
                }
            }
        }
        failures
    }

    async fn record(&self, failures: Vec<DeliveryFailure>) {
        for f in failures {
            info!(list = %f.list, member = %f.member, reply = %f.reply, "the MTA refused a member at hand-off");
            metrics::counter!("listrelay_fanout_handoff_failures_total").increment(1);
            if let Err(e) = self.store.record_failure(&f).await {
                warn!(error = %e, "recording a hand-off failure failed");
            }
        }
    }
}

/// Whether a post's copy needs DMARC mitigation (`dmarc_mitigate_when`).
/// `breaks` asks mail-auth whether the copy as we send it still passes
/// DMARC through an aligned author signature; a DNS failure then counts as
/// broken (mitigating a copy that did not need it costs less than a copy
/// rejected at every member's provider). Posts that were not evaluated
/// are only mitigated under `always`.
async fn mitigation_needed(
    when: DmarcMitigateWhen,
    copy: &[u8],
    evaluation: Option<&Evaluation>,
) -> bool {
    let Some(e) = evaluation else {
        return when == DmarcMitigateWhen::Always;
    };
    match when {
        DmarcMitigateWhen::Always => true,
        DmarcMitigateWhen::Policy => e.policy_enforced(),
        DmarcMitigateWhen::Breaks => {
            if !e.policy_enforced() {
                return false;
            }
            let Some(site) = crate::auth::site::site() else {
                return true;
            };
            site.evaluator.would_pass_dmarc(copy).await != Survival::Survives
        }
    }
}

/// Renews the lease (writing the held state, progress included) while the
/// worker is inside a long transaction or between progress writes.
async fn renew(
    store: Arc<dyn crate::store::Store>,
    owner: String,
    held: Arc<HeldChunk>,
    lease_ms: u64,
) {
    let every = Duration::from_millis((lease_ms / 3).max(50));
    loop {
        tokio::time::sleep(every).await;
        let s = held.state.lock().await;
        match store.update_chunk(&owner, &s, lease_ms).await {
            Ok(true) => held.saved_ms.store(now_ms(), Ordering::SeqCst),
            Ok(false) => {
                held.lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => warn!(error = %e, "renewing a lease failed"),
        }
    }
}
