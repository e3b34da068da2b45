//! `listrelay digest`: digest issues of lists whose members take digests.

use std::io::{self, Write};

use anyhow::Result;
use clap::Subcommand;

use super::print::{Format, Printer};
use crate::admin::protocol::{DigestStatusView, Request};
use crate::config::Config;
use crate::digest::Sent;
use crate::notice::rfc5322_date;

#[derive(Subcommand, Debug)]
pub enum DigestCmd {
    /// Build and send the list's pending issue now.
    Send {
        /// The list's posting address.
        list: String,
    },
    /// Show the posts waiting for the list's next issue and its last issue.
    Status {
        /// The list's posting address.
        list: String,
    },
}

pub async fn run(config: &Config, cmd: DigestCmd, format: Format) -> Result<()> {
    let req = match cmd {
        DigestCmd::Send { list } => Request::DigestSend { list },
        DigestCmd::Status { list } => Request::DigestStatus { list },
    };
    super::administer(config, req, Printer::stdout(format)).await
}

/// `digest send`: what was queued.
pub fn sent(out: &mut dyn Write, s: Option<&Sent>) -> io::Result<()> {
    match s {
        None => writeln!(out, "no posts waiting: no issue sent"),
        Some(s) => writeln!(
            out,
            "{}: volume {}, issue {}: {} posts to {} recipients ({} MIME, {} plain)",
            s.list,
            s.volume,
            s.number,
            s.posts,
            s.recipients_mime + s.recipients_plain,
            s.recipients_mime,
            s.recipients_plain
        ),
    }
}

/// `digest status`.
pub fn status(out: &mut dyn Write, v: &DigestStatusView) -> io::Result<()> {
    writeln!(
        out,
        "{}: digests {}",
        v.list,
        if v.enabled { "on" } else { "off" }
    )?;
    writeln!(
        out,
        "  waiting: {} posts, {} bytes{}",
        v.pending.posts,
        v.pending.bytes,
        v.pending
            .oldest
            .map(|t| format!(", the oldest from {}", rfc5322_date(t)))
            .unwrap_or_default()
    )?;
    match &v.last {
        Some(i) => writeln!(
            out,
            "  last issue: volume {}, issue {}, {} posts, cut {} ({:?})",
            i.volume,
            i.number,
            i.posts,
            rfc5322_date(i.cut_at),
            i.state
        ),
        None => writeln!(out, "  no issue yet"),
    }
}
