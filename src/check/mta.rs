//! `listrelay check mta`: an end-to-end check of the MTA set-up. A probe goes
//! in through the MTA's public SMTP port to a probe address of a served
//! domain and should arrive over LMTP; a second one goes to the MTA's
//! re-injection port (where listrelay hands its copies back) addressed to the
//! probe's bounce address, and should come back over LMTP the way a VERP
//! bounce does. Each of the five hops is timed; a failed one names its likely
//! cause and the setting to change, for Postfix and for Exim.
//!
//! The running server mints the probe and says what arrived ([`Watch`]); this
//! module only speaks SMTP to the MTA and reads its log when given one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::probe::{ProbeSeen, ProbeTicket};
use crate::address::{self, ProbeLeg};
use crate::clock::now_ms;

/// The longest SMTP reply line read from the MTA.
const MAX_REPLY_LINE: u64 = 4096;
/// How long one SMTP command may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the server is asked what arrived.
const POLL: Duration = Duration::from_millis(100);
/// How much of the end of the MTA log is read.
const LOG_TAIL: u64 = 4 * 1024 * 1024;

/// What the check needs to know besides the probe.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The MTA's public SMTP listener, `host:port`.
    pub public: String,
    /// The MTA's re-injection listener, listrelay's `smtp.relay`.
    pub reinject: String,
    /// Where listrelay listens for LMTP (`lmtp.listen`), for the hints.
    pub lmtp: String,
    /// How long to wait for each probe to arrive.
    pub timeout: Duration,
    /// The MTA's log, read to tell why a probe did not arrive.
    pub mta_log: Option<PathBuf>,
    /// The name given in EHLO.
    pub helo: String,
}

/// Asks the running server what it saw of a probe.
#[async_trait::async_trait]
pub trait Watch: Send {
    async fn seen(&mut self, id: &str) -> anyhow::Result<ProbeSeen>;
}

/// The five hops, in order. The exit status of a failed check is 10 plus
/// the number of its first failed hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HopName {
    SmtpAccepted = 1,
    RoutedToListrelay = 2,
    LmtpReceived = 3,
    ReinjectionAccepted = 4,
    ReturnOverLmtp = 5,
}

impl HopName {
    pub fn label(self) -> &'static str {
        match self {
            HopName::SmtpAccepted => "SMTP accepted",
            HopName::RoutedToListrelay => "routed to listrelay",
            HopName::LmtpReceived => "LMTP received",
            HopName::ReinjectionAccepted => "re-injection accepted",
            HopName::ReturnOverLmtp => "return over LMTP",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
}

/// A setting to change, and in which MTA (or in listrelay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// `postfix`, `exim` or `listrelay`.
    pub mta: &'static str,
    pub setting: String,
}

/// One hop's result.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    pub hop: HopName,
    pub status: Status,
    /// How long the hop took: an SMTP session from connect to the reply
    /// after DATA; an arrival from that reply to the server seeing it.
    pub ms: Option<u64>,
    /// What was seen (the MTA's reply, the log line).
    pub detail: String,
    /// Why it failed, most likely.
    pub cause: Option<String>,
    /// What to change.
    pub fixes: Vec<Fix>,
}

/// The whole check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub probe: ProbeTicket,
    pub hops: Vec<Hop>,
    pub passed: bool,
    /// 0, or 10 + the number of the first failed hop.
    pub exit_code: u8,
}

impl Report {
    fn new(probe: ProbeTicket, hops: Vec<Hop>) -> Report {
        let first = hops.iter().find(|h| h.status == Status::Fail);
        Report {
            passed: first.is_none(),
            exit_code: first.map_or(0, |h| 10 + h.hop as u8),
            probe,
            hops,
        }
    }

    pub fn first_failure(&self) -> Option<&Hop> {
        self.hops.iter().find(|h| h.status == Status::Fail)
    }
}

fn pass(hop: HopName, ms: u64, detail: String) -> Hop {
    Hop {
        hop,
        status: Status::Pass,
        ms: Some(ms),
        detail,
        cause: None,
        fixes: Vec::new(),
    }
}

fn fail(hop: HopName, detail: String, cause: String, fixes: Vec<Fix>) -> Hop {
    Hop {
        hop,
        status: Status::Fail,
        ms: None,
        detail,
        cause: Some(cause),
        fixes,
    }
}

