//! `greenbatch-runtime tune`: profile locally (or read a saved profile), run the decision core for
//! an SLO (and a rate), print the choice with its saving against batch 1, and draw the plot.

use crate::cli::TuneArgs;
use crate::error::{Result, RuntimeError};
use crate::measure::measure;
use crate::output::JsonSink;
use crate::profile_input::read_profile;
use crate::setup::load_model;
use crate::table;
use greenbatch_core::{BatchingMode, Percentile, Policy, ReplicaRange, Selection, Slo};
use greenbatch_crds::ProfilePhase;

pub fn report(selection: &Selection, slo: &Slo) -> String {
    let c = &selection.choice;
    let mut s = String::new();
    let verdict = if selection.slo_attainable {
        "meets"
    } else {
        "CANNOT meet"
    };
    s.push_str(&format!("SLO {slo}: {verdict} it\n"));
    s.push_str(&format!("  batch size        {}\n", c.batch_size));
    s.push_str(&format!(
        "  max queue delay   {:.2} ms\n",
        c.max_queue_delay_ms
    ));
    s.push_str(&format!(
        "  expected latency  {:.2} ms ({})\n",
        c.expected_latency_ms,
        slo.percentile()
    ));
    if let Some(j) = c.joules_per_inference {
        s.push_str(&format!(
            "  energy            {:.2} mJ per inference\n",
            j * 1000.0
        ));
    }
    if let Some(x) = selection.saving_vs_batch1() {
        s.push_str(&format!(
            "  saving vs batch 1 {x:.2}x less energy per inference\n"
        ));
    }
    if let (Some(r), Some(u)) = (c.realised_batch, c.utilisation) {
        s.push_str(&format!(
            "  at the given rate {} replica(s), ~{r:.1} items per batch, {:.0}% busy\n",
            c.replicas,
            u * 100.0
        ));
    }
    s.push_str(&format!("  why: {}\n", selection.reason));
    s
}

pub fn run(args: &TuneArgs) -> Result<()> {
    let slo = Slo::from_parts(args.slo_ms, args.percentile).map_err(|e| RuntimeError::Usage {
        arg: "--slo-ms/--percentile",
        message: e.to_string(),
    })?;
    let replicas = ReplicaRange::new(1, args.max_replicas).map_err(|e| RuntimeError::Usage {
        arg: "--max-replicas",
        message: e.to_string(),
    })?;
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(RuntimeError::Usage {
            arg: "--rate",
            message: "must be a positive number of inferences per second".into(),
        });
    }
    if args.json.as_deref() == Some(args.plot.as_path()) {
        return Err(RuntimeError::Usage {
            arg: "--json",
            message: format!("{} is --plot's file too: name another", args.plot.display()),
        });
    }
    // Fail on unwritable outputs now, not after minutes of measurement.
    let plot_sink = JsonSink::prepare(&args.plot)?;
    let json_sink = args.json.as_deref().map(JsonSink::prepare).transpose()?;
    // With a result on standard output, what is said for a reader goes to standard error.
    let result_on_stdout =
        matches!(plot_sink, JsonSink::Stdout) || matches!(json_sink, Some(JsonSink::Stdout));
    let say = |text: &str| crate::output::show_beside(result_on_stdout, text);

    let (status, title) = match (&args.from_profile, &args.model) {
        (Some(path), _) => (
            read_profile(path, "--from-profile")?,
            format!("greenbatch tune: {}", path.display()),
        ),
        (None, Some(model_ref)) => {
            let mut protocol = args.protocol.clone();
            // Far past the SLO there is nothing left to learn: stop growing the batch.
            protocol.stop_latency_ms.get_or_insert(4.0 * args.slo_ms);
            let model = load_model(model_ref, &args.exec)?;
            let status = measure(&model, &protocol)?;
            let device = status
                .measured_on
                .as_ref()
                .map_or_else(|| "?".to_string(), |m| m.device.clone());
            (
                status,
                format!(
                    "greenbatch tune: {} on {device}",
                    crate::fetch::redacted_model(model_ref)
                ),
            )
        }
        (None, None) => {
            return Err(RuntimeError::Usage {
                arg: "--model",
                message: "give --model or --from-profile".into(),
            });
        }
    };
    let table = match (&status.table, status.phase) {
        (Some(t), Some(ProfilePhase::Complete)) if !t.rows.is_empty() => t.clone(),
        _ => {
            return Err(RuntimeError::NothingMeasured(
                status
                    .message
                    .clone()
                    .unwrap_or_else(|| "the profile has no rows".into()),
            ));
        }
    };
    say(&table::render(&table));
    // A table without the SLO's percentile (reference sweeps record p50 and p95) is a question
    // of the argument, not of the measurement.
    if table
        .rows
        .iter()
        .all(|r| r.latency_ms.at(slo.percentile()).is_none())
    {
        let has: Vec<&str> = [
            (Percentile::P50, "50"),
            (Percentile::P95, "95"),
            (Percentile::P99, "99"),
        ]
        .into_iter()
        .filter(|(p, _)| table.rows.iter().any(|r| r.latency_ms.at(*p).is_some()))
        .map(|(_, n)| n)
        .collect();
        return Err(RuntimeError::Usage {
            arg: "--percentile",
            message: format!(
                "the profile has no {} latencies: choose one it has ({})",
                slo.percentile(),
                has.join(", ")
            ),
        });
    }
    let selection = greenbatch_core::choose(
        &table,
        slo,
        BatchingMode::Auto,
        args.rate,
        replicas,
        &Policy::default(),
    )
    .map_err(|e| RuntimeError::NothingMeasured(e.to_string()))?;
    say(&format!("\n{}", report(&selection, &slo)));
    let svg = greenbatch_plot::render_svg(&greenbatch_plot::Plot {
        table: &table,
        percentile: slo.percentile(),
        slo_ms: slo.latency_ms(),
        chosen_batch: selection.choice.batch_size,
        title: &title,
        // A local tune has measured, not served.
        observed: None,
    })
    .map_err(|e| RuntimeError::Output {
        path: args.plot.display().to_string(),
        message: e.to_string(),
    })?;
    plot_sink.commit(&svg)?;
    say(&format!("plot: {}\n", args.plot.display()));
    if let Some(sink) = json_sink {
        sink.commit_json(&status)?;
    }
    Ok(())
}
