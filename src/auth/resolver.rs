//! The site's one DNS resolver, used by every check (DKIM keys, SPF, DMARC,
//! ARC): mail-auth's `MessageAuthenticator` over hickory, configured from
//! [`DnsConfig`] (`[dns]` in the configuration file). hickory keeps the
//! cache (`cache_size` records, TTLs honoured); a query that times out is
//! not cached, so the same query succeeds once the server answers.

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::MessageAuthenticator;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `[dns]`: how listrelay resolves the records its checks need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Recursive resolvers as `ip` or `ip:port` (IPv6: `[::1]:53`), asked in
    /// order. Empty: the nameservers of /etc/resolv.conf.
    pub resolvers: Vec<String>,
    /// Seconds one attempt waits for an answer. A query with no answer after
    /// every attempt is a temporary failure: the decision waits.
    pub timeout_secs: u64,
    /// Attempts per query (per resolver) before it counts as a timeout.
    pub attempts: usize,
    /// DNS records kept in memory between posts (0 disables the cache).
    pub cache_size: u64,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            resolvers: Vec::new(),
            timeout_secs: 5,
            attempts: 2,
            cache_size: 4096,
        }
    }
}

impl DnsConfig {
    /// Checks the entries of `resolvers` (at load time, so a typo stops the
    /// start with the key named instead of every post waiting on DNS).
    pub fn validate(&self) -> Result<(), ResolverError> {
        self.resolvers
            .iter()
            .try_for_each(|s| parse_server(s).map(|_| ()))
    }
}

/// What went wrong building the resolver (the process cannot start checks).
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// An entry of `dns.resolvers` is not an address.
    #[error(
        "dns.resolvers: {0:?} is not an IP address or ip:port (e.g. 127.0.0.1:53 or [::1]:53)"
    )]
    BadAddress(String),
    /// /etc/resolv.conf could not be read and no resolvers were configured.
    #[error("could not read the system resolver configuration ({0}): set dns.resolvers")]
    SystemConf(String),
    /// hickory refused the configuration.
    #[error("could not build the DNS resolver: {0}")]
    Build(String),
}

/// The resolver shared by every check; cheap to clone (one cache).
#[derive(Clone)]
pub struct Resolver {
    inner: MessageAuthenticator,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// Parses `ip` or `ip:port` (`[v6]:port`), port 53 by default.
fn parse_server(s: &str) -> Result<SocketAddr, ResolverError> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| ResolverError::BadAddress(s.to_string()))
}

impl Resolver {
    /// Builds the resolver from `[dns]`. Must be called inside a tokio runtime.
    pub fn new(cfg: &DnsConfig) -> Result<Resolver, ResolverError> {
        let (config, mut opts) = if cfg.resolvers.is_empty() {
            mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| ResolverError::SystemConf(e.to_string()))?
        } else {
            let mut servers = Vec::new();
            for s in &cfg.resolvers {
                let addr = parse_server(s)?;
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                servers.push(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
            }
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        opts.timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        opts.attempts = cfg.attempts.max(1);
        opts.cache_size = cfg.cache_size;
        let inner = MessageAuthenticator::new(config, opts)
            .map_err(|e| ResolverError::Build(e.to_string()))?;
        Ok(Resolver { inner })
    }

    /// mail-auth's authenticator over this resolver (for the checks).
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.inner
    }

    /// The TXT record at `name`, its strings joined (e.g. to check that a
    /// DKIM key is published as `keys::DkimKeyRecord::dns_txt` says).
    /// [`Lookup::Temporary`] when DNS did not answer, [`Lookup::NotFound`] when there is none.
    pub async fn txt(&self, name: &str) -> Result<String, Lookup> {
        match self.inner.txt_raw_lookup(name).await {
            Ok(v) => Ok(String::from_utf8_lossy(&v).into_owned()),
            Err(e) if super::is_dns_temporary(&e) => Err(Lookup::Temporary(e.to_string())),
            Err(e) => Err(Lookup::NotFound(e.to_string())),
        }
    }
}

/// Why a lookup gave no record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// DNS did not answer (timeout, SERVFAIL): ask again later.
    Temporary(String),
    /// The name or record does not exist: a permanent answer.
    NotFound(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_addresses() {
        let c: DnsConfig = toml::from_str("resolvers = [\"127.0.0.1:5353\"]").unwrap();
        assert_eq!(c.timeout_secs, 5);
        assert_eq!(c.cache_size, 4096);
        assert_eq!(parse_server("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_server("10.0.0.1").unwrap().port(), 53);
        assert_eq!(parse_server("[::1]:54").unwrap().port(), 54);
        assert!(matches!(
            parse_server("dns.example"),
            Err(ResolverError::BadAddress(_))
        ));
        assert!(toml::from_str::<DnsConfig>("resolver = []").is_err());
    }
}
