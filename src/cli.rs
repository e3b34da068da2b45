//! The command line: `listrelay serve` and the administration commands. Every
//! administration command goes to the running server over its admin socket, or
//! opens the store itself when no server runs.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::address::{self, Address};
use crate::admin::{self, Admin, CallError, Request};
use crate::config::StoreKind;
use crate::config::{Config, Overrides, SocketAddress};
use crate::store::PostgresStore;

#[derive(Parser, Debug)]
#[command(
    name = "listrelay",
    version,
    about = "Mailing lists behind Postfix or Exim, over LMTP and SMTP"
)]
pub struct Cli {
    /// Configuration file (TOML); without one, embedded defaults apply.
    #[arg(long, global = true, env = "LISTRELAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the store and the spool (overrides `data_dir`).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// LMTP listening address, host:port or unix:PATH (overrides `lmtp.listen`).
    #[arg(long, global = true)]
    pub lmtp: Option<SocketAddress>,
    /// The MTA's re-injection SMTP address (overrides `smtp.relay`).
    #[arg(long, global = true)]
    pub smtp: Option<SocketAddress>,
    /// Host name used in greetings (overrides `hostname`).
    #[arg(long, global = true)]
    pub hostname: Option<String>,
    /// Print results as JSON, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: LMTP intake, fan-out, admin socket.
    Serve,
    /// Check the configuration and print it with every default filled in.
    CheckConfig,
    /// Manage virtual domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Manage lists.
    #[command(subcommand)]
    List(ListCmd),
    /// Manage list members.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Show queued messages, jobs, chunks and leases.
    Queue {
        /// Print one stored message exactly as it was received (or with the
        /// Message-ID intake added) instead.
        #[arg(long, value_name = "ID")]
        body: Option<String>,
    },
    /// Print the MTA configuration for the configured domains.
    Integration {
        #[arg(value_parser = ["postfix", "exim"])]
        mta: String,
    },
    /// Bounce tools.
    #[command(subcommand)]
    Bounce(BounceCmd),
    /// Posts held for moderation.
    #[command(subcommand)]
    Held(HeldCmd),
    /// Apply the PostgreSQL schema migrations this version needs (`serve`
    /// also applies them at start).
    Migrate,
    /// Write everything the store holds (lists, members, bounce state,
    /// queued and held messages, Message-ID windows, fan-out jobs, pending
    /// confirmations) to a file or stdout, as JSON lines. Stop the servers
    /// first.
    Export {
        /// Output file; stdout when absent.
        file: Option<PathBuf>,
    },
    /// Read an export into this configuration's store, which must be empty
    /// (e.g. from `sled` to `postgres://…` or back).
    Import {
        /// Input file; `-` or nothing for standard input.
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum HeldCmd {
    /// The held posts of a list.
    List { list: String },
    /// One held post, with the message.
    Show { list: String, message_id: String },
    /// Release the post to the members.
    Approve { list: String, message_id: String },
    /// Drop the post and tell its sender.
    Reject { list: String, message_id: String },
    /// Drop the post silently.
    Discard { list: String, message_id: String },
}

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    Create {
        name: String,
        /// Its members' bounce state is never shared with other domains.
        #[arg(long)]
        opaque: bool,
    },
    List,
    Set {
        name: String,
        key: String,
        value: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ListCmd {
    Create {
        address: String,
    },
    Show {
        address: String,
    },
    List {
        #[arg(long)]
        domain: Option<String>,
    },
    /// Change a per-list setting; it applies at once, no restart.
    Set {
        address: String,
        key: String,
        value: String,
    },
    Delete {
        address: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    Add {
        list: String,
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    Remove {
        list: String,
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    List {
        list: String,
    },
    /// Add members from a file (or - for stdin), one address per line.
    Import(ImportArgs),
    /// Set a member's flag: `moderated` or `delivery_enabled`, true or false.
    Set {
        list: String,
        address: String,
        key: String,
        value: String,
    },
    /// Print members one per line (to a file or stdout).
    Export {
        list: String,
        file: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    pub list: String,
    /// File to read; `-` or nothing for standard input.
    pub file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum BounceCmd {
    /// Parse one message on stdin and print what it reports, as JSON.
    Parse,
    /// Show bounce records: score, last bounce, reason, disabled, warnings.
    Show {
        list: String,
        member: Option<String>,
    },
    /// Forget a member's bounce record and re-enable their delivery.
    Reset { list: String, member: String },
}

/// Members sent per admin request during an import.
const IMPORT_SLICE: usize = 1000;

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
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(cli, config))
}

async fn run(cli: Cli, config: Config) -> Result<()> {
    match cli.command {
        Command::Serve => crate::serve::serve(config).await,
        Command::CheckConfig => {
            print!("{}", config.to_toml());
            eprintln!("configuration is valid");
            Ok(())
        }
        Command::Bounce(BounceCmd::Parse) => bounce_parse(),
        Command::Integration { mta } => integration(&config, &mta).await,
        Command::Member(MemberCmd::Import(args)) => import(&config, args, cli.json).await,
        Command::Migrate => migrate(&config).await,
        Command::Export { file } => {
            let store = crate::site::open_store(&config).await?;
            let mut out: Box<dyn Write> = match &file {
                Some(f) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(f)
                        .with_context(|| format!("creating {}", f.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let counts = crate::store::transfer::export(store.as_ref(), &mut out).await?;
            eprintln!("exported {}", serde_json::to_string(&counts)?);
            Ok(())
        }
        Command::Import { file } => {
            let store = crate::site::open_store(&config).await?;
            let mut input: Box<dyn BufRead> = match &file {
                Some(f) if f.as_os_str() != "-" => Box::new(std::io::BufReader::new(
                    std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?,
                )),
                _ => Box::new(std::io::stdin().lock()),
            };
            let counts = crate::store::transfer::import(store.as_ref(), &mut input).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&counts)?);
            } else {
                println!("imported {}", serde_json::to_string(&counts)?);
            }
            Ok(())
        }
        Command::Queue { body: Some(id) } => {
            let v = Client::new(&config)
                .call(Request::MessageBody { id })
                .await?;
            let body = hex::decode(v["body_hex"].as_str().unwrap_or_default())
                .context("the server sent a malformed body")?;
            std::io::stdout().lock().write_all(&body)?;
            Ok(())
        }
        Command::Member(MemberCmd::Export { list, file }) => {
            let v = Client::new(&config)
                .call(Request::MemberList { list })
                .await?;
            let mut out: Box<dyn Write> = match file {
                Some(f) => Box::new(
                    std::fs::File::create(&f)
                        .with_context(|| format!("creating {}", f.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            for m in v.as_array().into_iter().flatten() {
                writeln!(out, "{}", m["address"].as_str().unwrap_or_default())?;
            }
            Ok(())
        }
        other => {
            let req = request(other)?;
            let v = Client::new(&config).call(req.clone()).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_human(&req, &v);
            }
            Ok(())
        }
    }
}

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
        Command::Queue { .. } => Request::Queue,
        Command::Bounce(BounceCmd::Show { list, member }) => Request::BounceShow { list, member },
        Command::Bounce(BounceCmd::Reset { list, member }) => Request::BounceReset { list, member },
        Command::Held(c) => {
            use crate::moderation::Action;
            let act = |list, message_id, action| Request::HeldAct {
                list,
                message_id,
                action,
            };
            match c {
                HeldCmd::List { list } => Request::HeldList { list },
                HeldCmd::Show { list, message_id } => Request::HeldShow { list, message_id },
                HeldCmd::Approve { list, message_id } => act(list, message_id, Action::Approve),
                HeldCmd::Reject { list, message_id } => act(list, message_id, Action::Reject),
                HeldCmd::Discard { list, message_id } => act(list, message_id, Action::Discard),
            }
        }
        _ => bail!("not an administration command"),
    })
}

/// Talks to the running server, or opens the store when none runs.
struct Client {
    socket: PathBuf,
    config: Config,
    local: Option<Admin>,
}

impl Client {
    fn new(config: &Config) -> Self {
        Client {
            socket: config.admin_socket(),
            config: config.clone(),
            local: None,
        }
    }

    async fn call(&mut self, req: Request) -> Result<Value> {
        if self.local.is_none() {
            match admin::call(&self.socket, &req).await {
                Ok(v) => return Ok(v),
                Err(CallError::Refused(e)) => bail!("{e}"),
                Err(CallError::NoServer(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let store = crate::site::open_store(&self.config)
                .await
                .with_context(|| {
                    format!(
                        "no server answers on {} and the store cannot be opened",
                        self.socket.display()
                    )
                })?;
            let moderation = crate::secret::Secret::load_or_create(&self.config.secret_path())
                .ok()
                .map(|secret| {
                    Arc::new(crate::moderation::Service::new(
                        store.clone(),
                        &self.config,
                        secret,
                        crate::smtp::Client::new(crate::site::smtp_config(&self.config)),
                    ))
                });
            self.local = Some(Admin {
                store,
                delimiter: self.config.intake.recipient_delimiter,
                bounce_scope: self.config.bounce.scope,
                moderation,
            });
        }
        match &self.local {
            Some(admin) => Ok(admin.execute(req).await?),
            None => bail!("no store"),
        }
    }
}

async fn migrate(config: &Config) -> Result<()> {
    let StoreKind::Postgres(url) = config.store_kind() else {
        println!("the embedded store (sled) has no schema migrations");
        return Ok(());
    };
    let store = PostgresStore::connect(&url)?;
    let before = store.schema_version().await?;
    let applied = store.migrate().await?;
    for (version, name) in &applied {
        println!("applied migration {version}: {name}");
    }
    let after = store.schema_version().await?;
    if applied.is_empty() {
        println!("schema at version {after}; nothing to do");
    } else {
        println!("schema migrated from version {before} to {after}");
    }
    Ok(())
}

async fn import(config: &Config, args: ImportArgs, json: bool) -> Result<()> {
    let input: Box<dyn BufRead> = match &args.file {
        Some(f) if f.as_os_str() != "-" => Box::new(std::io::BufReader::new(
            std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match Address::parse(text) {
            Ok(_) => valid.push(text.to_string()),
            Err(e) => invalid
                .push(serde_json::json!({"line": n + 1, "address": text, "error": e.to_string()})),
        }
    }
    let bar = indicatif::ProgressBar::new(valid.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} members {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut client = Client::new(config);
    let (mut added, mut already) = (0, 0);
    for slice in valid.chunks(IMPORT_SLICE) {
        let v = client
            .call(Request::MemberAdd {
                list: args.list.clone(),
                addresses: slice.to_vec(),
            })
            .await?;
        added += v["added"].as_u64().unwrap_or(0);
        already += v["already"].as_u64().unwrap_or(0);
        bar.inc(slice.len() as u64);
    }
    bar.finish_and_clear();
    let summary = serde_json::json!({"added": added, "already": already, "invalid": invalid});
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{added} added, {already} already members, {} invalid",
            invalid.len()
        );
        for i in &invalid {
            eprintln!(
                "line {}: {:?}: {}",
                i["line"],
                i["address"].as_str().unwrap_or(""),
                i["error"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

async fn integration(config: &Config, mta: &str) -> Result<()> {
    // One client: a second would try to open the store a second time.
    let mut client = Client::new(config);
    let lists = client.call(Request::ListList { domain: None }).await?;
    let domains = client.call(Request::DomainList).await?;
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
    for d in domains.as_array().into_iter().flatten() {
        let name = d["name"].as_str().unwrap_or_default().to_string();
        let local_parts = lists
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["address"].as_str())
            .filter_map(|a| Address::parse(a).ok())
            .filter(|a| a.domain() == name)
            .flat_map(|a| address::list_local_parts(a.local()))
            .collect();
        params
            .domains
            .push(crate::integration::DomainParams { name, local_parts });
    }
    let snippets = match mta {
        "postfix" => crate::integration::postfix(&params),
        _ => crate::integration::exim(&params),
    };
    for s in snippets {
        println!("# ===== {} — {}\n{}", s.file, s.description, s.contents);
    }
    Ok(())
}

fn bounce_parse() -> Result<()> {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut raw).context("reading stdin")?;
    let report = crate::bounce::parse(&raw);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn print_human(req: &Request, v: &Value) {
    match req {
        Request::DomainList => {
            for d in v.as_array().into_iter().flatten() {
                let opaque = if d["opaque"].as_bool() == Some(true) {
                    " (opaque)"
                } else {
                    ""
                };
                println!("{}{opaque}", d["name"].as_str().unwrap_or_default());
            }
        }
        Request::ListList { .. } => {
            for l in v.as_array().into_iter().flatten() {
                println!(
                    "{}\t{} members",
                    l["address"].as_str().unwrap_or_default(),
                    l["members"]
                );
            }
        }
        Request::MemberList { .. } => {
            for m in v.as_array().into_iter().flatten() {
                let off = if m["delivery_enabled"].as_bool() == Some(false) {
                    "\t(delivery disabled)"
                } else {
                    ""
                };
                println!("{}{off}", m["address"].as_str().unwrap_or_default());
            }
        }
        Request::MemberAdd { .. } => {
            println!("{} added, {} already members", v["added"], v["already"]);
            for i in v["invalid"].as_array().into_iter().flatten() {
                eprintln!(
                    "invalid: {} ({})",
                    i["address"].as_str().unwrap_or(""),
                    i["error"].as_str().unwrap_or("")
                );
            }
        }
        Request::MemberRemove { .. } => {
            println!("{} removed", v["removed"]);
            for a in v["not_members"].as_array().into_iter().flatten() {
                eprintln!("not a member: {}", a.as_str().unwrap_or(""));
            }
        }
        Request::BounceShow { .. } => {
            if v.as_array().is_none_or(|a| a.is_empty()) {
                println!("no bounce records");
            }
            for b in v.as_array().into_iter().flatten() {
                println!(
                    "{}\tscore {}\t{} bounces\tlast {} ({} {})\t{}\t{} warnings",
                    b["member"].as_str().unwrap_or_default(),
                    b["score"],
                    b["bounces"],
                    crate::notice::rfc5322_date(b["last_bounce"].as_u64().unwrap_or(0)),
                    b["last_reason"].as_str().unwrap_or("-"),
                    b["last_status"].as_str().unwrap_or("-"),
                    if b["disabled"].as_bool() == Some(true) {
                        "delivery disabled"
                    } else {
                        "delivery on"
                    },
                    b["warnings_sent"],
                );
            }
        }
        Request::Queue => print_queue(v),
        Request::HeldList { .. } => {
            if v.as_array().is_none_or(|a| a.is_empty()) {
                println!("no held posts");
            }
            for h in v.as_array().into_iter().flatten() {
                println!(
                    "<{}>\t{}\t{}\t{}\t{}",
                    h["message_id"].as_str().unwrap_or_default(),
                    h["sender"].as_str().unwrap_or_default(),
                    h["reason"].as_str().unwrap_or_default(),
                    crate::notice::rfc5322_date(h["held_at"].as_u64().unwrap_or(0)),
                    h["subject"].as_str().unwrap_or_default(),
                );
            }
        }
        Request::HeldShow { .. } => {
            println!("{}", v["message"].as_str().unwrap_or_default());
        }
        Request::HeldAct { .. } => {
            if v["done"].as_bool() == Some(true) {
                println!(
                    "{}: {}",
                    v["action"].as_str().unwrap_or(""),
                    v["message_id"].as_str().unwrap_or("")
                );
            } else {
                println!("already handled: nothing done");
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}

/// `listrelay queue`: messages waiting, jobs with their progress, chunks with
/// their leases.
fn print_queue(v: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let now = crate::store::now_ms();
    println!("messages:");
    for m in v["messages"].as_array().into_iter().flatten() {
        println!(
            "  {}  {}  {}  {} bytes  {}",
            s(&m["id"]),
            s(&m["list"]),
            s(&m["suffix"]),
            m["size"],
            s(&m["message_id"])
        );
    }
    println!("jobs:");
    for j in v["jobs"].as_array().into_iter().flatten() {
        println!(
            "  {}  {}  chunks {}/{}  recipients {}  delivered {}  failed {}  verp {}%",
            s(&j["message"]),
            s(&j["list"]),
            j["chunks_done"],
            j["chunks"],
            j["recipients"],
            j["delivered"],
            j["failed"],
            j["verp_percent"]
        );
    }
    println!("chunks:");
    for c in v["chunks"].as_array().into_iter().flatten() {
        let lease = match c["owner"].as_str() {
            Some(owner) => {
                let left = c["lease_expires_ms"]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(now);
                format!("held by {owner} for {:.1}s more", left as f64 / 1000.0)
            }
            None => "free".to_string(),
        };
        println!(
            "  {}/{}  {} members  txns done {}  delivered {}  failed {}  retrying {}  gen {}  {}",
            s(&c["job"]),
            c["index"],
            c["members"],
            c["cursor"],
            c["delivered"],
            c["failed"],
            c["retry"].as_array().map_or(0, Vec::len),
            c["generation"],
            lease
        );
    }
}
