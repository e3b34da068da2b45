//! The `Directory` role: domains, lists and members. Changes that check the
//! directory and then act on it run under the store's directory lock;
//! deleting a list leaves a tombstone until its members are purged.

use super::*;

/// The lists of one domain, or every list.
pub(super) fn lists_of(t: &Trees, domain: Option<&str>) -> Result<Vec<List>> {
    let all: Vec<List> = values(t.lists.iter())?;
    Ok(all
        .into_iter()
        .filter(|l| domain.is_none_or(|d| l.address.domain() == d))
        .collect())
}

/// Adds the members that are new, in sled batches of [`SLED_BATCH`] (no
/// flush per member); says for each whether it was new. The caller holds the
/// directory lock, so the list cannot be deleted in between. A crash midway
/// keeps the batches written before it: the same import run again finds
/// those members already in.
pub(super) fn add_members(t: &Trees, list: &str, members: &[Member]) -> Result<Vec<bool>> {
    if !t.lists.contains_key(list)? {
        return Err(StoreError::NotFound(format!("list {list}")));
    }
    let mut added = std::collections::HashSet::new();
    let mut new = Vec::with_capacity(members.len());
    for slice in members.chunks(SLED_BATCH) {
        let mut batch = sled::Batch::default();
        for m in slice {
            let key = member_key(list, &m.address.key());
            let fresh = !t.members.contains_key(&key)? && added.insert(key.clone());
            if fresh {
                batch.insert(key, serde_json::to_vec(m)?);
            }
            new.push(fresh);
        }
        t.members.apply_batch(batch)?;
    }
    Ok(new)
}

/// Sets one member's mode by sled's atomic read-modify-write of the record,
/// so a bounce handler's `set_delivery` between the read and the write is
/// never undone. A record that does not decode is left as it is.
fn set_delivery_mode(t: &Trees, key: &[u8], mode: DeliveryMode) -> Result<Option<Member>> {
    let failed = std::cell::RefCell::new(None);
    let new = t.members.update_and_fetch(key, |old| {
        let old = old?;
        match serde_json::from_slice::<Member>(old) {
            Ok(mut m) => {
                m.delivery_mode = mode;
                serde_json::to_vec(&m).ok().or_else(|| Some(old.to_vec()))
            }
            Err(e) => {
                *failed.borrow_mut() = Some(e);
                Some(old.to_vec())
            }
        }
    })?;
    if let Some(e) = failed.into_inner() {
        return Err(e.into());
    }
    new.map(|v| serde_json::from_slice(&v).map_err(Into::into))
        .transpose()
}

/// Deletes a list: the list record goes and a tombstone comes in one
/// transaction (under the directory lock); then its members are removed in
/// batches and the tombstone last. A crash in between leaves the tombstone,
/// and open finishes the purge, so old members never come back under a
/// re-created list. `between` runs after the transaction (a test makes it
/// fail, as a crash would).
pub(super) fn delete_list(
    t: &Trees,
    lock: &std::sync::Mutex<()>,
    key: &str,
    between: impl FnOnce() -> Result<()>,
) -> Result<()> {
    {
        let _held = lock.lock().map_err(|_| StoreError::Closed)?;
        use sled::Transactional;
        (&t.lists, &t.purges)
            .transaction(|(lists, purges)| {
                if lists.remove(key.as_bytes())?.is_none() {
                    return Err(sled::transaction::ConflictableTransactionError::Abort(
                        StoreError::NotFound(format!("list {key}")),
                    ));
                }
                purges.insert(key.as_bytes(), &[])?;
                Ok(())
            })
            .map_err(fanout::tx_err)?;
    }
    between()?;
    purge_list(t, key)
}

/// Removes a deleted list's members and digest, then its tombstone.
pub(super) fn purge_list(t: &Trees, list: &str) -> Result<()> {
    remove_prefix(&t.members, &key2(list, ""))?;
    super::digest::purge(t, list)?;
    t.purges.remove(list)?;
    Ok(())
}

