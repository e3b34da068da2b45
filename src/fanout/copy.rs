//! The copy of a post that goes to members: RFC 2369/2919 list headers and
//! `Precedence: list` on top, the same headers from upstream removed, and the
//! optional subject prefix and footer. Built once per post, shared by all
//! envelopes.

use base64::Engine;
use mail_parser::{HeaderName, MessageParser};
use sha2::{Digest, Sha256};

use crate::address::Suffix;
use crate::model::directory::MungeAuthorIn;
use crate::model::List;

/// Headers a list sets on its copies; upstream values of them are dropped.
const LIST_HEADERS: &[&str] = &[
    "list-id",
    "list-post",
    "list-help",
    "list-subscribe",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-archive",
    "list-owner",
    "precedence",
];

/// Splits a message into its header lines (each with its continuation lines
/// and line ending) and the rest (blank line and body).
fn split_headers(raw: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    let mut start = 0;
    while pos < raw.len() {
        let rest = &raw[pos..];
        if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            break;
        }
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        // An indented line continues a field, as readers (mail-parser) take
        // it, only after a line with a colon: after a line without one it
        // starts a field of its own (fuzzing: `junk` then `  List-Id: …`
        // was a second List-Id to readers and not to us).
        let continuation =
            matches!(rest.first(), Some(b' ' | b'\t')) && raw[start..pos].contains(&b':');
        if !continuation && pos > start {
            fields.push(&raw[start..pos]);
            start = pos;
        }
        pos = line_end;
    }
    if pos > start {
        fields.push(&raw[start..pos]);
    }
    (fields, &raw[pos..])
}

fn field_name(field: &[u8]) -> String {
    // As a lenient reader (mail-parser, as a client does) matches names:
    // ASCII whitespace anywhere in the name is ignored and colons before it
    // skipped, so a malformed `List-I d:` is the List-Id readers take it
    // for, and is replaced like one. A line without a colon has no name.
    let mut name = String::new();
    for &b in field {
        match b {
            b':' if !name.is_empty() => return name,
            b'\n' => break,
            b if b == b':' || b.is_ascii_whitespace() => {}
            b => name.push(char::from(b.to_ascii_lowercase())),
        }
    }
    String::new()
}

/// The `List-Unsubscribe` of one envelope when the list offers one-click
/// unsubscribe: a VERP envelope (one member) gets the member's signed
/// one-click URL before the mailto and `List-Unsubscribe-Post` (RFC 8058);
/// a batched envelope the mailto alone. The shared copy then carries none.
pub fn unsubscribe_header(list: &List, one_click_url: Option<&str>) -> Vec<u8> {
    let leave = list.suffix_address(Suffix::Leave);
    match one_click_url {
        Some(url) => format!(
            "List-Unsubscribe: <{url}>, <mailto:{leave}>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        ),
        None => format!("List-Unsubscribe: <mailto:{leave}>\r\n"),
    }
    .into_bytes()
}

fn list_headers(list: &List, shared_unsubscribe: bool) -> String {
    let a = |s| list.suffix_address(s);
    let name = if list.settings.description.is_empty() {
        String::new()
    } else {
        format!(
            "\"{}\" ",
            list.settings.description.replace(['"', '\r', '\n'], "")
        )
    };
    let mut h = format!(
        "List-Id: {name}<{id}>\r\nList-Post: <mailto:{post}>\r\nList-Help: <mailto:{req}?subject=help>\r\n\
         List-Subscribe: <mailto:{join}>\r\n",
        id = list.list_id(),
        post = a(Suffix::Post),
        req = a(Suffix::Request),
        join = a(Suffix::Join),
    );
    if shared_unsubscribe {
        h.push_str(&format!(
            "List-Unsubscribe: <mailto:{}>\r\n",
            a(Suffix::Leave)
        ));
    }
    if !list.settings.archive_url.is_empty() {
        h.push_str(&format!(
            "List-Archive: <{}>\r\n",
            list.settings.archive_url
        ));
    }
    h.push_str("Precedence: list\r\n");
    h
}

/// Whether the body is plain text we can append a footer to without breaking
/// its MIME structure or transfer encoding, as mail-parser reads the header
/// section (one reading: the one intake, the signer and members' clients
/// built on it use, not a text search of our own, which a hostile
/// `Content-Type: multipart/mixed; x="text/plain"` fooled). Every
/// Content-Type field must parse as `text/plain` (or `text`) and every
/// Content-Transfer-Encoding must be an identity one (`7bit`, `8bit`,
/// `binary`), so readers that take the first field and readers that take
/// the last agree, and a type mail-parser cannot parse gets no footer.
/// No Content-Type at all is plain text (RFC 2045 §5.2).
fn plain_text(raw: &[u8]) -> bool {
    let Some(parsed) = MessageParser::new().parse_headers(raw) else {
        // No header section at all: plain text by default.
        return true;
    };
    parsed.headers().iter().all(|h| match h.name {
        HeaderName::ContentType => h.value.as_content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("text")
                && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
        }),
        HeaderName::ContentTransferEncoding => h.value.as_text().is_some_and(|e| {
            ["7bit", "8bit", "binary"]
                .iter()
                .any(|ok| e.trim().eq_ignore_ascii_case(ok))
        }),
        _ => true,
    })
}

