//! The greenbatch plot: joules per inference (top) and latency at the SLO's percentile (bottom)
//! against batch size, from a measured profile table; the SLO line; the chosen batch size marked;
//! and, where serving pods have been observed, what they measured beside what the profile
//! predicted. SVG, so it renders anywhere (a browser, a README, `kubectl port-forward`).
//!
//! Pure: a table in, an SVG string out. `greenbatch-runtime tune` writes it to a file; the operator
//! serves it per InferenceService.

use greenbatch_core::{Percentile, ProfileTable};
use plotters::prelude::*;

/// Drawing failed (plotters' backend error, as text).
#[derive(Debug, thiserror::Error)]
#[error("drawing the plot: {0}")]
pub struct PlotError(String);

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// What serving pods measured over one observation window. Drawn as horizontal lines, not as a
/// point over a batch size: the batches they ran vary with the load.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub inferences_per_second: f64,
    /// Measured, idle share included; `None` without a meter.
    pub joules_per_inference: Option<f64>,
    /// What the profile predicts for the same rate, batching and pods.
    pub predicted_joules_per_inference: Option<f64>,
    /// End to end (queueing + execution) at the SLO's percentile.
    pub latency_at_percentile_ms: Option<f64>,
}

/// One plot's inputs.
#[derive(Clone, Debug)]
pub struct Plot<'a> {
    pub table: &'a ProfileTable,
    pub percentile: Percentile,
    pub slo_ms: f64,
    /// The batch size chosen (marked on both panels when the table has it).
    pub chosen_batch: u32,
    pub title: &'a str,
    pub observed: Option<Observed>,
}

const MAGENTA_LINE: RGBColor = RGBColor(170, 0, 170);
const GREY_LINE: RGBColor = RGBColor(90, 90, 90);

/// Both panels: batch size and the measure on log scales.
type Panel<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

/// The panel's legend box.
fn legend<'a, 'b: 'a>(chart: &mut Panel<'a, 'b>) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)
}

/// The grid and axis titles of a panel.
fn axes(chart: &mut Panel, y_desc: &str) -> Result<(), PlotError> {
    chart
        .configure_mesh()
        .x_desc("batch size")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(y_desc)
        .draw()
        .map_err(err)
}

/// A measured curve over batch sizes: the line, a dot per batch size, in the legend as `label`.
fn curve(
    chart: &mut Panel,
    points: &[(f64, f64)],
    colour: RGBColor,
    label: String,
) -> Result<(), PlotError> {
    let style = colour.stroke_width(2);
    chart
        .draw_series(LineSeries::new(points.to_vec(), style))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    chart
        .draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled())))
        .map_err(err)?;
    Ok(())
}

/// A horizontal line at `y` across `x` (a level, not a curve over batch sizes), in the legend as
/// `label`.
fn level(
    chart: &mut Panel,
    x: (f64, f64),
    y: f64,
    style: ShapeStyle,
    label: String,
) -> Result<(), PlotError> {
    chart
        .draw_series(LineSeries::new(vec![(x.0, y), (x.1, y)], style))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    Ok(())
}

/// (low, high) of the positive finite `values`; `None` when there are none.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
}

/// Widest span of values a log axis is drawn over (a ratio of 10^12): far beyond any table's,
/// and within what plotters' log axis handles (over ~300 decades, or a subnormal or infinite end,
/// it loops for ever computing its ticks).
const MAX_DECADES: f64 = 12.0;

/// A log axis from `lo * below` to `hi * above`, or why those values cannot be drawn.
fn log_axis(
    what: &str,
    (lo, hi): (f64, f64),
    below: f64,
    above: f64,
) -> Result<(f64, f64), PlotError> {
    let (from, to) = (lo * below, hi * above);
    if !(from.is_normal() && to.is_normal() && from > 0.0 && to > from)
        || (to / from).log10() > MAX_DECADES
    {
        return Err(PlotError(format!(
            "{what} from {lo} to {hi} cannot be drawn: beyond {MAX_DECADES} decades, or not a normal positive number"
        )));
    }
    Ok((from, to))
}

