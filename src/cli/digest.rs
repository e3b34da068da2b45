//! `listrelay digest`: digest issues of lists whose members take digests.

use anyhow::{bail, Result};
use clap::Subcommand;

use super::print::Format;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum DigestCmd {
    /// Build and send the list's pending issue now.
    Send {
        /// The list's posting address.
        list: String,
    },
}

pub async fn run(_config: &Config, _cmd: DigestCmd, _format: Format) -> Result<()> {
    bail!("digest is not built yet")
}
