//! `calibrate`: fit a scorecard's weights to churn history, and write them as a new scorecard.
//!
//! The observations of a backtest's fit period become a regularised logistic regression (from
//! `linfa-logistic`) of "churned within the horizon" on each component's points (0–1). A
//! component whose coefficient says more points mean less churn gets a weight in proportion to
//! that coefficient; one that says the opposite, or nothing, is switched off (weight 0) and the
//! rest refitted, so every weight stays non-negative and the score stays a weighted mean of
//! 0–100 points: the scale, the caps and the band cut-offs keep their meaning. Curves, caps,
//! bands and rules are left alone. The new weights are judged on the report period, which the
//! fit never saw; the user reads the figures and decides whether to deploy the file.
//!
//! [`learn`] goes further (`calibrate --learn curves`, the default): it learns every signal's
//! curve from the fit period ([`shapes`]), keeps the informative ones as step components, fits
//! their weights the same way, and sets the band cut-offs from the fit period's scores.

mod judge;
mod probability;
pub mod shapes;

pub use self::judge::{dropped_informative, judge, DroppedComponent, Judgement, INFORMATIVE_AUC};
use self::probability::add_probability;
pub use self::probability::{fit_probability, with_probability};

use linfa::traits::Fit as _;
use linfa::Dataset;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::Serialize;

use crate::backtest::report::pct;
use crate::backtest::Observation;
use crate::event::{format_rfc3339, Millis};
use crate::score::{Probability, Scorecard, Stage};

/// What can stop a calibration.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("the fit period has {churning} churning and {staying} staying observations; both are needed (move the split later, or lengthen the history or the horizon)")]
    OneClass { churning: usize, staying: usize },
    #[error("the logistic regression failed: {0}")]
    Fit(String),
    #[error("no component carries information in the fit period (every coefficient says more points mean more churn, or nothing)")]
    NothingInformative,
    #[error("cannot edit the scorecard text: {0}")]
    Edit(String),
    #[error("the calibrated scorecard does not check: {0}")]
    Invalid(String),
}

/// How one component fared in the fit.
#[derive(Debug, Clone, Serialize)]
pub struct FittedComponent {
    pub name: String,
    pub old_weight: f64,
    pub new_weight: f64,
    /// The fitted log-odds of staying per 100 points (positive: more points, less churn), or
    /// `None` when the component was switched off before the final fit.
    pub coefficient: Option<f64>,
    /// Why it got weight 0, if it did.
    pub dropped: Option<&'static str>,
}

/// A fitted set of weights.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub observations: usize,
    pub churning: usize,
    pub l2: f64,
    pub components: Vec<FittedComponent>,
}

/// Each observation's points per base component, 0–1. A component skipped for missing data
/// takes the observation's weighted score instead: that leaves the weighted mean exactly as the
/// scorecard computes it (it renormalises over the components that have data), so the fit sees
/// what the score saw.
pub fn features(sc: &Scorecard, obs: &[&Observation]) -> Array2<f64> {
    let n_comp = sc.components(Stage::Mature, 0).len();
    let mut x = Array2::<f64>::zeros((obs.len(), n_comp));
    let mut parts = Vec::new();
    for (i, o) in obs.iter().enumerate() {
        let weighted = sc.score(&o.signals, o.stage, o.segment, &o.refs, &mut parts);
        for (j, p) in parts.iter().enumerate() {
            x[[i, j]] = p.points.unwrap_or(weighted) / 100.0;
        }
    }
    x
}

