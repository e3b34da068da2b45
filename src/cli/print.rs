//! The CLI's output: each [`Response`] and streamed [`Item`] rendered for a
//! person, or as JSON for scripts (`--json`), written as it arrives.

use std::io::{self, Write};

use crate::admin::protocol::{
    AuditPage, BanView, BounceRecord, BounceResetReport, HeldActReport, HeldInfo, ListInfo,
    QueueView, TokenCreated, TokenInfo,
};
use crate::admin::{Item, Response};
use crate::check::mta::{Report, Status as HopStatus};
use crate::model::{DeliveryMode, Domain, Member};
use crate::notice::rfc5322_date;

/// How answers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For a person.
    Human,
    /// The answer's body as JSON; a streamed answer as one JSON array.
    Json,
    /// Only members' addresses, one per line (`member export`).
    Addresses,
}

/// Writes answers to `out` in one format.
pub struct Printer {
    out: Box<dyn Write + Send>,
    format: Format,
    /// Items written so far (a JSON array is opened by the first).
    items: u64,
}

impl Printer {
    pub fn new(out: Box<dyn Write + Send>, format: Format) -> Self {
        Printer {
            out,
            format,
            items: 0,
        }
    }

    /// Standard output, buffered.
    pub fn stdout(format: Format) -> Self {
        Printer::new(Box::new(io::BufWriter::new(io::stdout())), format)
    }

    /// One streamed item, written at once.
    pub fn item(&mut self, item: &Item) -> io::Result<()> {
        let first = self.items == 0;
        self.items += 1;
        let Item::Member(m) = item;
        match self.format {
            Format::Human => member(&mut self.out, m),
            Format::Addresses => writeln!(self.out, "{}", m.address),
            Format::Json => {
                self.out.write_all(if first { b"[\n" } else { b",\n" })?;
                serde_json::to_writer(&mut self.out, m).map_err(io::Error::other)
            }
        }
    }

    /// The final answer; then everything is flushed.
    pub fn response(&mut self, response: &Response) -> io::Result<()> {
        match (self.format, response) {
            // Bytes as stored, whatever the format: it is a message, not a record.
            (_, Response::MessageBody(b)) => {
                if let Some(c) = &b.checks {
                    warn(&format!("checks: {c}"));
                }
                let body = hex::decode(&b.body_hex).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the server sent a malformed body: {e}"),
                    )
                })?;
                self.out.write_all(&body)?;
            }
            (Format::Json, Response::End(_)) => {
                if self.items == 0 {
                    self.out.write_all(b"[")?;
                }
                self.out.write_all(b"\n]\n")?;
            }
            (Format::Json, other) => {
                let mut v = serde_json::to_value(other).map_err(io::Error::other)?;
                let body = v.get_mut("body").map(serde_json::Value::take);
                serde_json::to_writer_pretty(&mut self.out, &body.unwrap_or_default())
                    .map_err(io::Error::other)?;
                writeln!(self.out)?;
            }
            (Format::Addresses, _) => {}
            (Format::Human, r) => human(&mut self.out, r)?,
        }
        self.out.flush()
    }
}

/// A person's view of an answer.
fn human(out: &mut dyn Write, response: &Response) -> io::Result<()> {
    match response {
        Response::Domain(d) => domain(out, d),
        Response::Domains(ds) => ds.iter().try_for_each(|d| domain(out, d)),
        Response::Deleted(d) => writeln!(out, "deleted {}", d.deleted),
        Response::List(l) => list(out, l),
        Response::Lists(ls) => ls
            .iter()
            .try_for_each(|l| writeln!(out, "{}\t{} members", l.address, l.members)),
        Response::MembersAdded(r) => {
            for i in &r.invalid {
                warn(&format!("invalid: {} ({})", i.address, i.error));
            }
            writeln!(out, "{} added, {} already members", r.added, r.already)
        }
        Response::MembersRemoved(r) => {
            for a in &r.not_members {
                warn(&format!("not a member: {a}"));
            }
            writeln!(out, "{} removed", r.removed)
        }
        Response::Member(m) => member(out, m),
        Response::End(_) | Response::MessageBody(_) => Ok(()),
        Response::ProbeStarted(t) => writeln!(out, "probe {}: {} and {}", t.id, t.forward, t.back),
        Response::ProbeSeen(s) => writeln!(out, "{}", serde_json::json!(s)),
        Response::Queue(q) => queue(out, q),
        Response::BounceRecords(rs) => {
            if rs.is_empty() {
                writeln!(out, "no bounce records")?;
            }
            rs.iter().try_for_each(|b| bounce_record(out, b))
        }
        Response::BounceReset(r) => bounce_reset(out, r),
        Response::HeldPosts(hs) => {
            if hs.is_empty() {
                writeln!(out, "no held posts")?;
            }
            hs.iter().try_for_each(|h| held(out, h))
        }
        Response::HeldPost(h) => {
            // On stderr: stdout stays the message, ready to save or pipe.
            warn(&format!("held: {}", h.post.reason));
            if let Some(c) = &h.post.checks {
                warn(&format!("checks: {c}"));
            }
            writeln!(out, "{}", h.message)
        }
        Response::HeldActed(r) => held_acted(out, r),
        Response::MemberPage(p) => {
            p.members.iter().try_for_each(|m| member(out, m))?;
            match &p.next {
                Some(n) => writeln!(out, "(more after {n})"),
                None => Ok(()),
            }
        }
        Response::TokenCreated(t) => token_created(out, t),
        Response::Tokens(ts) => {
            if ts.is_empty() {
                writeln!(out, "no tokens")?;
            }
            ts.iter().try_for_each(|t| token(out, t))
        }
        Response::Token(t) => token(out, t),
        Response::Audit(a) => audit(out, a),
        Response::Bans(b) => bans(out, b),
    }
}

