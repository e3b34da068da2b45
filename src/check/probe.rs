//! The server's side of the MTA self-check. `listrelay check mta` asks the
//! running server to [`ProbeBook::start`] a probe; the server answers with two
//! addresses on a served domain whose tag (`ID.SIG`) is signed with the site
//! secret ([`Purpose::Probe`]). Intake hands every probe recipient to
//! [`ProbeBook::note`] instead of the store: a probe is never stored, and one
//! whose signature does not verify is refused like an unknown address, so no
//! one outside can make a check pass. What arrived is kept in memory only, for
//! a few minutes, for the admin request that asks about it.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::address::{self, ProbeLeg};
use crate::clock::now_ms;
use crate::secret::{self, Purpose, Secret};

/// How many probes are remembered at once; the oldest goes first. A check
/// needs one; a handful of operators checking at once stays far below.
const MAX_PROBES: usize = 64;

/// How long a probe is remembered: longer than any check waits.
const PROBE_TTL_MS: u64 = 15 * 60 * 1000;

/// What a check sends: where, and the id to ask about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTicket {
    pub id: String,
    /// The served domain the probe goes to.
    pub domain: String,
    /// Sent to the MTA's public SMTP port; it should arrive over LMTP.
    pub forward: String,
    /// Sent to the MTA's re-injection port; it should come back over LMTP.
    #[serde(rename = "return")]
    pub back: String,
    /// The recipient delimiter the server routes with (for the hints).
    pub delimiter: char,
}

/// When the server saw each step of a probe (milliseconds since the epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSeen {
    pub id: String,
    pub started_ms: u64,
    /// The MTA offered the forward probe's recipient over LMTP (RCPT).
    pub forward_rcpt_ms: Option<u64>,
    /// The forward probe's message arrived over LMTP (after DATA).
    pub forward_data_ms: Option<u64>,
    pub return_rcpt_ms: Option<u64>,
    pub return_data_ms: Option<u64>,
}

/// The step of an LMTP transaction a probe reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Rcpt,
    Data,
}

/// The probes this server started, with what it saw of them.
pub struct ProbeBook {
    secret: Secret,
    delimiter: char,
    probes: Mutex<HashMap<String, ProbeSeen>>,
}

impl ProbeBook {
    pub fn new(secret: Secret, delimiter: char) -> Self {
        ProbeBook {
            secret,
            delimiter,
            probes: Mutex::new(HashMap::new()),
        }
    }

    /// A new probe at `domain` (lowercased by the caller), remembered for
    /// [`PROBE_TTL_MS`].
    pub fn start(&self, domain: &str) -> ProbeTicket {
        let id = secret::base32(&rand::random::<[u8; 10]>());
        let tag = format!(
            "{id}.{}",
            secret::sign(&self.secret, Purpose::Probe, &[domain, &id])
        );
        let now = now_ms();
        let mut probes = self.lock();
        probes.retain(|_, p| now.saturating_sub(p.started_ms) < PROBE_TTL_MS);
        while probes.len() >= MAX_PROBES {
            let oldest = probes
                .values()
                .min_by_key(|p| p.started_ms)
                .map(|p| p.id.clone());
            match oldest {
                Some(id) => probes.remove(&id),
                None => break,
            };
        }
        probes.insert(
            id.clone(),
            ProbeSeen {
                id: id.clone(),
                started_ms: now,
                ..ProbeSeen::default()
            },
        );
        let d = self.delimiter;
        ProbeTicket {
            forward: address::probe_address(ProbeLeg::Forward, &tag, domain, d),
            back: address::probe_address(ProbeLeg::Return, &tag, domain, d),
            domain: domain.to_string(),
            delimiter: d,
            id,
        }
    }

    /// Notes that a probe reached `stage`. False when its tag is not one this
    /// site signed for `domain`: then it is no probe, and is refused. A
    /// genuine probe the book no longer holds (a late re-delivery, a restart)
    /// is accepted and forgotten.
    pub fn note(&self, leg: ProbeLeg, stage: Stage, domain: &str, tag: &str) -> bool {
        let Some((id, sig)) = tag.split_once('.') else {
            return false;
        };
        let id = id.to_ascii_lowercase();
        let domain = domain.to_ascii_lowercase();
        if !secret::verify(&self.secret, Purpose::Probe, &[&domain, &id], sig) {
            return false;
        }
        if let Some(p) = self.lock().get_mut(&id) {
            let slot = match (leg, stage) {
                (ProbeLeg::Forward, Stage::Rcpt) => &mut p.forward_rcpt_ms,
                (ProbeLeg::Forward, Stage::Data) => &mut p.forward_data_ms,
                (ProbeLeg::Return, Stage::Rcpt) => &mut p.return_rcpt_ms,
                (ProbeLeg::Return, Stage::Data) => &mut p.return_data_ms,
            };
            slot.get_or_insert(now_ms());
        }
        true
    }

    /// What the server saw of probe `id`, if it still remembers it.
    pub fn seen(&self, id: &str) -> Option<ProbeSeen> {
        self.lock().get(&id.to_ascii_lowercase()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProbeSeen>> {
        // A panic elsewhere while holding it leaves plain data: keep going.
        self.probes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;

    fn book() -> ProbeBook {
        ProbeBook::new(Secret::from_bytes(vec![7; 32]), '+')
    }

    fn tag_of(addr: &str) -> (ProbeLeg, String) {
        address::probe(&Address::parse(addr).unwrap(), '+').unwrap()
    }

    #[test]
    fn notes_signed_probes_and_refuses_forged_ones() {
        let b = book();
        let t = b.start("l.org");
        let (leg, tag) = tag_of(&t.forward);
        assert_eq!(leg, ProbeLeg::Forward);
        assert!(b.note(leg, Stage::Rcpt, "L.org", &tag));
        assert!(b.note(leg, Stage::Data, "l.org", &tag));
        let (leg, back) = tag_of(&t.back);
        assert_eq!(leg, ProbeLeg::Return);
        assert!(b.note(leg, Stage::Data, "l.org", &back));
        let seen = b.seen(&t.id).unwrap();
        assert!(seen.forward_rcpt_ms.is_some() && seen.forward_data_ms.is_some());
        assert!(seen.return_rcpt_ms.is_none() && seen.return_data_ms.is_some());

        let forged = format!("{}.aaaaaaaaaaaaa", t.id);
        assert!(!b.note(ProbeLeg::Forward, Stage::Rcpt, "l.org", &forged));
        assert!(!b.note(ProbeLeg::Forward, Stage::Rcpt, "other.org", &tag));
        assert!(!b.note(ProbeLeg::Forward, Stage::Rcpt, "l.org", "nodot"));
        let other = ProbeBook::new(Secret::from_bytes(vec![8; 32]), '+');
        assert!(!other.note(ProbeLeg::Forward, Stage::Rcpt, "l.org", &tag));
    }

    #[test]
    fn remembers_a_bounded_number() {
        let b = book();
        let first = b.start("l.org");
        for _ in 0..MAX_PROBES {
            b.start("l.org");
        }
        assert_eq!(b.lock().len(), MAX_PROBES);
        b.lock().remove(&first.id);
        // forgotten but genuine: still accepted (and not stored)
        let (leg, tag) = tag_of(&first.forward);
        assert!(b.note(leg, Stage::Data, "l.org", &tag));
    }
}