/// Fits non-negative weights to `fit_obs` with an L2 penalty of `l2` (on the summed log-loss).
/// The new weights add up to the same total as the old base weights, so they read on the same
/// scale in the file.
pub fn fit_weights(sc: &Scorecard, fit_obs: &[&Observation], l2: f64) -> Result<Fit, CalibrateError> {
    let churning = fit_obs.iter().filter(|o| o.churned).count();
    if churning == 0 || churning == fit_obs.len() {
        return Err(CalibrateError::OneClass { churning, staying: fit_obs.len() - churning });
    }
    let base = sc.components(Stage::Mature, 0);
    let x = features(sc, fit_obs);
    let y: Array1<bool> = fit_obs.iter().map(|o| o.churned).collect();
    let mut dropped: Vec<Option<&'static str>> = (0..base.len())
        .map(|j| {
            let col = x.column(j);
            let first = col[0];
            col.iter().all(|v| (*v - first).abs() < 1e-12).then_some("its points never varied in the fit period")
        })
        .collect();
    // Active set: fit, switch off a component fitted the wrong way round, refit.
    let coefficients = loop {
        let active: Vec<usize> = (0..base.len()).filter(|j| dropped[*j].is_none()).collect();
        if active.is_empty() {
            return Err(CalibrateError::NothingInformative);
        }
        let xa = x.select(ndarray::Axis(1), &active);
        let model = LogisticRegression::default()
            .alpha(l2)
            .max_iterations(500)
            .fit(&Dataset::new(xa, y.clone()))
            .map_err(|e| CalibrateError::Fit(e.to_string()))?;
        // linfa's positive class is the larger one; turn coefficients into "log-odds of staying".
        let sign = if model.labels().pos.class { -1.0 } else { 1.0 };
        let coef: Vec<f64> = model.params().iter().map(|b| sign * b).collect();
        // Switch off only the worst one each round: components overlap (active days, recency
        // and breadth all measure use), and one may look wrong only while another is in.
        let worst = active.iter().zip(&coef).filter(|(_, c)| **c <= 0.0).min_by(|a, b| a.1.total_cmp(b.1));
        match worst {
            Some((&j, _)) => {
                dropped[j] = Some("more points went with more churn (or no less), given the other components")
            }
            None => {
                let mut all = vec![None; base.len()];
                for (j, c) in active.iter().zip(coef) {
                    all[*j] = Some(c);
                }
                break all;
            }
        }
    };
    let old_total: f64 = base.iter().map(|c| c.weight).sum();
    let fitted_total: f64 = coefficients.iter().flatten().sum();
    let components = base
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let coef = coefficients[j];
            let w = coef.map_or(0.0, |k| crate::score::round_to(old_total * k / fitted_total, 1));
            FittedComponent {
                name: c.name.to_string(),
                old_weight: c.weight,
                new_weight: w,
                coefficient: coef.map(|k| crate::score::round_to(k, 3)),
                dropped: dropped[j],
            }
        })
        .collect();
    Ok(Fit { observations: fit_obs.len(), churning, l2, components })
}

/// Facts about the fit for the new file's header.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub version: String,
    /// e.g. "history 2026-07-04..2026-10-31, observed every 7 days, churn within 90 days".
    pub data: String,
    pub fit_period: String,
    pub report_period: String,
    pub before: Judgement,
    pub after: Judgement,
}

