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

/// Whether the status found at byte `i` of `text` comes right after a
/// 4xx/5xx reply code. Looks back at most a few bytes, so checking every
/// status of a text stays linear.
fn after_reply_code_at(text: &str, i: usize) -> bool {
    let window = &text.as_bytes()[i.saturating_sub(8)..i];
    let trimmed = window
        .iter()
        .rposition(|b| !matches!(b, b'\'' | b'"' | b' ' | b'-' | b'#'))
        .map_or(0, |p| p + 1);
    let seps = window.len() - trimmed;
    let before = &window[..trimmed];
    // One to four separators: "550 5.1.1", "550-'5.2.2", "550 #5.1.0".
    (1..=4).contains(&seps)
        && before.len() >= 3
        && std::str::from_utf8(&before[before.len() - 3..])
            .ok()
            .and_then(find_reply_code)
            .is_some()
        && (before.len() == 3 || !before[before.len() - 4].is_ascii_digit())
}

/// Every enhanced status code in `text`, in order, with its byte offset.
fn find_statuses_at(text: &str) -> Vec<(String, usize)> {
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
                out.push((st, i));
                i += len;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// All enhanced status codes in `text`, in order.
pub fn find_statuses(text: &str) -> Vec<String> {
    find_statuses_at(text).into_iter().map(|(s, _)| s).collect()
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
    let at = find_statuses_at(diagnostic);
    // Statuses of which some occurrence follows a reply code: one pass.
    let answered: std::collections::HashSet<&str> = at
        .iter()
        .filter(|(_, i)| after_reply_code_at(diagnostic, *i))
        .map(|(s, _)| s.as_str())
        .collect();
    let mut found: Vec<String> = at.iter().map(|(s, _)| s.clone()).collect();
    // A code right after an SMTP reply code ("550 5.2.2", "550-'5.2.2") is
    // the remote server's own answer: it goes first.
    if let Some(i) = found.iter().position(|s| answered.contains(s.as_str())) {
        let s = found.remove(i);
        found.insert(0, s);
    }
    // The remote server's own code wins over a Status field of the same
    // class that the reporting MTA wrote (Sendmail writes "5.1.1" for a
    // "550 5.7.1 ... blacklisted" reply).
    let remote = found
        .first()
        .filter(|s| answered.contains(s.as_str()) && !is_unspecific(s))
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
    // Gmail's wording for a mailbox it could not find.
    "address not found",
    "address couldn't be found",
    "address could not be found",
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
    // Exim's wording for a null MX (RFC 7505): the domain accepts no mail.
    "indicated no smtp service",
    "hostname lookup failed",
    "dns error",
    "domain is not reachable",
];

/// A name server that failed to answer, as opposed to one that answered
/// that the name does not exist (RFC 1035: SERVFAIL, not NXDOMAIN): the
/// lookup may well succeed later, so it says nothing about the domain.
/// Postfix's wordings of its resolver's NO_RECOVERY and TRY_AGAIN,
/// getaddrinfo's EAI_AGAIN, Exim's unfinished host lookup.
const DNS_FAILURE: &[&str] = &[
    "malformed or unexpected name server reply",
    "host not found, try again",
    "temporary failure in name resolution",
    "servfail",
    "host lookup did not complete",
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
    "too many",
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

/// What a failure text says, as far as the classifier cares. The signals
/// of two texts combine ([`Signals::merge`]) as those of the two texts
/// joined would, so a report's general wording is read once and applied to
/// every recipient whose own paragraph gives no code (linear, not
/// recipients x report length).
#[derive(Debug, Clone, Copy, Default)]
pub struct Signals {
    /// "after MAIL FROM": the sender, not the recipient, was refused.
    after_mail_from: bool,
    /// Wording of a full mailbox (the strong phrases).
    mailbox_full: bool,
    /// Wording of an unknown host or domain.
    host_unknown_words: bool,
    /// A name server failed to answer: no verdict on the domain.
    dns_failure: bool,
    /// "mx.example.com does not exist": a host, not a mailbox.
    host_does_not_exist: bool,
    /// Wording of an unknown user or mailbox.
    user_unknown: bool,
    /// Wording of a message too large.
    too_large: bool,
    /// The refusal came after DATA (about the message, not the address).
    data_stage: bool,
    /// "unknown" or "no such": unambiguous words for a missing mailbox.
    says_unknown: bool,
    /// A bare "quota" (weaker than the full-mailbox phrases).
    quota: bool,
    /// Wording of policy, spam, content or blocking.
    policy: bool,
    /// Wording of a message given up on after retries.
    expired: bool,
    /// The first SMTP reply code of the text.
    reply_code: Option<u16>,
}

impl Signals {
    /// Reads the signals of one text.
    pub fn of(diagnostic: &str) -> Self {
        let text = diagnostic
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        Signals {
            after_mail_from: text.contains("after mail from"),
            mailbox_full: contains_any(&text, &MAILBOX_FULL[..MAILBOX_FULL.len() - 1]),
            host_unknown_words: contains_any(&text, HOST_UNKNOWN),
            dns_failure: contains_any(&text, DNS_FAILURE),
            host_does_not_exist: host_does_not_exist(&text),
            user_unknown: contains_any(&text, USER_UNKNOWN),
            too_large: contains_any(&text, TOO_LARGE),
            data_stage: at_data_stage(&text),
            says_unknown: text.contains("unknown") || text.contains("no such"),
            quota: contains_any(&text, &MAILBOX_FULL[MAILBOX_FULL.len() - 1..]),
            policy: contains_any(&text, POLICY),
            expired: contains_any(&text, EXPIRED),
            reply_code: find_reply_code(&text),
        }
    }

    /// The signals of `self`'s text followed by `other`'s.
    pub fn merge(self, other: Signals) -> Self {
        Signals {
            after_mail_from: self.after_mail_from || other.after_mail_from,
            mailbox_full: self.mailbox_full || other.mailbox_full,
            host_unknown_words: self.host_unknown_words || other.host_unknown_words,
            dns_failure: self.dns_failure || other.dns_failure,
            host_does_not_exist: self.host_does_not_exist || other.host_does_not_exist,
            user_unknown: self.user_unknown || other.user_unknown,
            too_large: self.too_large || other.too_large,
            data_stage: self.data_stage || other.data_stage,
            says_unknown: self.says_unknown || other.says_unknown,
            quota: self.quota || other.quota,
            policy: self.policy || other.policy,
            expired: self.expired || other.expired,
            reply_code: self.reply_code.or(other.reply_code),
        }
    }

    /// The first SMTP reply code of the text(s).
    pub fn reply_code(&self) -> Option<u16> {
        self.reply_code
    }
}

/// Classifies one failure from its status and diagnostic text.
pub fn reason(status: Option<&str>, diagnostic: &str) -> Reason {
    let mut sig = Signals::of(diagnostic);
    // A security or policy status (RFC 3463 X.7.X) that the remote server
    // itself gave, right after its reply code: only the remote's own words
    // can say the mailbox does not exist, not the reporting MTA's paraphrase
    // around them ("5.1.0 - Unknown address error 550-'5.7.1 ... Access
    // denied'").
    if let Some(reply) = status
        .filter(|s| s.split('.').nth(1) == Some("7"))
        .and_then(|s| remote_reply(diagnostic, s))
    {
        if !Signals::of(reply).user_unknown {
            sig.user_unknown = false;
            sig.says_unknown = false;
        }
    }
    reason_of(status, &sig)
}

/// The remote server's reply in `diagnostic`: the text from `status`
/// where it follows an SMTP reply code.
fn remote_reply<'a>(diagnostic: &'a str, status: &str) -> Option<&'a str> {
    find_statuses_at(diagnostic)
        .into_iter()
        .find(|(s, i)| s == status && after_reply_code_at(diagnostic, *i))
        .map(|(_, i)| &diagnostic[i..])
}

