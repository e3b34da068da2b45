//! The configuration file. Properties: no panic in parsing or validation; a
//! file that loads prints (`listrelay config show`, `Config::to_toml`) as
//! TOML that loads to the same configuration and validates the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use listrelay::config::Config;

fuzz_target!(|text: &str| {
    let Ok(config) = Config::from_toml(text) else {
        return;
    };
    let valid = config.validate().is_ok();
    let shown = config.to_toml();
    assert!(!shown.is_empty(), "a loaded configuration prints");
    let back = Config::from_toml(&shown)
        .unwrap_or_else(|e| panic!("the printed configuration does not load: {e}\n{shown}"));
    assert_eq!(back.to_toml(), shown, "printing is not stable");
    assert_eq!(
        back.validate().is_ok(),
        valid,
        "validation changed on reload"
    );
});
