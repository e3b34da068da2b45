//! Bounce state in sled: one `bounces` tree holding per-member records under
//! `s\0SCOPE\0MEMBER` and per-post policy counts under `p\0LIST\0POST`.

use super::*;
use super::{get, key2, put, values, Trees};
use crate::model::{BounceState, Member, PostBounces};
use crate::store::{DeliveryFailure, Result};

fn state_key(scope: &str, member: &str) -> Vec<u8> {
    let mut k = b"s\0".to_vec();
    k.extend(key2(scope, member));
    k
}

fn post_key(list: &str, post: &str) -> Vec<u8> {
    let mut k = b"p\0".to_vec();
    k.extend(key2(list, post));
    k
}

pub fn set_delivery(t: &Trees, key: &[u8], enabled: bool) -> Result<bool> {
    let Some(mut m) = get::<Member>(&t.members, key)? else {
        return Ok(false);
    };
    if m.delivery_enabled != enabled {
        m.delivery_enabled = enabled;
        put(&t.members, key, &m)?;
    }
    Ok(true)
}

pub fn state(t: &Trees, scope: &str, member: &str) -> Result<Option<BounceState>> {
    get(&t.bounces, state_key(scope, member))
}

pub fn states(t: &Trees, scope: Option<&str>) -> Result<Vec<BounceState>> {
    match scope {
        Some(s) => values(t.bounces.scan_prefix(state_key(s, ""))),
        None => values(t.bounces.scan_prefix(b"s\0")),
    }
}

pub fn put_state(t: &Trees, s: &BounceState) -> Result<()> {
    put(&t.bounces, state_key(&s.scope, &s.member), s)
}

/// Writes `new` (`None` deletes) only while the stored state decodes to
/// `expected` (`None`: absent): a compare-and-swap on the exact bytes read,
/// read again when only the bytes changed (an equal record re-encoded).
pub fn replace_state(
    t: &Trees,
    scope: &str,
    member: &str,
    expected: Option<&BounceState>,
    new: Option<&BounceState>,
) -> Result<bool> {
    let key = state_key(scope, member);
    let new = new.map(serde_json::to_vec).transpose()?;
    loop {
        let old = t.bounces.get(&key)?;
        let stored: Option<BounceState> = old
            .as_ref()
            .map(|v| serde_json::from_slice(v))
            .transpose()?;
        if stored.as_ref() != expected {
            return Ok(false);
        }
        if t.bounces.compare_and_swap(&key, old, new.clone())?.is_ok() {
            return Ok(true);
        }
    }
}

pub fn delete_state(t: &Trees, scope: &str, member: &str) -> Result<bool> {
    Ok(t.bounces.remove(state_key(scope, member))?.is_some())
}

pub fn pending_failures(t: &Trees, max: usize) -> Result<Vec<(String, DeliveryFailure)>> {
    let mut out = Vec::new();
    for kv in t.failures.iter().take(max) {
        let (k, v) = kv?;
        let id = k
            .iter()
            .position(|&b| b == 0)
            .map(|i| String::from_utf8_lossy(&k[i + 1..]).into_owned())
            .unwrap_or_default();
        out.push((id, serde_json::from_slice(&v)?));
    }
    Ok(out)
}

pub fn post(t: &Trees, list: &str, post: &str) -> Result<Option<PostBounces>> {
    get(&t.bounces, post_key(list, post))
}

pub fn put_post(t: &Trees, p: &PostBounces) -> Result<()> {
    put(&t.bounces, post_key(&p.list, &p.post), p)
}

/// Every post record, for `listrelay export`.
pub fn posts(t: &Trees) -> Result<Vec<PostBounces>> {
    values(t.bounces.scan_prefix(b"p\0"))
}

pub fn prune_posts(t: &Trees, before: u64) -> Result<usize> {
    let mut n = 0;
    for kv in t.bounces.scan_prefix(b"p\0") {
        let (k, v) = kv?;
        let p: PostBounces = serde_json::from_slice(&v)?;
        if p.first_at < before {
            t.bounces.remove(k)?;
            n += 1;
        }
    }
    Ok(n)
}

#[async_trait]
impl BounceRecords for SledStore {
    async fn bounce_state(&self, scope: &str, member_key: &str) -> Result<Option<BounceState>> {
        bounce::state(&self.trees, scope, member_key)
    }

    async fn bounce_states(&self, scope: Option<&str>) -> Result<Vec<BounceState>> {
        let scope = scope.map(str::to_string);
        self.blocking(move |t| bounce::states(t, scope.as_deref()))
            .await
    }

    async fn put_bounce_state(&self, state: &BounceState) -> Result<()> {
        bounce::put_state(&self.trees, state)
    }

    async fn replace_bounce_state(
        &self,
        scope: &str,
        member_key: &str,
        expected: Option<&BounceState>,
        new: Option<&BounceState>,
    ) -> Result<bool> {
        bounce::replace_state(&self.trees, scope, member_key, expected, new)
    }

    async fn delete_bounce_state(&self, scope: &str, member_key: &str) -> Result<bool> {
        bounce::delete_state(&self.trees, scope, member_key)
    }

    async fn post_bounces(&self, list: &str, post: &str) -> Result<Option<PostBounces>> {
        bounce::post(&self.trees, list, post)
    }

    async fn put_post_bounces(&self, p: &PostBounces) -> Result<()> {
        bounce::put_post(&self.trees, p)
    }

    async fn prune_post_bounces(&self, before: u64) -> Result<usize> {
        self.blocking(move |t| bounce::prune_posts(t, before)).await
    }
}
