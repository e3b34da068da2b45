//! Intake: what happens to a message between the LMTP session and the store.
//! It resolves each recipient to a list handler, gives a post without a
//! Message-ID one, applies the list's duplicate policy, refuses loops, and
//! stores one message per accepted recipient in a single group commit.

use std::borrow::Cow;
use std::sync::Arc;

use mail_parser::parsers::MessageStream;
use mail_parser::MessageParser;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::address::{self, Address, ProbeLeg, Route, Suffix};
use crate::check::probe::{ProbeBook, Stage};
use crate::clock::now;
use crate::model::{DuplicatePolicy, List};
use crate::store::{
    new_id, AcceptOutcome, ClientInfo, DedupKey, MessageMeta, MessageState, NewMessage, Store,
    StoreError,
};

/// A recipient that intake accepted at RCPT time.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// As the MTA sent it.
    pub address: String,
    /// The list and handler it names.
    pub route: Route,
    pub list: List,
}

/// Why a recipient was refused at RCPT time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptRefusal {
    BadAddress(String),
    UnknownDomain(String),
    UnknownAddress(String),
    /// The store could not be read: try again later.
    Unavailable(String),
}

/// What became of one recipient after the message data arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        id: String,
    },
    Redelivery {
        existing: String,
    },
    DuplicateDiscarded {
        existing: String,
        message_id: String,
    },
    DuplicateRejected {
        existing: String,
        message_id: String,
    },
    /// The post already carries this list's List-Id.
    Loop,
    /// A probe of `listrelay check mta`: noted, not stored.
    Probe,
    /// Storage failed; `disk_full` tells the MTA it is a space problem.
    TempFail {
        reason: String,
        disk_full: bool,
    },
}

pub struct Intake {
    store: Arc<dyn Store>,
    delimiter: char,
    /// Woken when a post is stored, so fan-out plans it at once.
    posted: Option<Arc<Notify>>,
    /// The probes of `listrelay check mta`, noted instead of stored; without
    /// it (a process with no admin socket) probe addresses are unknown.
    probes: Option<Arc<ProbeBook>>,
}

/// The headers intake looks at, read once per message.
struct Headers {
    /// The Message-ID as written (without `<>`), if the post has one.
    message_id: Option<String>,
    list_ids: Vec<String>,
}

fn read_headers(data: &[u8]) -> Headers {
    let parsed = MessageParser::new().parse_headers(data);
    let Some(msg) = parsed else {
        return Headers {
            message_id: None,
            list_ids: Vec::new(),
        };
    };
    // A Message-ID header that mail-parser cannot parse is still one we must not
    // add a second of: keep its raw text as the key. The raw text is read from
    // the field's bytes, not `header_raw` (which gives nothing for bytes that
    // are not UTF-8): fuzzing (target `message_id`) found a field with an
    // unclosed `<` and such bytes that intake took for none, and added a
    // second that readers then did not take.
    let message_id = msg.message_id().map(str::to_string).or_else(|| {
        let last = msg
            .headers()
            .iter()
            .rfind(|h| h.name().eq_ignore_ascii_case("Message-ID"))?;
        let raw = data.get(last.offset_start() as usize..last.offset_end() as usize)?;
        let key = String::from_utf8_lossy(raw)
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        (!key.is_empty()).then_some(key)
    });
    let list_ids = msg
        .headers()
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("List-Id"))
        .filter_map(|h| {
            let raw = data.get(h.offset_start() as usize..h.offset_end() as usize)?;
            Some(String::from_utf8_lossy(raw).to_ascii_lowercase())
        })
        .collect();
    Headers {
        message_id,
        list_ids,
    }
}

/// The message with its last line ended. A message is lines (RFC 5322);
/// DATA's terminator ends the last one, but BDAT's last chunk need not, and
/// a field that runs to the end of the data without a line end is one
/// mail-parser (every reader here) may drop: fuzzing (target `message_id`)
/// found a post of one tab, after which an inserted Message-ID read as none.
/// Intake ends such a last line as DATA would have, in the message's own
/// line ending.
pub fn whole_lines(data: &[u8]) -> Cow<'_, [u8]> {
    if data.is_empty() || data.ends_with(b"\n") {
        return Cow::Borrowed(data);
    }
    Cow::Owned([data, line_end(data)].concat())
}

