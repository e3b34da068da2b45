//! The posting policy: who the sender of a post is, whether it is an
//! automatic message (which never gets a notice: no backscatter), and what
//! the list does with it. Pure, so every rule is unit-tested.

use mail_parser::MessageParser;

use crate::address::Address;
use crate::model::ban::Bans;
use crate::model::directory::AuthFailAction;
use crate::model::{List, ListSettings, Member, NonmemberAction};

/// What the policy reads from a post.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sender {
    /// The From header's address.
    pub from: Option<Address>,
    /// The envelope sender, if any.
    pub envelope: Option<Address>,
    /// Empty MAIL FROM, `Auto-Submitted` other than `no`, or `Precedence`
    /// bulk/junk/list: never answered.
    pub automatic: bool,
    pub subject: String,
}

impl Sender {
    /// Where notices about the post go: the From address, else the envelope
    /// sender; `None` for automatic messages.
    pub fn reply_address(&self) -> Option<&Address> {
        if self.automatic {
            return None;
        }
        self.from.as_ref().or(self.envelope.as_ref())
    }

    /// The sender as shown to moderators.
    pub fn display(&self) -> String {
        self.from
            .as_ref()
            .or(self.envelope.as_ref())
            .map(|a| a.to_string())
            .unwrap_or_default()
    }
}

/// Reads the sender of a message.
pub fn sender(mail_from: &str, raw: &[u8]) -> Sender {
    let envelope = Address::parse(mail_from).ok();
    let parsed = MessageParser::new().parse_headers(raw);
    let Some(msg) = parsed else {
        return Sender {
            envelope,
            automatic: mail_from.trim().is_empty(),
            ..Default::default()
        };
    };
    let from = msg
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .and_then(|a| Address::parse(a).ok());
    let header = |name: &str| {
        msg.header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    };
    let auto_submitted = header("Auto-Submitted");
    let precedence = header("Precedence");
    let automatic = mail_from.trim().is_empty()
        || (!auto_submitted.is_empty() && !auto_submitted.starts_with("no"))
        || ["bulk", "junk", "list"].contains(&precedence.as_str());
    Sender {
        from,
        envelope,
        automatic,
        subject: msg.subject().unwrap_or_default().to_string(),
    }
}

