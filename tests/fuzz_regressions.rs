//! Inputs the fuzz targets (fuzz/, docs/fuzzing.md) found, each kept as a
//! test through the public API the target used, asserting what a user would
//! check.

use std::sync::Arc;

use listrelay::address::{self, Address, Suffix};
use listrelay::intake::{Intake, Outcome};
use listrelay::model::{Domain, List};
use listrelay::secret::Secret;
use listrelay::store::{SledStore, Store};
use listrelay::verp;

/// A sled store holding the list `address` (and its domain).
async fn store_with_list(address: &str) -> (tempfile::TempDir, Arc<dyn Store>, List) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    let list = List::new(Address::parse(address).unwrap());
    store
        .create_domain(&Domain {
            name: list.address.domain().to_string(),
            opaque: false,
            arc_seal: None,
            created_at: 0,
        })
        .await
        .unwrap();
    store.create_list(&list).await.unwrap();
    (dir, store, list)
}

/// Posts `post` to dev@lists.example.org through `intake`; the stored id
/// and the bytes the store keeps.
async fn post_and_read(intake: &Intake, store: &Arc<dyn Store>, post: &[u8]) -> (String, Vec<u8>) {
    let rcpt = intake.resolve("<dev@lists.example.org>").await.unwrap();
    let out = intake.deliver("a@example.org", &[rcpt], post).await;
    let [Outcome::Stored { id }] = &out[..] else {
        panic!("{post:?} was not stored: {out:?}");
    };
    (id.clone(), store.message_body(id).await.unwrap())
}

/// `address`: a local part whose lowercase form is longer than itself ('İ'
/// is 2 bytes, "i̇" 3) made `route` cut the lowercased text at the original's
/// byte offset of the delimiter and panic, which ended the LMTP session at
/// `RCPT TO:<İ+x@…>` without a reply. One whose lowercase form is shorter
/// (the Kelvin sign 'K', 3 bytes, becomes 'k') cut it in the wrong place.
#[test]
fn a_local_part_that_changes_length_when_lowercased_routes() {
    let route = |text: &str| address::route(&Address::parse(text).unwrap(), '+');
    assert_eq!(route("İ+x@lists.example.org"), None, "a post takes no tag");
    let r = route("İ-bounces+Tag@lists.example.org").expect("a bounce address");
    assert_eq!((r.list.as_str(), r.suffix), ("i\u{307}", Suffix::Bounces));
    assert_eq!(r.tag.as_deref(), Some("Tag"));
    let r = route("\u{212A}dev-confirm+Tok@lists.example.org").expect("a confirmation");
    assert_eq!((r.list.as_str(), r.suffix), ("kdev", Suffix::Confirm));
    assert_eq!(r.tag.as_deref(), Some("Tok"));
}

/// `tokens`: the VERP sender fan-out writes for an ordinary member,
/// `developers-bounces+john.smith=mail.example-company.com=SIG@…`, has a local
/// part of 67 bytes. Address parsing refused local parts over RFC 5321's 64,
/// so intake refused the member's bounce at RCPT (5xx) and it was lost. A
/// recipient may be as long as the addresses listrelay writes; a member's
/// address keeps the RFC limit.
#[tokio::test]
async fn intake_takes_the_verp_sender_of_every_member() {
    let (_dir, store, list) = store_with_list("developers@lists.example.org").await;
    let secret = Secret::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec());
    let longest_member = format!(
        "{}@{}.{}.{}.{}",
        "l".repeat(64),
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    for delimiter in ['+', '#'] {
        let intake = Intake::new(store.clone(), delimiter);
        for member in ["john.smith@mail.example-company.com", &longest_member] {
            let member = Address::parse(member).expect("a member address").key();
            let tag = verp::encode(&secret, &list.key(), &member);
            let sender = address::tagged(&list.address, Suffix::Bounces, &tag, delimiter);
            let rcpt = intake
                .resolve(&format!("<{sender}>"))
                .await
                .unwrap_or_else(|e| panic!("{sender} refused at RCPT: {e:?}"));
            assert_eq!(rcpt.route.suffix, Suffix::Bounces);
            assert_eq!(
                verp::decode(&secret, &list.key(), rcpt.route.tag.as_deref().unwrap()),
                verp::Decoded::Verified(member.clone())
            );
        }
    }
    let long_local = format!("{}@example.com", "x".repeat(65));
    assert!(
        Address::parse(&long_local).is_err(),
        "a member keeps the 64-byte limit"
    );
}

