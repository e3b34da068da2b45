//! Administration: every change an operator makes (domains, lists, members) is
//! an [`Request`] executed against the store, either inside the running server
//! (reached over its admin socket) or directly when no server runs.

mod socket;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use crate::address::{self, Address};
use crate::clock::now;
use crate::model::{Domain, List, Member};
use crate::store::{Store, StoreError};

pub use socket::{call, serve, CallError};

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// One administrative operation; the same value travels over the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    DomainCreate {
        name: String,
        opaque: bool,
    },
    DomainList,
    DomainSet {
        name: String,
        key: String,
        value: String,
    },
    DomainDelete {
        name: String,
    },
    ListCreate {
        address: String,
    },
    ListShow {
        address: String,
    },
    ListList {
        domain: Option<String>,
    },
    ListSet {
        address: String,
        key: String,
        value: String,
    },
    ListDelete {
        address: String,
    },
    MemberAdd {
        list: String,
        addresses: Vec<String>,
    },
    MemberRemove {
        list: String,
        addresses: Vec<String>,
    },
    MemberList {
        list: String,
    },
    Queue,
    /// One stored message's bytes (hex in the JSON answer).
    MessageBody {
        id: String,
    },
    BounceShow {
        list: String,
        member: Option<String>,
    },
    BounceReset {
        list: String,
        member: String,
    },
    /// Held posts of a list.
    HeldList {
        list: String,
    },
    HeldShow {
        list: String,
        message_id: String,
    },
    /// Approve, reject or discard a held post.
    HeldAct {
        list: String,
        message_id: String,
        action: crate::moderation::Action,
    },
    /// Sets a member's flag (`moderated`).
    MemberSet {
        list: String,
        address: String,
        key: String,
        value: String,
    },
}

fn parse_address(what: &str, s: &str) -> Result<Address, AdminError> {
    Address::parse(s).map_err(|e| AdminError::Invalid(format!("{what} {s:?}: {e}")))
}

async fn existing_list(store: &dyn Store, address: &str) -> Result<List, AdminError> {
    let a = parse_address("list address", address)?;
    store
        .list(&a.key())
        .await?
        .ok_or_else(|| AdminError::Invalid(format!("no list {a}")))
}

fn domain_json(d: &Domain) -> Value {
    json!({"name": d.name, "opaque": d.opaque, "created_at": d.created_at})
}

async fn list_json(store: &dyn Store, l: &List) -> Result<Value, AdminError> {
    Ok(json!({
        "address": l.address.to_string(),
        "list_id": l.list_id(),
        "members": store.member_count(&l.key()).await?,
        "created_at": l.created_at,
        "settings": l.settings,
    }))
}

/// What administrative requests act on.
pub struct Admin {
    pub store: Arc<dyn Store>,
    /// The recipient delimiter, which a list name may not contain.
    pub delimiter: char,
    /// The site's bounce scope (`[bounce] scope`), for bounce show/reset.
    pub bounce_scope: crate::bounce::BounceScope,
    /// Moderation (held posts); `None` where there is no way to send notices.
    pub moderation: Option<Arc<crate::moderation::Service>>,
}

impl Admin {
    /// Executes a request against the store and returns its JSON result.
    /// Changes are durable when it returns.
    pub async fn execute(&self, req: Request) -> Result<Value, AdminError> {
        let value = match req {
            Request::HeldList { .. } | Request::HeldShow { .. } | Request::HeldAct { .. } => {
                self.held(req).await?
            }
            req => execute(self.store.as_ref(), self.delimiter, self.bounce_scope, req).await?,
        };
        self.store.sync().await?;
        Ok(value)
    }
}

impl Admin {
    async fn held(&self, req: Request) -> Result<Value, AdminError> {
        let store = self.store.as_ref();
        let held_json = |h: &crate::moderation::HeldPost| {
            json!({"id": h.id, "message_id": h.message_id, "hash": h.hash, "reason": h.reason,
                   "sender": h.sender, "subject": h.subject, "size": h.size, "held_at": h.held_at})
        };
        let svc = || {
            self.moderation
                .clone()
                .ok_or_else(|| AdminError::Invalid("moderation is not available here".into()))
        };
        Ok(match req {
            Request::HeldList { list } => {
                let l = existing_list(store, &list).await?;
                Value::Array(
                    store
                        .held_posts(Some(&l.key()))
                        .await?
                        .iter()
                        .map(held_json)
                        .collect(),
                )
            }
            Request::HeldShow { list, message_id } => {
                let l = existing_list(store, &list).await?;
                let h = svc()?.find_held(&l, &message_id).await?.ok_or_else(|| {
                    AdminError::Invalid(format!("nothing held with Message-ID {message_id}"))
                })?;
                let mut v = held_json(&h);
                let body = store.message_body(&h.id).await?;
                v["message"] = Value::String(String::from_utf8_lossy(&body).into_owned());
                v
            }
            Request::HeldAct {
                list,
                message_id,
                action,
            } => {
                let l = existing_list(store, &list).await?;
                let s = svc()?;
                let h = s.find_held(&l, &message_id).await?.ok_or_else(|| {
                    AdminError::Invalid(format!("nothing held with Message-ID {message_id}"))
                })?;
                let done = s.act(&l, &h, action, "admin").await?;
                json!({"message_id": h.message_id, "action": action.name(),
                       "done": done == crate::moderation::actions::Acted::Done(action)})
            }
            _ => return Err(AdminError::Invalid("not a held-post request".into())),
        })
    }
}

