//! Cross-cutting concerns as decorators around any [`CloudProvider`](crate::CloudProvider): each wraps an inner
//! provider, implements the same trait, and adds one behaviour to every call.
//!
//! - [`timeout::Timeout`]: every call gets a deadline (an [`ErrorKind::Timeout`] error after it).
//! - [`retry::Retry`]: retryable errors are retried with jittered exponential backoff that
//!   honours the cloud's throttling hints.
//! - [`ratelimit::RateLimit`]: a token bucket plus a bound on calls in flight.
//! - [`metrics::Metrics`]: counts and latency per operation and outcome.
//! - [`tracing::Traced`]: a span per call and a log line per failure.
//!
//! Time, sleep and randomness are injected ([`crate::clock`]), so the layers run on virtual
//! time in tests. [`Stack`] composes them in the recommended order:
//! tracing → retry → metrics → rate limit → timeout → adapter, so that each attempt is rate
//! limited, timed out and counted, and the whole call (with its retries) is one span.
//!
//! [`ErrorKind::Timeout`]: crate::ErrorKind::Timeout

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, Rng, Sleep, SplitMix, SystemClock, TokioSleep};
use crate::port::DynProvider;
use crate::types::Operation;

pub mod metrics;
pub mod ratelimit;
pub mod retry;
pub mod timeout;
pub mod tracing;

/// What a decorator does around one call of the inner provider.
///
/// Implementors provide [`around`](Around::around); the [`CloudProvider`](crate::CloudProvider) implementation that
/// forwards every method through it is generated once by `decorate!`, so no decorator can forget
/// a method.
pub(crate) trait Around: Send + Sync {
    /// Runs `call` (which may be invoked several times, e.g. by retries) for operation `op`.
    fn around<'a, T, F, Fut>(
        &'a self,
        op: Operation,
        call: F,
    ) -> impl Future<Output = crate::Result<T>> + Send + 'a
    where
        T: Send + 'a,
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = crate::Result<T>> + Send + 'a;
}

/// Implements [`CloudProvider`](crate::CloudProvider) for a decorator `$ty<P>` with an `inner: P` field and an
/// [`Around`] implementation.
macro_rules! decorate {
    ($ty:ident) => {
        #[async_trait::async_trait]
        impl<P: $crate::CloudProvider> $crate::CloudProvider for $ty<P> {
            fn name(&self) -> &str {
                self.inner.name()
            }
            async fn describe_group(
                &self,
                group: &$crate::GroupId,
            ) -> $crate::Result<$crate::Group> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::DescribeGroup, || {
                    self.inner.describe_group(group)
                })
                .await
            }
            async fn scale_group(
                &self,
                group: &$crate::GroupId,
                desired: u32,
            ) -> $crate::Result<$crate::Group> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::ScaleGroup, || {
                    self.inner.scale_group(group, desired)
                })
                .await
            }
            async fn resize_group(
                &self,
                group: &$crate::GroupId,
                t: &$crate::InstanceType,
            ) -> $crate::Result<$crate::Group> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::ResizeGroup, || {
                    self.inner.resize_group(group, t)
                })
                .await
            }
            async fn launch(
                &self,
                request: &$crate::LaunchRequest,
            ) -> $crate::Result<Vec<$crate::Instance>> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::Launch, || self.inner.launch(request))
                    .await
            }
            async fn describe_instance(
                &self,
                id: &$crate::InstanceId,
            ) -> $crate::Result<$crate::Instance> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::DescribeInstance, || {
                    self.inner.describe_instance(id)
                })
                .await
            }
            async fn stop_instance(
                &self,
                id: &$crate::InstanceId,
                mode: $crate::StopMode,
            ) -> $crate::Result<$crate::Instance> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::StopInstance, || {
                    self.inner.stop_instance(id, mode)
                })
                .await
            }
            async fn start_instance(
                &self,
                id: &$crate::InstanceId,
            ) -> $crate::Result<$crate::Instance> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::StartInstance, || {
                    self.inner.start_instance(id)
                })
                .await
            }
            async fn resize_instance(
                &self,
                id: &$crate::InstanceId,
                t: &$crate::InstanceType,
            ) -> $crate::Result<$crate::Instance> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::ResizeInstance, || {
                    self.inner.resize_instance(id, t)
                })
                .await
            }
            async fn terminate_instance(
                &self,
                id: &$crate::InstanceId,
            ) -> $crate::Result<$crate::Instance> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::TerminateInstance, || {
                    self.inner.terminate_instance(id)
                })
                .await
            }
            async fn list_instances(
                &self,
                owner: &$crate::Owner,
            ) -> $crate::Result<Vec<$crate::Instance>> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::ListInstances, || {
                    self.inner.list_instances(owner)
                })
                .await
            }
            async fn instance_types(&self) -> $crate::Result<Vec<$crate::InstanceTypeInfo>> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::InstanceTypes, || {
                    self.inner.instance_types()
                })
                .await
            }
            async fn prices(&self) -> $crate::Result<Vec<$crate::Price>> {
                use $crate::layer::Around as _;
                self.around($crate::Operation::Prices, || self.inner.prices())
                    .await
            }
        }
    };
}
pub(crate) use decorate;

