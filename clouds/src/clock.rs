//! Injected time, sleep and randomness, so layers and the sim run on virtual time in tests.
//!
//! Nothing in this crate outside an adapter reads the system clock, sleeps on the runtime or
//! draws from a global random generator directly: it goes through [`Clock`], [`Sleep`] and
//! [`Rng`], which tests replace with [`ManualClock`], [`ManualSleep`] and a seeded [`SplitMix`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The wall clock (for production shells).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// A clock stopped at the Unix epoch plus `secs` seconds.
    pub fn at_unix(secs: u64) -> Self {
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// Sets the time (never backwards: an earlier time is ignored, as clocks are monotonic here).
    pub fn set(&self, to: SystemTime) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if to > *now {
            *now = to;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A boxed `Send` future, as [`Sleep::sleep`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Asynchronous sleep.
pub trait Sleep: Send + Sync + fmt::Debug {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Sleeps on the tokio timer (respects `tokio::time::pause` in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleep;

impl Sleep for TokioSleep {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Sleeps by advancing a [`ManualClock`] and returning at once: virtual time that moves exactly
/// as far as the code under test waits. Records every sleep for assertions.
#[derive(Debug, Clone)]
pub struct ManualSleep {
    clock: ManualClock,
    slept: Arc<Mutex<Vec<Duration>>>,
}

impl ManualSleep {
    /// Sleeps that advance `clock`.
    pub fn new(clock: ManualClock) -> Self {
        ManualSleep {
            clock,
            slept: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Every duration slept so far, in order.
    pub fn slept(&self) -> Vec<Duration> {
        self.slept.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Sleep for ManualSleep {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let clock = self.clock.clone();
        let slept = self.slept.clone();
        // Time moves when the sleep is first polled, not when it is created: a timeout whose
        // call completes on its first poll (biased select) never advances the clock.
        Box::pin(async move {
            clock.advance(duration);
            slept
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(duration);
            // Yield once so a sleeping loop still lets other tasks run.
            tokio::task::yield_now().await;
        })
    }
}

/// A source of uniform random numbers in `[0, 1)`.
pub trait Rng: Send + Sync + fmt::Debug {
    /// The next draw in `[0, 1)`.
    fn next_f64(&self) -> f64;
}

/// A small seeded generator (SplitMix64): deterministic, serializable as two integers, good
/// enough for jitter, fault injection and simulated ids. Not for secrets.
#[derive(Debug)]
pub struct SplitMix {
    state: Mutex<u64>,
}

impl SplitMix {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix {
            state: Mutex::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(*s)
    }
}

impl Rng for SplitMix {
    fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The SplitMix64 output function: a well-mixed 64-bit hash of `z`.
pub fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_should_move_only_when_advanced() {
        let c = ManualClock::at_unix(100);
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now(), t0 + Duration::from_secs(5));
        c.set(t0);
        assert_eq!(c.now(), t0 + Duration::from_secs(5), "never goes back");
    }

    #[tokio::test]
    async fn manual_sleep_should_advance_the_clock_without_waiting() {
        let c = ManualClock::at_unix(0);
        let s = ManualSleep::new(c.clone());
        let pending = s.sleep(Duration::from_secs(60));
        drop(pending);
        assert_eq!(
            c.now(),
            SystemTime::UNIX_EPOCH,
            "an unpolled sleep does not move time"
        );
        s.sleep(Duration::from_secs(3600)).await;
        assert_eq!(c.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(3600));
        assert_eq!(s.slept(), vec![Duration::from_secs(3600)]);
    }

    #[test]
    fn splitmix_should_be_deterministic_and_in_unit_interval() {
        let a = SplitMix::new(7);
        let b = SplitMix::new(7);
        for _ in 0..1000 {
            let x = a.next_f64();
            assert_eq!(x, b.next_f64());
            assert!((0.0..1.0).contains(&x));
        }
        assert_ne!(SplitMix::new(1).next_u64(), SplitMix::new(2).next_u64());
    }
}
