//! Helpers the fuzz targets share: the fixed site key, a CPU clock for the
//! time budgets, and the LMTP site (store, intake, session limits).

pub mod lmtp;

use listrelay::secret::Secret;

/// The site key every target signs and verifies with. Fixed, so that a
/// finding replays; the fuzzer never sees it compared with `memcmp` (the
/// signer compares in constant time), so it cannot learn a signature.
pub fn secret() -> Secret {
    Secret::from_bytes(b"fuzzing key: fixed, 32 bytes...!".to_vec())
}

/// The CPU time this thread has used, in nanoseconds. Budgets are measured
/// in CPU time, not wall time, so that a loaded machine (other builds, `nice`)
/// does not turn into false findings.
pub fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}
