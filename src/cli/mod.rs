//! The command line: `listrelay serve` and the administration commands. Every
//! administration command is an [`admin::Request`] sent by the [`client`] to
//! the running server over its admin socket, or executed on the store itself
//! when no server runs; [`print`] renders the answer. [`args`] is the grammar.

pub mod args;
pub mod client;
pub mod digest;
pub mod generate;
pub mod import_from;
pub mod print;

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;

use crate::address::{self, Address};
use crate::admin::protocol::InvalidAddress;
use crate::admin::{Request, Response};
use crate::config::{Config, Overrides, SocketAddress, StoreKind};
use crate::store::PostgresStore;

pub use args::{
    BanCmd, BounceCmd, CheckCmd, CheckMtaArgs, Cli, Command, DkimCmd, DomainCmd, HeldCmd,
    ImportArgs, ListCmd, MemberCmd, TokenCmd,
};
use client::Client;
use print::{Format, Printer};

/// Members sent per admin request during an import: large enough that the
/// per-request cost (a round trip, a store sync) vanishes at a million
/// members, small enough that a request stays far below the socket's limit.
const IMPORT_SLICE: usize = 10_000;

/// Exit status when the command did its work but refused some of its input
/// (invalid addresses in `member add` or `member import`).
const EXIT_REFUSED: u8 = 3;

/// Exit status of `check mta` when no server runs (11-15: a failed hop).
const EXIT_NO_SERVER: u8 = 4;

/// A check that ran and found a problem (printed above), or could not run;
/// the exit status says which (docs/operations.md).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CheckFailed {
    code: u8,
    message: String,
}

/// Some of the addresses given were refused; the others were done.
#[derive(Debug, thiserror::Error)]
#[error("{0} address(es) refused (listed above); the others were done")]
pub struct Refused(usize);

/// Reports a failed command on stderr and picks the exit status (listed in
/// docs/operations.md). A closed stdout (`listrelay member list | head`) is
/// not a failure: the reader has what it wanted.
pub fn failure(e: &anyhow::Error) -> std::process::ExitCode {
    if closed_output(e) {
        return std::process::ExitCode::SUCCESS;
    }
    let _ = writeln!(std::io::stderr(), "listrelay: {}", error_text(e));
    if e.downcast_ref::<Refused>().is_some() {
        std::process::ExitCode::from(EXIT_REFUSED)
    } else if let Some(c) = e.downcast_ref::<CheckFailed>() {
        std::process::ExitCode::from(c.code)
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Whether the error comes from writing to a closed pipe.
fn closed_output(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, each said once: many errors already quote their
/// cause in their own text, and repeating it buries the message.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        lmtp: cli.lmtp.clone(),
        smtp: cli.smtp.clone(),
        hostname: cli.hostname.clone(),
    };
    if let Command::Bounce(BounceCmd::Parse) = cli.command {
        return bounce_parse();
    }
    match &cli.command {
        Command::GenerateMan { dir } => return generate::man_pages(dir),
        Command::GenerateCompletions { dir } => return generate::completions(dir),
        _ => {}
    }
    let config = Config::load(cli.config_file().as_deref(), &overrides)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(cli, config))
}

