//! Subscription by email (double opt-in) and the `LIST-request` commands.
//!
//! `LIST-join` (or `subscribe` to `LIST-request`) sends a confirmation to the
//! address with a one-time address `LIST-confirm+TOKEN@DOMAIN`; a message to
//! it subscribes the address and a welcome follows. Leaving works the same
//! way when the list's `confirm_leave` is on. A token is 80 bits from the OS
//! CSPRNG followed by the site signer's signature of the list and those bits
//! (purpose `Confirm`), in base32 (29 characters); the store keeps only its
//! SHA-256 (a lookup by hash leaks nothing about the token, and the stored
//! hash is compared again in constant time). The signature lets `confirm`
//! refuse a token sent to another list's address before it touches the
//! store, so that the token still works on its own list. A token expires
//! after `moderation.confirm_token_ttl_secs` and is removed by its first use. Every automatic mail to an address counts
//! against its daily limit (`moderation.max_mails_per_address_per_day`);
//! beyond it the request is dropped silently. Automatic messages (empty
//! sender, `Auto-Submitted`, `Precedence: bulk`) are never answered.

pub mod commands;
pub use crate::oneclick;

use rand::RngCore;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::address::{Address, Suffix};
use crate::model::ban::Bans;
use crate::model::{DeliveryMode, List, Member};
pub use crate::model::{Pending, PendingAction};
use crate::moderation::policy::Sender;
use crate::moderation::Service;
use crate::notice::Extras;
use crate::secret::{self, base32, Purpose, Secret};
use crate::store::Result;
use commands::Command;

/// Random bytes of a token: enough that tokens never collide.
const NONCE_BYTES: usize = 10;
/// The base32 length of the random part.
const NONCE_CHARS: usize = NONCE_BYTES * 8 / 5;

/// A new token for `list` (key): random bits and their signature, base32
/// (lowercase, so an MTA that folds case cannot break it).
pub fn new_token(secret: &Secret, list: &str) -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let nonce = base32(&bytes);
    let sig = secret::sign(secret, Purpose::Confirm, &[list, &nonce]);
    format!("{nonce}{sig}")
}

/// What a token sent to a list's confirmation address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// Signed for this list: look its record up.
    ForThisList,
    /// Signed, but not for this list (or forged): leave its record alone.
    NotForThisList,
    /// Minted before tokens were signed (26 random characters): only its
    /// record says which list it is for. These expire within
    /// `moderation.confirm_token_ttl_secs` of the upgrade; this case can be
    /// dropped after that.
    Unsigned,
}

/// Checks a token's signature against `list` (key), in constant time.
pub fn check_token(secret: &Secret, list: &str, token: &str) -> TokenCheck {
    let token = token.trim().to_ascii_lowercase();
    let sig_chars = (Purpose::Confirm.sig_bytes() * 8).div_ceil(5);
    if token.len() != NONCE_CHARS + sig_chars || !token.is_ascii() {
        return TokenCheck::Unsigned;
    }
    let (nonce, sig) = token.split_at(NONCE_CHARS);
    if secret::verify(secret, Purpose::Confirm, &[list, nonce], sig) {
        TokenCheck::ForThisList
    } else {
        TokenCheck::NotForThisList
    }
}

/// The hash under which a token is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().to_ascii_lowercase().as_bytes()))
}