/// `bounce_parse`: one 1 MiB line of `user1@example.net: 550 no such user `
/// repeated (fuzz/seeds/bounce_parse/amplified-addresses) made the text
/// parser classify the whole line as that recipient's own text and read it
/// again for the report's general wording, ~565 ms of CPU against the
/// 50 ms budget. Each recipient's text and the general wording are now
/// read within fixed bounds; the outcome stays the same.
#[test]
fn a_megabyte_line_of_one_failed_address_is_one_hard_bounce() {
    let mut msg = String::from("From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n\n");
    while msg.len() < (1 << 20) - 40 {
        msg.push_str("user1@example.net: 550 no such user ");
    }
    let r = listrelay::bounce::parse(msg.as_bytes());
    assert_eq!(r.recipients, ["user1@example.net"]);
    assert_eq!(r.hard, Some(true));
    assert!(r.details[0].diagnostic.as_deref().unwrap().len() <= 500 * 4);
}

/// The same attack with a different address on each line: a report yields at
/// most `text::MAX_RECIPIENTS` recipients (documented there), the first ones.
#[test]
fn a_megabyte_of_distinct_failed_addresses_reports_the_first_hundred() {
    use listrelay::bounce::text::MAX_RECIPIENTS;
    let mut msg = String::from("From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n\n");
    let mut i = 0;
    while msg.len() < (1 << 20) - 60 {
        msg.push_str(&format!("user{i}@example.net: 550 no such user\n"));
        i += 1;
    }
    let r = listrelay::bounce::parse(msg.as_bytes());
    assert_eq!(r.recipients.len(), MAX_RECIPIENTS);
    assert_eq!(r.recipients[0], "user0@example.net");
    assert_eq!(
        r.recipients[MAX_RECIPIENTS - 1],
        format!("user{}@example.net", MAX_RECIPIENTS - 1)
    );
    assert!(r.details.iter().all(|d| d.hard));
}

/// What mail-parser (as every reader of the copy) reads of a message: its
/// Message-ID and its body (the bytes after the header section).
fn read_as_a_reader(message: &[u8]) -> (Option<String>, Vec<u8>) {
    let parsed = mail_parser::MessageParser::new()
        .parse(message)
        .expect("the message parses");
    let body_at = parsed.root_part().raw_body_offset() as usize;
    (
        parsed.message_id().map(str::to_string),
        message[body_at..].to_vec(),
    )
}

/// `message_id`: intake found the end of the header section on its own
/// (the first empty line), while mail-parser, which reads the post
/// everywhere else, ends it at a line of blanks after a malformed line. The
/// Message-ID was then inserted into what readers take as the body: the post
/// had none for them (and the body gained a line). The insertion point is
/// now mail-parser's own end of the header section.
#[test]
fn a_message_id_after_a_malformed_header_line_is_read_as_a_header() {
    let cases: &[&[u8]] = &[
        // The finding: a line with no colon, then a line of blanks.
        b"no colon here\r\n \r\nSubject: hi\r\n\r\nbody\r\n",
        b"From: a@example.org\r\ngarbage\r\n\t\r\nSubject: hi\r\n\r\nbody\r\n",
        // A line of blanks that is not folding (CR first) ends it too.
        b"From: a@example.org\r\n\r\r\nSubject: hi\r\n\r\nbody\r\n",
        // Header lines only, the last a Date whose folded line holds a NUL:
        // mail-parser read the Date on into the Message-ID appended after
        // it (30-minute run); it now goes before the last field.
        b"From: MAILER-DAEMON@mx.example.org\n\x9fToample.org\nSubject: Undeliverable mail\nDate: Tue, 1 Dec 202m (HELO m01.vzwpi\x8cx.com) ([192.0.2.39])\n  bywas not dlists.xeample.or \x00g.\n",
        // Header lines only, a last line mail-parser drops until a line
        // follows it, which then is a second (unreadable) Message-ID: the
        // field goes at the end after all.
        b"Subj\xff\xff\xff\xff\xff\xff\xffg>\nMessage-ID: \x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88<fuzz.1@lists.example.or\tbody",
        // Ordinary posts stay as before.
        b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n",
        b"From: a@example.org\nSubject: hi\n\nbody\n",
        b"Subject: folded\r\n \r\n more\r\n\r\nbody\r\n",
    ];
    for &post in cases {
        let out = listrelay::intake::insert_header(post, "Message-ID", "<new.1@lists.example.org>");
        let (_, body) = read_as_a_reader(post);
        let (id, body_after) = read_as_a_reader(&out);
        let shown = String::from_utf8_lossy(&out);
        assert_eq!(
            id.as_deref(),
            Some("new.1@lists.example.org"),
            "the inserted Message-ID is not a header: {shown:?}"
        );
        assert_eq!(body_after, body, "the body changed: {shown:?}");
        let eol = if post.contains(&b'\r') { 2 } else { 1 };
        let field = "Message-ID: <new.1@lists.example.org>".len();
        // A last header line without a line end gets one before the field.
        let ended = if post.ends_with(b"\n") { 0 } else { eol };
        assert_eq!(
            out.len(),
            post.len() + field + eol + ended,
            "one field added: {shown:?}"
        );
    }
}