fn fix(mta: &'static str, setting: impl Into<String>) -> Fix {
    Fix {
        mta,
        setting: setting.into(),
    }
}

/// Runs the check: both probes, every hop (a later hop is tried even when an
/// earlier one failed: each says something of its own).
pub async fn run(plan: &Plan, probe: ProbeTicket, watch: &mut dyn Watch) -> anyhow::Result<Report> {
    let mut hops = Vec::new();
    let forward = send_probe(plan, &plan.public, &probe, ProbeLeg::Forward).await;
    hops.push(forward_hop(plan, &probe, &forward));
    let sent_at = forward.as_ref().ok().map(|s| s.accepted_ms);
    let seen = wait(watch, &probe.id, plan.timeout, sent_at, |s| {
        s.forward_data_ms.is_some()
    })
    .await?;
    hops.extend(arrival_hops(plan, &probe, sent_at, &seen));

    let back = send_probe(plan, &plan.reinject, &probe, ProbeLeg::Return).await;
    hops.push(reinject_hop(plan, &back));
    let sent_at = back.as_ref().ok().map(|s| s.accepted_ms);
    let seen = wait(watch, &probe.id, plan.timeout, sent_at, |s| {
        s.return_data_ms.is_some()
    })
    .await?;
    hops.push(return_hop(plan, &probe, sent_at, &seen, &hops));
    Ok(Report::new(probe, hops))
}

