//! Latency histograms and their summaries.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest trackable latency: one hour, in microseconds (larger values are clamped).
const MAX_US: u64 = 3_600_000_000;

/// A microsecond-resolution HDR histogram (3 significant digits).
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        #[allow(clippy::expect_used)]
        let hist = Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid");
        Self { hist }
    }

    /// Records a latency given in nanoseconds (clamped into range).
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record((ns / 1_000).max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.hist;
        let ms = |us: u64| crate::util::round(us as f64 / 1_000.0, 3);
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: crate::util::round(h.mean() / 1_000.0, 3),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            p9999_ms: ms(h.value_at_quantile(0.9999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms (n={})",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for i in 1..=1000u64 {
            a.record_ns(i * 1_000_000); // 1..1000 ms
        }
        b.record_ns(5_000_000_000);
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 1001);
        assert!((s.p50_ms - 501.0).abs() < 1.0, "{s:?}");
        assert!((s.max_ms - 5000.0).abs() < 5.0, "{s:?}");
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn clamps() {
        let mut a = Latency::new();
        a.record_ns(0);
        a.record_ns(u64::MAX);
        assert_eq!(a.count(), 2);
    }
}
