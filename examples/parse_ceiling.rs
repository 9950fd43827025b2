//! The parse ceiling `make bench-replay` compares `replay` with: read an NDJSON file line by line
//! (buffered, as `replay` reads it) and parse every line with plain serde_json into a small typed
//! borrowing struct, no validation, nothing kept. One thread, the whole process timed from outside.
//!
//! usage: parse_ceiling FILE

use std::io::{BufRead, BufReader};

#[path = "../benches/reference/mod.rs"]
mod reference;

fn main() {
    let path = std::env::args().nth(1).expect("usage: parse_ceiling FILE");
    let started = std::time::Instant::now();
    let mut r = BufReader::with_capacity(1 << 18, std::fs::File::open(&path).expect("open the file"));
    let (mut lines, mut parsed) = (0u64, 0u64);
    let mut line = Vec::with_capacity(1 << 12);
    while r.read_until(b'\n', &mut line).expect("read") > 0 {
        let l = line.strip_suffix(b"\n").unwrap_or(&line);
        if !l.is_empty() {
            lines += 1;
            parsed += u64::from(reference::parses(l));
        }
        line.clear();
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{lines} lines ({parsed} parsed) in {secs:.3} s: {:.0} lines/s", lines as f64 / secs);
}
