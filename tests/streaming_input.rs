//! Issue 28: history read in bounded memory gives exactly what the old whole-history read gave.
//! The k-way merge and the external sort against the old in-memory stable sort (property test),
//! and the binary on inputs as users have them: standard input, gzip, zstd, a history larger
//! than `--memory`, a byte-order mark, CRLF, an empty input; and `--output -` and `*.gz`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, LazyLock};

use healthscore::engine::{Engine, EngineConfig};
use healthscore::event::{quick_time, timestamp_finder, Millis};
use healthscore::generate::{write_ndjson, GenConfig};
use healthscore::input::{History, Input, ReadOptions, Source};
use healthscore::replay::replay;
use healthscore::score::Scorecard;
use proptest::prelude::*;

/// A small generated history (with its bad lines and duplicates), as lines.
static LINES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let mut bytes = Vec::new();
    let cfg = GenConfig { customers: 12, days: 20, bad_input_rate: 0.03, ..GenConfig::default() };
    write_ndjson(cfg, &mut bytes).unwrap();
    bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
});

/// The order replay used before issue 28: every non-blank line of every input, a line without a
/// quick-read time at its predecessor's, stably sorted by time. (source, line number) pairs.
fn old_order(inputs: &[Input]) -> Vec<(usize, u64)> {
    let finder = timestamp_finder();
    let mut lines = Vec::new();
    for (file, input) in inputs.iter().enumerate() {
        let mut last = Millis::MIN;
        for (i, raw) in input.bytes.split(|b| *b == b'\n').enumerate() {
            let bytes = raw.strip_suffix(b"\r").unwrap_or(raw);
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            last = quick_time(&finder, bytes).map_or(last, |k| k.millis);
            lines.push((last, file, i as u64 + 1));
        }
    }
    lines.sort_by_key(|l| l.0);
    lines.into_iter().map(|(_, f, l)| (f, l)).collect()
}

fn new_order(history: &History) -> Vec<(usize, u64)> {
    let mut lines = history.lines().unwrap();
    let mut got = Vec::new();
    while let Some(l) = lines.next().unwrap() {
        got.push((l.file, l.line));
    }
    got
}

/// One engine's outputs and (reason, line bytes) of its dead letters.
fn replayed(history: &History) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut engines = vec![Engine::new(Arc::new(Scorecard::default_scorecard()), EngineConfig::default())];
    let (mut out, mut dead) = (Vec::new(), Vec::new());
    replay(&mut engines, history, &mut out, |d| dead.push((d.rejection.reason.as_str().to_string(), d.bytes.to_vec())))
        .unwrap();
    (out, dead)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Files each either in order or shuffled, with blank and CRLF lines, read with a memory
    /// limit of a few lines (so an unordered file is sorted in many runs, merged in levels) or of
    /// 4 MiB (its late lines are kept aside as outliers, the rest goes through the reorder buffer).
    #[test]
    fn merge_and_external_sort_give_the_old_in_memory_order(
        files in 1usize..5,
        assignment in proptest::collection::vec(0usize..5, 1..2000),
        shuffled in proptest::collection::vec(any::<bool>(), 5),
        seed in any::<u64>(),
        memory in prop_oneof![64usize..8192, Just(1usize << 22)],
    ) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut per_file: Vec<Vec<&[u8]>> = vec![Vec::new(); files];
        for (line, f) in LINES.iter().zip(assignment.iter().cycle()) {
            per_file[f % files].push(line);
        }
        let inputs: Vec<Input> = per_file
            .iter_mut()
            .enumerate()
            .map(|(i, lines)| {
                if shuffled[i] {
                    lines.shuffle(&mut rng);
                }
                let mut bytes = Vec::new();
                for (k, l) in lines.iter().enumerate() {
                    bytes.extend_from_slice(l);
                    bytes.extend_from_slice(if k % 7 == 3 { b"\r\n" } else { b"\n" });
                    if k % 11 == 5 {
                        bytes.extend_from_slice(b"  \n");
                    }
                }
                Input { name: format!("f{i}"), bytes }
            })
            .collect();
        let options = ReadOptions { memory, ..ReadOptions::default() };
        let history = History::open(inputs.iter().cloned().map(Source::Memory).collect(), &options).unwrap();
        let old = old_order(&inputs);
        prop_assert_eq!(history.line_count() as usize, old.len());
        prop_assert_eq!(new_order(&history), old.clone());
        // The same lines as one file in the old order replay to the same bytes.
        let lines_of: Vec<Vec<&[u8]>> = inputs
            .iter()
            .map(|i| i.bytes.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect())
            .collect();
        let mut sorted = Vec::new();
        for (f, l) in &old {
            sorted.extend_from_slice(lines_of[*f][*l as usize - 1]);
            sorted.push(b'\n');
        }
        let sorted = History::from_inputs([Input { name: "sorted".into(), bytes: sorted }]).unwrap();
        prop_assert_eq!(replayed(&history), replayed(&sorted));
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("healthscore-input-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The sample history as NDJSON bytes.
fn history_bytes() -> Vec<u8> {
    LINES.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect()
}

/// `healthscore replay -q` with `args`, `stdin` on standard input; (status code, stdout, stderr).
fn replay_cli(args: &[&std::ffi::OsStr], stdin: Option<&[u8]>) -> (Option<i32>, Vec<u8>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_healthscore"));
    cmd.arg("replay").arg("-q").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let stdin = stdin.map(<[u8]>::to_vec).unwrap_or_default();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&stdin);
    });
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (status.code(), stdout, String::from_utf8_lossy(&stderr).into_owned())
}

