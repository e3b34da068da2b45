//! Email addresses: validation and normalisation of member and list addresses,
//! and the routing of a recipient on a served domain to the handler it names.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The longest address of a member or list (RFC 5321: 64 + 1 + 255).
const MAX_ADDRESS_LEN: usize = 320;

/// The longest local part of a member or list (RFC 5321).
const MAX_LOCAL_LEN: usize = 64;

/// The longest local part of a recipient at RCPT. listrelay's own tagged
/// addresses are longer than RFC 5321's 64 bytes for ordinary members: a VERP
/// sender is the list (64) + `-bounces` + the delimiter (up to 4 bytes) + the
/// tag (the member's escaped local part, up to 3 × 64, its domain, up to 255,
/// two `=` and the 13-byte signature), 538 bytes at most. Postfix and Exim
/// pass such addresses on, so intake must take them back.
const MAX_RECIPIENT_LOCAL_LEN: usize = 600;

/// The longest recipient at RCPT: its local part and a 255-byte domain.
const MAX_RECIPIENT_LEN: usize = MAX_RECIPIENT_LOCAL_LEN + 1 + 255;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("empty address")]
    Empty,
    #[error("address is longer than {0} bytes")]
    TooLong(usize),
    #[error("address has no @domain part")]
    NoDomain,
    #[error("invalid local part {0:?}")]
    BadLocal(String),
    #[error("invalid domain {0:?}")]
    BadDomain(String),
}

/// An address `local@domain`, with the domain lowercased. The local part keeps its
/// case (RFC 5321 says it is case-sensitive) but comparisons for list membership use
/// [`Address::key`], which folds it too, as every real MTA does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address {
    local: String,
    domain: String,
}

impl Address {
    /// A member's or list's address: at most 64 bytes before the `@` and 320
    /// in all (RFC 5321).
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        Self::parse_within(input, MAX_LOCAL_LEN, MAX_ADDRESS_LEN)
    }

    /// A recipient as an MTA hands it over at RCPT, which may be one of
    /// listrelay's own tagged addresses, longer than a member's
    /// ([`MAX_RECIPIENT_LOCAL_LEN`] says why).
    pub fn parse_recipient(input: &str) -> Result<Self, AddressError> {
        Self::parse_within(input, MAX_RECIPIENT_LOCAL_LEN, MAX_RECIPIENT_LEN)
    }

    fn parse_within(input: &str, max_local: usize, max_len: usize) -> Result<Self, AddressError> {
        let s = input.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(s);
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > max_len {
            return Err(AddressError::TooLong(max_len));
        }
        let at = s.rfind('@').ok_or(AddressError::NoDomain)?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if !valid_local(local, max_local) {
            return Err(AddressError::BadLocal(local.to_string()));
        }
        // The key ([`Address::key`]) folds the local part, and a folded
        // character can be longer ('Ⱦ', U+023E, 2 bytes, becomes 'ⱦ', 3): the
        // key must fit the same limits, or a stored key would not parse back
        // as an address.
        let folded = local.to_lowercase().len();
        if folded > max_local {
            return Err(AddressError::BadLocal(local.to_string()));
        }
        if folded + 1 + domain.len() > max_len {
            return Err(AddressError::TooLong(max_len));
        }
        if !valid_domain(domain) {
            return Err(AddressError::BadDomain(domain.to_string()));
        }
        Ok(Address {
            local: local.to_string(),
            domain: domain.to_ascii_lowercase(),
        })
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The form used as a key in the store: fully lowercased.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Address::parse(&s)
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.to_string()
    }
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// A dot-atom (RFC 5322) or a quoted string without control characters.
fn valid_local(local: &str, max: usize) -> bool {
    if local.is_empty() || local.len() > max {
        return false;
    }
    if let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        let mut escaped = false;
        for c in inner.chars() {
            if c.is_control() {
                return false;
            }
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return false;
            }
        }
        return !escaped;
    }
    local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// A hostname of letters, digits and hyphens with at least one dot, or an
