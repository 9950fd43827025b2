//! `replay` end to end on a generated population: ordering, dead letters, determinism and
//! partitioned replays.

use std::sync::Arc;

use healthscore::engine::{Engine, EngineConfig};
use healthscore::event::{parse_rfc3339, DAY_MS};
use healthscore::generate::{write_ndjson, GenConfig};
use healthscore::input::{History, Input};
use healthscore::replay::replay;
use healthscore::score::Scorecard;

fn population() -> Vec<u8> {
    let mut bytes = Vec::new();
    let cfg = GenConfig { customers: 60, days: 45, bad_input_rate: 0.01, ..GenConfig::default() };
    write_ndjson(cfg, &mut bytes).unwrap();
    bytes
}

/// Replays `inputs` over `partitions` engines with the default scorecard: (outputs, dead-letter
/// reasons with lines).
fn run(inputs: &[Input], partitions: usize) -> (Vec<u8>, Vec<(usize, String)>) {
    run_with(Scorecard::default_scorecard(), inputs, partitions)
}

/// The default scorecard with every curve absolute (its relative curves' fallbacks): a
/// customer's score then depends on its own events only, not on its partition's population.
fn absolute() -> Scorecard {
    let text = healthscore::score::DEFAULT_SCORECARD
        .lines()
        .filter(|l| !l.starts_with("relative = "))
        .collect::<Vec<_>>()
        .join("\n");
    // events_30d has no fallback: without `relative` it has no curve at all, so drop its component.
    let start = text.find("[[component]]\nname = \"usage_volume\"").expect("usage_volume");
    let end = start + 1 + text[start + 1..].find("[[component]]").unwrap();
    Scorecard::from_toml(&format!("{}{}", &text[..start], &text[end..]), "absolute").expect("valid")
}

fn run_with(sc: Scorecard, inputs: &[Input], partitions: usize) -> (Vec<u8>, Vec<(usize, String)>) {
    let sc = Arc::new(sc);
    let mut engines: Vec<Engine> = (0..partitions).map(|_| Engine::new(sc.clone(), EngineConfig::default())).collect();
    let mut out = Vec::new();
    let mut dead = Vec::new();
    let history = History::from_inputs(inputs.iter().cloned()).unwrap();
    let summary =
        replay(&mut engines, &history, &mut out, |d| dead.push((d.line, d.rejection.reason.as_str().to_string())))
            .unwrap();
    assert_eq!(summary.applied + summary.duplicates + summary.rejected, summary.lines);
    assert_eq!(summary.rejected as usize, dead.len());
    (out, dead)
}

fn sorted_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    v.sort();
    v
}

#[test]
fn shuffled_input_replays_like_sorted_input() {
    let bytes = population();
    let sorted = [Input { name: "all".into(), bytes: bytes.clone() }];
    // The same lines reversed and split over two files.
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let (a, b): (Vec<_>, Vec<_>) = lines.iter().rev().enumerate().partition(|(i, _)| i % 2 == 0);
    let join = |v: Vec<(usize, &&[u8])>| {
        v.into_iter().flat_map(|(_, l)| l.iter().copied().chain([b'\n'])).collect::<Vec<u8>>()
    };
    let shuffled = [Input { name: "a".into(), bytes: join(a) }, Input { name: "b".into(), bytes: join(b) }];
    let (x, _) = run(&sorted, 1);
    let (y, _) = run(&shuffled, 1);
    assert!(!x.is_empty());
    // Lines with equal timestamps may be applied in another order, which can change which of
    // two same-instant events triggers a re-score; the outputs themselves must agree.
    assert_eq!(sorted_lines(&x).len(), sorted_lines(&y).len());
    assert_eq!(sorted_lines(&x), sorted_lines(&y));
}

#[test]
fn bad_lines_become_dead_letters_with_reasons_and_the_rest_is_scored() {
    let bytes = population();
    let (out, dead) = run(&[Input { name: "all".into(), bytes }], 1);
    assert!(dead.len() > 10, "about 1% bad input: {}", dead.len());
    let reasons: std::collections::BTreeSet<&str> = dead.iter().map(|(_, r)| r.as_str()).collect();
    for r in ["not_json", "missing_field", "unknown_type", "invalid_field", "timestamp_out_of_range"] {
        assert!(reasons.contains(r), "no {r} among {reasons:?}");
    }
    assert!(out.split(|b| *b == b'\n').any(|l| l.starts_with(br#"{"type":"alert""#)));
}

#[test]
fn partitioned_replays_are_deterministic_and_score_the_same_customers_alike() {
    let input = [Input { name: "all".into(), bytes: population() }];
    let (one, dead1) = run(&input, 1);
    let (three, dead3) = run(&input, 3);
    let (again, _) = run(&input, 3);
    assert_eq!(three, again, "same input and partition count: same bytes");
    assert_eq!(dead1, dead3, "dead letters are reported in input order whatever the partitioning");
    // Relative curves rank a customer among its partition's customers, so the default's scores
    // depend on the partitioning. With absolute curves each partition has its own stream time;
    // on this dense history every timer is still passed at the same point of each customer's
    // events, so the outputs agree line for line once every partition has received an event of
    // each source (before, a source a partition has not seen yet is "not connected" there).
    assert_ne!(sorted_lines(&one), sorted_lines(&three), "relative curves see another population");
    let (one, _) = run_with(absolute(), &input, 1);
    let (three, _) = run_with(absolute(), &input, 3);
    let after_first_week = |bytes: &[u8]| -> Vec<Vec<u8>> {
        let time = |l: &[u8]| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            parse_rfc3339(v["timestamp"].as_str().unwrap()).unwrap()
        };
        let lines = sorted_lines(bytes);
        let start = lines.iter().map(|l| time(l)).min().unwrap();
        lines.into_iter().filter(|l| time(l) >= start + 7 * DAY_MS).map(<[u8]>::to_vec).collect()
    };
    let (a, b) = (after_first_week(&one), after_first_week(&three));
    assert!(a.len() > 300, "{}", a.len());
    assert_eq!(a, b);
}

#[test]
fn issue_28_the_output_is_the_same_whatever_the_thread_count() {
    let bytes = population();
    for partitions in [1, 4] {
        let run_threads = |threads: usize| {
            let sc = Arc::new(Scorecard::default_scorecard());
            let mut engines: Vec<Engine> =
                (0..partitions).map(|_| Engine::new(sc.clone(), EngineConfig::default())).collect();
            let history = History::from_inputs([Input { name: "all".into(), bytes: bytes.clone() }])
                .unwrap()
                .with_threads(threads);
            let (mut out, mut dead) = (Vec::new(), Vec::new());
            replay(&mut engines, &history, &mut out, |d| dead.push((d.line, d.rejection.reason.as_str().to_string())))
                .unwrap();
            (out, dead)
        };
        let one = run_threads(1);
        assert!(!one.0.is_empty() && !one.1.is_empty());
        for threads in [2, 4] {
            assert!(run_threads(threads) == one, "{partitions} partitions, {threads} threads");
        }
    }
}
