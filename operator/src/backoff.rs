//! Retry delays of failed reconciles: exponential per resource (2 s, 4 s, 8 s, ... capped at
//! 5 min), with jitter so that resources failing together (an API server outage) do not
//! retry in lockstep, and reset by the resource's next successful reconcile. The delay is a
//! pure function of the failure count and a random fraction the caller draws.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// Delay after the first failure (before jitter).
pub const BASE: Duration = Duration::from_secs(2);
/// Longest delay (before jitter): the periodic resync interval.
pub const CAP: Duration = Duration::from_secs(300);

/// Delay before retrying after the `failures`-th consecutive failure (1 for the first), with
/// `jitter` in [0, 1): `d/2 + jitter * d/2` for `d = min(BASE * 2^(failures-1), CAP)`. Half
/// the delay is kept so that jitter never makes retries much faster than the backoff.
pub fn delay(failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    let full = BASE.saturating_mul(1u32 << exponent).min(CAP);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    full / 2 + full.mul_f64(jitter / 2.0)
}

/// Consecutive failures of each resource.
pub struct Backoff<K> {
    failures: Mutex<HashMap<K, u32>>,
}

impl<K> Default for Backoff<K> {
    fn default() -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq> Backoff<K> {
    /// Counts a failure of `key`; returns the delay before its retry.
    pub fn failed(&self, key: K, jitter: f64) -> Duration {
        // The lock is only held for a map update; a poisoned map is still a valid map.
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        delay(*count, jitter)
    }

    /// `key` reconciled successfully (or is gone): its next failure starts from [`BASE`].
    pub fn succeeded(&self, key: &K) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }

    /// Resources with failures not yet followed by a success.
    pub fn failing(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_base_up_to_the_cap() {
        // jitter 1.0 is the top of the range: the full delay.
        let full: Vec<u64> = (1..=10).map(|n| delay(n, 1.0).as_secs()).collect();
        assert_eq!(full, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(delay(u32::MAX, 1.0), CAP);
    }

    #[test]
    fn jitter_keeps_the_delay_between_half_and_all_of_it() {
        for n in 1..=12 {
            let top = delay(n, 1.0);
            for jitter in [0.0, 0.25, 0.5, 0.999] {
                let d = delay(n, jitter);
                assert!(
                    d >= top / 2 && d <= top,
                    "failure {n}, jitter {jitter}: {d:?}"
                );
            }
            assert!(delay(n, 0.1) < delay(n, 0.9));
        }
        assert_eq!(delay(1, f64::NAN), Duration::from_secs(1));
        assert_eq!(delay(1, -3.0), Duration::from_secs(1));
    }

    #[test]
    fn a_success_resets_the_backoff_of_that_resource_only() {
        let backoff = Backoff::default();
        assert_eq!(backoff.failed("a", 1.0), Duration::from_secs(2));
        assert_eq!(backoff.failed("a", 1.0), Duration::from_secs(4));
        assert_eq!(backoff.failed("b", 1.0), Duration::from_secs(2));
        assert_eq!(backoff.failed("a", 1.0), Duration::from_secs(8));
        backoff.succeeded(&"a");
        assert_eq!(backoff.failing(), 1);
        assert_eq!(backoff.failed("a", 1.0), Duration::from_secs(2));
        assert_eq!(backoff.failed("b", 1.0), Duration::from_secs(4));
    }
}
