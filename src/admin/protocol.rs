//! The typed administration protocol: what an operator asks ([`Request`]) and
//! what comes back ([`Response`], after zero or more streamed [`Item`]s).
//!
//! The admin socket, the CLI and (next) the REST API all speak these types, so
//! their field names are the public names: snake_case, stable, and checked by
//! the compiler wherever they are read. A renamed field is a protocol change.
//!
//! On the admin socket a connection carries one request and its answer as
//! NDJSON: the client writes the [`Request`] on one line; the server writes
//! one [`Frame`] per line: any number of [`Frame::Item`]s (a member list is
//! streamed, so neither side ever holds all of it), then exactly one
//! [`Frame::Done`] or [`Frame::Error`], and closes.

use serde::{Deserialize, Serialize};

use crate::check::probe::{ProbeSeen, ProbeTicket};
use crate::model::{ApiToken, AuditEntry, Domain, ListSettings, Member, Role};
use crate::moderation::Action;
use crate::store::{ChunkState, Job, MessageMeta};

/// One administrative operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Creates a virtual domain.
    DomainCreate {
        name: String,
        /// Its members' bounce state is never shared with other domains.
        opaque: bool,
    },
    /// Every domain.
    DomainList,
    /// Changes a domain setting (`opaque`).
    DomainSet {
        name: String,
        key: String,
        value: String,
    },
    /// Deletes a domain that has no lists.
    DomainDelete { name: String },
    /// Creates a list (and its domain when new).
    ListCreate { address: String },
    /// One list with its settings.
    ListShow { address: String },
    /// Every list, or those of one domain.
    ListList { domain: Option<String> },
    /// Changes one list setting; it applies at once.
    ListSet {
        address: String,
        key: String,
        value: String,
    },
    /// Deletes a list with its members.
    ListDelete { address: String },
    /// Adds members; invalid addresses are reported, not fatal.
    MemberAdd {
        list: String,
        addresses: Vec<String>,
    },
    /// Removes members.
    MemberRemove {
        list: String,
        addresses: Vec<String>,
    },
    /// A list's members, streamed as [`Item::Member`]s, then [`Response::End`].
    MemberList { list: String },
    /// Sets a member's flag (`moderated`, `delivery_enabled`: true or
    /// false) or `delivery_mode` (`regular`, `nomail`, `digest_mime`,
    /// `digest_plain`).
    MemberSet {
        list: String,
        address: String,
        key: String,
        value: String,
    },
    /// Bans an address or a `^` pattern from posting to and joining a
    /// list; banning it again changes nothing (an import may re-run).
    BanAdd { list: String, pattern: String },
    /// Lifts a ban, named as `ban list` shows it.
    BanRemove { list: String, pattern: String },
    /// A list's bans.
    BanList { list: String },
    /// Messages waiting, fan-out jobs and their chunks.
    Queue,
    /// One stored message's bytes.
    MessageBody { id: String },
    /// Bounce records of a list, or of one member.
    BounceShow {
        list: String,
        member: Option<String>,
    },
    /// Forgets a member's bounce record and re-enables their delivery.
    BounceReset { list: String, member: String },
    /// Held posts of a list.
    HeldList { list: String },
    /// One held post with its message.
    HeldShow { list: String, message_id: String },
    /// Approves, rejects or discards a held post.
    HeldAct {
        list: String,
        message_id: String,
        action: Action,
        /// Why, for a rejection: quoted to the sender in the rejection notice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Starts an MTA self-check (`check mta`): the server mints a signed
    /// probe at `domain` (default: its first domain) and notes its arrival.
    /// Only a running server answers it.
    ProbeStart { domain: Option<String> },
    /// What the running server has seen of a probe.
    ProbeStatus { id: String },
    /// One page of a list's members in member-key order, after the member
    /// key `after`, optionally only addresses starting with `prefix`; bounded
    /// work per call whatever the list's size (the REST roster).
    MemberPage {
        list: String,
        after: Option<String>,
        limit: u32,
        prefix: Option<String>,
    },
    /// Mints an API token; the answer shows it once.
    TokenCreate {
        role: Role,
        /// The lists an owner or moderator token acts on.
        lists: Vec<String>,
        /// Refused after this time (seconds since the epoch).
        expires_at: Option<u64>,
        /// Who it is for, for `token list`.
        description: String,
    },
    /// Every API token (never the tokens themselves).
    TokenList,
    /// Revokes an API token by its id.
    TokenRevoke { id: String },
    /// A page of the audit log, oldest first.
    AuditList {
        /// Only entries about this list.
        list: Option<String>,
        /// Only entries at or after this time (seconds since the epoch).
        since: Option<u64>,
        /// Continue after this entry id.
        after: Option<String>,
        limit: u32,
    },
}

