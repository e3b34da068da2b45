//! Digests: issues that collect a list's posts for the members who take
//! them, as plain RFC 1153 text or as MIME `multipart/digest`.
//!
//! # The composer (this module, pure)
//!
//! An issue is composed from its cut record ([`Issue`]: list, volume, issue
//! number, cut time, header and footer templates) and its posts ([`Post`]:
//! the bytes as received and when), in list order:
//!
//! * [`Form::Plain`], RFC 1153: the header, `Today's Topics:` (each post's
//!   subject and author), a line of 70 hyphens, then each post as
//!   `Date`/`From`/`Subject`/`Message-ID` lines and its text part (found with
//!   mail-parser; HTML turned into text when there is no text alternative;
//!   the attachments named) followed by a line of 30 hyphens; the footer as
//!   a last section (`Subject: Digest Footer`), then `End of LIST Digest,
//!   Vol V, Issue N` over a line of asterisks. A body line starting with 30
//!   hyphens is stuffed with `- ` (RFC 934), so no post can end its section
//!   early or forge another.
//! * [`Form::Mime`]: `multipart/digest`, the header and contents as
//!   text/plain first, each post as `message/rfc822` (its bytes as received,
//!   line ends made CRLF), the footer as text/plain last. The boundary comes
//!   from the Message-ID and is checked against every part.
//!
//! The issue's own headers: From and To the list, `Subject: LIST Digest,
//! Vol V, Issue N`, `Date` (the cut time), MIME-Version and a Message-ID made
//! from list, form, volume, issue and cut time ([`message_id`]). Composing
//! is deterministic: the same cut gives the same bytes, so an issue
//! recomposed after a crash is the same message to the queue's Message-ID
//! window, which stores it once. The List-* headers, `Precedence` and the
//! DKIM signature are added by the fan-out like on any copy.
//!
//! Bounded: an issue holds at most [`MAX_POSTS`] posts and
//! [`MAX_ISSUE_BYTES`] (under Postfix's default `message_size_limit`);
//! [`take`] picks the pending posts of the next issue by size, and a post
//! that still does not fit (one huge post) is replaced by a stand-in that
//! names it. Every step is linear in the posts' size.
//!
//! # The lifecycle (phase 2, built on the store)
//!
//! * **Entry.** `Claims::seal_job`, the transaction that gives a post its
//!   list `seq`, also writes a digest entry `(list, seq) → {post id,
//!   received_at, size, bytes}` when the list has digests enabled and the
//!   post's audience is the regular members (an issue is never an entry of
//!   the next issue). The entry holds its own copy of the bytes (a sled tree
//!   / a PostgreSQL table), since the spool file goes when the regular
//!   fan-out finishes. A post without regular recipients (a list of digest
//!   members only) is sealed as a job of no chunks, finished at once, so its
//!   entry is still written in that one transaction.
//! * **Cut.** One transaction: read the pending entries in `seq` order, pick
//!   the next issue's with [`take`], write the issue record `{list, volume,
//!   number, cut_at, last_seq, header, footer, state: cut}` (header and
//!   footer copied, so a settings change cannot make a recomposed issue
//!   differ), move the entries under the issue, bump `digest_issue`.
//! * **Queue.** Compose both forms and `Queue::accept` each as a post whose
//!   `MessageMeta.audience` is `digest_mime` / `digest_plain` (serde default
//!   `regular`); the planner picks the members by that mode
//!   (`Directory::delivery_page` with the modes filter). Once both accepts
//!   are durable (a window hit with the same Message-ID counts as accepted:
//!   it is the same issue), mark the issue `queued` and drop its entries'
//!   bytes. A crash between cut and queued recomposes the same bytes: the
//!   window makes the accept happen once.
//! * **Schedule.** A `poll_loop` task in `serve` cuts an issue when the
//!   period (daily, weekly, monthly) has passed since the last issue or the
//!   pending entries reach `digest_size_threshold_kb`; never an empty issue
//!   unless `digest_send_empty`; the volume goes up with the year (or by the
//!   owner). `listrelay digest send LIST` (admin request `DigestSend`) cuts
//!   and queues now.

