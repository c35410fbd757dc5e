//! Compact windows of recent values for rank queries, and a small ring of raw values.
//!
//! [`BlockWindow`] keeps the values of the last `cap` time slots as at most [`BLOCKS`] blocks of
//! consecutive slots, each summarised by the minimum, maximum and mean of its values in `f32`
//! and their number (16 bytes per block, whatever `cap`). A slot is a sample ([`BlockWindow::push`])
//! or a missing step ([`BlockWindow::skip`]), so the window spans the same time however many
//! samples went missing in it. The extremes are exact, so "beyond everything remembered" (a
//! record, what the detector alerts on) is decided exactly; ranks inside the range are estimated
//! by a piecewise-linear distribution per block through `(min, 0)`, `(mean, ½)`, `(max, 1)`.
//! Windows of up to [`BLOCKS`] slots hold one slot per block and are exact throughout. Whole
//! blocks are evicted, so the window spans between `cap − block + 1` and `cap + block − 1`
//! slots.

use std::collections::VecDeque;

/// Most closed blocks a [`BlockWindow`] keeps.
pub(crate) const BLOCKS: usize = 64;

/// A value as the windows store it: `f32`, finite (clamped to the `f32` range).
pub(crate) fn to_f32(x: f64) -> f32 {
    x.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32
}

/// Summary of a closed block.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Block {
    min: f32,
    max: f32,
    mean: f32,
    /// Values in the block (fewer than its slots when steps went missing; 0: none arrived).
    n: u32,
}

impl Block {
    /// Estimated share of the block's values `<= x`, exact below the minimum and at or above
    /// the maximum.
    fn share_at_most(&self, x: f32) -> f64 {
        if x < self.min {
            return 0.0;
        }
        if x >= self.max {
            return 1.0;
        }
        let (lo, hi, mid) = (
            f64::from(self.min),
            f64::from(self.max),
            f64::from(self.mean).clamp(f64::from(self.min), f64::from(self.max)),
        );
        let x = f64::from(x);
        if x < mid {
            if mid > lo {
                0.5 * (x - lo) / (mid - lo)
            } else {
                0.0
            }
        } else if hi > mid {
            0.5 + 0.5 * (x - mid) / (hi - mid)
        } else {
            1.0
        }
    }
}

/// The values of the last `cap` time slots, summarised by blocks (see the module
/// documentation).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct BlockWindow {
    cap: usize,
    block: usize,
    closed: VecDeque<Block>,
    /// Values in the closed blocks.
    closed_len: usize,
    /// Slots of the open block taken so far, by values or missing steps.
    open_slots: usize,
    open_len: usize,
    open_min: f32,
    open_max: f32,
    open_sum: f64,
}

