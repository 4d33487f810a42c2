//! A service's plot (pure): the profile it serves from — joules per inference and latency against
//! batch size —, its SLO, the batch size chosen, and what its pods measured at the last observation
//! beside the profile's prediction for that load. Served by `server` at `/plots/{namespace}/{name}`;
//! the same drawing `greenbatch-runtime tune` writes.

use greenbatch_core::Percentile;
use greenbatch_crds::{EnergyProfile, InferenceService};
use greenbatch_plot::{Observed, Plot, PlotError};

/// Why there is no plot.
#[derive(Debug, thiserror::Error)]
pub enum ServicePlotError {
    /// Nothing measured to draw yet (a 404 with the reason).
    #[error("{0}")]
    NotMeasured(String),
    #[error(transparent)]
    Draw(#[from] PlotError),
}

/// The SVG for `service`, drawn from `profile` (the EnergyProfile its status names, if found).
pub fn service_plot(
    service: &InferenceService,
    profile: Option<&EnergyProfile>,
) -> Result<String, ServicePlotError> {
    let ns = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let status = service.status.clone().unwrap_or_default();
    let phase = status
        .phase
        .map_or_else(|| "none".to_string(), |p| format!("{p:?}"));
    let Some(profile_name) = status.profile_ref.as_deref() else {
        return Err(ServicePlotError::NotMeasured(format!(
            "InferenceService {ns}/{name} names no EnergyProfile yet (phase {phase})"
        )));
    };
    let profile_status = profile.and_then(|p| p.status.as_ref());
    let Some(table) = profile_status
        .and_then(|s| s.table.as_ref())
        .filter(|t| !t.rows.is_empty())
    else {
        return Err(ServicePlotError::NotMeasured(format!(
            "EnergyProfile {ns}/{profile_name} of InferenceService {ns}/{name} has no measured table yet (phase {phase})"
        )));
    };
    let percentile = Percentile::from_u32(service.spec.slo.percentile).unwrap_or(Percentile::P99);
    let device = profile_status
        .and_then(|s| s.measured_on.as_ref())
        .map(|m| m.display_name().to_string())
        .unwrap_or_else(|| "unknown device".into());
    let title = format!("{ns}/{name}: {profile_name} on {device}");
    let observed = status.observed.as_ref().and_then(|o| {
        Some(Observed {
            inferences_per_second: o.inferences_per_second?,
            joules_per_inference: o.joules_per_inference,
            predicted_joules_per_inference: o.predicted_joules_per_inference,
            latency_at_percentile_ms: o.latency_at_slo_percentile_ms,
        })
    });
    let svg = greenbatch_plot::render_svg(&Plot {
        table,
        percentile,
        slo_ms: service.spec.slo.latency_ms,
        // No choice yet (or none fits the table): nothing is marked.
        chosen_batch: status.selected.as_ref().map_or(0, |s| s.batch_size),
        title: &title,
        observed,
    })?;
    Ok(svg)
}

#[cfg(test)]
mod tests;
