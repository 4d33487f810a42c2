use super::*;
use crate::profile::{BatchRow, LatencyMs, MeterKind, Percentile, ProfileTable};
use proptest::prelude::*;

/// The H200 reference sweep (see `fixtures/README.md`) as profile tables.
fn h200(model: &str) -> ProfileTable {
    let raw: serde_json::Value =
        serde_json::from_str(include_str!("../../fixtures/h200_torch_eager_sweep.json")).unwrap();
    let rows = raw["models"][model]
        .as_array()
        .unwrap_or_else(|| panic!("no model {model} in fixture"))
        .iter()
        .map(|r| {
            let batch = r["batch"].as_u64().unwrap() as u32;
            let per_s = r["img_per_s"].as_f64().unwrap();
            let joules = r["j_per_img_counter"].as_f64().unwrap();
            BatchRow {
                batch_size: batch,
                latency_ms: LatencyMs {
                    p50: r["p50_ms"].as_f64().unwrap(),
                    p95: r["p95_ms"].as_f64().unwrap(),
                    p99: None,
                },
                throughput_per_second: per_s,
                avg_watts: r["avg_w"].as_f64(),
                joules_per_inference: Some(joules),
                joules_spread: None,
                windows: 1,
            }
        })
        .collect();
    ProfileTable {
        meter: MeterKind::NvmlCounter,
        meter_note: None,
        idle_watts: raw["info"]["idle_w"].as_f64(),
        rows,
        skipped: vec![],
    }
}

fn p95(ms: f64) -> Slo {
    Slo::new(ms, Percentile::P95).unwrap()
}

fn pick(model: &str, slo: Slo) -> Selection {
    choose(
        &h200(model),
        slo,
        BatchingMode::Auto,
        None,
        ReplicaRange::single(),
        &Policy::default(),
    )
    .unwrap()
}

/// A fixed batch size on the H200 reference for `model`, no rate, one replica.
fn fixed(model: &str, slo: Slo, size: u32) -> Result<Selection, DecisionError> {
    choose(
        &h200(model),
        slo,
        BatchingMode::Fixed(size),
        None,
        ReplicaRange::single(),
        &Policy::default(),
    )
}

#[test]
fn resnet50_with_p95_10ms_picks_batch_32() {
    let s = pick("resnet50", p95(10.0));
    assert!(s.slo_attainable, "{}", s.reason);
    assert_eq!(s.choice.batch_size, 32, "{}", s.reason);
    // budget 9 ms minus p95 5.47 ms: batch 2's, the slowest of the batches a cap of 32 runs
    // (batch 32's own is 5.37 ms)
    assert!(
        (s.choice.max_queue_delay_ms - (9.0 - 5.47)).abs() < 0.01,
        "{:?}",
        s.choice
    );
    let j = s.choice.joules_per_inference.unwrap();
    assert!((j - 0.0837).abs() < 0.001, "{j}");
    assert!((s.saving_vs_batch1().unwrap() - 0.5938 / 0.0837).abs() < 0.05);
    assert!(
        s.reason.contains("batch 32") && s.reason.contains("less than batch 1"),
        "{}",
        s.reason
    );
}

#[test]
fn rows_it_cannot_use_are_named_not_chosen() {
    // A duplicate batch size and a row whose latency is not a number: dropped, and said.
    let mut t = h200("resnet50");
    let mut twice = t.rows[3].clone();
    twice.joules_per_inference = Some(0.001);
    t.rows.push(twice.clone());
    t.rows[5].latency_ms.p95 = f64::NAN;
    let nan_batch = t.rows[5].batch_size;
    let s = choose(
        &t,
        p95(100.0),
        BatchingMode::Auto,
        None,
        ReplicaRange::single(),
        &Policy::default(),
    )
    .unwrap();
    assert!(s.ignored_batch_sizes.contains(&nan_batch), "{s:?}");
    assert!(s.ignored_batch_sizes.contains(&twice.batch_size), "{s:?}");
    assert_ne!(s.choice.batch_size, nan_batch);
}