impl Service {
    fn list_vars(&self, list: &List) -> [(&'static str, String); 3] {
        [
            ("join", list.suffix_address(Suffix::Join)),
            ("leave", list.suffix_address(Suffix::Leave)),
            ("request", list.suffix_address(Suffix::Request)),
        ]
    }

    /// Sends `template` to `address` with the list's addresses as variables.
    async fn tell(
        &self,
        list: &List,
        address: &str,
        template: &str,
        extra: &[(&str, &str)],
        extras: Extras,
    ) {
        let lv = self.list_vars(list);
        let mut vars: Vec<(&str, &str)> = lv.iter().map(|(k, v)| (*k, v.as_str())).collect();
        vars.push(("address", address));
        vars.extend_from_slice(extra);
        self.notify(list, &[address.to_string()], template, &vars, extras)
            .await;
    }

    async fn tell_owners(&self, list: &List, template: &str, address: &str, how: &str) {
        if list.settings.notify_owner_on_join_leave {
            let vars = [("address", address), ("how", how)];
            self.notify(
                list,
                &list.settings.owners,
                template,
                &vars,
                Extras::default(),
            )
            .await;
        }
    }

    /// Starts a join or a leave: a confirmation to `address`.
    pub async fn begin(
        &self,
        list: &List,
        address: &Address,
        action: PendingAction,
    ) -> Result<String> {
        self.begin_with(list, address, action, None).await
    }

    /// Starts a confirmation of `action` for `address`; `mode` is the new
    /// delivery mode of a `SetDelivery`. A banned address asking to join
    /// gets the answer anyone gets and nothing else: no mail, no record.
    async fn begin_with(
        &self,
        list: &List,
        address: &Address,
        action: PendingAction,
        mode: Option<DeliveryMode>,
    ) -> Result<String> {
        let key = address.key();
        let sent = format!("confirmation sent to {address}");
        if action == PendingAction::Join && Bans::new(&list.bans).covers(address) {
            info!(list = %list.address, address = %key, "subscription request from a banned address ignored");
            metrics::counter!("listrelay_subscription_banned_total").increment(1);
            return Ok(sent);
        }
        let member = self.store.member(&list.key(), &key).await?;
        match (action, &member) {
            (PendingAction::Join, Some(_)) => return Ok("already a member".into()),
            (PendingAction::Leave | PendingAction::SetDelivery, None) => {
                return Ok("not a member".into())
            }
            (PendingAction::SetDelivery, Some(m)) if Some(m.delivery_mode) == mode => {
                return Ok(format!("delivery is {} already", m.delivery_mode));
            }
            _ => {}
        }
        let (template, detail) = match (action, mode) {
            (PendingAction::Join, _) => ("confirm-join", String::new()),
            (PendingAction::Leave, _) => ("confirm-leave", String::new()),
            (PendingAction::SetDelivery, Some(m)) => ("confirm-set-delivery", m.name().to_string()),
            // Login links are started by their own door.
            (other, _) => return Ok(format!("refused: a {other:?} is not started here")),
        };
        if !self.may_mail(&key).await {
            return Ok("rate limited".into());
        }
        let token = new_token(&self.secret, &list.key());
        let hash = token_hash(&token);
        let now = self.now();
        let pending = Pending {
            list: list.key(),
            address: address.to_string(),
            action,
            token_hash: hash.clone(),
            created_at: now,
            expires_at: now + self.config.confirm_token_ttl_secs,
            detail,
        };
        self.store.put_pending(&hash, &pending).await?;
        let confirm = self.tagged(list, Suffix::Confirm, &token);
        let hours = (self.config.confirm_token_ttl_secs / 3600).to_string();
        let extras = Extras {
            from: Some(list.suffix_address(Suffix::Request)),
            reply_to: Some(confirm.clone()),
            attachment: None,
        };
        let described = mode.map(DeliveryMode::describe).unwrap_or_default();
        self.tell(
            list,
            &address.to_string(),
            template,
            &[
                ("confirm", &confirm),
                ("hours", &hours),
                ("mode", described),
            ],
            extras,
        )
        .await;
        Ok(sent)
    }

    /// `set MODE` to `LIST-request`: a confirmation to the sender's own
    /// address (never another's: the command takes none), as for leave.
    pub async fn set_delivery_by_mail(
        &self,
        list: &List,
        sender: &Sender,
        mode: DeliveryMode,
    ) -> Result<String> {
        match sender.reply_address() {
            Some(a) => {
                self.begin_with(list, &a.clone(), PendingAction::SetDelivery, Some(mode))
                    .await
            }
            None => Ok("ignored: automatic message".into()),
        }
    }

    /// A message to `LIST-join`.
    pub async fn join_by_mail(&self, list: &List, sender: &Sender) -> Result<String> {
        match sender.reply_address() {
            Some(a) => self.begin(list, &a.clone(), PendingAction::Join).await,
            None => Ok("ignored: automatic message".into()),
        }
    }

    /// A message to `LIST-leave`: a confirmation, or at once when the list
    /// does not ask for one.
    pub async fn leave_by_mail(&self, list: &List, sender: &Sender) -> Result<String> {
        let Some(a) = sender.reply_address().cloned() else {
            return Ok("ignored: automatic message".into());
        };
        if list.settings.confirm_leave {
            return self.begin(list, &a, PendingAction::Leave).await;
        }
        self.leave_now(list, &a.key(), "by email").await
    }

    /// Removes a member at once, with a goodbye and the owners' notice.
    pub async fn leave_now(&self, list: &List, key: &str, how: &str) -> Result<String> {
        if !self.store.remove_member(&list.key(), key).await? {
            return Ok("not a member".into());
        }
        self.store.sync().await?;
        info!(list = %list.address, member = %key, how, "member left");
        if how != "one-click" {
            self.tell(list, key, "goodbye", &[], Extras::default())
                .await;
        }
        self.tell_owners(list, "owner-leave", key, how).await;
        Ok("unsubscribed".into())
    }

    /// A message to `LIST-confirm+TOKEN`.
    pub async fn confirm(&self, list: &List, token: &str, sender: &Sender) -> Result<String> {
        if sender.automatic {
            return Ok("ignored: automatic message".into());
        }
        let check = check_token(&self.secret, &list.key(), token);
        if check == TokenCheck::NotForThisList {
            // Refused before the store is touched: the token stays valid
            // on its own list.
            warn!(list = %list.address, "confirmation token for another list or forged; refused");
            metrics::counter!("listrelay_subscription_refused_total").increment(1);
            return Ok("refused: token for another list".into());
        }
        let hash = token_hash(token);
        let Some(p) = self.store.take_pending(&hash).await? else {
            warn!(list = %list.address, "unknown or already used confirmation token; refused");
            metrics::counter!("listrelay_subscription_refused_total").increment(1);
            return Ok("refused: unknown or used token".into());
        };
        let same = bool::from(subtle::ConstantTimeEq::ct_eq(
            p.token_hash.as_bytes(),
            hash.as_bytes(),
        ));
        if !same || p.list != list.key() {
            if check == TokenCheck::Unsigned {
                // An unsigned token (see `TokenCheck::Unsigned`) is only
                // known to be for another list once taken: put it back. A
                // confirmation on its own list racing this one may be told
                // "unknown" for that instant; signed tokens never are.
                self.store.put_pending(&hash, &p).await?;
            }
            warn!(list = %list.address, "confirmation token for another list; refused");
            metrics::counter!("listrelay_subscription_refused_total").increment(1);
            return Ok("refused: token for another list".into());
        }
        if p.expires_at <= self.now() {
            warn!(list = %list.address, address = %p.address, "expired confirmation token; refused");
            metrics::counter!("listrelay_subscription_refused_total").increment(1);
            return Ok("refused: expired token".into());
        }
        let Ok(address) = Address::parse(&p.address) else {
            return Ok("refused: bad address".into());
        };
        match p.action {
            PendingAction::Join if Bans::new(&list.bans).covers(&address) => {
                info!(list = %list.address, address = %address, "confirmation of a banned address ignored");
                metrics::counter!("listrelay_subscription_banned_total").increment(1);
                Ok("refused: banned".into())
            }
            PendingAction::Join => {
                let added = self
                    .store
                    .add_members(&list.key(), &[Member::new(address.clone())])
                    .await?;
                self.store.sync().await?;
                if added.first() != Some(&true) {
                    return Ok("already a member".into());
                }
                info!(list = %list.address, member = %address, "member joined by confirmation");
                self.tell(
                    list,
                    &address.to_string(),
                    "welcome",
                    &[],
                    Extras::default(),
                )
                .await;
                self.tell_owners(
                    list,
                    "owner-join",
                    &address.to_string(),
                    "confirmed by email",
                )
                .await;
                Ok("subscribed".into())
            }
            PendingAction::Leave => {
                self.leave_now(list, &address.key(), "confirmed by email")
                    .await
            }
            PendingAction::SetDelivery => self.set_delivery_now(list, &address, &p.detail).await,
            PendingAction::Login => {
                warn!(list = %list.address, action = ?p.action, "token is not a mail confirmation; refused");
                metrics::counter!("listrelay_subscription_refused_total").increment(1);
                Ok("refused: not a confirmation token".into())
            }
        }
    }

    /// Applies a confirmed change of delivery mode (`mode` as stored in
    /// the pending record).
    async fn set_delivery_now(&self, list: &List, address: &Address, mode: &str) -> Result<String> {
        let Ok(mode) = mode.parse::<DeliveryMode>() else {
            warn!(list = %list.address, %mode, "confirmation of an unknown delivery mode; refused");
            return Ok("refused: unknown delivery mode".into());
        };
        let set = self
            .store
            .set_delivery_mode(&list.key(), &address.key(), mode)
            .await?;
        self.store.sync().await?;
        if set.is_none() {
            return Ok("not a member".into());
        }
        info!(list = %list.address, member = %address, %mode, "delivery mode set by confirmation");
        metrics::counter!("listrelay_delivery_mode_changes_total", "mode" => mode.name())
            .increment(1);
        Ok(format!("delivery set to {mode}"))
    }

    /// A message to `LIST-request`: its commands, in order.
    pub async fn request(&self, list: &List, sender: &Sender, raw: &[u8]) -> Result<String> {
        if sender.automatic {
            return Ok("ignored: automatic message".into());
        }
        let parsed = crate::mime::parse(raw);
        let body = parsed
            .as_ref()
            .and_then(|m| m.body_text(0))
            .map(|b| b.into_owned())
            .unwrap_or_default();
        let cmds = commands::parse(&sender.subject, &body);
        let mut results = Vec::new();
        let mut help = cmds.iter().all(|c| matches!(c, Command::Unknown(_)));
        for c in cmds {
            let target = |arg: &Option<String>| -> Option<Address> {
                match arg {
                    Some(a) => Address::parse(a).ok(),
                    None => sender.reply_address().cloned(),
                }
            };
            let r = match &c {
                Command::Subscribe(arg) => match target(arg) {
                    Some(a) => self.begin(list, &a, PendingAction::Join).await?,
                    None => "bad address".into(),
                },
                Command::Unsubscribe(arg) => match target(arg) {
                    // Without confirmation, only one's own address.
                    Some(a) if list.settings.confirm_leave => {
                        self.begin(list, &a, PendingAction::Leave).await?
                    }
                    Some(a) if arg.is_none() => self.leave_now(list, &a.key(), "by email").await?,
                    _ => "refused: give no address when leaving without confirmation".into(),
                },
                Command::SetDelivery(mode) => {
                    self.set_delivery_by_mail(list, sender, *mode).await?
                }
                Command::Help => {
                    help = true;
                    "help".into()
                }
                Command::Moderate {
                    action,
                    message_id,
                    sig,
                } => {
                    self.moderate_command(list, sender, *action, message_id, sig)
                        .await?
                }
                Command::Unknown(_) => continue,
            };
            results.push(r);
        }
        if help {
            if let Some(to) = sender.reply_address() {
                if self.may_mail(&to.key()).await {
                    self.tell(list, &to.to_string(), "help", &[], Extras::default())
                        .await;
                }
            }
        }
        Ok(results.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_signed_for_their_list_and_hashed_case_blind() {
        let s = Secret::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec());
        let a = new_token(&s, "dev@l.org");
        assert_eq!(a.len(), 29);
        assert_ne!(a, new_token(&s, "dev@l.org"));
        assert_eq!(token_hash(&a), token_hash(&a.to_uppercase()));
        assert_ne!(token_hash(&a), token_hash(&new_token(&s, "dev@l.org")));
        assert_eq!(check_token(&s, "dev@l.org", &a), TokenCheck::ForThisList);
        assert_eq!(
            check_token(&s, "dev@l.org", &a.to_uppercase()),
            TokenCheck::ForThisList
        );
        assert_eq!(check_token(&s, "ops@l.org", &a), TokenCheck::NotForThisList);
        assert_eq!(
            check_token(&s, "dev@l.org", "av7fnuo6u426aynx7oydglvbaq"),
            TokenCheck::Unsigned
        );
    }
}
