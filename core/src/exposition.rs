//! The two text formats of Prometheus metrics: OpenMetrics, which `prometheus-client` writes and
//! Prometheus asks for, and the classic text format (0.0.4), which older scrapers and `promtool
//! check metrics` read. Both the runtime and the operator serve whichever the scraper asks for.

/// The content types of the two formats.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scrape's `Accept` header prefers OpenMetrics (Prometheus's does): it names
/// `application/openmetrics-text` with a q-value above zero and at least that of any text or
/// wildcard type it also accepts.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let mut openmetrics: Option<f64> = None;
    let mut other: f64 = 0.0;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f64>().ok())
            .filter(|q| q.is_finite())
            .unwrap_or(1.0);
        if media == "application/openmetrics-text" {
            openmetrics = Some(openmetrics.map_or(q, |o| o.max(q)));
        } else if media == "text/plain" || media == "*/*" || media == "text/*" {
            other = other.max(q);
        }
    }
    openmetrics.is_some_and(|q| q > 0.0 && q >= other)
}

/// The body and content type to answer a scrape with, from the OpenMetrics text.
pub fn negotiate(openmetrics: String, accept: Option<&str>) -> (String, &'static str) {
    if wants_openmetrics(accept) {
        (openmetrics, OPENMETRICS)
    } else {
        (to_prometheus_text(&openmetrics), PROMETHEUS_TEXT)
    }
}

/// How a metric family of OpenMetrics is named and typed in the classic format.
fn classic(name: &str, kind: &str) -> (String, &'static str) {
    match kind {
        "counter" => (format!("{name}_total"), "counter"),
        "info" => (format!("{name}_info"), "gauge"),
        "stateset" => (name.to_string(), "gauge"),
        "histogram" => (name.to_string(), "histogram"),
        "summary" => (name.to_string(), "summary"),
        "gauge" => (name.to_string(), "gauge"),
        _ => (name.to_string(), "untyped"),
    }
}

/// Converts OpenMetrics text to the classic Prometheus text format (0.0.4): counter families named
/// with their `_total` (info with `_info`), OpenMetrics-only types mapped to classic ones
/// (stateset to gauge; unknown and gaugehistogram to untyped), no `# UNIT` or `# EOF` lines, no
/// `_created` samples, no exemplars. Sample timestamps are not converted (seconds in OpenMetrics,
/// milliseconds here): neither of our servers writes any.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let kinds: std::collections::HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let created: std::collections::HashSet<String> = kinds
        .iter()
        .filter(|(_, k)| matches!(**k, "counter" | "histogram" | "summary" | "gaugehistogram"))
        .map(|(name, _)| format!("{name}_created"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let renamed = kinds
                .get(name)
                .map_or(name.to_string(), |k| classic(name, k).0);
            out.push_str(&format!("# HELP {renamed} {help}\n"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let (renamed, kind) = classic(name, kind);
            out.push_str(&format!("# TYPE {renamed} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let sample_name = line.split(['{', ' ']).next().unwrap_or("");
        if created.contains(sample_name) {
            continue;
        }
        // An exemplar follows the value after " # ".
        let sample = match line.find(" # ") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(sample);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS_TEXT: &str = "# HELP app_requests Requests.\n# TYPE app_requests counter\napp_requests_total{code=\"200\"} 3\n# HELP app_energy_joules Energy.\n# TYPE app_energy_joules counter\n# UNIT app_energy_joules joules\napp_energy_joules_total 1.5\n# HELP app_up Up.\n# TYPE app_up gauge\napp_up 1\n# EOF\n";

    #[test]
    fn counters_are_named_with_total_and_units_and_eof_are_dropped() {
        assert_eq!(
            to_prometheus_text(OPENMETRICS_TEXT),
            "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\napp_requests_total{code=\"200\"} 3\n# HELP app_energy_joules_total Energy.\n# TYPE app_energy_joules_total counter\napp_energy_joules_total 1.5\n# HELP app_up Up.\n# TYPE app_up gauge\napp_up 1\n"
        );
    }

    #[test]
    fn openmetrics_only_types_created_samples_and_exemplars_become_classic() {
        let om = "# HELP build Build.\n# TYPE build info\nbuild_info{version=\"1\"} 1\n# HELP x Something.\n# TYPE x unknown\nx 2\n# HELP reqs Requests.\n# TYPE reqs counter\nreqs_total 3 # {trace_id=\"a\"} 1.0\nreqs_created 1700000000.0\n# HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 1\nlat_count 1\nlat_sum 0.5\nlat_created 1700000000.0\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{version=\"1\"} 1\n# HELP x Something.\n# TYPE x untyped\nx 2\n# HELP reqs_total Requests.\n# TYPE reqs_total counter\nreqs_total 3\n# HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 1\nlat_count 1\nlat_sum 0.5\n"
        );
    }

    #[test]
    fn the_scraper_s_accept_header_picks_the_format() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        let (body, kind) = negotiate(OPENMETRICS_TEXT.into(), Some(prometheus));
        assert_eq!((body.as_str(), kind), (OPENMETRICS_TEXT, OPENMETRICS));
        for accept in [
            None,
            Some("text/plain"),
            Some("*/*"),
            Some("application/openmetrics-text;q=0, text/plain"),
            Some("application/openmetrics-text;q=0.3, text/plain;q=0.9"),
        ] {
            let (body, kind) = negotiate(OPENMETRICS_TEXT.into(), accept);
            assert_eq!(kind, PROMETHEUS_TEXT);
            assert!(!body.contains("# EOF"), "{body}");
        }
    }
}
