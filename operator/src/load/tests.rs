use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// `/metrics` of a real `greenbatch-runtime serve` (tiny_cnn.pt, synthetic meter) after 97
/// requests from its load generator, captured on 2026-11-26.
const RUNTIME_METRICS: &str = include_str!("runtime-metrics.txt");

#[test]
fn reads_the_runtimes_own_metrics() {
    let c = parse(RUNTIME_METRICS).unwrap();
    assert_eq!((c.requests, c.inferences), (97.0, 97.0));
    assert!((c.energy_joules - 402.43089006).abs() < 1e-9);
    assert_eq!(c.latency_buckets.len(), 15);
    assert_eq!(c.latency_buckets[0], (0.0005, 0.0));
    assert_eq!(c.latency_buckets[14], (f64::INFINITY, 97.0));
    assert_eq!(
        (c.max_batch_size, c.max_queue_delay_seconds),
        (Some(8.0), Some(0.002))
    );
    // The queue-wait and batch-size histograms are not the request-duration one.
    assert!(c.latency_buckets.iter().all(|(_, n)| *n <= 97.0));
}

#[test]
fn requests_are_summed_over_status_codes_and_timestamps_are_ignored() {
    let text = "greenbatch_requests_total{code=\"200\"} 10\ngreenbatch_requests_total{code=\"429\"} 5 1700000000000\ngreenbatch_inferences_total 12\n";
    let c = parse(text).unwrap();
    assert_eq!(
        (c.requests, c.inferences, c.energy_joules),
        (15.0, 12.0, 0.0)
    );
    assert!(c.latency_buckets.is_empty());
    // A fresh server has answered nothing: no requests series yet.
    assert_eq!(
        parse("greenbatch_inferences_total 0").unwrap().requests,
        0.0
    );
}

