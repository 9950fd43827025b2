//! Charts a person would rather look at than read: the churn rate per score decile (is a low
//! score really riskier?) and the ROC curve (how much better than chance is the ranking?).
//!
//! Drawn with `plotters` into SVG text. Only its SVG backend is built, without font libraries:
//! labels are SVG `<text>` that the viewer renders, so nothing needs fontconfig or freetype.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::metrics::{Bin, RocPoint};

const SIZE: (u32, u32) = (720, 480);
const FONT: &str = "sans-serif";

/// A chart that could not be drawn (a plotters error, as text).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw chart: {0}")]
pub struct PlotError(String);

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// The series' labels in a framed box at `position`, the same on every chart.
fn legend<'a>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    position: SeriesLabelPosition,
) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(err)
}

/// Churn rate per score decile, worst scores first, with the overall rate as a dashed line: a
/// score that works shows a staircase falling from left to right.
pub fn calibration_svg(title: &str, deciles: &[Bin], base_rate: f64) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let top = deciles.iter().map(|b| b.churn_rate).fold(base_rate, f64::max);
        let y_max = (top * 100.0 * 1.15).max(1.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(56)
            .build_cartesian_2d(0.5f64..(deciles.len() as f64 + 0.5), 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(deciles.len())
            .x_label_formatter(&|x| format!("{:.0}", x))
            .y_label_formatter(&|y| format!("{y:.0}%"))
            .x_desc("score decile (1 = lowest scores)")
            .y_desc("churn rate within the horizon")
            .label_style((FONT, 14))
            .max_light_lines(1)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(deciles.iter().enumerate().map(|(i, b)| {
                let x = i as f64 + 1.0;
                Rectangle::new([(x - 0.38, 0.0), (x + 0.38, 100.0 * b.churn_rate)], RGBColor(196, 60, 50).filled())
            }))
            .map_err(err)?
            .label("churn rate in the decile")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], RGBColor(196, 60, 50).filled()));
        let base = 100.0 * base_rate;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.5, base), (deciles.len() as f64 + 0.5, base)],
                8,
                6,
                BLACK.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("overall {base:.1}%"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// ROC curves (one per scorecard, with its AUC in the legend) against the chance diagonal.
pub fn roc_svg(title: &str, curves: &[(String, &[RocPoint])]) -> Result<String, PlotError> {
    const COLOURS: [RGBColor; 3] = [RGBColor(196, 60, 50), RGBColor(40, 110, 190), RGBColor(60, 150, 70)];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("share of customers who stay flagged (false positive rate)")
            .y_desc("share of churners flagged (true positive rate)")
            .x_label_formatter(&|x| format!("{:.0}%", 100.0 * x))
            .y_label_formatter(&|y| format!("{:.0}%", 100.0 * y))
            .label_style((FONT, 14))
            .max_light_lines(1)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 6, 6, BLACK.mix(0.6).stroke_width(1)))
            .map_err(err)?
            .label("chance (AUC 0.5)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK.mix(0.6)));
        for (i, (label, points)) in curves.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(points.iter().map(|p| (p.fpr, p.tpr)), colour.stroke_width(3)))
                .map_err(err)?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour.stroke_width(3)));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_labels() {
        let bins: Vec<Bin> = (0..10)
            .map(|i| Bin {
                count: 10.0,
                churned: 1.0,
                churn_rate: 0.5 / (i + 1) as f64,
                min_score: 0.0,
                max_score: 1.0,
            })
            .collect();
        let svg = calibration_svg("calibration", &bins, 0.1).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("calibration") && svg.contains("overall 10.0%"));
        assert!(svg.matches("<rect").count() >= 10);
        let pts = [RocPoint { threshold: 0.0, fpr: 0.0, tpr: 0.0 }, RocPoint { threshold: 1.0, fpr: 1.0, tpr: 1.0 }];
        let svg = roc_svg("roc", &[("default (AUC 0.81)".into(), &pts)]).unwrap();
        assert!(svg.contains("default (AUC 0.81)") && svg.contains("<polyline"));
    }
}
