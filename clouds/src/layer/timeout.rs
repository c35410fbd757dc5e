//! A deadline on every call: the inner call is dropped and an [`ErrorKind::Timeout`] error is
//! returned when it takes longer than the configured duration.
//!
//! A timed-out call may still have taken effect in the cloud; callers re-observe (and the retry
//! layer re-sends, which is safe because every operation is idempotent).
//!
//! # Assumptions
//! The deadline runs on the injected [`Sleep`]. With [`TokioSleep`](crate::clock::TokioSleep)
//! it is a real timer (or tokio's paused clock in tests). With
//! [`ManualSleep`](crate::clock::ManualSleep) virtual time jumps to the deadline as soon as the
//! call is pending, which suits in-process providers (the sim, the fake) that answer on their
//! first poll; a provider doing real IO needs the tokio timer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Sleep;
use crate::error::{CloudError, ErrorKind, Result};
use crate::layer::{decorate, Around};
use crate::types::Operation;

/// Times out calls of the inner provider after `duration`, measured by the injected [`Sleep`].
#[derive(Debug)]
pub struct Timeout<P> {
    inner: P,
    duration: Duration,
    sleep: Arc<dyn Sleep>,
}

impl<P> Timeout<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, duration: Duration, sleep: Arc<dyn Sleep>) -> Self {
        Timeout {
            inner,
            duration,
            sleep,
        }
    }
}

impl<P: Send + Sync> Around for Timeout<P> {
    async fn around<'a, T, F, Fut>(&'a self, op: Operation, call: F) -> Result<T>
    where
        T: Send + 'a,
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<T>> + Send + 'a,
    {
        {
            let call = call();
            let deadline = self.sleep.sleep(self.duration);
            tokio::select! {
                // The call is polled first, so a call that is ready never loses to the timer.
                biased;
                out = call => out,
                () = deadline => Err(CloudError::new(op, ErrorKind::Timeout)
                    .with_detail(format!("no answer within {:?}", self.duration))),
            }
        }
    }
}

decorate!(Timeout);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioSleep;
    use crate::fake::FakeCloud;
    use crate::{CloudProvider, GroupId};

    #[tokio::test(start_paused = true)]
    async fn slow_calls_should_time_out_on_paused_time() {
        let fake = FakeCloud::new();
        fake.create_group("g", "m6i.large", 0, 3);
        fake.set_latency(Operation::DescribeGroup, Duration::from_secs(60));
        let t = Timeout::new(&fake, Duration::from_secs(5), Arc::new(TokioSleep));
        let started = tokio::time::Instant::now();
        let e = t.describe_group(&GroupId::new("g")).await.unwrap_err();
        assert!(e.is_timeout());
        assert!(e.is_retryable());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(
            e.to_string(),
            "describe group: timed out: no answer within 5s"
        );
        // A fast call passes through.
        assert_eq!(
            t.scale_group(&GroupId::new("g"), 2).await.unwrap().desired,
            2
        );
    }

    #[tokio::test]
    async fn fast_calls_should_not_move_virtual_time() {
        use crate::clock::{Clock, ManualClock, ManualSleep};
        let fake = FakeCloud::new();
        fake.create_group("g", "m6i.large", 0, 3);
        let clock = ManualClock::at_unix(0);
        let t = Timeout::new(
            &fake,
            Duration::from_secs(30),
            Arc::new(ManualSleep::new(clock.clone())),
        );
        let before = clock.now();
        for _ in 0..5 {
            t.describe_group(&GroupId::new("g")).await.unwrap();
        }
        assert_eq!(clock.now(), before);
    }
}