pub fn render_svg(plot: &Plot) -> Result<String, PlotError> {
    let Plot {
        table,
        percentile,
        slo_ms,
        chosen_batch,
        title,
        observed,
    } = plot;
    let (percentile, slo_ms) = (*percentile, *slo_ms);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (900, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
        let (top, bottom) = root.split_vertically(340);
        let rows: Vec<_> = table.rows.iter().filter(|r| r.batch_size >= 1).collect();
        let max_b = rows.iter().map(|r| r.batch_size).max().unwrap_or(1).max(2) as f64;
        let x_range = (0.8f64..max_b * 1.25).log_scale();
        let x_span = (0.8, max_b * 1.25);
        let pick = f64::from(*chosen_batch);

        // Energy panel, mJ per inference.
        let energy: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| {
                r.joules_per_inference
                    .map(|j| (r.batch_size as f64, j * 1000.0))
            })
            .collect();
        let seen_mj = observed
            .as_ref()
            .and_then(|o| o.joules_per_inference)
            .map(|j| j * 1000.0);
        let predicted_mj = observed
            .as_ref()
            .and_then(|o| o.predicted_joules_per_inference)
            .map(|j| j * 1000.0);
        let energy_span = span(
            energy
                .iter()
                .map(|p| p.1)
                .chain(seen_mj)
                .chain(predicted_mj),
        );
        match energy_span {
            None => {
                top.draw(&Text::new(
                    format!(
                        "no energy measured (meter: {}) — chosen by latency",
                        table.meter
                    ),
                    (120, 160),
                    ("sans-serif", 18),
                ))
                .map_err(err)?;
            }
            Some((lo, hi)) => {
                let mut chart = ChartBuilder::on(&top)
                    .margin(15)
                    .x_label_area_size(35)
                    .y_label_area_size(70)
                    .caption(
                        format!("energy per inference (meter: {})", table.meter),
                        ("sans-serif", 16),
                    )
                    .build_cartesian_2d(x_range.clone(), {
                        let (from, to) = log_axis("energy per inference (mJ)", (lo, hi), 0.7, 1.4)?;
                        (from..to).log_scale()
                    })
                    .map_err(err)?;
                axes(&mut chart, "mJ / inference")?;
                curve(&mut chart, &energy, BLUE, "profiled".into())?;
                if let Some(p) = energy.iter().find(|p| p.0 == pick) {
                    chart
                        .draw_series(std::iter::once(Circle::new(*p, 9, RED.stroke_width(3))))
                        .map_err(err)?
                        .label(format!("chosen: batch {chosen_batch}"))
                        .legend(|(x, y)| Circle::new((x + 10, y), 5, RED.stroke_width(2)));
                }
                if let (Some(o), Some(mj)) = (observed, seen_mj) {
                    let label = format!(
                        "served: {mj:.1} mJ at {:.0} inferences/s",
                        o.inferences_per_second
                    );
                    level(&mut chart, x_span, mj, MAGENTA_LINE.stroke_width(2), label)?;
                }
                if let Some(mj) = predicted_mj {
                    let label = format!("predicted for that load: {mj:.1} mJ");
                    level(&mut chart, x_span, mj, GREY_LINE.stroke_width(1), label)?;
                }
                legend(&mut chart)?;
            }
        }

        // Latency panel.
        let latency: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| {
                r.latency_ms
                    .at(percentile)
                    .map(|l| (r.batch_size as f64, l))
            })
            .collect();
        let seen_ms = observed.as_ref().and_then(|o| o.latency_at_percentile_ms);
        let (lo, hi) = span(
            latency
                .iter()
                .map(|p| p.1)
                .chain(std::iter::once(slo_ms))
                .chain(seen_ms),
        )
        .unwrap_or((1.0, 1.0));
        let mut chart = ChartBuilder::on(&bottom)
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .caption(
                format!("{percentile} batch latency and the SLO"),
                ("sans-serif", 16),
            )
            .build_cartesian_2d(x_range, {
                let (from, to) = log_axis("latency (ms)", (lo, hi), 0.5, 1.6)?;
                (from..to).log_scale()
            })
            .map_err(err)?;
        axes(&mut chart, "ms")?;
        let label = format!("{percentile} execution (profiled)");
        curve(&mut chart, &latency, GREEN, label)?;
        let label = format!("SLO {slo_ms} ms");
        level(&mut chart, x_span, slo_ms, RED.stroke_width(2), label)?;
        if let Some(ms) = seen_ms {
            let label = format!("served: {percentile} {ms:.1} ms end to end");
            level(&mut chart, x_span, ms, MAGENTA_LINE.stroke_width(2), label)?;
        }
        if let Some(p) = latency.iter().find(|p| p.0 == pick) {
            chart
                .draw_series(std::iter::once(Circle::new(*p, 9, RED.stroke_width(3))))
                .map_err(err)?;
        }
        legend(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests;