impl BlockWindow {
    /// An empty window spanning about `cap` (≥ 1) slots.
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        let block = cap.div_ceil(BLOCKS).max(1);
        Self {
            cap,
            block,
            closed: VecDeque::new(),
            closed_len: 0,
            open_slots: 0,
            open_len: 0,
            open_min: 0.0,
            open_max: 0.0,
            open_sum: 0.0,
        }
    }

    /// Number of values held.
    pub(crate) fn len(&self) -> usize {
        self.closed_len + self.open_len
    }

    /// Bytes on the heap: the closed blocks at their final capacity (reserved when the first
    /// block closes).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.closed.capacity() * std::mem::size_of::<Block>()
    }

    /// Most closed blocks kept.
    fn max_closed(&self) -> usize {
        self.cap / self.block
    }

    /// Adds a value in the next slot, evicting the oldest block when full. Non-finite values
    /// are ignored (they take no slot: [`Self::skip`] is how a missing step is told).
    pub(crate) fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        let v = to_f32(x);
        if self.open_len == 0 {
            self.open_min = v;
            self.open_max = v;
            self.open_sum = 0.0;
        } else {
            self.open_min = self.open_min.min(v);
            self.open_max = self.open_max.max(v);
        }
        self.open_sum += f64::from(v);
        self.open_len += 1;
        self.open_slots += 1;
        self.close_if_full();
    }

    /// Lets `missing` slots pass with no value: the oldest values leave the window by time, as
    /// they would had the samples arrived, and the missing ones count for nothing.
    pub(crate) fn skip(&mut self, missing: usize) {
        // Beyond a whole window of slots, more only empties the same window.
        let mut left = missing.min(self.cap + 2 * self.block);
        while left > 0 {
            let take = left.min(self.block - self.open_slots);
            self.open_slots += take;
            left -= take;
            self.close_if_full();
        }
    }

    fn close_if_full(&mut self) {
        if self.open_slots < self.block {
            return;
        }
        if self.closed.capacity() == 0 {
            self.closed.reserve_exact(self.max_closed() + 1);
        }
        if self.closed.len() >= self.max_closed() {
            if let Some(old) = self.closed.pop_front() {
                self.closed_len -= old.n as usize;
            }
        }
        // A block whose slots were all missing steps holds no value and only spans time.
        self.closed.push_back(self.open().unwrap_or(Block {
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            n: 0,
        }));
        self.closed_len += self.open_len;
        self.open_len = 0;
        self.open_slots = 0;
    }

    /// Slots the window spans now (values and missing steps).
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.closed.len() * self.block + self.open_slots
    }

    fn open(&self) -> Option<Block> {
        (self.open_len > 0).then(|| Block {
            min: self.open_min,
            max: self.open_max,
            mean: to_f32(self.open_sum / self.open_len as f64),
            n: u32::try_from(self.open_len).unwrap_or(u32::MAX),
        })
    }

    /// Blocks that hold values, with their number of values.
    fn parts(&self) -> impl Iterator<Item = (Block, f64)> + '_ {
        self.closed
            .iter()
            .copied()
            .chain(self.open())
            .filter(|k| k.n > 0)
            .map(|k| (k, f64::from(k.n)))
    }

    /// Smallest value, if any (exact).
    pub(crate) fn min(&self) -> Option<f64> {
        self.parts()
            .map(|(k, _)| k.min)
            .reduce(f32::min)
            .map(f64::from)
    }

    /// Largest value, if any (exact).
    pub(crate) fn max(&self) -> Option<f64> {
        self.parts()
            .map(|(k, _)| k.max)
            .reduce(f32::max)
            .map(f64::from)
    }

    /// Estimated number of values `<= x`: 0 below the minimum, all at or above the maximum.
    pub(crate) fn count_at_most(&self, x: f64) -> f64 {
        let v = to_f32(x);
        self.parts()
            .map(|(k, n)| {
                if v < k.min {
                    0.0
                } else {
                    // A value at or above the minimum has at least the minimum below it.
                    (n * k.share_at_most(v)).max(1.0)
                }
            })
            .sum()
    }

    /// Estimated number of values `>= x`: 0 above the maximum (a record), all at or below the
    /// minimum.
    pub(crate) fn count_at_least(&self, x: f64) -> f64 {
        let v = to_f32(x);
        self.parts()
            .map(|(k, n)| {
                if v > k.max {
                    0.0
                } else if v <= k.min {
                    n
                } else {
                    (n * (1.0 - k.share_at_most(v))).max(1.0)
                }
            })
            .sum()
    }

    /// Estimated `q`-quantile, if any: the smallest value with an estimated share `q` at or below
    /// it (the minimum for `q` = 0, the maximum for `q` = 1).
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let (lo, hi) = (self.min()?, self.max()?);
        let target = q.clamp(0.0, 1.0) * self.len() as f64;
        let (mut a, mut b) = (lo, hi);
        for _ in 0..24 {
            let mid = 0.5 * (a + b);
            if self.count_at_most(mid) >= target {
                b = mid;
            } else {
                a = mid;
            }
        }
        Some(b)
    }
}

/// A fixed-capacity ring of raw `f32` values, newest last.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ring {
    buf: Vec<f32>,
    cap: usize,
    /// Index of the oldest value once full.
    head: usize,
}

