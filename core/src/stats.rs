//! Order statistics for summarising repeated measurements. Non-finite samples are dropped, never
//! propagated: a NaN latency is a broken measurement, not a slow one.

/// Nearest-rank-with-interpolation quantile (the "linear" method numpy uses by default).
/// Returns `None` for an empty input or a quantile outside [0, 1].
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

pub fn median(samples: &[f64]) -> Option<f64> {
    quantile(samples, 0.5)
}

/// Relative spread of repeated window results: (max - min) / median. `None` when fewer than one
/// finite sample or a non-positive median makes the ratio meaningless.
pub fn relative_spread(samples: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    let med = median(&finite)?;
    if med <= 0.0 {
        return None;
    }
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    Some((max - min) / med)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantiles_match_numpy_linear_method() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(median(&xs), Some(3.0));
        assert_eq!(quantile(&xs, 0.95), Some(4.8));
        assert_eq!(quantile(&xs, 0.0), Some(1.0));
        assert_eq!(quantile(&xs, 1.0), Some(5.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
    }

    #[test]
    fn empty_and_non_finite_inputs_give_none_or_are_ignored() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, f64::INFINITY]), None);
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
        assert_eq!(quantile(&[1.0], 1.5), None);
    }

    #[test]
    fn spread_is_range_over_median() {
        let s = relative_spread(&[0.9, 1.0, 1.1]).unwrap();
        assert!((s - 0.2).abs() < 1e-12);
        assert_eq!(relative_spread(&[0.0, 0.0]), None);
        assert_eq!(relative_spread(&[]), None);
    }

    proptest! {
        #[test]
        fn quantile_lies_within_the_samples(xs in proptest::collection::vec(-1e6f64..1e6, 1..50), q in 0.0f64..=1.0) {
            let v = quantile(&xs, q).unwrap();
            let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(v >= min && v <= max);
        }
    }
}
