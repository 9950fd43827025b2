//! The snapshot reader: the file decoder (header, sections, checksum), and the engine state
//! decoder behind it on arbitrary sections (the checksum would keep a fuzzer from ever reaching
//! it through a file). Any input is refused with an error or restored, never a panic or an
//! allocation the input's size does not justify.
#![no_main]

use std::sync::Arc;

use healthscore::engine::{Engine, EngineConfig};
use healthscore::score::Scorecard;
use healthscore::snapshot::format::{decode, unpack_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode(data);
    let sections: Vec<&[u8]> = data.split(|b| *b == 0xF7).take(8).collect();
    let scorecard = Arc::new(Scorecard::default_scorecard());
    let _ = Engine::from_state_packed(scorecard.clone(), EngineConfig::default(), &sections, &unpack_frame);
    let raw: Vec<Vec<u8>> = sections.iter().map(|s| s.to_vec()).collect();
    let _ = Engine::from_state(scorecard, EngineConfig::default(), &raw);
});
