//! Bounces without a machine-readable report: the plain-text formats of
//! Exim, qmail, Postfix and Sendmail without DSN, Exchange, Gmail, Yahoo,
//! Domino, Courier and others.
//!
//! The approach is generic: cut the text where the returned original
//! message starts, take the addresses in what remains (minus the sender and
//! mail-system addresses), and classify each from the text that follows it.

use std::collections::HashSet;

use super::addr;
use super::classify;
use super::fields;
use super::report::{Kind, Reason, RecipientDetail};

/// Words that mark the start of the returned original message when they
/// appear on a separator line (`----- Original message -----`).
const ORIGINAL_MARKERS: &[&str] = &[
    "original message",
    "copy of the message",
    "copy of your message",
    "copy of the original",
    "message header",
    "headers of the original",
    "original headers",
    "returned message",
    "undelivered message",
    "message follows",
    "text of",
    "headers follow",
    "forwarded message",
    "message text follows",
    "unsent message",
    "rfc822",
];

/// Header fields that start the returned message when found at line start.
const HEADER_STARTS: &[&str] = &[
    "return-path:",
    "received:",
    "dkim-signature:",
    "message-id:",
    "x-original-to:",
    "delivered-to:",
    "mime-version:",
    "content-type:",
    "arc-seal:",
];

/// Lines whose addresses are never failed recipients.
const SKIP_LINE_STARTS: &[&str] = &[
    "from:",
    "reply-to:",
    "sender:",
    "return-path:",
    "in-reply-to:",
    "references:",
    "message-id:",
    "x-",
];

/// The part of a bounce text before the returned original message.
pub fn cut_original(text: &str) -> &str {
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        let lower = t.to_ascii_lowercase();
        let sep = t.len() > 3
            && (t.starts_with("--")
                || t.starts_with("==")
                || t.starts_with("**")
                || t.starts_with("__")
                || t.starts_with("> -")
                || t.starts_with("--"));
        if sep && ORIGINAL_MARKERS.iter().any(|m| lower.contains(m)) {
            return &text[..pos];
        }
        let raw_lower = line.to_ascii_lowercase();
        if HEADER_STARTS.iter().any(|h| raw_lower.starts_with(h)) && pos > 0 {
            return &text[..pos];
        }
        pos += line.len();
    }
    text
}

/// Phrases that make a text look like a delivery failure report.
const FAILURE_PHRASES: &[&str] = &[
    "could not be delivered",
    "couldn't be delivered",
    "could not deliver",
    "wasn't able to deliver",
    "was not delivered",
    "undeliverable",
    "undelivered",
    "delivery failed",
    "delivery has failed",
    "delivery to the following",
    "failed permanently",
    "permanent error",
    "permanent fatal",
    "fatal error",
    "following address",
    "following recipient",
    "did not reach",
    "not be delivered",
    "unable to deliver",
    "returned mail",
    "mail delivery failed",
    "delivery status notification",
    "failure notice",
    "non-delivery",
    "nondelivery",
    "delivery failure",
    "error occurred",
    "user unknown",
    "rejected",
    "has been delayed",
    "temporarily deferred",
    "not yet been delivered",
    "delivery problem",
    // RFC 5321's wording of the 450, 550, 551, 552 and 553 replies.
    "requested action not taken",
];

/// Byte offset just after a phrase announcing the list of failed recipients.
fn list_start(body: &str) -> Option<usize> {
    let lower = body.to_ascii_lowercase();
    [
        "following recipient",
        "following address",
        "following destination",
        "did not reach the following",
        "to the following",
    ]
    .iter()
    .filter_map(|p| lower.find(p).map(|i| i + p.len()))
    .min()
}

/// Whether text, subject or sender suggest a bounce.
pub fn looks_like_bounce(text: &str, subject: &str, from: &str) -> bool {
    // The wording is at the start of a report ([`MAX_GENERAL_BYTES`]).
    let t = text[..fields::floor_char(text, MAX_GENERAL_BYTES)].to_lowercase();
    let s = subject.to_lowercase();
    let f = from.to_ascii_lowercase();
    f.contains("mailer-daemon")
        || f.contains("postmaster")
        || FAILURE_PHRASES
            .iter()
            .any(|p| t.contains(p) || s.contains(p))
        || s.contains("returned")
        || s.contains("failure")
        || s.contains("failed")
        || s.contains("delivery")
}

