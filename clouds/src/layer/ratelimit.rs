//! Client-side rate limiting: a token bucket on calls per second and a bound on calls in flight,
//! so a burst of reconciles cannot trip the cloud's own throttling.
//!
//! The bucket starts full (`burst` tokens) and refills at `per_second`, measured on the injected
//! [`Clock`]; a caller without a token sleeps (on the injected [`Sleep`]) exactly until one is
//! due. The in-flight bound is a semaphore held for the whole call, so a slow cloud cannot pile
//! up unbounded concurrent requests.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;

use crate::clock::{Clock, Sleep};
use crate::error::Result;
use crate::layer::{decorate, Around};
use crate::types::Operation;

/// Rate limit settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitPolicy {
    /// Sustained calls per second (greater than 0).
    pub per_second: f64,
    /// Calls allowed at once after an idle period (at least 1).
    pub burst: u32,
    /// Calls in flight at the same time (at least 1).
    pub max_in_flight: usize,
}

impl Default for RateLimitPolicy {
    /// 20 calls per second, burst 40, 16 in flight.
    fn default() -> Self {
        RateLimitPolicy {
            per_second: 20.0,
            burst: 40,
            max_in_flight: 16,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Option<SystemTime>,
}

/// Waits for a token (and an in-flight slot) before each call of the inner provider.
#[derive(Debug)]
pub struct RateLimit<P> {
    inner: P,
    policy: RateLimitPolicy,
    clock: Arc<dyn Clock>,
    sleep: Arc<dyn Sleep>,
    bucket: Mutex<Bucket>,
    in_flight: Semaphore,
}

impl<P> RateLimit<P> {
    /// Wraps `inner`. Out-of-range settings are raised to their minimum (0 per second becomes
    /// one call per hour, burst and in-flight become at least 1).
    pub fn new(
        inner: P,
        policy: RateLimitPolicy,
        clock: Arc<dyn Clock>,
        sleep: Arc<dyn Sleep>,
    ) -> Self {
        let policy = RateLimitPolicy {
            per_second: if policy.per_second.is_finite() && policy.per_second > 0.0 {
                policy.per_second
            } else {
                1.0 / 3600.0
            },
            burst: policy.burst.max(1),
            max_in_flight: policy.max_in_flight.max(1),
        };
        RateLimit {
            inner,
            bucket: Mutex::new(Bucket {
                tokens: policy.burst as f64,
                last: None,
            }),
            in_flight: Semaphore::new(policy.max_in_flight),
            policy,
            clock,
            sleep,
        }
    }

    /// Takes a token, or says how long to wait for one.
    fn try_take(&self) -> Option<Duration> {
        let now = self.clock.now();
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = b.last {
            let elapsed = now.duration_since(last).unwrap_or_default().as_secs_f64();
            b.tokens = (b.tokens + elapsed * self.policy.per_second).min(self.policy.burst as f64);
        }
        b.last = Some(now);
        // A hair of tolerance: refilling by `elapsed * rate` after sleeping exactly the
        // computed wait can land a rounding error below 1.0.
        if b.tokens >= 1.0 - 1e-9 {
            b.tokens = (b.tokens - 1.0).max(0.0);
            None
        } else {
            // Rounded up to whole nanoseconds and at least one, so every wait moves time and
            // the loop in `around` always ends.
            let nanos = ((1.0 - b.tokens) / self.policy.per_second * 1e9).ceil();
            Some(Duration::from_nanos((nanos as u64).max(1)))
        }
    }
}

impl<P: Send + Sync> Around for RateLimit<P> {
    async fn around<'a, T, F, Fut>(&'a self, _op: Operation, call: F) -> Result<T>
    where
        T: Send + 'a,
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<T>> + Send + 'a,
    {
        {
            // The semaphore is never closed, so acquire cannot fail.
            let _slot = self.in_flight.acquire().await;
            while let Some(wait) = self.try_take() {
                self.sleep.sleep(wait).await;
            }
            call().await
        }
    }
}

decorate!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, ManualSleep};
    use crate::fake::FakeCloud;
    use crate::{CloudProvider, GroupId};

    #[tokio::test]
    async fn calls_beyond_the_burst_should_wait_for_tokens() {
        let fake = FakeCloud::new();
        fake.create_group("g", "m6i.large", 0, 3);
        let clock = ManualClock::at_unix(0);
        let sleep = ManualSleep::new(clock.clone());
        let policy = RateLimitPolicy {
            per_second: 2.0,
            burst: 3,
            max_in_flight: 4,
        };
        let rl = RateLimit::new(
            &fake,
            policy,
            Arc::new(clock.clone()),
            Arc::new(sleep.clone()),
        );
        let start = clock.now();
        for _ in 0..7 {
            rl.describe_group(&GroupId::new("g")).await.unwrap();
        }
        // 3 from the burst, then 4 more at 2 per second = 2 seconds of virtual waiting.
        let waited = clock.now().duration_since(start).unwrap();
        assert!(
            (waited.as_secs_f64() - 2.0).abs() < 1e-6,
            "waited {waited:?}"
        );
        assert_eq!(fake.calls().len(), 7);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// However calls arrive, n calls never complete faster than the bucket allows:
        /// elapsed >= (n - burst) / rate, and never wait longer than needed by more than one
        /// token's worth per call.
        #[test]
        fn calls_should_respect_the_bucket(
            rate in 0.5f64..50.0, burst in 1u32..10, n in 1u32..40,
            gaps_ms in proptest::collection::vec(0u64..500, 40),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let fake = FakeCloud::new();
                let clock = ManualClock::at_unix(0);
                let sleep = ManualSleep::new(clock.clone());
                let policy = RateLimitPolicy { per_second: rate, burst, max_in_flight: 1 };
                let rl = RateLimit::new(&fake, policy, Arc::new(clock.clone()), Arc::new(sleep.clone()));
                let start = clock.now();
                let mut idle = 0.0;
                for gap in gaps_ms.iter().take(n as usize) {
                    clock.advance(Duration::from_millis(*gap));
                    idle += *gap as f64 / 1000.0;
                    rl.prices().await.unwrap();
                }
                let elapsed = clock.now().duration_since(start).unwrap().as_secs_f64();
                let floor = (f64::from(n) - f64::from(burst)) / rate;
                proptest::prop_assert!(elapsed + 1e-6 >= floor, "elapsed {elapsed} < {floor}");
                let waited = elapsed - idle;
                proptest::prop_assert!(waited <= f64::from(n) / rate + 1e-6, "waited {waited}");
                Ok(())
            })?;
        }
    }
}
