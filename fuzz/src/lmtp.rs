//! The LMTP session target's site and client: a sled store on tmpfs (its
//! fsyncs cost nothing there) with two lists, an intake over it, and a client
//! that pipelines commands as an MTA does, then checks that the replies pair
//! up with them: one per command, one per accepted recipient after DATA or the
//! last BDAT chunk, nothing more.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use listrelay::address::Address;
use listrelay::intake::Intake;
use listrelay::lmtp::{run_session, SessionConfig};
use listrelay::model::{Domain, List};
use listrelay::store::{SledStore, Store};
use smtp_proto::Request;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The session limits, small enough that the fuzzer reaches them.
pub fn session_config() -> SessionConfig {
    SessionConfig {
        hostname: "lmtp.fuzz.test".into(),
        max_message_size: 8 * 1024,
        max_recipients: 8,
        max_line_length: 512,
        command_timeout: Duration::from_secs(60),
        data_timeout: Duration::from_secs(60),
    }
}

/// A store is replaced after this many sessions, so tmpfs holds only a few
/// thousand stored posts at a time.
const SESSIONS_PER_STORE: u32 = 2_000;

/// The list domain of the site.
pub const DOMAIN: &str = "lists.example.org";

struct Site {
    rt: tokio::runtime::Runtime,
    /// Keeps the store's directory until the site is replaced.
    _dir: tempfile::TempDir,
    intake: Intake,
    sessions: u32,
}

fn tmpfs_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("listrelay-fuzz-")
        .tempdir_in(shm);
    builder.unwrap_or_else(|_| tempfile::tempdir().expect("a temporary directory"))
}

impl Site {
    fn new() -> Site {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tmpfs_dir();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("a sled store"));
        rt.block_on(async {
            store
                .create_domain(&Domain {
                    name: DOMAIN.into(),
                    opaque: false,
                    arc_seal: None,
                    created_at: 0,
                })
                .await
                .expect("domain");
            for (name, policy) in [("dev", "discard"), ("ops", "reject")] {
                let mut list = List::new(Address::parse(&format!("{name}@{DOMAIN}")).unwrap());
                list.settings.set("duplicate_policy", policy).unwrap();
                store.create_list(&list).await.expect("list");
            }
        });
        Site {
            rt,
            _dir: dir,
            intake: Intake::new(store, '+'),
            sessions: 0,
        }
    }
}

static SITE: Mutex<Option<Site>> = Mutex::new(None);

/// One pipelined step of the client: a command line, and for DATA the data
/// block it sends once (and only if) the session answers 354.
#[derive(Debug)]
pub struct Step {
    line: Vec<u8>,
    kind: Kind,
    data: Vec<u8>,
}

/// The longest BDAT chunk a script may announce (more is left out).
const MAX_CHUNK: usize = 64 * 1024;

/// Reads a client script, an LMTP transcript as an MTA would send it: command
/// lines; after `DATA`, the message up to a line holding a single dot (sent
/// normalised to CRLF and dot-stuffed, whatever the script's line ends); after
/// `BDAT n`, n bytes (padded if the script ends first). Every line is
/// classified with smtp-proto, the session's own parser.
pub fn steps(script: &[u8]) -> Vec<Step> {
    let max_line = session_config().max_line_length;
    let mut steps = Vec::new();
    let mut rest = script;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let mut line = rest[..end].to_vec();
        rest = &rest[end..];
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        let parsed = if line.len() > max_line {
            None
        } else {
            Request::parse(&mut line.iter()).ok()
        };
        let kind = match parsed {
            Some(Request::Lhlo { .. }) => Kind::Lhlo,
            Some(Request::Mail { .. }) => Kind::Mail,
            Some(Request::Rcpt { .. }) => Kind::Rcpt,
            Some(Request::Rset) => Kind::Rset,
            Some(Request::Data) => {
                let (block, after) = data_block(rest);
                rest = after;
                steps.push(Step {
                    line,
                    kind: Kind::Data,
                    data: block,
                });
                continue;
            }
            Some(Request::Bdat {
                chunk_size,
                is_last,
            }) => {
                if chunk_size > MAX_CHUNK {
                    continue;
                }
                let n = chunk_size.min(rest.len());
                line.extend_from_slice(&rest[..n]);
                line.resize(line.len() + chunk_size - n, b'x');
                rest = &rest[n..];
                Kind::Bdat { last: is_last }
            }
            _ => Kind::Other,
        };
        steps.push(Step {
            line,
            kind,
            data: Vec::new(),
        });
    }
    steps
}

/// What the client expects the reply (or replies) to a step to be about.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Lhlo,
    Mail,
    Rcpt,
    Data,
    Bdat { last: bool },
    Rset,
    Other,
}

/// A reply as read from the wire.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

/// Reads one (possibly multi-line) reply, checking its form; `None` at the end.
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<Reply> {
    let mut lines: Vec<String> = Vec::new();
    loop {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line)
            .await
            .expect("reading from the session");
        if line.is_empty() {
            assert!(
                lines.is_empty(),
                "the session ended inside a reply: {lines:?}"
            );
            return None;
        }
        let text = String::from_utf8(line).expect("a reply is UTF-8");
        assert!(
            text.ends_with("\r\n"),
            "a reply line ends with CRLF: {text:?}"
        );
        let body = &text[..text.len() - 2];
        assert!(
            !body.contains(['\r', '\n']),
            "a reply line holds no line break: {text:?}"
        );
        let code: u16 = body
            .get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("a reply starts with a code: {text:?}"));
        assert!((200..600).contains(&code), "reply code {code} out of range");
        let sep = body.as_bytes().get(3).copied();
        if let Some(first) = lines.first() {
            assert!(
                first.starts_with(&body[..3]),
                "one code per reply: {lines:?} then {body:?}"
            );
        }
        lines.push(body.to_string());
        match sep {
            Some(b'-') => continue,
            None | Some(b' ') => return Some(Reply { code, lines }),
            Some(_) => panic!("bad separator after the code: {text:?}"),
        }
    }
}

