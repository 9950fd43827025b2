//! The churn probability a calibrated scorecard's scores stand for (its `[probability]` table,
//! [`crate::score::Probability`]): fitted by Platt scaling on the fit period, written into the
//! new file, and measured on the report period. Both [`super::calibrate`] and [`super::learn`]
//! end here.

use linfa::traits::Fit as _;
use linfa::Dataset;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};

use crate::backtest::{rescore, Observation};
use crate::score::{Probability, Scorecard};

use super::CalibrateError;

/// The new file's text with its table, the table, and on the report period the mean
/// probability it gave beside the share that churned.
pub(super) type WithProbability = (String, Option<Probability>, Option<(f64, f64)>);

/// Fits `new`'s [`Probability`] on the fit period, adds it to `toml` as `[probability]`, and
/// measures it on the report period: what both [`super::calibrate`] and [`super::learn`] end with.
pub(super) fn add_probability(
    toml: String,
    new: &Scorecard,
    fit_obs: &[Observation],
    report_obs: &[Observation],
    horizon_days: u32,
) -> Result<WithProbability, CalibrateError> {
    let Some(p) = fit_probability(new, fit_obs, horizon_days)? else { return Ok((toml, None, None)) };
    let report = (!report_obs.is_empty()).then(|| {
        let scores = rescore(new, report_obs);
        let n = report_obs.len() as f64;
        let predicted = scores.iter().map(|s| p.of(*s)).sum::<f64>() / n;
        let observed = report_obs.iter().filter(|o| o.churned).count() as f64 / n;
        (predicted, observed)
    });
    Ok((with_probability(&toml, &p)?, Some(p), report))
}

/// Platt scaling: a logistic regression of "churned within the horizon" on `sc`'s score over
/// `fit_obs`, as the probability table the engine reads. `None` when the scores do not rank
/// churn the right way round (a higher score going with more churn): then no probability is
/// better than a misleading one.
pub fn fit_probability(
    sc: &Scorecard,
    fit_obs: &[Observation],
    horizon_days: u32,
) -> Result<Option<Probability>, CalibrateError> {
    let churning = fit_obs.iter().filter(|o| o.churned).count();
    if churning == 0 || churning == fit_obs.len() {
        return Err(CalibrateError::OneClass { churning, staying: fit_obs.len() - churning });
    }
    // The score in hundreds keeps the one feature near unit scale for the solver.
    let scores = rescore(sc, fit_obs);
    let x = Array2::from_shape_fn((scores.len(), 1), |(i, _)| scores[i] / 100.0);
    let y: Array1<bool> = fit_obs.iter().map(|o| o.churned).collect();
    let model = LogisticRegression::default()
        .alpha(1e-3)
        .max_iterations(500)
        .fit(&Dataset::new(x, y))
        .map_err(|e| CalibrateError::Fit(e.to_string()))?;
    // linfa's parameters are the log-odds of its positive class; make them the log-odds of churn.
    let sign = if model.labels().pos.class { 1.0 } else { -1.0 };
    let slope = crate::score::round_to(sign * model.params()[0] / 100.0, 5);
    let intercept = crate::score::round_to(sign * model.intercept(), 4);
    if slope >= 0.0 {
        return Ok(None);
    }
    let p = Probability { horizon_days, intercept, slope };
    let mut issues = Vec::new();
    p.check(&mut issues);
    Ok(issues.is_empty().then_some(p))
}

/// `toml` with `[probability]` set to `p`, commented for the person who reads the file.
pub fn with_probability(toml: &str, p: &Probability) -> Result<String, CalibrateError> {
    use toml_edit::{value, DocumentMut, Item, Table};
    let mut doc: DocumentMut = toml.parse().map_err(|e: toml_edit::TomlError| CalibrateError::Edit(e.to_string()))?;
    let mut t = Table::new();
    t.decor_mut().set_prefix(format!(
        "\n# The churn probability within {} days each score stands for, fitted on the fit period's\n\
         # observed churn (Platt scaling): 1 / (1 + e^-(intercept + slope * score)). Score 20: {:.0} %,\n\
         # 50: {:.0} %, 80: {:.0} %.\n",
        p.horizon_days,
        100.0 * p.of(20.0),
        100.0 * p.of(50.0),
        100.0 * p.of(80.0)
    ));
    t["horizon_days"] = value(p.horizon_days as i64);
    t["intercept"] = value(p.intercept);
    t["slope"] = value(p.slope);
    doc.insert("probability", Item::Table(t));
    let text = doc.to_string();
    Scorecard::from_toml(&text, "(calibrated)").map_err(|e| CalibrateError::Invalid(e.to_string()))?;
    Ok(text)
}