/// The final answer to a request (after its streamed items, if any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
pub enum Response {
    /// A domain as it now is (create, set).
    Domain(Domain),
    /// Every domain.
    Domains(Vec<Domain>),
    /// What a delete removed.
    Deleted(Deleted),
    /// A list as it now is (create, show, set).
    List(ListInfo),
    /// Lists.
    Lists(Vec<ListInfo>),
    /// The outcome of a member add.
    MembersAdded(AddReport),
    /// The outcome of a member remove.
    MembersRemoved(RemoveReport),
    /// A member as it now is (set).
    Member(Member),
    /// The end of a streamed answer.
    End(StreamEnd),
    /// The queue.
    Queue(QueueView),
    /// One stored message.
    MessageBody(MessageBody),
    /// Bounce records.
    BounceRecords(Vec<BounceRecord>),
    /// The outcome of a bounce reset.
    BounceReset(BounceResetReport),
    /// Held posts.
    HeldPosts(Vec<HeldInfo>),
    /// One held post with its message.
    HeldPost(HeldMessage),
    /// The outcome of a moderator action.
    HeldActed(HeldActReport),
    /// A probe started: its addresses.
    ProbeStarted(ProbeTicket),
    /// What the server has seen of a probe.
    ProbeSeen(ProbeSeen),
    /// One page of members.
    MemberPage(MemberPage),
    /// A new API token, shown this once.
    TokenCreated(TokenCreated),
    /// API tokens.
    Tokens(Vec<TokenInfo>),
    /// A token as it now is (revoked).
    Token(TokenInfo),
    /// A page of the audit log.
    Audit(AuditPage),
    /// A list's bans, after a ban add or remove, or for `ban list`.
    Bans(BanView),
}

/// A list's bans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanView {
    /// The list's posting address.
    pub list: String,
    /// Its bans as stored: lowercased addresses and `^` patterns.
    pub bans: Vec<String>,
    /// Whether the request changed them (false for a ban already there:
    /// importers re-run).
    pub changed: bool,
}

/// One element of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    /// A list member (`member list`).
    Member(Member),
}

/// One line of an answer on the admin socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frame {
    /// One streamed element; more frames follow.
    Item(Item),
    /// The request succeeded; the last frame (boxed: an answer is much
    /// larger than an item).
    Done(Box<Response>),
    /// The request was refused or failed; the last frame.
    Error(Refusal),
}

/// Why a request failed, for the operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// What went wrong and what to do, in words.
    pub message: String,
}

/// What a delete removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    /// The domain name or list address deleted.
    pub deleted: String,
}

/// A list as an operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListInfo {
    /// The posting address.
    pub address: String,
    /// The RFC 2919 List-Id (without `<>`).
    pub list_id: String,
    /// How many members it has.
    pub members: u64,
    /// Creation time, seconds since the epoch.
    pub created_at: u64,
    /// Every per-list setting, as `list set` names them.
    pub settings: ListSettings,
}

/// An address a request refused, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidAddress {
    /// The address as given.
    pub address: String,
    /// Why it is not an address.
    pub error: String,
}

/// The outcome of a member add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddReport {
    /// Members added.
    pub added: u64,
    /// Addresses that were members already.
    pub already: u64,
    /// Addresses refused as invalid.
    pub invalid: Vec<InvalidAddress>,
}

/// The outcome of a member remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoveReport {
    /// Members removed.
    pub removed: u64,
    /// Addresses given that were not members.
    pub not_members: Vec<String>,
}

/// The end of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// How many items were sent, so a client can check it got them all.
    pub items: u64,
}

/// The queue: the store's own records, for diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    /// Messages not yet finished (posts, bounces, commands).
    pub messages: Vec<MessageMeta>,
    /// Fan-out jobs in progress.
    pub jobs: Vec<Job>,
    /// Their chunks, with leases.
    pub chunks: Vec<ChunkState>,
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageBody {
    /// The message's store id.
    pub id: String,
    /// The sender checks of a post (`Evaluation::summary`), when it was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<String>,
    /// Its bytes exactly as stored, hex-encoded (a message need not be UTF-8).
    pub body_hex: String,
}

