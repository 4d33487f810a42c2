//! `greenbatch-runtime profile`: load the model, measure every candidate batch size with the
//! protocol, and write the result as an EnergyProfile status (JSON file, stdout, or the cluster).

use crate::cli::ProfileArgs;
use crate::error::{Result, RuntimeError};
use crate::measure::{RUNTIME_VERSION, measure, now_rfc3339};
use crate::output::JsonSink;
use crate::setup::{check_candidates, load_model, protocol_config};
use crate::{publish, table};
use greenbatch_crds::{EnergyProfileStatus, ProfilePhase};

/// The profile's status when it holds a complete table a failed re-measurement must not lose.
fn kept_table(existing: Option<&EnergyProfileStatus>) -> Option<&EnergyProfileStatus> {
    existing.filter(|s| {
        s.phase == Some(ProfilePhase::Complete)
            && s.table.as_ref().is_some_and(|t| !t.rows.is_empty())
    })
}

/// The status a failed measurement leaves. A first measurement fails the profile. A re-profile
/// (the profile has a complete table already) keeps that table and says what failed: losing it
/// would take every service serving from it down, for a measurement that changed nothing.
pub fn failure_status(
    existing: Option<&EnergyProfileStatus>,
    error: &str,
    now: &str,
) -> EnergyProfileStatus {
    match kept_table(existing) {
        Some(kept) => EnergyProfileStatus {
            message: Some(format!(
                "measuring again failed at {now}: {error}; the table measured at {} stays",
                kept.finished_at.as_deref().unwrap_or("an earlier run")
            )),
            // The operator's record of the last Job is the operator's to write: sent back from
            // here it would make the runtime a co-owner of a stale value (server-side apply).
            last_job: None,
            ..kept.clone()
        },
        None => EnergyProfileStatus {
            phase: Some(ProfilePhase::Failed),
            message: Some(error.to_string()),
            runtime_version: Some(RUNTIME_VERSION.into()),
            ..Default::default()
        },
    }
}

/// Who ends a run with a time limit: the measurement that finished, or the limit that passed —
/// exactly one of them, so a table measured a moment before the limit is never overwritten by
/// the limit's failure (nor the other way round).
#[derive(Default)]
struct Outcome(std::sync::atomic::AtomicU8);

impl Outcome {
    const RUNNING: u8 = 0;
    const MEASURED: u8 = 1;
    const GAVE_UP: u8 = 2;

    fn claim(&self, by: u8) -> bool {
        use std::sync::atomic::Ordering;
        self.0
            .compare_exchange(Self::RUNNING, by, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// After `limit` seconds, whatever the measurement is doing (a CUDA call that never returns
/// included), unless it has finished: says why — in the EnergyProfile too, with
/// `--output-profile` (a re-profile keeps its table) — and exits with code 8.
fn give_up_after(
    limit: u64,
    args: &ProfileArgs,
    existing: Option<EnergyProfileStatus>,
    outcome: std::sync::Arc<Outcome>,
) {
    let output = args
        .output_profile
        .clone()
        .map(|name| (name, args.namespace.clone()));
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(limit));
        if !outcome.claim(Outcome::GAVE_UP) {
            return;
        }
        let why = format!(
            "measuring took longer than the {limit} s time limit (--time-limit-seconds): measure fewer candidate batch sizes or shorter windows, or allow longer (the chart's controller.profilingJob.deadlineSeconds)"
        );
        tracing::error!("{why}");
        if let Some((name, namespace)) = &output {
            let failed = failure_status(existing.as_ref(), &why, &now_rfc3339());
            if let Err(e) = publish::write_status(name, namespace.as_deref(), &failed) {
                tracing::error!("could not record the failure in the cluster: {e}");
            }
        }
        eprintln!("error: {why}");
        std::process::exit(i32::from(
            RuntimeError::NothingMeasured(String::new()).exit_code(),
        ));
    });
}