/// address literal.
pub fn valid_domain(domain: &str) -> bool {
    if domain.starts_with('[') && domain.ends_with(']') {
        return domain[1..domain.len() - 1]
            .parse::<std::net::IpAddr>()
            .is_ok()
            || domain[1..domain.len() - 1]
                .strip_prefix("IPv6:")
                .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
    if domain.is_empty() || domain.len() > 255 || !domain.contains('.') {
        return false;
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || idn_char(c))
    })
}

/// A non-ASCII character a domain label (an IDN U-label) may hold: not a
/// space or a control character. Fuzzing (target `address`): a label of
/// U+2008 alone was taken, and the printed address then lost it to `trim`
/// and no longer parsed.
fn idn_char(c: char) -> bool {
    !c.is_ascii() && !c.is_whitespace() && !c.is_control()
}

/// The handler a recipient on a list domain names. `LIST-suffix` addresses come
/// from [`Suffix`]; a `+TAG` after the delimiter is kept for the handlers that use one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suffix {
    /// `LIST@DOMAIN`: a post.
    Post,
    Bounces,
    Request,
    Owner,
    Join,
    Leave,
    Confirm,
    Moderate,
}

impl Suffix {
    /// Every suffixed address a list answers to, with the handler it names.
    pub const SUFFIXES: &'static [(&'static str, Suffix)] = &[
        ("bounces", Suffix::Bounces),
        ("request", Suffix::Request),
        ("owner", Suffix::Owner),
        ("join", Suffix::Join),
        ("subscribe", Suffix::Join),
        ("leave", Suffix::Leave),
        ("unsubscribe", Suffix::Leave),
        ("confirm", Suffix::Confirm),
        ("moderate", Suffix::Moderate),
    ];

    /// Whether the address may (or must) carry a `+TAG`.
    fn takes_tag(self) -> bool {
        matches!(self, Suffix::Bounces | Suffix::Confirm | Suffix::Moderate)
    }

    fn requires_tag(self) -> bool {
        matches!(self, Suffix::Confirm | Suffix::Moderate)
    }

    pub fn name(self) -> &'static str {
        match self {
            Suffix::Post => "post",
            Suffix::Bounces => "bounces",
            Suffix::Request => "request",
            Suffix::Owner => "owner",
            Suffix::Join => "join",
            Suffix::Leave => "leave",
            Suffix::Confirm => "confirm",
            Suffix::Moderate => "moderate",
        }
    }
}

/// `LIST-SUFFIX<delimiter>TAG@DOMAIN`, the one place a tagged address of a
/// list (VERP sender, moderation action, confirmation) is composed; intake's
/// [`route`] splits it again at the same configured delimiter.
pub fn tagged(list: &Address, suffix: Suffix, tag: &str, delimiter: char) -> String {
    format!(
        "{}-{}{delimiter}{tag}@{}",
        list.local(),
        suffix.name(),
        list.domain()
    )
}

/// Every local part a list answers to (without tags), for MTA recipient maps.
pub fn list_local_parts(list: &str) -> Vec<String> {
    std::iter::once(list.to_string())
        .chain(Suffix::SUFFIXES.iter().map(|(s, _)| format!("{list}-{s}")))
        .collect()
}

/// Whether a list name would collide with another list's suffixed addresses
/// or with the probe addresses of `listrelay check mta`.
pub fn reserved_list_name(local: &str) -> bool {
    let l = local.to_ascii_lowercase();
    l == PROBE_LOCAL
        || Suffix::SUFFIXES
            .iter()
            .any(|(s, _)| l.ends_with(&format!("-{s}")))
}

/// The reserved local part of the MTA self-check (`listrelay check mta`) on
/// every served domain: `listrelay-probe+TAG` is the probe sent through the
/// MTA's public port, `listrelay-probe-bounces+TAG` the copy re-injected back,
/// the way a VERP bounce returns. Neither is ever stored.
pub const PROBE_LOCAL: &str = "listrelay-probe";

/// Which way a probe of the MTA self-check travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeLeg {
    /// In through the MTA's public SMTP port, out over LMTP.
    Forward,
    /// In through the MTA's re-injection port, back over LMTP.
    Return,
}

