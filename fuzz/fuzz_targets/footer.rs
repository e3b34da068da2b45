//! The MIME handling of the member copy (fanout::copy): list headers, subject
//! prefix and the footer, and the DMARC mitigations over the copy. Properties:
//! no panic; the body stays byte for byte, and the footer is only ever
//! appended to a body that mail-parser (what a reader's client does) takes as
//! plain text in no transfer encoding, so a footer never breaks a multipart or
//! base64 body; an undecorated copy (a digest issue) gets no footer; the copy
//! carries exactly one List-Id; `munge_from` keeps the body; `wrap` carries
//! the post byte for byte and parses as a message with one List-Id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use listrelay::address::Address;
use listrelay::fanout::copy;
use listrelay::model::directory::MungeAuthorIn;
use listrelay::model::List;
use mail_parser::{MessageParser, MimeHeaders};

/// The input is `FOOTER NUL PREFIX NUL MESSAGE` (the list's footer and
/// subject prefix settings, then the post as stored), after an optional
/// first byte 0x01-0x07 of flags: 1, the one-click variant (no shared
/// List-Unsubscribe); 2, undecorated (a digest issue: no prefix, no
/// footer); 4, the DMARC mitigations (munge and wrap) over the copy too.
struct Input {
    footer: String,
    prefix: String,
    shared_unsubscribe: bool,
    decorate: bool,
    mitigate: bool,
    raw: Vec<u8>,
}

fn input(data: &[u8]) -> Input {
    let (flags, data) = match data.split_first() {
        Some((&f @ 1..=7, rest)) => (f, rest),
        _ => (0, data),
    };
    let (shared_unsubscribe, decorate, mitigate) = (flags & 1 == 0, flags & 2 == 0, flags & 4 != 0);
    let mut parts = data.splitn(3, |&b| b == 0);
    let mut text = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (footer, prefix) = (text(), text());
    let raw = parts.next().unwrap_or_default().to_vec();
    Input {
        footer,
        prefix,
        shared_unsubscribe,
        decorate,
        mitigate,
        raw,
    }
}

fuzz_target!(|data: &[u8]| {
    let input = input(data);
    let mut list = List::new(Address::parse("dev@lists.example.org").expect("list address"));
    // Through the setter, as an owner sets them: what it refuses (a line
    // break in the prefix) cannot reach a copy.
    if list.settings.set("footer", &input.footer).is_err()
        || list.settings.set("subject_prefix", &input.prefix).is_err()
    {
        return;
    }
    let raw = &input.raw[..];
    let out = copy::prepare_for(&list, raw, input.shared_unsubscribe, input.decorate);
    if input.mitigate {
        mitigations(&list, &out, raw);
    }

    let list_ids = list_id_fields(&out);
    assert_eq!(list_ids, 1, "the copy has {list_ids} List-Id fields");

    // The body as intake stored it is in the copy, unchanged.
    let body_at = body_offset(raw);
    let body = &raw[body_at..];
    let footer_added = !input.footer.is_empty() && !out.ends_with(body);
    assert!(
        input.decorate || !footer_added,
        "a footer was added to an undecorated copy"
    );
    if !footer_added {
        assert!(out.ends_with(body), "the body changed");
        return;
    }
    let Some(parsed) = MessageParser::new().parse_headers(raw) else {
        return;
    };
    let plain = parsed.content_type().is_none_or(|ct| {
        ct.ctype().eq_ignore_ascii_case("text")
            && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
    });
    let encoded = parsed.content_transfer_encoding().is_some_and(|e| {
        e.eq_ignore_ascii_case("base64") || e.eq_ignore_ascii_case("quoted-printable")
    });
    assert!(
        plain && !encoded,
        "a footer was appended to a body readers take as {:?} in {:?}",
        parsed
            .content_type()
            .map(|c| (c.ctype().to_string(), c.subtype().map(str::to_string))),
        parsed.content_transfer_encoding()
    );
});

/// The DMARC mitigations over a copy: `munge_from` keeps the copy's body;
/// `wrap` holds the post as received byte for byte and its outer message
/// parses with exactly one List-Id.
fn mitigations(list: &List, copy: &[u8], original: &[u8]) {
    for author_in in [MungeAuthorIn::ReplyTo, MungeAuthorIn::Cc] {
        let munged = copy::munge_from(list, copy, author_in);
        let body = &copy[body_offset(copy)..];
        assert!(munged.ends_with(body), "munge_from changed the body");
        let wrapped = copy::wrap(list, copy, original, author_in);
        assert!(
            original.is_empty()
                || wrapped
                    .windows(original.len())
                    .any(|w| w == original),
            "the wrapped post is not the original byte for byte"
        );
        let list_ids = list_id_fields(&wrapped);
        assert_eq!(list_ids, 1, "the wrapped copy has {list_ids} List-Id fields");
    }
}

/// The List-Id fields mail-parser reads in a message's header section, as
/// RFC 5322 bounds it (up to the first empty line). Given the whole message,
/// mail-parser's lenient reading of malformed lines (NULs, no colon) can run
/// past that line into the body, where a post may quote a List-Id.
fn list_id_fields(message: &[u8]) -> usize {
    let head = &message[..body_offset(message)];
    MessageParser::new()
        .parse_headers(head)
        .expect("the header section parses")
        .headers()
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("List-Id"))
        .count()
}

/// Where the blank line after the header section starts (as fanout::copy and
/// intake split a message: the first empty line).
fn body_offset(raw: &[u8]) -> usize {
    let mut pos = 0;
    while pos < raw.len() {
        let rest = &raw[pos..];
        if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return pos;
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => pos += i + 1,
            None => return raw.len(),
        }
    }
    raw.len()
}
