//! Leader election over a `coordination.k8s.io/v1` Lease, so that only one of several operator
//! replicas reconciles. Timings as client-go's: the holder renews every `retryPeriod` (2 s);
//! another replica takes the Lease over once `renewTime + leaseDuration` (15 s) has passed;
//! and a holder that has not renewed for `renewDeadline` (10 s) stops leading ([`Renewal`]),
//! well before anyone else may take over. Every write carries the resourceVersion it read, so
//! two replicas can never both win the same round.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::{Error, Result};

/// Timings of leader election (client-go's names and defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a Lease is valid without renewal: when another replica may take it over.
    pub lease_duration: Duration,
    /// How long the holder goes on leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the holder renews, and a candidate retries.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self::for_lease(Duration::from_secs(15))
    }
}

impl Timing {
    /// client-go's proportions for `lease_duration`: renew deadline 2/3 of it, retry period
    /// 2/15 of it (15 s -> 10 s and 2 s).
    pub fn for_lease(lease_duration: Duration) -> Self {
        Self {
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration * 2 / 15,
        }
    }

    /// Checks `retry_period < renew_deadline < lease_duration`: a holder must give up before
    /// anyone else may take over, and get a few tries before it gives up.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.retry_period.is_zero() {
            return Err("leader election: the retry period must be positive".to_owned());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "leader election: the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(format!(
                "leader election: the retry period ({:?}) must be shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// What one renewal attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The Lease is renewed.
    Renewed,
    /// Another replica holds the Lease.
    Lost,
    /// The attempt failed (API error or timeout): leadership is unknown.
    Failed,
}

/// What the holder does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep leading; try to renew after this delay.
    RenewIn(Duration),
    /// Stop leading (and reconciling) now.
    StepDown(&'static str),
}

/// The holder's side of leader election, without I/O or clock: the caller says when each
/// renewal attempt started and ended. Leadership lasts until `renew_deadline` after the start
/// of the last successful attempt (the Lease's renewTime is no earlier than that start).
#[derive(Clone, Debug)]
pub struct Renewal {
    timing: Timing,
    renewed_at: Instant,
}

impl Renewal {
    /// A holder that acquired or renewed the Lease with an attempt started at `at`.
    pub fn new(timing: Timing, at: Instant) -> Self {
        Self {
            timing,
            renewed_at: at,
        }
    }

    /// When leadership ends without another successful renewal.
    pub fn deadline(&self) -> Instant {
        self.renewed_at + self.timing.renew_deadline
    }

    /// Time an attempt starting at `now` may take (its timeout); None once the deadline has
    /// passed, when the holder must step down instead of trying.
    pub fn budget(&self, now: Instant) -> Option<Duration> {
        let left = self.deadline().saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// Records an attempt started at `started` that ended at `now` with `attempt`.
    pub fn after(&mut self, started: Instant, attempt: Attempt, now: Instant) -> Next {
        match attempt {
            Attempt::Renewed => {
                self.renewed_at = self.renewed_at.max(started);
                Next::RenewIn(self.timing.retry_period)
            }
            Attempt::Lost => Next::StepDown("another replica holds the Lease"),
            Attempt::Failed => match self.budget(now) {
                None => Next::StepDown("could not renew the Lease within the renew deadline"),
                // Retry at the usual period, but no later than the deadline itself.
                Some(left) => Next::RenewIn(self.timing.retry_period.min(left)),
            },
        }
    }
}

/// One replica's handle on the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
}

/// Whether `spec`, read at `now`, lets `identity` take or keep the Lease.
pub fn can_acquire(spec: &LeaseSpec, identity: &str, now: Timestamp) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return true;
    }
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed
        .0
        .checked_add(duration)
        .map_or(true, |expiry| expiry < now)
}

