//! RFC 3464 delivery status notifications (`message/delivery-status`).

use std::collections::{HashMap, HashSet};

use super::addr;
use super::classify;
use super::fields::{self, Block};
use super::report::{Kind, Reason, RecipientDetail};

/// What one per-recipient block says about delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Delayed,
    Success,
}

/// Parses the contents of `message/delivery-status` parts (or DSN fields
/// found in plain text). `context` is the human-readable part of the
/// report, used to classify recipients that have no Diagnostic-Code.
/// Returns `None` when no per-recipient block was found.
pub fn parse(dsn_text: &str, context: &str) -> Option<(Kind, Vec<RecipientDetail>)> {
    let blocks = split_recipients(fields::parse_blocks(dsn_text));
    let context = Context::new(context);
    let mut details = Vec::new();
    let (mut failed, mut delayed, mut success) = (false, false, false);
    for b in &blocks {
        let Some((detail, outcome)) = recipient(b, &context) else {
            continue;
        };
        match outcome {
            Outcome::Failed => failed = true,
            Outcome::Delayed => delayed = true,
            Outcome::Success => {
                success = true;
                continue;
            }
        }
        details.push(detail);
    }
    if failed {
        Some((Kind::Bounce, details))
    } else if delayed {
        Some((Kind::Delay, details))
    } else if success {
        Some((Kind::DeliveryNotice, Vec::new()))
    } else {
        None
    }
}

/// Splits blocks further where a `Final-Recipient` repeats without a blank
/// line, and keeps only blocks that name a recipient.
fn split_recipients(blocks: Vec<Block>) -> Vec<Block> {
    let mut out = Vec::new();
    for b in blocks {
        let mut cur: Block = Vec::new();
        // Which recipient fields `cur` already has: flags, not a search
        // of `cur` per field (a block of many fields stays linear).
        let (mut has_final, mut has_original) = (false, false);
        for (n, v) in b {
            let is_final = n == "final-recipient";
            let is_original = n == "original-recipient";
            let starts = is_final || (is_original && has_final);
            if starts && ((is_final && has_final) || (is_original && has_original)) {
                out.push(std::mem::take(&mut cur));
                (has_final, has_original) = (false, false);
            }
            has_final |= is_final;
            has_original |= is_original;
            cur.push((n, v));
        }
        out.push(cur);
    }
    out.retain(|b| {
        b.iter()
            .any(|(n, _)| n == "final-recipient" || n == "original-recipient")
    });
    out
}