#[test]
fn picks_follow_the_measured_curves() {
    // shufflenet: tiny model, launch-bound; the biggest batch is cheapest and still fast.
    assert_eq!(pick("shufflenet_v2_x0_5", p95(10.0)).choice.batch_size, 256);
    // vit_b_16: batch 8 (p95 9.63 ms) exceeds the 9 ms budget; batch 4 is the cheapest that fits.
    assert_eq!(pick("vit_b_16", p95(10.0)).choice.batch_size, 4);
    // resnet50 with a loose SLO: 256 is the cheapest measured (81.1 mJ).
    assert_eq!(pick("resnet50", p95(100.0)).choice.batch_size, 256);
    // alexnet with 2 ms: 64 is the largest that fits (1.53 ms p95).
    assert_eq!(pick("alexnet", p95(2.0)).choice.batch_size, 64);
}

#[test]
fn unattainable_slo_returns_the_closest_config_with_a_reason() {
    let s = pick("resnet50", p95(3.0));
    assert!(!s.slo_attainable);
    // Batch 8 measured the lowest p95 (3.61 ms), but a cap of 8 also runs batches of 1 and 2
    // (5.38, 5.47 ms); batch 1, at 5.38 ms, is the closest.
    assert_eq!(s.choice.batch_size, 1);
    assert_eq!(s.choice.max_queue_delay_ms, 0.0);
    assert!(
        s.reason.contains("not attainable") && s.reason.contains("5.38"),
        "{}",
        s.reason
    );
}

#[test]
fn missing_percentile_is_an_error_not_a_guess() {
    let err = choose(
        &h200("resnet50"),
        Slo::new(10.0, Percentile::P99).unwrap(),
        BatchingMode::Auto,
        None,
        ReplicaRange::single(),
        &Policy::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DecisionError::NoUsableRows { .. }), "{err}");
}

#[test]
fn fixed_mode_reports_the_cost_against_the_best_feasible() {
    let s = fixed("resnet50", p95(10.0), 8).unwrap();
    assert_eq!(s.choice.batch_size, 8);
    assert!(s.slo_attainable);
    assert_eq!(s.best_alternative.as_ref().map(|c| c.batch_size), Some(32));
    assert!(
        s.reason.contains("best feasible batch size, 32"),
        "{}",
        s.reason
    );
    let err = fixed("resnet50", p95(10.0), 3).unwrap_err();
    assert_eq!(err, DecisionError::FixedSizeNotProfiled(3));
}

#[test]
fn at_a_known_rate_idle_power_and_capacity_drive_the_choice() {
    let profile = h200("resnet50");
    let range = ReplicaRange::new(1, 4).unwrap();
    let at = |rate: f64| {
        choose(
            &profile,
            p95(50.0),
            BatchingMode::Auto,
            Some(rate),
            range,
            &Policy::default(),
        )
        .unwrap()
    };
    let low = at(100.0);
    let high = at(2000.0);
    assert!(
        low.slo_attainable && high.slo_attainable,
        "{} / {}",
        low.reason,
        high.reason
    );
    // 100 req/s: one replica, and idle power (83 W / 100 req/s = 0.83 J) dominates.
    assert_eq!(low.choice.replicas, 1);
    let j_low = low.choice.joules_per_inference.unwrap();
    assert!(j_low > 0.83 && j_low < 1.0, "{j_low}");
    // 2000 req/s: batches fill; far less energy per request.
    let j_high = high.choice.joules_per_inference.unwrap();
    assert!(j_high < 0.15, "{j_high} {}", high.reason);
    assert!(
        high.choice.realised_batch.unwrap() >= 8.0,
        "{:?}",
        high.choice
    );
    assert!(high.choice.utilisation.unwrap() <= 0.8);
    // The saving is against batch 1 at the same rate (idle share included in both), never a
    // "less" that is more: batch 1 at 100 req/s costs ~1.14 J.
    let saving = low.saving_vs_batch1().unwrap();
    assert!(saving >= 1.0, "{saving}: {}", low.reason);
    assert!(low.batch1_joules_per_inference.unwrap() > j_low);
    // batch 1 alone cannot carry 2000 req/s on 4 replicas (288 inferences/s each).
    let fixed1 = choose(
        &profile,
        p95(50.0),
        BatchingMode::Fixed(1),
        Some(2000.0),
        range,
        &Policy::default(),
    )
    .unwrap();
    assert!(!fixed1.slo_attainable);
    assert!(fixed1.reason.contains("busy"), "{}", fixed1.reason);
}

