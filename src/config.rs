//! The site configuration: one TOML file, every key optional with an embedded
//! default, overridden by the global command-line flags. Every key is described
//! in docs/configuration.md; errors name the key and the problem.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock::{days, DAY};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// A listening or connecting address: `host:port` or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SocketAddress {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for SocketAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path".into());
            }
            return Ok(SocketAddress::Unix(PathBuf::from(path)));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is neither host:port nor unix:PATH"))?;
        if host.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("{s:?} has no valid port number"))?;
        Ok(SocketAddress::Tcp(s.to_string()))
    }
}

impl TryFrom<String> for SocketAddress {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SocketAddress> for String {
    fn from(a: SocketAddress) -> String {
        a.to_string()
    }
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Tcp(s) => f.write_str(s),
            SocketAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The store backend the `store` key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded, under `data_dir` (one host).
    Sled,
    /// A PostgreSQL database, by URL (several hosts).
    Postgres(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store and the spool live.
    pub data_dir: PathBuf,
    /// Name used in LHLO/EHLO greetings.
    pub hostname: String,
    /// `sled` (embedded, one host) or a PostgreSQL URL
    /// (`postgres://USER@HOST:PORT/DB`, shared by several hosts).
    pub store: String,
    /// Key for signing VERP addresses and tokens; read from `DATA_DIR/secret`
    /// (created on first start) when empty.
    pub secret_file: Option<PathBuf>,
    pub lmtp: LmtpConfig,
    pub smtp: SmtpConfig,
    pub intake: IntakeConfig,
    pub fanout: FanoutConfig,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub bounce: BounceConfig,
    pub moderation: ModerationConfig,
    pub http: HttpConfig,
    /// The one resolver every sender check uses (docs/authentication.md).
    pub dns: crate::auth::DnsConfig,
    /// Sender evaluation: whose Authentication-Results to trust.
    pub auth: AuthConfig,
}

/// `[auth]`: sender evaluation (docs/authentication.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The authserv-id of an MTA that already checks DKIM/SPF/DMARC
    /// (OpenDKIM/OpenDMARC, Exim): its `Authentication-Results` are used
    /// instead of checking again, which saves the DNS lookups. Unset: check here.
    pub trust_authserv_id: Option<String>,
    /// Evaluate every post's sender (DKIM, ARC, SPF, DMARC) before the
    /// posting policy. Off: posts reach the policy unchecked and copies are
    /// mitigated only under `dmarc_mitigate_when = always`; for a host with
    /// no usable DNS, where every post would otherwise wait.
    pub evaluate_senders: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            trust_authserv_id: None,
            evaluate_senders: true,
        }
    }
}

/// Moderation and subscription by email (docs/moderation.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModerationConfig {
    /// How often the handler looks for requests, confirmations and actions.
    pub poll_interval_ms: u64,
    /// How often held posts are checked for expiry.
    pub pass_interval_secs: u64,
    /// How long a confirmation address works.
    pub confirm_token_ttl_secs: u64,
    /// Automatic mails (confirmations, help, hold and rejection notices) one
    /// address may get per day; more are dropped silently.
    pub max_mails_per_address_per_day: u32,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        ModerationConfig {
            poll_interval_ms: 1000,
            pass_interval_secs: 3600,
            confirm_token_ttl_secs: days(3),
            max_mails_per_address_per_day: 5,
        }
    }
}

