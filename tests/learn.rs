//! Online learning through the engine's public API: promotion shows in `score_changed`,
//! `manual` changes no output, learning survives a snapshot in the middle, and it is
//! deterministic.

use std::sync::Arc;

use healthscore::engine::{Engine, EngineConfig};
use healthscore::generate::{write_ndjson, GenConfig};
use healthscore::learn::{LearnConfig, Promotion};
use healthscore::output::Output;
use healthscore::score::Scorecard;

fn history() -> Vec<u8> {
    let mut bytes = Vec::new();
    let cfg = GenConfig { customers: 300, days: 150, bad_input_rate: 0.0, ..GenConfig::default() };
    write_ndjson(cfg, &mut bytes).unwrap();
    bytes
}

/// Small thresholds so a 300-customer history promotes within 150 days.
fn config(enabled: bool, promotion: Promotion) -> EngineConfig {
    EngineConfig {
        learn: LearnConfig {
            enabled,
            promotion,
            min_churns: 10,
            min_eval_churns: 1,
            min_auc_gain: 0.0,
            eval_days: 14,
            cooldown_days: 14,
            ..LearnConfig::default()
        },
        ..EngineConfig::default()
    }
}

/// Feeds `lines` to `engine` and advances to the end; outputs as JSON lines.
fn feed(engine: &mut Engine, lines: &[&[u8]], out: &mut Vec<u8>, end: bool) {
    let mut outputs: Vec<Output> = Vec::new();
    for line in lines {
        let _ = engine.apply_bytes(line, None, &mut outputs);
    }
    if end {
        engine.advance_to(i64::MAX / 2, &mut outputs);
    }
    for o in &outputs {
        o.write_json(out);
        out.push(b'\n');
    }
}

fn run(bytes: &[u8], config: EngineConfig, cut: Option<usize>) -> (Vec<u8>, Engine) {
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let sc = Arc::new(Scorecard::default_scorecard());
    let mut engine = Engine::new(sc.clone(), config.clone());
    let mut out = Vec::new();
    let cut = cut.unwrap_or(lines.len());
    feed(&mut engine, &lines[..cut], &mut out, false);
    if cut < lines.len() {
        let state = engine.encode_state();
        engine = Engine::from_state(sc, config, &state).expect("restores");
    }
    feed(&mut engine, &lines[cut..], &mut out, true);
    (out, engine)
}

fn versions(out: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(out).unwrap();
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.contains("\"score_changed\""))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["model_version"].as_str().unwrap().to_string())
        .collect();
    v.dedup();
    v
}

#[test]
fn learning_promotes_a_learned_scorecard_and_survives_a_snapshot_in_the_middle() {
    let bytes = history();
    let (straight, engine) = run(&bytes, config(true, Promotion::Auto), None);
    let learner = engine.learner().expect("learning is on");
    assert!(learner.stats().refits > 0, "{:?}", learner.stats());
    assert!(learner.stats().promotions > 0, "{:?} {:?}", learner.stats(), learner.candidate());
    let seen = versions(&straight);
    assert_eq!(seen[0], "default-2026.12");
    assert!(seen.iter().any(|v| v.starts_with("learned-")), "{seen:?}");
    assert_eq!(&*engine.scorecard().version, seen.last().unwrap().as_str());

    let lines = bytes.iter().filter(|b| **b == b'\n').count();
    for cut in [lines / 3, 2 * lines / 3] {
        let (resumed, again) = run(&bytes, config(true, Promotion::Auto), Some(cut));
        assert!(resumed == straight, "outputs differ with a snapshot-restore after line {cut}");
        assert!(again.learner().unwrap().encode() == learner.encode(), "the learner state differs after a restore");
    }
    let (twice, _) = run(&bytes, config(true, Promotion::Auto), None);
    assert!(twice == straight, "learning is deterministic");
}

#[test]
fn manual_promotion_learns_a_candidate_and_changes_no_output() {
    let bytes = history();
    let (off, _) = run(&bytes, config(false, Promotion::Manual), None);
    let (manual, engine) = run(&bytes, config(true, Promotion::Manual), None);
    assert!(manual == off, "manual learning changed an output");
    let learner = engine.learner().unwrap();
    assert_eq!(learner.stats().promotions, 0);
    let c = learner.candidate().expect("a candidate");
    Scorecard::from_toml(&c.toml, "candidate").expect("the candidate checks");
    assert_eq!(&*engine.scorecard().version, "default-2026.12");
}

#[test]
fn a_state_without_learning_restores_into_an_engine_that_learns_and_back() {
    let bytes = history();
    let (_, engine) = run(&bytes, config(true, Promotion::Auto), None);
    let sc = Arc::new(Scorecard::default_scorecard());
    let off = Engine::from_state(sc.clone(), config(false, Promotion::Auto), &engine.encode_state()).unwrap();
    assert!(off.learner().is_none());
    assert_eq!(&*off.scorecard().version, "default-2026.12", "learning off: the configured scorecard");
    let on = Engine::from_state(sc, config(true, Promotion::Auto), &off.encode_state()).unwrap();
    assert_eq!(on.learner().unwrap().observations(), 0);
}

#[test]
fn the_service_writes_each_new_candidate_once_as_a_scorecard_file() {
    use healthscore::pipeline::candidates::CandidateWriter;
    let dir = tempfile::tempdir().unwrap();
    let bytes = history();
    for promotion in [Promotion::Manual, Promotion::Auto] {
        let (_, engine) = run(&bytes, config(true, promotion), None);
        let mut writer = CandidateWriter::new(dir.path());
        let path = writer.check(3, &engine).expect("a candidate file");
        assert_eq!(path, dir.path().join("partition-3.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let c = engine.learner().unwrap().candidate().unwrap();
        let status = match (promotion, &c.held_back) {
            (Promotion::Manual, _) => "not promoted (promotion = manual)".to_string(),
            (Promotion::Auto, None) => "promoted: it scores this partition now".to_string(),
            (Promotion::Auto, Some(why)) => format!("not promoted: {why}"),
        };
        assert!(text.starts_with("# Candidate scorecard learned online by partition 3"), "{text}");
        assert!(text.lines().take(3).any(|l| l.contains(&status)), "{promotion:?}: {text}");
        let sc = Scorecard::from_toml(&text, "file").expect("the file is a scorecard check-scorecard accepts");
        assert_eq!(&*sc.version, c.version.as_str());
        assert_eq!(writer.check(3, &engine), None, "the same candidate is written once");
    }
    let (_, off) = run(&bytes, config(false, Promotion::Manual), None);
    assert_eq!(CandidateWriter::new(dir.path()).check(4, &off), None, "no learner, no file");
}