async fn execute(
    store: &dyn Store,
    delimiter: char,
    bounce_scope: crate::bounce::BounceScope,
    req: Request,
) -> Result<Value, AdminError> {
    Ok(match req {
        Request::DomainCreate { name, opaque } => {
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
            };
            store.create_domain(&d).await?;
            domain_json(&d)
        }
        Request::DomainList => {
            Value::Array(store.domains().await?.iter().map(domain_json).collect())
        }
        Request::DomainSet { name, key, value } => {
            let mut d = store
                .domain(&name.to_ascii_lowercase())
                .await?
                .ok_or_else(|| AdminError::Invalid(format!("no domain {name}")))?;
            match key.as_str() {
                "opaque" => {
                    d.opaque = value.parse().map_err(|_| {
                        AdminError::Invalid(format!("opaque: {value:?} is not true or false"))
                    })?
                }
                _ => {
                    return Err(AdminError::Invalid(format!(
                        "unknown domain setting {key:?} (known: opaque)"
                    )))
                }
            }
            store.update_domain(&d).await?;
            domain_json(&d)
        }
        Request::DomainDelete { name } => {
            store.delete_domain(&name.to_ascii_lowercase()).await?;
            json!({"deleted": name})
        }
        Request::ListCreate { address } => {
            let a = parse_address("list address", &address)?;
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
                };
                match store.create_domain(&d).await {
                    Ok(()) | Err(StoreError::Exists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let l = List::new(a);
            store.create_list(&l).await?;
            list_json(store, &l).await?
        }
        Request::ListShow { address } => {
            let l = existing_list(store, &address).await?;
            list_json(store, &l).await?
        }
        Request::ListList { domain } => {
            let mut out = Vec::new();
            for l in store.lists(domain.as_deref()).await? {
                out.push(list_json(store, &l).await?);
            }
            Value::Array(out)
        }
        Request::ListSet {
            address,
            key,
            value,
        } => {
            let mut l = existing_list(store, &address).await?;
            l.settings
                .set(&key, &value)
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            store.update_list(&l).await?;
            list_json(store, &l).await?
        }
        Request::ListDelete { address } => {
            let l = existing_list(store, &address).await?;
            store.delete_list(&l.key()).await?;
            json!({"deleted": l.address.to_string()})
        }
        Request::MemberAdd { list, addresses } => {
            let l = existing_list(store, &list).await?;
            let mut members = Vec::new();
            let mut invalid = Vec::new();
            for a in &addresses {
                match Address::parse(a) {
                    Ok(a) => members.push(Member::new(a)),
                    Err(e) => invalid.push(json!({"address": a, "error": e.to_string()})),
                }
            }
            let added = store.add_members(&l.key(), &members).await?;
            let n_added = added.iter().filter(|&&b| b).count();
            json!({"added": n_added, "already": added.len() - n_added, "invalid": invalid})
        }
        Request::MemberRemove { list, addresses } => {
            let l = existing_list(store, &list).await?;
            let mut removed = 0;
            let mut missing = Vec::new();
            for a in &addresses {
                let key = parse_address("member address", a)?.key();
                if store.remove_member(&l.key(), &key).await? {
                    removed += 1;
                } else {
                    missing.push(a.clone());
                }
            }
            json!({"removed": removed, "not_members": missing})
        }
        Request::MemberList { list } => {
            let l = existing_list(store, &list).await?;
            Value::Array(
                store
                    .members(&l.key())
                    .await?
                    .iter()
                    .map(|m| {
                        json!({"address": m.address.to_string(), "added_at": m.added_at,
                               "delivery_enabled": m.delivery_enabled, "moderated": m.moderated})
                    })
                    .collect(),
            )
        }
        Request::MemberSet {
            list,
            address,
            key,
            value,
        } => {
            let l = existing_list(store, &list).await?;
            let a = parse_address("member address", &address)?;
            let mut m = store.member(&l.key(), &a.key()).await?.ok_or_else(|| {
                AdminError::Invalid(format!("{a} is not a member of {}", l.address))
            })?;
            let flag: bool = value.parse().map_err(|_| {
                AdminError::Invalid(format!("{key}: {value:?} is not true or false"))
            })?;
            match key.as_str() {
                "moderated" => m.moderated = flag,
                "delivery_enabled" => m.delivery_enabled = flag,
                _ => {
                    return Err(AdminError::Invalid(format!(
                        "unknown member setting {key:?} (known: moderated, delivery_enabled)"
                    )))
                }
            }
            store.update_member(&l.key(), &m).await?;
            json!({"address": m.address.to_string(), "moderated": m.moderated,
                   "delivery_enabled": m.delivery_enabled})
        }
        Request::HeldList { .. } | Request::HeldShow { .. } | Request::HeldAct { .. } => {
            return Err(AdminError::Invalid(
                "held posts need the moderation service".into(),
            ))
        }
        Request::BounceShow { list, member } => {
            let l = existing_list(store, &list).await?;
            crate::bounce::handler::show(store, bounce_scope, &l, member.as_deref()).await?
        }
        Request::BounceReset { list, member } => {
            let l = existing_list(store, &list).await?;
            let m = parse_address("member address", &member)?;
            if store.member(&l.key(), &m.key()).await?.is_none() {
                return Err(AdminError::Invalid(format!(
                    "{m} is not a member of {}",
                    l.address
                )));
            }
            crate::bounce::handler::reset(store, bounce_scope, &l, &m.key()).await?
        }
        Request::MessageBody { id } => {
            let body = store.message_body(&id).await?;
            json!({"id": id, "body_hex": hex::encode(body)})
        }
        Request::Queue => json!({
            "messages": store.messages(true).await?,
            "jobs": store.jobs().await?,
            "chunks": store.chunks().await?,
        }),
    })
}
