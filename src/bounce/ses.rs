//! Amazon SES event notifications: a JSON object (`notificationType`
//! Bounce, Complaint or Delivery) in the body of a plain message.

use serde_json::Value;

use super::addr;
use super::classify;
use super::report::{Kind, Reason, RecipientDetail};

/// Finds a JSON notification in `text` and turns it into a result.
pub fn parse(text: &str) -> Option<(Kind, Vec<RecipientDetail>)> {
    let start = text.find("{\"notificationType\"")?;
    let first = |s: &str| {
        serde_json::Deserializer::from_str(s)
            .into_iter::<Value>()
            .next()?
            .ok()
    };
    // Some relays fold the long JSON line: undo "\n " folds if needed.
    let v = first(&text[start..]).or_else(|| first(&text[start..].replace("\n ", "")))?;
    let kind = v.get("notificationType")?.as_str()?.to_ascii_lowercase();
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match kind.as_str() {
        "bounce" => {
            let b = v.get("bounce")?;
            let permanent = str_of(b, "bounceType").map(|t| t.eq_ignore_ascii_case("permanent"));
            let mut details = Vec::new();
            for r in b.get("bouncedRecipients")?.as_array()? {
                let Some(rcpt) = str_of(r, "emailAddress").and_then(|a| addr::normalize(&a)) else {
                    continue;
                };
                let diagnostic = str_of(r, "diagnosticCode");
                let diag = diagnostic.clone().unwrap_or_default();
                let given = str_of(r, "status").and_then(|s| classify::status_from_field(&s));
                let mut status = classify::best_status(given.as_deref(), &diag);
                let reason = classify::reason(status.as_deref(), &diag);
                if status.is_none() {
                    status = classify::derive_status(reason, &diag, permanent);
                }
                let hard = classify::is_hard(reason, status.as_deref());
                details.push(RecipientDetail {
                    recipient: rcpt,
                    original_recipient: None,
                    action: str_of(r, "action"),
                    status,
                    diagnostic,
                    remote_mta: None,
                    reason,
                    hard,
                });
            }
            Some((Kind::Bounce, details))
        }
        "complaint" => {
            let c = v.get("complaint")?;
            let details = c
                .get("complainedRecipients")?
                .as_array()?
                .iter()
                .filter_map(|r| str_of(r, "emailAddress").and_then(|a| addr::normalize(&a)))
                .map(|rcpt| RecipientDetail {
                    recipient: rcpt,
                    original_recipient: None,
                    action: None,
                    status: None,
                    diagnostic: str_of(c, "complaintFeedbackType"),
                    remote_mta: None,
                    reason: Reason::Feedback,
                    hard: false,
                })
                .collect();
            Some((Kind::Feedback, details))
        }
        "delivery" => Some((Kind::DeliveryNotice, Vec::new())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications() {
        let b = r#"x {"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"a@example.com","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}]}} trailing"#;
        let (k, d) = parse(b).unwrap();
        assert_eq!(k, Kind::Bounce);
        assert_eq!(d[0].recipient, "a@example.com");
        assert!(d[0].hard);
        let c = r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"c@example.com"}]}}"#;
        assert_eq!(parse(c).unwrap().0, Kind::Feedback);
        assert_eq!(
            parse(r#"{"notificationType":"Delivery"}"#).unwrap().0,
            Kind::DeliveryNotice
        );
        assert_eq!(parse("{\"notificationType\": broken"), None);
    }
}