/// Writes `source` (the active scorecard's TOML) with the fitted weights: every base weight,
/// and every stage or segment weight override scaled by its component's change, so an override
/// stays the same multiple of the base weight. Comments say what changed and why; everything
/// else in the file is kept as it was.
pub fn write_scorecard(source: &str, fit: &Fit, p: &Provenance) -> Result<String, CalibrateError> {
    use toml_edit::{value, DocumentMut, Item};
    let mut doc: DocumentMut = source.parse().map_err(|e: toml_edit::TomlError| CalibrateError::Edit(e.to_string()))?;
    let old_version = doc.get("version").and_then(Item::as_str).unwrap_or("").to_string();
    doc["version"] = value(p.version.as_str());
    comment(&mut doc["version"], &format!("calibrated from {old_version}"));
    let by_name = |name: &str| fit.components.iter().find(|c| c.name == name);
    let tables = doc
        .get_mut("component")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| CalibrateError::Edit("no [[component]] tables".into()))?;
    for t in tables.iter_mut() {
        let Some(c) = t.get("name").and_then(Item::as_str).and_then(by_name) else { continue };
        t["weight"] = value(c.new_weight);
        let why = match c.dropped {
            Some(reason) => format!("was {}; off: {reason}", c.old_weight),
            None => format!("was {}", c.old_weight),
        };
        comment(&mut t["weight"], &why);
    }
    let scale = |name: &str| by_name(name).filter(|c| c.old_weight > 0.0).map(|c| c.new_weight / c.old_weight);
    let rescale = |overrides: &mut toml_edit::Table| {
        for (name, o) in overrides.iter_mut() {
            let Some(f) = scale(&name) else { continue };
            let Some(w) = o.get("weight").and_then(|i| i.as_float().or_else(|| i.as_integer().map(|v| v as f64)))
            else {
                continue;
            };
            let new = crate::score::round_to(w * f, 1);
            o["weight"] = value(new);
            comment(&mut o["weight"], &format!("was {w}; keeps its ratio to the base weight"));
        }
    };
    if let Some(stages) = doc.get_mut("stage").and_then(Item::as_table_like_mut) {
        for (_, s) in stages.iter_mut() {
            if let Some(c) = s.get_mut("component").and_then(Item::as_table_mut) {
                rescale(c);
            }
        }
    }
    if let Some(segments) = doc.get_mut("segment").and_then(Item::as_array_of_tables_mut) {
        for s in segments.iter_mut() {
            if let Some(c) = s.get_mut("component").and_then(Item::as_table_mut) {
                rescale(c);
            }
        }
    }
    let fmt = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.3}"));
    let mut header = format!(
        "# Calibrated by `healthscore calibrate` from scorecard {old_version}.\n\
         #\n\
         # Data: {}.\n\
         # Fit: weights from a logistic regression (L2 {}) of churn on each component's points, over\n\
         # {} observations of the fit period ({}), {} of them churning. A weight is in proportion to\n\
         # how much the component's points lower the odds of churn given the others; a component\n\
         # whose points did not lower them got weight 0. Curves, caps, bands and rules are unchanged.\n\
         # Judged on the report period ({}), which the fit never saw:\n\
         #   AUC {} -> {}; churn capture in the worst decile {} -> {}; share red {} -> {}.\n\
         # Review the weights below (each says what it was) before deploying this file.\n\n",
        p.data,
        fit.l2,
        fit.observations,
        p.fit_period,
        fit.churning,
        p.report_period,
        fmt(p.before.auc),
        fmt(p.after.auc),
        pct(p.before.capture),
        pct(p.after.capture),
        pct(Some(p.before.share_red)),
        pct(Some(p.after.share_red)),
    );
    header.push_str(&doc.to_string());
    Scorecard::from_toml(&header, "(calibrated)").map_err(|e| CalibrateError::Invalid(e.to_string()))?;
    Ok(header)
}

/// Puts `# text` after a value on its line.
fn comment(item: &mut toml_edit::Item, text: &str) {
    if let Some(v) = item.as_value_mut() {
        v.decor_mut().set_suffix(format!("  # {text}"));
    }
}

/// A calibration's result: the fit, the new scorecard's text, and both scorecards judged on
/// the fit period (in-sample, for reference) and on the report period (the honest figures).
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub fit: Fit,
    pub fit_before: Judgement,
    pub fit_after: Judgement,
    pub report_before: Judgement,
    pub report_after: Judgement,
    /// The churn probability the new scorecard's scores stand for, fitted on the fit period
    /// and written as its `[probability]` table; `None` when its scores did not rank churn.
    pub probability: Option<Probability>,
    /// On the report period: the mean churn probability the table gave, and the share that
    /// churned, so a reader sees whether the probabilities held on data the fit never saw.
    pub report_probability: Option<(f64, f64)>,
    #[serde(skip)]
    pub toml: String,
}

