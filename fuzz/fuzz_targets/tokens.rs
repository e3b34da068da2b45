//! Signed tokens: VERP tags, moderation action tags, confirmation tokens and
//! one-click unsubscribe tokens. Properties: with the fixed site key, nothing
//! the fuzzer writes verifies (a token that decodes was minted by us: the
//! fuzzer cannot learn a signature, the signer compares in constant time);
//! every token minted for fuzzer-chosen list and member decodes back to them,
//! also through the tagged address the MTA sees; and a minted token with one
//! character of its signature changed does not verify.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use listrelay::address::{self, Address, Suffix};
use listrelay::moderation::held::{self, Action};
use listrelay::{oneclick, subscription, verp};
use listrelay_fuzz::secret;

#[derive(Arbitrary, Debug)]
struct Input {
    list: String,
    member: String,
    forged: String,
    action: u8,
    message_id: String,
    flip: u8,
}

fuzz_target!(|input: Input| {
    let s = secret();
    let Input {
        list,
        member,
        forged,
        action,
        message_id,
        flip,
    } = input;
    let action = Action::ALL[usize::from(action) % 3];

    // Nothing the fuzzer wrote verifies.
    assert!(
        !matches!(verp::decode(&s, &list, &forged), verp::Decoded::Verified(_)),
        "forged VERP tag verified: {forged:?}"
    );
    if let Some((a, hash, sig)) = held::parse_tag(&forged) {
        assert!(
            !held::verify_hash(&s, &list, a, &hash, &sig),
            "forged moderation tag verified"
        );
        assert!(
            !held::verify(&s, &list, a, &message_id, &sig),
            "forged moderation signature verified"
        );
    }
    assert_ne!(
        subscription::check_token(&s, &list, &forged),
        subscription::TokenCheck::ForThisList,
        "forged confirmation token verified"
    );
    assert_eq!(
        oneclick::decode(&s, &forged),
        None,
        "forged one-click token verified"
    );

    // Minted tokens decode back, and a changed signature does not.
    let Ok(list_addr) = Address::parse(&list) else {
        return;
    };
    let list_key = list_addr.key();
    if let Ok(m) = Address::parse(&member) {
        let key = m.key();
        let tag = verp::encode(&s, &list_key, &key);
        assert_eq!(
            verp::decode(&s, &list_key, &tag),
            verp::Decoded::Verified(key.clone()),
            "{tag}"
        );
        assert_eq!(
            verp::decode(&s, &list_key, &tag.to_ascii_uppercase()),
            verp::Decoded::Verified(key.clone())
        );
        assert!(!matches!(
            verp::decode(&s, &list_key, &flipped(&tag, flip)),
            verp::Decoded::Verified(_)
        ));
        verp_address_routes(&list_addr, &list_key, &key, &tag);

        let token = oneclick::encode(&s, &list_key, &key);
        assert_eq!(
            oneclick::decode(&s, &token),
            Some((list_key.clone(), key.clone()))
        );
        assert_eq!(oneclick::decode(&s, &flipped(&token, flip)), None);
    }
    let tag = held::tag(&s, &list_key, action, &message_id);
    let (a, hash, sig) = held::parse_tag(&tag).expect("a minted moderation tag parses");
    assert_eq!(a, action);
    assert!(held::verify_hash(&s, &list_key, a, &hash, &sig));
    assert!(held::verify(&s, &list_key, a, &message_id, &sig));
    assert!(!held::verify(
        &s,
        &list_key,
        a,
        &message_id,
        &flipped(&sig, flip)
    ));

    let token = subscription::new_token(&s, &list_key);
    assert_eq!(
        subscription::check_token(&s, &list_key, &token),
        subscription::TokenCheck::ForThisList
    );
    assert_eq!(
        subscription::check_token(&s, &list_key, &token.to_ascii_uppercase()),
        subscription::TokenCheck::ForThisList
    );
    assert_ne!(
        subscription::check_token(&s, &list_key, &flipped(&token, flip)),
        subscription::TokenCheck::ForThisList
    );
});

/// `LIST-bounces+TAG@DOMAIN` as fan-out writes it parses and routes back to
/// the tag, at every delimiter the configuration accepts that the list name
/// does not itself contain.
fn verp_address_routes(list: &Address, list_key: &str, key: &str, tag: &str) {
    // Only names `list create` accepts (and a dot-atom, as every MTA takes).
    if address::reserved_list_name(list.local()) || list.local().starts_with('"') {
        return;
    }
    for delimiter in ['+', '#', '=', '%'] {
        if list.local().contains(delimiter) {
            continue;
        }
        let text = address::tagged(list, Suffix::Bounces, tag, delimiter);
        let addr = Address::parse_recipient(&text)
            .unwrap_or_else(|e| panic!("the VERP sender {text:?} does not parse: {e}"));
        let route = address::route(&addr, delimiter)
            .unwrap_or_else(|| panic!("the VERP sender {text:?} does not route"));
        assert_eq!(route.suffix, Suffix::Bounces, "{text}");
        assert_eq!(route.tag.as_deref(), Some(tag), "{text}");
        assert_eq!(
            format!("{}@{}", route.list, route.domain),
            list_key,
            "{text}"
        );
        assert_eq!(
            verp::decode(&secret(), list_key, tag),
            verp::Decoded::Verified(key.to_string())
        );
    }
}

/// `token` with its last-but-`n % len` ASCII character changed to another
/// base32 character (a signature is at the end of every token).
fn flipped(token: &str, n: u8) -> String {
    let mut b = token.as_bytes().to_vec();
    if b.is_empty() {
        return "a".into();
    }
    let sig_len = 13.min(b.len());
    let i = b.len() - 1 - usize::from(n) % sig_len;
    b[i] = if b[i] == b'a' { b'b' } else { b'a' };
    String::from_utf8_lossy(&b).into_owned()
}
