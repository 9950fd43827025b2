//! The event parser, both paths (the fast scanner for small flat objects, the general parse for
//! the rest): never a panic or an overflow, and `parse_known` with a time read by `quick_time`
//! answers exactly as `parse` (the shells rely on it).
#![no_main]

use healthscore::event::{parse, parse_known, quick_time, timestamp_finder, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let finder = timestamp_finder();
    let known = quick_time(&finder, data);
    for topic in [None, Some(Source::ProductUsage), Some(Source::Support), Some(Source::Billing)] {
        let plain = parse(data, topic);
        let with_time = parse_known(data, topic, known);
        assert_eq!(format!("{plain:?}"), format!("{with_time:?}"), "parse_known differs from parse");
    }
});
