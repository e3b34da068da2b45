//! Bounce parsing: turns a delivery report, a plain-text bounce, an
//! auto-reply or a feedback report into a [`BounceReport`].
//!
//! * [`dsn`]: RFC 3464 `multipart/report; report-type=delivery-status`;
//! * [`text`]: the plain-text formats of MTAs without (usable) DSNs;
//! * [`arf`]: RFC 5965 feedback reports;
//! * [`autoreply`]: RFC 3834 auto-replies and vacation messages;
//! * [`classify`]: status codes, reasons, hard/soft.

pub mod addr;
pub mod arf;
pub mod autoreply;
pub mod classify;
pub mod dsn;
pub mod fields;
pub mod handler;
pub mod report;
pub mod scope;
pub mod score;
pub mod ses;
pub mod text;

use mail_parser::{MimeHeaders, PartType};

pub use report::{BounceReport, Kind, Reason, RecipientDetail};
pub use scope::{scope_key, BounceScope};
pub use score::{BounceState, PolicyShare, PostBounces, Scoring};

/// The parser's per-message budget, in bytes: it reads at most this much
/// of a message and decides on what it saw. A report's own parts (its
/// text, its `message/delivery-status`, RFC 3464 section 2) come before the
/// returned message and fit in a few kilobytes; anyone can mail
/// `LIST-bounces@`, so a 25 MiB message must cost no more than this.
pub const MAX_EXAMINED_BYTES: usize = 1 << 20;

/// The parser's per-message budget, in lines (see [`MAX_EXAMINED_BYTES`]).
pub const MAX_EXAMINED_LINES: usize = 20_000;

/// Parses one raw message within the budget ([`MAX_EXAMINED_BYTES`],
/// [`MAX_EXAMINED_LINES`]); its work is linear in what it examines. Never
/// panics, whatever the input.
pub fn parse(raw: &[u8]) -> BounceReport {
    let raw = fields::clip(raw, MAX_EXAMINED_BYTES, MAX_EXAMINED_LINES);
    std::panic::catch_unwind(|| parse_inner(raw, 0))
        .unwrap_or_else(|_| BounceReport::not_bounce(Kind::NotBounce))
}

/// What the MIME walk collects from a message.
#[derive(Default)]
struct Collected {
    /// Top-level headers: lower-cased name, raw value.
    headers: Vec<(String, String)>,
    report_type: Option<String>,
    /// Human-readable parts of the report (not of an attached message).
    texts: Vec<String>,
    /// `message/delivery-status` contents.
    dsn: Vec<String>,
    /// `message/feedback-report` contents.
    feedback: Option<String>,
    /// To addresses of the attached original message (or its headers).
    attached_to: Vec<String>,
    /// Recipient named by a complaint loop's header in the attached message
    /// (`X-HmXmrOriginalRecipient`, Microsoft's JMRP reports).
    complained_rcpt: Option<String>,
    /// Attached messages that are themselves delivery reports (a bounce
    /// forwarded inside another bounce).
    nested_reports: Vec<Vec<u8>>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&fields::normalize_newlines(b)).into_owned()
}

fn addrs_of(value: &str) -> Vec<String> {
    addr::find_all(value).into_iter().map(|f| f.addr).collect()
}

fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let lower = html.to_ascii_lowercase();
    for (i, c) in html.char_indices() {
        match c {
            '<' => {
                in_tag = true;
                let t = &lower[i..];
                if t.starts_with("<br")
                    || t.starts_with("<p")
                    || t.starts_with("<div")
                    || t.starts_with("<tr")
                    || t.starts_with("</p")
                    || t.starts_with("</div")
                {
                    out.push('\n');
                }
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

fn collect(raw: &[u8]) -> Collected {
    let mut c = Collected::default();
    let Some(msg) = crate::mime::parse(raw) else {
        c.texts.push(lossy(raw));
        return c;
    };
    c.headers = msg
        .headers_raw()
        .map(|(n, v)| (n.to_ascii_lowercase(), unfold(v)))
        .collect();
    c.report_type = msg
        .content_type()
        .and_then(|ct| ct.attribute("report-type"))
        .map(|s| s.to_ascii_lowercase());
    let mut html = Vec::new();
    for part in msg.parts.iter() {
        let (ctype, sub) = part
            .content_type()
            .map(|ct| {
                (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("text".into(), "plain".into()));
        match &part.body {
            PartType::Multipart(_) => {}
            PartType::Message(m) => {
                if c.attached_to.is_empty() {
                    if let Some(to) = m.header_raw("To") {
                        c.attached_to = addrs_of(to);
                    }
                }
                if m.content_type()
                    .and_then(|ct| ct.attribute("report-type"))
                    .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
                {
                    c.nested_reports.push(m.raw_message().to_vec());
                }
                if let Some(r) = m.header_raw("X-HmXmrOriginalRecipient") {
                    c.complained_rcpt = addrs_of(r).into_iter().next();
                }
            }
            PartType::Text(t) => {
                if sub == "rfc822-headers" || (ctype == "message" && sub == "rfc822") {
                    if c.attached_to.is_empty() {
                        c.attached_to = attached_to_from_headers(t);
                    }
                } else if sub == "delivery-status" || sub == "global-delivery-status" {
                    c.dsn.push(lossy(t.as_bytes()));
                } else if sub == "feedback-report" {
                    c.feedback = Some(lossy(t.as_bytes()));
                } else {
                    c.texts.push(lossy(t.as_bytes()));
                }
            }
            PartType::Html(h) => html.push(strip_html(&lossy(h.as_bytes()))),
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                if sub == "delivery-status" || sub == "global-delivery-status" {
                    c.dsn.push(lossy(b));
                } else if sub == "feedback-report" {
                    c.feedback = Some(lossy(b));
                } else if (sub == "rfc822-headers" || (ctype == "message" && sub == "rfc822"))
                    && c.attached_to.is_empty()
                {
                    c.attached_to = attached_to_from_headers(&lossy(b));
                }
            }
        }
    }
    if c.texts.iter().all(|t| t.trim().is_empty()) {
        c.texts.extend(html);
    }
    // A multipart whose boundary parameter is broken (an unfolded
    // continuation line, say) yields no parts at all: read its raw body.
    if c.texts.iter().all(|t| t.trim().is_empty()) && c.dsn.is_empty() && c.feedback.is_none() {
        let body = raw
            .get(msg.root_part().raw_body_offset() as usize..)
            .unwrap_or(&[]);
        c.texts.push(strip_mime_framing(&lossy(body)));
    }
    c
}

/// Drops MIME boundary lines and the part headers after each of them from
/// a raw multipart body, leaving the parts' contents.
fn strip_mime_framing(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut in_headers = false;
    for line in body.split_inclusive('\n') {
        let t = line.trim_end();
        if t.starts_with("--") && t.len() > 2 && !t.contains(char::is_whitespace) {
            in_headers = true;
            continue;
        }
        if in_headers {
            if t.is_empty() {
                in_headers = false;
            }
            continue;
        }
        out.push_str(line);
    }
    out
}

fn unfold(v: &str) -> String {
    v.split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn attached_to_from_headers(text: &str) -> Vec<String> {
    let blocks = fields::parse_blocks(
        &fields::normalize_newlines(text.as_bytes())
            .iter()
            .map(|&b| b as char)
            .collect::<String>(),
    );
    blocks
        .first()
        .and_then(|b| fields::get(b, "to"))
        .map(addrs_of)
        .unwrap_or_default()
}

fn header<'a>(c: &'a Collected, name: &str) -> &'a str {
    c.headers
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

fn parse_inner(raw: &[u8], depth: u8) -> BounceReport {
    let norm = fields::normalize_newlines(raw);
    let c = collect(&norm);
    let context = c.texts.join("\n");

    // Feedback reports.
    if c.report_type.as_deref() == Some("feedback-report") || c.feedback.is_some() {
        let details = arf::parse(c.feedback.as_deref(), &c.attached_to);
        return BounceReport::from_details(Kind::Feedback, details);
    }

    // A feedback report whose RFC 5965 fields a broken generator wrote
    // into its text instead of a `message/feedback-report` part (it may
    // also carry `Auto-Submitted: auto-replied`): still a complaint, not
    // an auto-reply.
    if c.dsn.is_empty() && has_inline_feedback(&context) {
        let details = arf::parse(Some(&context), &c.attached_to);
        return BounceReport::from_details(Kind::Feedback, details);
    }

    // Complaint loops that attach the message with the recipient in a header.
    if let Some(r) = &c.complained_rcpt {
        if c.dsn.is_empty() {
            return BounceReport::from_details(
                Kind::Feedback,
                arf::parse(None, std::slice::from_ref(r)),
            );
        }
    }

    // Amazon SES JSON notifications.
    if let Some((kind, details)) = ses::parse(&context) {
        if kind == Kind::DeliveryNotice || !details.is_empty() {
            return BounceReport::from_details(kind, details);
        }
    }

    // RFC 3464 reports, in a MIME part or (from broken MTAs) inline text.
    let mut dsn_text = c.dsn.join("\n\n");
    if dsn_text.is_empty() && has_inline_dsn(&context) {
        dsn_text = context.clone();
    }
    if !dsn_text.is_empty() {
        if let Some((kind, details)) = dsn::parse(&dsn_text, &context) {
            if kind == Kind::DeliveryNotice || !details.is_empty() {
                return BounceReport::from_details(kind, details);
            }
        }
    }

    // Plain-text bounces.
    let subject = header(&c, "subject");
    let from = header(&c, "from");
    let autoreply = autoreply::is_autoreply(&c.headers);
    let bounce_like = text::looks_like_bounce(&context, subject, from);
    // RFC 3834's `Auto-Submitted: auto-replied` is also set by delivery
    // report generators: only vacation evidence (or the header without a
    // report's wording) makes an auto-reply.
    let reported_failure = from.to_ascii_lowercase().contains("mailer-daemon")
        || text::looks_like_bounce("", subject, "")
        || (!autoreply::is_vacation(&c.headers) && bounce_like);
    if autoreply && !reported_failure {
        return BounceReport::not_bounce(Kind::AutoReply);
    }
    if bounce_like {
        let mut exclude = Vec::new();
        for name in ["from", "to", "return-path", "sender", "reply-to", "cc"] {
            for (n, v) in &c.headers {
                if n == name {
                    exclude.extend(addrs_of(v));
                }
            }
        }
        if let Some((kind, details)) = text::parse(&context, &exclude) {
            return BounceReport::from_details(kind, details);
        }
        if depth < 2 {
            for nested in &c.nested_reports {
                let r = parse_inner(nested, depth + 1);
                if !r.recipients.is_empty() {
                    return r;
                }
            }
        }
    }
    // `X-Failed-Recipients` is the header in which the reporting MTA itself
    // (Exim, Google's mailers and others) lists the addresses it failed to
    // deliver to. It is only a fallback, for reports whose text names no
    // failed address: a group system's rejection written in prose ("the
    // group you tried to contact may not exist"), an Exim redirection
    // ("save to ..."), or a report whose failed address is also its own
    // To. Only a report from a mail system carries it: an ordinary message
    // with such a header is not trusted.
    if bounce_like || !c.dsn.is_empty() {
        let named: Vec<String> = c
            .headers
            .iter()
            .filter(|(n, _)| n == "x-failed-recipients")
            .flat_map(|(_, v)| addrs_of(v))
            .filter(|a| !addr::is_system_local(a))
            .collect();
        if let Some((kind, details)) = text::parse_named(&context, &named) {
            return BounceReport::from_details(kind, details);
        }
    }
    BounceReport::not_bounce(if autoreply {
        Kind::AutoReply
    } else {
        Kind::NotBounce
    })
}

/// Whether a text carries the fields RFC 5965 (section 3.1) requires of
/// every feedback report, `Feedback-Type`, `User-Agent` and `Version`, each
/// at the start of a line.
fn has_inline_feedback(text: &str) -> bool {
    let (mut kind, mut agent, mut version) = (false, false, false);
    for line in text.lines() {
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        kind |= name.eq_ignore_ascii_case("feedback-type");
        agent |= name.eq_ignore_ascii_case("user-agent");
        version |= name.eq_ignore_ascii_case("version");
    }
    kind && agent && version
}

/// Whether a text carries RFC 3464 per-recipient fields inline.
fn has_inline_dsn(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("\nfinal-recipient:") || lower.contains("\noriginal-recipient:")
}
