//! Automatic replies (RFC 3834 and common vacation conventions).

/// Values of one header field, trimmed and lower-cased.
fn values(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .collect()
}

/// Header-level evidence of an automatic reply. `headers` are lower-cased
/// names with raw values.
pub fn is_autoreply(headers: &[(String, String)]) -> bool {
    auto_replied(headers) || is_vacation(headers)
}

/// `Auto-Submitted: auto-replied`. RFC 3834 (section 5) asks every
/// automatic responder to set it, and delivery reports are responses too:
/// alone it says "automatic", not "vacation", so a non-delivery report
/// carrying it is still a bounce.
pub fn auto_replied(headers: &[(String, String)]) -> bool {
    values(headers, "auto-submitted")
        .iter()
        .any(|v| v.starts_with("auto-replied"))
}

/// Evidence specific to vacation and out-of-office responders: their own
/// headers, `Precedence: auto_reply` or a vacation subject.
pub fn is_vacation(headers: &[(String, String)]) -> bool {
    let get = |n: &str| values(headers, n);
    if !get("x-autoreply").is_empty()
        || !get("x-autorespond").is_empty()
        || !get("x-autoreply-from").is_empty()
    {
        return true;
    }
    if get("precedence").iter().any(|v| v == "auto_reply") {
        return true;
    }
    get("subject").iter().any(|s| subject_is_autoreply(s))
}

/// Subjects of vacation / out-of-office replies.
pub fn subject_is_autoreply(subject: &str) -> bool {
    let s = subject.to_lowercase();
    [
        "out of office",
        "out of the office",
        "auto reply",
        "autoreply",
        "auto-reply",
        "automatic reply",
        "auto response",
        "autoresponse",
        "vacation",
        "away from my mail",
        "abwesenheit",
        "absence",
        "自動応答",
        "自動返信",
        "不在",
    ]
    .iter()
    .any(|p| s.contains(p))
        || s.starts_with("auto:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: &str, v: &str) -> Vec<(String, String)> {
        vec![(n.to_string(), v.to_string())]
    }

    #[test]
    fn detects() {
        assert!(is_autoreply(&h(
            "auto-submitted",
            " auto-replied (vacation)"
        )));
        assert!(is_autoreply(&h("subject", "Out of Office: hello")));
        assert!(is_autoreply(&h("x-autoreply", "yes")));
        assert!(!is_autoreply(&h("auto-submitted", "auto-generated")));
        assert!(!is_autoreply(&h(
            "subject",
            "Undelivered Mail Returned to Sender"
        )));
    }
}
