//! What happens to posts: the policy step the planner runs on every new post
//! ([`Service::check_post`]), the moderator's actions (performed once: the
//! store's release is a transaction that checks the post is still held), the
//! action addresses and the expiry of held posts.

use tracing::{info, warn};

use super::checks::Checks;
use super::held::{self, Action, HeldPost};
use super::policy::{self, Decision, Sender};
use super::Service;
use crate::address::Suffix;
use crate::auth::Evaluation;
use crate::clock;
use crate::model::{HoldExpiryAction, List, Member};
use crate::notice::{rfc5322_date, Extras};
use crate::store::{MessageMeta, Result};

/// The result of a moderator's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acted {
    Done(Action),
    /// Someone acted first (or it expired): nothing happened.
    AlreadyHandled,
}

/// What a moderator is told about an action.
fn acted(a: Acted) -> String {
    match a {
        Acted::Done(a) => format!("{} done", a.name()),
        Acted::AlreadyHandled => "already handled".into(),
    }
}

impl Service {
    /// The posting policy for one new post. `true`: plan it now; `false`:
    /// it was held, rejected or discarded.
    pub async fn check_post(&self, post: &MessageMeta) -> Result<bool> {
        let Some(list) = self.store.list(&post.list).await? else {
            return Ok(true); // the planner drops it
        };
        let raw = self.store.message_body(&post.id).await?;
        let evaluation = match self.sender_checks(post, &raw).await? {
            Checks::Done(e) => e,
            Checks::Delayed => return Ok(false),
        };
        let forged = evaluation
            .as_ref()
            .is_some_and(|e| e.fails_enforced_dmarc());
        let sender = policy::sender(&post.mail_from, &raw);
        let member = self.member_of(&list, &sender).await?;
        let decision = policy::decide_post(&list, &sender, member.as_ref(), post.size, forged);
        let message_id = post.message_id.clone().unwrap_or_default();
        metrics::counter!("listrelay_moderation_decisions_total", "decision" => match decision {
            Decision::Accept => "accept",
            Decision::Hold(_) => "hold",
            Decision::Reject(_) => "reject",
            Decision::Discard(_) => "discard",
        })
        .increment(1);
        match decision {
            Decision::Accept => Ok(self.store.mark_accepted(&post.id).await?),
            Decision::Hold(reason) => {
                let h = HeldPost {
                    id: post.id.clone(),
                    list: list.key(),
                    hash: held::message_hash(&message_id),
                    message_id,
                    reason: reason.to_string(),
                    sender: sender.display(),
                    // A forged From's owner did not write it: no backscatter.
                    notify_sender: sender.reply_address().is_some() && !forged,
                    subject: sender.subject.clone(),
                    size: post.size,
                    held_at: self.now(),
                };
                if self.store.hold_post(&h).await? {
                    info!(id = %h.id, list = %h.list, message_id = %h.message_id, reason,
                          sender = %h.sender, "post held for moderation");
                    self.tell_moderators(&list, &h, raw, evaluation.as_ref())
                        .await;
                    if let Some(to) = sender.reply_address().filter(|_| h.notify_sender) {
                        if self.may_mail(&to.key()).await {
                            let r = policy::explain(reason);
                            let vars = [("subject", h.subject.as_str()), ("reason", r)];
                            self.notify(
                                &list,
                                &[to.to_string()],
                                "held-sender",
                                &vars,
                                Extras::default(),
                            )
                            .await;
                        }
                    }
                }
                Ok(false)
            }
            Decision::Reject(reason) => {
                info!(id = %post.id, list = %list.address, %message_id, reason,
                      sender = %sender.display(), "post rejected by the list's policy");
                self.store.finish_message(&post.id, self.grace_secs).await?;
                if !forged {
                    self.tell_rejected(&list, &sender, &message_id, reason)
                        .await;
                }
                Ok(false)
            }
            Decision::Discard(reason) => {
                info!(id = %post.id, list = %list.address, %message_id, reason,
                      sender = %sender.display(), "post discarded by the list's policy");
                self.store.finish_message(&post.id, self.grace_secs).await?;
                Ok(false)
            }
        }
    }