/// Line boundaries of a text, found once, so that finding the line of
/// each of many addresses stays linear.
struct Lines {
    /// Byte offset where each line starts, ascending.
    starts: Vec<usize>,
    /// Length of the text.
    len: usize,
}

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines {
            starts,
            len: text.len(),
        }
    }

    /// Start and end (newline excluded) of the line holding byte `pos`.
    fn of(&self, pos: usize) -> (usize, usize) {
        let i = self.starts.partition_point(|&s| s <= pos) - 1;
        let end = self.starts.get(i + 1).map_or(self.len, |&n| n - 1);
        (self.starts[i], end)
    }
}

/// How far before an address, on its own line, its explanation is looked
/// for: a line of an RFC 5322 message is at most 998 characters, and a
/// longer one (hostile or broken) must not make each of its addresses
/// re-read it.
const LINE_LOOKBACK: usize = 1000;

/// How far after an address its own text is read: a report's paragraph
/// about one recipient is a few lines; the rest (a hostile 1 MiB line, the
/// last recipient's "segment" up to the end of the report) must not be
/// classified as its own text, so each recipient costs a bounded amount.
const MAX_SEGMENT_BYTES: usize = 4096;

/// How much of a report's text is read for its general wording (the
/// phrases and codes that classify recipients whose own text has none):
/// a report's human-readable part is a few kilobytes; a longer one is
/// judged on its start (issue 11: linear and bounded).
const MAX_GENERAL_BYTES: usize = 64 * 1024;

/// The most failed recipients one report yields. listrelay sends each
/// member's copy with its own VERP sender, so a report about a list's
/// mail names one recipient, a few when an MTA batches; a text naming
/// thousands is hostile or broken, and is judged on its first ones.
pub const MAX_RECIPIENTS: usize = 100;

/// The most address occurrences a report's text is searched for (each is
/// normalised and checked): with [`MAX_RECIPIENTS`], a text of nothing but
/// addresses costs a bounded amount.
pub const MAX_EXAMINED_ADDRESSES: usize = 1000;

/// How far before an address, on its line, is read to tell whether it
/// starts the line ("  a@b.c", "<a@b.c>", "rcpt to: <a@b.c>").
const LINE_START_WINDOW: usize = 256;