#[test]
fn a_batch_of_one_never_waits() {
    // Fixed at batch 1 with a generous SLO: the budget would allow a long delay, but a batch of one
    // closes when its request arrives, so the delay is zero and the expected latency is execution.
    let s = fixed("resnet50", p95(100.0), 1).unwrap();
    assert_eq!(s.choice.batch_size, 1);
    assert_eq!(s.choice.max_queue_delay_ms, 0.0);
    let exec_p95 = h200("resnet50").rows[0].latency_ms.p95;
    assert_eq!(s.choice.expected_latency_ms, exec_p95);
    // A larger batch still gets the budget to fill.
    let s = fixed("resnet50", p95(100.0), 8).unwrap();
    assert!(s.choice.max_queue_delay_ms > 0.0, "{:?}", s.choice);
}

#[test]
fn no_energy_falls_back_to_the_latency_proxy_and_says_so() {
    let mut profile = h200("resnet50");
    profile.meter = MeterKind::None;
    profile.idle_watts = None;
    for r in &mut profile.rows {
        r.joules_per_inference = None;
    }
    let s = choose(
        &profile,
        p95(10.0),
        BatchingMode::Auto,
        None,
        ReplicaRange::single(),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(s.energy_basis, EnergyBasis::LatencyProxy);
    assert_eq!(s.choice.joules_per_inference, None);
    assert_eq!(s.batch1_joules_per_inference, None);
    assert!(s.reason.contains("no energy measured"), "{}", s.reason);
    assert!(s.slo_attainable);
}

#[test]
fn bad_inputs_are_errors_naming_the_field() {
    let empty = ProfileTable {
        meter: MeterKind::None,
        meter_note: None,
        idle_watts: None,
        rows: vec![],
        skipped: vec![],
    };
    let policy = Policy::default();
    assert_eq!(
        choose(
            &empty,
            p95(10.0),
            BatchingMode::Auto,
            None,
            ReplicaRange::single(),
            &policy
        )
        .unwrap_err(),
        DecisionError::EmptyProfile
    );
    let err = ReplicaRange::new(3, 2).unwrap_err();
    assert!(err.to_string().contains("replicas.min"), "{err}");
    assert!(ReplicaRange::new(0, 2).is_err());
    let bad = Policy {
        headroom_fraction: f64::NAN,
        ..Policy::default()
    };
    let err = choose(
        &h200("alexnet"),
        p95(10.0),
        BatchingMode::Auto,
        None,
        ReplicaRange::single(),
        &bad,
    )
    .unwrap_err();
    assert!(err.to_string().contains("headroomFraction"), "{err}");
}

// ---- properties -------------------------------------------------------------------------------

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.01f64..500.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(0.0),
        1 => Just(-1.0),
    ]
}

fn row_strategy(sane: bool) -> impl Strategy<Value = BatchRow> {
    let lat = if sane {
        (0.05f64..200.0).boxed()
    } else {
        any_f64().boxed()
    };
    let joules = if sane {
        (0.001f64..5.0).prop_map(Some).boxed()
    } else {
        proptest::option::of(any_f64()).boxed()
    };
    (0u32..600, lat, 1.0f64..2.0, 1.0f64..1.5, joules).prop_map(move |(b, p50, k95, k99, j)| {
        BatchRow {
            batch_size: if sane { b.max(1) } else { b },
            latency_ms: LatencyMs {
                p50,
                p95: p50 * k95,
                p99: Some(p50 * k95 * k99),
            },
            throughput_per_second: 1.0,
            avg_watts: None,
            joules_per_inference: j,
            joules_spread: None,
            windows: 5,
        }
    })
}

