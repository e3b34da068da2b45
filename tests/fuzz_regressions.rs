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
