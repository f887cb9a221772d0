//! Restart delay for a crashing service: jittered exponential backoff.
//!
//! Pure: the caller supplies how long the process stayed up (from its own clock) and a jitter
//! value in `[0, 1)` (from its own rng), so every delay is reproducible in tests. Invariants:
//! a delay never exceeds `policy.cap`, and a process that stayed up for `policy.reset_after`
//! starts again from `policy.base`.

use std::time::Duration;

/// How restart delays grow. `Default` is base 1 s, x2, cap 60 s, +-20 % jitter, reset after
/// 60 s of uptime.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// Delay after the first crash.
    pub base: Duration,
    /// Each further consecutive crash multiplies the delay by this.
    pub factor: f64,
    /// Upper bound of any delay, jitter included.
    pub cap: Duration,
    /// Relative jitter: 0.2 spreads a delay over `[0.8 d, 1.2 d]`.
    pub jitter: f64,
    /// A process that stayed up this long is healthy again: the next crash starts from `base`.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(60),
            jitter: 0.2,
            reset_after: Duration::from_secs(60),
        }
    }
}

/// Consecutive-crash counter turning exits into restart delays.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    consecutive: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            consecutive: 0,
        }
    }

    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Crashes counted since the last reset (the one just reported included).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// Forget past crashes (an operator asked for a restart, or the service was stopped).
    pub fn reset(&mut self) {
        self.consecutive = 0;
    }

    /// The process exited after running for `uptime`: how long to wait before starting it
    /// again. `jitter_unit` is a uniform random value in `[0, 1)`; 0.5 means no jitter.
    pub fn on_exit(&mut self, uptime: Duration, jitter_unit: f64) -> Duration {
        if uptime >= self.policy.reset_after {
            self.consecutive = 0;
        }
        let exponent = self.consecutive.min(64) as i32;
        self.consecutive = self.consecutive.saturating_add(1);

        let cap = self.policy.cap.as_secs_f64();
        let raw = self.policy.base.as_secs_f64() * self.policy.factor.max(1.0).powi(exponent);
        let unjittered = raw.min(cap);
        let unit = if jitter_unit.is_finite() {
            jitter_unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let spread = self.policy.jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
        let secs = (unjittered * (1.0 + spread)).clamp(0.0, cap);
        Duration::try_from_secs_f64(secs).unwrap_or(self.policy.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn delays_double_until_the_cap_without_jitter() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let delays: Vec<f64> = (0..8)
            .map(|_| secs(b.on_exit(Duration::ZERO, 0.5)))
            .collect();
        assert_eq!(delays, vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]);
        assert_eq!(b.consecutive_failures(), 8);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_never_exceeds_the_cap() {
        for unit in [0.0, 0.25, 0.5, 0.75, 0.999_999] {
            let mut b = Backoff::new(BackoffPolicy::default());
            let first = secs(b.on_exit(Duration::ZERO, unit));
            assert!((0.8..=1.2).contains(&first), "unit {unit}: {first}");
            for _ in 0..20 {
                let d = secs(b.on_exit(Duration::ZERO, unit));
                assert!(d <= 60.0, "unit {unit}: {d}");
            }
            let at_cap = secs(b.on_exit(Duration::ZERO, unit));
            assert!(at_cap >= 48.0, "unit {unit}: {at_cap}");
        }
    }

    #[test]
    fn staying_up_for_the_cool_down_resets_the_delay() {
        let mut b = Backoff::new(BackoffPolicy::default());
        for _ in 0..5 {
            b.on_exit(Duration::from_secs(1), 0.5);
        }
        assert_eq!(
            b.on_exit(Duration::from_secs(59), 0.5),
            Duration::from_secs(32)
        );
        assert_eq!(
            b.on_exit(Duration::from_secs(60), 0.5),
            Duration::from_secs(1)
        );
        assert_eq!(b.on_exit(Duration::ZERO, 0.5), Duration::from_secs(2));
    }

    #[test]
    fn explicit_reset_starts_from_base() {
        let mut b = Backoff::new(BackoffPolicy::default());
        b.on_exit(Duration::ZERO, 0.5);
        b.on_exit(Duration::ZERO, 0.5);
        b.reset();
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.on_exit(Duration::ZERO, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn many_crashes_do_not_overflow() {
        let mut b = Backoff::new(BackoffPolicy::default());
        for _ in 0..10_000 {
            assert!(b.on_exit(Duration::ZERO, 0.9) <= Duration::from_secs(60));
        }
    }

    #[test]
    fn nonsense_jitter_values_are_tamed() {
        let mut b = Backoff::new(BackoffPolicy::default());
        assert_eq!(b.on_exit(Duration::ZERO, f64::NAN), Duration::from_secs(1));
        let d = secs(b.on_exit(Duration::ZERO, 7.0));
        assert!((2.0..=2.4 + 1e-9).contains(&d), "{d}");
    }
}
