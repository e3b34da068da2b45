//! The copy of a post that goes to members: RFC 2369/2919 list headers and
//! `Precedence: list` on top, the same headers from upstream removed, and the
//! optional subject prefix and footer. Built once per post, shared by all
//! envelopes.

use crate::address::Suffix;
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
        let continuation = matches!(rest.first(), Some(b' ' | b'\t'));
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
    let end = field.iter().position(|&b| b == b':').unwrap_or(0);
    String::from_utf8_lossy(&field[..end])
        .trim()
        .to_ascii_lowercase()
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
/// its MIME structure or transfer encoding.
fn plain_text(fields: &[&[u8]]) -> bool {
    let value = |name: &str| {
        fields
            .iter()
            .find(|f| field_name(f) == name)
            .map(|f| String::from_utf8_lossy(f).to_ascii_lowercase())
    };
    let ct_ok = value("content-type").is_none_or(|v| v.contains("text/plain"));
    let cte_ok = value("content-transfer-encoding")
        .is_none_or(|v| !v.contains("base64") && !v.contains("quoted-printable"));
    ct_ok && cte_ok
}

/// The copy members receive.
pub fn prepare(list: &List, raw: &[u8]) -> Vec<u8> {
    prepare_for(list, raw, true)
}

/// The copy, with the shared mailto `List-Unsubscribe` or (for lists with
/// one-click links, whose envelopes each get [`unsubscribe_header`]) without.
pub fn prepare_for(list: &List, raw: &[u8], shared_unsubscribe: bool) -> Vec<u8> {
    let (fields, rest) = split_headers(raw);
    let mut out = Vec::with_capacity(raw.len() + 512);
    out.extend_from_slice(list_headers(list, shared_unsubscribe).as_bytes());
    let prefix = list.settings.subject_prefix.as_str();
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
                continue;
            }
        }
        out.extend_from_slice(f);
    }
    out.extend_from_slice(rest);
    let footer = list.settings.footer.as_str();
    if !footer.is_empty() && plain_text(&fields) {
        if !out.ends_with(b"\n") {
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
        assert!(out.ends_with("From: a@b.org\r\nSubject: hi\r\n there\r\n\r\nbody\r\n"));
        assert!(!out.contains("List-Archive"));
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
