//! `listrelay import-from mailman3|mlmmj`: lists, settings and members from
//! another list engine (docs/migrating.md).

use anyhow::{bail, Result};
use clap::Subcommand;

use super::print::Format;
use crate::config::Config;

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

pub async fn run(_config: &Config, _cmd: ImportFromCmd, _format: Format) -> Result<()> {
    bail!("import-from is not built yet")
}