fn recipient(b: &Block, context: &Context) -> Option<(RecipientDetail, Outcome)> {
    let get_addr =
        |name: &str| fields::get(b, name).and_then(|v| addr::normalize(fields::strip_type(v)));
    let original = get_addr("original-recipient");
    let rcpt = get_addr("final-recipient")
        .or_else(|| get_addr("x-actual-recipient"))
        .or_else(|| original.clone())?;
    let action = fields::get(b, "action").map(|a| {
        a.split(|c: char| c.is_whitespace() || c == '(' || c == ';')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    });
    let diagnostic = fields::get(b, "diagnostic-code").map(|d| fields::strip_type(d).to_string());
    let remote_mta = fields::get(b, "remote-mta").map(|d| fields::strip_type(d).to_string());
    let given = fields::get(b, "status").and_then(classify::status_from_field);
    let diag = diagnostic.clone().unwrap_or_default();
    let mut status = classify::best_status(given.as_deref(), &diag);
    let outcome = match action.as_deref() {
        Some("failed") | Some("failure") => Outcome::Failed,
        Some("delayed") => Outcome::Delayed,
        Some("delivered") | Some("relayed") | Some("expanded") => Outcome::Success,
        _ => match status.as_deref().map(|s| s.as_bytes()[0]) {
            Some(b'2') => Outcome::Success,
            Some(b'4') => Outcome::Delayed,
            _ => Outcome::Failed,
        },
    };
    // Text that explains this recipient: the diagnostic, else the lines of
    // the human-readable part around the address.
    let near = context.around(&rcpt);
    let explain = if diag.trim().is_empty() {
        near.clone()
    } else if !classify::at_data_stage(&diag.to_ascii_lowercase())
        && (classify::at_data_stage(&near.to_ascii_lowercase()) || context.answered_data(&diag))
    {
        // Postfix puts the SMTP stage ("in reply to end of DATA command")
        // in its human-readable text only, not in the Diagnostic-Code;
        // Sendmail shows it in its session transcript (">>> DATA").
        format!("{diag} (in reply to end of DATA command)")
    } else {
        diag.clone()
    };
    // Without a Diagnostic-Code, the human-readable text around the
    // address ("a@b: 550 5.1.1 ...", OpenSMTPD) can refine a bare "5.0.0".
    status = classify::best_status(status.as_deref(), &explain);
    let mut reason = classify::reason(status.as_deref(), &explain);
    // A diagnostic that says nothing classifiable ("550 #5.1.0 Address
    // rejected"): the report's human-readable explanation of this
    // recipient (RFC 3464 section 2) says what went wrong.
    if reason == Reason::Other && explain != near && !near.trim().is_empty() {
        reason = classify::reason(status.as_deref(), &format!("{explain} {near}"));
    }
    if status.is_none() {
        let permanent = match outcome {
            Outcome::Failed => None,
            _ => Some(false),
        };
        status = classify::derive_status(reason, &explain, permanent);
    }
    let hard = classify::is_hard(reason, status.as_deref());
    let detail = RecipientDetail {
        recipient: rcpt,
        original_recipient: original,
        action,
        status,
        diagnostic,
        remote_mta,
        reason,
        hard,
    };
    Some((detail, outcome))
}

/// The human-readable part of a report, with the line where each address
/// it mentions first appears, found in one pass.
struct Context<'a> {
    /// The text.
    text: &'a str,
    /// Lower-cased address -> where the text about its first mention
    /// starts: its line's start, or a line's length before it.
    first_line: HashMap<String, usize>,
    /// Lines that start with an address (`a@b: 550 ...`, `<a@b>: host
    /// ... said`), as (line start, lower-cased address), in order: where
    /// one recipient's paragraph of a multi-recipient report gives way to
    /// the next one's.
    led: Vec<(usize, String)>,
    /// Replies of the session transcript (Sendmail's `<<< 550 ...` lines,
    /// normalised) that answered the `>>> DATA` command: such a refusal is
    /// about the message, not the address (RFC 5321 section 4.1.1.4).
    data_replies: HashSet<String>,
}

