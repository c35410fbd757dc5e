//! A bounded window of recent values kept both in arrival order and sorted, for rank queries.

use std::collections::VecDeque;

/// The last `cap` finite values, in arrival order and sorted.
#[derive(Debug, Clone)]
pub(crate) struct SortedWindow {
    cap: usize,
    ring: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl SortedWindow {
    /// An empty window holding at most `cap` (≥ 1) values.
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            cap,
            ring: VecDeque::with_capacity(cap + 1),
            sorted: Vec::with_capacity(cap + 1),
        }
    }

    /// Number of values held.
    pub(crate) fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Adds a finite value, evicting the oldest when full. Non-finite values are ignored.
    pub(crate) fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.ring.len() == self.cap {
            if let Some(old) = self.ring.pop_front() {
                let i = self.sorted.partition_point(|v| v.total_cmp(&old).is_lt());
                if i < self.sorted.len() {
                    self.sorted.remove(i);
                }
            }
        }
        self.ring.push_back(x);
        let i = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
        self.sorted.insert(i, x);
    }

    /// Smallest value, if any.
    pub(crate) fn min(&self) -> Option<f64> {
        self.sorted.first().copied()
    }

    /// Largest value, if any.
    pub(crate) fn max(&self) -> Option<f64> {
        self.sorted.last().copied()
    }

    /// Empirical `q`-quantile (nearest rank), if any.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let k = ((q.clamp(0.0, 1.0) * (n - 1) as f64).round() as usize).min(n - 1);
        Some(self.sorted[k])
    }

    /// Number of values `>= x`.
    pub(crate) fn count_at_least(&self, x: f64) -> usize {
        self.sorted.len() - self.sorted.partition_point(|v| *v < x)
    }

    /// Number of values `<= x`.
    pub(crate) fn count_at_most(&self, x: f64) -> usize {
        self.sorted.partition_point(|v| *v <= x)
    }

    #[cfg(test)]
    /// The most recent values, newest last.
    pub(crate) fn recent(&self) -> &VecDeque<f64> {
        &self.ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_should_evict_oldest_and_stay_sorted() {
        let mut w = SortedWindow::new(3);
        for x in [5.0, 1.0, 3.0, 2.0, f64::NAN, 4.0] {
            w.push(x);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.min(), Some(2.0));
        assert_eq!(w.max(), Some(4.0));
        assert_eq!(w.count_at_least(3.0), 2);
        assert_eq!(w.count_at_most(3.0), 2);
        assert_eq!(w.quantile(0.5), Some(3.0));
        assert_eq!(
            w.recent().iter().copied().collect::<Vec<_>>(),
            vec![3.0, 2.0, 4.0]
        );
    }
}
