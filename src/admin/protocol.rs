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

use crate::model::{Domain, ListSettings, Member};
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
    /// Sets a member's flag (`moderated`, `delivery_enabled`).
    MemberSet {
        list: String,
        address: String,
        key: String,
        value: String,
    },
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