/// The message's own line ending: CRLF if it has one (or no line end at
/// all), else LF.
fn line_end(data: &[u8]) -> &'static [u8] {
    let crlf = data.windows(2).any(|w| w == b"\r\n") || !data.contains(&b'\n');
    if crlf {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// The Message-ID intake takes a post to have (as written, without `<>`), or
/// `None` when it adds one: the definition the `message_id` fuzz target
/// checks insertion against.
pub fn post_message_id(data: &[u8]) -> Option<String> {
    read_headers(data).message_id
}

/// Where a header field can be inserted at the end of the header section,
/// as mail-parser (which reads the post everywhere else: intake's own
/// Message-ID check, the fan-out, the signer) delimits that section; one
/// definition, so an inserted field is always read as a header.
///
/// mail-parser ends the section at the first line of nothing but blanks
/// (`" \r\n"` and `"\r\r\n"` too, not only an empty line) and skips lines
/// with no colon. The field goes at the start of that line, unless the line
/// starts with a space or tab: a field inserted there would take it as its
/// own folded continuation and the body's first line would turn into a
/// header. It then goes before the last header field that starts a line
/// (mail-parser reads on after it exactly as before), or at the very start
/// when there is none. A message whose header section never ends (no body)
/// gets the field at its end.
///
/// Returns that place, then the fallbacks [`insert_header`] tries when
/// mail-parser does not read the field there: just after the last field of
/// the same name (readers take the last one, and a post's own Message-ID
/// field may hold no ID: fuzzing found `Message-ID: <` shadowing every
/// place before it), before the last field, then first; and whether no
/// line of the message starts a field mail-parser reads (it may read one
/// after blanks or garbage at the start of a line).
fn insertion_points(data: &[u8], name: &str) -> (Vec<usize>, bool) {
    let mut stream = MessageStream::new(data);
    let mut fields = Vec::new();
    let complete = stream.parse_headers(&MessageParser::new(), &mut fields);
    let last = last_field_start(data, &fields);
    let end = if complete {
        section_end(data, stream.offset()).unwrap_or(last)
    } else {
        data.len()
    };
    let after_same_name = fields
        .iter()
        .rfind(|f| f.name().eq_ignore_ascii_case(name))
        .map(|f| f.offset_end as usize)
        .filter(|&at| at <= data.len() && starts_line(data, at));
    let headerless = !fields
        .iter()
        .any(|f| starts_line(data, f.offset_field as usize));
    let points = [Some(end), after_same_name, Some(last), Some(0)];
    (points.into_iter().flatten().collect(), headerless)
}

/// Whether `at` is the start of a line of `data`.
fn starts_line(data: &[u8], at: usize) -> bool {
    at == 0 || data.get(at - 1) == Some(&b'\n')
}

/// The start of the line that ends the header section, mail-parser having
/// stopped at `offset`; `None` when a field may not go there.
fn section_end(data: &[u8], offset: usize) -> Option<usize> {
    // mail-parser stops just after the blank line's `\n`.
    let blank_end = offset.saturating_sub(1);
    let blank_start = data[..blank_end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let blank = &data[blank_start..blank_end];
    (blank.iter().all(u8::is_ascii_whitespace) && !matches!(blank.first(), Some(b' ' | b'\t')))
        .then_some(blank_start)
}

/// Where the last of `fields` that starts a line starts (0 when none does).
fn last_field_start(data: &[u8], fields: &[mail_parser::Header<'_>]) -> usize {
    fields
        .iter()
        .map(|f| f.offset_field as usize)
        .rfind(|&at| starts_line(data, at))
        .unwrap_or(0)
}

/// Inserts a header at the end of the header section, in the message's own
/// line ending; every other byte stays as it was. Where mail-parser (as a
/// reader) would not read it there, in the first of the fallbacks of
/// [`insertion_points`] where it does. Fuzzing (target `message_id`) found
/// both: a last field readers run on into the next line (a Date with a NUL
/// in its folded line took the inserted field with it), and a last line
/// readers drop that becomes a second Message-ID once a line follows it.
///
/// A message in which no line starts a field has no header section; when no
/// place works there (its first line starts with a blank, so a field put
/// before it folds on into it, and past the line that ended the section or
/// into an ID further on, as fuzzing found), the field goes first with an
/// empty line after it: the message's only field, the rest its body, as an
/// MTA heads a message that came without a header.
pub fn insert_header(data: &[u8], name: &str, value: &str) -> Vec<u8> {
    let (points, headerless) = insertion_points(data, name);
    let read = |out: &[u8]| {
        MessageParser::new()
            .parse_headers(out)
            .and_then(|m| m.header_raw(name).map(|r| r.trim() == value))
            .unwrap_or(false)
    };
    let eol = line_end(data);
    let headed = || [format!("{name}: {value}").as_bytes(), eol, eol, data].concat();
    let mut candidates = points
        .iter()
        .map(|&at| insert_at(data, at, name, value))
        .chain(headerless.then(headed));
    // The first place (the end of the section) is kept if none is read.
    let first = candidates.next().unwrap_or_else(headed);
    if read(&first) {
        return first;
    }
    candidates.find(|out| read(out)).unwrap_or(first)
}

fn insert_at(data: &[u8], at: usize, name: &str, value: &str) -> Vec<u8> {
    let eol = line_end(data);
    let mut out = Vec::with_capacity(data.len() + name.len() + value.len() + 4);
    out.extend_from_slice(&data[..at]);
    if at > 0 && data[at - 1] != b'\n' {
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(eol);
    out.extend_from_slice(&data[at..]);
    out
}

impl Intake {
    pub fn new(store: Arc<dyn Store>, delimiter: char) -> Self {
        Intake {
            store,
            delimiter,
            posted: None,
            probes: None,
        }
    }

    pub fn probes(mut self, probes: Arc<ProbeBook>) -> Self {
        self.probes = Some(probes);
        self
    }

    pub fn notify(mut self, posted: Arc<Notify>) -> Self {
        self.posted = Some(posted);
        self
    }

    /// Resolves a recipient at RCPT time.
    pub async fn resolve(&self, rcpt: &str) -> Result<Recipient, RcptRefusal> {
        let addr =
            Address::parse_recipient(rcpt).map_err(|e| RcptRefusal::BadAddress(e.to_string()))?;
        let unavailable = |e: StoreError| RcptRefusal::Unavailable(e.to_string());
        if self
            .store
            .domain(addr.domain())
            .await
            .map_err(unavailable)?
            .is_none()
        {
            return Err(RcptRefusal::UnknownDomain(addr.domain().to_string()));
        }
        if let Some((leg, tag)) = address::probe(&addr, self.delimiter) {
            return self.probe_rcpt(rcpt, &addr, leg, &tag);
        }
        let route = address::route(&addr, self.delimiter)
            .ok_or_else(|| RcptRefusal::UnknownAddress(addr.to_string()))?;
        let key = format!("{}@{}", route.list, route.domain);
        let list = self
            .store
            .list(&key)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| RcptRefusal::UnknownAddress(addr.to_string()))?;
        Ok(Recipient {
            address: rcpt.to_string(),
            route,
            list,
        })
    }

    /// A probe recipient of `listrelay check mta`: noted, and accepted if
    /// its signature verifies (it is then dropped after DATA, never stored).
    fn probe_rcpt(
        &self,
        rcpt: &str,
        addr: &Address,
        leg: ProbeLeg,
        tag: &str,
    ) -> Result<Recipient, RcptRefusal> {
        let genuine = self
            .probes
            .as_ref()
            .is_some_and(|p| p.note(leg, Stage::Rcpt, addr.domain(), tag));
        let base = Address::parse(&format!("{}@{}", address::PROBE_LOCAL, addr.domain()));
        let (true, Ok(base)) = (genuine, base) else {
            return Err(RcptRefusal::UnknownAddress(addr.to_string()));
        };
        let suffix = match leg {
            ProbeLeg::Forward => Suffix::Post,
            ProbeLeg::Return => Suffix::Bounces,
        };
        Ok(Recipient {
            address: rcpt.to_string(),
            route: Route {
                list: address::PROBE_LOCAL.to_string(),
                domain: addr.domain().to_string(),
                suffix,
                tag: Some(tag.to_string()),
            },
            list: List::new(base),
        })
    }

    /// Notes a probe's message ([`Intake::probe_rcpt`] accepted its recipient).
    fn probe_data(&self, rcpt: &Recipient) -> Outcome {
        let leg = match rcpt.route.suffix {
            Suffix::Bounces => ProbeLeg::Return,
            _ => ProbeLeg::Forward,
        };
        if let (Some(p), Some(tag)) = (&self.probes, &rcpt.route.tag) {
            p.note(leg, Stage::Data, &rcpt.route.domain, tag);
        }
        info!(rcpt = %rcpt.address, "MTA check probe received (not stored)");
        Outcome::Probe
    }

    /// Stores the message for every recipient and says what became of each, in
    /// order. Nothing is acknowledged before the store has synced it.
    pub async fn deliver(&self, mail_from: &str, rcpts: &[Recipient], data: &[u8]) -> Vec<Outcome> {
        self.deliver_from(&ClientInfo::default(), mail_from, rcpts, data)
            .await
    }

    /// [`Self::deliver`] for a message whose SMTP client the MTA named
    /// (XFORWARD): posts keep it for the sender's SPF check.
    pub async fn deliver_from(
        &self,
        client: &ClientInfo,
        mail_from: &str,
        rcpts: &[Recipient],
        data: &[u8],
    ) -> Vec<Outcome> {
        let data = &whole_lines(data)[..];
        let headers = read_headers(data);
        let content_hash = hex::encode(Sha256::digest(data));
        let mut outcomes: Vec<Option<Outcome>> = vec![None; rcpts.len()];
        let mut batch = Vec::new();
        let mut batch_index = Vec::new();
        for (i, rcpt) in rcpts.iter().enumerate() {
            if rcpt.route.list == address::PROBE_LOCAL {
                outcomes[i] = Some(self.probe_data(rcpt));
                continue;
            }
            let is_post = rcpt.route.suffix == Suffix::Post;
            if is_post
                && headers
                    .list_ids
                    .iter()
                    .any(|l| l.contains(&format!("<{}>", rcpt.list.list_id())))
            {
                outcomes[i] = Some(Outcome::Loop);
                continue;
            }
            let id = new_id();
            let (body, message_id, dedup) = if is_post {
                let (body, mid) = match &headers.message_id {
                    Some(mid) => (data.to_vec(), mid.clone()),
                    None => {
                        let mid = format!("{id}@{}", rcpt.list.address.domain());
                        (insert_header(data, "Message-ID", &format!("<{mid}>")), mid)
                    }
                };
                let dedup = DedupKey {
                    message_id: headers
                        .message_id
                        .clone()
                        .unwrap_or_else(|| format!("sha256:{content_hash}")),
                    content_hash: content_hash.clone(),
                };
                (body, Some(mid), Some(dedup))
            } else {
                (data.to_vec(), None, None)
            };
            batch.push(NewMessage {
                meta: MessageMeta {
                    id,
                    list: rcpt.list.key(),
                    suffix: rcpt.route.suffix,
                    tag: rcpt.route.tag.clone(),
                    mail_from: mail_from.to_string(),
                    rcpt: rcpt.address.clone(),
                    received_at: now(),
                    message_id,
                    dedup,
                    size: body.len() as u64,
                    state: MessageState::Queued,
                    policy: None,
                    client: (is_post && *client != ClientInfo::default()).then(|| client.clone()),
                    auth: None,
                    audience: Default::default(),
                },
                body,
            });
            batch_index.push(i);
        }
        if !batch.is_empty() {
            let metas: Vec<MessageMeta> = batch.iter().map(|m| m.meta.clone()).collect();
            match self.store.accept(batch).await {
                Ok(results) => {
                    for ((i, meta), result) in batch_index.iter().zip(metas).zip(results) {
                        outcomes[*i] = Some(self.outcome(&rcpts[*i], &meta, result));
                    }
                }
                Err(e) => {
                    warn!(error = %e, "storing a message failed; the MTA will retry");
                    let fail = Outcome::TempFail {
                        disk_full: e.is_disk_full(),
                        reason: e.to_string(),
                    };
                    for i in batch_index {
                        outcomes[i] = Some(fail.clone());
                    }
                }
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(Outcome::TempFail {
                    reason: "internal error".into(),
                    disk_full: false,
                })
            })
            .collect();
        if let Some(n) = &self.posted {
            if outcomes.iter().any(|o| matches!(o, Outcome::Stored { .. })) {
                n.notify_one();
            }
        }
        for o in &outcomes {
            metrics::counter!("listrelay_intake_recipients_total", "outcome" => o.label())
                .increment(1);
        }
        outcomes
    }

    fn outcome(&self, rcpt: &Recipient, meta: &MessageMeta, result: AcceptOutcome) -> Outcome {
        let message_id = meta.message_id.clone().unwrap_or_default();
        match result {
            AcceptOutcome::Accepted => {
                info!(id = %meta.id, list = %meta.list, kind = rcpt.route.suffix.name(),
                      message_id = %message_id, size = meta.size, "stored");
                Outcome::Stored {
                    id: meta.id.clone(),
                }
            }
            AcceptOutcome::Redelivery { existing } => {
                info!(%existing, list = %meta.list, "the MTA re-delivered a stored post; not stored again");
                Outcome::Redelivery { existing }
            }
            AcceptOutcome::Duplicate { existing } => {
                info!(%existing, list = %meta.list, %message_id,
                      policy = ?rcpt.list.settings.duplicate_policy, "duplicate Message-ID");
                match rcpt.list.settings.duplicate_policy {
                    DuplicatePolicy::Discard => Outcome::DuplicateDiscarded {
                        existing,
                        message_id,
                    },
                    DuplicatePolicy::Reject => Outcome::DuplicateRejected {
                        existing,
                        message_id,
                    },
                }
            }
        }
    }
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Stored { .. } => "stored",
            Outcome::Redelivery { .. } => "redelivery",
            Outcome::DuplicateDiscarded { .. } => "duplicate_discarded",
            Outcome::DuplicateRejected { .. } => "duplicate_rejected",
            Outcome::Loop => "loop",
            Outcome::TempFail { .. } => "tempfail",
            Outcome::Probe => "probe",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_a_header_keeping_every_other_byte() {
        let m = b"From: a@b.org\r\nSubject: x\r\n\r\nbody\r\n.\r\n";
        let out = insert_header(m, "Message-ID", "<1@l.org>");
        assert_eq!(
            out,
            b"From: a@b.org\r\nSubject: x\r\nMessage-ID: <1@l.org>\r\n\r\nbody\r\n.\r\n".to_vec()
        );
        let lf = b"Subject: x\n\nbody\n";
        assert_eq!(
            insert_header(lf, "M", "v"),
            b"Subject: x\nM: v\n\nbody\n".to_vec()
        );
        assert_eq!(
            insert_header(b"Subject: x", "M", "v"),
            b"Subject: x\r\nM: v\r\n".to_vec()
        );
        assert_eq!(
            insert_header(b"\r\nbody", "M", "v"),
            b"M: v\r\n\r\nbody".to_vec()
        );
        assert_eq!(insert_header(b"", "M", "v"), b"M: v\r\n".to_vec());
    }

    #[test]
    fn reads_message_id_and_list_ids() {
        let h = read_headers(b"Message-ID: <abc@x.org>\r\nList-Id: Dev <dev.l.org>\r\n\r\nb");
        assert_eq!(h.message_id.as_deref(), Some("abc@x.org"));
        assert_eq!(h.list_ids.len(), 1);
        assert!(h.list_ids[0].contains("<dev.l.org>"));
        assert_eq!(read_headers(b"Subject: x\r\n\r\n").message_id, None);
    }
}
