//! `listrelay import-from mailman3|mlmmj`: lists, settings and members from
//! another list engine (docs/migrating.md).

use std::io::Write;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::client::Client;
use super::print::Format;
use crate::admin::{Item, Request, Response};
use crate::config::Config;
use crate::import::apply::{self, Door, ListReport, Progress, Report};
use crate::import::{mailman3, mlmmj, Plan};

#[derive(Subcommand, Debug)]
pub enum ImportFromCmd {
    /// Read a running GNU Mailman 3 through its REST API.
    Mailman3 {
        /// The REST API's base URL, e.g. http://127.0.0.1:8001.
        #[arg(long)]
        url: String,
        /// The REST API's user.
        #[arg(long)]
        user: String,
        /// The REST API's password.
        #[arg(long)]
        password: String,
        /// Only these lists (posting addresses); default: every list.
        #[arg(long = "list", value_name = "ADDR")]
        lists: Vec<String>,
        /// Print what would change, and what has no equivalent; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Read mlmmj list directories.
    Mlmmj {
        /// mlmmj list directories (each holding control/ and subscribers.d/).
        #[arg(required = true)]
        dirs: Vec<std::path::PathBuf>,
        /// Print what would change, and what has no equivalent; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(config: &Config, cmd: ImportFromCmd, format: Format) -> Result<()> {
    let (plan, dry_run) = read(cmd).await?;
    let mut client = ClientDoor(Client::new(config));
    let mut bar = Bar::new();
    let report = apply::apply(&mut client, &plan, dry_run, &mut bar).await?;
    bar.0.finish_and_clear();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        _ => print(&mut out, &report)?,
    }
    out.flush()?;
    Ok(())
}

/// Reads the source into a plan (blocking I/O, off the async workers).
async fn read(cmd: ImportFromCmd) -> Result<(Plan, bool)> {
    tokio::task::spawn_blocking(move || match cmd {
        ImportFromCmd::Mailman3 {
            url,
            user,
            password,
            lists,
            dry_run,
        } => {
            let src = mailman3::Source::new(&url, &user, &password)?;
            Ok((mailman3::read(&src, &lists)?, dry_run))
        }
        ImportFromCmd::Mlmmj { dirs, dry_run } => Ok((mlmmj::read(&dirs)?, dry_run)),
    })
    .await
    .context("the reader stopped")?
}

/// The CLI's client as the importer's door.
struct ClientDoor(Client);

#[async_trait::async_trait]
impl Door for ClientDoor {
    async fn call(
        &mut self,
        req: Request,
        on_item: &mut (dyn FnMut(Item) -> std::io::Result<()> + Send),
    ) -> Result<Response> {
        self.0.call(req, on_item).await
    }

    fn no_store(&self, e: &anyhow::Error) -> bool {
        // `site::open_existing_store`'s refusal: nothing was created yet.
        super::error_text(e).contains("there is no store")
    }
}

/// The member progress bar on stderr (hidden without a terminal).
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:40} {pos}/{len} members {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Bar(bar)
    }
}

impl Progress for Bar {
    fn advance(&mut self, list: &str, n: u64, total: u64) {
        if self.0.message() != list {
            self.0.set_message(list.to_string());
            self.0.set_length(total);
            self.0.set_position(0);
        }
        self.0.inc(n);
    }
}

/// Most member changes listed one by one per list (all are in `--json`).
const SHOWN: usize = 50;

/// The report for a person, setting by setting.
fn print(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    let (will, did) = if r.dry_run {
        ("would ", "would be ")
    } else {
        ("", "")
    };
    writeln!(
        out,
        "{} from {}",
        if r.dry_run {
            "dry run: nothing changed; import"
        } else {
            "import"
        },
        r.source
    )?;
    for d in &r.domains_created {
        writeln!(out, "domain {d}: {will}create")?;
    }
    for l in &r.lists {
        print_list(out, l, will, did)?;
    }
    if !r.changed() {
        writeln!(
            out,
            "nothing to change: listrelay already holds what the source has"
        )?;
    }
    Ok(())
}

fn print_list(out: &mut dyn Write, l: &ListReport, will: &str, did: &str) -> std::io::Result<()> {
    writeln!(out, "\n{} ({})", l.list, l.origin)?;
    if l.created {
        writeln!(out, "  {will}create the list")?;
    }
    for s in &l.settings {
        writeln!(
            out,
            "  {will}set {}: {} -> {}   [{}]",
            s.key, s.from, s.to, s.source
        )?;
    }
    for s in &l.refused {
        writeln!(out, "  refused {}: {}   [{}]", s.key, s.to, s.source)?;
    }
    writeln!(
        out,
        "  members: {} {did}added, {} {did}changed, {} unchanged, {} only in listrelay (left alone)",
        l.members_added,
        l.members_changed.len(),
        l.members_unchanged,
        l.members_only_here
    )?;
    for c in l.members_changed.iter().take(SHOWN) {
        writeln!(
            out,
            "    {will}set {} {}: {} -> {}",
            c.address, c.key, c.from, c.to
        )?;
    }
    if l.members_changed.len() > SHOWN {
        writeln!(
            out,
            "    … and {} more (--json lists them all)",
            l.members_changed.len() - SHOWN
        )?;
    }
    for i in &l.invalid {
        writeln!(out, "  refused member {:?}: {}", i.address, i.error)?;
    }
    for b in &l.bans_added {
        writeln!(out, "  {will}ban {b}")?;
    }
    if !l.unmapped.is_empty() {
        writeln!(out, "  no equivalent in listrelay:")?;
        for u in &l.unmapped {
            writeln!(out, "    {} = {}: {}", u.setting, u.value, u.note)?;
        }
    }
    if !l.changed() {
        writeln!(out, "  nothing to change")?;
    }
    Ok(())
}
