//! Injected time: a [`Clock`] that reads the time and a [`Sleep`] that waits for it.
//!
//! The loop never reads the system clock or sleeps on its own: the daemon passes [`SystemClock`],
//! the demo and the tests pass a [`VirtualClock`], whose sleep jumps time forward at once.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Seconds since the Unix epoch, UTC.
pub type Timestamp = i64;

/// Reads the current time.
pub trait Clock: Send + Sync + Debug {
    /// The current time in seconds since the Unix epoch.
    fn now(&self) -> Timestamp;
}

/// Waits until a point in time.
#[async_trait::async_trait]
pub trait Sleep: Send + Sync + Debug {
    /// Returns once the clock paired with this sleep reads at least `until`.
    ///
    /// # Guarantees
    /// Cancel-safe: dropping the future has no effect beyond not waiting.
    async fn sleep_until(&self, until: Timestamp);
}

/// The real clock and the real timer: only the daemon uses it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Sleep for SystemClock {
    async fn sleep_until(&self, until: Timestamp) {
        let wait = until - self.now();
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(wait as u64)).await;
        }
    }
}

/// A virtual clock: time moves only when someone sleeps on it or calls [`VirtualClock::advance`].
#[derive(Debug, Clone)]
pub struct VirtualClock {
    now: Arc<AtomicI64>,
}

impl VirtualClock {
    /// A clock that reads `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(start)),
        }
    }

    /// Moves the clock forward by `seconds` (never backwards).
    pub fn advance(&self, seconds: i64) {
        self.now.fetch_add(seconds.max(0), Ordering::SeqCst);
    }

    /// Sets the clock to `t` if `t` is later than now.
    pub fn advance_to(&self, t: Timestamp) {
        self.now.fetch_max(t, Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        self.now.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Sleep for VirtualClock {
    async fn sleep_until(&self, until: Timestamp) {
        self.advance_to(until);
        tokio::task::yield_now().await;
    }
}

/// Parses a duration such as `30s`, `5m`, `1h`, `7d` or a bare number of seconds.
///
/// # Errors
/// Returns a message saying what is wrong when the text is not such a duration.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s, 5m, 1h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}` has unknown unit `{unit}` (use s, m, h or d)"
            ))
        }
    };
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let cases = [
            ("30s", Ok(30)),
            ("5m", Ok(300)),
            ("1h", Ok(3600)),
            ("7d", Ok(604_800)),
            ("90", Ok(90)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), want, "{text}");
        }
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[tokio::test]
    async fn virtual_sleep_moves_time_forward_only() {
        let c = VirtualClock::new(100);
        c.sleep_until(160).await;
        assert_eq!(c.now(), 160);
        c.sleep_until(50).await;
        assert_eq!(c.now(), 160);
        c.advance(40);
        assert_eq!(c.now(), 200);
    }
}
