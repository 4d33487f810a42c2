use super::*;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

fn counters(requests: f64, energy: f64, buckets: &[(f64, f64)]) -> ServerCounters {
    ServerCounters {
        requests,
        inferences: requests * 2.0,
        requested_items: None,
        refused_items: None,
        energy_joules: Some(energy),
        latency_buckets: buckets.to_vec(),
        max_batch_size: Some(32.0),
        max_queue_delay_seconds: Some(requests / 1e5),
        batches: None,
        forward_seconds: None,
        executor_seconds: None,
        padding_items: None,
        energy_meter: Some("nvml-counter".into()),
    }
}

/// A pod's counters having been asked for `asked` items and served `served` (the rest refused).
fn with_asked(served: f64, asked: f64) -> ServerCounters {
    ServerCounters {
        requested_items: Some(asked),
        refused_items: Some(asked - served),
        ..counters(served / 2.0, 0.0, &[])
    }
}

fn snapshot(at: f64, pods: &[(&str, ServerCounters)]) -> Snapshot {
    Snapshot {
        at_seconds: at,
        pods: pods
            .iter()
            .map(|(key, c)| {
                let sample = PodSample {
                    at_seconds: at,
                    counters: c.clone(),
                };
                (key.to_string(), sample)
            })
            .collect(),
        unanswered: 0,
    }
}

#[test]
fn two_scrapes_give_rates_energy_latency_and_batching_summed_over_pods() {
    let inf = f64::INFINITY;
    let before = snapshot(
        100.0,
        &[
            (
                "a",
                counters(
                    1000.0,
                    500.0,
                    &[(0.01, 900.0), (0.1, 1000.0), (inf, 1000.0)],
                ),
            ),
            (
                "b",
                counters(0.0, 100.0, &[(0.01, 0.0), (0.1, 0.0), (inf, 0.0)]),
            ),
        ],
    );
    let after = snapshot(
        110.0,
        &[
            (
                "a",
                counters(
                    1600.0,
                    800.0,
                    &[(0.01, 1400.0), (0.1, 1600.0), (inf, 1600.0)],
                ),
            ),
            (
                "b",
                counters(400.0, 300.0, &[(0.01, 300.0), (0.1, 400.0), (inf, 400.0)]),
            ),
        ],
    );
    let o = observe(&before, &after, 0.0).unwrap();
    assert_eq!((o.pods, o.complete, o.window_seconds), (2, true, 10.0));
    assert_eq!(o.requests_per_second, 100.0);
    // No count of refused items from these pods: the items served stand in.
    assert_eq!(o.inferences_per_second, 200.0);
    // 500 J over 2000 items.
    assert_eq!(o.joules_per_inference, Some(0.25));
    // Where those joules come from, as the pods say.
    assert_eq!(o.energy_meter.as_deref(), Some("nvml-counter"));
    // 1000 requests in the window, 800 under 10 ms: rank 990 is 19/20 into the 10-100 ms bucket.
    let p99 = o.latency_p99_ms.unwrap();
    assert!((p99 - 95.5).abs() < 1e-9, "{p99}");
    // What the pods run now: the largest cap, the mean delay (16 and 4 ms).
    assert_eq!(o.max_batch_size, Some(32));
    assert!((o.max_queue_delay_ms.unwrap() - 10.0).abs() < 1e-9, "{o:?}");
}

#[test]
fn the_arrival_rate_counts_refused_items_and_each_pod_its_own_window() {
    let before = snapshot(
        0.0,
        &[("a", with_asked(0.0, 0.0)), ("b", with_asked(0.0, 0.0))],
    );
    let mut after = snapshot(
        10.0,
        &[
            ("a", with_asked(1000.0, 1500.0)),
            ("b", with_asked(500.0, 500.0)),
        ],
    );
    // `b` answered 2.5 s late (a slow pod): its rate is over its own 12.5 s.
    after.pods.get_mut("b").unwrap().at_seconds = 12.5;
    let o = observe(&before, &after, 0.0).unwrap();
    // a: 1500 asked / 10 s (500 of them refused); b: 500 / 12.5 s.
    assert!((o.inferences_per_second - 190.0).abs() < 1e-9, "{o:?}");
    assert!((o.served_per_second - 140.0).abs() < 1e-9, "{o:?}");
    // Only `a` refused work: it served 100/s; the busiest pod too.
    assert!((o.refused_per_second - 50.0).abs() < 1e-9, "{o:?}");
    assert_eq!(o.refusing_pod_served_per_second, Some(100.0));
    assert_eq!(o.busiest_pod_served_per_second, 100.0);
    assert!((o.window_seconds - 11.25).abs() < 1e-9, "{o:?}");
}

