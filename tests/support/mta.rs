//! Either real MTA behind one handle, so a test runs the same steps against
//! Postfix and Exim.

use std::time::Duration;

use super::exim::Exim;
use super::postfix::Postfix;
use super::MtaConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postfix,
    Exim,
}

pub enum Mta {
    Postfix(Postfix),
    Exim(Exim),
}

impl Mta {
    /// Starts the MTA (blocking; call from `spawn_blocking` in async tests).
    pub fn start(kind: Kind, cfg: &MtaConfig) -> Mta {
        match kind {
            Kind::Postfix => {
                Mta::Postfix(Postfix::start(cfg).unwrap_or_else(|e| panic!("postfix: {e}")))
            }
            Kind::Exim => Mta::Exim(Exim::start(cfg).unwrap_or_else(|e| panic!("exim: {e}"))),
        }
    }

    /// [`Mta::start`] with another recipient delimiter than `+` (Postfix only
    /// so far).
    pub fn start_with(kind: Kind, cfg: &MtaConfig, delimiter: char) -> Mta {
        match kind {
            Kind::Postfix => Mta::Postfix(
                Postfix::start_with(cfg, delimiter).unwrap_or_else(|e| panic!("postfix: {e}")),
            ),
            Kind::Exim if delimiter == '+' => Mta::start(kind, cfg),
            Kind::Exim => panic!("the Exim harness only sets up the '+' delimiter"),
        }
    }

    /// [`Mta::start_with`] from an async test.
    pub async fn start_with_async(kind: Kind, cfg: MtaConfig, delimiter: char) -> Mta {
        tokio::task::spawn_blocking(move || Mta::start_with(kind, &cfg, delimiter))
            .await
            .expect("MTA start task")
    }

    /// [`Mta::start`] from an async test.
    pub async fn start_async(kind: Kind, cfg: MtaConfig) -> Mta {
        tokio::task::spawn_blocking(move || Mta::start(kind, &cfg))
            .await
            .expect("MTA start task")
    }

    pub fn kind(&self) -> Kind {
        match self {
            Mta::Postfix(_) => Kind::Postfix,
            Mta::Exim(_) => Kind::Exim,
        }
    }

    pub fn inbound(&self) -> u16 {
        match self {
            Mta::Postfix(p) => p.inbound_port,
            Mta::Exim(e) => e.inbound_port,
        }
    }

    pub fn reinject(&self) -> u16 {
        match self {
            Mta::Postfix(p) => p.reinject_port,
            Mta::Exim(e) => e.reinject_port,
        }
    }

    /// The MTA's log (Exim's with its paniclog).
    pub fn log(&self) -> String {
        match self {
            Mta::Postfix(p) => p.log(),
            Mta::Exim(e) => format!("{}\n--- paniclog:\n{}", e.log(), e.panic_log()),
        }
    }

    pub fn wait_queue_empty(&self, timeout: Duration) -> bool {
        match self {
            Mta::Postfix(p) => p.wait_queue_empty(timeout),
            Mta::Exim(e) => e.wait_queue_empty(timeout),
        }
    }
}