/// A transcript line, normalised for comparison with a Diagnostic-Code.
fn reply_key(line: &str) -> String {
    line.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// How much text before a mention, and how much in all, explains it: a
/// line is at most 998 characters (RFC 5322), a longer one is not re-read
/// per recipient.
const LOOKBACK: usize = 1000;
const AROUND_MAX: usize = 4000;

impl<'a> Context<'a> {
    fn new(text: &'a str) -> Self {
        let mut first_line = HashMap::new();
        let mut led: Vec<(usize, String)> = Vec::new();
        // Addresses come in order: the line start is tracked as we go.
        let (mut line_start, mut scanned) = (0, 0);
        for f in addr::find_all(text) {
            if let Some(i) = text[scanned..f.start].rfind('\n') {
                line_start = scanned + i + 1;
            }
            scanned = f.start;
            let start = fields::floor_char(text, line_start.max(f.start.saturating_sub(LOOKBACK)));
            let key = f.addr.to_ascii_lowercase();
            if start == line_start
                && matches!(text[line_start..f.start].trim(), "" | "<")
                && led.last().is_none_or(|(ls, _)| *ls != line_start)
            {
                led.push((line_start, key.clone()));
            }
            first_line.entry(key).or_insert(start);
        }
        // With pipelining (RFC 2920) the transcript shows only the last
        // command sent, and the replies come in the order of the commands:
        // of several replies after `>>> DATA`, only the last answers DATA
        // (the others answer the RCPTs sent with it, "503 Need RCPT" then
        // being DATA's own).
        let mut data_replies = HashSet::new();
        let (mut command, mut last_reply) = ("", None);
        let mut settle = |command: &str, last: Option<&str>| {
            if command.eq_ignore_ascii_case("data") || command == "." {
                if let Some(r) = last {
                    data_replies.insert(reply_key(r));
                }
            }
        };
        for line in text.lines() {
            if let Some(c) = line.strip_prefix(">>> ") {
                settle(command, last_reply.take());
                command = c.trim();
            } else if let Some(r) = line.strip_prefix("<<< ") {
                last_reply = Some(r);
            } else if line.trim().is_empty() {
                settle(command, last_reply.take());
                command = "";
            }
        }
        settle(command, last_reply);
        Context {
            text,
            first_line,
            led,
            data_replies,
        }
    }

    /// Whether the session transcript shows `diagnostic` as the reply to
    /// DATA (or to the message's final dot).
    fn answered_data(&self, diagnostic: &str) -> bool {
        !self.data_replies.is_empty() && self.data_replies.contains(&reply_key(diagnostic))
    }

    /// The line that mentions `rcpt` and the few lines after it, up to
    /// the line where another recipient's paragraph starts (RFC 3464
    /// section 2: the human-readable part explains each recipient; in
    /// "a@x: 550 5.1.1 User unknown" / "b@x: 552 5.2.2 Mailbox full" the
    /// second line is not about a@x). A list of bare addresses sharing
    /// one explanation below them is not cut.
    fn around(&self, rcpt: &str) -> String {
        let key = rcpt.to_ascii_lowercase();
        let Some(&start) = self.first_line.get(&key) else {
            return String::new();
        };
        let rest = &self.text[start..];
        let mut end = fields::floor_char(rest, rest.len().min(AROUND_MAX));
        let from = self.led.partition_point(|(ls, _)| *ls <= start);
        for (ls, other) in &self.led[from..] {
            let off = ls - start;
            if off >= end {
                break;
            }
            if *other != key && alnum_count(&rest[..off]) > alnum_count(&key) {
                end = off;
                break;
            }
        }
        rest[..end]
            .split('\n')
            .take(6)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Letters and digits in `s`: whether a paragraph says more than the
/// address it is about.
fn alnum_count(s: &str) -> usize {
    s.chars().filter(|c| c.is_alphanumeric()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounce::report::Reason;

    #[test]
    fn blocks() {
        let dsn = "Reporting-MTA: dns; mx.example.org\n\n\
            Final-Recipient: rfc822; a@Example.ORG\nAction: failed\nStatus: 5.0.0\n\
            Diagnostic-Code: smtp; 550 5.1.1 <a@example.org>: Recipient address rejected: User unknown\n\n\
            Final-Recipient: rfc822; b@example.org\nAction: delivered\nStatus: 2.0.0\n\
            Final-Recipient: rfc822; c@example.org\nAction: delayed\nStatus: 4.4.1\n";
        let (kind, d) = parse(dsn, "").unwrap();
        assert_eq!(kind, Kind::Bounce);
        let r: Vec<_> = d.iter().map(|d| d.recipient.as_str()).collect();
        assert_eq!(r, ["a@example.org", "c@example.org"]);
        assert_eq!(d[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(d[0].reason, Reason::UserUnknown);
        assert!(d[0].hard);
        assert!(!d[1].hard);
    }

    #[test]
    fn success_only() {
        let dsn = "Final-Recipient: rfc822; b@example.org\nAction: delivered\nStatus: 2.0.0\n";
        assert_eq!(parse(dsn, ""), Some((Kind::DeliveryNotice, vec![])));
        assert_eq!(parse("Reporting-MTA: dns; x\n", ""), None);
    }
}
