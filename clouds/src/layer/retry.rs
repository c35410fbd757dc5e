//! Retries of retryable errors with jittered exponential backoff that honours throttling.
//!
//! This is the only retry loop of the project: controllers and the provider never write their
//! own. It is safe because every port operation is idempotent (launch through its token).
//!
//! # Why full jitter, and why throttling backs off harder
//! Many reconcilers hitting one account at once would retry in lockstep with a fixed backoff;
//! drawing the whole delay uniformly spreads them out. A throttled answer means the account's
//! request budget is spent, so the next attempt starts further up the exponential curve and
//! never earlier than the cloud's own `Retry-After`.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use predictive_clouds::clock::{SplitMix, TokioSleep};
//! use predictive_clouds::layer::retry::{Retry, RetryPolicy};
//! use predictive_clouds::fake::FakeCloud;
//!
//! let policy = RetryPolicy::default().check().expect("valid policy");
//! let cloud = Retry::new(FakeCloud::new(), policy, Arc::new(TokioSleep), Arc::new(SplitMix::new(7)));
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Rng, Sleep};
use crate::error::{CloudError, Result};
use crate::layer::{decorate, Around};
use crate::types::Operation;

/// How to retry.
///
/// The `n`-th backoff (from 0) is drawn uniformly ("full jitter") in
/// `[min_backoff, min(max_backoff, min_backoff * multiplier^n)]`. After a throttled error the
/// exponent starts [`throttle_boost`](Self::throttle_boost) steps higher and the delay is at
/// least the cloud's `retry_after` hint; every delay is clamped to `[min_backoff, max_backoff]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// Smallest delay between attempts.
    pub min_backoff: Duration,
    /// Largest delay between attempts.
    pub max_backoff: Duration,
    /// Growth factor per attempt (at least 1).
    pub multiplier: f64,
    /// Extra exponent steps after a throttled error, so throttling backs off harder.
    pub throttle_boost: u32,
}

impl Default for RetryPolicy {
    /// 8 attempts, 100 ms to 20 s, doubling, throttling boosted by 2 steps.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(20),
            multiplier: 2.0,
            throttle_boost: 2,
        }
    }
}

/// A retry policy whose fields contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry policy: {reason}")]
#[non_exhaustive]
pub struct RetryPolicyError {
    /// What is wrong.
    pub reason: String,
}

impl RetryPolicy {
    /// Checks the policy.
    ///
    /// # Errors
    /// [`RetryPolicyError`] when `max_attempts` is 0, `min_backoff > max_backoff` or
    /// `multiplier` is below 1 or not finite.
    pub fn check(self) -> std::result::Result<Self, RetryPolicyError> {
        let fail = |reason: &str| {
            Err(RetryPolicyError {
                reason: reason.into(),
            })
        };
        if self.max_attempts == 0 {
            return fail("max_attempts must be at least 1");
        }
        if self.min_backoff > self.max_backoff {
            return fail("min_backoff must not exceed max_backoff");
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return fail("multiplier must be a finite number of at least 1");
        }
        Ok(self)
    }

    /// The delay before retry number `retry` (0 for the first retry) after `err`, for a jitter
    /// draw `u` in `[0, 1)`.
    ///
    /// # Guarantees
    /// The result lies in `[min_backoff, max_backoff]` for every input (provided
    /// `min_backoff <= max_backoff`).
    pub fn backoff(&self, retry: u32, err: &CloudError, u: f64) -> Duration {
        let (min, max) = (self.min_backoff, self.max_backoff.max(self.min_backoff));
        let exp = if err.is_throttled() {
            retry.saturating_add(self.throttle_boost)
        } else {
            retry
        };
        let factor = self.multiplier.max(1.0).powi(exp.min(64) as i32);
        let ceiling = if factor.is_finite() {
            min.as_secs_f64() * factor
        } else {
            f64::MAX
        };
        let ceiling = ceiling.min(max.as_secs_f64());
        let u = if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut d =
            Duration::from_secs_f64(min.as_secs_f64() + (ceiling - min.as_secs_f64()).max(0.0) * u);
        if let Some(hint) = err.retry_after() {
            d = d.max(hint);
        }
        d.clamp(min, max)
    }
}

/// Retries retryable errors of the inner provider (see [`RetryPolicy`]).
///
/// Non-retryable errors (not found, invalid request, capacity, quota, incorrect state) return
/// at once. The last retryable error is returned once the attempts are spent.
#[derive(Debug)]
pub struct Retry<P> {
    inner: P,
    policy: RetryPolicy,
    sleep: Arc<dyn Sleep>,
    rng: Arc<dyn Rng>,
}