async fn run(cli: Cli, config: Config) -> Result<()> {
    let format = if cli.json {
        Format::Json
    } else {
        Format::Human
    };
    match cli.command {
        Command::Serve => crate::serve::serve(config).await,
        Command::CheckConfig => {
            write!(std::io::stdout().lock(), "{}", config.to_toml())?;
            eprintln!("configuration is valid");
            Ok(())
        }
        Command::Bounce(BounceCmd::Parse) => bounce_parse(),
        Command::Integration { mta, out } => integration(&config, &mta, out).await,
        Command::Check(CheckCmd::Mta(args)) => check_mta(&config, args, format).await,
        Command::Member(MemberCmd::Import(args)) => import(&config, args, cli.json).await,
        Command::Migrate => migrate(&config).await,
        Command::ImportFrom(cmd) => import_from::run(&config, cmd, format).await,
        Command::Digest(cmd) => digest::run(&config, cmd, format).await,
        Command::Dkim(c) => dkim(&config, c, cli.json),
        Command::Export { file } => export_store(&config, file).await,
        Command::Import { file } => import_store(&config, file, cli.json).await,
        Command::Member(MemberCmd::Export { list, file }) => {
            let out: Box<dyn Write + Send> = match file {
                Some(f) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&f)
                        .with_context(|| format!("creating {}", f.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            administer(
                &config,
                Request::MemberList { list },
                Printer::new(out, Format::Addresses),
            )
            .await
        }
        other => administer(&config, request(other)?, Printer::stdout(format)).await,
    }
}

/// Sends one request and prints its items as they arrive, then its answer.
async fn administer(config: &Config, req: Request, mut printer: Printer) -> Result<()> {
    let response = Client::new(config)
        .call(req, &mut |item| printer.item(&item))
        .await?;
    printer.response(&response)?;
    match &response {
        Response::MembersAdded(r) if !r.invalid.is_empty() => Err(Refused(r.invalid.len()).into()),
        _ => Ok(()),
    }
}

/// The request an administration command sends.
fn request(cmd: Command) -> Result<Request> {
    Ok(match cmd {
        Command::Domain(c) => match c {
            DomainCmd::Create { name, opaque } => Request::DomainCreate { name, opaque },
            DomainCmd::List => Request::DomainList,
            DomainCmd::Set { name, key, value } => Request::DomainSet { name, key, value },
            DomainCmd::Delete { name } => Request::DomainDelete { name },
        },
        Command::List(c) => match c {
            ListCmd::Create { address } => Request::ListCreate { address },
            ListCmd::Show { address } => Request::ListShow { address },
            ListCmd::List { domain } => Request::ListList { domain },
            ListCmd::Set {
                address,
                key,
                value,
            } => Request::ListSet {
                address,
                key,
                value,
            },
            ListCmd::Delete { address } => Request::ListDelete { address },
        },
        Command::Member(c) => match c {
            MemberCmd::Add { list, addresses } => Request::MemberAdd { list, addresses },
            MemberCmd::Remove { list, addresses } => Request::MemberRemove { list, addresses },
            MemberCmd::List { list } => Request::MemberList { list },
            MemberCmd::Set {
                list,
                address,
                key,
                value,
            } => Request::MemberSet {
                list,
                address,
                key,
                value,
            },
            MemberCmd::Import(_) | MemberCmd::Export { .. } => bail!("handled elsewhere"),
        },
        Command::Ban(c) => match c {
            BanCmd::Add { list, pattern } => Request::BanAdd { list, pattern },
            BanCmd::Remove { list, pattern } => Request::BanRemove { list, pattern },
            BanCmd::List { list } => Request::BanList { list },
        },
        Command::Queue { body: Some(id) } => Request::MessageBody { id },
        Command::Queue { body: None } => Request::Queue,
        Command::Bounce(BounceCmd::Show { list, member }) => Request::BounceShow { list, member },
        Command::Bounce(BounceCmd::Reset { list, member }) => Request::BounceReset { list, member },
        Command::Held(c) => {
            use crate::moderation::Action;
            let act = |list, message_id, action| Request::HeldAct {
                list,
                message_id,
                action,
                reason: None,
            };
            match c {
                HeldCmd::List { list } => Request::HeldList { list },
                HeldCmd::Show { list, message_id } => Request::HeldShow { list, message_id },
                HeldCmd::Approve { list, message_id } => act(list, message_id, Action::Approve),
                HeldCmd::Reject {
                    list,
                    message_id,
                    reason,
                } => Request::HeldAct {
                    list,
                    message_id,
                    action: Action::Reject,
                    reason,
                },
                HeldCmd::Discard { list, message_id } => act(list, message_id, Action::Discard),
            }
        }
        Command::Token(c) => token_request(c)?,
        Command::Audit {
            list,
            since,
            after,
            limit,
        } => Request::AuditList {
            list,
            since: since.as_deref().map(past_time).transpose()?,
            after,
            limit,
        },
        _ => bail!("not an administration command"),
    })
}

/// Asks the running server about a probe, over the admin socket only: the
/// store opened here would see nothing of what arrives.
struct ServerWatch {
    socket: std::path::PathBuf,
}

impl ServerWatch {
    async fn ask(&self, req: Request) -> Result<Response> {
        let no_items = &mut |item| {
            Err(std::io::Error::other(format!(
                "unexpected streamed item {item:?}"
            )))
        };
        match crate::admin::call(&self.socket, &req, no_items).await {
            Ok(r) => Ok(r),
            Err(crate::admin::CallError::NoServer(path)) => Err(CheckFailed {
                code: EXIT_NO_SERVER,
                message: format!(
                    "no listrelay server answers on {path}: `check mta` watches what the running server receives; start it (`systemctl start listrelay` or `listrelay serve`, with the same --config or --data-dir) and run the check again"
                ),
            }
            .into()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait::async_trait]
impl crate::check::mta::Watch for ServerWatch {
    async fn seen(&mut self, id: &str) -> Result<crate::check::probe::ProbeSeen> {
        match self.ask(Request::ProbeStatus { id: id.into() }).await? {
            Response::ProbeSeen(s) => Ok(s),
            other => bail!("unexpected answer to a probe request: {other:?}"),
        }
    }
}

/// `check mta`: the probes through the MTA, each hop printed.
async fn check_mta(config: &Config, args: CheckMtaArgs, format: Format) -> Result<()> {
    let mut watch = ServerWatch {
        socket: config.admin_socket(),
    };
    let probe = match watch
        .ask(Request::ProbeStart {
            domain: args.domain,
        })
        .await?
    {
        Response::ProbeStarted(t) => t,
        other => bail!("unexpected answer to a probe request: {other:?}"),
    };
    let plan = crate::check::mta::Plan {
        public: args.public,
        reinject: config.smtp.relay.to_string(),
        lmtp: config
            .lmtp
            .listen
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        timeout: std::time::Duration::from_secs(args.timeout),
        mta_log: args.mta_log,
        helo: config.hostname.clone(),
    };
    let report = crate::check::mta::run(&plan, probe, &mut watch).await?;
    print::check_mta(&mut std::io::stdout().lock(), format, &report)?;
    match report.first_failure() {
        None => Ok(()),
        Some(h) => Err(CheckFailed {
            code: report.exit_code,
            message: format!(
                "the MTA check failed at hop {} ({})",
                h.hop as u8,
                h.hop.label()
            ),
        }
        .into()),
    }
}

/// The request a `token` command sends.
fn token_request(cmd: TokenCmd) -> Result<Request> {
    Ok(match cmd {
        TokenCmd::Create {
            role,
            lists,
            expires,
            description,
        } => Request::TokenCreate {
            role: role.parse().map_err(anyhow::Error::msg)?,
            lists,
            expires_at: expires.as_deref().map(future_time).transpose()?,
            description,
        },
        TokenCmd::List => Request::TokenList,
        TokenCmd::Revoke { id } => Request::TokenRevoke {
            // The whole token works too: its id is the part after `lrt_`.
            id: id
                .strip_prefix(crate::admin::access::TOKEN_PREFIX)
                .and_then(|rest| rest.split_once('_'))
                .map_or(id.clone(), |(id, _)| id.to_string()),
        },
    })
}

/// A span such as `90d`, `12h`, `30m`, `45s` or `2w`, in seconds; `None`
/// when `s` has no unit (then it is a time, seconds since the epoch).
fn span(s: &str) -> Result<Option<u64>> {
    let s = s.trim();
    let Some(unit) = s.chars().last().filter(|c| c.is_ascii_alphabetic()) else {
        return Ok(None);
    };
    let n: u64 = s[..s.len() - 1]
        .parse()
        .with_context(|| format!("{s:?}: expected a number then s, m, h, d or w"))?;
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => crate::clock::DAY,
        'w' => 7 * crate::clock::DAY,
        _ => bail!("{s:?}: the unit must be s, m, h, d or w"),
    };
    Ok(Some(n.saturating_mul(per)))
}

/// `--expires`: a span from now, or seconds since the epoch.
fn future_time(s: &str) -> Result<u64> {
    match span(s)? {
        Some(d) => Ok(crate::clock::now().saturating_add(d)),
        None => s
            .trim()
            .parse()
            .with_context(|| format!("{s:?}: give a span such as 90d or seconds since the epoch")),
    }
}

/// `--since`: a span before now, or seconds since the epoch.
fn past_time(s: &str) -> Result<u64> {
    match span(s)? {
        Some(d) => Ok(crate::clock::now().saturating_sub(d)),
        None => s
            .trim()
            .parse()
            .with_context(|| format!("{s:?}: give a span such as 7d or seconds since the epoch")),
    }
}

/// `export`: the whole store as JSON lines.
async fn export_store(config: &Config, file: Option<std::path::PathBuf>) -> Result<()> {
    let store = crate::site::open_existing_store(config).await?;
    let mut out: Box<dyn Write> = match &file {
        Some(f) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(f).with_context(|| format!("creating {}", f.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let counts = crate::store::transfer::export(store.as_ref(), &mut out).await?;
    eprintln!("exported {}", serde_json::to_string(&counts)?);
    Ok(())
}

/// `import`: an export read into an empty store.
async fn import_store(config: &Config, file: Option<std::path::PathBuf>, json: bool) -> Result<()> {
    let store = crate::site::open_store(config).await?;
    let mut input: Box<dyn BufRead> = match &file {
        Some(f) if f.as_os_str() != "-" => Box::new(std::io::BufReader::new(
            std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };
    let counts = crate::store::transfer::import(store.as_ref(), &mut input).await?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&counts)?)?;
    } else {
        writeln!(out, "imported {}", serde_json::to_string(&counts)?)?;
    }
    Ok(())
}

async fn migrate(config: &Config) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let StoreKind::Postgres(url) = config.store_kind() else {
        writeln!(out, "the embedded store (sled) has no schema migrations")?;
        return Ok(());
    };
    let store = PostgresStore::connect(&url)?;
    let before = store.schema_version().await?;
    let applied = store.migrate().await?;
    for (version, name) in &applied {
        writeln!(out, "applied migration {version}: {name}")?;
    }
    let after = store.schema_version().await?;
    if applied.is_empty() {
        writeln!(out, "schema at version {after}; nothing to do")?;
    } else {
        writeln!(out, "schema migrated from version {before} to {after}")?;
    }
    Ok(())
}

/// A line of a member import that is not an address.
#[derive(Debug, Serialize)]
struct InvalidLine {
    /// Line number in the file, from 1.
    line: usize,
    #[serde(flatten)]
    refused: InvalidAddress,
}

/// What `member import` did (its `--json` output).
#[derive(Debug, Serialize)]
struct ImportReport {
    /// Members added.
    added: u64,
    /// Addresses that were members already.
    already: u64,
    /// Lines refused.
    invalid: Vec<InvalidLine>,
}

async fn import(config: &Config, args: ImportArgs, json: bool) -> Result<()> {
    let (input, size): (Box<dyn BufRead>, Option<u64>) = match &args.file {
        Some(f) if f.as_os_str() != "-" => {
            let file =
                std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(std::io::BufReader::new(file)), size)
        }
        _ => (Box::new(std::io::stdin().lock()), None),
    };
    let bar = import_progress(size);
    let mut report = ImportReport {
        added: 0,
        already: 0,
        invalid: Vec::new(),
    };
    let mut client = Client::new(config);
    // The input is read as it is sent, one slice at a time, so a million
    // lines never sit in memory at once.
    let mut slice = Vec::with_capacity(IMPORT_SLICE);
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        bar.inc(line.len() as u64 + 1);
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match Address::parse(text) {
            Ok(_) => slice.push(text.to_string()),
            Err(e) => report.invalid.push(InvalidLine {
                line: n + 1,
                refused: InvalidAddress {
                    address: text.to_string(),
                    error: e.to_string(),
                },
            }),
        }
        if slice.len() == IMPORT_SLICE {
            add_slice(
                &mut client,
                &args.list,
                std::mem::take(&mut slice),
                &mut report,
            )
            .await?;
            bar.set_message(format!("{} added", report.added));
        }
    }
    if !slice.is_empty() {
        add_slice(&mut client, &args.list, slice, &mut report).await?;
    }
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        writeln!(
            out,
            "{} added, {} already members, {} invalid",
            report.added,
            report.already,
            report.invalid.len()
        )?;
        for i in &report.invalid {
            eprintln!(
                "line {}: {:?}: {}",
                i.line, i.refused.address, i.refused.error
            );
        }
    }
    out.flush()?;
    match report.invalid.len() {
        0 => Ok(()),
        n => Err(Refused(n).into()),
    }
}

/// The import's progress on stderr: bytes of the file read when its size is
/// known, else a count. Hidden when stderr is not a terminal (indicatif's own
/// rule), so scripts and tests see only the report.
fn import_progress(size: Option<u64>) -> indicatif::ProgressBar {
    let (bar, template) = match size {
        Some(len) => (
            indicatif::ProgressBar::new(len),
            "{bar:40} {bytes}/{total_bytes} {msg} {bytes_per_sec} eta {eta}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{spinner} {bytes} read, {msg} {bytes_per_sec}",
        ),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Sends one slice of an import and adds its outcome to the report.
async fn add_slice(
    client: &mut Client,
    list: &str,
    addresses: Vec<String>,
    report: &mut ImportReport,
) -> Result<()> {
    let req = Request::MemberAdd {
        list: list.to_string(),
        addresses,
    };
    match client.ask(req).await? {
        Response::MembersAdded(r) => {
            report.added += r.added;
            report.already += r.already;
            Ok(())
        }
        other => bail!("unexpected answer to a member add: {other:?}"),
    }
}

async fn integration(config: &Config, mta: &str, out: Option<std::path::PathBuf>) -> Result<()> {
    // One client: a second would try to open the store a second time.
    let mut client = Client::new(config);
    let Response::Lists(lists) = client.ask(Request::ListList { domain: None }).await? else {
        bail!("unexpected answer to a list request");
    };
    let Response::Domains(domains) = client.ask(Request::DomainList).await? else {
        bail!("unexpected answer to a domain request");
    };
    let mut params = crate::integration::Params {
        domains: Vec::new(),
        lmtp: match config.lmtp.listen.first() {
            Some(SocketAddress::Unix(p)) => crate::integration::LmtpTarget::Unix(p.clone()),
            Some(SocketAddress::Tcp(a)) => crate::integration::LmtpTarget::Tcp(a.clone()),
            None => bail!("lmtp.listen is empty"),
        },
        reinject: config.smtp.relay.to_string(),
        delimiter: config.intake.recipient_delimiter,
    };
    for d in domains {
        let local_parts = lists
            .iter()
            .filter_map(|l| Address::parse(&l.address).ok())
            .filter(|a| a.domain() == d.name)
            .flat_map(|a| address::list_local_parts(a.local()))
            // the addresses `listrelay check mta` probes
            .chain(address::probe_local_parts())
            .collect();
        params.domains.push(crate::integration::DomainParams {
            name: d.name,
            local_parts,
        });
    }
    let snippets = match mta {
        "postfix" => crate::integration::postfix(&params),
        _ => crate::integration::exim(&params),
    };
    let text = match out {
        Some(dir) => crate::integration::write_files(mta, &snippets, &dir)?,
        None => crate::integration::one_stream(&snippets),
    };
    write!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// `listrelay dkim …`: the key files, written and read here directly (no
/// server needed; a running server picks the change up by itself).
fn dkim(config: &Config, cmd: DkimCmd, json: bool) -> Result<()> {
    use crate::auth::keydir;
    let root = keydir::root(&config.data_dir);
    let mut out = std::io::stdout().lock();
    let show = |out: &mut dyn Write, k: &crate::auth::DkimKeyRecord| -> Result<()> {
        let txt = k.dns_txt()?;
        if json {
            let v = serde_json::json!({
                "domain": k.domain, "selector": k.selector, "algorithm": k.algorithm,
                "created_at": k.created_at, "dns_name": k.dns_name(), "dns_txt": txt,
            });
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "{} {} (created {})",
                k.dns_name(),
                k.algorithm,
                crate::notice::rfc5322_date(k.created_at)
            )?;
            // Zone-file syntax: one TXT record, as strings of at most 255
            // bytes (an RSA-2048 key needs two).
            let strings: Vec<String> = txt
                .as_bytes()
                .chunks(255)
                .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
                .collect();
            writeln!(out, "{}. IN TXT {}", k.dns_name(), strings.join(" "))?;
        }
        Ok(())
    };
    match cmd {
        DkimCmd::Keygen {
            domain,
            selector,
            algorithm,
        } => {
            let algorithm: crate::auth::Algorithm = algorithm.parse()?;
            let now = crate::clock::now();
            let selector = selector.unwrap_or_else(|| {
                let alg = match algorithm {
                    crate::auth::Algorithm::RsaSha256 => "rsa",
                    crate::auth::Algorithm::Ed25519Sha256 => "ed",
                };
                format!("lr{}{alg}", crate::clock::day_of(now))
            });
            let key = crate::auth::keys::generate(&domain, &selector, algorithm, now)?;
            let path = keydir::save(&root, &key)?;
            eprintln!("stored {}; publish this record in DNS:", path.display());
            show(&mut out, &key)
        }
        DkimCmd::List { domain } => {
            let keys = match domain {
                Some(d) => keydir::load_domain(&root, &d)?,
                None => keydir::load_all(&root)?,
            };
            if keys.is_empty() && !json {
                eprintln!("no DKIM keys: `listrelay dkim keygen DOMAIN` makes one");
            }
            keys.iter().try_for_each(|k| show(&mut out, k))
        }
        DkimCmd::Remove { domain, selector } => {
            keydir::remove(&root, &domain, &selector)?;
            eprintln!("removed {selector}._domainkey.{domain}; keep its DNS record a few days for mail in transit");
            Ok(())
        }
    }
}

fn bounce_parse() -> Result<()> {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut raw).context("reading stdin")?;
    let report = crate::bounce::parse(&raw);
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string(&report)?
    )?;
    Ok(())
}
