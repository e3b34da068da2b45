//! Logging (tracing) and metrics (a Prometheus scrape endpoint).

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Whether log lines may carry colour codes: only on a terminal (not under
/// journald, nohup or a pipe, where they are noise), and never with `NO_COLOR`
/// set to anything (<https://no-color.org>).
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Starts logging to stderr and, when `metrics.listen` is set, the metrics endpoint.
pub fn init(config: &Config) -> Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .context("log.level")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour())
        .with_writer(std::io::stderr);
    let result = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    if let Some(addr) = &config.metrics.listen {
        let addr: std::net::SocketAddr = addr
            .parse()
            .with_context(|| format!("metrics.listen: {addr:?} is not host:port"))?;
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .context("starting the metrics endpoint")?;
    }
    Ok(())
}
