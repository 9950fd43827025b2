//! Scorecard files (TOML): what a user writes, its checks, and its compilation into a
//! [`Scorecard`] that scores without looking anything up by name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::curve::{Curve, Step};
use super::{Component, Missing, Scorecard, Segment, Stage};
use crate::band::Bands;
use crate::config_issue::{write_issues, ConfigIssue};
use crate::hash::key32;
use crate::rules::RulesFile;
use crate::signal::Signal;

/// The scorecard shipped with healthscore, used when none is given.
pub const DEFAULT_SCORECARD: &str = include_str!("../../scorecards/default.toml");

/// Days of daily scores kept per customer, the longest `sharp_drop` window.
pub const SCORE_HISTORY_DAYS: u32 = 31;

/// Every problem found in a scorecard, so a user fixes them in one round.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScorecardError {
    pub source_name: String,
    pub issues: Vec<ConfigIssue>,
}

impl std::fmt::Display for ScorecardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_issues(f, "scorecard", &self.source_name, &self.issues)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScorecardFile {
    version: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    core_features: Vec<String>,
    #[serde(default = "default_falling_usage_pct")]
    falling_usage_pct: f64,
    #[serde(default)]
    bands: BandsFile,
    #[serde(default)]
    emit: EmitFile,
    #[serde(default)]
    stages: StagesFile,
    #[serde(default, rename = "component")]
    components: Vec<ComponentFile>,
    /// `[stage.<onboarding|renewal|mature>.component.<name>]` overrides.
    #[serde(default, rename = "stage")]
    stage_overrides: BTreeMap<String, StageFile>,
    #[serde(default, rename = "segment")]
    segments: Vec<SegmentFile>,
    #[serde(default, rename = "cap")]
    caps: Vec<CapFile>,
    #[serde(default)]
    rules: RulesFile,
    /// `[probability]`: the churn probability each score stands for, as `calibrate` fitted it.
    #[serde(default)]
    probability: Option<super::probability::Probability>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapFile {
    name: String,
    signal: String,
    at_most: Option<f64>,
    at_least: Option<f64>,
    max_score: f64,
    #[serde(default)]
    #[allow(dead_code)] // documentation for people reading the file
    description: Option<String>,
}

fn default_falling_usage_pct() -> f64 {
    -25.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BandsFile {
    red_below: f64,
    green_from: f64,
    hysteresis: f64,
}

impl Default for BandsFile {
    fn default() -> Self {
        BandsFile { red_below: 40.0, green_from: 70.0, hysteresis: 3.0 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EmitFile {
    min_score_delta: f64,
}

impl Default for EmitFile {
    fn default() -> Self {
        EmitFile { min_score_delta: 5.0 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StagesFile {
    onboarding_days: u32,
    renewal_days: u32,
}

impl Default for StagesFile {
    fn default() -> Self {
        StagesFile { onboarding_days: 90, renewal_days: 90 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentFile {
    name: String,
    signal: String,
    weight: f64,
    bad: Option<f64>,
    good: Option<f64>,
    steps: Option<Vec<StepFile>>,
    /// `"higher"` or `"lower"`: score the customer's percentile among its peers, the better
    /// end being higher or lower values (see `score::population`).
    relative: Option<String>,
    #[serde(default)]
    missing: Option<MissingFile>,
    #[serde(default)]
    #[allow(dead_code)] // documentation for people reading the file
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    at: f64,
    points: f64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MissingFile {
    Word(String),
    Neutral(f64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    weight: Option<f64>,
    bad: Option<f64>,
    good: Option<f64>,
    steps: Option<Vec<StepFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    #[serde(default)]
    component: BTreeMap<String, OverrideFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentFile {
    name: String,
    plans: Vec<String>,
    #[serde(default, rename = "component")]
    overrides: BTreeMap<String, OverrideFile>,
}

impl Scorecard {
    /// The shipped default scorecard.
    pub fn default_scorecard() -> Scorecard {
        Scorecard::from_toml(DEFAULT_SCORECARD, "(built-in default)").expect("the built-in scorecard is valid")
    }

    /// Reads and checks a scorecard file.
    pub fn load(path: &Path) -> Result<Scorecard, ScorecardError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScorecardError {
            source_name: name.clone(),
            issues: vec![ConfigIssue::new("(file)", format!("cannot read: {e}"))],
        })?;
        Scorecard::from_toml(&text, &name)
    }

    /// Parses and checks scorecard TOML; `source_name` names it in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Scorecard, ScorecardError> {
        let fail = |issues| ScorecardError { source_name: source_name.to_string(), issues };
        // The path of the key at fault as well as its line: a type error's own message names
        // neither (`invalid type: string "x", expected f64`).
        let file: ScorecardFile = serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let path = e.path().to_string();
            let e = e.into_inner();
            let line = e.span().map(|s| line_of(text, s.start));
            let key = match (path.as_str(), line) {
                ("." | "", Some(line)) => line,
                ("." | "", None) => "(file)".into(),
                (path, Some(line)) => format!("{line}, {path}"),
                (path, None) => path.to_string(),
            };
            fail(vec![ConfigIssue::new(key, e.message().to_string())])
        })?;
        let mut issues = Vec::new();
        let card = compile(file, text, &mut issues);
        if issues.is_empty() {
            Ok(card)
        } else {
            Err(fail(issues))
        }
    }
}

fn line_of(text: &str, offset: usize) -> String {
    format!("line {}", text[..offset.min(text.len())].matches('\n').count() + 1)
}

fn compile(file: ScorecardFile, text: &str, issues: &mut Vec<ConfigIssue>) -> Scorecard {
    if let Some(p) = &file.probability {
        p.check(issues);
    }
    let mut issue = |key: String, reason: String| issues.push(ConfigIssue::new(key, reason));

    if file.version.trim().is_empty() {
        issue("version".into(), "must name this scorecard's version (it is stamped on every output)".into());
    }
    let b = &file.bands;
    if !(0.0..=100.0).contains(&b.red_below) || !(0.0..=100.0).contains(&b.green_from) || b.red_below >= b.green_from {
        issue(
            "bands".into(),
            format!("need 0 ≤ red_below < green_from ≤ 100, got {} and {}", b.red_below, b.green_from),
        );
    }
    if !(b.hysteresis >= 0.0 && b.hysteresis < (b.green_from - b.red_below) / 2.0) {
        issue("bands.hysteresis".into(), "must be ≥ 0 and less than half the yellow band's width".into());
    }
    if !(file.emit.min_score_delta > 0.0 && file.emit.min_score_delta <= 100.0) {
        issue("emit.min_score_delta".into(), format!("must be > 0 and ≤ 100, got {}", file.emit.min_score_delta));
    }
    if !(-100.0..=0.0).contains(&file.falling_usage_pct) {
        issue(
            "falling_usage_pct".into(),
            format!("must be from -100 to 0 (a % fall in usage), got {}", file.falling_usage_pct),
        );
    }
    for (i, f) in file.core_features.iter().enumerate() {
        if f.is_empty() {
            issue(format!("core_features[{i}]"), "must not be empty".into());
        }
    }

    // Base components.
    let mut base = Vec::new();
    let mut names = BTreeSet::new();
    if file.components.is_empty() {
        issue("component".into(), "a scorecard needs at least one [[component]]".into());
    }
    for (i, c) in file.components.iter().enumerate() {
        let key = |k: &str| format!("component[{i}] ({}).{k}", c.name);
        if c.name.is_empty() || !names.insert(c.name.clone()) {
            issue(key("name"), "must be non-empty and unique".into());
        }
        let signal = Signal::from_name(&c.signal);
        if signal.is_none() {
            let known: Vec<_> = Signal::ALL.iter().map(|s| s.name()).collect();
            issue(key("signal"), format!("unknown signal {:?}; known signals: {}", c.signal, known.join(", ")));
        }
        check_weight(c.weight, &key("weight"), &mut issue);
        let curve = match &c.relative {
            None => build_curve(&c.bad, &c.good, &c.steps, &key("curve"), &mut issue),
            Some(dir) => {
                let higher_is_better = match dir.as_str() {
                    "higher" => Some(true),
                    "lower" => Some(false),
                    other => {
                        issue(
                            key("relative"),
                            format!("must be \"higher\" or \"lower\" (which values are better), got {other:?}"),
                        );
                        None
                    }
                };
                // `bad`/`good`/`steps` beside `relative`: the curve used until the population has a reference.
                let fallback = (c.bad.is_some() || c.good.is_some() || c.steps.is_some())
                    .then(|| build_curve(&c.bad, &c.good, &c.steps, &key("curve"), &mut issue))
                    .flatten();
                if let (Some(Curve::Linear { bad, good }), Some(higher)) = (&fallback, higher_is_better) {
                    if (good > bad) != higher {
                        issue(
                            key("relative"),
                            format!(
                                "is {dir:?} but the fallback curve (bad = {bad}, good = {good}) points the other way"
                            ),
                        );
                    }
                }
                higher_is_better.map(|h| Curve::Relative { higher_is_better: h, fallback: fallback.map(Box::new) })
            }
        }
        .unwrap_or(Curve::Linear { bad: 0.0, good: 1.0 });
        let missing = match &c.missing {
            None => Missing::Skip,
            Some(MissingFile::Word(w)) if w == "skip" => Missing::Skip,
            Some(MissingFile::Neutral(p)) if (0.0..=100.0).contains(p) => Missing::Neutral(*p),
            Some(other) => {
                let got = match other {
                    MissingFile::Word(w) => format!("{w:?}"),
                    MissingFile::Neutral(p) => p.to_string(),
                };
                issue(key("missing"), format!("must be \"skip\" or neutral points from 0 to 100, got {got}"));
                Missing::Skip
            }
        };
        base.push(Component {
            name: Arc::from(c.name.as_str()),
            signal: signal.unwrap_or(Signal::ActiveDays30d),
            weight: c.weight,
            curve,
            missing,
        });
    }
    if !base.is_empty() && base.iter().all(|c| c.weight <= 0.0) {
        issue("component".into(), "at least one component needs a weight above 0".into());
    }

    // Segments.
    let mut segments = vec![Segment { name: Arc::from("default"), plans: Vec::new() }];
    let mut plan_owner: BTreeMap<String, String> = BTreeMap::new();
    for (i, s) in file.segments.iter().enumerate() {
        let key = |k: &str| format!("segment[{i}] ({}).{k}", s.name);
        if s.name.is_empty() || s.name == "default" || segments.iter().any(|x| *x.name == *s.name) {
            issue(key("name"), "must be non-empty, unique and not \"default\" (the segment of unlisted plans)".into());
        }
        if s.plans.is_empty() {
            issue(key("plans"), "list at least one plan".into());
        }
        for p in &s.plans {
            if let Some(other) = plan_owner.insert(p.to_lowercase(), s.name.clone()) {
                issue(key("plans"), format!("plan {p:?} is already in segment {other:?}"));
            }
        }
        segments.push(Segment {
            name: Arc::from(s.name.as_str()),
            plans: s.plans.iter().map(|p| p.to_lowercase()).collect(),
        });
    }

    for stage in file.stage_overrides.keys() {
        if Stage::from_name(stage).is_none() {
            issue(format!("stage.{stage}"), "unknown stage; stages are onboarding, renewal, mature".into());
        }
    }

    // One table per (stage, segment): base, then the segment's overrides, then the stage's.
    let mut tables = Vec::with_capacity(Stage::ALL.len() * segments.len());
    for stage in Stage::ALL {
        for si in 0..segments.len() {
            let mut table = base.clone();
            let seg_overrides =
                if si == 0 { None } else { Some((&file.segments[si - 1].overrides, format!("segment[{}]", si - 1))) };
            let stage_overrides =
                file.stage_overrides.get(stage.as_str()).map(|o| (&o.component, format!("stage.{}", stage.as_str())));
            for (overrides, prefix) in [seg_overrides, stage_overrides].into_iter().flatten() {
                for (name, o) in overrides {
                    let key = |k: &str| format!("{prefix}.component.{name}.{k}");
                    let Some(c) = table.iter_mut().find(|c| *c.name == **name) else {
                        issue(
                            format!("{prefix}.component.{name}"),
                            "overrides a component the scorecard does not have".into(),
                        );
                        continue;
                    };
                    if let Some(w) = o.weight {
                        check_weight(w, &key("weight"), &mut issue);
                        c.weight = w;
                    }
                    if o.bad.is_some() || o.good.is_some() || o.steps.is_some() {
                        // On a relative component the bounds are its fallback's: it stays relative.
                        if let Curve::Relative { fallback, .. } = &mut c.curve {
                            let (bad, good) = match fallback.as_deref() {
                                Some(Curve::Linear { bad, good }) if o.steps.is_none() => {
                                    (Some(o.bad.unwrap_or(*bad)), Some(o.good.unwrap_or(*good)))
                                }
                                _ => (o.bad, o.good),
                            };
                            if let Some(curve) = build_curve(&bad, &good, &o.steps, &key("curve"), &mut issue) {
                                *fallback = Some(Box::new(curve));
                            }
                            continue;
                        }
                        let (bad, good) = match &c.curve {
                            Curve::Linear { bad, good } if o.steps.is_none() => {
                                (Some(o.bad.unwrap_or(*bad)), Some(o.good.unwrap_or(*good)))
                            }
                            _ => (o.bad, o.good),
                        };
                        if let Some(curve) = build_curve(&bad, &good, &o.steps, &key("curve"), &mut issue) {
                            c.curve = curve;
                        }
                    }
                }
            }
            tables.push(table);
        }
    }

    let mut caps = Vec::new();
    for (i, c) in file.caps.iter().enumerate() {
        let key = |k: &str| format!("cap[{i}] ({}).{k}", c.name);
        if c.name.is_empty() || file.caps[..i].iter().any(|o| o.name == c.name) {
            issues.push(ConfigIssue::new(key("name"), "must be non-empty and unique"));
        }
        let signal = Signal::from_name(&c.signal);
        if signal.is_none() {
            issues.push(ConfigIssue::new(
                key("signal"),
                format!("unknown signal {:?}; `healthscore signals` lists them", c.signal),
            ));
        }
        if c.at_most.is_some() == c.at_least.is_some() {
            issues.push(ConfigIssue::new(key("at_most"), "give exactly one of at_most and at_least"));
        }
        if !(0.0..=100.0).contains(&c.max_score) {
            issues.push(ConfigIssue::new(key("max_score"), format!("must be 0 to 100, got {}", c.max_score)));
        }
        caps.push(super::Cap {
            name: Arc::from(c.name.as_str()),
            signal: signal.unwrap_or(Signal::ActiveDays30d),
            at_most: c.at_most,
            at_least: c.at_least,
            max_score: c.max_score,
        });
    }
    let mut relative_signals = Vec::new();
    for c in tables.iter().flatten() {
        if matches!(c.curve, Curve::Relative { .. }) && !relative_signals.contains(&c.signal) {
            relative_signals.push(c.signal);
        }
    }
    relative_signals.sort();
    let rules = file.rules.compile(issues, SCORE_HISTORY_DAYS);
    // Overrides are applied once per (stage, segment) table: report each problem once.
    let mut seen = BTreeSet::new();
    issues.retain(|i| seen.insert((i.key.clone(), i.reason.clone())));
    Scorecard {
        version: Arc::from(file.version.as_str()),
        description: file.description.unwrap_or_default(),
        bands: Bands {
            red_below: file.bands.red_below,
            green_from: file.bands.green_from,
            hysteresis: file.bands.hysteresis,
        },
        min_score_delta: file.emit.min_score_delta,
        onboarding_days: file.stages.onboarding_days,
        renewal_days: file.stages.renewal_days,
        core_feature_keys: file.core_features.iter().map(|f| key32(f)).collect(),
        core_features: file.core_features,
        falling_usage_pct: file.falling_usage_pct,
        segments,
        relative_signals,
        tables,
        caps,
        rules,
        probability: file.probability,
        source_text: text.to_string(),
    }
}

fn check_weight(w: f64, key: &str, issue: &mut impl FnMut(String, String)) {
    if !(w.is_finite() && w >= 0.0) {
        issue(key.to_string(), format!("must be a number ≥ 0, got {w}"));
    }
}

fn build_curve(
    bad: &Option<f64>,
    good: &Option<f64>,
    steps: &Option<Vec<StepFile>>,
    key: &str,
    issue: &mut impl FnMut(String, String),
) -> Option<Curve> {
    match (bad, good, steps) {
        (Some(bad), Some(good), None) => {
            if bad == good || !bad.is_finite() || !good.is_finite() {
                issue(key.to_string(), format!("bad ({bad}) and good ({good}) must be different numbers"));
                return None;
            }
            Some(Curve::Linear { bad: *bad, good: *good })
        }
        (None, None, Some(steps)) => {
            if steps.is_empty() {
                issue(key.to_string(), "steps must list at least one { at, points }".into());
                return None;
            }
            let mut ok = true;
            for (i, s) in steps.iter().enumerate() {
                if !(0.0..=100.0).contains(&s.points) || !s.at.is_finite() {
                    issue(format!("{key}.steps[{i}]"), format!("points must be 0 to 100 and at finite, got {s:?}"));
                    ok = false;
                }
                if i > 0 && steps[i - 1].at >= s.at {
                    issue(format!("{key}.steps[{i}]"), "steps must be in strictly ascending `at` order".into());
                    ok = false;
                }
            }
            ok.then(|| Curve::Steps(steps.iter().map(|s| Step { at: s.at, points: s.points }).collect()))
        }
        _ => {
            issue(key.to_string(), "give either both `bad` and `good` (a linear curve) or `steps`, not both".into());
            None
        }
    }
}
