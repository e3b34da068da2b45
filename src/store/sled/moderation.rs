//! Moderation and subscription state in sled: one `moderation` tree holding
//! held-post index records under `h\0LIST\0HASH\0ID`, pending confirmations
//! under `t\0TOKENHASH` and per-address daily mail counts under
//! `r\0ADDRESS\0DAY`. Holding and releasing a post change the message record
//! and the index in one sled transaction, and releasing checks the post is
//! still held: an action is performed once, whoever races for it.

use super::*;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{get, key2, member_key, put, values, Trees};
use crate::model::{message_hash, HeldPost, Member, Pending};
use crate::store::rules::{self, Mark};
use crate::store::{MessageMeta, Result, StoreError};

fn held_key(list: &str, hash: &str, id: &str) -> Vec<u8> {
    let mut k = b"h\0".to_vec();
    k.extend(key2(list, hash));
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn held_prefix(list: &str, hash: Option<&str>) -> Vec<u8> {
    let mut k = b"h\0".to_vec();
    k.extend_from_slice(list.as_bytes());
    k.push(0);
    if let Some(h) = hash {
        k.extend_from_slice(h.as_bytes());
        k.push(0);
    }
    k
}

fn token_key(hash: &str) -> Vec<u8> {
    let mut k = b"t\0".to_vec();
    k.extend_from_slice(hash.as_bytes());
    k
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

fn abort(e: impl Into<StoreError>) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e.into())
}

pub fn mark_accepted(t: &Trees, id: &str) -> Result<bool> {
    loop {
        let Some(old) = t.messages.get(id)? else {
            return Ok(false);
        };
        let mut meta: MessageMeta = serde_json::from_slice(&old)?;
        match rules::mark_accepted(&mut meta) {
            Mark::NotQueued => return Ok(false),
            Mark::AlreadyMarked => return Ok(true),
            Mark::Marked => {}
        }
        let new = serde_json::to_vec(&meta)?;
        if t.messages
            .compare_and_swap(id, Some(old), Some(new))?
            .is_ok()
        {
            return Ok(true);
        }
    }
}

pub fn hold_post(t: &Trees, held: &HeldPost) -> Result<bool> {
    let record = serde_json::to_vec(held)?;
    let key = held_key(&held.list, &held.hash, &held.id);
    (&t.messages, &t.moderation)
        .transaction(|(messages, moderation)| {
            let Some(old) = messages.get(&held.id)? else {
                return Ok(false);
            };
            let mut meta: MessageMeta = serde_json::from_slice(&old).map_err(abort)?;
            if !rules::hold(&mut meta) {
                return Ok(false);
            }
            messages.insert(
                held.id.as_bytes(),
                serde_json::to_vec(&meta).map_err(abort)?,
            )?;
            moderation.insert(key.clone(), record.clone())?;
            Ok(true)
        })
        .map_err(tx_err)
}

pub fn release_held(t: &Trees, id: &str, approve: bool) -> Result<Option<MessageMeta>> {
    (&t.messages, &t.moderation)
        .transaction(|(messages, moderation)| {
            let Some(old) = messages.get(id)? else {
                return Ok(None);
            };
            let mut meta: MessageMeta = serde_json::from_slice(&old).map_err(abort)?;
            if !rules::release(&mut meta, approve) {
                return Ok(None);
            }
            let hash = message_hash(meta.message_id.as_deref().unwrap_or_default());
            moderation.remove(held_key(&meta.list, &hash, id))?;
            messages.insert(id.as_bytes(), serde_json::to_vec(&meta).map_err(abort)?)?;
            Ok(Some(meta))
        })
        .map_err(tx_err)
}

pub fn held_posts(t: &Trees, list: Option<&str>) -> Result<Vec<HeldPost>> {
    match list {
        Some(l) => values(t.moderation.scan_prefix(held_prefix(l, None))),
        None => values(t.moderation.scan_prefix(b"h\0")),
    }
}

pub fn held_by_hash(t: &Trees, list: &str, hash: &str) -> Result<Vec<HeldPost>> {
    values(t.moderation.scan_prefix(held_prefix(list, Some(hash))))
}

pub fn put_pending(t: &Trees, hash: &str, p: &Pending) -> Result<()> {
    put(&t.moderation, token_key(hash), p)
}

pub fn take_pending(t: &Trees, hash: &str) -> Result<Option<Pending>> {
    t.moderation
        .remove(token_key(hash))?
        .map(|v| serde_json::from_slice(&v).map_err(StoreError::from))
        .transpose()
}

/// Every pending confirmation with its token hash, for `listrelay export`.
pub fn pendings(t: &Trees) -> Result<Vec<(String, Pending)>> {
    t.moderation
        .scan_prefix(b"t\0")
        .map(|kv| {
            let (k, v) = kv?;
            let hash = String::from_utf8_lossy(&k[2..]).into_owned();
            Ok((hash, serde_json::from_slice(&v)?))
        })
        .collect()
}

