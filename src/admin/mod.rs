//! Administration: every change an operator makes (domains, lists, members,
//! held posts, bounce records) is a typed [`Request`] executed against the
//! store, either inside the running server (reached over its admin socket) or
//! directly when no server runs. The answer is a typed [`Response`], preceded
//! by streamed [`Item`]s for answers that may be large (a member list), so
//! that nothing on the way holds all of them. [`protocol`] defines the types.

pub mod access;
mod bans;
mod bounces;
mod directory;
mod held;
pub mod protocol;
pub mod roster;
mod socket;

use std::sync::Arc;

use thiserror::Error;

use crate::address::Address;
use crate::check::probe::ProbeBook;
use crate::model::{AuditEntry, Caller, List};
use crate::store::{Store, StoreError};

pub use protocol::{Frame, Item, Request, Response};
pub use socket::{call, serve, CallError};

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist (a list, a token): the REST
    /// API answers 404 rather than 400.
    #[error("{0}")]
    NotFound(String),
    /// Whoever reads the streamed items went away (a closed socket or pipe).
    #[error("sending the answer: {0}")]
    Output(#[from] std::io::Error),
}

/// Where a streamed answer's items go, one at a time, as they are read.
#[async_trait::async_trait]
pub trait ItemSink: Send {
    /// Takes one item; an error stops the request.
    async fn item(&mut self, item: Item) -> std::io::Result<()>;
}

/// Collects the items, for callers that want the whole answer in memory.
#[async_trait::async_trait]
impl ItemSink for Vec<Item> {
    async fn item(&mut self, item: Item) -> std::io::Result<()> {
        self.push(item);
        Ok(())
    }
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
    /// Executes a request for the CLI of this process's user on the store it
    /// opened itself (see [`Admin::execute_as`]).
    pub async fn execute(
        &self,
        req: Request,
        items: &mut dyn ItemSink,
    ) -> Result<Response, AdminError> {
        self.execute_as(&Caller::local(), req, items).await
    }

    /// Executes a request on behalf of `caller`: streamed items go to
    /// `items`, then the answer is returned. Every change, done or refused,
    /// is written to the audit log here, the one place every door's requests
    /// run. Changes are durable when it returns.
    pub async fn execute_as(
        &self,
        caller: &Caller,
        req: Request,
        items: &mut dyn ItemSink,
    ) -> Result<Response, AdminError> {
        let audit = audited(&req);
        let result = self.run(req, items).await;
        if let Some((action, target, list)) = audit {
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => e.to_string(),
            };
            let entry = AuditEntry::new(
                crate::store::new_id(),
                crate::clock::now(),
                caller,
                action,
                target,
                list,
                outcome,
            );
            crate::store::write_audit(self.store.as_ref(), &entry).await;
        }
        self.store.sync().await?;
        result
    }

    async fn run(&self, req: Request, items: &mut dyn ItemSink) -> Result<Response, AdminError> {
        let store = self.store.as_ref();
        let response = match req {
            Request::DomainCreate { name, opaque } => {
                directory::domain_create(store, name, opaque).await?
            }
            Request::DomainList => Response::Domains(store.domains().await?),
            Request::DomainSet { name, key, value } => {
                directory::domain_set(store, &name, &key, &value).await?
            }
            Request::DomainDelete { name } => directory::domain_delete(store, name).await?,
            Request::ListCreate { address } => {
                directory::list_create(store, self.delimiter, &address).await?
            }
            Request::ListShow { address } => {
                let l = existing_list(store, &address).await?;
                Response::List(directory::list_info(store, &l).await?)
            }
            Request::ListList { domain } => directory::list_list(store, domain.as_deref()).await?,
            Request::ListSet {
                address,
                key,
                value,
            } => directory::list_set(store, &address, &key, &value).await?,
            Request::ListDelete { address } => directory::list_delete(store, &address).await?,
            Request::MemberAdd { list, addresses } => {
                directory::member_add(store, &list, &addresses).await?
            }
            Request::MemberRemove { list, addresses } => {
                directory::member_remove(store, &list, &addresses).await?
            }
            Request::MemberList { list } => directory::member_list(store, &list, items).await?,
            Request::MemberSet {
                list,
                address,
                key,
                value,
            } => directory::member_set(store, &list, &address, &key, &value).await?,
            Request::BanAdd { list, pattern } => bans::add(store, &list, &pattern).await?,
            Request::BanRemove { list, pattern } => bans::remove(store, &list, &pattern).await?,
            Request::BanList { list } => bans::list(store, &list).await?,
            Request::HeldList { list } => held::list(store, &list).await?,
            Request::HeldShow { list, message_id } => {
                held::show(store, self.moderation()?, &list, &message_id).await?
            }
            Request::HeldAct {
                list,
                message_id,
                action,
                reason,
            } => {
                let reason = reason.as_deref().unwrap_or_default();
                held::act(
                    store,
                    self.moderation()?,
                    &list,
                    &message_id,
                    action,
                    reason,
                )
                .await?
            }
            Request::BounceShow { list, member } => {
                bounces::show(store, self.bounce_scope, &list, member.as_deref()).await?
            }
            Request::BounceReset { list, member } => {
                bounces::reset(store, self.bounce_scope, &list, &member).await?
            }
            Request::Queue => Response::Queue(protocol::QueueView {
                messages: store.messages(true).await?,
                jobs: store.jobs().await?,
                chunks: store.chunks().await?,
            }),
            Request::MessageBody { id } => {
                let body = store.message_body(&id).await?;
                let checks = store.message(&id).await?.and_then(|m| held::checks(&m));
                Response::MessageBody(protocol::MessageBody {
                    checks,
                    id,
                    body_hex: hex::encode(body),
                })
            }
            Request::ProbeStart { .. } | Request::ProbeStatus { .. } => {
                return Err(AdminError::Invalid(NO_PROBES.into()))
            }
            Request::MemberPage {
                list,
                after,
                limit,
                prefix,
            } => roster::member_page(store, &list, after, limit, prefix.as_deref()).await?,
            Request::TokenCreate {
                role,
                lists,
                expires_at,
                description,
            } => access::token_create(store, role, &lists, expires_at, description).await?,
            Request::TokenList => access::token_list(store).await?,
            Request::TokenRevoke { id } => access::token_revoke(store, &id).await?,
            Request::AuditList {
                list,
                since,
                after,
                limit,
            } => access::audit_list(store, list.as_deref(), since, after, limit).await?,
        };
        Ok(response)
    }

    /// Answers the MTA self-check's requests from the server's `probes`.
    pub async fn probe(&self, probes: &ProbeBook, req: Request) -> Result<Response, AdminError> {
        match req {
            Request::ProbeStart { domain } => {
                let name = match domain {
                    Some(d) => d.to_ascii_lowercase(),
                    None => self.store.domains().await?.into_iter().next().map(|d| d.name).ok_or_else(
                        || AdminError::Invalid("no domain is configured: create a list first (`listrelay list create LIST@DOMAIN`)".into()),
                    )?,
                };
                if self.store.domain(&name).await?.is_none() {
                    return Err(AdminError::Invalid(format!(
                        "{name} is not a domain of this server: name one of `listrelay domain list`"
                    )));
                }
                Ok(Response::ProbeStarted(probes.start(&name)))
            }
            Request::ProbeStatus { id } => probes.seen(&id).map(Response::ProbeSeen).ok_or_else(|| {
                AdminError::Invalid(format!(
                    "the server does not know probe {id} (it restarted, or the probe is older than 15 minutes): run the check again"
                ))
            }),
            _ => Err(AdminError::Invalid("not a probe request".into())),
        }
    }

    /// The moderation service, where this process has one.
    fn moderation(&self) -> Result<&crate::moderation::Service, AdminError> {
        self.moderation.as_deref().ok_or_else(|| {
            AdminError::Invalid(
                "moderation is not available here: check that the site secret is readable".into(),
            )
        })
    }
}

