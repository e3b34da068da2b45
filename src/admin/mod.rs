//! Administration: every change an operator makes (domains, lists, members,
//! held posts, bounce records) is a typed [`Request`] executed against the
//! store, either inside the running server (reached over its admin socket) or
//! directly when no server runs. The answer is a typed [`Response`], preceded
//! by streamed [`Item`]s for answers that may be large (a member list), so
//! that nothing on the way holds all of them. [`protocol`] defines the types.

mod bounces;
mod directory;
mod held;
pub mod protocol;
mod socket;

use std::sync::Arc;

use thiserror::Error;

use crate::address::Address;
use crate::model::List;
use crate::store::{Store, StoreError};

pub use protocol::{Frame, Item, Request, Response};
pub use socket::{call, serve, CallError};

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
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
    /// Executes a request: streamed items go to `items`, then the answer is
    /// returned. Changes are durable when it returns.
    pub async fn execute(
        &self,
        req: Request,
        items: &mut dyn ItemSink,
    ) -> Result<Response, AdminError> {
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
            Request::HeldList { list } => held::list(store, &list).await?,
            Request::HeldShow { list, message_id } => {
                held::show(store, self.moderation()?, &list, &message_id).await?
            }
            Request::HeldAct {
                list,
                message_id,
                action,
            } => held::act(store, self.moderation()?, &list, &message_id, action).await?,
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
        };
        self.store.sync().await?;
        Ok(response)
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