/// Polls the server until `done` or the timeout (not at all when the probe
/// was not sent).
async fn wait(
    watch: &mut dyn Watch,
    id: &str,
    timeout: Duration,
    sent: Option<u64>,
    done: impl Fn(&ProbeSeen) -> bool,
) -> anyhow::Result<ProbeSeen> {
    let end = Instant::now() + timeout;
    loop {
        let seen = watch.seen(id).await?;
        if sent.is_none() || done(&seen) || Instant::now() >= end {
            return Ok(seen);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// An SMTP session that delivered a probe.
#[derive(Debug)]
struct Sent {
    /// When the MTA accepted the message (its reply after DATA).
    accepted_ms: u64,
    /// From connect to that reply.
    took_ms: u64,
    /// That reply (with the MTA's queue id).
    reply: String,
}

/// Why a probe could not be handed to the MTA.
#[derive(Debug)]
enum SendError {
    /// No connection, or it broke.
    Connect(String),
    /// The MTA refused the tagged probe address; `untagged`: its reply to
    /// the same address without the tag.
    Recipient { reply: String, untagged: String },
    /// Another command was refused.
    Refused {
        command: &'static str,
        reply: String,
    },
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(addr: &str) -> std::io::Result<Box<dyn Stream>> {
    Ok(match addr.strip_prefix("unix:") {
        Some(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        None => Box::new(tokio::net::TcpStream::connect(addr).await?),
    })
}

/// An SMTP client session, one reply at a time (no pipelining: the check
/// wants to know which command was refused).
struct Session {
    io: BufReader<Box<dyn Stream>>,
}

impl Session {
    /// Reads one (possibly multi-line) reply: its code and its text.
    async fn reply(&mut self) -> Result<(u16, String), String> {
        let mut text = String::new();
        loop {
            let mut line = Vec::new();
            let n = tokio::time::timeout(
                SMTP_TIMEOUT,
                AsyncReadExt::take(&mut self.io, MAX_REPLY_LINE).read_until(b'\n', &mut line),
            )
            .await
            .map_err(|_| format!("no reply within {SMTP_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the MTA closed the connection".into());
            }
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            let code = line.get(..3).and_then(|c| c.parse().ok());
            let Some(code) = code else {
                return Err(format!("not an SMTP reply: {line:?}"));
            };
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
        }
    }

    async fn command(&mut self, line: &str) -> Result<(u16, String), String> {
        let w = self.io.get_mut();
        w.write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.reply().await
    }
}

/// The probe message: small, marked automatic, naming what it is for.
fn message(probe: &ProbeTicket, rcpt: &str) -> String {
    format!(
        "From: listrelay MTA check <postmaster@{d}>\r\nTo: <{rcpt}>\r\n\
         Subject: listrelay check mta probe {id}\r\nMessage-ID: <probe.{id}.{now}@{d}>\r\n\
         Date: {date}\r\nAuto-Submitted: auto-generated\r\n\r\n\
         A probe of `listrelay check mta`. listrelay notes its arrival and drops it.\r\n",
        d = probe.domain,
        id = probe.id,
        now = now_ms(),
        date = crate::notice::rfc5322_date(crate::clock::now()),
    )
}

/// Sends one probe leg to `addr`, from the null sender (no bounce is ever
/// made of a probe).
async fn send_probe(
    plan: &Plan,
    addr: &str,
    probe: &ProbeTicket,
    leg: ProbeLeg,
) -> Result<Sent, SendError> {
    let start = Instant::now();
    let stream = connect(addr)
        .await
        .map_err(|e| SendError::Connect(format!("connecting to {addr}: {e}")))?;
    let mut s = Session {
        io: BufReader::new(stream),
    };
    let io = |e: String| SendError::Connect(format!("{addr}: {e}"));
    let refused = |command, reply| SendError::Refused { command, reply };
    let (code, reply) = s.reply().await.map_err(io)?;
    if code != 220 {
        return Err(refused("the greeting", reply));
    }
    let (code, reply) = s
        .command(&format!("EHLO {}", plan.helo))
        .await
        .map_err(io)?;
    if code != 250 {
        return Err(refused("EHLO", reply));
    }
    let (code, reply) = s.command("MAIL FROM:<>").await.map_err(io)?;
    if code != 250 {
        return Err(refused("MAIL FROM", reply));
    }
    let rcpt = match leg {
        ProbeLeg::Forward => &probe.forward,
        ProbeLeg::Return => &probe.back,
    };
    let (code, reply) = s.command(&format!("RCPT TO:<{rcpt}>")).await.map_err(io)?;
    if !(250..=252).contains(&code) {
        // The same address without its tag tells a delimiter mismatch from
        // an address the MTA does not know at all.
        let base = rcpt
            .split_once(probe.delimiter)
            .map(|(b, _)| b)
            .unwrap_or(rcpt);
        let untagged = format!("{base}@{}", probe.domain);
        let (_, untagged) = s
            .command(&format!("RCPT TO:<{untagged}>"))
            .await
            .unwrap_or((0, String::new()));
        let _ = s.command("QUIT").await;
        return Err(SendError::Recipient { reply, untagged });
    }
    let (code, reply) = s.command("DATA").await.map_err(io)?;
    if code != 354 {
        return Err(refused("DATA", reply));
    }
    let (code, reply) = s
        .command(&format!("{}.", message(probe, rcpt)))
        .await
        .map_err(io)?;
    if code != 250 {
        return Err(refused("the message", reply));
    }
    let sent = Sent {
        accepted_ms: now_ms(),
        took_ms: start.elapsed().as_millis() as u64,
        reply,
    };
    let _ = s.command("QUIT").await;
    Ok(sent)
}

fn forward_hop(plan: &Plan, probe: &ProbeTicket, sent: &Result<Sent, SendError>) -> Hop {
    let hop = HopName::SmtpAccepted;
    let d = &probe.domain;
    let err = match sent {
        Ok(s) => return pass(hop, s.took_ms, format!("{}: {}", plan.public, s.reply)),
        Err(e) => e,
    };
    match err {
        SendError::Connect(e) => fail(
            hop,
            e.clone(),
            format!("nothing answers SMTP on {}", plan.public),
            vec![
                fix("listrelay", "--public HOST:PORT: the MTA's public SMTP listener (default 127.0.0.1:25)"),
                fix("postfix", "the `smtp inet` (or HOST:PORT inet … smtpd) line in master.cf; `postfix start`"),
                fix("exim", "daemon_smtp_ports / local_interfaces; start the daemon (`exim -bd`)"),
            ],
        ),
        SendError::Recipient { reply, untagged } if untagged.starts_with('2') => fail(
            hop,
            format!("RCPT TO:<{}>: {reply}; without the tag: {untagged}", probe.forward),
            format!(
                "the MTA knows {}@{d} but refuses it with a tag after '{}': its recipient delimiter differs from listrelay's intake.recipient_delimiter, so VERP bounces to LIST-bounces{}TAG@{d} are refused too",
                address::PROBE_LOCAL, probe.delimiter, probe.delimiter
            ),
            vec![
                fix("postfix", format!("recipient_delimiter = {} in main.cf (`postconf -e 'recipient_delimiter = {}'`; keep other delimiters you use in the same value), then `postfix reload`", probe.delimiter, probe.delimiter)),
                fix("exim", format!("local_part_suffix = {}* (with local_part_suffix_optional) in each listrelay router, then restart Exim", probe.delimiter)),
                fix("listrelay", "or set intake.recipient_delimiter to the MTA's delimiter and restart listrelay"),
            ],
        ),
        SendError::Recipient { reply, .. } if relay_refusal(reply) => fail(
            hop,
            format!("RCPT TO:<{}>: {reply}", probe.forward),
            format!("the MTA does not relay mail for {d}"),
            vec![
                fix("postfix", format!("add {d} to relay_domains in main.cf (`listrelay integration postfix`), then `postfix reload`")),
                fix("exim", format!("add {d} to `domainlist listrelay_domains` and +listrelay_domains to relay_to_domains (`listrelay integration exim`), then restart Exim")),
            ],
        ),
        SendError::Recipient { reply, untagged } => fail(
            hop,
            format!("RCPT TO:<{}>: {reply}; without the tag: {untagged}", probe.forward),
            format!("the MTA does not know the probe address {}@{d}", address::PROBE_LOCAL),
            vec![
                fix("postfix", format!("{}@{d} and {}-bounces@{d} in relay_recipient_maps: re-install the relay_recipients file of `listrelay integration postfix`, then `postfix reload`", address::PROBE_LOCAL, address::PROBE_LOCAL)),
                fix("exim", format!("{} and {}-bounces in the local_parts of the listrelay router for {d} (`listrelay integration exim`), then restart Exim", address::PROBE_LOCAL, address::PROBE_LOCAL)),
            ],
        ),
        SendError::Refused { command, reply } => fail(
            hop,
            format!("{command}: {reply}"),
            format!("the MTA refused {command} on {}", plan.public),
            vec![fix("listrelay", "see the reply above and the MTA's log; the probe is sent from <> to an address of a list domain")],
        ),
    }
}

/// Whether a refusal at RCPT says the domain is not relayed.
fn relay_refusal(reply: &str) -> bool {
    let r = reply.to_ascii_lowercase();
    r.contains("relay access denied") || r.contains("relay not permitted") || r.contains("relaying")
}

/// Hops 2 and 3: the forward probe over LMTP.
fn arrival_hops(plan: &Plan, probe: &ProbeTicket, sent: Option<u64>, seen: &ProbeSeen) -> Vec<Hop> {
    let Some(sent) = sent else {
        let not_sent = |hop| {
            fail(
                hop,
                "not tried".into(),
                "the probe was not accepted (hop 1)".into(),
                Vec::new(),
            )
        };
        return vec![
            not_sent(HopName::RoutedToListrelay),
            not_sent(HopName::LmtpReceived),
        ];
    };
    let after = |t: u64| t.saturating_sub(sent);
    let routed = match seen.forward_rcpt_ms {
        Some(t) => pass(
            HopName::RoutedToListrelay,
            after(t),
            format!("the MTA offered RCPT TO:<{}> over LMTP", probe.forward),
        ),
        None => not_routed(plan, probe, &probe.forward, HopName::RoutedToListrelay),
    };
    let received = match (seen.forward_data_ms, seen.forward_rcpt_ms) {
        (Some(t), _) => pass(
            HopName::LmtpReceived,
            after(t),
            "listrelay received the message (and dropped it)".into(),
        ),
        (None, None) => fail(
            HopName::LmtpReceived,
            "not tried".into(),
            "the probe never reached listrelay (hop 2)".into(),
            Vec::new(),
        ),
        (None, Some(_)) => fail(
            HopName::LmtpReceived,
            format!(
                "listrelay saw the recipient but no message within {:?}",
                plan.timeout
            ),
            "the MTA's LMTP session failed after RCPT: see listrelay's log and the MTA's".into(),
            vec![fix(
                "listrelay",
                "lmtp.max_message_size and lmtp timeouts (docs/configuration.md)",
            )],
        ),
    };
    vec![routed, received]
}

/// The hints for a probe the MTA accepted but never handed to listrelay,
/// told apart by the MTA's log where there is one.
fn not_routed(plan: &Plan, probe: &ProbeTicket, rcpt: &str, hop: HopName) -> Hop {
    let d = &probe.domain;
    let transport = || {
        vec![
            fix("postfix", format!("a transport_maps entry `{d} lmtp:inet:{}` (the transport file of `listrelay integration postfix`), then `postfix reload`", plan.lmtp)),
            fix("exim", format!("the listrelay_* router for {d} before dnslookup and the listrelay_lmtp transport (`listrelay integration exim`), then restart Exim")),
        ]
    };
    let port = || {
        vec![
            fix("postfix", format!("the transport entry for {d} must be `lmtp:inet:{}`, then `postfix reload`", plan.lmtp)),
            fix("exim", format!("route_list in the router for {d} and `port` in the listrelay_lmtp transport must name {}, then restart Exim", plan.lmtp)),
            fix("listrelay", "or lmtp.listen, if the MTA's setting is the one you want"),
        ]
    };
    let waited = format!(
        "listrelay did not see RCPT TO:<{rcpt}> within {:?}",
        plan.timeout
    );
    let line = plan.mta_log.as_ref().and_then(|p| log_line(p, rcpt));
    match line {
        Some(l) if via_lmtp(&l) && !delivered(&l) => fail(
            hop,
            format!("{waited}; the MTA's log: {l}"),
            format!("the MTA hands {d} to its LMTP transport, but listrelay does not listen where it connects (listrelay's LMTP is on {})", plan.lmtp),
            port(),
        ),
        Some(l) if !via_lmtp(&l) => fail(
            hop,
            format!("{waited}; the MTA's log: {l}"),
            format!("the MTA sends {d} somewhere else, not over LMTP to listrelay: no transport entry for {d}"),
            transport(),
        ),
        Some(l) => fail(
            hop,
            format!("{waited}; the MTA's log: {l}"),
            "the MTA did not hand the probe to listrelay: see its log line".into(),
            [transport(), port()].concat(),
        ),
        None => fail(
            hop,
            format!("{waited}{}", if plan.mta_log.is_some() { "; the MTA's log has no line for it yet" } else { "" }),
            format!(
                "the MTA has no transport entry sending {d} to listrelay, or one with another port than listrelay's LMTP listener ({}){}",
                plan.lmtp,
                if plan.mta_log.is_some() { "" } else { " (--mta-log /var/log/mail.log tells which)" }
            ),
            [transport(), port()].concat(),
        ),
    }
}

/// The last line of the MTA's log about `rcpt`'s delivery (Postfix `to=<…>`,
/// Exim `=>`, `->`, `==`, `**`).
fn log_line(path: &std::path::Path, rcpt: &str) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL))).ok()?;
    let mut text = Vec::new();
    f.read_to_end(&mut text).ok()?;
    let text = String::from_utf8_lossy(&text);
    let rcpt = rcpt.to_ascii_lowercase();
    text.lines()
        .rev()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.contains(&rcpt)
                && (l.contains(" to=<")
                    || [" => ", " -> ", " == ", " ** "]
                        .iter()
                        .any(|m| l.contains(m)))
        })
        .map(|l| l.trim().to_string())
}

