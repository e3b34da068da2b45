//! Man pages and shell completions derived from the command line's grammar
//! ([`super::args`]), written by the hidden `generate-man` and
//! `generate-completions` commands when the Debian package is built
//! (scripts/build-deb), so that they never drift from the binary.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use super::args::Cli;

/// Writes `listrelay.1` and one page per visible subcommand
/// (`listrelay-list-create.1`, ...) into `dir`.
pub fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing the man pages into {}", dir.display()))
}

/// Writes the bash, zsh and fish completions into `dir` under the names their
/// shells look for (`listrelay.bash`, `_listrelay`, `listrelay.fish`).
pub fn completions(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "listrelay", dir)
            .with_context(|| format!("writing the {shell} completion into {}", dir.display()))?;
    }
    Ok(())
}