    /// The member record of the sender: From address first, then envelope.
    pub async fn member_of(&self, list: &List, sender: &Sender) -> Result<Option<Member>> {
        for a in [&sender.from, &sender.envelope].into_iter().flatten() {
            if let Some(m) = self.store.member(&list.key(), &a.key()).await? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    async fn tell_rejected(&self, list: &List, sender: &Sender, message_id: &str, reason: &str) {
        let Some(to) = sender.reply_address() else {
            info!(list = %list.address, "no rejection notice to an automatic message");
            return;
        };
        if !self.may_mail(&to.key()).await {
            return;
        }
        let vars = [
            ("subject", sender.subject.as_str()),
            ("message_id", message_id),
            ("reason", policy::explain(reason)),
        ];
        self.notify(
            list,
            &[to.to_string()],
            "post-rejected",
            &vars,
            Extras::default(),
        )
        .await;
    }

    async fn tell_moderators(
        &self,
        list: &List,
        h: &HeldPost,
        raw: Vec<u8>,
        evaluation: Option<&Evaluation>,
    ) {
        let to = Self::moderators(list);
        if to.is_empty() {
            warn!(list = %list.address, id = %h.id, "a post is held but the list has no moderators or owners");
            return;
        }
        let key = list.key();
        let addr = |a| {
            self.tagged(
                list,
                Suffix::Moderate,
                &held::tag(&self.secret, &key, a, &h.message_id),
            )
        };
        let sig = |a| held::signature(&self.secret, &key, a, &h.message_id);
        let (approve, reject, discard) = (
            addr(Action::Approve),
            addr(Action::Reject),
            addr(Action::Discard),
        );
        let (asig, rsig, dsig) = (
            sig(Action::Approve),
            sig(Action::Reject),
            sig(Action::Discard),
        );
        let days = list.settings.max_days_to_hold.to_string();
        let expiry = if list.settings.max_days_to_hold == 0 {
            "never".to_string()
        } else {
            rfc5322_date(h.held_at + clock::days(u64::from(list.settings.max_days_to_hold)))
        };
        let size = h.size.to_string();
        let request = list.suffix_address(Suffix::Request);
        let reason = match evaluation {
            Some(e) if h.reason == "dmarc" => super::checks::forged_reason(e),
            _ => policy::explain(&h.reason).to_string(),
        };
        // A body line stays under SMTP's 998 bytes whatever the results hold.
        let checks: String = evaluation
            .map_or_else(|| "not checked".to_string(), |e| e.summary())
            .chars()
            .take(900)
            .collect();
        let vars = [
            ("sender", h.sender.as_str()),
            ("subject", h.subject.as_str()),
            ("message_id", h.message_id.as_str()),
            ("reason", reason.as_str()),
            ("checks", checks.as_str()),
            ("size", size.as_str()),
            ("approve", approve.as_str()),
            ("reject", reject.as_str()),
            ("discard", discard.as_str()),
            ("approve_sig", asig.as_str()),
            ("reject_sig", rsig.as_str()),
            ("discard_sig", dsig.as_str()),
            ("request", request.as_str()),
            ("days", days.as_str()),
            ("expiry", expiry.as_str()),
        ];
        let extras = Extras {
            attachment: Some(raw),
            ..Default::default()
        };
        self.notify(list, &to, "moderator-notice", &vars, extras)
            .await;
    }

    /// Performs a moderator's action on a held post, once.
    /// `reason` (may be empty) is quoted to the sender of a rejected post.
    pub async fn act(
        &self,
        list: &List,
        h: &HeldPost,
        action: Action,
        by: &str,
        reason: &str,
    ) -> Result<Acted> {
        let Some(meta) = self
            .store
            .release_held(&h.id, action == Action::Approve)
            .await?
        else {
            info!(id = %h.id, list = %list.address, action = action.name(), %by,
                  "held post already handled; nothing done");
            return Ok(Acted::AlreadyHandled);
        };
        info!(id = %h.id, list = %list.address, message_id = %h.message_id,
              action = action.name(), %by, "moderator action");
        metrics::counter!("listrelay_moderation_actions_total", "action" => action.name())
            .increment(1);
        match action {
            Action::Approve => {
                if let Some(n) = &self.posts {
                    n.notify_one();
                }
            }
            Action::Reject | Action::Discard => {
                self.store.finish_message(&meta.id, self.grace_secs).await?;
                if action == Action::Reject {
                    let why = match reason.trim() {
                        "" => policy::explain("moderator").to_string(),
                        text => format!("{}: {text}", policy::explain("moderator")),
                    };
                    self.tell_sender_of(list, h, "post-rejected", &why, "")
                        .await;
                }
            }
        }
        Ok(Acted::Done(action))
    }

    /// [`Service::act`] for a moderator who acted by mail, written to the
    /// audit log (requests through the admin doors are logged there).
    async fn act_by_mail(
        &self,
        list: &List,
        h: &HeldPost,
        action: Action,
        by: &str,
    ) -> Result<Acted> {
        let acted = self.act(list, h, action, by, "").await;
        let outcome = match &acted {
            Ok(Acted::Done(_)) => "ok".to_string(),
            Ok(Acted::AlreadyHandled) => "already handled".to_string(),
            Err(e) => e.to_string(),
        };
        let caller = crate::model::Caller {
            actor: by.to_string(),
            origin: "mail".into(),
        };
        let entry = crate::model::AuditEntry::new(
            crate::store::new_id(),
            clock::now(),
            &caller,
            "held_act",
            format!("{}: {} <{}>", list.address, action.name(), h.message_id),
            Some(list.key()),
            outcome,
        );
        crate::store::write_audit(self.store.as_ref(), &entry).await;
        acted
    }

    async fn tell_sender_of(
        &self,
        list: &List,
        h: &HeldPost,
        template: &str,
        why: &str,
        action: &str,
    ) {
        if !h.notify_sender || h.sender.is_empty() || !self.may_mail(&h.sender).await {
            return;
        }
        let days = list.settings.max_days_to_hold.to_string();
        let vars = [
            ("subject", h.subject.as_str()),
            ("message_id", h.message_id.as_str()),
            ("reason", why),
            ("days", days.as_str()),
            ("action", action),
        ];
        self.notify(
            list,
            std::slice::from_ref(&h.sender),
            template,
            &vars,
            Extras::default(),
        )
        .await;
    }

    /// A message to `LIST-moderate+ACTION-HASH-SIG`: from anyone holding the
    /// address; the signature must match a held post.
    pub async fn moderate_address(
        &self,
        list: &List,
        tag: &str,
        sender: &Sender,
    ) -> Result<String> {
        let Some((action, hash, sig)) = held::parse_tag(tag) else {
            warn!(list = %list.address, %tag, "malformed moderation address; refused");
            return Ok("refused: malformed tag".into());
        };
        let by = sender.display();
        let held = self.store.held_by_hash(&list.key(), &hash).await?;
        // A signature of the hash was minted for a post of this list held
        // with that hash: if none is held any more, it was handled.
        if held::verify_hash(&self.secret, &list.key(), action, &hash, &sig) {
            return match held.as_slice() {
                [] => {
                    info!(list = %list.address, %tag, %by, action = action.name(),
                          "moderation address for a post no longer held; already handled");
                    Ok("already handled".into())
                }
                [h] => Ok(acted(self.act_by_mail(list, h, action, &by).await?)),
                _ => {
                    warn!(list = %list.address, %tag, %by, held = held.len(),
                          "moderation address matches several held posts; refused");
                    metrics::counter!("listrelay_moderation_refused_total").increment(1);
                    Ok("refused: several held posts share this address; \
                        use the command with the Message-ID"
                        .into())
                }
            };
        }
        // Addresses minted before the one framing signed the Message-ID.
        for h in held {
            if held::verify_legacy(&self.secret, &list.key(), action, &h.message_id, &sig) {
                return Ok(acted(self.act_by_mail(list, &h, action, &by).await?));
            }
        }
        warn!(list = %list.address, %tag, %by,
              "moderation address with a wrong signature or for no held post; refused");
        metrics::counter!("listrelay_moderation_refused_total").increment(1);
        Ok("refused: bad signature or nothing held".into())
    }

    /// `approve|reject|discard <Message-ID> SIG` in a mail to `LIST-request`:
    /// the sender must be a moderator (or owner) and the signature match.
    pub async fn moderate_command(
        &self,
        list: &List,
        sender: &Sender,
        action: Action,
        message_id: &str,
        sig: &str,
    ) -> Result<String> {
        let from = sender.from.as_ref().map(|a| a.key()).unwrap_or_default();
        let allowed = list
            .settings
            .moderators
            .iter()
            .chain(&list.settings.owners)
            .any(|m| m.to_lowercase() == from);
        if !allowed {
            warn!(list = %list.address, %from, action = action.name(), %message_id,
                  "moderation command from a non-moderator; refused");
            metrics::counter!("listrelay_moderation_refused_total").increment(1);
            return Ok("refused: not a moderator".into());
        }
        if !held::verify(&self.secret, &list.key(), action, message_id, sig) {
            warn!(list = %list.address, %from, action = action.name(), %message_id,
                  "moderation command with a wrong signature; refused");
            metrics::counter!("listrelay_moderation_refused_total").increment(1);
            return Ok("refused: bad signature".into());
        }
        match self.find_held(list, message_id).await? {
            Some(h) => Ok(acted(self.act_by_mail(list, &h, action, &from).await?)),
            // The signature was minted for this post, so it was held.
            None => {
                info!(list = %list.address, %from, action = action.name(), %message_id,
                      "moderation command for a post no longer held; already handled");
                Ok("already handled".into())
            }
        }
    }

    /// The held post of a list with this Message-ID (with or without `<>`).
    pub async fn find_held(&self, list: &List, message_id: &str) -> Result<Option<HeldPost>> {
        let mid = message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        Ok(self
            .store
            .held_by_hash(&list.key(), &held::message_hash(mid))
            .await?
            .into_iter()
            .find(|h| h.message_id == mid))
    }

    /// Applies each list's `hold_expiry_action` to posts held longer than
    /// its `max_days_to_hold`; returns how many.
    pub async fn expire_held(&self) -> Result<usize> {
        let now = self.now();
        let mut n = 0;
        for h in self.store.held_posts(None).await? {
            let Some(list) = self.store.list(&h.list).await? else {
                continue;
            };
            let days = u64::from(list.settings.max_days_to_hold);
            if days == 0 || h.held_at + clock::days(days) > now {
                continue;
            }
            let action = match list.settings.hold_expiry_action {
                HoldExpiryAction::Discard => Action::Discard,
                HoldExpiryAction::Reject => Action::Reject,
            };
            let Some(meta) = self.store.release_held(&h.id, false).await? else {
                continue;
            };
            self.store.finish_message(&meta.id, self.grace_secs).await?;
            n += 1;
            info!(id = %h.id, list = %list.address, message_id = %h.message_id,
                  action = action.name(), "held post expired");
            metrics::counter!("listrelay_moderation_expired_total").increment(1);
            let what = match action {
                Action::Reject => "rejected",
                _ => "discarded",
            };
            self.tell_sender_of(
                &list,
                &h,
                "held-expired-sender",
                policy::explain("expired"),
                what,
            )
            .await;
            let days = days.to_string();
            let vars = [
                ("sender", h.sender.as_str()),
                ("subject", h.subject.as_str()),
                ("message_id", h.message_id.as_str()),
                ("days", days.as_str()),
                ("action", what),
            ];
            self.notify(
                &list,
                &Self::moderators(&list),
                "held-expired-moderators",
                &vars,
                Extras::default(),
            )
            .await;
        }
        Ok(n)
    }
}
