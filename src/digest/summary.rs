//! What an issue shows of one post, read once with mail-parser: the header
//! lines of its table-of-contents entry and of its RFC 1153 section, and its
//! text. Every value is made safe to print here, so the composer never sees
//! a raw header: one line, no control characters, a bounded length.

use mail_parser::{MimeHeaders, PartType};

use super::Post;

/// Longest subject kept, in bytes (a hostile subject is cut, on a
/// character boundary, with an ellipsis).
pub const MAX_SUBJECT_BYTES: usize = 400;
/// Longest author (display name or address) kept, in bytes.
pub const MAX_AUTHOR_BYTES: usize = 200;
/// Longest From, Date or Message-ID value kept in an RFC 1153 section.
pub const MAX_FIELD_BYTES: usize = 400;
/// At most this many attachments are named in a post's section; the rest
/// are counted.
const MAX_NAMED_ATTACHMENTS: usize = 10;

/// One post as an issue shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The decoded Subject, or `(no subject)`: the table of contents lists it.
    pub subject: String,
    /// The display name, else the address, of the first From: the table of
    /// contents names who wrote each post.
    pub author: String,
    /// `Name <address>` (or the address alone): the section's From line.
    pub from: String,
    /// The post's own Date, normalised, else the time it was received: the
    /// section's Date line (RFC 1153 puts it first).
    pub date: String,
    /// The Message-ID without brackets, if it has a usable one: readers
    /// thread replies to a digest post by it.
    pub message_id: Option<String>,
    /// The post's text (CR-free, `\n` line ends, never longer than the post
    /// itself), or a note saying it has none: the RFC 1153 section's body.
    pub text: String,
    /// One line naming the parts the plain form leaves out (attachments,
    /// HTML when there is a text alternative), empty if none.
    pub omitted: String,
}

/// `s` on one line: every control character and run of white space becomes
/// one space, the ends are trimmed, and it is cut at `max` bytes (with `…`).
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 4));
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if out.len() + c.len_utf8() > max {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Summary {
    /// Reads `post`. Linear in its size; a post mail-parser cannot read at
    /// all (empty, no header) still gets a section that says so.
    pub fn of(post: &Post<'_>) -> Summary {
        let received = crate::notice::rfc5322_date(post.received_at);
        let Some(m) = crate::mime::parse(post.raw) else {
            return Summary {
                subject: "(no subject)".into(),
                author: "unknown".into(),
                from: "unknown".into(),
                date: received,
                message_id: None,
                text: "[This post could not be read as a message.]".into(),
                omitted: String::new(),
            };
        };
        let subject = m
            .subject()
            .map(|s| one_line(s, MAX_SUBJECT_BYTES))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "(no subject)".into());
        let first = m.from().and_then(|f| f.first());
        let name = first
            .and_then(|a| a.name())
            .map(|n| one_line(n, MAX_AUTHOR_BYTES));
        let address = first
            .and_then(|a| a.address())
            .map(|a| one_line(a, MAX_AUTHOR_BYTES));
        let author = name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| address.clone())
            .unwrap_or_else(|| "unknown".into());
        let from = match (name.filter(|n| !n.is_empty()), address) {
            (Some(n), Some(a)) => one_line(&format!("{n} <{a}>"), MAX_FIELD_BYTES),
            (None, Some(a)) => a,
            (Some(n), None) => n,
            (None, None) => "unknown".into(),
        };
        let date = m.date().map(|d| d.to_rfc822()).unwrap_or(received);
        let message_id = m
            .message_id()
            .map(|id| one_line(id, MAX_FIELD_BYTES))
            .filter(|id| !id.is_empty() && !id.contains(['<', '>', ' ']));
        let (text, omitted) = text_of(&m, post.raw.len().min(super::MAX_ISSUE_BYTES));
        Summary {
            subject,
            author,
            from,
            date,
            message_id,
            text,
            omitted,
        }
    }
}