/// The probe local parts without tags, for the MTA's recipient maps.
pub fn probe_local_parts() -> Vec<String> {
    vec![
        PROBE_LOCAL.to_string(),
        format!("{PROBE_LOCAL}-{}", Suffix::Bounces.name()),
    ]
}

/// The address of a probe leg at `domain`, tagged with `tag`.
pub fn probe_address(leg: ProbeLeg, tag: &str, domain: &str, delimiter: char) -> String {
    match leg {
        ProbeLeg::Forward => format!("{PROBE_LOCAL}{delimiter}{tag}@{domain}"),
        ProbeLeg::Return => {
            let base = Address {
                local: PROBE_LOCAL.to_string(),
                domain: domain.to_ascii_lowercase(),
            };
            tagged(&base, Suffix::Bounces, tag, delimiter)
        }
    }
}

/// The probe leg and tag a recipient names, if it is a probe address (with
/// a non-empty tag after `delimiter`).
pub fn probe(addr: &Address, delimiter: char) -> Option<(ProbeLeg, String)> {
    let (base, tag) = addr.local().split_once(delimiter)?;
    let leg = match base.to_ascii_lowercase() {
        b if b == PROBE_LOCAL => ProbeLeg::Forward,
        b if b == format!("{PROBE_LOCAL}-{}", Suffix::Bounces.name()) => ProbeLeg::Return,
        _ => return None,
    };
    (!tag.is_empty()).then(|| (leg, tag.to_string()))
}

/// Where a recipient routes: the list and handler its local part names,
/// resolved by the local part rules before the list is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The list's local part, lowercased.
    pub list: String,
    pub domain: String,
    pub suffix: Suffix,
    pub tag: Option<String>,
}