/// Classifies one failure from its status and the signals of its text.
pub fn reason_of(status: Option<&str>, sig: &Signals) -> Reason {
    let mut by_status = status.and_then(reason_from_status);
    // A rejection of the envelope sender says nothing about the recipient.
    if sig.after_mail_from && !sig.host_unknown_words {
        return Reason::Policy;
    }
    // A name server that failed to answer said nothing about the domain:
    // neither its routing status (RFC 3463 X.4.4 "unable to route") nor
    // the words around it ("Name service error ... Host not found, try
    // again") make the host unknown.
    if sig.dns_failure && by_status == Some(Reason::HostUnknown) {
        by_status = None;
    }
    let host_unknown = (sig.host_unknown_words || sig.host_does_not_exist) && !sig.dns_failure;
    let strong = if sig.mailbox_full {
        Some(Reason::MailboxFull)
    } else if host_unknown {
        Some(Reason::HostUnknown)
    } else if sig.user_unknown {
        Some(Reason::UserUnknown)
    } else if sig.too_large {
        Some(Reason::MessageTooLarge)
    } else {
        None
    };
    // The recipient was accepted at RCPT TO and refused only once the
    // message itself had been sent (DATA): the refusal is about the message
    // (a per-recipient filter), not about the address, whatever the wording.
    if sig.data_stage && matches!(strong.or(by_status), Some(Reason::UserUnknown)) {
        return Reason::Policy;
    }
    if let Some(r) = strong {
        // A policy status with user-unknown-like words ("address rejected")
        // stays a policy rejection unless the words are unambiguous.
        if r == Reason::UserUnknown && by_status == Some(Reason::Policy) && !sig.says_unknown {
            return Reason::Policy;
        }
        return r;
    }
    // A status of a missing mailbox given with words of policy, content or
    // spam ("550 5.1.1 Refused due to recipient preferences") is a refusal
    // of the message: soft, as the text does not say the mailbox is gone.
    if by_status == Some(Reason::UserUnknown) && sig.policy {
        return Reason::Policy;
    }
    if let Some(r) = by_status {
        return r;
    }
    if sig.quota {
        return Reason::MailboxFull;
    }
    if sig.policy {
        return Reason::Policy;
    }
    if sig.expired {
        return Reason::Expired;
    }
    match status.map(|s| s.as_bytes()[0]) {
        Some(b'4') => Reason::Transient,
        _ => match sig.reply_code {
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
    derive_status_from(reason, find_reply_code(diagnostic), permanent)
}

/// [`derive_status`] from the text's first reply code, already found.
pub fn derive_status_from(
    reason: Reason,
    reply_code: Option<u16>,
    permanent: Option<bool>,
) -> Option<String> {
    let class = match reply_code {
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
                Some("5.7.1"),
                "5.1.0 - Unknown address error 550-'5.7.1 <a@b.c>... Access denied'",
                Reason::Policy,
                false,
            ),
            (
                Some("5.7.1"),
                "550 5.7.1 <a@b.c>: Recipient address rejected: User unknown",
                Reason::UserUnknown,
                true,
            ),
            // A name server's failure is not an unknown domain.
            (
                Some("5.4.4"),
                "Name service error for name=example.org type=MX: Malformed or unexpected name server reply",
                Reason::Other,
                false,
            ),
            (
                Some("4.4.3"),
                "Host or domain name not found. Name service error for name=example.org type=A: Host not found, try again",
                Reason::Transient,
                false,
            ),
            (
                Some("5.4.4"),
                "Host or domain name not found. Name service error for name=example.org type=A: Host not found",
                Reason::HostUnknown,
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