impl LeaseLock {
    /// A lock on Lease `namespace/name` for replica `identity`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    fn error(&self, source: kube::Error) -> Error {
        Error::Lease {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// Takes or renews the Lease; true when this replica holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let duration_secs = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(self.error(e)),
            };
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if !can_acquire(&spec, &self.identity, now) {
            return Ok(false);
        }
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(duration_secs);
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Gives the Lease up (if held) so another replica takes over at once.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(secs),
            ..LeaseSpec::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn default_timing_is_client_gos() {
        let t = Timing::default();
        assert_eq!(
            (t.lease_duration, t.renew_deadline, t.retry_period),
            (secs(15), secs(10), secs(2))
        );
        assert_eq!(t.validate(), Ok(()));
        let short = Timing::for_lease(secs(3));
        assert_eq!(
            (short.renew_deadline, short.retry_period),
            (secs(2), Duration::from_millis(400))
        );
        assert_eq!(short.validate(), Ok(()));
    }

    #[test]
    fn a_renew_deadline_not_shorter_than_the_lease_is_refused() {
        let t = Timing {
            renew_deadline: secs(15),
            ..Timing::default()
        };
        assert!(t.validate().unwrap_err().contains("renew deadline"));
        let t = Timing {
            retry_period: secs(10),
            ..Timing::default()
        };
        assert!(t.validate().unwrap_err().contains("retry period"));
    }

    #[test]
    fn a_holder_that_cannot_renew_steps_down_at_the_renew_deadline_before_the_lease_expires() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut renewal = Renewal::new(timing, t0);
        // Every attempt fails (API server unreachable), each taking 1 s.
        let mut now = t0;
        let mut stepped_down = None;
        for _ in 0..20 {
            let wait = match renewal.after(now, Attempt::Failed, now + secs(1)) {
                Next::RenewIn(wait) => wait,
                Next::StepDown(why) => {
                    stepped_down = Some((now + secs(1), why));
                    break;
                }
            };
            now += secs(1) + wait;
            if renewal.budget(now).is_none() {
                stepped_down = Some((now, "no budget"));
                break;
            }
        }
        let (at, _) = stepped_down.expect("the holder never stepped down");
        assert!(at >= t0 + timing.renew_deadline, "{:?}", at - t0);
        // Stepped down no later than the deadline plus one attempt, well before another
        // replica may take the Lease (lease duration after the last renewal).
        assert!(at <= t0 + timing.renew_deadline + secs(1), "{:?}", at - t0);
        assert!(at < t0 + timing.lease_duration);
    }

    #[test]
    fn an_attempt_gets_only_the_time_left_before_the_deadline() {
        let t0 = Instant::now();
        let renewal = Renewal::new(Timing::default(), t0);
        assert_eq!(renewal.budget(t0 + secs(7)), Some(secs(3)));
        assert_eq!(renewal.budget(t0 + secs(10)), None);
        let mut renewal = renewal;
        // A failure 9.5 s in: retry at the deadline, not 2 s later.
        assert_eq!(
            renewal.after(
                t0 + secs(9),
                Attempt::Failed,
                t0 + Duration::from_millis(9500)
            ),
            Next::RenewIn(Duration::from_millis(500))
        );
    }

    #[test]
    fn a_successful_renewal_moves_the_deadline_from_when_the_attempt_started() {
        let t0 = Instant::now();
        let mut renewal = Renewal::new(Timing::default(), t0);
        assert_eq!(
            renewal.after(t0 + secs(8), Attempt::Renewed, t0 + secs(9)),
            Next::RenewIn(secs(2))
        );
        assert_eq!(renewal.deadline(), t0 + secs(18));
        assert!(matches!(
            renewal.after(t0 + secs(11), Attempt::Lost, t0 + secs(11)),
            Next::StepDown(_)
        ));
    }

    #[test]
    fn a_held_lease_cannot_be_taken_before_it_expires() {
        assert!(!can_acquire(&spec("a", 100, 15), "b", at(110)));
        assert!(can_acquire(&spec("a", 100, 15), "b", at(116)));
    }

    #[test]
    fn the_holder_and_anyone_on_a_free_lease_can_acquire() {
        assert!(can_acquire(&spec("a", 100, 15), "a", at(101)));
        assert!(can_acquire(&LeaseSpec::default(), "b", at(101)));
        assert!(can_acquire(&spec("", 100, 15), "b", at(101)));
    }
}
