//! Finding and normalising e-mail addresses in free text.

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c)
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

/// Type prefixes some MTAs write before an address: RFC 3464's address
/// type (`rfc822;`), qmail-ldap and Exchange's `smtp=`/`smtp:`, `mailto:`.
const PREFIXES: &[&str] = &["rfc822;", "rfc822:", "smtp=", "smtp:", "smtp;", "mailto:"];

/// Whether `s` starts with a quoted local part (`"first..last"@host`,
/// RFC 5321 section 4.1.2), whose quotes belong to the address.
fn quoted_local(s: &str) -> bool {
    s.starts_with('"')
        && s[1..]
            .find('"')
            .is_some_and(|i| s[i + 2..].starts_with('@'))
}

/// Normalises an address: trims blanks, quotes, `<>`, a type prefix
/// (`rfc822;`, `smtp=`, `mailto:`), an RFC 5321 source route
/// (`@relay:user@host`), and lowercases the domain. A quoted local part
/// keeps its quotes. Returns `None` when it is not an address.
pub fn normalize(raw: &str) -> Option<String> {
    let mut s = raw.trim();
    // "Name <addr>", "addr <addr2>": the bracketed one is the address.
    if let Some(i) = s.find('<') {
        if let Some(j) = s[i..].find('>') {
            s = &s[i + 1..i + j];
        }
    }
    let mut s = s
        .trim()
        .trim_matches(|c: char| c == '<' || c == '>' || c == '\'' || c.is_whitespace());
    while let Some(p) = PREFIXES
        .iter()
        .find(|p| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)))
    {
        s = s[p.len()..].trim_start();
    }
    // A source route "@relay.example,@r2:user@host" names relays, then the
    // address after the colon.
    if s.starts_with('@') {
        s = &s[s.find(':')? + 1..];
    }
    let quoted = quoted_local(s);
    if !quoted {
        s = s.trim_matches('"');
    }
    let at = s.rfind('@')?;
    let (local, domain) = (&s[..at], &s[at + 1..]);
    let domain = domain.trim_end_matches(['.', ',', ';', ':', ')', '"']);
    if local.is_empty() || domain.is_empty() || (!quoted && local.contains(char::is_whitespace)) {
        return None;
    }
    if !domain
        .chars()
        .all(|c| is_domain_char(c) || c == '[' || c == ']' || c == ':')
    {
        return None;
    }
    Some(format!("{}@{}", local, domain.to_ascii_lowercase()))
}

/// One address found in text: the normalised address and its byte offset.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub addr: String,
    pub start: usize,
    pub end: usize,
}

/// Finds every plausible address in `text` (domain must contain a dot).
pub fn find_all(text: &str) -> Vec<Found> {
    find_iter(text).collect()
}

/// The addresses of [`find_all`], found one at a time, so that a caller
/// with a budget stops reading where it stops taking.
pub fn find_iter(text: &str) -> impl Iterator<Item = Found> + '_ {
    text.match_indices('@')
        .filter_map(move |(at, _)| found_at(text, at))
}

