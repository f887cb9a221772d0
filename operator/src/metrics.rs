//! Prometheus metrics of the controller: reconciles, failures by error name, and reconcile
//! durations. Served on `/metrics` by the operator's HTTP server.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of a failure: the error's short name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `Error::label()`.
    pub error: String,
}

/// The controller's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    /// Reconciles started.
    pub reconciles: Counter,
    /// Reconciles that failed, by error.
    pub failures: Family<ErrorLabels, Counter>,
    /// Reconcile durations in seconds.
    pub duration: Histogram,
    /// 1 while this replica holds the leader Lease (or runs without leader election).
    pub leader: Gauge,
    /// Census documents the census streams received (changes and resyncs).
    pub census_answers: Counter,
    /// Times a census stream moved to another member after a failure.
    pub census_failovers: Counter,
    /// Status writes of the census streams (`status.census`, `status.applied`).
    pub census_writes: Counter,
    /// Configs and files sent to a ring through a ctl gateway.
    pub ring_applies: Counter,
    /// Members departed from a ring after a scale-down removed their pods.
    pub departures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("habitat_operator");
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let leader = Gauge::default();
        let census_answers = Counter::default();
        let census_failovers = Counter::default();
        let census_writes = Counter::default();
        let ring_applies = Counter::default();
        let departures = Counter::default();
        registry.register(
            "departures",
            "Members departed from a ring after a scale-down removed their pods",
            departures.clone(),
        );
        registry.register(
            "census_answers",
            "Census documents received by the census streams",
            census_answers.clone(),
        );
        registry.register(
            "census_failovers",
            "Census streams moved to another member after a failure",
            census_failovers.clone(),
        );
        registry.register(
            "census_status_writes",
            "Status writes of the census streams",
            census_writes.clone(),
        );
        registry.register(
            "ring_applies",
            "Configs and files sent to a ring through a ctl gateway",
            ring_applies.clone(),
        );
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            leader,
            census_answers,
            census_failovers,
            census_writes,
            ring_applies,
            departures,
        }
    }
}

impl Metrics {
    /// Counts a finished reconcile that took `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn failed(&self, error: &crate::Error) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: error.label(),
            })
            .inc();
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_metrics_name_reconciles_failures_and_durations() {
        let metrics = Metrics::default();
        metrics.reconciles.inc();
        metrics.observe(Duration::from_millis(20));
        metrics.failed(&crate::Error::MissingNamespace("x".into()));
        let text = metrics.encode();
        assert!(text.contains("habitat_operator_reconciles_total 1"));
        assert!(text
            .contains("habitat_operator_reconcile_failures_total{error=\"missing_namespace\"} 1"));
        assert!(text.contains("habitat_operator_reconcile_duration_seconds_count 1"));
    }
}