#[test]
fn pods_with_different_histogram_bounds_merge_without_a_dip() {
    // Mid-rollout: an old pod (bounds 0.02, 0.05, 0.1) answered 100 requests in 15 ms, a new one
    // (denser bounds) 100 in 60 ms. The true p99 is in the 50-75 ms bucket of the new pod.
    let inf = f64::INFINITY;
    let old = |n: f64| counters(n, 0.0, &[(0.02, n), (0.05, n), (0.1, n), (inf, n)]);
    let new = |n: f64| {
        counters(
            n,
            0.0,
            &[
                (0.02, 0.0),
                (0.03, 0.0),
                (0.04, 0.0),
                (0.05, 0.0),
                (0.075, n),
                (0.1, n),
                (inf, n),
            ],
        )
    };
    let before = snapshot(0.0, &[("old", old(0.0)), ("new", new(0.0))]);
    let after = snapshot(10.0, &[("old", old(100.0)), ("new", new(100.0))]);
    let o = observe(&before, &after, 0.0).unwrap();
    // Cumulative counts never fall as the bound grows.
    for pair in o.latency_buckets.windows(2) {
        assert!(pair[1].1 >= pair[0].1, "{:?}", o.latency_buckets);
    }
    // 198th of 200 in the 50-75 ms bucket (100 at or below 50 ms, 200 at 75 ms): 74.5 ms.
    let p99 = o.latency_ms(0.99).unwrap();
    assert!((p99 - 74.5).abs() < 1e-6, "{p99}");
}

#[test]
fn a_pod_refusing_a_sliver_of_its_load_does_not_set_the_capacity() {
    let before = snapshot(
        0.0,
        &[("a", with_asked(0.0, 0.0)), ("b", with_asked(0.0, 0.0))],
    );
    // `a` at its capacity (serves 500/s, refuses 1000/s); `b` lightly loaded, one item in a
    // hundred turned away in a burst.
    let after = snapshot(
        10.0,
        &[
            ("a", with_asked(5000.0, 15000.0)),
            ("b", with_asked(1000.0, 1010.0)),
        ],
    );
    let o = observe(&before, &after, 0.0).unwrap();
    assert_eq!(o.refusing_pod_served_per_second, Some(500.0));
    // Its refusals still count as demand.
    assert!((o.refused_per_second - 1001.0).abs() < 1e-9, "{o:?}");
}

#[test]
fn restarted_new_vanished_and_unanswered_pods_make_a_partial_window() {
    let c = |r| counters(r, 0.0, &[]);
    let before = snapshot(0.0, &[("a", c(100.0)), ("b", c(100.0)), ("gone", c(5.0))]);
    let after = snapshot(10.0, &[("a", c(200.0)), ("b", c(3.0)), ("new", c(50.0))]);
    let o = observe(&before, &after, 0.0).unwrap();
    // Only `a` was measured twice with counters going forward (`b` restarted).
    assert_eq!((o.pods, o.complete), (1, false));
    assert_eq!(o.requests_per_second, 10.0);
    // No meter, no traffic: no energy or latency numbers rather than zeros.
    assert_eq!(o.joules_per_inference, None);
    assert_eq!(o.latency_p99_ms, None);
    // Nothing measured twice, or no time between: nothing to say.
    assert_eq!(
        observe(&before, &snapshot(10.0, &[("new", c(1.0))]), 0.0),
        None
    );
    assert_eq!(observe(&after, &after, 0.0), None);
    // Every pod measured twice, but one pod did not answer: its traffic is missing.
    let same = snapshot(20.0, &[("a", c(300.0)), ("b", c(10.0)), ("new", c(60.0))]);
    assert!(observe(&after, &same, 0.0).unwrap().complete);
    let unanswered = Snapshot {
        unanswered: 1,
        ..same
    };
    assert!(!observe(&after, &unanswered, 0.0).unwrap().complete);
}

