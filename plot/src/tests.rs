use super::*;
use greenbatch_core::{BatchRow, LatencyMs, MeterKind};

/// A small made-up table (shapes, not measurements): energy falls and latency rises with batch.
fn table(with_energy: bool) -> ProfileTable {
    let rows = [(1u32, 4.0, 0.6), (8, 5.0, 0.12), (32, 9.0, 0.085)]
        .into_iter()
        .map(|(b, p50, j)| BatchRow {
            batch_size: b,
            latency_ms: LatencyMs {
                p50,
                p95: p50 * 1.1,
                p99: Some(p50 * 1.2),
            },
            throughput_per_second: f64::from(b) * 1000.0 / p50,
            avg_watts: with_energy.then_some(300.0),
            joules_per_inference: with_energy.then_some(j),
            joules_spread: None,
            windows: 5,
        })
        .collect();
    ProfileTable {
        meter: if with_energy {
            MeterKind::Synthetic
        } else {
            MeterKind::None
        },
        meter_note: None,
        idle_watts: None,
        rows,
        skipped: Vec::new(),
    }
}

fn plot(table: &ProfileTable, observed: Option<Observed>) -> String {
    render_svg(&Plot {
        table,
        percentile: Percentile::P99,
        slo_ms: 20.0,
        chosen_batch: 8,
        title: "m on gpu",
        observed,
    })
    .expect("renders")
}

#[test]
fn draws_the_profile_the_slo_and_the_choice() {
    let svg = plot(&table(true), None);
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    for text in [
        "m on gpu",
        "chosen: batch 8",
        "SLO 20 ms",
        "profiled",
        "mJ / inference",
    ] {
        assert!(svg.contains(text), "the plot says {text:?}");
    }
    assert!(
        !svg.contains("served:"),
        "nothing observed, nothing drawn as served"
    );
}

#[test]
fn draws_what_serving_measured_beside_the_prediction() {
    let observed = Observed {
        inferences_per_second: 412.0,
        joules_per_inference: Some(0.2),
        predicted_joules_per_inference: Some(0.15),
        latency_at_percentile_ms: Some(31.5),
    };
    let svg = plot(&table(true), Some(observed));
    for text in [
        "served: 200.0 mJ at 412 inferences/s",
        "predicted for that load: 150.0 mJ",
        "served: p99 31.5 ms end to end",
    ] {
        assert!(svg.contains(text), "the plot says {text:?}");
    }
}

#[test]
fn without_energy_it_says_so_and_still_draws_latency() {
    let observed = Observed {
        inferences_per_second: 10.0,
        joules_per_inference: None,
        predicted_joules_per_inference: None,
        latency_at_percentile_ms: Some(12.0),
    };
    let svg = plot(&table(false), Some(observed));
    assert!(
        svg.contains("no energy measured"),
        "says why there is no energy panel"
    );
    assert!(svg.contains("SLO 20 ms"));
    assert!(svg.contains("served: p99 12.0 ms end to end"));
}

#[test]
fn an_empty_table_or_a_choice_outside_it_still_renders() {
    let mut empty = table(true);
    empty.rows.clear();
    assert!(plot(&empty, None).starts_with("<svg"));
    let svg = render_svg(&Plot {
        table: &table(true),
        percentile: Percentile::P95,
        slo_ms: 20.0,
        chosen_batch: 64,
        title: "t",
        observed: None,
    })
    .expect("renders");
    assert!(
        !svg.contains("chosen: batch"),
        "no mark where there is no row"
    );
}

#[test]
fn values_no_axis_can_hold_are_an_error_not_a_hang() {
    // plotters' log axis loops for ever over an infinite, subnormal or ~300-decade range: an SLO
    // of 1e308 (tune's argument) or a latency in a bad EnergyProfile (the operator's /plots).
    let render = |t: &ProfileTable, slo_ms: f64| {
        render_svg(&Plot {
            table: t,
            percentile: Percentile::P99,
            slo_ms,
            chosen_batch: 8,
            title: "m",
            observed: None,
        })
    };
    let e = render(&table(true), 1e308).unwrap_err();
    assert!(e.to_string().contains("latency (ms)"), "{e}");
    let mut tiny = table(true);
    tiny.rows[0].latency_ms.p99 = Some(1e-320);
    assert!(render(&tiny, 20.0).is_err());
    let mut costly = table(true);
    costly.rows[0].joules_per_inference = Some(1e300);
    let e = render(&costly, 20.0).unwrap_err();
    assert!(e.to_string().contains("energy per inference"), "{e}");
    // Wide but drawable.
    assert!(render(&table(true), 1e6).is_ok());
}
