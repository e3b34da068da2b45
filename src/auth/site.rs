//! The site's sender checks, once `serve` has installed them: the
//! [`Evaluator`] over the one [`Resolver`] (`[dns]`, `[auth]`), and the
//! backoff of posts whose evaluation met a DNS failure.
//!
//! One per process, like the key ring (`keydir::install`): the posting
//! policy and the fan-out workers read it, and neither's constructor (shared
//! with the rest of the server and its tests) has to carry it. Without an
//! installed site (the CLI, in-process tests) posts are not evaluated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::evaluate::{Evaluator, SmtpContext};
use super::resolver::{DnsConfig, Resolver, ResolverError};

/// First wait after a DNS failure; doubles per failure of the same post.
const FIRST_DELAY_MS: u64 = 1000;
/// Longest wait between two evaluations of one post.
const MAX_DELAY_MS: u64 = 300_000;

/// A post waiting for DNS.
#[derive(Debug, Clone, Copy)]
struct Delay {
    /// Failed evaluations so far.
    failures: u32,
    /// Not evaluated again before this time (ms since the epoch).
    next_ms: u64,
}

/// The installed checks and the posts they delay.
pub struct SiteAuth {
    /// Runs the checks.
    pub evaluator: Evaluator,
    /// Post id → its backoff; only posts whose evaluation is pending. In
    /// memory: after a restart a delayed post is simply evaluated at once.
    delays: Mutex<HashMap<String, Delay>>,
}

static SITE: OnceLock<Arc<SiteAuth>> = OnceLock::new();

/// Builds the resolver and evaluator from `[dns]` and `[auth]` and makes
/// them the site's (first call wins). Must run inside the tokio runtime.
/// `authserv_id` is our host name, written in Authentication-Results.
pub fn install(
    dns: &DnsConfig,
    authserv_id: &str,
    trust_authserv_id: Option<&str>,
) -> Result<Arc<SiteAuth>, ResolverError> {
    if let Some(s) = SITE.get() {
        return Ok(s.clone());
    }
    let resolver = Resolver::new(dns)?;
    let site = Arc::new(SiteAuth {
        evaluator: Evaluator::new(resolver, authserv_id, trust_authserv_id),
        delays: Mutex::new(HashMap::new()),
    });
    Ok(SITE.get_or_init(|| site).clone())
}

/// The installed checks, if `serve` installed them.
pub fn site() -> Option<Arc<SiteAuth>> {
    SITE.get().cloned()
}

impl SiteAuth {
    /// Whether `post` may be evaluated at `now_ms` (not waiting out a backoff).
    pub fn due(&self, post: &str, now_ms: u64) -> bool {
        self.delays
            .lock()
            .map(|d| d.get(post).is_none_or(|x| x.next_ms <= now_ms))
            .unwrap_or(true)
    }

    /// Records a DNS failure of `post`'s evaluation; returns the wait (ms)
    /// before the next attempt and the failures so far.
    pub fn delay(&self, post: &str, now_ms: u64) -> (u64, u32) {
        let Ok(mut d) = self.delays.lock() else {
            return (FIRST_DELAY_MS, 1);
        };
        let e = d.entry(post.to_string()).or_insert(Delay {
            failures: 0,
            next_ms: now_ms,
        });
        e.failures += 1;
        let wait = FIRST_DELAY_MS
            .saturating_mul(1 << (e.failures - 1).min(16))
            .min(MAX_DELAY_MS);
        e.next_ms = now_ms + wait;
        (wait, e.failures)
    }

    /// The post was evaluated: forget its backoff.
    pub fn clear(&self, post: &str) {
        if let Ok(mut d) = self.delays.lock() {
            d.remove(post);
        }
    }
}

/// The SMTP context of a stored post: the client from XFORWARD (ADDR is
/// validated at intake; anything else reads as unknown, so SPF is `none`).
pub fn smtp_context(addr: &str, helo: &str, mail_from: &str) -> SmtpContext {
    SmtpContext {
        client_ip: addr.parse().ok(),
        helo: helo.to_string(),
        mail_from: mail_from.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_clears() {
        let site = SiteAuth {
            evaluator: Evaluator::new(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        Resolver::new(&DnsConfig {
                            resolvers: vec!["127.0.0.1:9".into()],
                            ..DnsConfig::default()
                        })
                    })
                    .unwrap(),
                "h",
                None,
            ),
            delays: Mutex::new(HashMap::new()),
        };
        assert!(site.due("p", 0));
        assert_eq!(site.delay("p", 0), (1000, 1));
        assert!(!site.due("p", 999) && site.due("p", 1000));
        assert_eq!(site.delay("p", 1000), (2000, 2));
        for _ in 0..30 {
            site.delay("p", 0);
        }
        assert_eq!(site.delay("p", 0).0, MAX_DELAY_MS);
        site.clear("p");
        assert!(site.due("p", 0));
        assert_eq!(smtp_context("bad", "h", "").client_ip, None);
    }
}