mod compose;
pub mod schedule;
mod summary;

pub use compose::{
    compose, message_id, subject, Composed, POST_SEPARATOR, STUB_MAX_BYTES, TOC_SEPARATOR,
};
pub use summary::Summary;

use serde::{Deserialize, Serialize};

use crate::model::List;

/// The largest issue, in bytes: under Postfix's default `message_size_limit`
/// (10,240,000) with room for the list headers and signatures the fan-out
/// adds, so the MTA never refuses an issue for its size.
pub const MAX_ISSUE_BYTES: usize = 8 * 1024 * 1024;
/// The most posts in one issue: keeps its table of contents readable and
/// its stand-ins (one per post at worst) well inside [`MAX_ISSUE_BYTES`].
pub const MAX_POSTS: usize = 1_000;
/// The posts' bytes an issue takes before the next post waits for the next
/// issue (see [`take`]): three quarters of the cap, the rest for the
/// contents, the sections' headers and line-end changes.
pub const TAKE_BYTES: u64 = (MAX_ISSUE_BYTES as u64) / 4 * 3;
/// The longest header or footer template used, in bytes (longer is cut).
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;

/// The header a list's issues start with unless its settings give another.
pub const DEFAULT_HEADER: &str = "\
Send {name} mailing list submissions to
    {list}

To change how you receive the list (for example \"set regular\" for one
copy of each post, or \"set nomail\"), write to
    {request}

You can reach the person managing the list at
    {owner}

When replying, please edit your Subject line so it is more specific
than \"Re: Contents of {name} Digest...\"";

/// The footer a list's issues end with unless its settings give another.
pub const DEFAULT_FOOTER: &str = "\
_______________________________________________
{name} mailing list
{list}
To unsubscribe, write to {leave}";

/// The two forms of an issue; a member in mode `digest_mime` or
/// `digest_plain` gets one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// `multipart/digest`, each post as `message/rfc822`.
    Mime,
    /// RFC 1153 plain text, each post's text part.
    Plain,
}

impl Form {
    /// Both forms, in the order an issue is queued.
    pub const ALL: [Form; 2] = [Form::Mime, Form::Plain];

    /// The name in Message-IDs, logs and commands.
    pub fn name(self) -> &'static str {
        match self {
            Form::Mime => "mime",
            Form::Plain => "plain",
        }
    }
}

/// One post of an issue.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    /// The post as received (its spool bytes): the MIME form attaches them,
    /// the plain form reads its text from them.
    pub raw: &'a [u8],
    /// When it was received (seconds): its Date when it has none.
    pub received_at: u64,
}

/// What an issue is, as its cut recorded it: everything its bytes depend on
/// besides the posts.
#[derive(Debug, Clone, Copy)]
pub struct Issue<'a> {
    /// The list: it names, addresses and identifies the issue.
    pub list: &'a List,
    /// The volume number (`Vol V`).
    pub volume: u32,
    /// The issue number within the volume (`Issue N`).
    pub number: u32,
    /// When the issue was cut (seconds): its Date and part of its
    /// Message-ID, fixed at the cut so a recomposed issue is identical.
    pub cut_at: u64,
    /// The header template (placeholders `{list}`, `{name}`, `{volume}`,
    /// `{issue}`, `{date}`, `{posts}`, `{request}`, `{owner}`, `{join}`,
    /// `{leave}`, `{list_id}`, `{archive}`); empty for none.
    pub header: &'a str,
    /// The footer template, same placeholders; empty for none.
    pub footer: &'a str,
}

/// How many of the pending posts (their sizes in bytes, oldest first) the
/// next issue takes: as many as fit in [`TAKE_BYTES`] and [`MAX_POSTS`], and
/// at least one, so a huge post cannot block the digest (the composer puts
/// a stand-in for it if it does not fit). The rest wait for the next issue.
pub fn take(sizes: impl IntoIterator<Item = u64>) -> usize {
    let mut total = 0u64;
    let mut n = 0;
    for size in sizes.into_iter().take(MAX_POSTS) {
        total = total.saturating_add(size);
        if n > 0 && total > TAKE_BYTES {
            break;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests;