/// A line on stderr; a closed stderr leaves nothing to tell.
fn warn(line: &str) {
    let _ = writeln!(io::stderr(), "{line}");
}

fn domain(out: &mut dyn Write, d: &Domain) -> io::Result<()> {
    let opaque = if d.opaque { " (opaque)" } else { "" };
    writeln!(out, "{}{opaque}", d.name)
}

/// A member: the address, then its delivery mode when not `regular` (the
/// member's choice) and apart from it delivery disabled (by bounces or an
/// operator).
fn member(out: &mut dyn Write, m: &Member) -> io::Result<()> {
    let mode = match m.delivery_mode {
        DeliveryMode::Regular => String::new(),
        other => format!("\t({other})"),
    };
    let off = if m.delivery_enabled {
        ""
    } else {
        "\t(delivery disabled)"
    };
    let moderated = if m.moderated { "\t(moderated)" } else { "" };
    writeln!(out, "{}{mode}{off}{moderated}", m.address)
}

/// A list's bans, one per line; what a change did on stderr.
fn bans(out: &mut dyn Write, b: &BanView) -> io::Result<()> {
    for ban in &b.bans {
        writeln!(out, "{ban}")?;
    }
    if b.bans.is_empty() {
        warn(&format!("{} has no bans", b.list));
    }
    Ok(())
}

/// `list show`: the list, then its settings as `list set` names them.
fn list(out: &mut dyn Write, l: &ListInfo) -> io::Result<()> {
    writeln!(out, "{}", l.address)?;
    writeln!(out, "  list-id: <{}>", l.list_id)?;
    writeln!(out, "  members: {}", l.members)?;
    writeln!(out, "  created: {}", rfc5322_date(l.created_at))?;
    writeln!(out, "  settings:")?;
    let settings = toml::to_string(&l.settings).map_err(io::Error::other)?;
    for line in settings.lines() {
        writeln!(out, "    {line}")?;
    }
    Ok(())
}

fn bounce_record(out: &mut dyn Write, b: &BounceRecord) -> io::Result<()> {
    writeln!(
        out,
        "{}\tscore {}\t{} bounces\tlast {} ({} {})\t{}\t{} warnings",
        b.member,
        b.score,
        b.bounces,
        rfc5322_date(b.last_bounce),
        b.last_reason,
        b.last_status.as_deref().unwrap_or("-"),
        if b.disabled {
            "delivery disabled"
        } else {
            "delivery on"
        },
        b.warnings_sent,
    )
}

fn bounce_reset(out: &mut dyn Write, r: &BounceResetReport) -> io::Result<()> {
    let record = if r.had_record {
        "bounce record forgotten"
    } else {
        "no bounce record"
    };
    let lists = if r.delivery_enabled_in.is_empty() {
        "none".to_string()
    } else {
        r.delivery_enabled_in.join(", ")
    };
    writeln!(
        out,
        "{}: {record} (scope {}); delivery re-enabled in: {lists}",
        r.member, r.scope
    )
}

fn held(out: &mut dyn Write, h: &HeldInfo) -> io::Result<()> {
    writeln!(
        out,
        "<{}>\t{}\t{}\t{}\t{}",
        h.message_id,
        h.sender,
        h.reason,
        rfc5322_date(h.held_at),
        h.subject,
    )
}

fn held_acted(out: &mut dyn Write, r: &HeldActReport) -> io::Result<()> {
    if r.done {
        writeln!(out, "{}: {}", r.action.name(), r.message_id)
    } else {
        writeln!(out, "already handled: nothing done")
    }
}

