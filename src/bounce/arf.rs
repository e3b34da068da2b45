//! ARF feedback reports (RFC 5965, `report-type=feedback-report`).

use super::addr;
use super::fields;
use super::report::{Reason, RecipientDetail};

/// Builds the feedback detail: the complained-about address is the
/// report's Original-Rcpt-To, else the To of the attached message.
pub fn parse(report: Option<&str>, attached_to: &[String]) -> Vec<RecipientDetail> {
    let mut rcpts = Vec::new();
    let mut feedback_type = None;
    if let Some(r) = report {
        for block in fields::parse_blocks(r) {
            for (n, v) in &block {
                if n == "original-rcpt-to" {
                    if let Some(a) = addr::normalize(fields::strip_type(v)) {
                        rcpts.push(a);
                    }
                } else if n == "feedback-type" && feedback_type.is_none() {
                    feedback_type = Some(v.clone());
                }
            }
        }
    }
    if rcpts.is_empty() {
        rcpts.extend(attached_to.iter().cloned());
    }
    rcpts
        .into_iter()
        .map(|r| RecipientDetail {
            recipient: r,
            original_recipient: None,
            action: None,
            status: None,
            diagnostic: feedback_type.clone(),
            remote_mta: None,
            reason: Reason::Feedback,
            hard: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_rcpt_to_wins() {
        let d = parse(
            Some("Feedback-Type: abuse\nOriginal-Rcpt-To: <a@Example.com>\n"),
            &["b@example.com".into()],
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].recipient, "a@example.com");
        let d = parse(Some("Feedback-Type: abuse\n"), &["b@example.com".into()]);
        assert_eq!(d[0].recipient, "b@example.com");
    }
}
