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

/// (low, high) of the positive finite `values`; `None` when there are none.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
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
        let x_ends = |y: f64| vec![(0.8, y), (max_b * 1.25, y)];
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
                    .build_cartesian_2d(x_range.clone(), (lo * 0.7..hi * 1.4).log_scale())
                    .map_err(err)?;
                chart
                    .configure_mesh()
                    .x_desc("batch size")
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .y_desc("mJ / inference")
                    .draw()
                    .map_err(err)?;
                chart
                    .draw_series(LineSeries::new(energy.clone(), BLUE.stroke_width(2)))
                    .map_err(err)?
                    .label("profiled")
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2))
                    });
                chart
                    .draw_series(energy.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
                    .map_err(err)?;
                if let Some(p) = energy.iter().find(|p| p.0 == pick) {
                    chart
                        .draw_series(std::iter::once(Circle::new(*p, 9, RED.stroke_width(3))))
                        .map_err(err)?
                        .label(format!("chosen: batch {chosen_batch}"))
                        .legend(|(x, y)| Circle::new((x + 10, y), 5, RED.stroke_width(2)));
                }
                if let (Some(o), Some(mj)) = (observed, seen_mj) {
                    chart
                        .draw_series(LineSeries::new(x_ends(mj), MAGENTA_LINE.stroke_width(2)))
                        .map_err(err)?
                        .label(format!(
                            "served: {mj:.1} mJ at {:.0} inferences/s",
                            o.inferences_per_second
                        ))
                        .legend(|(x, y)| {
                            PathElement::new(
                                vec![(x, y), (x + 20, y)],
                                MAGENTA_LINE.stroke_width(2),
                            )
                        });
                }
                if let Some(mj) = predicted_mj {
                    chart
                        .draw_series(LineSeries::new(x_ends(mj), GREY_LINE.stroke_width(1)))
                        .map_err(err)?
                        .label(format!("predicted for that load: {mj:.1} mJ"))
                        .legend(|(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], GREY_LINE.stroke_width(1))
                        });
                }
                chart
                    .configure_series_labels()
                    .border_style(BLACK)
                    .background_style(WHITE.mix(0.8))
                    .draw()
                    .map_err(err)?;
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
            .build_cartesian_2d(x_range, (lo * 0.5..hi * 1.6).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("batch size")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("ms")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(latency.clone(), GREEN.stroke_width(2)))
            .map_err(err)?
            .label(format!("{percentile} execution (profiled)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
        chart
            .draw_series(latency.iter().map(|p| Circle::new(*p, 4, GREEN.filled())))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(x_ends(slo_ms), RED.stroke_width(2)))
            .map_err(err)?
            .label(format!("SLO {slo_ms} ms"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        if let Some(ms) = seen_ms {
            chart
                .draw_series(LineSeries::new(x_ends(ms), MAGENTA_LINE.stroke_width(2)))
                .map_err(err)?
                .label(format!("served: {percentile} {ms:.1} ms end to end"))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA_LINE.stroke_width(2))
                });
        }
        if let Some(p) = latency.iter().find(|p| p.0 == pick) {
            chart
                .draw_series(std::iter::once(Circle::new(*p, 9, RED.stroke_width(3))))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests;
