//! Applies a [`Plan`]: reads what listrelay holds, compares, and sends only
//! the admin requests that change something, list by list. The same
//! comparison makes the `--dry-run` report, so what it prints is what a run
//! would do. Every change is an [`admin::Request`], executed (and audited)
//! by the running server or on the store, like any other command.

use std::collections::HashMap;

use anyhow::{bail, Result};
use serde::Serialize;

use super::{ListImport, MemberImport, Plan, Setting, Unmapped};
use crate::address::Address;
use crate::admin::protocol::{InvalidAddress, ListInfo};
use crate::admin::{Item, Request, Response};
use crate::model::ban::Ban;
use crate::model::{ListSettings, Member};

/// Members sent per `MemberAdd`: as `member import` does.
const ADD_SLICE: usize = 10_000;

/// Where requests go: the CLI's client (the server's admin socket, or the
/// store opened in this process).
#[async_trait::async_trait]
pub trait Door: Send {
    /// Sends one request; streamed items go to `on_item`.
    async fn call(
        &mut self,
        req: Request,
        on_item: &mut (dyn FnMut(Item) -> std::io::Result<()> + Send),
    ) -> Result<Response>;

    /// Whether this error means there is no store yet (an empty site).
    fn no_store(&self, e: &anyhow::Error) -> bool;
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Where the plan was read from.
    pub source: String,
    /// Nothing was changed: this is what a run would do.
    pub dry_run: bool,
    /// Domains created.
    pub domains_created: Vec<String>,
    /// Each list's outcome, in plan order.
    pub lists: Vec<ListReport>,
}

impl Report {
    /// Whether anything changed (or would).
    pub fn changed(&self) -> bool {
        !self.domains_created.is_empty() || self.lists.iter().any(ListReport::changed)
    }
}

/// One list's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListReport {
    /// The posting address.
    pub list: String,
    /// Where it is in the source.
    pub origin: String,
    /// The list was created.
    pub created: bool,
    /// Settings changed.
    pub settings: Vec<SettingChange>,
    /// Settings listrelay refused, with its reason.
    pub refused: Vec<SettingChange>,
    /// Members added.
    pub members_added: u64,
    /// Members whose mode or flags changed.
    pub members_changed: Vec<MemberChange>,
    /// Members already as the source has them.
    pub members_unchanged: u64,
    /// Members of the listrelay list the source does not have: left alone.
    pub members_only_here: u64,
    /// Addresses listrelay refused.
    pub invalid: Vec<InvalidAddress>,
    /// Bans added.
    pub bans_added: Vec<String>,
    /// Source settings with no equivalent.
    pub unmapped: Vec<Unmapped>,
}

impl ListReport {
    /// Whether anything changed (or would).
    pub fn changed(&self) -> bool {
        self.created
            || !self.settings.is_empty()
            || self.members_added > 0
            || !self.members_changed.is_empty()
            || !self.bans_added.is_empty()
    }
}

/// One setting as it was and as it becomes.
#[derive(Debug, Clone, Serialize)]
pub struct SettingChange {
    /// listrelay's key.
    pub key: String,
    /// Its value before (JSON text).
    pub from: String,
    /// Its value after, or the reason it was refused.
    pub to: String,
    /// The source setting it comes from.
    pub source: String,
}

/// One member flag as it was and as it becomes.
#[derive(Debug, Clone, Serialize)]
pub struct MemberChange {
    pub address: String,
    /// `delivery_mode`, `delivery_enabled` or `moderated`.
    pub key: String,
    pub from: String,
    pub to: String,
}

/// Progress of long member imports (a no-op without a terminal).
pub trait Progress: Send {
    /// `n` more members done of `total` for `list`.
    fn advance(&mut self, list: &str, n: u64, total: u64);
}

