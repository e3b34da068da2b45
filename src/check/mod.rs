//! Self-checks an operator runs against a live installation.
//!
//! * [`probe`]: the server's side of `listrelay check mta`: it mints signed
//!   probe addresses and notes, in memory, when a probe arrives over LMTP;
//! * [`mta`]: the command's side: it sends the probes through the MTA, asks
//!   the server what arrived, and says which hop failed and what to change.

pub mod mta;
pub mod probe;