/// `message_id`: a post whose own Message-ID field has an unclosed `<` and
/// bytes that are not UTF-8 (the 30-minute run's input, kept in the seeds
/// as `unclosed-angle`). mail-parser reads no Message-ID in it and
/// `header_raw` gives nothing for such bytes, so intake took the post for
/// one without and added a field; readers then took the post's own field,
/// read on into the added one, and saw no Message-ID at all. The post has
/// one: intake keeps it as written, adds nothing, and takes its raw text as
/// the duplicate key, so the same post again is a duplicate.
#[tokio::test]
async fn a_post_with_an_unreadable_message_id_keeps_it_and_gets_no_second() {
    let (_dir, store, _list) = store_with_list("dev@lists.example.org").await;
    let post = include_bytes!("../fuzz/seeds/message_id/unclosed-angle");
    let intake = Intake::new(store.clone(), '+');
    let (_, stored) = post_and_read(&intake, &store, post).await;
    // Its last line (a lone CR) is ended, as DATA would have; no field is added.
    assert_eq!(stored, [&post[..], b"\r\n"].concat(), "the post changed");
    // The same post with another first line: the same Message-ID, other
    // content (the same bytes again would be an MTA redelivery).
    let other = [&b"X-Resent: 1\r\n"[..], post].concat();
    let rcpt = intake.resolve("<dev@lists.example.org>").await.unwrap();
    let again = intake.deliver("a@example.org", &[rcpt], &other).await;
    assert!(
        matches!(
            &again[..],
            [Outcome::DuplicateDiscarded { .. } | Outcome::DuplicateRejected { .. }]
        ),
        "the same post again is not a duplicate: {again:?}"
    );
}

/// `message_id`: a post of one tab (BDAT need not end the last line): the
/// Message-ID intake added before it was folded on into the tab and the end
/// of the data, where mail-parser drops an ID field, so readers saw none.
/// Intake ends a last line as DATA would; the added field is then read.
#[tokio::test]
async fn a_post_whose_last_line_has_no_end_gets_a_readable_message_id() {
    let (_dir, store, _list) = store_with_list("dev@lists.example.org").await;
    let intake = Intake::new(store.clone(), '+');
    for post in [&b"\t"[..], b"Subject: no line end", b"Subject: hi\n\nbody"] {
        let (id, stored) = post_and_read(&intake, &store, post).await;
        let read = mail_parser::MessageParser::new()
            .parse_headers(&stored[..])
            .and_then(|m| m.message_id().map(str::to_string));
        assert!(
            read.is_some_and(|m| m.starts_with(id.as_str())),
            "readers see no Message-ID in {:?}",
            String::from_utf8_lossy(&stored)
        );
        assert!(stored.ends_with(b"\n"), "{stored:?}");
    }
}

/// `message_id`: a message in which readers find no field at all, whose
/// first line starts with a blank and whose section ends at a line of one
/// space (seed `headerless-blank-first`). A Message-ID put first folded on
/// into the first line and past the line that ended the section, so a later
/// `Message-ID:` line in the body became the one readers took (unreadable).
/// The field now goes first with an empty line after it: the message's only
/// field, all the rest its body.
///
/// The next run found the same with a field readers do read, but after
/// tabs and garbage at the start of the first line (seed
/// `headerless-garbage-field`): the inserted Message-ID folded on into it
/// and took a second ID. No line there starts a field either.
#[test]
fn a_message_with_no_field_gets_the_message_id_as_its_only_field() {
    let posts: [&[u8]; 2] = [
        include_bytes!("../fuzz/seeds/message_id/headerless-blank-first"),
        include_bytes!("../fuzz/seeds/message_id/headerless-garbage-field"),
    ];
    for post in posts {
        let out = listrelay::intake::insert_header(post, "Message-ID", "<new.1@lists.example.org>");
        assert_eq!(
            out,
            [&b"Message-ID: <new.1@lists.example.org>\r\n\r\n"[..], post].concat()
        );
        let (id, body) = read_as_a_reader(&out);
        assert_eq!(id.as_deref(), Some("new.1@lists.example.org"));
        assert_eq!(body, post.to_vec(), "all of the message is the body");
    }
}

