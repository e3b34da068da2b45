//! Status codes, reasons and the hard/soft verdict.
//!
//! The tables below are written from RFC 3463 (enhanced status codes), RFC
//! 5321 (reply codes) and the wording MTAs use in their error texts.

use super::report::Reason;

fn is_digit(b: Option<&u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_digit())
}

/// Parses an RFC 3463 status `class.subject.detail` at the start of `s`;
/// returns it and its length.
fn status_at(s: &[u8]) -> Option<(String, usize)> {
    let class = *s.first()?;
    if !matches!(class, b'2' | b'4' | b'5') || s.get(1) != Some(&b'.') {
        return None;
    }
    let mut i = 2;
    let a = i;
    while i < s.len() && s[i].is_ascii_digit() && i - a < 3 {
        i += 1;
    }
    if i == a || s.get(i) != Some(&b'.') || is_digit(s.get(i)) {
        return None;
    }
    i += 1;
    let b = i;
    while i < s.len() && s[i].is_ascii_digit() && i - b < 3 {
        i += 1;
    }
    if i == b || is_digit(s.get(i)) {
        return None;
    }
    // "5.1.1.3" is not a status (version numbers, addresses).
    if s.get(i) == Some(&b'.') && is_digit(s.get(i + 1)) {
        return None;
    }
    if s.get(i)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return None;
    }
    Some((String::from_utf8_lossy(&s[..i]).into_owned(), i))
}

/// Whether `status` appears in `text` right after a 4xx/5xx reply code.
fn after_reply_code(text: &str, status: &str) -> bool {
    text.match_indices(status).any(|(i, _)| {
        let before = text[..i].trim_end_matches(['\'', '"', ' ', '-', '#']);
        // One to four separators: "550 5.1.1", "550-'5.2.2", "550 #5.1.0".
        (1..=4).contains(&(i - before.len()))
            && before.len() >= 3
            && find_reply_code(&before[before.len() - 3..]).is_some()
            && (before.len() == 3 || !before.as_bytes()[before.len() - 4].is_ascii_digit())
    })
}