fn replay_file(path: &Path, extra: &[&str]) -> Vec<u8> {
    let mut args: Vec<&std::ffi::OsStr> = vec!["--input".as_ref(), path.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let (code, out, err) = replay_cli(&args, None);
    assert_eq!(code, Some(0), "{err}");
    out
}

#[test]
fn standard_input_gzip_and_zstd_replay_like_the_plain_file_and_gzip_output_unzips_to_it() {
    let dir = scratch("compressed");
    let bytes = history_bytes();
    let plain = dir.join("events.ndjson");
    std::fs::write(&plain, &bytes).unwrap();
    let expected = replay_file(&plain, &[]);
    assert!(expected.len() > 1000);

    // Two gzip members, as `cat a.gz b.gz` makes; named .ndjson: the content decides.
    let (a, b) = bytes.split_at(bytes.len() / 2);
    let mut gz = Vec::new();
    for part in [a, b] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        gz.extend(e.finish().unwrap());
    }
    let gz_path = dir.join("events-gz.ndjson");
    std::fs::write(&gz_path, &gz).unwrap();
    assert_eq!(replay_file(&gz_path, &[]), expected, "multi-member gzip");

    let zst_path = dir.join("events.zst");
    std::fs::write(&zst_path, zstd::encode_all(&bytes[..], 3).unwrap()).unwrap();
    assert_eq!(replay_file(&zst_path, &[]), expected, "zstd");

    let gz_out = dir.join("out.ndjson.gz");
    replay_file(&plain, &["--output", gz_out.to_str().unwrap()]);
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(std::fs::File::open(&gz_out).unwrap()), &mut unzipped)
        .unwrap();
    assert_eq!(unzipped, expected, "--output *.gz");
    assert_eq!(replay_file(&plain, &["--output", "-"]), expected, "--output - is standard output");

    for (what, input) in [("plain", &bytes), ("gzip", &gz)] {
        let (code, out, err) = replay_cli(&["--input".as_ref(), "-".as_ref()], Some(input));
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, expected, "{what} on standard input");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_history_larger_than_the_memory_limit_replays_like_the_sorted_file_and_leaves_no_spill() {
    let dir = scratch("spill");
    let bytes = history_bytes();
    let plain = dir.join("sorted.ndjson");
    std::fs::write(&plain, &bytes).unwrap();
    let expected = replay_file(&plain, &[]);
    // Reversed: every line is out of order; 4 KiB of memory for a history of hundreds of KiB.
    let reversed: Vec<u8> = LINES.iter().rev().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
    assert!(reversed.len() > 100 * 4096);
    let shuffled = dir.join("reversed.ndjson");
    std::fs::write(&shuffled, &reversed).unwrap();
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let got = replay_file(&shuffled, &["--memory", "4K", "--tmp-dir", tmp.to_str().unwrap()]);
    // Ties (same-instant events) take reversed file order, so compare as sets of lines.
    let sorted = |b: &[u8]| {
        let mut v: Vec<Vec<u8>> = b.split(|c| *c == b'\n').map(<[u8]>::to_vec).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&got), sorted(&expected));
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "the spill directory is removed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_byte_order_mark_and_crlf_line_ends_are_read_as_plain_ndjson() {
    let dir = scratch("bom");
    let bytes = history_bytes();
    let plain = dir.join("plain.ndjson");
    std::fs::write(&plain, &bytes).unwrap();
    let mut windows = b"\xEF\xBB\xBF".to_vec();
    for l in LINES.iter() {
        windows.extend_from_slice(l);
        windows.extend_from_slice(b"\r\n");
    }
    let bom = dir.join("excel.ndjson");
    std::fs::write(&bom, &windows).unwrap();
    let dead = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let expected = replay_file(&plain, &["--dead-letters", &dead("plain.dlq")]);
    assert_eq!(replay_file(&bom, &["--dead-letters", &dead("bom.dlq")]), expected);
    let reasons = |name: &str| -> Vec<(String, u64)> {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["reason"].as_str().unwrap().to_string(), v["line"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(reasons("bom.dlq"), reasons("plain.dlq"), "line 1 is not a dead letter");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_input_is_refused_with_its_name() {
    let dir = scratch("empty");
    let empty = dir.join("empty.ndjson");
    std::fs::write(&empty, "\n  \r\n").unwrap();
    let (code, _, err) = replay_cli(&["--input".as_ref(), empty.as_os_str()], None);
    assert_eq!(code, Some(2));
    assert!(err.contains("no events in") && err.contains("empty.ndjson"), "{err}");
    let (code, _, err) = replay_cli(&["--input".as_ref(), "-".as_ref()], Some(b""));
    assert_eq!(code, Some(2));
    assert!(err.contains("no events in -"), "{err}");
    let (code, _, err) = replay_cli(&["--input".as_ref(), dir.join("missing").as_os_str()], None);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read input") && err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