/// The post's text parts joined (HTML turned into text when it has no text
/// alternative), bounded by `budget` bytes, with `\n` line ends; and the line
/// naming what was left out.
fn text_of(m: &mail_parser::Message<'_>, budget: usize) -> (String, String) {
    let mut text = String::new();
    let mut truncated = false;
    for i in 0..m.text_body_count() {
        let Some(part) = m.body_text(i) else { continue };
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let clean: String = part.chars().filter(|c| *c != '\r' && *c != '\0').collect();
        let room = budget.saturating_sub(text.len());
        if clean.len() > room {
            text.push_str(cut(&clean, room));
            truncated = true;
            break;
        }
        text.push_str(&clean);
    }
    let text = text.trim_end().to_string();
    let mut notes: Vec<String> = Vec::new();
    if truncated {
        notes.push("the rest of the text".into());
    }
    let mut unnamed = 0usize;
    let mut named = 0usize;
    for part in m.attachments() {
        // HTML alternatives of a text part are attachments to mail-parser.
        if matches!(part.body, PartType::Html(_)) && m.text_body_count() > 0 {
            continue;
        }
        let kind = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "text/plain".into());
        if named < MAX_NAMED_ATTACHMENTS {
            let name = part.attachment_name().unwrap_or("unnamed");
            notes.push(format!(
                "{} ({}, {} bytes)",
                one_line(name, 80),
                one_line(&kind, 80),
                part.len()
            ));
            named += 1;
        } else {
            unnamed += 1;
        }
    }
    if unnamed > 0 {
        notes.push(format!("{unnamed} more attachments"));
    }
    let omitted = if notes.is_empty() {
        String::new()
    } else {
        format!("[Not included here: {}.]", notes.join("; "))
    };
    if text.is_empty() {
        return ("[This post has no text part.]".into(), omitted);
    }
    (text, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(raw: &str) -> Summary {
        Summary::of(&Post {
            raw: raw.as_bytes(),
            received_at: 0,
        })
    }

    #[test]
    fn one_line_folds_controls_and_cuts_on_a_character() {
        assert_eq!(one_line("  a\r\n\tb  c\u{7}d ", 100), "a b c d");
        assert_eq!(one_line("ééé", 4), "éé…");
        assert_eq!(one_line("", 10), "");
    }

    #[test]
    fn reads_subject_author_date_and_text() {
        let s = summary(
            "From: Ann Example <ann@example.org>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\
             Date: Tue, 1 Oct 2024 10:00:00 +0200\r\nMessage-ID: <a1@example.org>\r\n\r\nhello\r\n",
        );
        assert_eq!(s.subject, "café");
        assert_eq!(s.author, "Ann Example");
        assert_eq!(s.from, "Ann Example <ann@example.org>");
        assert_eq!(s.date, "Tue, 1 Oct 2024 10:00:00 +0200");
        assert_eq!(s.message_id.as_deref(), Some("a1@example.org"));
        assert_eq!(s.text, "hello");
        assert_eq!(s.omitted, "");
    }

    #[test]
    fn an_encoded_subject_cannot_add_lines() {
        // "a\r\nDate: x" encoded: decoded, it would be a second header line.
        let s = summary("Subject: =?utf-8?b?YQ0KRGF0ZTogeA==?=\r\n\r\nb\r\n");
        assert_eq!(s.subject, "a Date: x");
    }

    #[test]
    fn takes_the_text_alternative_and_names_attachments() {
        let s = summary(
            "From: b@example.org\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n\
             --X\r\nContent-Type: multipart/alternative; boundary=Y\r\n\r\n\
             --Y\r\nContent-Type: text/plain\r\n\r\nplain words\r\n\
             --Y\r\nContent-Type: text/html\r\n\r\n<p>html words</p>\r\n--Y--\r\n\
             --X\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"r.pdf\"\r\n\r\nPDF\r\n--X--\r\n",
        );
        assert_eq!(s.text, "plain words");
        assert!(
            s.omitted.contains("r.pdf (application/pdf"),
            "{}",
            s.omitted
        );
        assert!(!s.omitted.contains("html"), "{}", s.omitted);
    }

    #[test]
    fn html_only_becomes_text_and_no_text_says_so() {
        let s = summary("Subject: h\r\nContent-Type: text/html\r\n\r\n<p>only <b>html</b></p>\r\n");
        assert!(
            s.text.contains("only") && !s.text.contains("<p>"),
            "{}",
            s.text
        );
        let s = summary(
            "Subject: img\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n",
        );
        assert_eq!(s.text, "[This post has no text part.]");
        assert!(s.omitted.contains("image/png"), "{}", s.omitted);
    }

    #[test]
    fn text_never_exceeds_the_post() {
        // Latin-1 doubles in UTF-8: the text is cut at the post's size.
        let mut raw =
            b"Subject: l\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(0xe9u8, 1000));
        let s = Summary::of(&Post {
            raw: &raw,
            received_at: 0,
        });
        assert!(s.text.len() <= raw.len());
        assert!(s.omitted.contains("the rest of the text"));
    }

    #[test]
    fn unreadable_and_headerless_posts_get_defaults() {
        let s = summary("");
        assert_eq!(s.subject, "(no subject)");
        assert_eq!(s.date, "Thu, 1 Jan 1970 00:00:00 +0000");
        let s = summary("\r\n\r\n");
        assert_eq!(s.author, "unknown");
    }
}