/// The HTTP listener: one-click unsubscribe (RFC 8058) and the REST API
/// (docs/web.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port` to listen on; unset = off.
    pub listen: Option<String>,
    /// Public URL the listener is reached at (e.g. behind a proxy), used in
    /// `List-Unsubscribe` for lists without their own `base_url`; empty = none.
    /// Its path (`https://host/lists/`) is where the listener answers too.
    pub base_url: String,
    /// Largest JSON request body the API reads: bounds what one request
    /// can make the server hold.
    pub max_body_bytes: usize,
    /// Largest NDJSON member import one request may send (read as it
    /// arrives, so memory stays flat; this bounds the work).
    pub max_import_bytes: u64,
    /// Seconds a request may take before it is answered 503: a stuck store
    /// never holds a connection for ever. Streamed exports and imports are
    /// bounded by their size instead.
    pub request_timeout_secs: u64,
    /// Requests handled at once; more are answered 503 at once rather than
    /// queued, so a flood cannot pile up work.
    pub max_concurrent_requests: usize,
    /// Days audit log entries are kept.
    pub audit_retention_days: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: None,
            base_url: String::new(),
            max_body_bytes: 1024 * 1024,
            max_import_bytes: 512 * 1024 * 1024,
            request_timeout_secs: 30,
            max_concurrent_requests: 64,
            audit_retention_days: 365,
        }
    }
}

/// Bounce processing (docs/bounces.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BounceConfig {
    /// Which lists share a member's bounce state: `list`, `domain` or `site`
    /// (an opaque domain never shares across domains).
    pub scope: crate::model::BounceScope,
    /// How often the handler looks for queued bounces and hand-off failures.
    pub poll_interval_ms: u64,
    /// How often warnings, removals and staleness are checked.
    pub pass_interval_secs: u64,
}

