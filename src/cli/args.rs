//! The command line's grammar: every command, argument and flag (clap).
//! What the commands do is in the parent module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::SocketAddress;

#[derive(Parser, Debug)]
#[command(
    name = "listrelay",
    version,
    about = "Mailing lists behind Postfix or Exim, over LMTP and SMTP"
)]
pub struct Cli {
    /// Configuration file (TOML); default: $LISTRELAY_CONFIG, else the
    /// embedded defaults.
    // Not clap's `env`: with it, usage lines show `--config` as if required
    // whenever the variable is set. [`Cli::config_file`] reads it instead.
    #[arg(long, global = true)]
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

impl Cli {
    /// The configuration file: `--config`, else `$LISTRELAY_CONFIG`.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config
            .clone()
            .or_else(|| std::env::var_os("LISTRELAY_CONFIG").map(PathBuf::from))
    }
}

/// `list set --help`: every setting's name.
fn list_settings_help() -> String {
    format!(
        "Settings: {}.\nSee docs/configuration.md for what each does.",
        crate::model::ListSettings::keys().join(", ")
    )
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
    /// A list's bans: addresses and `^` patterns that may neither post
    /// nor subscribe.
    #[command(subcommand)]
    Ban(BanCmd),
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
        /// Write each file into DIR instead, and print the commands that
        /// install them (for Postfix, `postconf -e` lines for main.cf).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Self-checks of a live installation.
    #[command(subcommand)]
    Check(CheckCmd),
    /// Bounce tools.
    #[command(subcommand)]
    Bounce(BounceCmd),
    /// Posts held for moderation.
    #[command(subcommand)]
    Held(HeldCmd),
    /// DKIM keys of list domains (files under DATA_DIR/dkim).
    #[command(subcommand)]
    Dkim(DkimCmd),
    /// Bearer tokens of the REST API (docs/web.md).
    #[command(subcommand)]
    Token(TokenCmd),
    /// The audit log: who changed what, when and from where, oldest first.
    Audit {
        /// Only entries about this list.
        #[arg(long)]
        list: Option<String>,
        /// Only entries since a time: ago (`7d`, `12h`, `30m`, `90s`) or
        /// seconds since the epoch.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Continue after this entry id (the `--after` a full page prints).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
        /// Entries to show at most (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Bring lists, their settings and members across from GNU Mailman 3 or
    /// mlmmj, one list at a time (docs/migrating.md).
    #[command(subcommand)]
    ImportFrom(crate::cli::import_from::ImportFromCmd),
    /// Digests: send a list's pending issue now.
    #[command(subcommand)]
    Digest(crate::cli::digest::DigestCmd),
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
    /// Write the man pages into DIR (packaging: scripts/build-deb).
    #[command(hide = true)]
    GenerateMan {
        /// Directory for `listrelay.1` and the subcommands' pages.
        dir: PathBuf,
    },
    /// Write the bash, zsh and fish completions into DIR (packaging).
    #[command(hide = true)]
    GenerateCompletions {
        /// Directory for `listrelay.bash`, `_listrelay` and `listrelay.fish`.
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum CheckCmd {
    /// Send a probe through the MTA and watch it arrive over LMTP, then
    /// re-inject one and watch it come back: each hop with its time, and for
    /// a failed one the likely cause and the Postfix or Exim setting to
    /// change. Needs the running server. Exit status: 0 every hop passed;
    /// 11-15 the first failed hop (1 SMTP accepted, 2 routed to listrelay,
    /// 3 LMTP received, 4 re-injection accepted, 5 return over LMTP);
    /// 4 no server runs.
    Mta(CheckMtaArgs),
}

#[derive(Args, Debug)]
pub struct CheckMtaArgs {
    /// The MTA's public SMTP listener, where mail from the Internet comes in.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:25")]
    pub public: String,
    /// The served domain to probe (default: the server's first domain).
    #[arg(long)]
    pub domain: Option<String>,
    /// Seconds to wait for each probe to arrive.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// The MTA's log (e.g. /var/log/mail.log): read to tell why a probe
    /// did not arrive (no transport entry, or a wrong LMTP port).
    #[arg(long, value_name = "FILE")]
    pub mta_log: Option<PathBuf>,
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
    Reject {
        list: String,
        message_id: String,
        /// Why: quoted to the sender in the rejection notice.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Drop the post silently.
    Discard { list: String, message_id: String },
}

#[derive(Subcommand, Debug)]
pub enum DkimCmd {
    /// Generate a key for a list domain, store it and print the DNS TXT
    /// record to publish. Copies are signed with every key of the domain
    /// (RSA and Ed25519 side by side is the recommended set-up).
    Keygen {
        /// The list domain (the `d=` of the signatures).
        domain: String,
        /// The selector: the key is published at SELECTOR._domainkey.DOMAIN.
        #[arg(long)]
        selector: Option<String>,
        /// rsa-sha256 (2048 bits, verified everywhere) or ed25519-sha256.
        #[arg(long, default_value = "rsa-sha256")]
        algorithm: String,
    },
    /// The stored keys, with the record each needs in DNS.
    List {
        /// Only this domain's keys.
        domain: Option<String>,
    },
    /// Stop signing with a key (after a rotation: keep its DNS record a few
    /// days longer, for mail still in transit).
    Remove {
        /// The list domain.
        domain: String,
        /// The selector to remove.
        selector: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Make a token and print it once (only its hash is stored).
    Create {
        /// `site` (everything), `owner` (settings, members, bounces and held
        /// posts of its lists) or `moderator` (held posts of its lists).
        #[arg(long, value_parser = ["site", "owner", "moderator"])]
        role: String,
        /// A list an owner or moderator token acts on (repeat for several).
        #[arg(long = "list", value_name = "LIST")]
        lists: Vec<String>,
        /// When it stops working: after a time (`90d`, `12h`) or at seconds
        /// since the epoch; never when absent.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// Who it is for, shown by `token list`.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// The tokens: id, role, lists, expiry or revocation, description.
    List,
    /// Refuse a token from now on (it stays listed as revoked).
    Revoke {
        /// The token's id (`token list`), or the whole token.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    /// Create a virtual domain (`list create` also creates it).
    Create {
        /// The domain name.
        name: String,
        /// Its members' bounce state is never shared with other domains.
        #[arg(long)]
        opaque: bool,
    },
    /// List the domains.
    List,
    /// Change a domain setting: `opaque`, true or false.
    Set {
        /// The domain name.
        name: String,
        /// The setting's name: `opaque`.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Delete a domain that has no lists.
    Delete {
        /// The domain name.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ListCmd {
    /// Create a list (and its domain if new), e.g. dev@lists.example.org.
    Create {
        /// The list's posting address.
        address: String,
    },
    /// Show a list: its List-Id, member count and every setting.
    Show {
        /// The list's posting address.
        address: String,
    },
    /// List the lists with their member counts.
    List {
        /// Only the lists of this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Change a per-list setting; it applies at once, no restart.
    #[command(after_help = list_settings_help())]
    Set {
        /// The list's posting address.
        address: String,
        /// The setting's name (see below).
        key: String,
        /// Its new value; lists of addresses are comma-separated.
        value: String,
    },
    /// Delete a list with its members.
    Delete {
        /// The list's posting address.
        address: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// Add members; exits with status 3 if any address is refused.
    Add {
        /// The list's posting address.
        list: String,
        /// The addresses to add.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Remove members.
    Remove {
        /// The list's posting address.
        list: String,
        /// The addresses to remove.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// List members, one per line, with their delivery and moderation flags.
    List {
        /// The list's posting address.
        list: String,
    },
    /// Add members from a file (or - for stdin), one address per line; exits
    /// with status 3 if any line is refused.
    Import(ImportArgs),
    /// Set a member's flag: `moderated` or `delivery_enabled` (true or
    /// false; `delivery_enabled` is the bounce handler's switch), or
    /// `delivery_mode`: regular, nomail, digest_mime or digest_plain.
    Set {
        list: String,
        address: String,
        key: String,
        value: String,
    },
    /// Print members one per line (to a file or stdout).
    Export { list: String, file: Option<PathBuf> },
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    pub list: String,
    /// File to read; `-` or nothing for standard input.
    pub file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum BanCmd {
    /// Ban an address (bob@example.org) or a pattern beginning with ^, a
    /// regular expression matched case-blind from the start of the address
    /// (quote it: '^.*@spam\.example$'). Banning again changes nothing.
    Add { list: String, pattern: String },
    /// Lift a ban, named as `ban list` shows it.
    Remove { list: String, pattern: String },
    /// Show a list's bans, one per line.
    List { list: String },
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