/// All enhanced status codes in `text`, in order.
pub fn find_statuses(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // "550-5.1.1" (a reply continuation) is fine, "x-5.1.1" is not.
        let prev_ok = i == 0
            || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.' || b[i - 1] == b'-')
            || (b[i - 1] == b'-' && i >= 2 && b[i - 2].is_ascii_digit());
        if prev_ok {
            if let Some((st, len)) = status_at(&b[i..]) {
                out.push(st);
                i += len;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// A status given as a field value ("5.1.1", "5.1.1 (user unknown)").
pub fn status_from_field(value: &str) -> Option<String> {
    find_statuses(value).into_iter().next()
}

/// The first SMTP reply code (4xx/5xx) in `text`.
pub fn find_reply_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    for i in 0..b.len().saturating_sub(2) {
        if !matches!(b[i], b'4' | b'5') || !b[i + 1].is_ascii_digit() || !b[i + 2].is_ascii_digit()
        {
            continue;
        }
        if b[i + 1] > b'5' {
            continue;
        }
        let prev_ok = i == 0
            || matches!(
                b[i - 1],
                b' ' | b'\t' | b'(' | b'\n' | b':' | b';' | b'"' | b'#' | b'<' | b'['
            );
        let next_ok = matches!(
            b.get(i + 3),
            None | Some(b' ' | b'-' | b'\n' | b')' | b'\t' | b'"')
        );
        if prev_ok && next_ok {
            let code = (b[i] - b'0') as u16 * 100
                + (b[i + 1] - b'0') as u16 * 10
                + (b[i + 2] - b'0') as u16;
            return Some(code);
        }
    }
    None
}

/// True for `X.0.0` statuses that say nothing beyond the class.
pub fn is_unspecific(status: &str) -> bool {
    status.ends_with(".0.0")
}

/// Chooses a status: the one given, unless it is an `X.0.0` and the
/// diagnostic carries a more specific code of the same class.
pub fn best_status(given: Option<&str>, diagnostic: &str) -> Option<String> {
    let mut found = find_statuses(diagnostic);
    // A code right after an SMTP reply code ("550 5.2.2", "550-'5.2.2") is
    // the remote server's own answer: it goes first.
    if let Some(i) = found.iter().position(|s| after_reply_code(diagnostic, s)) {
        let s = found.remove(i);
        found.insert(0, s);
    }
    // The remote server's own code wins over a Status field of the same
    // class that the reporting MTA wrote (Sendmail writes "5.1.1" for a
    // "550 5.7.1 ... blacklisted" reply).
    let remote = found
        .first()
        .filter(|s| after_reply_code(diagnostic, s) && !is_unspecific(s))
        .cloned();
    match given {
        Some(g) if !is_unspecific(g) => match remote {
            Some(r) if r[..1] == g[..1] => Some(r),
            _ => Some(g.to_string()),
        },
        Some(g) => found
            .into_iter()
            .find(|s| !is_unspecific(s) && s[..1] == g[..1])
            .or_else(|| Some(g.to_string())),
        None => {
            let mut found = found.into_iter().filter(|s| !s.starts_with('2'));
            let first = found.next()?;
            if is_unspecific(&first) {
                found
                    .find(|s| !is_unspecific(s) && s[..1] == first[..1])
                    .or(Some(first))
            } else {
                Some(first)
            }
        }
    }
}

const USER_UNKNOWN: &[&str] = &[
    "user unknown",
    "unknown user",
    "user is unknown",
    "no such user",
    "no such mailbox",
    "no such recipient",
    "no such person",
    "no such account",
    "user not found",
    "user doesn't exist",
    "user does not exist",
    "mailbox not found",
    "mailbox does not exist",
    "mailbox unavailable",
    "mailbox is unavailable",
    "unknown mailbox",
    "invalid mailbox",
    "not a valid mailbox",
    "no mailbox",
    "recipient unknown",
    "unknown recipient",
    "recipient not found",
    "recipient does not exist",
    "invalid recipient",
    "bad recipient",
    "recipient address rejected: undeliverable",
    "unknown address",
    "address unknown",
    "addressee unknown",
    "account does not exist",
    "account that you tried to reach does not exist",
    "address does not exist",
    "does not exist",
    "doesn't exist",
    "doesn't have a",
    "unknown local part",
    "unrouteable address",
    "no valid recipients",
    "not our customer",
    "not listed in",
    "account is not active",
    "no longer valid",
    "has moved",
    "address has changed",
    "user not listed",
    "user not exist",
    "recipient name is not recognized",
    "unknown or illegal alias",
    "invalid address",
    "is not a valid user",
    "not a known user",
];

const HOST_UNKNOWN: &[&str] = &[
    "host unknown",
    "unknown host",
    "host not found",
    "domain not found",
    "no such domain",
    "unknown domain",
    "domain does not exist",
    "name or service not known",
    "host or domain name not found",
    "unrouteable mail domain",
    "illegal host/domain",
    "no mx",
    "nxdomain",
    "does not accept mail",
    "null mx",
    "hostname lookup failed",
    "dns error",
    "domain is not reachable",
];

const MAILBOX_FULL: &[&str] = &[
    "mailbox full",
    "mailbox is full",
    "mailbox was full",
    "full mailbox",
    "over quota",
    "overquota",
    "quota exceeded",
    "exceeded quota",
    "exceeds quota",
    "quota exceed",
    "exceeded storage",
    "mailbox size limit",
    "storage allocation",
    "out of storage",
    "disk quota",
    "user is over",
    "insufficient storage",
    "mailbox has exceeded",
    "mailbox exceeded",
    "folder is full",
    "account is full",
    "quota",
];

const TOO_LARGE: &[&str] = &[
    "message too large",
    "message is too large",
    "too big",
    "message size exceeds",
    "exceeds size limit",
    "exceeds the maximum size",
    "size limit",
    "message length exceeds",
    "message exceeds",
];

const POLICY: &[&str] = &[
    "spam",
    "blocked",
    "block list",
    "blocklist",
    "blacklist",
    "dmarc",
    "spf",
    "dkim",
    "policy",
    "reputation",
    "rbl",
    "spamhaus",
    "not permitted",
    "access denied",
    "denied",
    "prohibited",
    "relay",
    "virus",
    "malware",
    "content",
    "refused",
    "rejected by",
    "header error",
    "not authorized",
    "unauthenticated",
    "authentication",
];

const EXPIRED: &[&str] = &[
    "retry timeout exceeded",
    "retry time not reached",
    "too long in queue",
    "in the queue too long",
    "queue too long",
    "has been delayed",
    "delivery time expired",
    "message expired",
    "could not be delivered within",
    "giving up",
    "given up",
    "delivery expired",
    "time limit",
    "timed out",
    "timeout",
];

fn contains_any(text: &str, list: &[&str]) -> bool {
    list.iter().any(|p| text.contains(p))
}

/// Reason suggested by the status code alone.
fn reason_from_status(status: &str) -> Option<Reason> {
    let mut it = status.split('.');
    let class = it.next()?;
    let subject = it.next()?;
    let detail = it.next()?;
    Some(match (subject, detail) {
        ("1", "1") | ("1", "6") => Reason::UserUnknown,
        ("1", "7") | ("1", "8") => Reason::Policy,
        ("1", "2") | ("1", "10") | ("4", "4") => Reason::HostUnknown,
        ("2", "2") => Reason::MailboxFull,
        ("2", "3") | ("3", "4") => Reason::MessageTooLarge,
        ("4", "7") => Reason::Expired,
        ("7", _) => Reason::Policy,
        _ if class == "4" => Reason::Transient,
        _ => return None,
    })
}

/// Whether a (lower-cased) diagnostic says the refusal came at the DATA
/// stage: "after end of data" (Exim), "in reply to end of DATA command"
/// (Postfix), "SMTP command DATA".
pub fn at_data_stage(lower: &str) -> bool {
    let text = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    text.contains("end of data")
        || text.contains("data command")
        || text.contains("smtp command data")
        || text.contains("after data")
}

/// "553 mx.example.com does not exist": what does not exist is a host name
/// (dotted, no `@`, alphabetic last label), not a mailbox.
fn host_does_not_exist(lower: &str) -> bool {
    lower.match_indices(" does not exist").any(|(i, _)| {
        let word = lower[..i]
            .rsplit(|c: char| c.is_whitespace() || c == '<' || c == '(')
            .next()
            .unwrap_or("")
            .trim_end_matches('>');
        !word.contains('@')
            && word.contains('.')
            && word
                .rsplit('.')
                .next()
                .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
    })
}

/// Classifies one failure from its status and diagnostic text.
pub fn reason(status: Option<&str>, diagnostic: &str) -> Reason {
    let text = diagnostic
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let by_status = status.and_then(reason_from_status);
    // A rejection of the envelope sender says nothing about the recipient.
    if text.contains("after mail from") && !contains_any(&text, HOST_UNKNOWN) {
        return Reason::Policy;
    }
    let strong = if contains_any(&text, MAILBOX_FULL[..MAILBOX_FULL.len() - 1].as_ref()) {
        Some(Reason::MailboxFull)
    } else if contains_any(&text, HOST_UNKNOWN) || host_does_not_exist(&text) {
        Some(Reason::HostUnknown)
    } else if contains_any(&text, USER_UNKNOWN) {
        Some(Reason::UserUnknown)
    } else if contains_any(&text, TOO_LARGE) {
        Some(Reason::MessageTooLarge)
    } else {
        None
    };
    // The recipient was accepted at RCPT TO and refused only once the
    // message itself had been sent (DATA): the refusal is about the message
    // (a per-recipient filter), not about the address, whatever the wording.
    if at_data_stage(&text) && matches!(strong.or(by_status), Some(Reason::UserUnknown)) {
        return Reason::Policy;
    }
    if let Some(r) = strong {
        // A policy status with user-unknown-like words ("address rejected")
        // stays a policy rejection unless the words are unambiguous.
        if r == Reason::UserUnknown
            && by_status == Some(Reason::Policy)
            && !text.contains("unknown")
            && !text.contains("no such")
        {
            return Reason::Policy;
        }
        return r;
    }
    if let Some(r) = by_status {
        return r;
    }
    if contains_any(&text, &MAILBOX_FULL[MAILBOX_FULL.len() - 1..]) {
        return Reason::MailboxFull;
    }
    if contains_any(&text, POLICY) {
        return Reason::Policy;
    }
    if contains_any(&text, EXPIRED) {
        return Reason::Expired;
    }
    match status.map(|s| s.as_bytes()[0]) {
        Some(b'4') => Reason::Transient,
        _ => match find_reply_code(&text) {
            Some(c) if c < 500 => Reason::Transient,
            _ => Reason::Other,
        },
    }
}

/// Hard means the address itself is bad.
/// A host that is unknown in a temporary (4.X.X) failure may be a passing
/// DNS problem, so only a permanent one is hard.
pub fn is_hard(reason: Reason, status: Option<&str>) -> bool {
    match reason {
        Reason::UserUnknown => true,
        Reason::HostUnknown => !status.is_some_and(|s| s.starts_with('4')),
        _ => false,
    }
}

/// A conservative status for a failure reported without one: only when the
/// reason is clear, with the class from the SMTP reply code or `permanent`.
pub fn derive_status(reason: Reason, diagnostic: &str, permanent: Option<bool>) -> Option<String> {
    let class = match find_reply_code(diagnostic) {
        Some(c) if c >= 500 => '5',
        Some(_) => '4',
        None => match permanent {
            Some(true) => '5',
            Some(false) => '4',
            None => return None,
        },
    };
    let sd = match reason {
        Reason::UserUnknown => "1.1",
        Reason::HostUnknown => "1.2",
        Reason::MailboxFull => "2.2",
        Reason::MessageTooLarge => "3.4",
        Reason::Expired => return Some("4.4.7".to_string()),
        _ => return None,
    };
    Some(format!("{class}.{sd}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases: &[(&str, &[&str])] = &[
            ("550 5.1.1 <a@b.c>: nope", &["5.1.1"]),
            ("host [192.0.2.20]: 554 5.7.0 Header error", &["5.7.0"]),
            ("(#4.4.3)I'm not", &["4.4.3"]),
            ("Exim 4.72 id 5.1.1.1", &[]),
            ("5.7.26 then 4.2.2.", &["5.7.26", "4.2.2"]),
            ("version 2.1.5-beta", &[]),
        ];
        for (t, want) in cases {
            assert_eq!(find_statuses(t), *want, "{t}");
        }
    }

    #[test]
    fn best() {
        assert_eq!(
            best_status(Some("5.0.0"), "smtp; 550 5.1.1 no such user").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            best_status(Some("5.0.0"), "smtp; 550 unknown").as_deref(),
            Some("5.0.0")
        );
        // The remote server's code, right after its reply code, wins.
        assert_eq!(
            best_status(Some("5.2.2"), "550 5.1.1").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            best_status(Some("5.2.2"), "quota: 5.1.1 seen").as_deref(),
            Some("5.2.2")
        );
        assert_eq!(best_status(None, "550-5.1.1 x").as_deref(), Some("5.1.1"));
        assert_eq!(
            best_status(Some("5.1.1"), "550 5.7.1 IP address blacklisted").as_deref(),
            Some("5.7.1")
        );
        assert_eq!(
            best_status(Some("4.4.7"), "550 5.7.1 blocked").as_deref(),
            Some("4.4.7")
        );
        assert_eq!(
            best_status(
                Some("5.0.0"),
                "5.1.0 - Unknown address error 550-'5.2.2 <a@b.c>... Mailbox Full'"
            )
            .as_deref(),
            Some("5.2.2")
        );
    }

    #[test]
    fn reasons() {
        let cases = [
            (Some("5.1.1"), "550 no such user", Reason::UserUnknown, true),
            (
                Some("5.7.1"),
                "550 5.7.1 rejected by DMARC policy",
                Reason::Policy,
                false,
            ),
            (
                Some("5.2.2"),
                "552 mailbox full",
                Reason::MailboxFull,
                false,
            ),
            (None, "552 Mailbox is full", Reason::MailboxFull, false),
            (
                None,
                "Host or domain name not found",
                Reason::HostUnknown,
                true,
            ),
            (
                Some("4.4.7"),
                "retry timeout exceeded",
                Reason::Expired,
                false,
            ),
            (
                Some("5.0.0"),
                "554 message contains spam",
                Reason::Policy,
                false,
            ),
            (Some("4.2.0"), "try later", Reason::Transient, false),
            (
                None,
                "553 mx.example.com does not exist",
                Reason::HostUnknown,
                true,
            ),
            (
                Some("5.1.1"),
                "550 : User unknown (in reply to end of DATA command)",
                Reason::Policy,
                false,
            ),
            (
                None,
                "SMTP error from remote mail server after end of data: 550 Unknown user",
                Reason::Policy,
                false,
            ),
            (
                None,
                "SMTP error from remote mail server after RCPT TO: 550 Unknown user",
                Reason::UserUnknown,
                true,
            ),
            (
                Some("5.3.4"),
                "message too big",
                Reason::MessageTooLarge,
                false,
            ),
        ];
        for (st, text, want, hard) in cases {
            let r = reason(st, text);
            assert_eq!(r, want, "{text}");
            assert_eq!(is_hard(r, st), hard, "{text}");
        }
        assert!(!Reason::Policy.counts_against_member());
        assert!(Reason::UserUnknown.counts_against_member());
    }

    #[test]
    fn derived() {
        assert_eq!(
            derive_status(Reason::UserUnknown, "550 user unknown", None).as_deref(),
            Some("5.1.1")
        );
        assert_eq!(derive_status(Reason::Policy, "550 spam", None), None);
        assert_eq!(
            derive_status(Reason::UserUnknown, "user unknown", None),
            None
        );
    }
}
