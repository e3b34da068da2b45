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
//! # The lifecycle (on the store)
//!
//! [`Digester`] (`service.rs`) drives it through the store role
//! `DigestRecords` (store/digest.rs):
//!
//! * **Entry.** `Claims::seal_job`, the transaction that gives a post its
//!   list `seq`, also writes a digest entry when the list has
//!   `digest_enabled` and the post's audience is `regular` (an issue is
//!   never an entry of the next issue): `(list, seq) → {post, received_at,
//!   size}` with the post's bytes beside it, since the spool file goes when
//!   the regular fan-out finishes (sled: trees `digest_entries` and
//!   `digest_bodies`, the body read from the spool before the transaction;
//!   PostgreSQL: table `digest_entries`, `INSERT … SELECT body FROM messages`
//!   in the seal's transaction, migration 0007). A post without regular
//!   recipients (every member takes digests) has no chunks and is not
//!   sealed today; `Claims::seal_digest_only` takes its `seq`, writes its
//!   entry and marks it done in one transaction (the planner or the sweep of
//!   done posts then finishes it), so it too is an entry exactly once.
//! * **Cut.** `DigestRecords::cut_issue`, one transaction: the oldest
//!   pending entries as [`take`] picks them, an issue record `{id, list,
//!   volume, number, cut_at, posts, header, footer, state: cut}` (header and
//!   footer copied, so a settings change cannot make a recomposed issue
//!   differ), the entries marked with the issue id, and the list's
//!   `digest_volume`/`digest_issue` set, compare-and-swapped against the
//!   values the caller read (two cutters cannot number two issues alike).
//!   On sled the candidates are scanned first and re-checked inside the
//!   transaction (sled transactions cannot scan).
//! * **Queue.** Compose both forms and `Queue::accept` them in one batch as
//!   posts whose `MessageMeta.audience` is `digest_mime` / `digest_plain`
//!   (`DeliveryMode`, serde default `regular`), `policy` already
//!   `accepted`; the planner reads the members with
//!   `Directory::audience_page(list, post.audience, …)`. Then
//!   `mark_issue_queued` drops the entries and their bytes. A crash between
//!   cut and queued leaves the issue `cut`: the next pass (or `digest send`,
//!   or the server's start) composes it again, identically, and the window
//!   answers `Redelivery` for a form already stored, so each form is one
//!   post and its fan-out the usual claimed, batched, DKIM-signed one.
//! * **Schedule.** A task in `serve` (the `poll_loop` pattern, every
//!   minute) runs [`schedule::due`] for each list with digests on: the
//!   period (daily, weekly, monthly: calendar periods) of the oldest pending
//!   post is over, or the pending bytes reach `digest_size_threshold_kb`;
//!   an empty issue only with `digest_send_empty`. Volume and number come
//!   from [`schedule::next_number`] (a new year, a new volume). Metrics:
//!   `listrelay_digest_issues_cut_total`, `…_issues_sent_total`,
//!   `…_entries_pending`.
//! * **Commands.** `listrelay digest send LIST` (admin request
//!   `DigestSend { list }`, through the socket or on the store) queues an
//!   issue left cut, then cuts and queues the pending posts; it prints
//!   volume, issue, posts and recipients. `digest status LIST` shows the
//!   pending posts and the last issue. Export/import carry entries (bodies
//!   base64) and issues.
//! * **Crash proof.** `LISTRELAY_TEST_CRASH_AT=digest-after-cut|
//!   digest-after-accept` makes the process SIGKILL itself there (tests
//!   only); tests/digest.rs runs `digest send` in a CLI process with it, then
//!   starts the server and checks every post is in exactly one issue and
//!   each digest member got each issue once.

mod compose;
pub mod schedule;
mod service;
mod summary;

pub use compose::{
    compose, message_id, subject, Composed, POST_SEPARATOR, STUB_MAX_BYTES, TOC_SEPARATOR,
};
pub use service::{Digester, Sent};
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
    crate::store::issue_take(sizes, MAX_POSTS as u64, TAKE_BYTES)
}

#[cfg(test)]
mod tests;
