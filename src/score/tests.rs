use proptest::prelude::*;

use super::*;

fn card(extra: &str) -> Result<Scorecard, ScorecardError> {
    Scorecard::from_toml(&format!("version = \"t\"\n{extra}"), "test")
}

fn signals(values: &[(Signal, f64)]) -> Signals {
    let mut s = Signals::default();
    for (sig, v) in values {
        s.set(*sig, Some(*v));
    }
    s
}

const TWO: &str = r#"
[[component]]
name = "use"
signal = "active_days_30d"
weight = 3
bad = 0
good = 20

[[component]]
name = "csat"
signal = "csat_avg_90d"
weight = 1
bad = 1
good = 5
"#;

#[test]
fn missing_data_is_skipped_and_the_rest_renormalised() {
    let sc = card(TWO).unwrap();
    let mut parts = Vec::new();
    let score =
        sc.score(&signals(&[(Signal::ActiveDays30d, 10.0)]), Stage::Mature, 0, &References::default(), &mut parts);
    assert_eq!(score, 50.0, "csat skipped: the score is the usage component alone");
    assert_eq!(parts[1].points, None);
    assert_eq!(parts[1].weight, 0.0);
    assert_eq!(parts[0].weight, 1.0);
    let score = sc.score(
        &signals(&[(Signal::ActiveDays30d, 10.0), (Signal::CsatAvg90d, 5.0)]),
        Stage::Mature,
        0,
        &References::default(),
        &mut parts,
    );
    assert_eq!(score, 0.75 * 50.0 + 0.25 * 100.0);
    let total: f64 = parts.iter().map(|p| p.contribution).sum();
    assert!((total - score).abs() < 1e-9);
}

#[test]
fn missing_data_can_score_neutral_points() {
    let sc = card(&TWO.replace("good = 5\n", "good = 5\nmissing = 60\n")).unwrap();
    let mut parts = Vec::new();
    let score =
        sc.score(&signals(&[(Signal::ActiveDays30d, 10.0)]), Stage::Mature, 0, &References::default(), &mut parts);
    assert_eq!(score, 0.75 * 50.0 + 0.25 * 60.0);
}