/// What becomes of a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// Held for the moderators, with the reason.
    Hold(&'static str),
    Reject(&'static str),
    Discard(&'static str),
}

/// Applies the list's policy. `member` is the sender's membership (From or
/// envelope address), `size` the post's size in bytes, `forged` whether the
/// From domain's DMARC policy (`p=quarantine`/`reject`) fails: then the
/// membership of that From proves nothing, and `auth_fail_action` decides
/// before it is looked at.
pub fn decide(
    settings: &ListSettings,
    member: Option<&Member>,
    size: u64,
    forged: bool,
) -> Decision {
    if settings.emergency {
        return Decision::Hold("emergency");
    }
    if forged {
        match settings.auth_fail_action {
            AuthFailAction::Hold => return Decision::Hold("dmarc"),
            AuthFailAction::Reject => return Decision::Reject("dmarc"),
            AuthFailAction::Discard => return Decision::Discard("dmarc"),
            AuthFailAction::Accept => {}
        }
    }
    if settings.max_message_size > 0 && size > settings.max_message_size {
        return Decision::Hold("size");
    }
    match member {
        Some(m) if m.moderated => Decision::Hold("moderated"),
        Some(_) => Decision::Accept,
        None => match settings.nonmember_action {
            NonmemberAction::Accept => Decision::Accept,
            NonmemberAction::Hold => Decision::Hold("nonmember"),
            NonmemberAction::Reject => Decision::Reject("nonmember"),
            NonmemberAction::Discard => Decision::Discard("nonmember"),
        },
    }
}

/// The policy for a post with the list's bans: a post whose From or
/// envelope sender a ban covers is refused (`banned`) before any other
/// rule, emergency moderation included, since no moderator should have to
/// look at it; otherwise [`decide`].
pub fn decide_post(
    list: &List,
    sender: &Sender,
    member: Option<&Member>,
    size: u64,
    forged: bool,
) -> Decision {
    if banned(list, sender) {
        return Decision::Reject("banned");
    }
    decide(&list.settings, member, size, forged)
}

/// Whether a ban of the list covers the sender's From or envelope address.
pub fn banned(list: &List, sender: &Sender) -> bool {
    if list.bans.is_empty() {
        return false;
    }
    let bans = Bans::new(&list.bans);
    [&sender.from, &sender.envelope]
        .into_iter()
        .flatten()
        .any(|a| bans.covers(a))
}

/// The explanation of a reason, for notices.
pub fn explain(reason: &str) -> &'static str {
    match reason {
        "emergency" => "the list is in emergency moderation: every post is held",
        "size" => "the message is larger than the list allows",
        "moderated" => "posts from your address are moderated",
        "banned" => "your address may not post to the list",
        "nonmember" => "only members may post to the list without approval",
        "dmarc" => {
            "the From address's domain publishes a DMARC policy (p=quarantine or p=reject) \
             and the message fails it: the From address is probably forged"
        }
        "moderator" => "a moderator rejected it",
        "expired" => "no moderator acted on it in time",
        _ => "the list's posting policy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(moderated: bool) -> Member {
        let mut m = Member::new(Address::parse("bob@x.org").unwrap());
        m.moderated = moderated;
        m
    }

    #[test]
    fn decisions() {
        type Case = (
            &'static str,
            Box<dyn Fn(&mut ListSettings)>,
            Option<Member>,
            u64,
            Decision,
        );
        let cases: Vec<Case> = vec![
            (
                "member",
                Box::new(|_| {}),
                Some(member(false)),
                10,
                Decision::Accept,
            ),
            (
                "moderated member",
                Box::new(|_| {}),
                Some(member(true)),
                10,
                Decision::Hold("moderated"),
            ),
            (
                "nonmember default",
                Box::new(|_| {}),
                None,
                10,
                Decision::Hold("nonmember"),
            ),
            (
                "nonmember reject",
                Box::new(|s| s.nonmember_action = NonmemberAction::Reject),
                None,
                10,
                Decision::Reject("nonmember"),
            ),
            (
                "nonmember discard",
                Box::new(|s| s.nonmember_action = NonmemberAction::Discard),
                None,
                10,
                Decision::Discard("nonmember"),
            ),
            (
                "nonmember accept",
                Box::new(|s| s.nonmember_action = NonmemberAction::Accept),
                None,
                10,
                Decision::Accept,
            ),
            (
                "too big",
                Box::new(|s| s.max_message_size = 5),
                Some(member(false)),
                10,
                Decision::Hold("size"),
            ),
            (
                "size fits",
                Box::new(|s| s.max_message_size = 10),
                Some(member(false)),
                10,
                Decision::Accept,
            ),
            (
                "emergency",
                Box::new(|s| s.emergency = true),
                Some(member(false)),
                1,
                Decision::Hold("emergency"),
            ),
        ];
        for (name, set, m, size, want) in cases {
            let mut s = ListSettings::default();
            set(&mut s);
            assert_eq!(decide(&s, m.as_ref(), size, false), want, "{name}");
        }
        // A forged From: a member's address proves nothing.
        let mut s = ListSettings::default();
        let m = member(false);
        assert_eq!(decide(&s, Some(&m), 1, true), Decision::Hold("dmarc"));
        for (action, want) in [
            (AuthFailAction::Reject, Decision::Reject("dmarc")),
            (AuthFailAction::Discard, Decision::Discard("dmarc")),
            (AuthFailAction::Accept, Decision::Accept),
        ] {
            s.auth_fail_action = action;
            assert_eq!(decide(&s, Some(&m), 1, true), want, "{action:?}");
        }
        s.auth_fail_action = AuthFailAction::Accept;
        assert_eq!(decide(&s, None, 1, true), Decision::Hold("nonmember"));
    }

    #[test]
    fn a_banned_sender_is_refused_before_any_other_rule() {
        let mut list = List::new(Address::parse("dev@x.org").unwrap());
        list.bans = vec!["bob@x.org".into(), r"^.*@spam\.example$".into()];
        list.settings.emergency = true;
        let post = |from: &str, envelope: &str| {
            sender(envelope, format!("From: {from}\r\n\r\nb").as_bytes())
        };
        let table = [
            ("bob@x.org", "bob@x.org", true),
            ("Bob@X.org", "other@y.org", true),
            ("carol@y.org", "bob@x.org", true),
            ("carol@y.org", "bounce@mail.spam.example", false),
            ("carol@y.org", "bounce@spam.example", true),
            ("carol@y.org", "carol@y.org", false),
        ];
        for (from, envelope, refused) in table {
            let d = decide_post(&list, &post(from, envelope), Some(&member(false)), 1, false);
            let want = if refused {
                Decision::Reject("banned")
            } else {
                Decision::Hold("emergency")
            };
            assert_eq!(d, want, "{from} / {envelope}");
        }
        list.bans.clear();
        assert!(!banned(&list, &post("bob@x.org", "bob@x.org")));
    }

    #[test]
    fn senders_and_automatic_messages() {
        let s = sender(
            "bounce@x.org",
            b"From: Bob <Bob@X.org>\r\nSubject: hi\r\n\r\nb",
        );
        assert_eq!(s.from.unwrap().key(), "bob@x.org");
        assert!(!s.automatic);
        assert_eq!(s.subject, "hi");
        for (mail_from, headers) in [
            ("", "From: a@x.org\r\n"),
            (
                "a@x.org",
                "From: a@x.org\r\nAuto-Submitted: auto-replied\r\n",
            ),
            ("a@x.org", "From: a@x.org\r\nPrecedence: bulk\r\n"),
            ("a@x.org", "From: a@x.org\r\nPrecedence: junk\r\n"),
            ("a@x.org", "From: a@x.org\r\nPrecedence: list\r\n"),
        ] {
            let raw = format!("{headers}\r\nbody");
            let s = sender(mail_from, raw.as_bytes());
            assert!(s.automatic, "{mail_from:?} {headers:?}");
            assert!(s.reply_address().is_none());
        }
        let s = sender("a@x.org", b"From: a@x.org\r\nAuto-Submitted: no\r\n\r\nb");
        assert!(!s.automatic);
        let s = sender("env@x.org", b"Subject: no from\r\n\r\nb");
        assert_eq!(s.reply_address().unwrap().to_string(), "env@x.org");
    }
}