/// The standard layers with their settings, applied by [`Stack::apply`].
#[derive(Debug, Clone)]
pub struct Stack {
    /// Deadline of one attempt; `None` for no timeout layer.
    pub timeout: Option<Duration>,
    /// Retry policy; `None` for no retry layer.
    pub retry: Option<retry::RetryPolicy>,
    /// Rate limit; `None` for no rate-limit layer.
    pub rate_limit: Option<ratelimit::RateLimitPolicy>,
    /// Registry to record into; `None` for no metrics layer.
    pub metrics: Option<metrics::MetricsRegistry>,
    /// Whether to add the tracing layer.
    pub tracing: bool,
    /// Clock for rate limiting and latency.
    pub clock: Arc<dyn Clock>,
    /// Sleep for backoff, rate limiting and timeouts.
    pub sleep: Arc<dyn Sleep>,
    /// Randomness for jitter.
    pub rng: Arc<dyn Rng>,
}

impl Stack {
    /// Production defaults on the system clock and the tokio timer: 30 s timeout, the default
    /// retry policy, 20 calls per second (burst 40, 16 in flight), metrics into `registry`,
    /// tracing on. Jitter is seeded from `seed`.
    pub fn production(registry: metrics::MetricsRegistry, seed: u64) -> Self {
        Stack {
            timeout: Some(Duration::from_secs(30)),
            retry: Some(retry::RetryPolicy::default()),
            rate_limit: Some(ratelimit::RateLimitPolicy::default()),
            metrics: Some(registry),
            tracing: true,
            clock: Arc::new(SystemClock),
            sleep: Arc::new(TokioSleep),
            rng: Arc::new(SplitMix::new(seed)),
        }
    }

    /// No layers at all, on the given clock and sleep (tests add what they need).
    pub fn none(clock: Arc<dyn Clock>, sleep: Arc<dyn Sleep>) -> Self {
        Stack {
            timeout: None,
            retry: None,
            rate_limit: None,
            metrics: None,
            tracing: false,
            clock,
            sleep,
            rng: Arc::new(SplitMix::new(0)),
        }
    }

    /// Wraps `inner` in the configured layers: tracing → retry → metrics → rate limit →
    /// timeout → `inner`.
    pub fn apply(&self, inner: DynProvider) -> DynProvider {
        let mut p: DynProvider = inner;
        if let Some(d) = self.timeout {
            p = Arc::new(timeout::Timeout::new(p, d, self.sleep.clone()));
        }
        if let Some(policy) = &self.rate_limit {
            p = Arc::new(ratelimit::RateLimit::new(
                p,
                policy.clone(),
                self.clock.clone(),
                self.sleep.clone(),
            ));
        }
        if let Some(reg) = &self.metrics {
            p = Arc::new(metrics::Metrics::new(p, reg.clone(), self.clock.clone()));
        }
        if let Some(policy) = &self.retry {
            p = Arc::new(retry::Retry::new(
                p,
                policy.clone(),
                self.sleep.clone(),
                self.rng.clone(),
            ));
        }
        if self.tracing {
            p = Arc::new(tracing::Traced::new(p));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloudProvider;

    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}

    /// Compile-time check: the futures of every layer (and of the port through `dyn`) are
    /// `Send`, so the controller can spawn them on a multi-threaded runtime.
    #[test]
    fn layer_futures_should_be_send() {
        use crate::clock::ManualClock;
        use crate::sim::{SimCloud, SimConfig};
        use crate::{GroupId, LaunchRequest};
        let (sim, clock) = SimCloud::with_manual_clock(SimConfig::instant());
        let stack = Stack::production(metrics::MetricsRegistry::default(), 1);
        let stack = Stack {
            clock: Arc::new(clock.clone()),
            sleep: Arc::new(crate::clock::ManualSleep::new(ManualClock::clone(&clock))),
            ..stack
        };
        let p = stack.apply(Arc::new(sim));
        assert_send_sync::<DynProvider>();
        let g = GroupId::new("g");
        assert_send(&p.describe_group(&g));
        assert_send(&p.scale_group(&g, 1));
        let r = LaunchRequest::new(
            crate::IdempotencyToken::new("t").unwrap(),
            crate::Owner::new("o").unwrap(),
            "m6i.large",
            1,
        );
        assert_send(&p.launch(&r));
        let retry = retry::Retry::new(
            p.clone(),
            retry::RetryPolicy::default(),
            Arc::new(TokioSleep),
            Arc::new(SplitMix::new(0)),
        );
        assert_send(&retry.launch(&r));
    }
}
