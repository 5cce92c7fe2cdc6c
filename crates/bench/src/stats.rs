//! Order statistics over samples in microseconds.

use std::time::Duration;

/// A case's samples.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Adds one.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Every sample in microseconds, in the order taken.
    pub fn micros(&self) -> Vec<f64> {
        self.0.iter().map(|d| d.as_secs_f64() * 1e6).collect()
    }

    /// The q-quantile (nearest rank), in microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1].as_secs_f64() * 1e6
    }

    /// The median in microseconds.
    pub fn median_us(&self) -> f64 {
        self.quantile_us(0.5)
    }

    /// The 99th percentile in microseconds.
    pub fn p99_us(&self) -> f64 {
        self.quantile_us(0.99)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let mut s = Samples::default();
        for us in [5u64, 1, 4, 2, 3] {
            s.push(Duration::from_micros(us));
        }
        assert_eq!(s.median_us(), 3.0);
        assert_eq!(s.p99_us(), 5.0);
        assert_eq!(s.quantile_us(0.0), 1.0);
        assert_eq!(Samples::default().median_us(), 0.0);
    }
}
