//! `replay`: run the engine over NDJSON history files. How users try a scorecard on history and
//! how the tests drive the engine end to end.
//!
//! Inputs may mix the three sources and need not be sorted: lines are ordered by event time
//! (stable, so ties keep file order) before they are applied, as if they had arrived in order.
//! At the end stream time is advanced to the last event time, so the allowed lateness does not
//! hold back the last timers.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use memchr::memmem;

use crate::engine::{Engine, Outcome};
use crate::event::{parse_rfc3339, Millis, RejectReason, Rejection};
use crate::output::Output;

/// One input line that was not applied.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter<'a> {
    pub file: usize,
    pub line: usize,
    pub bytes: &'a [u8],
    pub rejection: Rejection,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplaySummary {
    pub lines: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub outputs: u64,
    pub elapsed: Duration,
}

/// An input file's bytes with a name for messages.
pub struct Input {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Replays `inputs` through `engine`, writing each output as a JSON line to `out` and handing
/// each rejected line to `dead_letter`.
pub fn replay(
    engine: &mut Engine,
    inputs: &[Input],
    out: &mut impl Write,
    mut dead_letter: impl FnMut(DeadLetter<'_>),
) -> io::Result<ReplaySummary> {
    let started = Instant::now();
    let lines = ordered_lines(inputs);
    let mut summary = ReplaySummary { lines: lines.len() as u64, ..Default::default() };
    let mut outputs: Vec<Output> = Vec::new();
    let mut buf = Vec::with_capacity(1 << 16);
    let mut flush = |outputs: &mut Vec<Output>, buf: &mut Vec<u8>, summary: &mut ReplaySummary| -> io::Result<()> {
        for o in outputs.drain(..) {
            o.write_json(buf);
            buf.push(b'\n');
            summary.outputs += 1;
        }
        if buf.len() >= 1 << 16 {
            out.write_all(buf)?;
            buf.clear();
        }
        Ok(())
    };
    for l in &lines {
        let bytes = l.bytes;
        match engine.apply_bytes(bytes, None, &mut outputs) {
            Ok(Outcome::Applied) => summary.applied += 1,
            Ok(Outcome::Duplicate) => summary.duplicates += 1,
            Err(rejection) => {
                summary.rejected += 1;
                dead_letter(DeadLetter { file: l.file, line: l.line, bytes, rejection });
            }
        }
        flush(&mut outputs, &mut buf, &mut summary)?;
    }
    if let Some(last) = lines.iter().map(|l| l.time).max().filter(|t| *t != Millis::MIN) {
        engine.advance_to(last, &mut outputs);
    }
    flush(&mut outputs, &mut buf, &mut summary)?;
    out.write_all(&buf)?;
    out.flush()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

struct Line<'a> {
    time: Millis,
    file: usize,
    line: usize,
    bytes: &'a [u8],
}

/// Every non-blank line of every input, in event-time order. The time is read with a substring
/// search rather than a full parse (the full parse happens once, in the engine); a line whose
/// time cannot be read keeps its place relative to its neighbours and is rejected later.
fn ordered_lines(inputs: &[Input]) -> Vec<Line<'_>> {
    let finder = memmem::Finder::new(b"\"timestamp\"");
    let mut lines = Vec::new();
    for (file, input) in inputs.iter().enumerate() {
        let mut last_time = Millis::MIN;
        for (i, raw) in input.bytes.split(|b| *b == b'\n').enumerate() {
            let bytes = raw.strip_suffix(b"\r").unwrap_or(raw);
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let time = quick_timestamp(&finder, bytes).unwrap_or(last_time);
            last_time = time;
            lines.push(Line { time, file, line: i + 1, bytes });
        }
    }
    if !lines.windows(2).all(|w| w[0].time <= w[1].time) {
        lines.sort_by_key(|l| l.time); // stable: ties keep input order
    }
    lines
}

fn quick_timestamp(finder: &memmem::Finder<'_>, line: &[u8]) -> Option<Millis> {
    let at = finder.find(line)? + b"\"timestamp\"".len();
    let rest = &line[at..];
    let open = rest.iter().position(|b| *b == b'"')?;
    if !rest[..open].iter().all(|b| *b == b':' || b.is_ascii_whitespace()) {
        return None;
    }
    let value = &rest[open + 1..];
    let close = value.iter().position(|b| *b == b'"')?;
    parse_rfc3339(std::str::from_utf8(&value[..close]).ok()?)
}

/// A dead letter as a JSON line: where it came from, why, and the original line untouched
/// (as a string when it is UTF-8, else base16).
pub fn dead_letter_json(inputs: &[Input], d: &DeadLetter<'_>) -> String {
    let original = match std::str::from_utf8(d.bytes) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::Value::String(d.bytes.iter().map(|b| format!("{b:02x}")).collect()),
    };
    serde_json::json!({
        "reason": d.rejection.reason.as_str(),
        "field": d.rejection.field,
        "message": d.rejection.message,
        "file": inputs[d.file].name,
        "line": d.line,
        "original": original,
    })
    .to_string()
}

/// Counts of rejections by reason, for summaries.
pub fn rejected_by_reason(engine: &Engine) -> Vec<(RejectReason, u64)> {
    RejectReason::ALL.into_iter().map(|r| (r, engine.stats().rejected[r as usize])).filter(|(_, n)| *n > 0).collect()
}