/// Applies (or with `dry_run`, only compares) the whole plan.
pub async fn apply(
    door: &mut dyn Door,
    plan: &Plan,
    dry_run: bool,
    progress: &mut dyn Progress,
) -> Result<Report> {
    let mut report = Report {
        source: plan.source.clone(),
        dry_run,
        ..Report::default()
    };
    let (domains, lists) = site(door).await?;
    for d in &plan.domains {
        if !domains.contains(&d.to_lowercase()) {
            if !dry_run {
                door.call(
                    Request::DomainCreate {
                        name: d.clone(),
                        opaque: false,
                    },
                    &mut no_items,
                )
                .await?;
            }
            report.domains_created.push(d.clone());
        }
    }
    for l in &plan.lists {
        let current = lists.get(&key(&l.address)?);
        let r = apply_list(door, l, current, dry_run, progress).await?;
        report.lists.push(r);
    }
    Ok(report)
}

/// Domains and lists as listrelay holds them; empty when there is no store
/// yet (the first request that creates something makes it).
async fn site(door: &mut dyn Door) -> Result<(Vec<String>, HashMap<String, ListInfo>)> {
    let domains = match door.call(Request::DomainList, &mut no_items).await {
        Ok(Response::Domains(d)) => d.into_iter().map(|d| d.name).collect(),
        Ok(other) => bail!("unexpected answer to a domain list: {other:?}"),
        Err(e) if door.no_store(&e) => return Ok((Vec::new(), HashMap::new())),
        Err(e) => return Err(e),
    };
    let lists = match door
        .call(Request::ListList { domain: None }, &mut no_items)
        .await?
    {
        Response::Lists(l) => l,
        other => bail!("unexpected answer to a list list: {other:?}"),
    };
    let mut by_key = HashMap::new();
    for l in lists {
        by_key.insert(key(&l.address)?, l);
    }
    Ok((domains, by_key))
}

fn key(address: &str) -> Result<String> {
    Address::parse(address)
        .map(|a| a.key())
        .map_err(|e| anyhow::anyhow!("{address:?} is not a list address ({e})"))
}

fn no_items(item: Item) -> std::io::Result<()> {
    Err(std::io::Error::other(format!(
        "unexpected streamed item {item:?}"
    )))
}

async fn apply_list(
    door: &mut dyn Door,
    l: &ListImport,
    current: Option<&ListInfo>,
    dry_run: bool,
    progress: &mut dyn Progress,
) -> Result<ListReport> {
    let mut r = ListReport {
        list: l.address.clone(),
        origin: l.origin.clone(),
        unmapped: l.unmapped.clone(),
        created: current.is_none(),
        ..ListReport::default()
    };
    if current.is_none() && !dry_run {
        door.call(
            Request::ListCreate {
                address: l.address.clone(),
            },
            &mut no_items,
        )
        .await?;
    }
    let settings = current.map(|c| c.settings.clone()).unwrap_or_default();
    settings_changes(door, l, settings, dry_run, &mut r).await?;
    let members = match current {
        Some(_) => current_members(door, &l.address).await?,
        None => HashMap::new(),
    };
    members_changes(door, l, members, dry_run, progress, &mut r).await?;
    let bans = match current {
        Some(_) => current_bans(door, &l.address).await?,
        None => Vec::new(),
    };
    bans_changes(door, l, bans, dry_run, &mut r).await?;
    Ok(r)
}

/// The list's bans as stored.
async fn current_bans(door: &mut dyn Door, list: &str) -> Result<Vec<String>> {
    match door
        .call(
            Request::BanList {
                list: list.to_string(),
            },
            &mut no_items,
        )
        .await?
    {
        Response::Bans(b) => Ok(b.bans),
        other => bail!("unexpected answer to a ban list: {other:?}"),
    }
}

/// Each ban in its stored form (listrelay's own parser), added when the
/// list lacks it; one listrelay cannot run is reported, not fatal.
async fn bans_changes(
    door: &mut dyn Door,
    l: &ListImport,
    mut have: Vec<String>,
    dry_run: bool,
    r: &mut ListReport,
) -> Result<()> {
    for pattern in &l.bans {
        let stored = match Ban::parse(pattern) {
            Ok(b) => b.text().to_string(),
            Err(e) => {
                r.refused.push(SettingChange {
                    key: "ban".into(),
                    from: String::new(),
                    to: format!("{pattern:?} refused: {e}"),
                    source: "bans".into(),
                });
                continue;
            }
        };
        if have.contains(&stored) {
            continue;
        }
        if !dry_run {
            door.call(
                Request::BanAdd {
                    list: l.address.clone(),
                    pattern: pattern.clone(),
                },
                &mut no_items,
            )
            .await?;
        }
        have.push(stored.clone());
        r.bans_added.push(stored);
    }
    Ok(())
}