fn table(sane: bool) -> impl Strategy<Value = ProfileTable> {
    let idle = if sane {
        (0.0f64..200.0).prop_map(Some).boxed()
    } else {
        proptest::option::of(any_f64()).boxed()
    };
    (
        proptest::collection::vec(row_strategy(sane), if sane { 1..12 } else { 0..12 }),
        idle,
    )
        .prop_map(|(rows, idle_watts)| ProfileTable {
            meter: MeterKind::Synthetic,
            meter_note: None,
            idle_watts,
            rows,
            skipped: vec![],
        })
}

fn percentile() -> impl Strategy<Value = Percentile> {
    prop_oneof![
        Just(Percentile::P50),
        Just(Percentile::P95),
        Just(Percentile::P99)
    ]
}

fn rate() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        (0.1f64..20000.0).prop_map(Some),
        any_f64().prop_map(Some)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn never_panics_on_any_input(t in table(false), ms in any_f64(), pct in percentile(), r in rate(),
                                 min in 0u32..5, extra in 0u32..5, fixed in proptest::option::of(0u32..600)) {
        if let (Ok(slo), Ok(range)) = (Slo::new(ms, pct), ReplicaRange::new(min, min + extra)) {
            let mode = fixed.map_or(BatchingMode::Auto, BatchingMode::Fixed);
            if let Ok(s) = choose(&t, slo, mode, r, range, &Policy::default()) {
                prop_assert!(!s.reason.is_empty());
                prop_assert!(s.choice.max_queue_delay_ms >= 0.0);
            }
        }
    }

    #[test]
    fn never_infeasible_when_a_feasible_config_exists(t in table(true), ms in 0.1f64..300.0, pct in percentile()) {
        let slo = Slo::new(ms, pct).unwrap();
        let s = choose(&t, slo, BatchingMode::Auto, None, ReplicaRange::single(), &Policy::default()).unwrap();
        let budget = ms * 0.9;
        // A duplicated batch size keeps its first row (documented); later duplicates are ignored.
        // A cap runs every smaller batch too: it is feasible when they all are.
        let mut seen = std::collections::HashSet::new();
        let mut rows: Vec<_> = t.rows.iter().filter(|r| seen.insert(r.batch_size)).collect();
        rows.sort_by_key(|r| r.batch_size);
        let mut slowest = 0.0f64;
        let exists = rows.iter().any(|r| {
            slowest = slowest.max(r.latency_ms.at(pct).unwrap());
            slowest <= budget
        });
        prop_assert_eq!(s.slo_attainable, exists, "{}", s.reason);
        if s.slo_attainable {
            prop_assert!(s.choice.expected_latency_ms <= budget + 1e-9);
        }
    }

    #[test]
    fn a_looser_slo_never_raises_the_energy_of_the_choice(t in table(true), ms in 0.1f64..200.0, extra in 0.0f64..200.0,
                                                        pct in percentile(), r in proptest::option::of(1.0f64..5000.0),
                                                        max in 1u32..6) {
        let range = ReplicaRange::new(1, max).unwrap();
        let tight = choose(&t, Slo::new(ms, pct).unwrap(), BatchingMode::Auto, r, range, &Policy::default()).unwrap();
        let loose = choose(&t, Slo::new(ms + extra, pct).unwrap(), BatchingMode::Auto, r, range, &Policy::default()).unwrap();
        if tight.slo_attainable {
            prop_assert!(loose.slo_attainable);
            let (jt, jl) = (tight.choice.joules_per_inference.unwrap(), loose.choice.joules_per_inference.unwrap());
            prop_assert!(jl <= jt + 1e-12, "tight {} -> {jt}, loose {} -> {jl}", tight.reason, loose.reason);
        }
    }

    #[test]
    fn replicas_stay_within_bounds(t in table(true), ms in 0.1f64..300.0, r in rate(), min in 1u32..8, extra in 0u32..8) {
        let range = ReplicaRange::new(min, min + extra).unwrap();
        let s = choose(&t, Slo::new(ms, Percentile::P99).unwrap(), BatchingMode::Auto, r, range, &Policy::default()).unwrap();
        prop_assert!(s.choice.replicas >= min && s.choice.replicas <= min + extra);
    }
}