/// `message_id`: a post whose own Message-ID field holds no ID (`Message-ID:
/// <`, seed `empty-id-shadows`), so intake adds one; readers take the last
/// Message-ID field, and with the section ending at a line of a tab every
/// place tried was before the empty one. The field now also goes just after
/// the last field of its name, where readers take it.
#[test]
fn an_empty_message_id_field_does_not_hide_the_added_one() {
    let post = include_bytes!("../fuzz/seeds/message_id/empty-id-shadows");
    assert_eq!(listrelay::intake::post_message_id(post), None);
    let out = listrelay::intake::insert_header(post, "Message-ID", "<new.1@lists.example.org>");
    let field = b"Message-ID: <new.1@lists.example.org>\r\n";
    assert_eq!(out.len(), post.len() + field.len(), "one field added");
    let (id, _) = read_as_a_reader(&out);
    assert_eq!(id.as_deref(), Some("new.1@lists.example.org"));
}

/// `footer`: the copy appended the list's footer when the Content-Type field
/// merely contained the text `text/plain` (its own lower-cased search), so a
/// multipart or garbage type got a footer after its last boundary, inside a
/// part readers do not take as text. The type is now mail-parser's reading
/// of every Content-Type field.
#[test]
fn a_footer_goes_only_under_a_type_readers_take_as_plain_text() {
    let mut list = List::new(Address::parse("dev@lists.example.org").unwrap());
    list.settings.footer = "Unsubscribe: dev-leave@lists.example.org".into();
    let post = |headers: &str| {
        format!("From: a@example.org\r\n{headers}Subject: hi\r\n\r\n--b\r\nbody\r\n--b--\r\n")
    };
    let footed = |headers: &str| {
        let copy =
            listrelay::fanout::copy::prepare_for(&list, post(headers).as_bytes(), true, true);
        String::from_utf8_lossy(&copy).contains("Unsubscribe: dev-leave@")
    };
    for hostile in [
        // The finding: garbage ending in text/plain.
        "Content-Type: multipart/mixed; boundary=b; x=text/plain\r\n",
        "Content-Type: \x01garbage text/plain\r\n",
        "Content-Type: application/octet-stream; name=\"text/plain\"\r\n",
        // Two readings: the first field or the last one.
        "Content-Type: text/plain\r\nContent-Type: multipart/mixed; boundary=b\r\n",
        "Content-Type: multipart/mixed; boundary=b\r\nContent-Type: text/plain\r\n",
        // Plain text in an encoding a footer would break.
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n",
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n",
    ] {
        assert!(!footed(hostile), "footer under {hostile:?}");
    }
    for plain in [
        "",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Content-Type: TEXT/PLAIN\r\nContent-Transfer-Encoding: 8bit\r\n",
    ] {
        assert!(footed(plain), "no footer under {plain:?}");
    }
}

/// `bounce_parse` (30-minute run): a 7 KB abuse report whose multipart
/// structure makes mail-parser 0.11.9 panic ("Invalid part ID, could not
/// find multipart"). The bounce parser caught it, but a post in a digest
/// or a message to `LIST-request` was parsed unguarded, so a stranger's
/// message could end the task that reads it. Every full parse now goes
/// through `mime::parse`, which reads the panic as "unreadable".
#[test]
fn a_message_that_panics_mail_parser_is_read_as_unreadable() {
    let raw = include_bytes!("../fuzz/seeds/bounce_parse/mime-part-panic");
    assert!(listrelay::mime::parse(raw).is_none());
    let _ = listrelay::bounce::parse(raw);
    let section = listrelay::digest::Summary::of(&listrelay::digest::Post {
        raw,
        received_at: 1_796_000_000,
    });
    assert_eq!(section.subject, "(no subject)");
}
