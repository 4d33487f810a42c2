//! The two text formats of Prometheus metrics: OpenMetrics, which `prometheus-client` writes and
//! Prometheus asks for, and the classic text format (0.0.4), which older scrapers and `promtool
//! check metrics` read. Both the runtime and the operator serve whichever the scraper asks for.

/// The content types of the two formats.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scrape's `Accept` header asks for OpenMetrics (Prometheus's does).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The body and content type to answer a scrape with, from the OpenMetrics text.
pub fn negotiate(openmetrics: String, accept: Option<&str>) -> (String, &'static str) {
    if wants_openmetrics(accept) {
        (openmetrics, OPENMETRICS)
    } else {
        (to_prometheus_text(&openmetrics), PROMETHEUS_TEXT)
    }
}

/// Converts OpenMetrics text to the classic Prometheus text format.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE ", "# UNIT "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if *prefix == "# UNIT " {
                return Some(String::new());
            }
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) if l.is_empty() => continue,
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
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
    fn the_scraper_s_accept_header_picks_the_format() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        let (body, kind) = negotiate(OPENMETRICS_TEXT.into(), Some(prometheus));
        assert_eq!((body.as_str(), kind), (OPENMETRICS_TEXT, OPENMETRICS));
        for accept in [None, Some("text/plain"), Some("*/*")] {
            let (body, kind) = negotiate(OPENMETRICS_TEXT.into(), accept);
            assert_eq!(kind, PROMETHEUS_TEXT);
            assert!(!body.contains("# EOF"), "{body}");
        }
    }
}