/// Removes every key of `tree` under `prefix`, [`SLED_BATCH`] at a time.
pub(super) fn remove_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<()> {
    loop {
        let keys = tree
            .scan_prefix(prefix)
            .keys()
            .take(SLED_BATCH)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k);
        }
        tree.apply_batch(batch)?;
    }
}

/// Finishes the member purges of lists deleted before a crash.
pub(super) fn finish_list_purges(t: &Trees) -> Result<()> {
    for k in t.purges.iter().keys() {
        let list = String::from_utf8_lossy(&k?).into_owned();
        warn!(%list, "finishing the deletion of a list's members and digest cut short by a crash");
        purge_list(t, &list)?;
    }
    Ok(())
}

/// The member key (`local@domain`) of a record key `list\0domain\0local`.
fn key_of(list_prefix: &[u8], key: &[u8]) -> String {
    let rest = key.get(list_prefix.len()..).unwrap_or_default();
    let (domain, local) = rest
        .iter()
        .position(|&b| b == 0)
        .map_or((rest, &[][..]), |i| (&rest[..i], &rest[i + 1..]));
    format!(
        "{}@{}",
        String::from_utf8_lossy(local),
        String::from_utf8_lossy(domain)
    )
}

#[async_trait]
impl Directory for SledStore {
    async fn create_domain(&self, domain: &Domain) -> Result<()> {
        let v = serde_json::to_vec(domain)?;
        match self
            .trees
            .domains
            .compare_and_swap(&domain.name, None as Option<&[u8]>, Some(v))?
        {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Exists(format!("domain {}", domain.name))),
        }
    }

    async fn domain(&self, name: &str) -> Result<Option<Domain>> {
        get(&self.trees.domains, name)
    }

    async fn domains(&self) -> Result<Vec<Domain>> {
        self.blocking(|t| values(t.domains.iter())).await
    }

    async fn update_domain(&self, domain: &Domain) -> Result<()> {
        if !self.trees.domains.contains_key(&domain.name)? {
            return Err(StoreError::NotFound(format!("domain {}", domain.name)));
        }
        put(&self.trees.domains, &domain.name, domain)
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        // Under the directory lock no list is created between the guard and
        // the removal.
        self.directory_change(move |t| {
            rules::may_delete_domain(&name, &lists_of(t, Some(&name))?)?;
            match t.domains.remove(&name)? {
                Some(_) => Ok(()),
                None => Err(StoreError::NotFound(format!("domain {name}"))),
            }
        })
        .await?;
        self.durable().await
    }

    async fn create_list(&self, list: &List) -> Result<()> {
        let list = list.clone();
        self.directory_change(move |t| {
            if t.purges.contains_key(list.key())? {
                return Err(StoreError::Invalid(format!(
                    "list {} is still being deleted; retry in a moment",
                    list.address
                )));
            }
            let v = serde_json::to_vec(&list)?;
            match t
                .lists
                .compare_and_swap(list.key(), None as Option<&[u8]>, Some(v))?
            {
                Ok(()) => Ok(()),
                Err(_) => Err(StoreError::Exists(format!("list {}", list.address))),
            }
        })
        .await
    }

    async fn list(&self, key: &str) -> Result<Option<List>> {
        get(&self.trees.lists, key)
    }

    async fn lists(&self, domain: Option<&str>) -> Result<Vec<List>> {
        let domain = domain.map(str::to_string);
        self.blocking(move |t| lists_of(t, domain.as_deref())).await
    }

    async fn update_list(&self, list: &List) -> Result<()> {
        if !self.trees.lists.contains_key(list.key())? {
            return Err(StoreError::NotFound(format!("list {}", list.address)));
        }
        put(&self.trees.lists, list.key(), list)
    }

    async fn delete_list(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        let lock = self.directory.clone();
        self.blocking(move |t| delete_list(t, &lock, &key, || Ok(())))
            .await?;
        self.durable().await
    }

    async fn add_members(&self, list: &str, members: &[Member]) -> Result<Vec<bool>> {
        let (list, members) = (list.to_string(), members.to_vec());
        self.directory_change(move |t| add_members(t, &list, &members))
            .await
    }

    async fn remove_member(&self, list: &str, member_key: &str) -> Result<bool> {
        Ok(self
            .trees
            .members
            .remove(self::member_key(list, member_key))?
            .is_some())
    }

    async fn members(&self, list: &str) -> Result<Vec<Member>> {
        let prefix = key2(list, "");
        self.blocking(move |t| values(t.members.scan_prefix(prefix)))
            .await
    }

    /// Pages follow sled's key order, list/domain/local: a list's members
    /// grouped by domain (the order fan-out plans in), not sorted by address.
    async fn members_page(
        &self,
        list: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        let prefix = key2(list, "");
        let start = after.map(|a| member_key(list, a));
        self.blocking(move |t| {
            let iter = match start {
                Some(k) => t
                    .members
                    .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded)),
                None => t.members.range(prefix.clone()..),
            };
            let mut out = Vec::with_capacity(limit.min(10_000));
            for kv in iter {
                let (k, v) = kv?;
                if !k.starts_with(&prefix) || out.len() >= limit {
                    break;
                }
                out.push(serde_json::from_slice(&v)?);
            }
            Ok(out)
        })
        .await
    }

    async fn audience_page(
        &self,
        list: &str,
        audience: DeliveryMode,
        received_at: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DeliveryPage> {
        /// The fields planning needs, borrowed from the record.
        #[derive(serde::Deserialize)]
        struct View<'a> {
            #[serde(borrow)]
            address: std::borrow::Cow<'a, str>,
            #[serde(default)]
            added_at: u64,
            #[serde(default = "enabled")]
            delivery_enabled: bool,
            #[serde(default)]
            delivery_mode: DeliveryMode,
        }
        fn enabled() -> bool {
            true
        }
        let prefix = key2(list, "");
        let start = after.map(|a| member_key(list, a));
        let limit = limit.max(1);
        self.blocking(move |t| {
            let iter = match start {
                Some(k) => t
                    .members
                    .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded)),
                None => t.members.range(prefix.clone()..),
            };
            let mut page = DeliveryPage::default();
            let (mut read, mut last) = (0, None);
            for kv in iter {
                let (k, v) = kv?;
                if !k.starts_with(&prefix) {
                    break;
                }
                if read == limit {
                    // More members follow: continue after the last one read.
                    page.next = last.map(|l: sled::IVec| key_of(&prefix, &l));
                    break;
                }
                let m: View = serde_json::from_slice(&v)?;
                if m.delivery_enabled && m.delivery_mode == audience && m.added_at <= received_at {
                    page.addresses.push(m.address.into_owned());
                }
                read += 1;
                last = Some(k);
            }
            Ok(page)
        })
        .await
    }

    async fn member_count(&self, list: &str) -> Result<u64> {
        let prefix = key2(list, "");
        self.blocking(move |t| Ok(t.members.scan_prefix(prefix).keys().count() as u64))
            .await
    }

    async fn member(&self, list: &str, member_key: &str) -> Result<Option<Member>> {
        get(&self.trees.members, self::member_key(list, member_key))
    }

    async fn set_delivery(&self, list: &str, member_key: &str, enabled: bool) -> Result<bool> {
        bounce::set_delivery(&self.trees, &self::member_key(list, member_key), enabled)
    }

    async fn set_delivery_mode(
        &self,
        list: &str,
        member_key: &str,
        mode: DeliveryMode,
    ) -> Result<Option<Member>> {
        let key = self::member_key(list, member_key);
        self.blocking(move |t| set_delivery_mode(t, &key, mode))
            .await
    }

    async fn update_member(&self, list: &str, member: &Member) -> Result<bool> {
        moderation::update_member(&self.trees, list, member)
    }
}
