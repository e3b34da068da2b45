//! Time, from one place: the wall clock in seconds and milliseconds, the
//! day arithmetic the bounce scores and rate limits count in, and [`Clock`],
//! the "now" a service reads, which tests replace with a [`ManualClock`] they
//! move through days. A leaf: it imports nothing of the crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Seconds in a day: scores count once per day, rate limits per day, and
/// settings in days convert with it.
pub const DAY: u64 = 86_400;

/// Seconds since the Unix epoch (0 if the system clock is before it).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch: leases are shorter than a second in tests.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The day number of a time in seconds (days since the epoch, UTC).
pub const fn day_of(secs: u64) -> u64 {
    secs / DAY
}

/// `n` days in seconds (saturating: a huge setting means "forever").
pub const fn days(n: u64) -> u64 {
    n.saturating_mul(DAY)
}

/// The "now" (seconds) a service reads: the system clock in `serve`, a
/// [`ManualClock`] in tests that move time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(now))
    }

    /// A clock that reads `f`.
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// Seconds since the epoch, as this clock says.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// A clock a test sets and moves by hand; every [`Clock`] made from it
/// reads the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `start` (seconds since the epoch).
    pub fn new(start: u64) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(start)))
    }

    /// The [`Clock`] to give the service under test.
    pub fn clock(&self) -> Clock {
        let t = self.0.clone();
        Clock::from_fn(move || t.load(Ordering::SeqCst))
    }

    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// The time it stands at.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_every_clock_made_from_it() {
        let m = ManualClock::new(1_700_000_000);
        let c = m.clock();
        m.advance(days(2));
        assert_eq!(c.now(), 1_700_000_000 + 2 * DAY);
        assert_eq!(day_of(c.now()), day_of(1_700_000_000) + 2);
        assert!(Clock::system().now() > 1_700_000_000);
        assert_eq!(days(u64::MAX), u64::MAX);
    }
}