#[test]
fn a_long_slo_never_asks_for_more_than_a_minute_of_queue_delay() {
    // Two minutes of SLO (batch work): the budget would be 108 s of waiting.
    let slow = p95(120_000.0);
    let s = pick("resnet50", slow);
    assert!(s.slo_attainable);
    assert_eq!(s.choice.max_queue_delay_ms, MAX_QUEUE_DELAY_MS, "{s:?}");
    // At a trickle the delay that would fill the cap is clamped the same way.
    let at_rate = choose(
        &h200("resnet50"),
        slow,
        BatchingMode::Auto,
        Some(0.01),
        ReplicaRange::single(),
        &Policy::default(),
    )
    .unwrap();
    assert!(
        at_rate.choice.max_queue_delay_ms <= MAX_QUEUE_DELAY_MS,
        "{at_rate:?}"
    );
}

#[test]
fn a_cap_is_only_as_fast_as_the_smaller_batches_it_also_runs() {
    // Batch 8 measured faster than batch 1 (launch-bound, or noise); at low load a cap of 8 runs
    // batches of 1, which miss a 4 ms p95.
    let mut t = h200("resnet50");
    t.rows.retain(|r| r.batch_size == 1 || r.batch_size == 8);
    t.rows[0].latency_ms.p95 = 5.0;
    t.rows[1].latency_ms.p95 = 3.0;
    let s = pick_from(&t, p95(4.0), None);
    assert!(!s.slo_attainable, "{}", s.reason);
}

#[test]
fn below_the_smallest_measured_batch_waiting_to_fill_is_worth_its_energy() {
    // Only batch sizes from 8 up were profiled; at 50 req/s batches of one item would each cost
    // what a batch of 8 does. Waiting (within a 200 ms p95) fills them.
    let mut t = h200("resnet50");
    t.rows.retain(|r| r.batch_size >= 8);
    let s = pick_from(&t, p95(200.0), Some(50.0));
    assert!(s.slo_attainable, "{}", s.reason);
    assert!(
        s.choice.max_queue_delay_ms > 0.0 && s.choice.realised_batch.unwrap() > 1.5,
        "{:?}",
        s.choice
    );
}

fn pick_from(t: &ProfileTable, slo: Slo, rate: Option<f64>) -> Selection {
    choose(
        t,
        slo,
        BatchingMode::Auto,
        rate,
        ReplicaRange::single(),
        &Policy::default(),
    )
    .unwrap()
}

#[test]
fn a_fixed_size_that_misses_says_which_size_would_meet_the_slo() {
    // Nothing fits a 5 ms p95 (batch 1 alone takes 5.38 ms): plainly unattainable.
    let s = fixed("resnet50", p95(5.0), 1).unwrap();
    assert!(!s.slo_attainable);
    assert!(s.reason.contains("not attainable"), "{}", s.reason);
    // 6.5 ms: batch 64 (9.55 ms) misses, smaller caps fit — the reason names one.
    let s = fixed("resnet50", p95(6.5), 64).unwrap();
    assert!(!s.slo_attainable);
    assert!(
        s.reason.contains("the fixed batch 64") && s.reason.contains(" would (expected p95"),
        "{}",
        s.reason
    );
    assert!(!s.reason.contains("not attainable"), "{}", s.reason);
}
