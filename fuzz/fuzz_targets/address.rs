//! Address parsing and recipient routing. Properties: no panic on any text or
//! delimiter; a parsed address prints as text that parses to the same address,
//! and its key is a fixed point; a routed address composed again with
//! `address::tagged` routes to the same list, handler and tag.
#![no_main]

use libfuzzer_sys::fuzz_target;
use listrelay::address::{self, Address};
use listrelay::model::List;

/// The delimiters the configuration accepts (config.rs validate), plus the
/// fuzzer's own choice when the configuration would accept it too.
fn delimiters(extra: char) -> Vec<char> {
    let mut d = vec!['+', '#', '=', '%', '.'];
    if !(extra.is_alphanumeric() || extra == '@' || extra.is_whitespace() || extra == '-') {
        d.push(extra);
    }
    d
}

// The input is the delimiter (its first character) and the address text.
fuzz_target!(|input: &str| {
    let mut chars = input.chars();
    let delimiter = chars.next().unwrap_or('+');
    let Ok(addr) = Address::parse(chars.as_str()) else {
        return;
    };
    let again = Address::parse(&addr.to_string()).expect("a printed address parses");
    assert_eq!(again, addr);
    let key = addr.key();
    let keyed = Address::parse(&key).expect("a key parses");
    assert_eq!(keyed.key(), key, "the key is a fixed point");

    for delimiter in delimiters(delimiter) {
        let Some(route) = address::route(&addr, delimiter) else {
            continue;
        };
        // Compose the address again the way listrelay writes its own.
        let Ok(list) = Address::parse(&format!("{}@{}", route.list, route.domain)) else {
            continue;
        };
        if list.local().contains(delimiter) || address::reserved_list_name(list.local()) {
            continue;
        }
        let text = match &route.tag {
            Some(tag) => address::tagged(&list, route.suffix, tag, delimiter),
            None => List::new(list.clone()).suffix_address(route.suffix),
        };
        let back = Address::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let back =
            address::route(&back, delimiter).unwrap_or_else(|| panic!("{text:?} does not route"));
        assert_eq!(back, route, "{text:?} routes elsewhere than {addr}");
    }
});