/// Whether the log line is of a delivery attempt over LMTP (Postfix's
/// `postfix/lmtp[…]`, Exim's `T=listrelay_lmtp`).
fn via_lmtp(line: &str) -> bool {
    line.to_ascii_lowercase().contains("lmtp")
}

fn delivered(line: &str) -> bool {
    line.contains("status=sent") || line.contains(" => ") || line.contains(" -> ")
}

fn reinject_hop(plan: &Plan, sent: &Result<Sent, SendError>) -> Hop {
    let hop = HopName::ReinjectionAccepted;
    let listener = || {
        vec![
            fix("listrelay", format!("smtp.relay (now {}) must name the MTA's re-injection listener", plan.reinject)),
            fix("postfix", format!("the re-injection service `{} inet n - n - - smtpd` with its -o lines in master.cf (master.cf.snippet of `listrelay integration postfix`), then `postfix reload`", plan.reinject)),
            fix("exim", format!("`{}` in local_interfaces (main.conf.snippet of `listrelay integration exim`, macro LISTRELAY_REINJECT_PORT), then restart Exim", plan.reinject.replace(':', "."))),
        ]
    };
    match sent {
        Ok(s) => pass(hop, s.took_ms, format!("{}: {}", plan.reinject, s.reply)),
        Err(SendError::Connect(e)) => fail(
            hop,
            e.clone(),
            format!("nothing answers SMTP on listrelay's re-injection address {}: no post or notice can leave", plan.reinject),
            listener(),
        ),
        Err(SendError::Recipient { reply, .. }) | Err(SendError::Refused { reply, .. }) => fail(
            hop,
            reply.clone(),
            format!("the MTA's listener on {} refuses listrelay's mail", plan.reinject),
            [
                vec![
                    fix("postfix", "the re-injection service's -o lines: mynetworks=127.0.0.0/8, smtpd_relay_restrictions=permit_mynetworks,reject, smtpd_recipient_restrictions="),
                    fix("exim", "the re-injection `accept condition = ${if ={$received_port}{LISTRELAY_REINJECT_PORT}}` at the top of acl_check_rcpt"),
                ],
                listener(),
            ]
            .concat(),
        ),
    }
}