/// Fits `sc`'s weights on the observations before `split_at` and judges old and new weights on
/// those from `split_at` on. `data` describes the history for the new file's header.
pub fn calibrate(
    sc: &Scorecard,
    obs: &[Observation],
    split_at: Millis,
    l2: f64,
    version: &str,
    data: &str,
    horizon_days: u32,
) -> Result<Calibration, CalibrateError> {
    let (fit_obs, report_obs): (Vec<Observation>, Vec<Observation>) =
        obs.iter().cloned().partition(|o| o.at < split_at);
    let refs: Vec<&Observation> = fit_obs.iter().collect();
    let fit = fit_weights(sc, &refs, l2)?;
    let range = |o: &[Observation]| match (o.iter().map(|o| o.at).min(), o.iter().map(|o| o.at).max()) {
        (Some(a), Some(b)) => format!("{}..{}", &format_rfc3339(a)[..10], &format_rfc3339(b)[..10]),
        _ => "none".to_string(),
    };
    let (report_before, fit_before) = (judge(sc, &report_obs), judge(sc, &fit_obs));
    // Judge the new weights before writing the header that quotes them: write once without
    // figures, score, then write again with them.
    let mut p = Provenance {
        version: version.to_string(),
        data: data.to_string(),
        fit_period: range(&fit_obs),
        report_period: range(&report_obs),
        before: report_before,
        after: report_before,
    };
    let draft = write_scorecard(&sc.source_text, &fit, &p)?;
    let new = Scorecard::from_toml(&draft, "(calibrated)").map_err(|e| CalibrateError::Invalid(e.to_string()))?;
    p.after = judge(&new, &report_obs);
    let toml = write_scorecard(&sc.source_text, &fit, &p)?;
    let (toml, probability, report_probability) = add_probability(toml, &new, &fit_obs, &report_obs, horizon_days)?;
    Ok(Calibration {
        fit_after: judge(&new, &fit_obs),
        fit,
        fit_before,
        report_before,
        report_after: p.after,
        probability,
        report_probability,
        toml,
    })
}

/// Share of the fit period's observations a learned scorecard puts in red, and in red or yellow:
/// the band cut-offs are the fit period's score quantiles at these shares. A CS team works the
/// riskiest tenth now and watches the next three tenths; the churn rates these bands had on the
/// report period are in the calibration's judgement.
pub const LEARNED_RED_SHARE: f64 = 0.10;
pub const LEARNED_WATCH_SHARE: f64 = 0.40;