/// Each setting compared through listrelay's own parser: the value is set
/// on a copy of the current settings, and only a different result is sent.
async fn settings_changes(
    door: &mut dyn Door,
    l: &ListImport,
    mut settings: ListSettings,
    dry_run: bool,
    r: &mut ListReport,
) -> Result<()> {
    for Setting { key, value, from } in &l.settings {
        let before = field(&settings, key);
        let mut next = settings.clone();
        if let Err(e) = next.set(key, value) {
            r.refused.push(SettingChange {
                key: key.clone(),
                from: before,
                to: format!("{value:?} refused: {e}"),
                source: from.clone(),
            });
            continue;
        }
        let after = field(&next, key);
        if after == before {
            continue;
        }
        if !dry_run {
            door.call(
                Request::ListSet {
                    address: l.address.clone(),
                    key: key.clone(),
                    value: value.clone(),
                },
                &mut no_items,
            )
            .await?;
        }
        settings = next;
        r.settings.push(SettingChange {
            key: key.clone(),
            from: before,
            to: after,
            source: from.clone(),
        });
    }
    Ok(())
}

/// One setting's value as JSON text.
fn field(settings: &ListSettings, key: &str) -> String {
    serde_json::to_value(settings)
        .ok()
        .and_then(|v| v.get(key).cloned())
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// The list's members by key, streamed a page at a time by the server.
async fn current_members(door: &mut dyn Door, list: &str) -> Result<HashMap<String, Member>> {
    let mut members = HashMap::new();
    door.call(
        Request::MemberList {
            list: list.to_string(),
        },
        &mut |item| {
            let Item::Member(m) = item;
            members.insert(m.address.key(), m);
            Ok(())
        },
    )
    .await?;
    Ok(members)
}

/// The flags of a member as the plan wants them, against what it has.
fn flag_changes(want: &MemberImport, have: &Member) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let mode = member_mode(have);
    if want.mode.name() != mode {
        out.push((
            "delivery_mode",
            mode.to_string(),
            want.mode.name().to_string(),
        ));
    }
    if want.delivery_enabled != have.delivery_enabled {
        out.push((
            "delivery_enabled",
            have.delivery_enabled.to_string(),
            want.delivery_enabled.to_string(),
        ));
    }
    if want.moderated != have.moderated {
        out.push((
            "moderated",
            have.moderated.to_string(),
            want.moderated.to_string(),
        ));
    }
    out
}

/// A member's delivery mode as listrelay holds it.
fn member_mode(m: &Member) -> &'static str {
    m.delivery_mode.name()
}

