//! Free loopback ports, so tests can run in parallel.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that was free a moment ago (bind to port 0, read it,
/// close). Never returns the same port twice in one test process, so two
/// MTAs started by parallel tests do not race for it.
pub fn free_port() -> u16 {
    let mut g = HANDED_OUT.lock().unwrap();
    let set = g.get_or_insert_with(HashSet::new);
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let p = l.local_addr().unwrap().port();
        if set.insert(p) {
            return p;
        }
    }
}