/// Splits `local@domain` into the list it names and the handler. The caller checks
/// that the list exists; a name that matches no rule yields `None`.
pub fn route(addr: &Address, delimiter: char) -> Option<Route> {
    // Split before lowercasing: a lowercase form can be longer or shorter
    // than the original ('İ' becomes "i̇"), so its byte offsets differ. The
    // tag keeps its case: VERP tags and tokens are case-sensitive.
    let (base, tag) = match addr.local().split_once(delimiter) {
        Some((base, tag)) => (base.to_lowercase(), Some(tag.to_string())),
        None => (addr.local().to_lowercase(), None),
    };
    let base = base.as_str();
    let (list, suffix) = Suffix::SUFFIXES
        .iter()
        .find_map(|(name, suffix)| {
            base.strip_suffix(name)
                .and_then(|b| b.strip_suffix('-'))
                .filter(|b| !b.is_empty())
                .map(|b| (b, *suffix))
        })
        .unwrap_or((base, Suffix::Post));
    match (&tag, suffix.takes_tag(), suffix.requires_tag()) {
        (Some(t), true, _) if !t.is_empty() => {}
        (None, _, false) => {}
        _ => return None,
    }
    Some(Route {
        list: list.to_string(),
        domain: addr.domain().to_string(),
        suffix,
        tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let a = Address::parse("<Bob.Smith@Example.ORG>").unwrap();
        assert_eq!(a.to_string(), "Bob.Smith@example.org");
        assert_eq!(a.key(), "bob.smith@example.org");
        for bad in [
            "",
            "bob",
            "@x.org",
            "a@",
            "a b@x.org",
            "a..b@x.org",
            "a@x",
            "a@-x.org",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad} should be refused");
        }
        for good in [
            "a+b=c-d@x.org",
            "\"john doe\"@x.org",
            "o'neil@x.co.uk",
            "u@[127.0.0.1]",
        ] {
            assert!(Address::parse(good).is_ok(), "{good} should parse");
        }
    }

    /// The key of every address parses back to itself: a local part whose
    /// lowercase form is longer than itself is refused when that form does
    /// not fit RFC 5321's 64 bytes (found by the `address` fuzz target).
    /// Fuzzing (target `address`): `<a@Example.\u{2008}>` parsed, and its
    /// printed form, whose last label `trim` then removed, did not.
    #[test]
    fn a_domain_label_of_spaces_is_refused() {
        assert!(Address::parse("<a@Example.\u{2008}>").is_err());
        assert!(Address::parse("a@exa\u{3000}mple.org").is_err());
        let idn = Address::parse("a@bücher.example").unwrap();
        assert_eq!(Address::parse(&idn.to_string()).unwrap(), idn);
    }

    #[test]
    fn keys_parse_back_as_addresses() {
        let wide = "\u{023E}"; // 'Ⱦ', 2 bytes, lowercases to 'ⱦ', 3 bytes
        assert_eq!(wide.len(), 2);
        assert_eq!(wide.to_lowercase().len(), 3);
        let fits = format!("\"{}\"@x.org", wide.repeat(31)); // 64 bytes, key 95
        assert!(Address::parse(&fits).is_err(), "its key would not parse");
        let ok = format!("\"{}\"@x.org", wide.repeat(20)); // 42 bytes, key 62
        let a = Address::parse(&ok).unwrap();
        let k = Address::parse(&a.key()).expect("the key parses");
        assert_eq!(k.key(), a.key());
    }

    #[test]
    fn routes_suffixes_and_tags() {
        let r = |s: &str| route(&Address::parse(s).unwrap(), '+');
        let t = r("Dev@lists.example.org").unwrap();
        assert_eq!(
            (t.list.as_str(), t.suffix, t.tag),
            ("dev", Suffix::Post, None)
        );
        let t = r("dev-announce-Bounces+Bob=Example.com@lists.example.org").unwrap();
        assert_eq!(t.list, "dev-announce");
        assert_eq!(t.suffix, Suffix::Bounces);
        assert_eq!(t.tag.as_deref(), Some("Bob=Example.com"));
        assert_eq!(r("dev-subscribe@l.org").unwrap().suffix, Suffix::Join);
        assert_eq!(r("dev-unsubscribe@l.org").unwrap().suffix, Suffix::Leave);
        assert_eq!(r("dev-confirm+abc@l.org").unwrap().suffix, Suffix::Confirm);
        assert!(r("dev-confirm@l.org").is_none(), "confirm needs a token");
        assert!(r("dev+x@l.org").is_none(), "a post address takes no tag");
        assert!(r("dev-owner+x@l.org").is_none());
        assert_eq!(r("-owner@l.org").unwrap().list, "-owner");
    }

    #[test]
    fn tagged_addresses_route_back_with_their_delimiter() {
        let list = Address::parse("Dev@l.org").unwrap();
        for d in ['+', '#', '='] {
            let a = tagged(&list, Suffix::Bounces, "bob=x.org=sig", d);
            let t = route(&Address::parse(&a).unwrap(), d).unwrap();
            assert_eq!((t.list.as_str(), t.suffix), ("dev", Suffix::Bounces), "{a}");
            assert_eq!(t.tag.as_deref(), Some("bob=x.org=sig"), "{a}");
        }
        assert_eq!(
            tagged(&list, Suffix::Confirm, "tok", '#'),
            "Dev-confirm#tok@l.org"
        );
    }

    #[test]
    fn probe_addresses_round_trip() {
        for d in ['+', '#'] {
            for leg in [ProbeLeg::Forward, ProbeLeg::Return] {
                let a = probe_address(leg, "id.sig", "L.org", d);
                let got = probe(&Address::parse(&a).unwrap(), d);
                assert_eq!(got, Some((leg, "id.sig".to_string())), "{a}");
            }
        }
        let p = |s: &str| probe(&Address::parse(s).unwrap(), '+');
        assert_eq!(p("listrelay-probe@l.org"), None, "a probe needs a tag");
        assert_eq!(p("listrelay-probe+@l.org"), None);
        assert_eq!(p("dev+x@l.org"), None);
        assert!(reserved_list_name("Listrelay-Probe"));
    }

    #[test]
    fn reserved_names() {
        assert!(reserved_list_name("dev-bounces"));
        assert!(!reserved_list_name("developers"));
        assert_eq!(list_local_parts("dev").len(), 1 + Suffix::SUFFIXES.len());
    }
}