/// The answer to a probe request where no server runs.
const NO_PROBES: &str = "the MTA check needs the running server (it watches what arrives over LMTP): start it (`systemctl start listrelay` or `listrelay serve`) and run the check again";

fn parse_address(what: &str, s: &str) -> Result<Address, AdminError> {
    Address::parse(s).map_err(|e| AdminError::Invalid(format!("{what} {s:?}: {e}")))
}

async fn existing_list(store: &dyn Store, address: &str) -> Result<List, AdminError> {
    let a = parse_address("list address", address)?;
    store
        .list(&a.key())
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no list {a}")))
}

/// The key of a list named in a request, for the audit log's list column
/// (the text as given, lowercased, when it is not an address).
fn list_key(address: &str) -> String {
    Address::parse(address)
        .map(|a| a.key())
        .unwrap_or_else(|_| address.to_ascii_lowercase())
}

/// The addresses a request names, shortened for the audit log: a member
/// import sends thousands per request.
fn some_addresses(addresses: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = addresses
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if addresses.len() > SHOWN {
        s.push_str(&format!(" and {} more", addresses.len() - SHOWN));
    }
    s
}

/// What the audit log says of a request: its operation, its target and the
/// list it concerns; `None` for requests that change nothing.
pub fn audited(req: &Request) -> Option<(&'static str, String, Option<String>)> {
    let on_list = |op, list: &str, what: String| Some((op, what, Some(list_key(list))));
    match req {
        Request::DomainCreate { name, opaque } => {
            Some(("domain_create", format!("{name} opaque={opaque}"), None))
        }
        Request::DomainSet { name, key, value } => {
            Some(("domain_set", format!("{name} {key}={value}"), None))
        }
        Request::DomainDelete { name } => Some(("domain_delete", name.clone(), None)),
        Request::ListCreate { address } => on_list("list_create", address, address.clone()),
        Request::ListSet {
            address,
            key,
            value,
        } => on_list("list_set", address, format!("{address} {key}={value}")),
        Request::ListDelete { address } => on_list("list_delete", address, address.clone()),
        Request::MemberAdd { list, addresses } => on_list(
            "member_add",
            list,
            format!("{list}: {}", some_addresses(addresses)),
        ),
        Request::MemberRemove { list, addresses } => on_list(
            "member_remove",
            list,
            format!("{list}: {}", some_addresses(addresses)),
        ),
        Request::MemberSet {
            list,
            address,
            key,
            value,
        } => on_list(
            "member_set",
            list,
            format!("{list}: {address} {key}={value}"),
        ),
        Request::BounceReset { list, member } => {
            on_list("bounce_reset", list, format!("{list}: {member}"))
        }
        Request::BanAdd { list, pattern } => on_list("ban_add", list, format!("{list}: {pattern}")),
        Request::BanRemove { list, pattern } => {
            on_list("ban_remove", list, format!("{list}: {pattern}"))
        }
        Request::HeldAct {
            list,
            message_id,
            action,
            ..
        } => on_list(
            "held_act",
            list,
            format!("{list}: {} <{message_id}>", action.name()),
        ),
        Request::TokenCreate {
            role,
            lists,
            expires_at,
            description,
        } => Some((
            "token_create",
            format!(
                "{} lists=[{}] expires_at={} {description:?}",
                role.name(),
                lists.join(","),
                expires_at.map_or("never".to_string(), |t| t.to_string())
            ),
            None,
        )),
        Request::TokenRevoke { id } => Some(("token_revoke", id.clone(), None)),
        _ => None,
    }
}