async fn members_changes(
    door: &mut dyn Door,
    l: &ListImport,
    mut have: HashMap<String, Member>,
    dry_run: bool,
    progress: &mut dyn Progress,
    r: &mut ListReport,
) -> Result<()> {
    let total = l.members.len() as u64;
    let mut new = Vec::new();
    let mut sets = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in &l.members {
        let a = match Address::parse(&m.address) {
            Ok(a) => a,
            Err(e) => {
                r.invalid.push(InvalidAddress {
                    address: m.address.clone(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        if !seen.insert(a.key()) {
            continue;
        }
        let (current, is_new) = match have.remove(&a.key()) {
            Some(c) => (c, false),
            None => (Member::new(a), true),
        };
        let changes = flag_changes(m, &current);
        if is_new {
            new.push(m.address.clone());
        } else if changes.is_empty() {
            r.members_unchanged += 1;
        }
        for (key, from, to) in changes {
            sets.push((m.address.clone(), key, to.clone()));
            // A new member's mode and flags are part of its addition.
            if !is_new {
                r.members_changed.push(MemberChange {
                    address: m.address.clone(),
                    key: key.to_string(),
                    from,
                    to,
                });
            }
        }
    }
    r.members_only_here = have.len() as u64;
    r.members_added = new.len() as u64;
    if dry_run {
        return Ok(());
    }
    for slice in new.chunks(ADD_SLICE) {
        let req = Request::MemberAdd {
            list: l.address.clone(),
            addresses: slice.to_vec(),
        };
        match door.call(req, &mut no_items).await? {
            Response::MembersAdded(a) => r.invalid.extend(a.invalid),
            other => bail!("unexpected answer to a member add: {other:?}"),
        }
        progress.advance(&l.address, slice.len() as u64, total);
    }
    for (address, key, value) in sets {
        door.call(
            Request::MemberSet {
                list: l.address.clone(),
                address,
                key: key.to_string(),
                value,
            },
            &mut no_items,
        )
        .await?;
        progress.advance(&l.address, 1, total);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The comparison against a real [`crate::admin::Admin`] on a temp
    //! embedded store: what a run changes, that a second one changes
    //! nothing, and that a dry run leaves the store as it was.

    use std::sync::Arc;

    use super::*;
    use crate::admin::Admin;
    use crate::import::Mode;
    use crate::store::{Directory, SledStore};

    struct AdminDoor(Admin);

    #[async_trait::async_trait]
    impl Door for AdminDoor {
        async fn call(
            &mut self,
            req: Request,
            on_item: &mut (dyn FnMut(Item) -> std::io::Result<()> + Send),
        ) -> Result<Response> {
            let mut items = Vec::new();
            let r = self.0.execute(req, &mut items).await?;
            items.into_iter().try_for_each(&mut *on_item)?;
            Ok(r)
        }

        fn no_store(&self, _: &anyhow::Error) -> bool {
            false
        }
    }

    struct Quiet;
    impl Progress for Quiet {
        fn advance(&mut self, _: &str, _: u64, _: u64) {}
    }

    fn plan() -> Plan {
        let mut l = ListImport {
            address: "dev@lists.example.org".into(),
            origin: "test".into(),
            ..ListImport::default()
        };
        l.set("subject_prefix", "[dev] ", "prefix");
        l.set("max_message_size", "not a number", "maxmailsize");
        l.set_addresses("owners", vec!["o@example.org".into()], "owner");
        l.members = vec![
            MemberImport::regular("a@example.net"),
            MemberImport {
                mode: Mode::DigestPlain,
                moderated: true,
                ..MemberImport::regular("d@example.net")
            },
            MemberImport::regular("A@EXAMPLE.NET"),
            MemberImport::regular("not an address"),
        ];
        l.bans = vec!["spam@bad.example".into(), "^(?=x)".into()];
        Plan {
            source: "test".into(),
            domains: vec!["other.example.org".into()],
            lists: vec![l],
        }
    }

    #[tokio::test]
    async fn a_run_changes_what_differs_and_a_second_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let mut door = AdminDoor(Admin {
            store: store.clone(),
            delimiter: '+',
            bounce_scope: Default::default(),
            moderation: None,
        });
        let plan = plan();

        let dry = apply(&mut door, &plan, true, &mut Quiet).await.unwrap();
        assert!(dry.changed());
        let Response::Lists(lists) = door
            .call(Request::ListList { domain: None }, &mut no_items)
            .await
            .unwrap()
        else {
            panic!("lists")
        };
        assert!(lists.is_empty(), "a dry run changes nothing");

        let first = apply(&mut door, &plan, false, &mut Quiet).await.unwrap();
        let l = &first.lists[0];
        assert_eq!(first.domains_created, ["other.example.org"]);
        assert!(l.created);
        assert_eq!(l.members_added, 2, "one per address, case-blind");
        assert_eq!(l.invalid.len(), 1);
        assert_eq!(l.bans_added, ["spam@bad.example"]);
        let refused: Vec<&str> = l.refused.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(refused, ["max_message_size", "ban"]);
        let d = store
            .member("dev@lists.example.org", "d@example.net")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.delivery_mode.name(), d.moderated),
            ("digest_plain", true)
        );

        let second = apply(&mut door, &plan, false, &mut Quiet).await.unwrap();
        assert!(!second.changed(), "{second:?}");
        assert_eq!(second.lists[0].members_unchanged, 2);
    }
}