/// The copy members receive.
pub fn prepare(list: &List, raw: &[u8]) -> Vec<u8> {
    prepare_for(list, raw, true, true)
}

/// The copy, with the shared mailto `List-Unsubscribe` or (for lists with
/// one-click links, whose envelopes each get [`unsubscribe_header`]) without.
/// `decorate`: add the list's subject prefix and footer; false for a digest
/// issue, which has its own subject and footer (digest/compose.rs).
pub fn prepare_for(list: &List, raw: &[u8], shared_unsubscribe: bool, decorate: bool) -> Vec<u8> {
    let (fields, rest) = split_headers(raw);
    let mut out = Vec::with_capacity(raw.len() + 512);
    out.extend_from_slice(list_headers(list, shared_unsubscribe).as_bytes());
    let prefix = if decorate {
        list.settings.subject_prefix.as_str()
    } else {
        ""
    };
    for f in &fields {
        let name = field_name(f);
        if LIST_HEADERS.contains(&name.as_str()) {
            continue;
        }
        if name == "subject" && !prefix.is_empty() {
            let colon = f.iter().position(|&b| b == b':').unwrap_or(0);
            let value = String::from_utf8_lossy(&f[colon + 1..]);
            if !value.contains(prefix.trim()) {
                out.extend_from_slice(b"Subject: ");
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(value.trim_start().as_bytes());
                end_line(&mut out);
                continue;
            }
        }
        out.extend_from_slice(f);
        end_line(&mut out);
    }
    if !fields.iter().any(|f| field_name(f) == "date") {
        // RFC 5322 requires one, and an MTA adds it if missing (Postfix
        // does on re-injection): added after our DKIM signature, which
        // signs Date as absent, it would break it. So the copy has its own.
        out.extend_from_slice(
            format!(
                "Date: {}\r\n",
                crate::notice::rfc5322_date(crate::clock::now())
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(rest);
    let footer = if decorate {
        list.settings.footer.as_str()
    } else {
        ""
    };
    if !footer.is_empty() && plain_text(raw) {
        if rest.is_empty() {
            // No body: the blank line that ends the header section first,
            // or the footer's lines would read as header fields.
            out.extend_from_slice(b"\r\n");
        } else if !out.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"-- \r\n");
        out.extend_from_slice(
            footer
                .replace("\r\n", "\n")
                .replace('\n', "\r\n")
                .as_bytes(),
        );
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Ends a header field copied from a message whose last line had no line
/// end (possible only at the end of the input), so the next field starts
/// on its own line.
fn end_line(out: &mut Vec<u8>) {
    if !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
}

/// Longest display name kept in a munged From (a hostile name is cut).
const MAX_NAME_CHARS: usize = 120;

/// The header value of a field (after the colon), without the line end.
fn field_value(field: &[u8]) -> &[u8] {
    let colon = field
        .iter()
        .position(|&b| b == b':')
        .map_or(field.len(), |i| i + 1);
    let v = &field[colon..];
    let end = v.len()
        - v.iter()
            .rev()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
    &v[..end]
}

/// A display name as an RFC 5322 phrase: quoted when ASCII, RFC 2047
/// encoded words (UTF-8, base64, at most 75 characters each) otherwise.
fn phrase(name: &str) -> String {
    if name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""));
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The author of a copy: the From field's raw value (kept as written, for
/// Reply-To or Cc) and the name to show (display name, else address).
fn author(fields: &[&[u8]]) -> Option<(Vec<u8>, String)> {
    let from = fields.iter().find(|f| field_name(f) == "from")?;
    let parsed = mail_parser::MessageParser::new().parse_headers(*from);
    let first = parsed
        .as_ref()
        .and_then(|m| m.from())
        .and_then(|a| a.first());
    let name = first
        .and_then(|a| a.name().filter(|n| !n.trim().is_empty()))
        .or_else(|| first.and_then(|a| a.address()))
        .unwrap_or("unknown sender");
    let name: String = name.chars().take(MAX_NAME_CHARS).collect();
    let value = field_value(from);
    let value = value.trim_ascii().to_vec();
    Some((value, name))
}

/// The munged From (`"Alice Example via dev" <dev@lists.example.org>`) and
/// the author's field (`Reply-To` or `Cc`, added to one already there) for
/// the copy's header `fields`; every other field is kept. `None` when the
/// copy has no From.
fn munged_fields(list: &List, fields: &[&[u8]], author_in: MungeAuthorIn) -> Option<Vec<u8>> {
    let (value, name) = author(fields)?;
    let target = match author_in {
        MungeAuthorIn::ReplyTo => "reply-to",
        MungeAuthorIn::Cc => "cc",
    };
    let target_header = match author_in {
        MungeAuthorIn::ReplyTo => "Reply-To",
        MungeAuthorIn::Cc => "Cc",
    };
    let mut out = Vec::new();
    let mut added = false;
    for f in fields {
        match field_name(f).as_str() {
            // Every From goes: a second one would be a way around the munging.
            "from" if added => {}
            "from" => {
                out.extend_from_slice(
                    format!(
                        "From: {} <{}>\r\n",
                        phrase(&format!("{name} via {}", list.address.local())),
                        list.address
                    )
                    .as_bytes(),
                );
                added = true;
            }
            n if n == target => {
                out.extend_from_slice(target_header.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(field_value(f).trim_ascii());
                out.extend_from_slice(b", ");
                out.extend_from_slice(&value);
                out.extend_from_slice(b"\r\n");
                added = true;
            }
            _ => out.extend_from_slice(f),
        }
    }
    if !fields.iter().any(|f| field_name(f) == target) {
        out.extend_from_slice(target_header.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    Some(out)
}

/// `munge_from`: the copy from the list, the author in `Reply-To` (or `Cc`),
/// nothing else changed. A copy without From is returned as it is.
pub fn munge_from(list: &List, copy: &[u8], author_in: MungeAuthorIn) -> Vec<u8> {
    let (fields, rest) = split_headers(copy);
    match munged_fields(list, &fields, author_in) {
        Some(mut out) => {
            out.extend_from_slice(rest);
            out
        }
        None => copy.to_vec(),
    }
}

/// Headers of the copy the outer message of `wrap` keeps (the list headers
/// are kept too); the rest stay on the attached post.
const WRAP_KEEPS: &[&str] = &[
    "from",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
];

/// `wrap`: an outer message from the list (the copy's list headers,
/// Subject, To, Cc, Date, Message-ID and threading headers, a munged From)
/// with the post as received attached as `message/rfc822`, so the author's
/// own signature still verifies inside it; the list's footer, if any, is a
/// text part before it.
pub fn wrap(list: &List, copy: &[u8], original: &[u8], author_in: MungeAuthorIn) -> Vec<u8> {
    let (fields, _) = split_headers(copy);
    let kept: Vec<&[u8]> = fields
        .iter()
        .copied()
        .filter(|f| {
            let n = field_name(f);
            LIST_HEADERS.contains(&n.as_str()) || WRAP_KEEPS.contains(&n.as_str())
        })
        .collect();
    let mut out = munged_fields(list, &kept, author_in).unwrap_or_else(|| kept.concat());
    let mut boundary = format!("=_lr_{}", &hex::encode(Sha256::digest(original))[..24]);
    while original
        .windows(boundary.len())
        .any(|w| w == boundary.as_bytes())
    {
        boundary.push('_');
    }
    let eight_bit = original.iter().any(|&b| b >= 0x80);
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    out.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n").as_bytes(),
    );
    if eight_bit {
        out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    }
    out.extend_from_slice(b"\r\nThis is a message in MIME format: the post is attached.\r\n");
    let footer = list.settings.footer.as_str();
    if !footer.is_empty() {
        out.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Disposition: inline\r\n\r\n{}\r\n",
                footer.replace("\r\n", "\n").replace('\n', "\r\n")
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n"
        )
        .as_bytes(),
    );
    if eight_bit {
        out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(original);
    if !original.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;

    fn list() -> List {
        List::new(Address::parse("dev@lists.example.org").unwrap())
    }

    #[test]
    fn adds_list_headers_and_keeps_the_rest() {
        let raw = b"From: a@b.org\r\nList-Id: <other.x.org>\r\nSubject: hi\r\n there\r\nPrecedence: bulk\r\n\r\nbody\r\n";
        let out = String::from_utf8(prepare(&list(), raw)).unwrap();
        assert!(out.starts_with(
            "List-Id: <dev.lists.example.org>\r\nList-Post: <mailto:dev@lists.example.org>\r\n"
        ));
        assert!(out.contains("List-Unsubscribe: <mailto:dev-leave@lists.example.org>\r\n"));
        assert!(out.contains("List-Help: <mailto:dev-request@lists.example.org?subject=help>\r\n"));
        assert!(out.contains("Precedence: list\r\n"));
        assert!(!out.contains("other.x.org") && !out.contains("bulk"));
        assert!(out.contains("From: a@b.org\r\nSubject: hi\r\n there\r\nDate: "));
        assert!(out.ends_with("\r\n\r\nbody\r\n"));
        assert!(!out.contains("List-Archive"));
    }

    /// Fuzzing (target `footer`): a post without a blank line (headers
    /// only, last line unterminated) got the footer glued to its header
    /// section, so a footer line reading `List-Id: …` made a second List-Id.
    #[test]
    fn a_footer_after_headers_only_is_the_body() {
        let mut l = list();
        l.settings.footer = "List-Id: <x.example>".into();
        let out = String::from_utf8(prepare(
            &l,
            b"Subject: hi
X-Last: no end",
        ))
        .unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert_eq!(head.matches("List-Id:").count(), 1, "{out}");
        assert!(head.contains("X-Last: no end\r\nDate: "), "{out}");
        assert_eq!(body, "-- \r\nList-Id: <x.example>\r\n");
    }

    /// Fuzzing (target `footer`): `List-I d:` is a List-Id to mail-parser
    /// (it ignores whitespace in names), so the copy had two.
    #[test]
    fn list_headers_are_matched_as_readers_match_them() {
        let out = String::from_utf8(prepare(
            &list(),
            b"List-I d: <x.example>\r\nPrecedence : bulk\r\nNo colon here\r\n\r\nb\r\n",
        ))
        .unwrap();
        assert!(!out.contains("x.example") && !out.contains("bulk"), "{out}");
        assert!(out.contains("No colon here\r\n"), "{out}");
        let out = String::from_utf8(prepare(
            &list(),
            b"junk\n   List-Id: <x.example>\r\nSubject: s\r\n\r\nb\r\n",
        ))
        .unwrap();
        assert!(!out.contains("x.example"), "{out}");
        assert!(out.contains("junk\n"), "{out}");
    }

    #[test]
    fn subject_prefix_archive_and_footer_when_set() {
        let mut l = list();
        l.settings.subject_prefix = "[dev] ".into();
        l.settings.footer = "unsubscribe: dev-leave@lists.example.org".into();
        l.settings.archive_url = "https://lists.example.org/dev/".into();
        let out = String::from_utf8(prepare(&l, b"Subject: hi\r\n\r\nbody\r\n")).unwrap();
        assert!(out.contains("Subject: [dev] hi\r\n"));
        assert!(out.contains("List-Archive: <https://lists.example.org/dev/>\r\n"));
        assert!(out.ends_with("body\r\n-- \r\nunsubscribe: dev-leave@lists.example.org\r\n"));
        let again = String::from_utf8(prepare(&l, b"Subject: Re: [dev] hi\r\n\r\nb\r\n")).unwrap();
        assert!(
            again.contains("Subject: Re: [dev] hi\r\n"),
            "no second prefix"
        );
        let html = String::from_utf8(prepare(
            &l,
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n",
        ))
        .unwrap();
        assert!(
            !html.contains("-- \r\nunsubscribe"),
            "no footer in multipart"
        );
    }

    #[test]
    fn one_click_lists_leave_unsubscribe_to_the_envelope() {
        let out = String::from_utf8(prepare_for(
            &list(),
            b"List-Unsubscribe: <x>\r\nSubject: s\r\n\r\nb",
            false,
            true,
        ))
        .unwrap();
        assert!(!out.contains("List-Unsubscribe"), "{out}");
        let h = String::from_utf8(unsubscribe_header(
            &list(),
            Some("https://l.org/unsubscribe/T"),
        ))
        .unwrap();
        assert_eq!(
            h,
            "List-Unsubscribe: <https://l.org/unsubscribe/T>, <mailto:dev-leave@lists.example.org>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        );
        let h = String::from_utf8(unsubscribe_header(&list(), None)).unwrap();
        assert_eq!(
            h,
            "List-Unsubscribe: <mailto:dev-leave@lists.example.org>\r\n"
        );
    }
}

#[cfg(test)]
mod mitigation_tests {
    use super::*;
    use crate::address::Address;

    fn list() -> List {
        List::new(Address::parse("dev@lists.example.org").unwrap())
    }

    const POST: &[u8] = b"List-Id: <dev.lists.example.org>\r\nDKIM-Signature: v=1; d=reject.test\r\nFrom: Alice Example <alice@reject.test>\r\nTo: dev@lists.example.org\r\nSubject: [dev] hello\r\n\r\nbody\r\n";

    #[test]
    fn munge_from_names_the_author_and_changes_nothing_else() {
        let out = String::from_utf8(munge_from(&list(), POST, MungeAuthorIn::ReplyTo)).unwrap();
        assert!(
            out.contains("From: \"Alice Example via dev\" <dev@lists.example.org>\r\n"),
            "{out}"
        );
        assert!(
            out.contains("Reply-To: Alice Example <alice@reject.test>\r\n"),
            "{out}"
        );
        assert_eq!(
            out.replace(
                "From: \"Alice Example via dev\" <dev@lists.example.org>\r\n",
                "From: Alice Example <alice@reject.test>\r\n"
            )
            .replace("Reply-To: Alice Example <alice@reject.test>\r\n", ""),
            String::from_utf8_lossy(POST)
        );
        let with_cc = b"From: bob@reject.test\r\nFrom: eve@evil.test\r\nCc: carol@x.org\r\n\r\nb";
        let out = String::from_utf8(munge_from(&list(), with_cc, MungeAuthorIn::Cc)).unwrap();
        assert_eq!(
            out,
            "From: \"bob@reject.test via dev\" <dev@lists.example.org>\r\nCc: carol@x.org, bob@reject.test\r\n\r\nb"
        );
        let utf8 = "From: =?utf-8?q?J=C3=BCrgen?= <j@x.org>\r\n\r\nb".as_bytes();
        let out = String::from_utf8(munge_from(&list(), utf8, MungeAuthorIn::ReplyTo)).unwrap();
        let parsed = mail_parser::MessageParser::new()
            .parse(out.as_bytes())
            .unwrap();
        let from = parsed.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Jürgen via dev"));
        assert_eq!(from.address(), Some("dev@lists.example.org"));
        assert_eq!(
            munge_from(&list(), b"Subject: x\r\n\r\nb", MungeAuthorIn::Cc),
            b"Subject: x\r\n\r\nb"
        );
    }

    #[test]
    fn wrap_is_well_formed_mime_with_the_post_inside() {
        let mut l = list();
        l.settings.footer = "leave: dev-leave@lists.example.org".into();
        let original = b"DKIM-Signature: v=1; d=reject.test\r\nFrom: Alice Example <alice@reject.test>\r\nSubject: hello\r\n\r\nbody \xc3\xa9\r\n";
        let out = wrap(&l, POST, original, MungeAuthorIn::ReplyTo);
        let m = mail_parser::MessageParser::new().parse(&out[..]).unwrap();
        assert_eq!(
            m.from().unwrap().first().unwrap().address(),
            Some("dev@lists.example.org")
        );
        assert_eq!(m.subject(), Some("[dev] hello"));
        assert_eq!(m.parts.len(), 3, "outer, footer, attached message");
        let inner = m
            .attachment(0)
            .and_then(|a| a.message())
            .expect("message/rfc822");
        assert_eq!(inner.subject(), Some("hello"));
        assert_eq!(inner.raw_message(), &original[..]);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Content-Transfer-Encoding: 8bit"));
        assert!(
            !text.contains("DKIM-Signature: v=1; d=reject.test\r\nFrom: \"Alice"),
            "the author's signature stays inside"
        );
        assert!(text.ends_with("--\r\n"));
    }
}
