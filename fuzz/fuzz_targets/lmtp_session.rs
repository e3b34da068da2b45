//! The LMTP session: an MTA's pipelined commands and data in, replies out,
//! over a sled store on tmpfs. Properties: no panic, no stall, every reply
//! well formed, exactly one reply per command and exactly one per accepted
//! recipient after DATA or BDAT LAST, nothing more (listrelay_fuzz::lmtp).
#![no_main]

use libfuzzer_sys::fuzz_target;
use listrelay_fuzz::lmtp::run;

fuzz_target!(|script: &[u8]| {
    run(script);
});
