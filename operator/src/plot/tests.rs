use super::*;
use crate::config::OperatorConfig;
use crate::observe::Observed as ClusterObserved;
use crate::plan::plan;
use crate::testutil::{service, table};
use greenbatch_crds::EnergyProfileStatus;
use greenbatch_crds::inference_service::ObservedServing;

const NOW: &str = "2025-01-01T00:00:00Z";

/// A service as the operator leaves it once its profile is complete: the status the planner
/// writes (profileRef, selected), and the profile it planned with the table in its status.
fn profiled() -> (InferenceService, EnergyProfile) {
    let cfg = OperatorConfig::default();
    let mut is = service("m");
    let mut profile = plan(&is, &ClusterObserved::default(), &cfg, NOW)
        .profile
        .expect("a new service plans a profile");
    profile.metadata.uid = Some("ep-uid".into());
    profile.status = Some(EnergyProfileStatus::complete(table(&[1, 4, 16, 64])));
    let observed = ClusterObserved {
        profile: Some(profile.clone()),
        ..Default::default()
    };
    is.status = Some(plan(&is, &observed, &cfg, NOW).status);
    (is, profile)
}

#[test]
fn a_profiled_service_plots_its_table_slo_and_choice() {
    let (is, profile) = profiled();
    let status = is.status.as_ref().expect("status");
    let chosen = status.selected.as_ref().expect("a choice").batch_size;
    let svg = service_plot(&is, Some(&profile)).expect("a plot");
    assert!(svg.starts_with("<svg"));
    let profile_name = status.profile_ref.as_deref().expect("profileRef");
    for text in [
        format!("ns/m: {profile_name}"),
        format!("chosen: batch {chosen}"),
        "SLO 50 ms".to_string(),
        "p99 execution (profiled)".to_string(),
    ] {
        assert!(svg.contains(&text), "the plot says {text:?}");
    }
    assert!(!svg.contains("served:"), "not observed yet");
}

#[test]
fn what_the_pods_measured_is_drawn_beside_the_prediction() {
    let (mut is, profile) = profiled();
    let status = is.status.as_mut().expect("status");
    status.observed = Some(ObservedServing {
        inferences_per_second: Some(250.0),
        joules_per_inference: Some(0.31),
        predicted_joules_per_inference: Some(0.2),
        latency_at_slo_percentile_ms: Some(17.25),
        ..Default::default()
    });
    let svg = service_plot(&is, Some(&profile)).expect("a plot");
    for text in [
        "served: 310.0 mJ at 250 inferences/s",
        "predicted for that load: 200.0 mJ",
        "served: p99 17.2 ms end to end",
    ] {
        assert!(svg.contains(text), "the plot says {text:?}");
    }
}

#[test]
fn nothing_measured_is_a_reason_not_a_picture() {
    let fresh = service("fresh");
    match service_plot(&fresh, None) {
        Err(ServicePlotError::NotMeasured(why)) => {
            assert!(why.contains("ns/fresh names no EnergyProfile"), "{why}")
        }
        other => panic!("expected NotMeasured, got {other:?}"),
    }
    let (is, mut profile) = profiled();
    profile.status = None;
    match service_plot(&is, Some(&profile)) {
        Err(ServicePlotError::NotMeasured(why)) => {
            assert!(why.contains("has no measured table yet"), "{why}")
        }
        other => panic!("expected NotMeasured, got {other:?}"),
    }
    // The profile the status names is gone (deleted by hand): the same answer.
    assert!(matches!(
        service_plot(&is, None),
        Err(ServicePlotError::NotMeasured(_))
    ));
}