#[test]
fn stages_and_segments_override_weights_and_bounds() {
    let sc = card(&format!(
        "{TWO}
[stage.onboarding.component.use]
good = 10
[[segment]]
name = \"big\"
plans = [\"Enterprise\"]
[segment.component.csat]
weight = 3
"
    ))
    .unwrap();
    let s = signals(&[(Signal::ActiveDays30d, 10.0), (Signal::CsatAvg90d, 1.0)]);
    let mut parts = Vec::new();
    assert_eq!(sc.score(&s, Stage::Mature, 0, &References::default(), &mut parts), 37.5);
    assert_eq!(
        sc.score(&s, Stage::Onboarding, 0, &References::default(), &mut parts),
        75.0,
        "onboarding: 10 active days is full marks"
    );
    let big = sc.segment_of(Some("enterprise"));
    assert_eq!(&*sc.segments[big as usize].name, "big", "plans match case-insensitively");
    assert_eq!(
        sc.score(&s, Stage::Mature, big, &References::default(), &mut parts),
        25.0,
        "csat weighs as much as usage"
    );
    assert_eq!(sc.score(&s, Stage::Onboarding, big, &References::default(), &mut parts), 50.0, "both overrides apply");
    assert_eq!(sc.segment_of(Some("unknown-plan")), 0);
    assert_eq!(sc.segment_of(None), 0);
}

#[test]
fn stage_follows_tenure_then_renewal() {
    let sc = Scorecard::default_scorecard();
    let stage = |tenure: f64, renewal: Option<f64>| {
        let mut s = signals(&[(Signal::TenureDays, tenure)]);
        s.set(Signal::DaysToRenewal, renewal);
        sc.stage_of(&s)
    };
    assert_eq!(stage(10.0, Some(20.0)), Stage::Onboarding);
    assert_eq!(stage(200.0, Some(20.0)), Stage::Renewal);
    assert_eq!(stage(200.0, Some(200.0)), Stage::Mature);
    assert_eq!(stage(200.0, Some(-3.0)), Stage::Mature, "a passed renewal date is not a renewal window");
    assert_eq!(stage(200.0, None), Stage::Mature);
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let err = Scorecard::from_toml(
        r#"
version = ""
[bands]
red_below = 80
green_from = 70
[[component]]
name = "a"
signal = "no_such_signal"
weight = -1
bad = 1
good = 1
[[component]]
name = "a"
signal = "last_nps"
weight = 1
steps = [{ at = 5, points = 10 }, { at = 2, points = 200 }]
[stage.teenage.component.a]
weight = 1
[[segment]]
name = "s"
plans = ["pro"]
[segment.component.nope]
weight = 2
[rules.gone_quiet]
cooldown_days = 0
threshold = 3
"#,
        "bad.toml",
    )
    .unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    for expected in [
        "version",
        "bands",
        "component[0] (a).signal",
        "component[0] (a).weight",
        "component[0] (a).curve",
        "component[1] (a).name",
        "component[1] (a).curve.steps[1]",
        "stage.teenage",
        "segment[0].component.nope",
        "rules.gone_quiet.cooldown_days",
        "rules.gone_quiet.threshold",
    ] {
        assert!(keys.contains(&expected), "no issue for {expected}; got {keys:#?}");
    }
    let text = err.to_string();
    assert!(text.starts_with("invalid scorecard bad.toml"), "{text}");
    assert!(text.contains("known signals: active_days_7d"), "unknown signals list the known ones: {text}");
}

#[test]
fn unknown_keys_are_rejected_with_their_line() {
    let err = card(&format!("{TWO}\n[bands]\nred_bellow = 30\n")).unwrap_err();
    assert_eq!(err.issues.len(), 1);
    assert!(err.issues[0].reason.contains("red_bellow"), "{err}");
    assert!(err.issues[0].key.starts_with("line "), "{err}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_key_and_line() {
    let extra = format!("{TWO}\n[bands]\nred_below = \"forty\"\n");
    let err = card(&extra).unwrap_err();
    assert_eq!(err.issues.len(), 1);
    // `card` puts one line (the version) before `extra`.
    let line = 2 + extra.lines().position(|l| l.starts_with("red_below")).unwrap();
    assert_eq!(err.issues[0].key, format!("line {line}, bands.red_below"), "{err}");
    assert!(err.issues[0].reason.contains("invalid type"), "{err}");
}

#[test]
fn the_default_scorecard_weighs_usage_most() {
    let sc = Scorecard::default_scorecard();
    let comps = sc.components(Stage::Mature, 0);
    let total: f64 = comps.iter().map(|c| c.weight).sum();
    let usage: f64 = comps
        .iter()
        .filter(|c| {
            matches!(
                c.signal,
                Signal::ActiveDays30d
                    | Signal::UsageTrendPct
                    | Signal::DaysSinceLastActivity
                    | Signal::SeatUtilisationPct
                    | Signal::CoreFeatureAdoptionPct
                    | Signal::FeatureBreadth30d
            )
        })
        .map(|c| c.weight)
        .sum();
    assert!(usage / total >= 0.5, "usage is {:.0}% of the weight", 100.0 * usage / total);
}

fn any_signals() -> impl Strategy<Value = Signals> {
    prop::collection::vec(prop::option::of(-1e4f64..1e4), SIGNAL_COUNT).prop_map(|v| {
        let mut s = Signals::default();
        for (i, x) in v.into_iter().enumerate() {
            s.0[i] = x;
        }
        s
    })
}

use crate::signal::SIGNAL_COUNT;

proptest! {
    /// Whatever the signals, stage and segment, the score is 0–100 and equals the sum of the
    /// contributions, and the applied weights sum to 1.
    #[test]
    fn score_is_bounded_and_explained(s in any_signals(), stage in 0usize..3, segment in 0u8..3) {
        let sc = Scorecard::default_scorecard();
        let mut parts = Vec::new();
        let score = sc.score(&s, Stage::ALL[stage], segment, &References::default(), &mut parts);
        prop_assert!((0.0..=100.0).contains(&score));
        let sum: f64 = parts.iter().map(|p| p.contribution).sum();
        prop_assert!((sum - score).abs() < 1e-6);
        let w: f64 = parts.iter().map(|p| p.weight).sum();
        prop_assert!((w - 1.0).abs() < 1e-9 || w == 0.0);
    }
}

#[test]
fn caps_hold_an_acute_problem_out_of_green_and_keep_the_explanation_summing() {
    let sc = card(&format!(
        "{TWO}
[[cap]]
name = \"unhappy\"
signal = \"csat_avg_90d\"
at_most = 2
max_score = 60
"
    ))
    .unwrap();
    let mut parts = Vec::new();
    let mut applied = Vec::new();
    let s = signals(&[(Signal::ActiveDays30d, 20.0), (Signal::CsatAvg90d, 1.0)]);
    let weighted = sc.score(&s, Stage::Mature, 0, &References::default(), &mut parts);
    assert_eq!(weighted, 75.0);
    let capped = sc.cap(&s, weighted, &mut parts, &mut applied);
    assert_eq!(capped, 60.0);
    assert_eq!(applied, vec![0]);
    let sum: f64 = parts.iter().map(|p| p.contribution).sum();
    assert!((sum - 60.0).abs() < 1e-9, "contributions scaled to the capped score: {sum}");
    // A cap above the score, or whose condition does not hold, changes nothing.
    let fine = signals(&[(Signal::ActiveDays30d, 20.0), (Signal::CsatAvg90d, 4.0)]);
    let w = sc.score(&fine, Stage::Mature, 0, &References::default(), &mut parts);
    assert_eq!(sc.cap(&fine, w, &mut parts, &mut applied), w);
    assert!(applied.is_empty());
}

#[test]
fn a_cap_needs_exactly_one_condition() {
    let err = card(&format!("{TWO}\n[[cap]]\nname = \"x\"\nsignal = \"last_nps\"\nmax_score = 50\n")).unwrap_err();
    assert_eq!(err.issues[0].key, "cap[0] (x).at_most");
}

const RELATIVE: &str = r#"
[[component]]
name = "use"
signal = "active_days_30d"
weight = 1
relative = "higher"
bad = 0
good = 20

[[component]]
name = "volume"
signal = "events_30d"
weight = 1
relative = "higher"
"#;

#[test]
fn a_relative_curve_ranks_among_peers_and_falls_back_until_there_are_enough() {
    let sc = card(RELATIVE).unwrap();
    assert!(sc.relative_signals.len() == 2 && sc.relative_signals.contains(&Signal::Events30d));
    let s = signals(&[(Signal::ActiveDays30d, 10.0), (Signal::Events30d, 40.0)]);
    let mut parts = Vec::new();
    // No reference yet: `use` scores on its fallback curve, `volume` (none) is left out.
    let score = sc.score(&s, Stage::Mature, 0, &References::default(), &mut parts);
    assert_eq!((score, parts[0].points, parts[1].points), (50.0, Some(50.0), None));
    assert!(parts.iter().all(|p| p.rank.is_none()));
    // 100 peers, 0..=99 active days and 0..=198 events: 10 days and 40 events both rank low.
    let mut pop = Population::new(&sc.relative_signals, sc.segments.len());
    pop.refresh(0);
    for v in 0..100 {
        pop.add(&signals(&[(Signal::ActiveDays30d, v as f64), (Signal::Events30d, 2.0 * v as f64)]), Stage::Mature, 0);
    }
    pop.refresh(crate::event::DAY_MS);
    let score = sc.score(&s, Stage::Mature, 0, pop.references(), &mut parts);
    let (use_points, volume_points) = (parts[0].points.unwrap(), parts[1].points.unwrap());
    assert!((use_points - 10.5).abs() < 2.0 && (volume_points - 20.5).abs() < 2.0, "{parts:?}");
    assert!((score - (use_points + volume_points) / 2.0).abs() < 1e-9);
    assert!(parts[0].rank.is_some_and(|r| (r.above - 0.89).abs() < 0.02), "{:?}", parts[0].rank);
}

#[test]
fn a_relative_curve_is_higher_or_lower_and_its_fallback_points_the_same_way() {
    let bad_word = card(&RELATIVE.replace(
        r#"relative = "higher"
bad"#,
        r#"relative = "more"
bad"#,
    ))
    .unwrap_err();
    assert!(
        bad_word.to_string().contains("component[0] (use).relative") && bad_word.to_string().contains("\"more\""),
        "{bad_word}"
    );
    let against = card(&RELATIVE.replace("bad = 0\ngood = 20", "bad = 20\ngood = 0")).unwrap_err();
    assert!(against.to_string().contains("points the other way"), "{against}");
    let lower = card(&RELATIVE.replace(
        r#"relative = "higher"
bad"#,
        r#"relative = "lower"
bad"#,
    ))
    .unwrap_err();
    assert!(lower.to_string().contains("points the other way"), "{lower}");
}

#[test]
fn an_override_of_a_relative_component_changes_its_fallback_and_it_stays_relative() {
    let sc = card(&format!("{RELATIVE}\n[stage.onboarding.component.use]\ngood = 10\nweight = 3\n")).unwrap();
    let onboarding = &sc.components(Stage::Onboarding, 0)[0];
    assert_eq!(onboarding.weight, 3.0);
    match &onboarding.curve {
        Curve::Relative { higher_is_better: true, fallback: Some(f) } => {
            assert_eq!(**f, Curve::Linear { bad: 0.0, good: 10.0 })
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(sc.components(Stage::Mature, 0)[0].curve, Curve::Relative { .. }));
}