#[test]
fn anything_else_is_refused_with_the_line() {
    assert_eq!(
        parse("# nothing\nup 1\n"),
        Err(MetricsError::Missing("greenbatch_inferences_total"))
    );
    let bad = [
        ("greenbatch_inferences_total\n", 1),
        ("greenbatch_inferences_total lots\n", 1),
        (
            "greenbatch_inferences_total 3\ngreenbatch_energy_joules_total -1\n",
            2,
        ),
        ("greenbatch_inferences_total NaN\n", 1),
        (
            "greenbatch_inferences_total 1\ngreenbatch_request_duration_seconds_bucket{code=\"x\"} 1\n",
            2,
        ),
    ];
    for (text, line) in bad {
        match parse(text) {
            Err(MetricsError::Malformed { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn quantiles_interpolate_inside_buckets() {
    let b = [
        (0.01, 50.0),
        (0.02, 90.0),
        (0.05, 100.0),
        (f64::INFINITY, 100.0),
    ];
    // Rank 99 of 100 lies 9/10 of the way through the 0.02-0.05 bucket.
    let p99 = histogram_quantile(0.99, &b).unwrap();
    assert!((p99 - 0.047).abs() < 1e-12, "{p99}");
    let p50 = histogram_quantile(0.5, &b).unwrap();
    assert!((p50 - 0.01).abs() < 1e-12, "{p50}");
    // Beyond the last finite bound: that bound (what Prometheus answers).
    let tail = [(0.01, 10.0), (f64::INFINITY, 20.0)];
    assert_eq!(histogram_quantile(0.99, &tail), Some(0.01));
    assert_eq!(histogram_quantile(0.99, &[(f64::INFINITY, 0.0)]), None);
    assert_eq!(histogram_quantile(0.99, &[]), None);
}

fn counters(requests: f64, energy: f64, buckets: &[(f64, f64)]) -> PodCounters {
    PodCounters {
        requests,
        inferences: requests * 2.0,
        energy_joules: energy,
        latency_buckets: buckets.to_vec(),
        max_batch_size: Some(32.0),
        max_queue_delay_seconds: Some(requests / 1e5),
    }
}

fn snapshot(at: f64, pods: &[(&str, PodCounters)]) -> Snapshot {
    Snapshot {
        at_seconds: at,
        pods: pods
            .iter()
            .map(|(u, c)| (u.to_string(), c.clone()))
            .collect(),
        unanswered: 0,
    }
}

#[test]
fn two_scrapes_give_rates_energy_and_latency_summed_over_pods() {
    let before = snapshot(
        100.0,
        &[
            (
                "a",
                counters(
                    1000.0,
                    500.0,
                    &[(0.01, 900.0), (0.1, 1000.0), (f64::INFINITY, 1000.0)],
                ),
            ),
            (
                "b",
                counters(0.0, 100.0, &[(0.01, 0.0), (0.1, 0.0), (f64::INFINITY, 0.0)]),
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
                    &[(0.01, 1400.0), (0.1, 1600.0), (f64::INFINITY, 1600.0)],
                ),
            ),
            (
                "b",
                counters(
                    400.0,
                    300.0,
                    &[(0.01, 300.0), (0.1, 400.0), (f64::INFINITY, 400.0)],
                ),
            ),
        ],
    );
    let o = observe(&before, &after).unwrap();
    assert_eq!(o.pods, 2);
    assert!(o.complete);
    assert_eq!(o.window_seconds, 10.0);
    assert_eq!(o.requests_per_second, 100.0);
    assert_eq!(o.inferences_per_second, 200.0);
    // 500 J over 2000 items.
    assert_eq!(o.joules_per_inference, Some(0.25));
    // 1000 requests in the window, 800 under 10 ms: rank 990 is 19/20 into the 10-100 ms bucket.
    let p99 = o.latency_p99_ms.unwrap();
    assert!((p99 - 95.5).abs() < 1e-9, "{p99}");
    // What the pods run now: the largest cap, the mean delay (16 and 4 ms).
    assert_eq!(o.max_batch_size, Some(32));
    assert!((o.max_queue_delay_ms.unwrap() - 10.0).abs() < 1e-9, "{o:?}");
}

#[test]
fn restarted_new_and_vanished_pods_make_a_partial_window() {
    let c = |r| counters(r, 0.0, &[]);
    let before = snapshot(0.0, &[("a", c(100.0)), ("b", c(100.0)), ("gone", c(5.0))]);
    let after = snapshot(10.0, &[("a", c(200.0)), ("b", c(3.0)), ("new", c(50.0))]);
    let o = observe(&before, &after).unwrap();
    // Only `a` was measured twice with counters going forward (`b` restarted).
    assert_eq!((o.pods, o.complete), (1, false));
    assert_eq!(o.requests_per_second, 10.0);
    // No meter, no traffic: no energy or latency numbers rather than zeros.
    assert_eq!(o.joules_per_inference, None);
    assert_eq!(o.latency_p99_ms, None);
    // Nothing measured twice, or no time between: nothing to say.
    assert_eq!(observe(&before, &snapshot(10.0, &[("new", c(1.0))])), None);
    assert_eq!(observe(&after, &after), None);
    // Every pod measured twice, but one pod did not answer: its traffic is missing.
    let same = snapshot(20.0, &[("a", c(300.0)), ("b", c(10.0)), ("new", c(60.0))]);
    assert!(observe(&after, &same).unwrap().complete);
    let unanswered = Snapshot {
        unanswered: 1,
        ..same
    };
    assert!(!observe(&after, &unanswered).unwrap().complete);
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
fn only_running_ready_pods_with_an_ip_are_scraped() {
    let pods = [
        pod("ok", "Running", true, Some("10.0.0.7"), false),
        pod("v6", "Running", true, Some("fd00::7"), false),
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
                uid: "uid-ok".into(),
                name: "ok".into(),
                url: "http://10.0.0.7:8080/metrics".into()
            },
            Target {
                uid: "uid-v6".into(),
                name: "v6".into(),
                url: "http://[fd00::7]:8080/metrics".into()
            },
        ]
    );
}
