//! Notices: short RFC 5322 text messages listrelay itself sends to people
//! (bounce warnings, owner alerts…), composed from a named template
//! ([`crate::templates`]) and handed to the MTA through the re-injection
//! client, from `LIST-bounces@DOMAIN` so that a notice that bounces comes
//! back to the bounce handler (never from the null sender), DKIM-signed with
//! the list domain's keys when it has some.

use std::sync::Arc;

use async_trait::async_trait;

use crate::address::Suffix;
use crate::model::List;
use crate::smtp::{self, Envelope, RcptStatus};
use crate::templates::Templates;

/// Hands a composed message to the MTA. The re-injection client is one;
/// tests use a recorder.
#[async_trait]
pub trait Outbox: Send + Sync {
    async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), String>;
}

#[async_trait]
impl Outbox for smtp::Client {
    async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), String> {
        let outcome = smtp::Client::send(self, envelope, &[message])
            .await
            .map_err(|e| e.to_string())?;
        let refused: Vec<String> = envelope
            .rcpts
            .iter()
            .zip(&outcome.rcpts)
            .filter(|(_, s)| !matches!(s, RcptStatus::Delivered(_)))
            .map(|(r, s)| format!("{r}: {}", s.reply()))
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(refused.join("; "))
        }
    }
}

/// An RFC 5322 date for `secs` since the epoch, in UTC.
pub fn rfc5322_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = crate::clock::day_of(secs) as i64;
    let rem = secs % crate::clock::DAY;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days.rem_euclid(7)) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A text notice, ready to be composed.
#[derive(Debug, Clone)]
pub struct Notice {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    /// Where replies go (e.g. a confirmation address).
    pub reply_to: Option<String>,
    /// A message attached as `message/rfc822` (e.g. a held post).
    pub attachment: Option<Vec<u8>>,
}

/// Optional parts of a notice beyond its template.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// `From:` instead of `LIST-owner`.
    pub from: Option<String>,
    pub reply_to: Option<String>,
    pub attachment: Option<Vec<u8>>,
}

impl Notice {
    /// The message: headers, an empty line, the body with CRLF line ends.
    pub fn compose(&self, hostname: &str, now: u64) -> Vec<u8> {
        let id = format!("{}.notice@{hostname}", crate::store::new_id());
        let subject: String = self.subject.chars().filter(|c| !c.is_control()).collect();
        let mut m = format!(
            "From: {}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <{id}>\r\n",
            self.from,
            self.to.join(", "),
            rfc5322_date(now)
        );
        if let Some(r) = &self.reply_to {
            let r: String = r.chars().filter(|c| !c.is_control()).collect();
            m.push_str(&format!("Reply-To: {r}\r\n"));
        }
        m.push_str("MIME-Version: 1.0\r\n");
        let text_headers =
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n";
        let boundary = format!("=_listrelay_{:016x}", rand::random::<u64>());
        match &self.attachment {
            None => m.push_str(text_headers),
            Some(_) => m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n"
            )),
        }
        m.push_str("Auto-Submitted: auto-generated\r\nPrecedence: list\r\n\r\n");
        if self.attachment.is_some() {
            m.push_str(&format!("--{boundary}\r\n{text_headers}\r\n"));
        }
        for line in self.body.lines() {
            m.push_str(line);
            m.push_str("\r\n");
        }
        let mut m = m.into_bytes();
        if let Some(a) = &self.attachment {
            m.extend_from_slice(
                format!(
                    "\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\
                     Content-Disposition: inline\r\n\r\n"
                )
                .as_bytes(),
            );
            // CRLF line ends throughout, whatever the post had.
            for line in a.split_inclusive(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                m.extend_from_slice(line);
                m.extend_from_slice(b"\r\n");
            }
            m.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        }
        m
    }
}

/// Sends template-based notices on behalf of lists.
#[derive(Clone)]
pub struct Notifier {
    pub outbox: Arc<dyn Outbox>,
    pub templates: Templates,
    pub hostname: String,
}

impl Notifier {
    pub fn new(outbox: Arc<dyn Outbox>, templates: Templates, hostname: &str) -> Self {
        Notifier {
            outbox,
            templates,
            hostname: hostname.to_string(),
        }
    }

