//! Logging (tracing) and metrics (a Prometheus scrape endpoint).

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

pub fn init(config: &Config) -> Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .context("log.level")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
