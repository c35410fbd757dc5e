//! A `tracing` span around every call (provider and operation as fields) and a log event per
//! failure, with the error kind as a field so logs can be filtered without parsing text.

use std::future::Future;

use tracing::Instrument as _;

use crate::error::Result;
use crate::layer::{decorate, Around};
use crate::port::CloudProvider;
use crate::types::Operation;

/// Traces every call of the inner provider.
#[derive(Debug)]
pub struct Traced<P> {
    inner: P,
}

impl<P> Traced<P> {
    /// Wraps `inner`.
    pub fn new(inner: P) -> Self {
        Traced { inner }
    }
}

impl<P: CloudProvider> Around for Traced<P> {
    fn around<'a, T, F, Fut>(
        &'a self,
        op: Operation,
        call: F,
    ) -> impl Future<Output = Result<T>> + Send + 'a
    where
        T: Send + 'a,
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<T>> + Send + 'a,
    {
        let span = tracing::info_span!(
            "cloud_call",
            provider = self.inner.name(),
            operation = op.as_str()
        );
        async move {
            let out = call().await;
            match &out {
                Ok(_) => tracing::debug!("cloud call succeeded"),
                Err(e) => tracing::warn!(kind = e.kind().as_str(), error = %e, "cloud call failed"),
            }
            out
        }
        .instrument(span)
    }
}

decorate!(Traced);