impl Default for BounceConfig {
    fn default() -> Self {
        BounceConfig {
            scope: Default::default(),
            poll_interval_ms: 1000,
            pass_interval_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmtpConfig {
    pub listen: Vec<SocketAddress>,
    pub max_connections: usize,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The MTA's re-injection port.
    pub relay: SocketAddress,
    pub max_connections: usize,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
    /// A pooled connection older than this is closed after its transaction:
    /// the MTA applies a reload (new restrictions, tables) to new sessions
    /// only, so a busy connection must not live forever (Postfix's own
    /// `smtp_connection_reuse_time_limit` is 300 s too).
    pub connection_reuse_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// Separates an address from its tag: `LIST-bounces+TAG`.
    pub recipient_delimiter: char,
    /// How long a Message-ID stays in its list's window after the post was
    /// handed back to the MTA.
    pub duplicate_grace_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanoutConfig {
    /// Delivery worker tasks in this process.
    pub workers: usize,
    /// Members per chunk, the unit a worker claims.
    pub chunk_size: usize,
    /// A claim's lease; a worker renews it while it works, and any worker
    /// takes over a chunk whose lease ran out.
    pub lease_secs: u64,
    /// How often idle workers look for work (they are also woken at once).
    pub poll_interval_ms: u64,
    /// Backoff for recipients the MTA deferred (4xx): first wait, doubling,
    /// capped, and the age at which they count as failed.
    pub retry_min_secs: u64,
    pub retry_max_secs: u64,
    pub retry_give_up_secs: u64,
    /// Longest wait between attempts while the MTA is unreachable.
    pub mta_backoff_max_secs: u64,
    /// For lists at 100 % VERP, hand Postfix one transaction per batch with
    /// `XVERP=<recipient_delimiter>=` when it offers XVERP (its tags are then
    /// unsigned).
    pub xverp: bool,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            workers: 4,
            chunk_size: 1000,
            lease_secs: 60,
            poll_interval_ms: 1000,
            retry_min_secs: 60,
            retry_max_secs: 3600,
            retry_give_up_secs: days(5),
            mta_backoff_max_secs: 60,
            xverp: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Unix socket the CLI uses while `serve` runs; default `DATA_DIR/admin.sock`.
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Prometheus scrape address (`host:port`); empty = off.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `listrelay=debug`; `RUST_LOG` wins.
    pub level: String,
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/listrelay"),
            hostname: system_hostname(),
            store: "sled".into(),
            secret_file: None,
            lmtp: LmtpConfig::default(),
            smtp: SmtpConfig::default(),
            intake: IntakeConfig::default(),
            fanout: FanoutConfig::default(),
            admin: AdminConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            bounce: BounceConfig::default(),
            moderation: ModerationConfig::default(),
            http: HttpConfig::default(),
            dns: crate::auth::DnsConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl Default for LmtpConfig {
    fn default() -> Self {
        LmtpConfig {
            listen: vec![SocketAddress::Tcp("127.0.0.1:8024".into())],
            max_connections: 200,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 1000,
            max_line_length: 4096,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            relay: SocketAddress::Tcp("127.0.0.1:10025".into()),
            max_connections: 4,
            connect_timeout_secs: 10,
            command_timeout_secs: 300,
            connection_reuse_secs: 300,
        }
    }
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            recipient_delimiter: '+',
            duplicate_grace_secs: DAY,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Values from the global command-line flags, which win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub lmtp: Option<SocketAddress>,
    pub smtp: Option<SocketAddress>,
    pub hostname: Option<String>,
}

impl Config {
    /// Reads `path` if given (a missing file is an error), else the embedded
    /// defaults, then applies the overrides and checks the result.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Self::from_toml(&text).map_err(|message| ConfigError::Parse {
                    path: p.display().to_string(),
                    message,
                })?
            }
            None => Config::default(),
        };
        if let Some(d) = &overrides.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(l) = &overrides.lmtp {
            config.lmtp.listen = vec![l.clone()];
        }
        if let Some(s) = &overrides.smtp {
            config.smtp.relay = s.clone();
        }
        if let Some(h) = &overrides.hostname {
            config.hostname = h.clone();
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let StoreKind::Postgres(url) = self.store_kind() {
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| invalid("store", format!("bad PostgreSQL URL: {e}")))?;
        } else if self.store != "sled" {
            return Err(invalid(
                "store",
                format!(
                    "{:?} is not supported (use \"sled\" or \"postgres://USER@HOST/DB\")",
                    self.store
                ),
            ));
        }
        if self.hostname.is_empty() {
            return Err(invalid("hostname", "must not be empty"));
        }
        if self.lmtp.listen.is_empty() {
            return Err(invalid("lmtp.listen", "needs at least one address"));
        }
        let positive = [
            ("lmtp.max_connections", self.lmtp.max_connections as u64),
            ("lmtp.max_message_size", self.lmtp.max_message_size as u64),
            ("lmtp.max_recipients", self.lmtp.max_recipients as u64),
            ("lmtp.command_timeout_secs", self.lmtp.command_timeout_secs),
            ("lmtp.data_timeout_secs", self.lmtp.data_timeout_secs),
            ("smtp.max_connections", self.smtp.max_connections as u64),
            (
                "smtp.connection_reuse_secs",
                self.smtp.connection_reuse_secs,
            ),
            ("fanout.workers", self.fanout.workers as u64),
            ("fanout.chunk_size", self.fanout.chunk_size as u64),
            ("fanout.lease_secs", self.fanout.lease_secs),
            ("fanout.poll_interval_ms", self.fanout.poll_interval_ms),
            ("fanout.retry_min_secs", self.fanout.retry_min_secs),
            ("bounce.poll_interval_ms", self.bounce.poll_interval_ms),
            ("bounce.pass_interval_secs", self.bounce.pass_interval_secs),
            (
                "moderation.poll_interval_ms",
                self.moderation.poll_interval_ms,
            ),
            (
                "moderation.pass_interval_secs",
                self.moderation.pass_interval_secs,
            ),
            (
                "moderation.confirm_token_ttl_secs",
                self.moderation.confirm_token_ttl_secs,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.lmtp.max_line_length < 512 {
            return Err(invalid(
                "lmtp.max_line_length",
                "must be at least 512 (RFC 5321)",
            ));
        }
        let d = self.intake.recipient_delimiter;
        if d.is_alphanumeric() || d == '@' || d.is_whitespace() || d == '-' {
            return Err(invalid(
                "intake.recipient_delimiter",
                format!("{d:?} cannot separate a tag"),
            ));
        }
        if let Some(l) = &self.http.listen {
            if l.rsplit_once(':')
                .and_then(|(h, p)| (!h.is_empty()).then_some(p))
                .and_then(|p| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(invalid("http.listen", format!("{l:?} is not host:port")));
            }
        }
        if !(self.http.base_url.is_empty()
            || self.http.base_url.starts_with("https://")
            || self.http.base_url.starts_with("http://"))
        {
            return Err(invalid(
                "http.base_url",
                "must start with https:// (or http://)",
            ));
        }
        for (key, value) in [
            ("http.max_body_bytes", self.http.max_body_bytes as u64),
            ("http.max_import_bytes", self.http.max_import_bytes),
            ("http.request_timeout_secs", self.http.request_timeout_secs),
            (
                "http.max_concurrent_requests",
                self.http.max_concurrent_requests as u64,
            ),
            ("http.audit_retention_days", self.http.audit_retention_days),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        self.dns
            .validate()
            .map_err(|e| invalid("dns.resolvers", e.to_string()))?;
        if self.dns.timeout_secs == 0 || self.dns.attempts == 0 {
            return Err(invalid(
                "dns.timeout_secs",
                "dns.timeout_secs and dns.attempts must be at least 1",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be \"text\" or \"json\""));
        }
        Ok(())
    }

    /// Which store `store` names.
    pub fn store_kind(&self) -> StoreKind {
        if self.store.starts_with("postgres://") || self.store.starts_with("postgresql://") {
            StoreKind::Postgres(self.store.clone())
        } else {
            StoreKind::Sled
        }
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.admin
            .socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }

    pub fn secret_path(&self) -> PathBuf {
        self.secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secret"))
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.lmtp.command_timeout_secs)
    }

    pub fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.lmtp.data_timeout_secs)
    }