/// Every daily mail count: (address, day, count), for `listrelay export`.
pub fn rate_counts(t: &Trees) -> Result<Vec<(String, u64, u32)>> {
    let mut out = Vec::new();
    for kv in t.moderation.scan_prefix(b"r\0") {
        let (k, v) = kv?;
        let k = String::from_utf8_lossy(&k[2..]).into_owned();
        let Some((address, day)) = k.rsplit_once('\0') else {
            continue;
        };
        let Ok(day) = day.parse::<u64>() else {
            continue;
        };
        let count = v.as_ref().try_into().map(u32::from_be_bytes).unwrap_or(0);
        out.push((address.to_string(), day, count));
    }
    Ok(out)
}

/// Writes a daily mail count as exported.
pub fn restore_rate(t: &Trees, address: &str, day: u64, count: u32) -> Result<()> {
    let mut k = b"r\0".to_vec();
    k.extend(key2(address, &day.to_string()));
    t.moderation.insert(k, count.to_be_bytes().to_vec())?;
    Ok(())
}

/// Writes a held-post index record as exported (its message is restored
/// in state `Held`).
pub fn restore_held(t: &Trees, held: &HeldPost) -> Result<()> {
    put(
        &t.moderation,
        held_key(&held.list, &held.hash, &held.id),
        held,
    )
}

pub fn prune_pending(t: &Trees, now: u64) -> Result<usize> {
    let mut n = 0;
    for kv in t.moderation.scan_prefix(b"t\0") {
        let (k, v) = kv?;
        let p: Pending = serde_json::from_slice(&v)?;
        if p.expires_at <= now {
            t.moderation.remove(k)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Drops the counters of days before `now`'s: they no longer limit anything.
pub fn prune_rate_counts(t: &Trees, now: u64) -> Result<usize> {
    let mut n = 0;
    let today = crate::clock::day_of(now);
    for kv in t.moderation.scan_prefix(b"r\0") {
        let (k, _) = kv?;
        let day = k
            .rsplit(|&b| b == 0)
            .next()
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u64>().ok())
            .unwrap_or(0);
        if day < today {
            t.moderation.remove(k)?;
            n += 1;
        }
    }
    Ok(n)
}

pub fn rate_take(t: &Trees, address: &str, day: u64, limit: u32) -> Result<bool> {
    let mut k = b"r\0".to_vec();
    k.extend(key2(address, &day.to_string()));
    let mut taken = false;
    t.moderation.update_and_fetch(&k, |old| {
        let n = old
            .and_then(|v| v.try_into().ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0);
        taken = n < limit;
        Some(if taken { n + 1 } else { n }.to_be_bytes().to_vec())
    })?;
    Ok(taken)
}

pub fn update_member(t: &Trees, list: &str, member: &Member) -> Result<bool> {
    let key = member_key(list, &member.address.key());
    if get::<Member>(&t.members, &key)?.is_none() {
        return Ok(false);
    }
    put(&t.members, key, member)?;
    Ok(true)
}

#[async_trait]
impl ModerationRecords for SledStore {
    async fn mark_accepted(&self, id: &str) -> Result<bool> {
        moderation::mark_accepted(&self.trees, id)
    }

    async fn hold_post(&self, held: &HeldPost) -> Result<bool> {
        let held = held.clone();
        let ok = self
            .blocking(move |t| moderation::hold_post(t, &held))
            .await?;
        self.durable().await?;
        Ok(ok)
    }

    async fn release_held(&self, id: &str, approve: bool) -> Result<Option<MessageMeta>> {
        let id = id.to_string();
        let meta = self
            .blocking(move |t| moderation::release_held(t, &id, approve))
            .await?;
        self.durable().await?;
        Ok(meta)
    }

    async fn held_posts(&self, list: Option<&str>) -> Result<Vec<HeldPost>> {
        let list = list.map(str::to_string);
        self.blocking(move |t| moderation::held_posts(t, list.as_deref()))
            .await
    }

    async fn held_by_hash(&self, list: &str, hash: &str) -> Result<Vec<HeldPost>> {
        moderation::held_by_hash(&self.trees, list, hash)
    }

    async fn put_pending(&self, token_hash: &str, pending: &Pending) -> Result<()> {
        moderation::put_pending(&self.trees, token_hash, pending)?;
        self.durable().await
    }

    async fn take_pending(&self, token_hash: &str) -> Result<Option<Pending>> {
        let p = moderation::take_pending(&self.trees, token_hash)?;
        self.durable().await?;
        Ok(p)
    }

    async fn prune_pending(&self, now: u64) -> Result<usize> {
        self.blocking(move |t| moderation::prune_pending(t, now))
            .await
    }

    async fn prune_rate_counts(&self, now: u64) -> Result<usize> {
        self.blocking(move |t| moderation::prune_rate_counts(t, now))
            .await
    }

    async fn rate_take(&self, address: &str, day: u64, limit: u32) -> Result<bool> {
        moderation::rate_take(&self.trees, address, day, limit)
    }
}
