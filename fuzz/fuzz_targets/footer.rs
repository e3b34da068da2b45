//! The MIME handling of the member copy (fanout::copy): list headers, subject
//! prefix and the footer. Properties: no panic; the body stays byte for byte,
//! and the footer is only ever appended to a body that mail-parser (what a
//! reader's client does) takes as plain text in no transfer encoding, so a
//! footer never breaks a multipart or base64 body; the copy carries exactly
//! one List-Id.
//!
//! The DMARC wrap (message/rfc822 inside a new message) is being written
//! elsewhere: it gets its own target here once it lands (docs/fuzzing.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use listrelay::address::Address;
use listrelay::fanout::copy;
use listrelay::model::List;
use mail_parser::{MessageParser, MimeHeaders};

/// The input is `FOOTER NUL PREFIX NUL MESSAGE` (the list's footer and
/// subject prefix settings, then the post as stored); a first byte `0x01`
/// selects the one-click variant (no shared List-Unsubscribe).
struct Input {
    footer: String,
    prefix: String,
    shared_unsubscribe: bool,
    raw: Vec<u8>,
}

fn input(data: &[u8]) -> Input {
    let (shared_unsubscribe, data) = match data.split_first() {
        Some((1, rest)) => (false, rest),
        _ => (true, data),
    };
    let mut parts = data.splitn(3, |&b| b == 0);
    let mut text = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (footer, prefix) = (text(), text());
    let raw = parts.next().unwrap_or_default().to_vec();
    Input {
        footer,
        prefix,
        shared_unsubscribe,
        raw,
    }
}

fuzz_target!(|data: &[u8]| {
    let input = input(data);
    let mut list = List::new(Address::parse("dev@lists.example.org").expect("list address"));
    list.settings.footer = input.footer.clone();
    list.settings.subject_prefix = input.prefix.clone();
    let raw = &input.raw[..];
    let out = copy::prepare_for(&list, raw, input.shared_unsubscribe);

    let out_headers = MessageParser::new()
        .parse_headers(&out[..])
        .expect("the copy parses");
    let list_ids = out_headers
        .headers()
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("List-Id"))
        .count();
    assert_eq!(list_ids, 1, "the copy has {list_ids} List-Id fields");

    // The body as intake stored it is in the copy, unchanged.
    let body_at = body_offset(raw);
    let body = &raw[body_at..];
    let footer_added = !input.footer.is_empty() && !out.ends_with(body);
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
