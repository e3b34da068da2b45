//! Domains, lists and members: the directory an operator edits.

use super::protocol::{AddReport, Deleted, InvalidAddress, ListInfo, RemoveReport, StreamEnd};
use super::{existing_list, parse_address, AdminError, Item, ItemSink, Response};
use crate::address::{self, Address};
use crate::clock::now;
use crate::model::{DeliveryMode, Domain, List, Member};
use crate::store::{Store, StoreError};

pub(super) async fn domain_create(
    store: &dyn Store,
    name: String,
    opaque: bool,
) -> Result<Response, AdminError> {
    let name = name.to_ascii_lowercase();
    if !address::valid_domain(&name) {
        return Err(AdminError::Invalid(format!(
            "{name:?} is not a domain name"
        )));
    }
    let d = Domain {
        name,
        opaque,
        created_at: now(),
        arc_seal: None,
    };
    store.create_domain(&d).await?;
    Ok(Response::Domain(d))
}

pub(super) async fn domain_set(
    store: &dyn Store,
    name: &str,
    key: &str,
    value: &str,
) -> Result<Response, AdminError> {
    let mut d = store
        .domain(&name.to_ascii_lowercase())
        .await?
        .ok_or_else(|| AdminError::Invalid(format!("no domain {name}")))?;
    d.set(key, value)
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    store.update_domain(&d).await?;
    Ok(Response::Domain(d))
}

pub(super) async fn domain_delete(store: &dyn Store, name: String) -> Result<Response, AdminError> {
    store.delete_domain(&name.to_ascii_lowercase()).await?;
    Ok(Response::Deleted(Deleted { deleted: name }))
}

/// A list as the protocol shows it, with its member count.
pub(super) async fn list_info(store: &dyn Store, l: &List) -> Result<ListInfo, AdminError> {
    Ok(ListInfo {
        address: l.address.to_string(),
        list_id: l.list_id(),
        members: store.member_count(&l.key()).await?,
        created_at: l.created_at,
        settings: l.settings.clone(),
    })
}

pub(super) async fn list_create(
    store: &dyn Store,
    delimiter: char,
    address: &str,
) -> Result<Response, AdminError> {
    let a = parse_address("list address", address)?;
    if address::reserved_list_name(a.local()) {
        return Err(AdminError::Invalid(format!(
            "{a}: a list name may not end in a list suffix such as -bounces or -request"
        )));
    }
    if a.local().contains(delimiter) {
        return Err(AdminError::Invalid(format!(
            "{a}: a list name may not contain the recipient delimiter"
        )));
    }
    // A list's domain is created with it: one step for the common case.
    if store.domain(a.domain()).await?.is_none() {
        let d = Domain {
            name: a.domain().to_string(),
            opaque: false,
            created_at: now(),
            arc_seal: None,
        };
        match store.create_domain(&d).await {
            Ok(()) | Err(StoreError::Exists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let l = List::new(a);
    store.create_list(&l).await?;
    Ok(Response::List(list_info(store, &l).await?))
}

pub(super) async fn list_list(
    store: &dyn Store,
    domain: Option<&str>,
) -> Result<Response, AdminError> {
    let mut out = Vec::new();
    for l in store.lists(domain).await? {
        out.push(list_info(store, &l).await?);
    }
    Ok(Response::Lists(out))
}

pub(super) async fn list_set(
    store: &dyn Store,
    address: &str,
    key: &str,
    value: &str,
) -> Result<Response, AdminError> {
    let mut l = existing_list(store, address).await?;
    l.settings
        .set(key, value)
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    store.update_list(&l).await?;
    Ok(Response::List(list_info(store, &l).await?))
}

pub(super) async fn list_delete(store: &dyn Store, address: &str) -> Result<Response, AdminError> {
    let l = existing_list(store, address).await?;
    store.delete_list(&l.key()).await?;
    Ok(Response::Deleted(Deleted {
        deleted: l.address.to_string(),
    }))
}

pub(super) async fn member_add(
    store: &dyn Store,
    list: &str,
    addresses: &[String],
) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    let mut members = Vec::new();
    let mut invalid = Vec::new();
    for a in addresses {
        match Address::parse(a) {
            Ok(a) => members.push(Member::new(a)),
            Err(e) => invalid.push(InvalidAddress {
                address: a.clone(),
                error: e.to_string(),
            }),
        }
    }
    let added = store.add_members(&l.key(), &members).await?;
    let n_added = added.iter().filter(|&&b| b).count() as u64;
    Ok(Response::MembersAdded(AddReport {
        added: n_added,
        already: added.len() as u64 - n_added,
        invalid,
    }))
}

pub(super) async fn member_remove(
    store: &dyn Store,
    list: &str,
    addresses: &[String],
) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    let mut removed = 0;
    let mut not_members = Vec::new();
    for a in addresses {
        let key = parse_address("member address", a)?.key();
        if store.remove_member(&l.key(), &key).await? {
            removed += 1;
        } else {
            not_members.push(a.clone());
        }
    }
    Ok(Response::MembersRemoved(RemoveReport {
        removed,
        not_members,
    }))
}

/// Members read from the store per page while streaming a list: large enough
/// that the per-read cost vanishes, small enough that memory stays flat.
pub(crate) const MEMBER_PAGE: usize = 1000;

/// Streams the members a page at a time, each page written before the next is
/// read, so neither the server nor the client ever holds the whole list.
pub(super) async fn member_list(
    store: &dyn Store,
    list: &str,
    items: &mut dyn ItemSink,
) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    let mut sent = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store
            .members_page(&l.key(), after.as_deref(), MEMBER_PAGE)
            .await?;
        let full = page.len() == MEMBER_PAGE;
        after = page.last().map(|m| m.address.key());
        for m in page {
            items.item(Item::Member(m)).await?;
            sent += 1;
        }
        if !full {
            break;
        }
    }
    Ok(Response::End(StreamEnd { items: sent }))
}

/// The member settings `member set` knows, for errors.
const MEMBER_KEYS: &str = "moderated, delivery_enabled (true or false), \
                           delivery_mode (regular, nomail, digest_mime, digest_plain)";

pub(super) async fn member_set(
    store: &dyn Store,
    list: &str,
    address: &str,
    key: &str,
    value: &str,
) -> Result<Response, AdminError> {
    let l = existing_list(store, list).await?;
    let a = parse_address("member address", address)?;
    if key == "delivery_mode" {
        let mode: DeliveryMode = value
            .parse()
            .map_err(|e: crate::model::SettingError| AdminError::Invalid(e.to_string()))?;
        // The mode alone, so a bounce handler's change meanwhile stays.
        let m = store
            .set_delivery_mode(&l.key(), &a.key(), mode)
            .await?
            .ok_or_else(|| AdminError::Invalid(format!("{a} is not a member of {}", l.address)))?;
        return Ok(Response::Member(m));
    }
    let mut m = store
        .member(&l.key(), &a.key())
        .await?
        .ok_or_else(|| AdminError::Invalid(format!("{a} is not a member of {}", l.address)))?;
    let flag: bool = value
        .parse()
        .map_err(|_| AdminError::Invalid(format!("{key}: {value:?} is not true or false")))?;
    match key {
        "moderated" => m.moderated = flag,
        "delivery_enabled" => m.delivery_enabled = flag,
        _ => {
            return Err(AdminError::Invalid(format!(
                "unknown member setting {key:?} (known: {MEMBER_KEYS})"
            )))
        }
    }
    store.update_member(&l.key(), &m).await?;
    Ok(Response::Member(m))
}