/// Learns a scorecard from the observations before `split_at` and judges it against `sc` on
/// those from `split_at` on: each signal's curve ([`shapes::learn_curves`]), the components'
/// weights ([`fit_weights`]), and the band cut-offs ([`LEARNED_RED_SHARE`]). Everything else in
/// `sc`'s file (stages, segments, caps, rules, emit settings) is kept; its components and their
/// stage and segment overrides are replaced.
pub fn learn(
    sc: &Scorecard,
    obs: &[Observation],
    split_at: Millis,
    l2: f64,
    version: &str,
    data: &str,
    horizon_days: u32,
) -> Result<Calibration, CalibrateError> {
    let (fit_obs, report_obs): (Vec<Observation>, Vec<Observation>) =
        obs.iter().cloned().partition(|o| o.at < split_at);
    let fit_refs: Vec<&Observation> = fit_obs.iter().collect();
    let churning = fit_refs.iter().filter(|o| o.churned).count();
    if churning == 0 || churning == fit_refs.len() {
        return Err(CalibrateError::OneClass { churning, staying: fit_refs.len() - churning });
    }
    let curves = shapes::learn_curves(&fit_refs);
    if curves.is_empty() {
        return Err(CalibrateError::NothingInformative);
    }
    // Weights: every learned component starts at 1; the fit sets them (summing to the count).
    let even = vec![1.0; curves.len()];
    let draft = learned_toml(&sc.source_text, &curves, &even, None, version, "")?;
    let draft_sc = Scorecard::from_toml(&draft, "(learned)").map_err(|e| CalibrateError::Invalid(e.to_string()))?;
    let fit = fit_weights(&draft_sc, &fit_refs, l2)?;
    let scale = 100.0 / curves.len() as f64;
    let weights: Vec<f64> = fit.components.iter().map(|c| crate::score::round_to(c.new_weight * scale, 1)).collect();
    let weighted = learned_toml(&sc.source_text, &curves, &weights, None, version, "")?;
    let weighted_sc =
        Scorecard::from_toml(&weighted, "(learned)").map_err(|e| CalibrateError::Invalid(e.to_string()))?;
    let mut scores = crate::backtest::rescore(&weighted_sc, &fit_obs);
    scores.sort_by(f64::total_cmp);
    let quantile = |q: f64| scores[((scores.len() - 1) as f64 * q).round() as usize].round();
    let (red, mut green) = (quantile(LEARNED_RED_SHARE), quantile(LEARNED_WATCH_SHARE));
    let hysteresis = sc.bands.hysteresis.min(3.0);
    if green - red <= 2.0 * hysteresis + 1.0 {
        green = (red + 2.0 * hysteresis + 2.0).min(100.0);
    }
    let range = |o: &[Observation]| match (o.iter().map(|o| o.at).min(), o.iter().map(|o| o.at).max()) {
        (Some(a), Some(b)) => format!("{}..{}", &format_rfc3339(a)[..10], &format_rfc3339(b)[..10]),
        _ => "none".to_string(),
    };
    let (report_before, fit_before) = (judge(sc, &report_obs), judge(sc, &fit_obs));
    let bands = Some((red, green, hysteresis));
    let banded = learned_toml(&sc.source_text, &curves, &weights, bands, version, "")?;
    let new = Scorecard::from_toml(&banded, "(learned)").map_err(|e| CalibrateError::Invalid(e.to_string()))?;
    let report_after = judge(&new, &report_obs);
    let fmt = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.3}"));
    let dropped: Vec<&str> = fit.components.iter().filter(|c| c.new_weight <= 0.0).map(|c| c.name.as_str()).collect();
    let header = format!(
        "# Learned by `healthscore calibrate` from scorecard {}.\n\
         #\n\
         # Data: {data}.\n\
         # Fit period {} ({} observations, {} churning): each signal's curve is its churn rate per\n\
         # value bin, made monotone; the {} strongest signals are components, weighted by a logistic\n\
         # regression (L2 {l2}) of churn on their points{}. Bands: red is the riskiest {:.0} % of the fit\n\
         # period's scores, red or yellow the riskiest {:.0} %.\n\
         # Judged on the report period ({}), which the fit never saw: AUC {} -> {}; share red {} -> {}.\n\
         # Review the curves below (each says what churn rates it stands for) before deploying this file.\n\n",
        sc.version,
        range(&fit_obs),
        fit_obs.len(),
        churning,
        curves.len(),
        if dropped.is_empty() { String::new() } else { format!(" (off, given the others: {})", dropped.join(", ")) },
        100.0 * LEARNED_RED_SHARE,
        100.0 * LEARNED_WATCH_SHARE,
        range(&report_obs),
        fmt(report_before.auc),
        fmt(report_after.auc),
        pct(Some(report_before.share_red)),
        pct(Some(report_after.share_red)),
    );
    let toml = learned_toml(&sc.source_text, &curves, &weights, bands, version, &header)?;
    let (toml, probability, report_probability) = add_probability(toml, &new, &fit_obs, &report_obs, horizon_days)?;
    let fit = Fit {
        components: fit
            .components
            .into_iter()
            .zip(&weights)
            .map(|(c, w)| FittedComponent { old_weight: 0.0, new_weight: *w, ..c })
            .collect(),
        ..fit
    };
    Ok(Calibration {
        fit_after: judge(&new, &fit_obs),
        fit,
        fit_before,
        report_before,
        report_after,
        probability,
        report_probability,
        toml,
    })
}

