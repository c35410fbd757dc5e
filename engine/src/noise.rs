//! Seeded pseudo-random numbers: the same seed gives the same numbers on every machine, so a
//! test, a synthetic series or a seeded choice (k-means++ starts) reproduces exactly and needs
//! no randomness source.

/// Marsaglia's xorshift64 generator (shifts 13, 7, 17). Small and fast; good enough to jitter
/// synthetic series and to schedule faults, not for anything that must be unpredictable.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator seeded with `seed`. A zero seed would stay zero forever, so it is replaced by
    /// a fixed non-zero constant.
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next number, uniform in `[0, 1)` (the top 53 bits).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Knuth's MMIX linear congruential generator (multiplier 6364136223846793005, increment
/// 1442695040888963407). Its low bits are weak, so [`Mmix::uniform`] uses the top 53.
#[derive(Debug, Clone)]
pub struct Mmix(u64);

impl Mmix {
    /// A generator whose first step starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Mmix(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0
    }

    /// The next number, uniform in `[0, 1)` (the top 53 bits).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_should_give_the_same_numbers_in_the_unit_interval() {
        let (mut a, mut b) = (XorShift::new(7), XorShift::new(7));
        let xs: Vec<f64> = (0..1000).map(|_| a.uniform()).collect();
        let ys: Vec<f64> = (0..1000).map(|_| b.uniform()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
        assert_ne!(XorShift::new(8).uniform(), xs[0]);
    }

    #[test]
    fn mmix_should_repeat_from_its_seed_and_stay_in_the_unit_interval() {
        let (mut a, mut b) = (Mmix::new(12345), Mmix::new(12345));
        let xs: Vec<f64> = (0..1000).map(|_| a.uniform()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(xs.iter().zip(&xs[1..]).all(|(x, y)| x != y));
        assert_eq!(xs, (0..1000).map(|_| b.uniform()).collect::<Vec<_>>());
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
    }

    #[test]
    fn a_zero_seed_should_not_stick_at_zero() {
        let mut z = XorShift::new(0);
        assert_ne!(z.next_u64(), 0);
        assert_ne!(z.next_u64(), z.next_u64());
    }
}
