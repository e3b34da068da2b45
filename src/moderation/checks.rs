//! The sender checks of a post (DKIM, ARC, SPF, DMARC; `auth::evaluate`),
//! made once before the posting policy and kept with the post: a post
//! evaluated before a restart is not checked again, and the fan-out reads
//! the same result for the ARC seal and the DMARC mitigation.
//!
//! A DNS failure is temporary: the post stays queued, unmarked, and the
//! planner offers it again after a backoff (`auth::site`). It never turns
//! into a decision.

use tracing::{info, warn};

use super::Service;
use crate::auth::{site, AuthResult, Evaluation};
use crate::clock::now_ms;
use crate::store::{MessageMeta, Result};

/// What the checks came to.
pub enum Checks {
    /// Evaluated (now or before); `None` when this process does not evaluate.
    Done(Option<Evaluation>),
    /// DNS did not answer: the post waits and is tried again.
    Delayed,
}

impl Service {
    /// The post's evaluation: the stored one, or a new one (stored durably
    /// before the policy acts on it).
    pub(crate) async fn sender_checks(&self, post: &MessageMeta, raw: &[u8]) -> Result<Checks> {
        if let Some(e) = post
            .auth
            .as_ref()
            .and_then(|v| serde_json::from_value::<Evaluation>(v.clone()).ok())
        {
            return Ok(Checks::Done(Some(e)));
        }
        let Some(site) = site::site() else {
            return Ok(Checks::Done(None));
        };
        let now = now_ms();
        if !site.due(&post.id, now) {
            return Ok(Checks::Delayed);
        }
        let client = post.client.clone().unwrap_or_default();
        let smtp = site::smtp_context(&client.addr, &client.helo, &post.mail_from);
        let e = site.evaluator.evaluate(raw, &smtp).await;
        if e.is_temporary() {
            let (wait_ms, failures) = site.delay(&post.id, now);
            metrics::counter!("listrelay_auth_dns_delays_total").increment(1);
            warn!(id = %post.id, list = %post.list, failures, retry_in_ms = wait_ms,
                  results = %e.auth_results,
                  "DNS did not answer for the sender checks; the post waits and is checked again \
                   (check dns.resolvers if this persists)");
            return Ok(Checks::Delayed);
        }
        site.clear(&post.id);
        let value = serde_json::to_value(&e).map_err(|err| {
            crate::store::StoreError::Backend(format!(
                "the sender evaluation of {} does not serialise ({err}); it is retried",
                post.id
            ))
        })?;
        self.store.set_auth(&post.id, value).await?;
        metrics::counter!("listrelay_auth_evaluations_total", "dmarc" => e.dmarc.result.as_str())
            .increment(1);
        info!(id = %post.id, list = %post.list, from_domain = %e.dmarc.from_domain,
              dmarc = %e.dmarc.result, results = %e.auth_results, "sender checked");
        Ok(Checks::Done(Some(e)))
    }
}

/// The reason a moderator reads for a post held as forged: which domain,
/// which policy, and what failed.
pub fn forged_reason(e: &Evaluation) -> String {
    let policy = match e.dmarc.policy {
        Some(p) => format!(
            "p={}",
            serde_json::to_value(p)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        None => "a DMARC policy".into(),
    };
    let dkim = if e.dkim.iter().any(|d| d.result == AuthResult::Pass) {
        "no DKIM signature of that domain verifies"
    } else if e.dkim.is_empty() {
        "the message has no DKIM signature"
    } else {
        "its DKIM signature does not verify"
    };
    format!(
        "the From domain {} publishes {policy} and the message fails DMARC ({dkim}, and SPF \
         does not pass for that domain): the From address is probably forged",
        e.dmarc.from_domain
    )
}