impl Ring {
    /// An empty ring of `cap` values (0 keeps nothing).
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            head: 0,
        }
    }

    /// Number of values held.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Most values it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buf.capacity() * std::mem::size_of::<f32>()
    }

    /// Adds a value, dropping the oldest when full.
    pub(crate) fn push(&mut self, x: f32) {
        if self.cap == 0 {
            return;
        }
        if self.buf.len() < self.cap {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(self.cap);
            }
            self.buf.push(x);
        } else {
            self.buf[self.head] = x;
            self.head = (self.head + 1) % self.cap;
        }
    }

    /// The value `k` steps back (0 = newest), if held.
    pub(crate) fn back(&self, k: usize) -> Option<f32> {
        let n = self.buf.len();
        if k >= n {
            return None;
        }
        let newest = if n < self.cap {
            n - 1
        } else {
            (self.head + self.cap - 1) % self.cap
        };
        Some(self.buf[(newest + self.cap - k) % self.cap.max(1)])
    }

    /// Values oldest first.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = f32> + '_ {
        let n = self.buf.len();
        (0..n).rev().filter_map(move |k| self.back(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_small_window_should_be_exact_and_evict_the_oldest() {
        let mut w = BlockWindow::new(3);
        for x in [5.0, 1.0, 3.0, 2.0, f64::NAN, 4.0] {
            w.push(x);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.min(), Some(2.0));
        assert_eq!(w.max(), Some(4.0));
        assert_eq!(w.count_at_least(3.0), 2.0);
        assert_eq!(w.count_at_most(3.0), 2.0);
        assert_eq!(w.count_at_least(4.5), 0.0);
        assert_eq!(w.count_at_most(1.5), 0.0);
    }

    #[test]
    fn a_large_window_should_stay_small_and_near_its_capacity() {
        let mut w = BlockWindow::new(6000);
        let mut g = crate::noise::Mmix::new(1);
        for _ in 0..20_000 {
            w.push(g.uniform());
        }
        assert!(
            (6000 - w.block..6000 + w.block).contains(&w.len()),
            "{}",
            w.len()
        );
        assert!(w.heap_bytes() <= (BLOCKS + 1) * 16, "{}", w.heap_bytes());
        // Uniform values: estimated ranks within 3 % of the truth.
        for q in [0.01, 0.1, 0.5, 0.9, 0.99] {
            let est = w.count_at_most(q) / w.len() as f64;
            assert!((est - q).abs() < 0.03, "share at most {q}: {est}");
            assert!((w.quantile(q).unwrap() - q).abs() < 0.03, "{q}");
        }
    }

    #[test]
    fn missing_steps_should_age_values_out_by_time() {
        // 128 slots in blocks of 2: an early extreme leaves once 128 slots have passed,
        // whether they brought values or not.
        let mut w = BlockWindow::new(128);
        w.push(1000.0);
        for i in 0..90 {
            if i % 3 == 0 {
                w.skip(1);
            } else {
                w.push(1.0);
            }
        }
        assert_eq!(
            w.max(),
            Some(1000.0),
            "90 slots later it is still remembered"
        );
        assert_eq!(w.len(), 61);
        for i in 0..40 {
            if i % 3 == 0 {
                w.skip(1);
            } else {
                w.push(2.0);
            }
        }
        // 131 slots have passed: the extreme is gone, though the window holds fewer than 128
        // values (counting values instead of steps, it would still be there).
        assert_eq!(w.max(), Some(2.0));
        assert!(w.len() < 100, "{}", w.len());
        // A gap longer than the window empties it; it fills again from the next value.
        w.skip(1_000_000);
        assert_eq!((w.len(), w.max()), (0, None));
        w.push(3.0);
        assert_eq!(
            (w.len(), w.max(), w.count_at_least(3.0)),
            (1, Some(3.0), 1.0)
        );
    }

    #[test]
    fn the_ring_should_keep_the_newest_values() {
        let mut r = Ring::new(3);
        for x in 1..=5 {
            r.push(x as f32);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.back(0), Some(5.0));
        assert_eq!(r.back(2), Some(3.0));
        assert_eq!(r.back(3), None);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![3.0, 4.0, 5.0]);
        assert_eq!(r.heap_bytes(), 12);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Records are decided exactly: nothing counts at or above a value beyond the maximum of
        /// the values held, and the extremes are those of the last values pushed.
        #[test]
        fn extremes_should_be_exact(
            cap in 1usize..500,
            xs in prop::collection::vec(-1e6f64..1e6, 1..2000),
        ) {
            let mut w = BlockWindow::new(cap);
            for &x in &xs {
                w.push(x);
            }
            let held: Vec<f32> = xs[xs.len() - w.len().min(xs.len())..].iter().map(|&x| to_f32(x)).collect();
            prop_assert_eq!(held.len(), w.len());
            let max = held.iter().copied().fold(f32::MIN, f32::max);
            let min = held.iter().copied().fold(f32::MAX, f32::min);
            prop_assert_eq!(w.max(), Some(f64::from(max)));
            prop_assert_eq!(w.min(), Some(f64::from(min)));
            prop_assert!(w.count_at_least(f64::from(max)) >= 1.0);
            prop_assert_eq!(w.count_at_least(f64::from(max) + f64::from(max).abs() * 0.001 + 1.0), 0.0);
            prop_assert!(w.count_at_most(f64::from(min)) >= 1.0);
            prop_assert!(w.len() < cap + w.block);
        }

        /// With missing steps among the values, the window holds exactly the values of the slots
        /// it spans, and spans about `cap` slots once that many have passed.
        #[test]
        fn values_and_missing_steps_should_share_the_slots(
            cap in 1usize..400,
            ops in prop::collection::vec((any::<bool>(), -1e3f64..1e3, 1usize..50), 1..600),
        ) {
            let mut w = BlockWindow::new(cap);
            // One entry per slot: the value, or None for a missing step.
            let mut slots: Vec<Option<f32>> = Vec::new();
            for &(is_value, x, gap) in &ops {
                if is_value {
                    w.push(x);
                    slots.push(Some(to_f32(x)));
                } else {
                    w.skip(gap);
                    slots.extend(std::iter::repeat_n(None, gap));
                }
                let span = w.slots();
                prop_assert!(span <= slots.len());
                if slots.len() >= cap {
                    prop_assert!(span + w.block > cap && span < cap + w.block, "{} of {}", span, cap);
                }
                let held: Vec<f32> = slots[slots.len() - span..].iter().flatten().copied().collect();
                prop_assert_eq!(w.len(), held.len());
                prop_assert_eq!(w.max(), held.iter().copied().reduce(f32::max).map(f64::from));
                prop_assert_eq!(w.min(), held.iter().copied().reduce(f32::min).map(f64::from));
            }
        }
    }
}