#[test]
fn energy_is_per_inference_of_the_pods_that_measure_it() {
    // `a` has a meter: 50 J for 200 inferences; `b` has none (no energy series) and served 200 too.
    let unmetered = |r| ServerCounters {
        energy_joules: None,
        ..counters(r, 0.0, &[])
    };
    let before = snapshot(
        0.0,
        &[("a", counters(0.0, 0.0, &[])), ("b", unmetered(0.0))],
    );
    let after = snapshot(
        10.0,
        &[("a", counters(100.0, 50.0, &[])), ("b", unmetered(100.0))],
    );
    let o = observe(&before, &after, 0.0).unwrap();
    // 50 J / 200, not 50 J / 400: the unmetered pod's work is not free.
    assert_eq!(o.joules_per_inference, Some(0.25));
    assert_eq!(o.served_per_second, 40.0);
    // The runtime without a meter exports the energy counter at 0: the same.
    let zero = |r| counters(r, 0.0, &[]);
    let before = snapshot(0.0, &[("a", counters(0.0, 0.0, &[])), ("b", zero(0.0))]);
    let after = snapshot(
        10.0,
        &[("a", counters(100.0, 50.0, &[])), ("b", zero(100.0))],
    );
    let o = observe(&before, &after, 0.0).unwrap();
    assert_eq!(o.joules_per_inference, Some(0.25));
}

#[test]
fn a_pod_read_twice_in_quick_succession_is_left_out() {
    // `b` answered late the first time and early the second: 0.05 s between its reads, in which
    // one batch of 32 finished. As a rate that is 640/s; it must not count.
    let before = snapshot(
        0.0,
        &[
            ("a", counters(0.0, 0.0, &[])),
            ("b", counters(0.0, 0.0, &[])),
        ],
    );
    let mut after = snapshot(
        1.0,
        &[
            ("a", counters(10.0, 0.0, &[])),
            ("b", counters(16.0, 0.0, &[])),
        ],
    );
    after.pods.get_mut("b").unwrap().at_seconds = 0.05;
    let o = observe(&before, &after, 0.5).unwrap();
    assert_eq!((o.pods, o.complete), (1, false), "{o:?}");
    assert_eq!(o.inferences_per_second, 20.0);
    // With no minimum both count (what a 0.0 minimum means).
    assert_eq!(observe(&before, &after, 0.0).unwrap().pods, 2);
}