impl<P> Retry<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, policy: RetryPolicy, sleep: Arc<dyn Sleep>, rng: Arc<dyn Rng>) -> Self {
        Retry {
            inner,
            policy,
            sleep,
            rng,
        }
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P: Send + Sync> Around for Retry<P> {
    async fn around<'a, T, F, Fut>(&'a self, _op: Operation, call: F) -> Result<T>
    where
        T: Send + 'a,
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<T>> + Send + 'a,
    {
        {
            let mut retry = 0u32;
            loop {
                match call().await {
                    Err(e) if e.is_retryable() && retry + 1 < self.policy.max_attempts => {
                        let d = self.policy.backoff(retry, &e, self.rng.next_f64());
                        ::tracing::debug!(
                            operation = e.operation().as_str(),
                            kind = e.kind().as_str(),
                            retry,
                            delay_ms = d.as_millis() as u64,
                            "retrying cloud call"
                        );
                        self.sleep.sleep(d).await;
                        retry += 1;
                    }
                    other => return other,
                }
            }
        }
    }
}

decorate!(Retry);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, ManualSleep, SplitMix};
    use crate::error::ErrorKind;
    use crate::fake::{FakeCloud, FaultKind};
    use crate::{CloudProvider, GroupId};
    use proptest::prelude::*;

    fn err(kind: ErrorKind) -> CloudError {
        CloudError::new(Operation::Launch, kind)
    }

    proptest! {
        #[test]
        fn backoff_should_stay_within_min_and_max(
            min_ms in 0u64..5_000, span_ms in 0u64..60_000, mult in 1.0f64..10.0,
            retry in 0u32..200, u in 0.0f64..1.0, throttled: bool,
            hint_ms in proptest::option::of(0u64..120_000), boost in 0u32..10,
        ) {
            let p = RetryPolicy {
                max_attempts: 5,
                min_backoff: Duration::from_millis(min_ms),
                max_backoff: Duration::from_millis(min_ms + span_ms),
                multiplier: mult,
                throttle_boost: boost,
            }.check().unwrap();
            let mut e = err(if throttled { ErrorKind::Throttled } else { ErrorKind::Unavailable });
            if let Some(h) = hint_ms {
                e = e.with_retry_after(Duration::from_millis(h));
            }
            let d = p.backoff(retry, &e, u);
            prop_assert!(d >= p.min_backoff && d <= p.max_backoff, "{d:?} outside {p:?}");
        }
    }

    #[test]
    fn throttling_should_back_off_harder_and_honour_the_hint() {
        let p = RetryPolicy::default();
        let plain = p.backoff(0, &err(ErrorKind::Unavailable), 0.999);
        let throttled = p.backoff(0, &err(ErrorKind::Throttled), 0.999);
        assert!(throttled > plain * 3, "{throttled:?} vs {plain:?}");
        let hinted = p.backoff(
            0,
            &err(ErrorKind::Throttled).with_retry_after(Duration::from_secs(7)),
            0.0,
        );
        assert_eq!(hinted, Duration::from_secs(7));
    }

    #[test]
    fn check_should_reject_contradictions() {
        let bad = [
            RetryPolicy {
                max_attempts: 0,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                min_backoff: Duration::from_secs(9),
                max_backoff: Duration::from_secs(1),
                ..RetryPolicy::default()
            },
            RetryPolicy {
                multiplier: 0.5,
                ..RetryPolicy::default()
            },
        ];
        for p in bad {
            assert!(p.check().is_err());
        }
    }

    #[tokio::test]
    async fn retry_should_recover_from_transient_faults_on_virtual_time() {
        let fake = FakeCloud::new();
        fake.create_group("g", "m6i.large", 0, 5);
        for kind in [
            FaultKind::Throttle,
            FaultKind::ServerError,
            FaultKind::Timeout,
        ] {
            fake.fail_next(Operation::ScaleGroup, kind);
        }
        let clock = ManualClock::at_unix(0);
        let sleep = ManualSleep::new(clock.clone());
        let retry = Retry::new(
            &fake,
            RetryPolicy::default(),
            Arc::new(sleep.clone()),
            Arc::new(SplitMix::new(3)),
        );
        let g = retry.scale_group(&GroupId::new("g"), 3).await.unwrap();
        assert_eq!(g.desired, 3);
        assert_eq!(sleep.slept().len(), 3);
        assert_eq!(fake.calls_of(Operation::ScaleGroup).len(), 4);
    }

    #[tokio::test]
    async fn retry_should_not_retry_permanent_errors_and_should_give_up() {
        let fake = FakeCloud::new();
        let sleep = ManualSleep::new(ManualClock::at_unix(0));
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let retry = Retry::new(
            &fake,
            policy,
            Arc::new(sleep.clone()),
            Arc::new(SplitMix::new(3)),
        );
        let e = retry
            .describe_group(&GroupId::new("missing"))
            .await
            .unwrap_err();
        assert!(e.is_not_found());
        assert!(sleep.slept().is_empty());
        for _ in 0..5 {
            fake.fail_next(Operation::DescribeGroup, FaultKind::ServerError);
        }
        let e = retry
            .describe_group(&GroupId::new("missing"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(sleep.slept().len(), 2, "3 attempts = 2 sleeps");
    }
}
