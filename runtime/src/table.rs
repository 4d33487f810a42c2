//! The human-readable profile table.

use greenbatch_core::ProfileTable;
use std::fmt::Write;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

pub fn render(t: &ProfileTable) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "meter: {}{}",
        t.meter,
        t.meter_note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    let _ = writeln!(s, "idle power: {} W", opt(t.idle_watts, 1));
    let _ = writeln!(
        s,
        "{:>6} {:>10} {:>10} {:>10} {:>12} {:>8} {:>11} {:>7} {:>4}",
        "batch", "p50 ms", "p95 ms", "p99 ms", "inf/s", "watts", "mJ/inf", "spread", "win"
    );
    for r in &t.rows {
        let _ = writeln!(
            s,
            "{:>6} {:>10.3} {:>10.3} {:>10} {:>12.1} {:>8} {:>11} {:>7} {:>4}",
            r.batch_size,
            r.latency_ms.p50,
            r.latency_ms.p95,
            opt(r.latency_ms.p99, 3),
            r.throughput_per_second,
            opt(r.avg_watts, 1),
            opt(r.joules_per_inference.map(|j| j * 1000.0), 2),
            r.joules_spread
                .map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0)),
            r.windows
        );
    }
    for k in &t.skipped {
        let _ = writeln!(s, "{:>6} skipped: {}", k.batch_size, k.reason);
    }
    s
}
