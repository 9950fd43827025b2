//! The scorecard loader: any text is compiled or refused with its issues, never a panic.
#![no_main]

use healthscore::score::Scorecard;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Scorecard::from_toml(text, "fuzz");
    }
});