/// The data block after DATA in a script: its lines up to a line holding a
/// single dot, as CRLF lines, dot-stuffed, then the terminator; and what
/// follows in the script.
fn data_block(script: &[u8]) -> (Vec<u8>, &[u8]) {
    let mut out = Vec::new();
    let mut rest = script;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line: Vec<u8> = rest[..end]
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        rest = &rest[end..];
        if line == b"." {
            break;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    (out, rest)
}

/// Runs one session over `ops` and checks the replies pair up with them.
pub fn run(script: &[u8]) {
    let steps = steps(script);
    let mut guard = SITE.lock().unwrap_or_else(|p| p.into_inner());
    if guard
        .as_ref()
        .is_none_or(|s| s.sessions >= SESSIONS_PER_STORE)
    {
        *guard = None; // drop the old store before opening the next
        *guard = Some(Site::new());
    }
    let site = guard.as_mut().expect("a site");
    site.sessions += 1;
    let cfg = session_config();
    let intake = &site.intake;
    site.rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (sr, sw) = tokio::io::split(server);
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let session = run_session(sr, sw, intake, &cfg, stop_rx);
        let check = async {
            let (cr, mut cw) = tokio::io::split(client);
            let mut cr = BufReader::new(cr);
            drive(&steps, &mut cr, &mut cw).await;
            let _ = cw.shutdown().await;
            // The 20th refused command in a row gets its reply and then
            // the session's 421; nothing else may follow the last answer.
            if let Some(extra) = read_reply(&mut cr).await {
                assert_eq!(extra.code, 421, "a reply nobody asked for: {extra:?}");
                if let Some(more) = read_reply(&mut cr).await {
                    panic!("a reply after the session closed: {more:?}");
                }
            }
        };
        let both = async { tokio::join!(session, check) };
        if tokio::time::timeout(Duration::from_secs(20), both)
            .await
            .is_err()
        {
            panic!("the session stalled: fewer replies than commands and recipients");
        }
    });
}

async fn drive<R, W>(steps: &[Step], r: &mut R, w: &mut W)
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let greeting = read_reply(r).await.expect("a greeting");
    assert_eq!(greeting.code, 220, "{greeting:?}");
    let (mut in_txn, mut accepted) = (false, 0usize);
    // Pipelined as RFC 2920 allows: every command up to and including the
    // next DATA in one write, then the replies are read.
    let mut at = 0;
    while at < steps.len() {
        let group_end = steps[at..]
            .iter()
            .position(|s| s.kind == Kind::Data)
            .map_or(steps.len(), |i| at + i + 1);
        let group = &steps[at..group_end];
        at = group_end;
        let bytes: Vec<u8> = group.iter().flat_map(|s| s.line.iter().copied()).collect();
        if w.write_all(&bytes).await.is_err() {
            return;
        }
        for step in group {
            if !answer(step, r, w, &mut in_txn, &mut accepted).await {
                return;
            }
        }
    }
}

/// Reads the replies to one step and follows the transaction; `false` once
/// the session is closing.
async fn answer<R, W>(
    step: &Step,
    r: &mut R,
    w: &mut W,
    in_txn: &mut bool,
    accepted: &mut usize,
) -> bool
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let kind = step.kind;
    let Some(first) = read_reply(r).await else {
        panic!("the session closed without answering {kind:?}");
    };
    if first.code == 221 || first.code == 421 {
        return false;
    }
    let ok = (200..300).contains(&first.code);
    match kind {
        Kind::Lhlo | Kind::Rset if ok => (*in_txn, *accepted) = (false, 0),
        Kind::Mail if ok => (*in_txn, *accepted) = (true, 0),
        Kind::Rcpt if ok => {
            assert!(*in_txn, "RCPT accepted outside a transaction");
            *accepted += 1;
        }
        Kind::Data if first.code == 354 => {
            assert!(*in_txn && *accepted > 0, "354 without recipients");
            if w.write_all(&step.data).await.is_err() {
                return false;
            }
            per_recipient(r, *accepted).await;
            (*in_txn, *accepted) = (false, 0);
        }
        Kind::Bdat { last: true } if *in_txn && *accepted > 0 => {
            check_recipient_reply(&first);
            per_recipient(r, *accepted - 1).await;
            (*in_txn, *accepted) = (false, 0);
        }
        _ => assert_ne!(first.code, 354, "354 to {kind:?}"),
    }
    true
}

fn check_recipient_reply(reply: &Reply) {
    assert!(
        reply.lines.len() == 1 && matches!(reply.code, 250 | 450..=452 | 550..=554),
        "a recipient's reply after the data: {reply:?}"
    );
}

async fn per_recipient<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, n: usize) {
    for i in 0..n {
        let reply = read_reply(r)
            .await
            .unwrap_or_else(|| panic!("only {i} of {n} recipient replies after the data"));
        check_recipient_reply(&reply);
    }
}
