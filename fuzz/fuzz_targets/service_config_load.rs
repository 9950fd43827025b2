//! The service configuration loader (file text, no environment): loaded or refused with every
//! issue listed, never a panic.
#![no_main]

use healthscore::pipeline::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::load_str(Some(text), "fuzz", Vec::<(String, String)>::new());
    }
});