/// A member's bounce record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BounceRecord {
    /// The member's lowercased address.
    pub member: String,
    /// The scope key the record is kept under.
    pub scope: String,
    /// The bounce score.
    pub score: f64,
    /// Bounces counted.
    pub bounces: u32,
    /// First and last bounce, seconds since the epoch.
    pub first_bounce: u64,
    /// See `first_bounce`.
    pub last_bounce: u64,
    /// Reason of the last bounce (`user_unknown`…).
    pub last_reason: String,
    /// Enhanced status code of the last bounce, when it had one.
    pub last_status: Option<String>,
    /// Whether the last bounce was a hard failure.
    pub last_hard: bool,
    /// Whether bounces disabled the member's delivery.
    pub disabled: bool,
    /// Whether the member's delivery is on in this list now.
    pub delivery_enabled: bool,
    /// Warnings sent since delivery was disabled.
    pub warnings_sent: u32,
    /// When the last warning went, seconds since the epoch.
    pub last_warning_at: Option<u64>,
    /// The list the last bounce came through.
    pub via_list: String,
}

/// The outcome of a bounce reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BounceResetReport {
    /// The member's lowercased address.
    pub member: String,
    /// The scope key whose record was forgotten.
    pub scope: String,
    /// Whether there was a record.
    pub had_record: bool,
    /// Lists in which delivery was turned back on.
    pub delivery_enabled_in: Vec<String>,
}

/// A held post as a moderator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldInfo {
    /// The stored message's id.
    pub id: String,
    /// The post's Message-ID, which moderators name it by.
    pub message_id: String,
    /// Hash of the Message-ID, as in the action addresses.
    pub hash: String,
    /// Why it was held (`nonmember`, `moderated`, `emergency`, `size`).
    pub reason: String,
    /// The sender; may be empty.
    pub sender: String,
    /// The Subject.
    pub subject: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was held, seconds since the epoch.
    pub held_at: u64,
    /// The sender checks (`Evaluation::summary`), when the post was checked:
    /// why a `dmarc` hold was made, and what a moderator should weigh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<String>,
}

/// A held post with its message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldMessage {
    /// The post's summary.
    #[serde(flatten)]
    pub post: HeldInfo,
    /// The message, decoded as UTF-8 with replacement characters.
    pub message: String,
}

/// The outcome of a moderator action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldActReport {
    /// The post's Message-ID.
    pub message_id: String,
    /// The action asked for.
    pub action: Action,
    /// Whether it was done (false: someone acted first, or it expired).
    pub done: bool,
}

/// One page of a list's members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberPage {
    /// The members, in member-key order.
    pub members: Vec<Member>,
    /// The member key to continue after; `None` at the end of the list. A
    /// page may hold fewer members than asked (a prefix search scans a
    /// bounded number of members per call) and still have a `next`.
    pub next: Option<String>,
}

/// An API token as `token list` shows it: everything but its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The public id (the token begins `lrt_ID_`).
    pub id: String,
    /// `site`, `owner` or `moderator`.
    pub role: Role,
    /// The lists an owner or moderator token acts on.
    pub lists: Vec<String>,
    /// Who it is for.
    pub description: String,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// When it stops working; `None`: never.
    pub expires_at: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<u64>,
}

