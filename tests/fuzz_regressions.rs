//! Inputs the fuzz targets (fuzz/, docs/fuzzing.md) found, each kept as a
//! test through the public API the target used, asserting what a user would
//! check.

use std::sync::Arc;

use listrelay::address::{self, Address, Suffix};
use listrelay::intake::Intake;
use listrelay::model::{Domain, List};
use listrelay::secret::Secret;
use listrelay::store::{SledStore, Store};
use listrelay::verp;

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
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    let list = List::new(Address::parse("developers@lists.example.org").unwrap());
    store
        .create_domain(&Domain {
            name: "lists.example.org".into(),
            opaque: false,
            arc_seal: None,
            created_at: 0,
        })
        .await
        .unwrap();
    store.create_list(&list).await.unwrap();
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
