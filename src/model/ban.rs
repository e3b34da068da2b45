//! A list's bans: addresses that may neither post nor subscribe. An entry
//! is an exact address, or a pattern beginning with `^` (GNU Mailman's
//! form: a Python regular expression matched case-blind from the start of
//! the address, e.g. `^.*@spam\.example$`). Patterns run on the `regex`
//! crate, whose matching is linear in the address; their text and compiled
//! size are bounded, so no entry can make a check slow or large.

use thiserror::Error;

use crate::address::Address;

/// Longest pattern accepted, in bytes: far more than any real ban needs.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// Most entries a list's ban list holds: it is read with the list on
/// every post, so it stays bounded.
pub const MAX_BANS: usize = 10_000;

/// Largest compiled form of one pattern (the `regex` crate's size limit):
/// a short pattern with large repetitions (`\w{1000}{1000}`) is refused
/// instead of compiled.
const COMPILED_LIMIT: usize = 256 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BanError {
    #[error("ban {0:?}: give an address (bob@example.org) or a pattern beginning with ^ (^.*@spam\\.example$)")]
    NotAnAddress(String),
    #[error("ban pattern is {0} bytes long; at most {MAX_PATTERN_BYTES} are accepted: shorten it or split it into several bans")]
    TooLong(usize),
    #[error("ban pattern {0:?} is not a regular expression listrelay can run ({1}); look-around and back-references are not supported: rewrite it without them")]
    BadPattern(String, String),
    #[error("the list has {MAX_BANS} bans already: remove some, or cover several addresses with one pattern")]
    TooMany,
}

/// One entry of a ban list, checked and in its stored form.
#[derive(Debug, Clone)]
pub enum Ban {
    /// An exact address, by its key (lowercased local part).
    Address(String),
    /// A pattern (the text as given, and compiled).
    Pattern(String, regex::Regex),
}

impl Ban {
    /// Checks an entry: a pattern when it begins with `^`, otherwise an
    /// address.
    pub fn parse(text: &str) -> Result<Ban, BanError> {
        let text = text.trim();
        if text.starts_with('^') {
            if text.len() > MAX_PATTERN_BYTES {
                return Err(BanError::TooLong(text.len()));
            }
            let re = regex::RegexBuilder::new(text)
                .case_insensitive(true)
                .size_limit(COMPILED_LIMIT)
                .build()
                .map_err(|e| BanError::BadPattern(text.to_string(), first_line(&e.to_string())))?;
            return Ok(Ban::Pattern(text.to_string(), re));
        }
        Address::parse(text)
            .map(|a| Ban::Address(a.key()))
            .map_err(|_| BanError::NotAnAddress(text.to_string()))
    }

    /// The entry as stored in the list record and shown.
    pub fn text(&self) -> &str {
        match self {
            Ban::Address(a) => a,
            Ban::Pattern(p, _) => p,
        }
    }

    /// Whether the entry covers `address`.
    pub fn matches(&self, address: &Address) -> bool {
        match self {
            Ban::Address(a) => *a == address.key(),
            Ban::Pattern(_, re) => re.is_match(&address.key()),
        }
    }
}

/// The `regex` crate's errors draw the pattern over several lines; the
/// first says what is wrong, and one line fits every door's answer.
fn first_line(e: &str) -> String {
    e.lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("error:"))
        .or_else(|| e.lines().next())
        .unwrap_or_default()
        .to_string()
}

/// A list's bans, compiled once per check of a post or a subscription.
#[derive(Debug, Default)]
pub struct Bans(Vec<Ban>);

impl Bans {
    /// Compiles a list's stored entries. Each was checked when added; one
    /// that no longer compiles (a change of the `regex` crate) is skipped
    /// with a warning rather than letting every post through unchecked
    /// or none at all.
    pub fn new(entries: &[String]) -> Bans {
        Bans(
            entries
                .iter()
                .filter_map(|e| match Ban::parse(e) {
                    Ok(b) => Some(b),
                    Err(err) => {
                        tracing::warn!(ban = %e, error = %err, "a stored ban no longer parses; skipped: remove it and add it again");
                        None
                    }
                })
                .collect(),
        )
    }

    /// Whether any entry covers `address`.
    pub fn covers(&self, address: &Address) -> bool {
        self.0.iter().any(|b| b.matches(address))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_to_addresses_or_bounded_patterns() {
        assert_eq!(
            Ban::parse(" Bob@Example.ORG ").unwrap().text(),
            "bob@example.org"
        );
        assert_eq!(
            Ban::parse(r"^.*@spam\.example$").unwrap().text(),
            r"^.*@spam\.example$"
        );
        assert!(matches!(
            Ban::parse("not an address"),
            Err(BanError::NotAnAddress(_))
        ));
        assert!(matches!(Ban::parse(""), Err(BanError::NotAnAddress(_))));
        let long = format!("^{}", "a".repeat(MAX_PATTERN_BYTES));
        assert_eq!(
            Ban::parse(&long).unwrap_err(),
            BanError::TooLong(MAX_PATTERN_BYTES + 1)
        );
        for bad in [r"^(a", r"^(?=x)a", r"^(a)\1", r"^\w{1000}{1000}"] {
            let e = Ban::parse(bad).unwrap_err();
            assert!(matches!(e, BanError::BadPattern(..)), "{bad}: {e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn matching() {
        let table: &[(&str, &str, bool)] = &[
            ("bob@x.org", "bob@x.org", true),
            ("bob@x.org", "BOB@X.org", true),
            ("bob@x.org", "bob2@x.org", false),
            ("bob@x.org", "bob@x.org.uk", false),
            (r"^.*@spam\.example$", "anyone@spam.example", true),
            (r"^.*@spam\.example$", "Anyone@SPAM.example", true),
            (r"^.*@spam\.example$", "anyone@spam.example.org", false),
            (r"^.*@spam\.example$", "anyone@notspam.example", false),
            // Python's re.match anchors at the start only, as here.
            (r"^.*@spam\.example", "a@spam.example.org", true),
            (r"^bob\+.*@x\.org$", "bob+lists@x.org", true),
            (r"^bob\+.*@x\.org$", "bob@x.org", false),
            (r"^[a-z]+[0-9]{4}@", "abc1234@y.org", true),
            (r"^[a-z]+[0-9]{4}@", "abc123@y.org", false),
        ];
        for (entry, address, want) in table {
            let ban = Ban::parse(entry).unwrap();
            let a = Address::parse(address).unwrap();
            assert_eq!(ban.matches(&a), *want, "{entry} vs {address}");
        }
        let bans = Bans::new(&[
            "a@x.org".to_string(),
            r"^.*@spam\.example$".to_string(),
            "^(broken".to_string(),
        ]);
        assert!(bans.covers(&Address::parse("A@x.org").unwrap()));
        assert!(bans.covers(&Address::parse("z@spam.example").unwrap()));
        assert!(!bans.covers(&Address::parse("b@x.org").unwrap()));
        assert!(Bans::new(&[]).is_empty());
    }

    #[test]
    fn a_long_address_against_a_pattern_is_quick() {
        // Linear matching: a hostile address cannot make a check slow.
        let ban = Ban::parse(r"^(a|aa)*(a|aa)*b$").unwrap();
        let a = Address::parse(&format!("{}@x.org", "a".repeat(64))).unwrap();
        let t = std::time::Instant::now();
        assert!(!ban.matches(&a));
        assert!(t.elapsed() < std::time::Duration::from_millis(200));
    }
}
