//! Intake's header editing: `insert_header` adds the Message-ID field and
//! keeps every other byte. Properties: the output is the input with one slice
//! added, and that slice is the field and its line end (after a line end for a
//! last header line that had none; and, in a message in which no line starts
//! a field, the field first with an empty line after it); where intake takes
//! the input to have no Message-ID, mail-parser reads the inserted one, so
//! every reader of the copy sees it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use listrelay::intake::insert_header;

const VALUE: &str = "<fuzz.1@lists.example.org>";

fuzz_target!(|data: &[u8]| {
    // As intake receives it: the last line ended (`intake::whole_lines`).
    let data = &listrelay::intake::whole_lines(data)[..];
    let out = insert_header(data, "Message-ID", VALUE);
    assert!(out.len() > data.len(), "nothing was inserted");
    let extra = out.len() - data.len();
    let prefix = data.iter().zip(&out).take_while(|(a, b)| a == b).count();
    let suffix = data
        .iter()
        .rev()
        .zip(out.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let field = format!("Message-ID: {VALUE}");
    let allowed: Vec<Vec<u8>> = [&b"\r\n"[..], b"\n"]
        .iter()
        .flat_map(|eol| {
            let one = [field.as_bytes(), eol].concat();
            [one.clone(), [eol, &one[..]].concat()]
        })
        .collect();
    let lo = data.len().saturating_sub(suffix);
    let hi = prefix.min(data.len());
    // A message in which no line starts a field may get the field first and
    // an empty line: its only field, the rest its body.
    let headerless = mail_parser::MessageParser::new()
        .parse_headers(data)
        .is_none_or(|m| {
            m.headers().iter().all(|h| {
                let at = h.offset_field as usize;
                at > 0 && data.get(at - 1) != Some(&b'\n')
            })
        });
    let headed = [&b"\r\n"[..], b"\n"]
        .iter()
        .any(|eol| out == [field.as_bytes(), eol, eol, data].concat());
    let ok = (lo <= hi && (lo..=hi).any(|k| allowed.iter().any(|a| out[k..k + extra] == a[..])))
        || (headerless && headed);
    assert!(
        ok,
        "the inserted field is not all that changed: {:?}",
        String::from_utf8_lossy(&out)
    );

    // Where intake takes the input to have no Message-ID (and so adds
    // one), readers see the inserted one.
    if listrelay::intake::post_message_id(data).is_none() {
        let seen = mail_parser::MessageParser::new()
            .parse_headers(&out[..])
            .and_then(|m| m.message_id().map(str::to_string));
        assert_eq!(
            seen.as_deref(),
            Some("fuzz.1@lists.example.org"),
            "the inserted Message-ID is not read as a header: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
});
