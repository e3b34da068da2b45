//! Finding and normalising e-mail addresses in free text.

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c)
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

/// Normalises an address: trims blanks, quotes, `<>`, a `mailto:` prefix,
/// and lowercases the domain. Returns `None` when it is not an address.
pub fn normalize(raw: &str) -> Option<String> {
    let mut s = raw.trim();
    if let Some(i) = s.find('<') {
        if let Some(j) = s[i..].find('>') {
            s = &s[i + 1..i + j];
        }
    }
    let s = s
        .trim()
        .trim_matches(|c: char| c == '<' || c == '>' || c == '"' || c == '\'' || c.is_whitespace());
    let s = s.strip_prefix("mailto:").unwrap_or(s);
    let at = s.rfind('@')?;
    let (local, domain) = (&s[..at], &s[at + 1..]);
    let domain = domain.trim_end_matches(['.', ',', ';', ':', ')']);
    if local.is_empty() || domain.is_empty() || local.contains(char::is_whitespace) {
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
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices('@') {
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
        let start = at - local.len();
        let domain = text[at + 1..end].trim_end_matches(['.', '-']);
        let end = at + 1 + domain.len();
        if local.is_empty() || !domain.contains('.') || domain.starts_with(['.', '-']) {
            continue;
        }
        let tld = domain.rsplit('.').next().unwrap_or("");
        if tld.len() < 2 || !tld.chars().all(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        if let Some(addr) = normalize(&text[start..end]) {
            out.push(Found { addr, start, end });
        }
    }
    out
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
        ];
        for (i, o) in cases {
            assert_eq!(normalize(i).as_deref(), o, "{i}");
        }
    }

    #[test]
    fn finding() {
        let f = find_all("<kijitora@example.jp>: host mx said 550 (a@b.co.) x@y z@host.localhost.");
        let v: Vec<_> = f.iter().map(|f| f.addr.as_str()).collect();
        assert_eq!(v, ["kijitora@example.jp", "a@b.co", "z@host.localhost"]);
    }
}