/// `source` with its components replaced by the learned ones (zero weights left out), their
/// stage and segment overrides removed, and the bands set when given (red_below, green_from,
/// hysteresis).
fn learned_toml(
    source: &str,
    curves: &[shapes::LearnedCurve],
    weights: &[f64],
    bands: Option<(f64, f64, f64)>,
    version: &str,
    header: &str,
) -> Result<String, CalibrateError> {
    use toml_edit::{value, Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table};
    let mut doc: DocumentMut = source.parse().map_err(|e: toml_edit::TomlError| CalibrateError::Edit(e.to_string()))?;
    let old_version = doc.get("version").and_then(Item::as_str).unwrap_or("").to_string();
    doc["version"] = value(version);
    comment(&mut doc["version"], &format!("learned from {old_version}"));
    doc["description"] = value(format!("Learned from churn history by healthscore calibrate (from {old_version})."));
    if let Some(stages) = doc.get_mut("stage").and_then(Item::as_table_like_mut) {
        for (_, s) in stages.iter_mut() {
            if let Some(t) = s.as_table_like_mut() {
                t.remove("component");
            }
        }
    }
    if let Some(segments) = doc.get_mut("segment").and_then(Item::as_array_of_tables_mut) {
        for s in segments.iter_mut() {
            s.remove("component");
        }
    }
    if let Some((red, green, hysteresis)) = bands {
        doc["bands"]["red_below"] = value(red);
        doc["bands"]["green_from"] = value(green);
        doc["bands"]["hysteresis"] = value(hysteresis);
        comment(
            &mut doc["bands"]["red_below"],
            &format!("the riskiest {:.0} % of the fit period", 100.0 * LEARNED_RED_SHARE),
        );
        comment(
            &mut doc["bands"]["green_from"],
            &format!("the safest {:.0} % of the fit period", 100.0 * (1.0 - LEARNED_WATCH_SHARE)),
        );
    }
    let rate = |r: f64| format!("{:.1} %", 100.0 * r);
    let mut tables = ArrayOfTables::new();
    for (c, w) in curves.iter().zip(weights) {
        if *w <= 0.0 {
            continue;
        }
        let mut t = Table::new();
        t["name"] = value(c.signal.name());
        t["description"] = value(format!(
            "Learned: {} went with less churn; churn within the horizon {} at the safest step, {} at the riskiest ({:.0} % of observations had a value).",
            if c.higher_is_better { "more" } else { "less" },
            rate(c.best_rate),
            rate(c.worst_rate),
            100.0 * c.coverage
        ));
        t["signal"] = value(c.signal.name());
        t["weight"] = value(*w);
        let mut steps = Array::new();
        for (at, points) in &c.steps {
            let mut step = InlineTable::new();
            step.insert("at", crate::score::round_to(*at, 4).into());
            step.insert("points", (*points).into());
            steps.push(step);
        }
        t["steps"] = value(steps);
        if let Some(p) = c.missing_points {
            t["missing"] = value(p);
            comment(&mut t["missing"], "points when the signal has no value, from the churn of those without one");
        }
        tables.push(t);
    }
    if tables.is_empty() {
        return Err(CalibrateError::NothingInformative);
    }
    doc.insert("component", Item::ArrayOfTables(tables));
    let text = format!("{header}{doc}");
    Scorecard::from_toml(&text, "(learned)").map_err(|e| CalibrateError::Invalid(e.to_string()))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_file_keeps_comments_and_scales_overrides() {
        let sc = Scorecard::default_scorecard();
        let components: Vec<FittedComponent> = sc
            .components(Stage::Mature, 0)
            .iter()
            .map(|c| FittedComponent {
                name: c.name.to_string(),
                old_weight: c.weight,
                new_weight: if &*c.name == "nps" { 0.0 } else { c.weight * 2.0 },
                coefficient: None,
                dropped: (&*c.name == "nps").then_some("test"),
            })
            .collect();
        let fit = Fit { observations: 10, churning: 2, l2: 1.0, components };
        let j = Judgement {
            auc: Some(0.7),
            lift: None,
            capture: None,
            share_red: 0.1,
            share_red_or_yellow: 0.3,
            red_precision: None,
            red_recall: None,
            red_or_yellow_precision: None,
            red_or_yellow_recall: None,
        };
        let p = Provenance {
            version: "cal-1".into(),
            data: "test".into(),
            fit_period: "a".into(),
            report_period: "b".into(),
            before: j,
            after: Judgement { auc: Some(0.8), ..j },
        };
        let text = write_scorecard(&sc.source_text, &fit, &p).unwrap();
        let new = Scorecard::from_toml(&text, "new").unwrap();
        assert_eq!(&*new.version, "cal-1");
        let w = |stage, name: &str| new.components(stage, 0).iter().find(|c| &*c.name == name).unwrap().weight;
        assert_eq!(w(Stage::Mature, "usage_frequency"), 36.0);
        assert_eq!(w(Stage::Onboarding, "core_feature_adoption"), 30.0, "override 15 doubled with its base");
        assert_eq!(w(Stage::Renewal, "nps"), 0.0, "override of a switched-off component is off too");
        assert!(text.contains("weight = 36.0  # was 18"), "{}", &text[..2000]);
        assert!(text.contains("AUC 0.700 -> 0.800"));
        assert!(text.contains("# Usage trend (%) at or below which"), "the original comments stay");
    }
}
