//! The tune plot: joules per inference (top) and latency at the SLO percentile (bottom) against
//! batch size, the SLO line, and the chosen batch size marked. SVG, so it renders anywhere.

use greenbatch_core::{Percentile, ProfileTable, Selection};
use plotters::prelude::*;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub fn render_svg(
    table: &ProfileTable,
    percentile: Percentile,
    slo_ms: f64,
    selection: &Selection,
    title: &str,
) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (900, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
        let (top, bottom) = root.split_vertically(340);
        let rows: Vec<_> = table.rows.iter().filter(|r| r.batch_size >= 1).collect();
        let max_b = rows.iter().map(|r| r.batch_size).max().unwrap_or(1).max(2) as f64;
        let x_range = (0.8f64..max_b * 1.25).log_scale();
        let pick = selection.choice.batch_size as f64;

        // Energy panel.
        let energy: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| {
                r.joules_per_inference
                    .map(|j| (r.batch_size as f64, j * 1000.0))
            })
            .collect();
        if energy.is_empty() {
            top.draw(&Text::new(
                format!(
                    "no energy measured (meter: {}) — chosen by latency",
                    table.meter
                ),
                (120, 160),
                ("sans-serif", 18),
            ))
            .map_err(err)?;
        } else {
            let (lo, hi) = energy
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), (_, y)| {
                    (lo.min(*y), hi.max(*y))
                });
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
                .map_err(err)?;
            chart
                .draw_series(energy.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
                .map_err(err)?;
            if let Some(p) = energy.iter().find(|p| p.0 == pick) {
                chart
                    .draw_series(std::iter::once(Circle::new(*p, 9, RED.stroke_width(3))))
                    .map_err(err)?
                    .label(format!("chosen: batch {}", selection.choice.batch_size))
                    .legend(|(x, y)| Circle::new((x + 10, y), 5, RED.stroke_width(2)));
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
        let hi = latency.iter().map(|p| p.1).fold(slo_ms, f64::max);
        let lo = latency.iter().map(|p| p.1).fold(slo_ms, f64::min);
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
            .label(format!("{percentile} execution"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
        chart
            .draw_series(latency.iter().map(|p| Circle::new(*p, 4, GREEN.filled())))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                vec![(0.8, slo_ms), (max_b * 1.25, slo_ms)],
                RED.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("SLO {slo_ms} ms"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
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