fn pod(name: &str, phase: &str, ready: bool, ip: Option<&str>, deleting: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            deletion_timestamp: deleting.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some(phase.into()),
            pod_ip: ip.map(str::to_string),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn only_running_ready_pods_with_an_ip_are_scraped_keyed_by_uid_and_restarts() {
    let mut restarted = pod("v6", "Running", true, Some("fd00::7"), false);
    if let Some(s) = restarted.status.as_mut() {
        s.container_statuses = Some(vec![ContainerStatus {
            name: "runtime".into(),
            restart_count: 3,
            ..Default::default()
        }]);
    }
    let pods = [
        pod("ok", "Running", true, Some("10.0.0.7"), false),
        restarted,
        pod("unready", "Running", false, Some("10.0.0.8"), false),
        pod("pending", "Pending", true, Some("10.0.0.9"), false),
        pod("no-ip", "Running", true, None, false),
        pod("deleting", "Running", true, Some("10.0.0.10"), true),
    ];
    let t = targets(&pods, 8080);
    assert_eq!(
        t,
        vec![
            Target {
                key: "uid-ok/0".into(),
                name: "ok".into(),
                url: "http://10.0.0.7:8080/metrics".into()
            },
            Target {
                key: "uid-v6/3".into(),
                name: "v6".into(),
                url: "http://[fd00::7]:8080/metrics".into()
            },
        ]
    );
}

#[test]
fn the_model_s_time_per_batch_and_the_rows_it_ran() {
    let timed = |requests: f64, batches: f64, forward: f64, padding: f64| ServerCounters {
        batches: Some(batches),
        forward_seconds: Some(forward),
        padding_items: Some(padding),
        ..counters(requests, 0.0, &[])
    };
    // Pod a ran 40 batches of 200 items plus 40 padding rows in 2 s of model time; pod b is an
    // older runtime that does not say.
    let before = snapshot(
        0.0,
        &[
            ("a", timed(0.0, 0.0, 0.0, 0.0)),
            ("b", counters(0.0, 0.0, &[])),
        ],
    );
    let after = snapshot(
        10.0,
        &[
            ("a", timed(100.0, 40.0, 2.0, 40.0)),
            ("b", counters(50.0, 0.0, &[])),
        ],
    );
    let o = observe(&before, &after, 0.0).unwrap();
    assert_eq!(o.forward_ms_per_batch, Some(50.0));
    assert_eq!(o.run_batch_size, Some(6.0));
    // Ten batches are too few to hold against the profile.
    let quiet = snapshot(10.0, &[("a", timed(25.0, 10.0, 0.5, 0.0))]);
    let o = observe(
        &snapshot(0.0, &[("a", timed(0.0, 0.0, 0.0, 0.0))]),
        &quiet,
        0.0,
    )
    .unwrap();
    assert_eq!((o.forward_ms_per_batch, o.run_batch_size), (None, None));
}

#[test]
fn each_pod_s_model_thread_busy_share_items_per_batch_and_served_per_busy_second() {
    let busy = |requests: f64, seconds: f64, batches: f64| ServerCounters {
        executor_seconds: Some(seconds),
        batches: Some(batches),
        ..counters(requests, 0.0, &[])
    };
    // Over 10 s: pod a's thread was busy 8 s serving 200 items in 10 batches; pod b's 4 s serving
    // 100 items in 50; pod c idled all window; pod d is an older runtime that does not say.
    let before = snapshot(
        0.0,
        &[
            ("a", busy(0.0, 1.0, 0.0)),
            ("b", busy(0.0, 0.0, 0.0)),
            ("c", busy(0.0, 2.0, 7.0)),
            ("d", counters(0.0, 0.0, &[])),
        ],
    );
    let after = snapshot(
        10.0,
        &[
            ("a", busy(100.0, 9.0, 10.0)),
            ("b", busy(50.0, 4.0, 50.0)),
            ("c", busy(0.0, 2.0, 7.0)),
            ("d", counters(50.0, 0.0, &[])),
        ],
    );
    let o = observe(&before, &after, 0.0).unwrap();
    let reading = |busy: f64, per_second: f64, per_batch: Option<f64>, cap| ThreadReading {
        busy,
        served_per_busy_second: per_second,
        items_per_batch: per_batch,
        max_batch_size: cap,
    };
    assert_eq!(
        o.threads,
        vec![
            reading(0.8, 25.0, Some(20.0), Some(32)),
            reading(0.4, 25.0, Some(2.0), Some(32)),
            reading(0.0, 0.0, None, None),
        ]
    );
    assert!(
        o.executor_busy.is_some_and(|b| (b - 0.4).abs() < 1e-12),
        "{o:?}"
    );
    // Without the series (an older runtime), neither.
    let o = observe(
        &snapshot(0.0, &[("d", counters(0.0, 0.0, &[]))]),
        &snapshot(10.0, &[("d", counters(50.0, 0.0, &[]))]),
        0.0,
    )
    .unwrap();
    assert_eq!((o.executor_busy, o.threads), (None, vec![]));
}

#[test]
fn pods_on_different_meters_are_all_named() {
    // A synthetic meter (a test double) beside a real one must show in what is reported.
    let with_meter = |served: f64, energy: f64, kind: &str| ServerCounters {
        energy_meter: Some(kind.into()),
        ..counters(served, energy, &[])
    };
    let before = snapshot(
        0.0,
        &[
            ("a", with_meter(0.0, 0.0, "synthetic")),
            ("b", with_meter(0.0, 0.0, "nvml-counter")),
            ("c", with_meter(0.0, 0.0, "none")),
        ],
    );
    // c has no meter: its energy stays at 0, and it is no part of where the joules come from.
    let after = snapshot(
        10.0,
        &[
            ("a", with_meter(10.0, 5.0, "synthetic")),
            ("b", with_meter(10.0, 5.0, "nvml-counter")),
            ("c", with_meter(10.0, 0.0, "none")),
        ],
    );
    let o = observe(&before, &after, 0.0).expect("a window");
    assert_eq!(o.energy_meter.as_deref(), Some("nvml-counter,synthetic"));
}