fn return_hop(
    plan: &Plan,
    probe: &ProbeTicket,
    sent: Option<u64>,
    seen: &ProbeSeen,
    before: &[Hop],
) -> Hop {
    let hop = HopName::ReturnOverLmtp;
    let Some(sent) = sent else {
        return fail(
            hop,
            "not tried".into(),
            "the re-injection was refused (hop 4)".into(),
            Vec::new(),
        );
    };
    if let Some(t) = seen.return_data_ms {
        return pass(
            hop,
            t.saturating_sub(sent),
            format!("listrelay received {} (and dropped it)", probe.back),
        );
    }
    let passed = |n| {
        before
            .iter()
            .any(|h| h.hop == n && h.status == Status::Pass)
    };
    let mut h = not_routed(plan, probe, &probe.back, hop);
    let refused = h.detail.contains(" ** ") || h.detail.contains("status=bounced");
    if refused {
        // The MTA's routing failed the bounce address outright: most often
        // its tag is not matched.
        h.cause = Some(format!(
            "the MTA does not route {} back to listrelay: its bounce addresses ({}-bounces{}TAG) are not matched",
            probe.back,
            address::PROBE_LOCAL,
            probe.delimiter
        ));
        h.fixes.insert(
            0,
            fix(
                "exim",
                format!(
                    "local_part_suffix = {}* and local_part_suffix_optional in the listrelay router; {}-bounces in its local_parts",
                    probe.delimiter,
                    address::PROBE_LOCAL
                ),
            ),
        );
    } else if passed(HopName::SmtpAccepted) && !passed(HopName::RoutedToListrelay) {
        h.cause = Some(format!(
            "as for the forward probe (hop 2): {}",
            h.cause.unwrap_or_default()
        ));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_delivery_line_of_either_mta() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let rcpt = "listrelay-probe+abc.def@l.org";
        std::fs::write(
            &p,
            format!(
                "Dec  1 10:00:00 mta postfix/smtpd[1]: connect from localhost\n\
                 Dec  1 10:00:01 mta postfix/lmtp[2]: 4AB: to=<{rcpt}>, relay=none, delay=1, status=deferred (connect to 127.0.0.1[127.0.0.1]:9: Connection refused)\n\
                 2026-12-01 10:00:02 1abc-000-AB == {rcpt} R=listrelay_l_org T=listrelay_lmtp defer (111): Connection refused\n"
            ),
        )
        .unwrap();
        let l = log_line(&p, rcpt).unwrap();
        assert!(l.contains("defer (111)"), "{l}");
        assert!(via_lmtp(&l) && !delivered(&l));
        assert!(delivered(
            "4AB: to=<x>, relay=127.0.0.1[127.0.0.1]:25, status=sent (250 ok)"
        ));
        assert!(log_line(&p, "other@l.org").is_none());
    }

    #[test]
    fn exit_code_names_the_first_failed_hop() {
        let t = ProbeTicket {
            id: "x".into(),
            domain: "l.org".into(),
            forward: "f".into(),
            back: "b".into(),
            delimiter: '+',
        };
        let ok = pass(HopName::SmtpAccepted, 1, String::new());
        let bad = fail(
            HopName::ReinjectionAccepted,
            String::new(),
            String::new(),
            Vec::new(),
        );
        assert_eq!(Report::new(t.clone(), vec![ok.clone()]).exit_code, 0);
        let r = Report::new(t, vec![ok, bad]);
        assert_eq!((r.passed, r.exit_code), (false, 14));
    }
}