    /// The whole configuration, defaults filled in, as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(
            c.lmtp.listen,
            vec![SocketAddress::Tcp("127.0.0.1:8024".into())]
        );
        c.validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::from_toml("[lmtp]\nmax_conections = 3\n").unwrap_err();
        assert!(e.contains("max_conections"), "{e}");
        let e = Config::from_toml("[lmtp]\nlisten = [\"nowhere\"]\n").unwrap_err();
        assert!(e.contains("listen") && e.contains("nowhere"), "{e}");
        let mut c = Config::default();
        c.lmtp.max_recipients = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("lmtp.max_recipients"));
    }

    #[test]
    fn example_parses_and_every_key_is_documented() {
        let example = Config::from_toml(include_str!("../contrib/listrelay.toml")).unwrap();
        example.validate().unwrap();
        let docs = include_str!("../docs/configuration.md");
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let mut keys = vec![
            "secret_file".to_string(),
            "admin.socket".into(),
            "metrics.listen".into(),
            "http.listen".into(),
            "auth.trust_authserv_id".into(),
        ];
        for (name, value) in defaults.as_table().unwrap() {
            match value.as_table() {
                Some(section) => keys.extend(section.keys().map(|k| format!("{name}.{k}"))),
                None => keys.push(name.clone()),
            }
        }
        for key in keys {
            let short = key.rsplit('.').next().unwrap_or(&key);
            assert!(
                docs.contains(&format!("`{key}`")) || docs.contains(&format!("`{short}`")),
                "{key} is not in docs/configuration.md"
            );
        }
    }

    #[test]
    fn store_is_sled_or_a_postgres_url() {
        let mut c = Config::default();
        assert_eq!(c.store_kind(), StoreKind::Sled);
        c.store = "postgres://postgres@127.0.0.1:5432/lists".into();
        c.validate().unwrap();
        assert_eq!(c.store_kind(), StoreKind::Postgres(c.store.clone()));
        c.store = "postgres://host:notaport/x".into();
        assert!(c.validate().unwrap_err().to_string().starts_with("store"));
        c.store = "mysql://x".into();
        assert!(c.validate().unwrap_err().to_string().starts_with("store"));
    }

    #[test]
    fn socket_addresses() {
        assert_eq!(
            "unix:/run/l.sock".parse::<SocketAddress>().unwrap(),
            SocketAddress::Unix("/run/l.sock".into())
        );
        assert!("127.0.0.1".parse::<SocketAddress>().is_err());
        assert!("127.0.0.1:99999".parse::<SocketAddress>().is_err());
        assert!("[::1]:25".parse::<SocketAddress>().is_ok());
    }
}