    /// Renders `template` for `list` and sends it to `to`, from `LIST-owner`
    /// with envelope sender `LIST-bounces`. `list`, `owner` and `list_id` are
    /// always available as placeholders.
    pub async fn send(
        &self,
        list: &List,
        to: &[String],
        template: &str,
        vars: &[(&str, &str)],
        now: u64,
    ) -> Result<(), String> {
        self.send_with(list, to, template, vars, now, Extras::default())
            .await
    }

    /// [`Notifier::send`] with another From, a Reply-To or an attachment.
    pub async fn send_with(
        &self,
        list: &List,
        to: &[String],
        template: &str,
        vars: &[(&str, &str)],
        now: u64,
        extras: Extras,
    ) -> Result<(), String> {
        if to.is_empty() {
            return Ok(());
        }
        let (address, owner, list_id) = (
            list.address.to_string(),
            list.suffix_address(Suffix::Owner),
            list.list_id(),
        );
        let mut all = vec![
            ("list", address.as_str()),
            ("owner", owner.as_str()),
            ("list_id", list_id.as_str()),
        ];
        all.extend_from_slice(vars);
        let r = self
            .templates
            .render(template, Some(list), &all)
            .ok_or_else(|| format!("no template {template:?}"))?;
        let notice = Notice {
            from: extras.from.unwrap_or(owner.clone()),
            to: to.to_vec(),
            subject: r.subject,
            body: r.body,
            reply_to: extras.reply_to,
            attachment: extras.attachment,
        };
        let envelope = Envelope {
            mail_from: list.suffix_address(Suffix::Bounces),
            rcpts: to.to_vec(),
            xverp: None,
        };
        let mut message = notice.compose(&self.hostname, now);
        // Signed with the list domain's DKIM keys, like the list's copies.
        if let Some(signer) = crate::auth::keydir::site_signer(list.address.domain()) {
            match signer.sign_message(&message, now) {
                Ok(mut signed) => {
                    signed.extend_from_slice(&message);
                    message = signed;
                }
                Err(e) => {
                    tracing::warn!(list = %list.address, error = %e, "DKIM signing of a notice failed; it goes out unsigned")
                }
            }
        }
        self.outbox.send(&envelope, &message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_709_210_096),
            "Thu, 29 Feb 2024 12:34:56 +0000"
        );
    }

    #[test]
    fn composes_an_auto_generated_message() {
        let n = Notice {
            from: "dev-owner@x.org".into(),
            to: vec!["bob@y.org".into()],
            subject: "Hi\r\nBcc: evil".into(),
            body: "line 1\nline 2\n".into(),
            reply_to: None,
            attachment: None,
        };
        let m = String::from_utf8(n.compose("h.x.org", 0)).unwrap();
        assert!(
            m.starts_with("From: dev-owner@x.org\r\nTo: bob@y.org\r\nSubject: HiBcc: evil\r\n"),
            "{m}"
        );
        assert!(m.contains("\r\nAuto-Submitted: auto-generated\r\n"));
        assert!(m.contains("\r\nPrecedence: list\r\n"));
        assert!(m.contains("@h.x.org>\r\n"));
        assert!(m.ends_with("\r\n\r\nline 1\r\nline 2\r\n"));
    }

    #[test]
    fn attaches_a_message_and_sets_reply_to() {
        let n = Notice {
            from: "dev-owner@x.org".into(),
            to: vec!["mod@y.org".into()],
            subject: "held".into(),
            body: "see below".into(),
            reply_to: Some("dev-confirm+t@x.org".into()),
            attachment: Some(b"From: a@b.org\nSubject: s\n\nbody\n".to_vec()),
        };
        let m = String::from_utf8(n.compose("h.x.org", 0)).unwrap();
        assert!(m.contains("\r\nReply-To: dev-confirm+t@x.org\r\n"));
        assert!(m.contains("Content-Type: multipart/mixed; boundary="));
        assert!(m.contains(
            "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\nFrom: a@b.org\r\nSubject: s\r\n\r\nbody\r\n"
        ));
        let parsed = mail_parser::MessageParser::new()
            .parse(m.as_bytes())
            .unwrap();
        assert_eq!(parsed.attachment_count(), 1);
    }
}
