//! The node's config file layer on arbitrary text: never panics, and a config it accepts
//! writes out (`to_toml`) to a file that reads back to an equal config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use setowire_node::config::NodeConfig;

fuzz_target!(|text: &str| {
    if let Ok(config) = NodeConfig::from_toml(text) {
        let again = NodeConfig::from_toml(&config.to_toml()).expect("to_toml reads back");
        assert_eq!(again, config);
    }
});