/// Finds failed recipients in a plain-text bounce. `exclude` holds the
/// addresses of the report's own headers (sender, envelope, To).
pub fn parse(text: &str, exclude: &[String]) -> Option<(Kind, Vec<RecipientDetail>)> {
    let body = cut_original(text);
    let lines = Lines::new(body);
    // When the report announces a list ("the following recipients"), the
    // addresses before the announcement (the original To, the sender) are
    // not failed recipients, provided the list names someone.
    let list_start = list_start(body);
    let list_names_someone = list_start.is_some_and(|p| {
        addr::find_iter(&body[p..])
            .take(MAX_EXAMINED_ADDRESSES)
            .any(|g| !addr::is_system_local(&g.addr))
    });
    let exclude: HashSet<String> = exclude.iter().map(|e| e.to_ascii_lowercase()).collect();
    let mut seen = HashSet::new();
    let mut found: Vec<addr::Found> = Vec::new();
    // Whether the current line is one whose addresses are skipped, read
    // once per line however many addresses it holds.
    let mut line_skipped: Option<(usize, bool)> = None;
    for f in addr::find_iter(body).take(MAX_EXAMINED_ADDRESSES) {
        let (line_start, line_end) = lines.of(f.start);
        let skipped = match line_skipped {
            Some((ls, v)) if ls == line_start => v,
            _ => {
                let line = body[line_start..line_end].trim_start().to_ascii_lowercase();
                let v = SKIP_LINE_STARTS.iter().any(|s| line.starts_with(s))
                    || line.contains("contact");
                line_skipped = Some((line_start, v));
                v
            }
        };
        if skipped || (list_names_someone && list_start.is_some_and(|p| f.start < p)) {
            continue;
        }
        // An address alone on its line after the announcement ("The
        // following addresses had delivery problems:\n  a@b.c") is an item
        // of the report's own list: it is kept even when it is a role
        // address (postmaster@) or the report's own To (a message sent to
        // oneself).
        let listed = list_start.is_some_and(|p| f.start > p)
            && line_end - line_start <= LINE_LOOKBACK
            && body[line_start..line_end]
                .trim()
                .trim_end_matches(':')
                .trim_start_matches('<')
                .trim_end_matches('>')
                .eq_ignore_ascii_case(&f.addr);
        let key = f.addr.to_ascii_lowercase();
        // "/home/u/mbox@host" or "|prog@host": a file or pipe, not an address.
        if f.addr.starts_with(['/', '|'])
            || (!listed && (addr::is_system_local(&f.addr) || exclude.contains(&key)))
        {
            continue;
        }
        // Inside a URL ("http://user@host") it is not an address.
        let before = &body[line_start..f.start];
        if before.ends_with("://") || before.ends_with('/') {
            continue;
        }
        if !seen.insert(key) {
            continue;
        }
        found.push(f);
    }
    if found.is_empty() {
        return None;
    }
    // Reports list failed recipients at the start of a line ("  a@b.c",
    // "<a@b.c>: host ... said", "a@b.c on <date>"); when some are there,
    // addresses inside sentences are mentions, not recipients.
    // A line that is one address form ("Name <a@b.c>", "old@x <a@b.c>",
    // "smtp=a@b.c") lists it too. Only short lines are read whole, so a
    // long line costs nothing per address.
    let line_is_the_address = |f: &addr::Found| {
        let (ls, le) = lines.of(f.start);
        if le - ls >= 256 {
            return false;
        }
        let line = &body[ls..le];
        // What precedes a bracket must read as a name or an address, not
        // as prose or encoded text.
        let name = line.split('<').next().unwrap_or("");
        let tail = line.rsplit('>').next().unwrap_or("");
        (!line.contains('>') || tail.trim().is_empty())
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || " .\"'-_@+=,".contains(c))
            && addr::normalize(line).is_some_and(|a| a == f.addr)
    };
    let at_line_start = |f: &addr::Found| {
        let ls = lines.of(f.start).0;
        let from = fields::floor_char(body, ls.max(f.start.saturating_sub(LINE_START_WINDOW)));
        let before = body[from..f.start].trim();
        before.is_empty()
            || before == "<"
            || before == "\""
            || before.eq_ignore_ascii_case("rcpt to: <")
            || before.ends_with(':') && before.len() < 24
            || line_is_the_address(f)
    };
    if found.iter().any(at_line_start) {
        let items = list_items(body, list_start, &found);
        found.retain(|f| at_line_start(f) || items.contains(&f.start));
    }
    found.truncate(MAX_RECIPIENTS);
    let general = General::of(body);
    let mut details = Vec::new();
    for (i, f) in found.iter().enumerate() {
        let start = fields::floor_char(
            body,
            lines
                .of(f.start)
                .0
                .max(f.start.saturating_sub(LINE_LOOKBACK)),
        );
        let mut end = found
            .get(i + 1)
            .map_or(body.len(), |g| lines.of(g.start).0.max(f.end));
        end = fields::floor_char(body, end.min(f.end + MAX_SEGMENT_BYTES));
        if let Some(line_end) = sendmail_address_line(&body[..end], &lines, f) {
            end = line_end;
        }
        details.push(detail(&f.addr, &body[start..end], &general));
    }
    let delayed = general.permanent == Some(false)
        && details.iter().all(|d| {
            d.status.as_deref().is_none_or(|s| s.starts_with('4'))
                && !matches!(d.reason, Reason::UserUnknown | Reason::HostUnknown)
        });
    Some((if delayed { Kind::Delay } else { Kind::Bounce }, details))
}

/// The addresses given as the items of the report's own list, written
/// in a run ("the following recipients: a@x, b@x,\n c@x"): after the
/// announcement, separated from it and from each other by list
/// punctuation only. They are recipients wherever they sit on their
/// lines. Returns their offsets; the gaps read are disjoint (linear).
fn list_items(body: &str, list_start: Option<usize>, found: &[addr::Found]) -> HashSet<usize> {
    let mut items = HashSet::new();
    let Some(mut prev) = list_start else {
        return items;
    };
    for f in found {
        if f.start < prev {
            continue;
        }
        let gap = &body[prev..f.start];
        // The announcement's own line may go on ("... failed permanently:").
        let gap = if items.is_empty() {
            gap.rsplit(':').next().unwrap_or(gap)
        } else {
            gap
        };
        if !gap
            .chars()
            .all(|c| c.is_whitespace() || ",;<>\"".contains(c))
        {
            break;
        }
        items.insert(f.start);
        prev = f.end.max(prev);
    }
    items
}

/// Sendmail's line about one address, `554 <a@b.c>... Host unknown`
/// (its `usrerr` form: a reply code, the address, three dots, the
/// reason), says all there is about that address; the transcript lines
/// after it, each starting with its own reply code, are about the next
/// host and address (Sendmail v5 writes a host's lines before the line of
/// each address they failed). Returns where the address's line and its
/// indented continuations end, or `None` for any other form. `body` ends
/// where the next address's text starts, so each line is read once.
fn sendmail_address_line(body: &str, lines: &Lines, f: &addr::Found) -> Option<usize> {
    let (ls, le) = lines.of(f.start);
    let le = le.min(body.len());
    let before = body[ls..f.start].trim_end_matches('<').trim_end();
    let after = &body[f.end..le];
    let coded = before.len() == 3
        && classify::find_reply_code(before).is_some()
        && after.trim_start_matches('>').starts_with("...");
    if !coded {
        return None;
    }
    let (mut end, mut at) = (le, (le + 1).min(body.len()));
    // Continuation lines are indented; the next transcript line is not.
    for next in body[at..].split_inclusive('\n') {
        if !next.starts_with([' ', '\t']) || next.trim().is_empty() {
            break;
        }
        at += next.len();
        end = at;
    }
    Some(end)
}