/// `listrelay queue`: messages waiting, jobs with their progress, chunks with
/// their leases.
fn queue(out: &mut dyn Write, q: &QueueView) -> io::Result<()> {
    let now = crate::clock::now_ms();
    writeln!(out, "messages:")?;
    for m in &q.messages {
        writeln!(
            out,
            "  {}  {}  {}  {} bytes  {}",
            m.id,
            m.list,
            m.suffix.name(),
            m.size,
            m.message_id.as_deref().unwrap_or("-")
        )?;
    }
    writeln!(out, "jobs:")?;
    for j in &q.jobs {
        writeln!(
            out,
            "  {}  {}  chunks {}/{}  recipients {}  delivered {}  failed {}  verp {}%",
            j.post_id,
            j.list,
            j.chunks_done,
            j.chunks,
            j.recipients,
            j.delivered,
            j.refused,
            j.verp_percent
        )?;
    }
    writeln!(out, "chunks:")?;
    for c in &q.chunks {
        let lease = match &c.owner {
            Some(owner) => {
                let left = c.lease_expires_ms.saturating_sub(now);
                format!("held by {owner} for {:.1}s more", left as f64 / 1000.0)
            }
            None => "free".to_string(),
        };
        writeln!(
            out,
            "  {}/{}  {} members  txns done {}  delivered {}  failed {}  retrying {}  gen {}  {}",
            c.job,
            c.index,
            c.members,
            c.cursor,
            c.delivered,
            c.refused,
            c.retry.len(),
            c.generation,
            lease
        )?;
    }
    Ok(())
}

/// The MTA self-check (`check mta`): one line per hop with its time, and
/// under a failed hop its likely cause and the settings to change.
pub fn check_mta(out: &mut dyn Write, format: Format, r: &Report) -> io::Result<()> {
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut *out, r).map_err(io::Error::other)?;
        writeln!(out)?;
        return out.flush();
    }
    writeln!(
        out,
        "MTA check at {} (probe {}; {} then {})",
        r.probe.domain, r.probe.id, r.probe.forward, r.probe.back
    )?;
    for (n, h) in r.hops.iter().enumerate() {
        let (mark, time) = match (h.status, h.ms) {
            (HopStatus::Pass, Some(ms)) => ("ok  ", format!("{ms:>6} ms")),
            (HopStatus::Pass, None) => ("ok  ", String::new()),
            (HopStatus::Fail, _) => ("FAIL", "         ".to_string()),
        };
        writeln!(
            out,
            "{}. {mark} {:<22} {time}  {}",
            n + 1,
            h.hop.label(),
            h.detail
        )?;
        if let Some(cause) = &h.cause {
            writeln!(out, "           likely cause: {cause}")?;
        }
        for f in &h.fixes {
            writeln!(out, "           {:<9} {}", format!("{}:", f.mta), f.setting)?;
        }
    }
    match r.first_failure() {
        None => writeln!(out, "every hop passed")?,
        Some(h) => writeln!(
            out,
            "failed at hop {} ({}): exit status {}",
            h.hop as u8,
            h.hop.label(),
            r.exit_code
        )?,
    }
    out.flush()
}

/// `token create`: the token (shown this once), then what it may do.
fn token_created(out: &mut dyn Write, t: &TokenCreated) -> io::Result<()> {
    writeln!(out, "{}", t.token)?;
    warn("this token is shown once: store it now (only its hash is kept)");
    token(&mut io::stderr(), &t.info)
}

/// One line of `token list`.
fn token(out: &mut dyn Write, t: &TokenInfo) -> io::Result<()> {
    let now = crate::clock::now();
    let state = match (t.revoked_at, t.expires_at) {
        (Some(at), _) => format!("revoked {}", rfc5322_date(at)),
        (None, Some(at)) if at <= now => format!("expired {}", rfc5322_date(at)),
        (None, Some(at)) => format!("expires {}", rfc5322_date(at)),
        (None, None) => "no expiry".to_string(),
    };
    let lists = if t.lists.is_empty() {
        "all lists".to_string()
    } else {
        t.lists.join(",")
    };
    writeln!(
        out,
        "{}\t{}\t{lists}\t{state}\t{}",
        t.id,
        t.role.name(),
        t.description
    )
}

/// `listrelay audit`: one line per entry, oldest first.
fn audit(out: &mut dyn Write, a: &AuditPage) -> io::Result<()> {
    if a.entries.is_empty() {
        writeln!(out, "no audit entries")?;
    }
    for e in &a.entries {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            rfc5322_date(e.at),
            e.actor,
            e.origin,
            e.action,
            e.target,
            e.outcome
        )?;
    }
    if let Some(n) = &a.next {
        writeln!(out, "(more: --after {n})")?;
    }
    Ok(())
}