/// The address around the `@` at byte `at` of `text`, if it is one.
fn found_at(text: &str, at: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    {
        let mut start = at;
        while start > 0 {
            let c = bytes[start - 1] as char;
            if bytes[start - 1] < 128 && is_local_char(c) {
                start -= 1;
            } else {
                break;
            }
        }
        let mut end = at + 1;
        while end < bytes.len() && bytes[end] < 128 && is_domain_char(bytes[end] as char) {
            end += 1;
        }
        let local = text[start..at].trim_start_matches('.');
        let mut start = at - local.len();
        // A quoted local part ("first..last"@host): back to its opening
        // quote, on the same line and within RFC 5321's 64 octets.
        if local.is_empty() && at > 0 && bytes[at - 1] == b'"' {
            let from = at.saturating_sub(66);
            if let Some(q) = bytes[from..at - 1]
                .iter()
                .rposition(|&b| b == b'"' || b == b'\n')
                .map(|i| from + i)
                .filter(|&q| bytes[q] == b'"' && q + 1 < at - 1)
            {
                start = q;
            }
        }
        let domain = text[at + 1..end].trim_end_matches(['.', '-']);
        let end = at + 1 + domain.len();
        if start == at || !domain.contains('.') || domain.starts_with(['.', '-']) {
            return None;
        }
        // "addr <addr2>": the first is a display name, the bracketed one
        // the address.
        let after = text[end..].trim_start_matches([' ', '\t']);
        if after.starts_with('<')
            && after[1..]
                .split(['>', '\n'])
                .next()
                .is_some_and(|inner| inner.contains('@'))
        {
            return None;
        }
        // "smtp=user@host": a type prefix glued to the local part.
        if let Some(p) = PREFIXES.iter().find(|p| {
            text.get(start..start + p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p))
        }) {
            start += p.len();
        }
        if start == at {
            return None;
        }
        let tld = domain.rsplit('.').next().unwrap_or("");
        if tld.len() < 2 || !tld.chars().all(|c| c.is_ascii_alphabetic()) {
            return None;
        }
        normalize(&text[start..end]).map(|addr| Found { addr, start, end })
    }
}

/// Local parts that name a mail system rather than a person.
pub fn is_system_local(addr: &str) -> bool {
    let local = addr.split('@').next().unwrap_or("").to_ascii_lowercase();
    matches!(
        local.as_str(),
        "mailer-daemon"
            | "postmaster"
            | "mail-daemon"
            | "mailerdaemon"
            | "root"
            | "daemon"
            | "mdaemon"
            | "abuse"
    ) || local.starts_with("bounce")
        // A list's own bounce address (LIST-bounces, LIST-bounces+TAG, the
        // Mailman convention listrelay follows): where reports go, never a
        // failed recipient.
        || local.contains("-bounces")
        || local.starts_with("noreply")
        || local.starts_with("no-reply")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing() {
        let cases = [
            ("<Kiji@Example.COM>", Some("Kiji@example.com")),
            ("rcpt \"x\" <a@b.c>", Some("a@b.c")),
            ("mailto:a@b.c", Some("a@b.c")),
            ("nope", None),
            ("@b.c", None),
            ("@relay.example:user@Example.NET", Some("user@example.net")),
            (
                "<@r1.example,@r2.example:u@example.net>",
                Some("u@example.net"),
            ),
            ("smtp=u@example.net", Some("u@example.net")),
            ("SMTP:u@example.net", Some("u@example.net")),
            ("rfc822; u@example.net", Some("u@example.net")),
            (
                "\"first..last\"@example.com",
                Some("\"first..last\"@example.com"),
            ),
            ("Name <u@example.net>", Some("u@example.net")),
        ];
        for (i, o) in cases {
            assert_eq!(normalize(i).as_deref(), o, "{i}");
        }
    }

    #[test]
    fn list_bounce_addresses_are_system_addresses() {
        assert!(is_system_local("team-bounces@lists.example.com"));
        assert!(is_system_local(
            "team-bounces+jo=example.net@lists.example.com"
        ));
        assert!(!is_system_local("team@lists.example.com"));
    }

    #[test]
    fn finding() {
        let f = find_all("<kijitora@example.jp>: host mx said 550 (a@b.co.) x@y z@host.localhost.");
        let v: Vec<_> = f.iter().map(|f| f.addr.as_str()).collect();
        assert_eq!(v, ["kijitora@example.jp", "a@b.co", "z@host.localhost"]);
        let f = find_all(
            "\"first..last\"@example.com; smtp=u@example.net\nold@example.org <new@example.org>",
        );
        let v: Vec<_> = f.iter().map(|f| f.addr.as_str()).collect();
        assert_eq!(
            v,
            [
                "\"first..last\"@example.com",
                "u@example.net",
                "new@example.org"
            ]
        );
    }
}