/// What the whole report says, read once: it classifies every recipient
/// whose own text carries no code.
struct General<'a> {
    /// The report's text before the returned message.
    body: &'a str,
    /// Whether its wording says permanent or temporary.
    permanent: Option<bool>,
    /// Its best status code.
    status: Option<String>,
    /// Its classifier signals.
    signals: classify::Signals,
}

impl<'a> General<'a> {
    fn of(body: &'a str) -> Self {
        let body = &body[..fields::floor_char(body, MAX_GENERAL_BYTES)];
        General {
            body,
            permanent: permanence(body),
            status: classify::best_status(None, body),
            signals: classify::Signals::of(body),
        }
    }
}

/// Whether the wording of a report says the failure is permanent
/// (`Some(true)`), temporary (`Some(false)`) or does not say.
fn permanence(body: &str) -> Option<bool> {
    let lower = body.to_lowercase();
    if lower.contains("permanent") || lower.contains("fatal") {
        Some(true)
    } else if lower.contains("temporar")
        || lower.contains("will retry")
        || lower.contains("delayed")
        || lower.contains("still trying")
    {
        Some(false)
    } else {
        None
    }
}

/// Classifies one failed recipient from the text about it (`segment`),
/// falling back to the whole report when the segment carries no code.
fn detail(recipient: &str, segment: &str, general: &General) -> RecipientDetail {
    let own = classify::Signals::of(segment);
    let own_status = classify::best_status(None, segment);
    let (mut status, signals, diagnostic) = if own_status.is_some() || own.reply_code().is_some() {
        (
            own_status,
            own,
            segment.trim().chars().take(500).collect::<String>(),
        )
    } else {
        // The segment followed by the report, as far as a diagnostic shows.
        let head = &general.body[..fields::floor_char(general.body, general.body.len().min(2000))];
        let joined = format!("{segment}\n{head}");
        (
            general.status.clone(),
            own.merge(general.signals),
            joined.trim().chars().take(500).collect(),
        )
    };
    let reason = classify::reason_of(status.as_deref(), &signals);
    if status.is_none() {
        status = classify::derive_status_from(reason, signals.reply_code(), general.permanent);
    }
    let hard = classify::is_hard(reason, status.as_deref());
    RecipientDetail {
        recipient: recipient.to_string(),
        original_recipient: None,
        action: None,
        status,
        diagnostic: (!diagnostic.is_empty()).then_some(diagnostic),
        remote_mta: None,
        reason,
        hard,
    }
}

/// Builds the details of a bounce whose failed recipients are named
/// outside its text (the `X-Failed-Recipients` header), classifying each
/// from the report's text before the returned message.
pub fn parse_named(text: &str, recipients: &[String]) -> Option<(Kind, Vec<RecipientDetail>)> {
    if recipients.is_empty() {
        return None;
    }
    let general = General::of(cut_original(text));
    let details = recipients.iter().map(|r| detail(r, "", &general)).collect();
    Some((Kind::Bounce, details))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exim_text() {
        let t = "A message that you sent could not be delivered to one or more of its\n\
            recipients. This is a permanent error. The following address(es) failed:\n\n  \
            kijitora@example.or.jp\n    SMTP error from remote mail server after RCPT TO:<kijitora@example.or.jp>:\n    \
            host mx.example.jp [192.0.2.20]: 550 5.1.1 User unknown\n\n\
            ------ This is a copy of the message, including all the headers. ------\n\n\
            Return-path: <shironeko@example.jp>\nTo: other@example.net\n";
        let (kind, d) = parse(t, &["shironeko@example.jp".into()]).unwrap();
        assert_eq!(kind, Kind::Bounce);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].recipient, "kijitora@example.or.jp");
        assert_eq!(d[0].status.as_deref(), Some("5.1.1"));
        assert!(d[0].hard);
    }

    #[test]
    fn cutting() {
        assert_eq!(
            cut_original("a\n--- Below this line is a copy of the message.\nb"),
            "a\n"
        );
        assert_eq!(cut_original("a\nReceived: x\n"), "a\n");
        assert_eq!(
            cut_original("----- Transcript of session follows -----\nx"),
            "----- Transcript of session follows -----\nx"
        );
    }
}
