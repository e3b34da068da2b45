//! Tokens and addresses already in members' and moderators' mailboxes keep
//! working: tests/fixtures/tokens.tsv holds literal VERP senders, moderation
//! action addresses and signatures, one-click URLs and a confirmation
//! address, minted by an earlier listrelay with a fixed site secret. Each must
//! still verify (or, for a confirmation token, still hash to the key of its
//! stored record), and a one-character change must not. The stored
//! moderation address also still acts on its held post through the service.

mod support;

use listrelay::address::{route, Address, Suffix};
use listrelay::moderation::held::{self, Action};
use listrelay::secret::Secret;
use listrelay::subscription::{oneclick, token_hash};
use listrelay::verp::{self, Decoded};

const FIXTURES: &str = include_str!("fixtures/tokens.tsv");

/// The fixture lines, split into fields, without comments.
fn lines() -> Vec<Vec<&'static str>> {
    FIXTURES
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').collect())
        .collect()
}

fn secret() -> Secret {
    let line = lines().into_iter().find(|f| f[0] == "secret").unwrap();
    Secret::from_bytes(hex::decode(line[1]).unwrap())
}

/// The tag of a `LIST-suffix+TAG@DOMAIN` address, checking the suffix.
fn tag_of(address: &str, suffix: Suffix) -> String {
    let t = route(&Address::parse(address).unwrap(), '+').unwrap();
    assert_eq!(t.suffix, suffix, "{address}");
    t.tag.unwrap()
}

/// `s` with its last character replaced by another one of the same alphabet.
fn altered(s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let last = chars.last_mut().unwrap();
    *last = if *last == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

#[test]
fn every_kind_is_covered() {
    let kinds: Vec<&str> = lines().iter().map(|f| f[0]).collect();
    for k in ["secret", "verp", "moderate", "oneclick", "confirm"] {
        assert!(kinds.contains(&k), "no {k} fixture");
    }
}

#[test]
fn stored_verp_senders_verify() {
    let s = secret();
    for f in lines().into_iter().filter(|f| f[0] == "verp") {
        let (list, member, sender) = (f[1], f[2], f[3]);
        let tag = tag_of(sender, Suffix::Bounces);
        assert_eq!(
            verp::decode(&s, list, &tag),
            Decoded::Verified(member.into()),
            "{sender}"
        );
        assert_eq!(
            verp::decode(&s, list, &altered(&tag)),
            Decoded::Unverified(member.into()),
            "{sender} altered"
        );
    }
}

#[test]
fn stored_moderation_addresses_and_signatures_verify() {
    let s = secret();
    for f in lines().into_iter().filter(|f| f[0] == "moderate") {
        let (list, action, mid, address, sig) = (f[1], f[2], f[3], f[4], f[5]);
        let action = Action::parse(action).unwrap();
        let (a, hash, tag_sig) = held::parse_tag(&tag_of(address, Suffix::Moderate)).unwrap();
        assert_eq!(a, action);
        assert_eq!(hash, held::message_hash(mid), "{address}");
        assert_eq!(tag_sig, sig);
        assert!(held::verify(&s, list, action, mid, sig), "{address}");
        assert!(!held::verify(&s, list, action, mid, &altered(sig)));
        let other = Action::ALL.into_iter().find(|x| *x != action).unwrap();
        assert!(!held::verify(&s, list, other, mid, sig));
    }
}

#[test]
fn stored_one_click_urls_verify() {
    let s = secret();
    for f in lines().into_iter().filter(|f| f[0] == "oneclick") {
        let (list, member, url) = (f[1], f[2], f[3]);
        let token = url.rsplit('/').next().unwrap();
        assert_eq!(
            oneclick::decode(&s, token),
            Some((list.into(), member.into())),
            "{url}"
        );
        assert_eq!(oneclick::decode(&s, &altered(token)), None, "{url} altered");
    }
}

#[test]
fn stored_confirmation_tokens_find_their_record() {
    for f in lines().into_iter().filter(|f| f[0] == "confirm") {
        let (address, stored_hash) = (f[1], f[2]);
        let token = tag_of(address, Suffix::Confirm);
        assert_eq!(token_hash(&token), stored_hash, "{address}");
        assert_eq!(token_hash(&token.to_uppercase()), stored_hash);
        assert_ne!(token_hash(&altered(&token)), stored_hash);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_moderation_address_still_acts_on_its_held_post() {
    use listrelay::model::List;
    let f = lines().into_iter().find(|f| f[0] == "moderate").unwrap();
    let (list_key, mid, address) = (f[1], f[3], f[4]);
    let mut rig = support::moderation::Rig::new(listrelay::clock::now()).await;
    rig.svc.secret = secret();
    let store = rig.store.clone();
    let mut list = List::new(Address::parse(list_key).unwrap());
    list.settings.set("moderators", "mod@example.com").unwrap();
    store.create_list(&list).await.unwrap();
    let intake = listrelay::intake::Intake::new(store.clone(), '+');
    let r = intake.resolve(list_key).await.unwrap();
    let raw =
        format!("From: stranger@example.net\r\nSubject: s\r\nMessage-ID: <{mid}>\r\n\r\nhi\r\n");
    intake
        .deliver("stranger@example.net", &[r], raw.as_bytes())
        .await;
    for post in store.unplanned_posts().await.unwrap() {
        assert!(!rig.svc.check_post(&post).await.unwrap(), "held");
    }
    let moderator = listrelay::moderation::policy::sender(
        "mod@example.com",
        b"From: mod@example.com\r\nSubject: ok\r\n\r\n",
    );
    let tag = tag_of(address, Suffix::Moderate);
    let done = rig
        .svc
        .moderate_address(&list, &tag, &moderator)
        .await
        .unwrap();
    assert_eq!(done, format!("{} done", f[2]));
    assert!(store.held_posts(None).await.unwrap().is_empty());
}