impl From<&ApiToken> for TokenInfo {
    fn from(t: &ApiToken) -> Self {
        TokenInfo {
            id: t.id.clone(),
            role: t.role,
            lists: t.lists.clone(),
            description: t.description.clone(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A token just minted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The bearer token itself: shown this once, stored only hashed.
    pub token: String,
    /// What it may do.
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// A page of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Entries, oldest first.
    pub entries: Vec<AuditEntry>,
    /// The id to continue after, when the page is full.
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    //! The wire names are the protocol: each answer is pinned to its JSON,
    //! so a renamed field fails here, not in an operator's script.

    use serde_json::json;

    use super::*;
    use crate::address::Address;

    fn member() -> Member {
        Member {
            address: Address::parse("Bob@Example.org").unwrap(),
            added_at: 7,
            delivery_enabled: false,
            moderated: true,
            delivery_mode: crate::model::DeliveryMode::DigestMime,
        }
    }

    fn held() -> HeldInfo {
        HeldInfo {
            id: "m1".into(),
            message_id: "p@x.org".into(),
            hash: "h".into(),
            reason: "nonmember".into(),
            sender: "s@x.org".into(),
            subject: "Hi".into(),
            size: 12,
            held_at: 3,
            checks: None,
        }
    }

    fn held_json() -> serde_json::Value {
        json!({"id": "m1", "message_id": "p@x.org", "hash": "h", "reason": "nonmember",
               "sender": "s@x.org", "subject": "Hi", "size": 12, "held_at": 3})
    }

    /// Every answer kind with the JSON it travels as.
    fn answers() -> Vec<(Response, serde_json::Value)> {
        let domain = Domain {
            name: "x.org".into(),
            opaque: true,
            created_at: 5,
            arc_seal: None,
        };
        let domain_json = json!({"name": "x.org", "opaque": true, "created_at": 5});
        let list = ListInfo {
            address: "dev@x.org".into(),
            list_id: "dev.x.org".into(),
            members: 2,
            created_at: 9,
            settings: ListSettings::default(),
        };
        let settings = serde_json::to_value(ListSettings::default()).unwrap();
        let list_json = json!({"address": "dev@x.org", "list_id": "dev.x.org", "members": 2,
                               "created_at": 9, "settings": settings});
        let member_json = json!({"address": "Bob@example.org", "added_at": 7,
                                 "delivery_enabled": false, "moderated": true,
                                 "delivery_mode": "digest_mime"});
        let bounce = BounceRecord {
            member: "bob@example.org".into(),
            scope: "list:dev@x.org".into(),
            score: 1.5,
            bounces: 2,
            first_bounce: 10,
            last_bounce: 20,
            last_reason: "user_unknown".into(),
            last_status: Some("5.1.1".into()),
            last_hard: true,
            disabled: true,
            delivery_enabled: false,
            warnings_sent: 1,
            last_warning_at: Some(30),
            via_list: "dev@x.org".into(),
        };
        let bounce_json = json!({"member": "bob@example.org", "scope": "list:dev@x.org",
            "score": 1.5, "bounces": 2, "first_bounce": 10, "last_bounce": 20,
            "last_reason": "user_unknown", "last_status": "5.1.1", "last_hard": true,
            "disabled": true, "delivery_enabled": false, "warnings_sent": 1,
            "last_warning_at": 30, "via_list": "dev@x.org"});
        let body = |t: &str, b: serde_json::Value| json!({"type": t, "body": b});
        vec![
            (
                Response::Domain(domain.clone()),
                body("domain", domain_json.clone()),
            ),
            (
                Response::Domains(vec![domain]),
                body("domains", json!([domain_json])),
            ),
            (
                Response::Deleted(Deleted {
                    deleted: "dev@x.org".into(),
                }),
                body("deleted", json!({"deleted": "dev@x.org"})),
            ),
            (
                Response::List(list.clone()),
                body("list", list_json.clone()),
            ),
            (
                Response::Lists(vec![list]),
                body("lists", json!([list_json])),
            ),
            (
                Response::MembersAdded(AddReport {
                    added: 1,
                    already: 2,
                    invalid: vec![InvalidAddress {
                        address: "c@".into(),
                        error: "e".into(),
                    }],
                }),
                body(
                    "members_added",
                    json!({"added": 1, "already": 2,
                           "invalid": [{"address": "c@", "error": "e"}]}),
                ),
            ),
            (
                Response::MembersRemoved(RemoveReport {
                    removed: 1,
                    not_members: vec!["z@x.org".into()],
                }),
                body(
                    "members_removed",
                    json!({"removed": 1, "not_members": ["z@x.org"]}),
                ),
            ),
            (Response::Member(member()), body("member", member_json)),
            (
                Response::End(StreamEnd { items: 4 }),
                body("end", json!({"items": 4})),
            ),
            (
                Response::Queue(QueueView {
                    messages: vec![],
                    jobs: vec![],
                    chunks: vec![],
                }),
                body("queue", json!({"messages": [], "jobs": [], "chunks": []})),
            ),
            (
                Response::MessageBody(MessageBody {
                    checks: None,
                    id: "m1".into(),
                    body_hex: "4869".into(),
                }),
                body("message_body", json!({"id": "m1", "body_hex": "4869"})),
            ),
            (
                Response::BounceRecords(vec![bounce]),
                body("bounce_records", json!([bounce_json])),
            ),
            (
                Response::BounceReset(BounceResetReport {
                    member: "bob@example.org".into(),
                    scope: "list:dev@x.org".into(),
                    had_record: true,
                    delivery_enabled_in: vec!["dev@x.org".into()],
                }),
                body(
                    "bounce_reset",
                    json!({"member": "bob@example.org", "scope": "list:dev@x.org",
                           "had_record": true, "delivery_enabled_in": ["dev@x.org"]}),
                ),
            ),
            (
                Response::HeldPosts(vec![held()]),
                body("held_posts", json!([held_json()])),
            ),
            (
                Response::HeldPost(HeldMessage {
                    post: held(),
                    message: "Subject: Hi\r\n\r\nbody".into(),
                }),
                body("held_post", {
                    let mut v = held_json();
                    v["message"] = "Subject: Hi\r\n\r\nbody".into();
                    v
                }),
            ),
            (
                Response::HeldActed(HeldActReport {
                    message_id: "p@x.org".into(),
                    action: Action::Reject,
                    done: true,
                }),
                body(
                    "held_acted",
                    json!({"message_id": "p@x.org", "action": "reject", "done": true}),
                ),
            ),
            (
                Response::Bans(BanView {
                    list: "dev@x.org".into(),
                    bans: vec!["a@x.org".into(), "^.*@spam\\.example$".into()],
                    changed: true,
                }),
                body(
                    "bans",
                    json!({"list": "dev@x.org", "bans": ["a@x.org", "^.*@spam\\.example$"],
                           "changed": true}),
                ),
            ),
        ]
    }

    #[test]
    fn every_answer_has_its_pinned_json_and_reads_back() {
        for (response, wire) in answers() {
            assert_eq!(serde_json::to_value(&response).unwrap(), wire);
            let back: Response = serde_json::from_value(wire).unwrap();
            assert_eq!(back, response);
        }
    }

    #[test]
    fn frames_are_one_tagged_object_each() {
        let frames = [
            (
                Frame::Item(Item::Member(member())),
                json!({"item": {"member": {"address": "Bob@example.org", "added_at": 7,
                                            "delivery_enabled": false, "moderated": true,
                                            "delivery_mode": "digest_mime"}}}),
            ),
            (
                Frame::Done(Box::new(Response::End(StreamEnd { items: 1 }))),
                json!({"done": {"type": "end", "body": {"items": 1}}}),
            ),
            (
                Frame::Error(Refusal {
                    message: "no list dev@x.org".into(),
                }),
                json!({"error": {"message": "no list dev@x.org"}}),
            ),
        ];
        for (frame, wire) in frames {
            assert_eq!(serde_json::to_value(&frame).unwrap(), wire);
            assert_eq!(serde_json::from_value::<Frame>(wire).unwrap(), frame);
        }
    }

    #[test]
    fn requests_keep_their_wire_names() {
        let requests = [
            (
                Request::MemberAdd {
                    list: "dev@x.org".into(),
                    addresses: vec!["a@x.org".into()],
                },
                json!({"op": "member_add", "list": "dev@x.org", "addresses": ["a@x.org"]}),
            ),
            (
                Request::HeldAct {
                    list: "dev@x.org".into(),
                    message_id: "p@x.org".into(),
                    action: Action::Approve,
                    reason: None,
                },
                json!({"op": "held_act", "list": "dev@x.org", "message_id": "p@x.org",
                       "action": "approve"}),
            ),
            (
                Request::ListList { domain: None },
                json!({"op": "list_list", "domain": null}),
            ),
            (Request::Queue, json!({"op": "queue"})),
            (
                Request::BanAdd {
                    list: "dev@x.org".into(),
                    pattern: "^.*@spam\\.example$".into(),
                },
                json!({"op": "ban_add", "list": "dev@x.org", "pattern": "^.*@spam\\.example$"}),
            ),
            (
                Request::BanRemove {
                    list: "dev@x.org".into(),
                    pattern: "a@x.org".into(),
                },
                json!({"op": "ban_remove", "list": "dev@x.org", "pattern": "a@x.org"}),
            ),
            (
                Request::BanList {
                    list: "dev@x.org".into(),
                },
                json!({"op": "ban_list", "list": "dev@x.org"}),
            ),
            (
                Request::MemberSet {
                    list: "dev@x.org".into(),
                    address: "a@x.org".into(),
                    key: "delivery_mode".into(),
                    value: "digest_mime".into(),
                },
                json!({"op": "member_set", "list": "dev@x.org", "address": "a@x.org",
                       "key": "delivery_mode", "value": "digest_mime"}),
            ),
        ];
        for (request, wire) in requests {
            assert_eq!(serde_json::to_value(&request).unwrap(), wire);
            assert_eq!(serde_json::from_value::<Request>(wire).unwrap(), request);
        }
    }
}
