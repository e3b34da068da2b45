//! The CLI's way to the store: the running server over its admin socket, or,
//! when none answers, the store opened in this process. Either way a
//! [`Request`] goes in and typed items and a [`Response`] come back.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::admin::{self, Admin, CallError, Item, ItemSink, Request, Response};
use crate::config::Config;

/// What a streamed item is handed to (the printer), as it arrives.
pub type OnItem<'a> = dyn FnMut(Item) -> std::io::Result<()> + Send + 'a;

/// Talks to the running server, or opens the store when none runs.
pub struct Client {
    socket: PathBuf,
    config: Config,
    /// The store opened here, once the server was found absent.
    local: Option<Admin>,
}

/// Adapts a callback to the admin's item sink, for the local store.
struct Callback<'a, 'b>(&'a mut OnItem<'b>);

#[async_trait::async_trait]
impl ItemSink for Callback<'_, '_> {
    async fn item(&mut self, item: Item) -> std::io::Result<()> {
        (self.0)(item)
    }
}

impl Client {
    pub fn new(config: &Config) -> Self {
        Client {
            socket: config.admin_socket(),
            config: config.clone(),
            local: None,
        }
    }

    /// Sends a request whose answer is not streamed.
    pub async fn ask(&mut self, req: Request) -> Result<Response> {
        self.call(req, &mut |item| {
            Err(std::io::Error::other(format!(
                "unexpected streamed item {item:?}"
            )))
        })
        .await
    }

    /// Sends a request; streamed items go to `on_item` as they arrive, then
    /// the final answer is returned.
    pub async fn call(&mut self, req: Request, on_item: &mut OnItem<'_>) -> Result<Response> {
        if self.local.is_none() {
            match admin::call(&self.socket, &req, on_item).await {
                Ok(response) => return Ok(response),
                Err(CallError::Refused(e)) => bail!("{e}"),
                Err(CallError::NoServer(_)) => {}
                // The bare I/O error, so that a closed stdout is recognised.
                Err(CallError::Output(e)) => return Err(e.into()),
                Err(e) => return Err(e.into()),
            }
            self.local = Some(self.open_local(creates_store(&req)).await?);
        }
        match &self.local {
            Some(admin) => Ok(admin.execute(req, &mut Callback(on_item)).await?),
            None => bail!("no store"),
        }
    }

    /// The administration of the store opened in this process; `create`:
    /// whether it may be created if there is none yet.
    async fn open_local(&self, create: bool) -> Result<Admin> {
        let store = if create {
            crate::site::open_store(&self.config).await
        } else {
            crate::site::open_existing_store(&self.config).await
        }
        .with_context(|| {
            format!(
                "no server answers on {} and the store cannot be opened",
                self.socket.display()
            )
        })?;
        // Without the site secret there are no notices to sign: held-post
        // commands then say so, the others work.
        let moderation = crate::secret::Secret::load_or_create(&self.config.secret_path())
            .ok()
            .map(|secret| {
                Arc::new(crate::moderation::Service::new(
                    store.clone(),
                    &self.config,
                    secret,
                    crate::smtp::Client::new(crate::site::smtp_config(&self.config)),
                ))
            });
        Ok(Admin {
            store,
            delimiter: self.config.intake.recipient_delimiter,
            bounce_scope: self.config.bounce.scope,
            moderation,
        })
    }
}

/// Whether a request may create the store when no server runs and there is
/// none yet: only creating a domain or a list does; every other command needs
/// one of those first, and a reading one must leave no trace.
fn creates_store(req: &Request) -> bool {
    matches!(
        req,
        Request::DomainCreate { .. } | Request::ListCreate { .. }
    )
}