pub fn run(args: &ProfileArgs) -> Result<()> {
    // Check every destination before the measurement, which can take many minutes.
    check_candidates(&args.protocol.candidates)?;
    protocol_config(&args.protocol)?;
    let sink = args.json.as_deref().map(JsonSink::prepare).transpose()?;
    let existing = match &args.output_profile {
        Some(name) => publish::preflight(name, args.namespace.as_deref())?,
        None => None,
    };
    let ended = std::sync::Arc::new(Outcome::default());
    if let Some(limit) = args.time_limit_seconds {
        give_up_after(limit, args, existing.clone(), ended.clone());
    }
    let outcome = load_model(&args.model.model, &args.model.exec)
        .and_then(|model| measure(&model, &args.protocol));
    if !ended.claim(Outcome::MEASURED) {
        // The limit passed first: its thread reports and exits the process.
        loop {
            std::thread::park();
        }
    }
    let status = match outcome {
        Ok(s) => s,
        Err(e) => {
            if let Some(name) = &args.output_profile {
                let failed = failure_status(existing.as_ref(), &e.to_string(), &now_rfc3339());
                if let Err(pe) = publish::write_status(name, args.namespace.as_deref(), &failed) {
                    tracing::error!("could not record the failure in the cluster: {pe}");
                }
            }
            return Err(e);
        }
    };
    let failed = status.phase == Some(ProfilePhase::Failed);
    // Nothing measured this time: for a re-profile, the table measured before stays (a first
    // measurement keeps its own status: the batch sizes skipped and why).
    let status = if failed && kept_table(existing.as_ref()).is_some() {
        let why = status.message.as_deref().unwrap_or("nothing measured");
        failure_status(existing.as_ref(), why, &now_rfc3339())
    } else {
        status
    };
    let to_stdout = matches!(sink, Some(JsonSink::Stdout));
    if !to_stdout && let Some(t) = &status.table {
        crate::output::show(&table::render(t));
    }
    // The local file first: a measurement that took minutes is kept when the cluster refuses it.
    if let (Some(sink), false) = (sink, failed) {
        sink.commit_json(&status)?;
    }
    if let Some(name) = &args.output_profile {
        publish::write_status(name, args.namespace.as_deref(), &status)?;
        tracing::info!(profile = %name, "status written to the cluster");
    }
    if failed {
        return Err(RuntimeError::NothingMeasured(
            status.message.unwrap_or_default(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_ended_by_its_measurement_or_its_limit_never_both() {
        let o = Outcome::default();
        assert!(o.claim(Outcome::MEASURED));
        assert!(
            !o.claim(Outcome::GAVE_UP),
            "the limit must not report a finished run"
        );
        let o = Outcome::default();
        assert!(o.claim(Outcome::GAVE_UP));
        assert!(!o.claim(Outcome::MEASURED));
    }

    #[test]
    fn a_failed_re_measurement_keeps_the_table_a_first_one_fails_the_profile() {
        let now = "2026-11-27T02:00:00Z";
        let first = failure_status(None, "out of memory", now);
        assert_eq!(first.phase, Some(ProfilePhase::Failed));
        assert_eq!(first.message.as_deref(), Some("out of memory"));
        assert!(first.table.is_none());

        let row = greenbatch_core::BatchRow {
            batch_size: 1,
            latency_ms: greenbatch_core::LatencyMs {
                p50: 1.0,
                p95: 1.0,
                p99: None,
            },
            throughput_per_second: 1000.0,
            avg_watts: None,
            joules_per_inference: None,
            joules_spread: None,
            windows: 5,
        };
        let mut complete = EnergyProfileStatus::complete(greenbatch_core::ProfileTable {
            meter: greenbatch_core::MeterKind::None,
            meter_note: None,
            idle_watts: None,
            rows: vec![row],
            skipped: vec![],
        });
        complete.finished_at = Some("2026-11-20T10:00:00Z".into());
        complete.last_job = Some(greenbatch_crds::ProfilingJobRecord {
            name: "j-1".into(),
            outcome: greenbatch_crds::JobOutcome::Succeeded,
            reason: None,
            message: None,
        });
        let again = failure_status(Some(&complete), "out of memory", now);
        assert_eq!(again.phase, Some(ProfilePhase::Complete));
        assert_eq!(
            again.table, complete.table,
            "the table serving depends on stays"
        );
        assert_eq!(
            again.message.as_deref(),
            Some(
                "measuring again failed at 2026-11-27T02:00:00Z: out of memory; the table measured at 2026-11-20T10:00:00Z stays"
            )
        );
        assert_eq!(
            again.last_job, None,
            "the operator's record is not sent back"
        );
        // A profile that failed before has nothing to keep.
        let failed_before = failure_status(Some(&first), "again", now);
        assert_eq!(failed_before.phase, Some(ProfilePhase::Failed));
    }
}
