//! Prometheus metrics of the supervisor (`GET /metrics`): members by health, rumors sent,
//! received and dropped by reason, bytes and packets in and out, Lifeguard's local health, node
//! names shared by several members, retirements from group electorates.
//! Counters mirror the gossip node's own counters, so they only ever grow.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::gossip::member::{node_name_conflicts, Health, MemberView};
use crate::gossip::node::NodeStats;
use crate::gossip::rumor::RumorKind;
use crate::gossip::store::Store;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    members: Family<Labels, Gauge>,
    bytes: Family<Labels, Counter>,
    packets: Family<Labels, Counter>,
    rumors: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
    local_health: Gauge,
    rumors_stored: Gauge,
    rumor_bytes_stored: Gauge,
    node_name_conflicts: Gauge,
    retirements: Counter,
    last: NodeStats,
    last_retirements: u64,
    ctl_refused: Family<Labels, Counter>,
    last_ctl: (u64, u64),
    updates: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn advance(counter: &Counter, last: u64, now: u64) {
    counter.inc_by(now.saturating_sub(last));
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hab_gossip");
        let members = Family::<Labels, Gauge>::default();
        let bytes = Family::<Labels, Counter>::default();
        let packets = Family::<Labels, Counter>::default();
        let rumors = Family::<Labels, Counter>::default();
        let dropped = Family::<Labels, Counter>::default();
        let local_health = Gauge::default();
        let rumors_stored = Gauge::default();
        let rumor_bytes_stored = Gauge::default();
        let name_conflicts = Gauge::default();
        let retirements = Counter::default();
        let ctl_refused = Family::<Labels, Counter>::default();
        let updates = Family::<Labels, Counter>::default();
        registry.register(
            "updates",
            "Package updates of the services, by event (found, installed, restarted, failed, \
             rolled_back)",
            updates.clone(),
        );
        registry.register("members", "Ring members by health", members.clone());
        registry.register("bytes", "Gossip bytes by direction", bytes.clone());
        registry.register(
            "packets",
            "Gossip datagrams and frames by kind and direction",
            packets.clone(),
        );
        registry.register(
            "rumors",
            "Rumor transmissions by event (sent, received, accepted)",
            rumors.clone(),
        );
        registry.register(
            "dropped",
            "Packets and rumors dropped, by reason",
            dropped.clone(),
        );
        registry.register(
            "local_health",
            "Lifeguard local health multiplier (0 = healthy)",
            local_health.clone(),
        );
        registry.register(
            "rumors_stored",
            "Rumors held in the store",
            rumors_stored.clone(),
        );
        registry.register(
            "rumor_bytes_stored",
            "Encoded bytes of the rumors held (peers' rumors beyond 64 MiB are dropped as store_full)",
            rumor_bytes_stored.clone(),
        );
        registry.register(
            "node_name_conflicts",
            "Node names held by more than one up member (all are kept; give each its own name)",
            name_conflicts.clone(),
        );
        registry.register(
            "ctl_refused",
            "ctl gateway conversations refused, by reason (secret: a wrong or missing secret, \
             or a request before the handshake; malformed: an unreadable frame)",
            ctl_refused.clone(),
        );
        registry.register(
            "retirements",
            "Dead members a group's leader retired from the electorate, as recorded here",
            retirements.clone(),
        );
        Metrics {
            registry,
            members,
            bytes,
            packets,
            rumors,
            dropped,
            local_health,
            rumors_stored,
            rumor_bytes_stored,
            node_name_conflicts: name_conflicts,
            retirements,
            last: NodeStats::default(),
            last_retirements: 0,
            ctl_refused,
            last_ctl: (0, 0),
            updates,
        }
    }

    /// One package update event of a service (`updates` in `sup/updates.rs`).
    pub fn count_update(&self, event: &'static str) {
        self.updates
            .get_or_create(&vec![("event", event.to_string())])
            .inc();
    }

    /// Brings the ctl gateway's counts (as its tasks keep them) into the metrics.
    pub fn count_ctl(&mut self, refused_secret: u64, malformed: u64) {
        let (secret_before, malformed_before) = self.last_ctl;
        for (reason, before, now) in [
            ("secret", secret_before, refused_secret),
            ("malformed", malformed_before, malformed),
        ] {
            advance(
                &self
                    .ctl_refused
                    .get_or_create(&vec![("reason", reason.to_string())]),
                before,
                now,
            );
        }
        self.last_ctl = (refused_secret, malformed);
    }

    /// Brings the metrics up to date and renders them in Prometheus' text format.
    pub fn render(
        &mut self,
        stats: &NodeStats,
        members: &[MemberView],
        local_health: u32,
        store: &Store,
    ) -> String {
        for health in Health::ALL {
            let count = members.iter().filter(|m| m.health == health).count();
            self.members
                .get_or_create(&vec![("health", health.as_str().to_lowercase())])
                .set(count as i64);
        }
        let last = &self.last;
        let pairs: [(&Family<Labels, Counter>, Labels, u64, u64); 10] = [
            (
                &self.bytes,
                vec![("direction", "in".into())],
                last.bytes_received,
                stats.bytes_received,
            ),
            (
                &self.bytes,
                vec![("direction", "out".into())],
                last.bytes_sent,
                stats.bytes_sent,
            ),
            (
                &self.packets,
                vec![("kind", "datagram".into()), ("direction", "in".into())],
                last.datagrams_received,
                stats.datagrams_received,
            ),
            (
                &self.packets,
                vec![("kind", "datagram".into()), ("direction", "out".into())],
                last.datagrams_sent,
                stats.datagrams_sent,
            ),
            (
                &self.packets,
                vec![("kind", "frame".into()), ("direction", "in".into())],
                last.frames_received,
                stats.frames_received,
            ),
            (
                &self.packets,
                vec![("kind", "frame".into()), ("direction", "out".into())],
                last.frames_sent,
                stats.frames_sent,
            ),
            (
                &self.rumors,
                vec![("event", "sent".into())],
                last.rumors_sent,
                stats.rumors_sent,
            ),
            (
                &self.rumors,
                vec![("event", "forwarded".into())],
                last.rumors_forwarded,
                stats.rumors_forwarded,
            ),
            (
                &self.rumors,
                vec![("event", "received".into())],
                last.rumors_received,
                stats.rumors_received,
            ),
            (
                &self.rumors,
                vec![("event", "accepted".into())],
                last.rumors_accepted,
                stats.rumors_accepted,
            ),
        ];
        for (family, labels, before, now) in pairs {
            advance(&family.get_or_create(&labels), before, now);
        }
        for (reason, now) in &stats.dropped {
            let before = last.dropped.get(reason).copied().unwrap_or(0);
            advance(
                &self
                    .dropped
                    .get_or_create(&vec![("reason", (*reason).to_string())]),
                before,
                *now,
            );
        }
        self.local_health.set(i64::from(local_health));
        self.rumors_stored.set(store.len() as i64);
        self.rumor_bytes_stored
            .set(i64::try_from(store.bytes()).unwrap_or(i64::MAX));
        let retirements = store.update_counter(RumorKind::Retirement);
        advance(&self.retirements, self.last_retirements, retirements);
        self.last_retirements = retirements;
        let conflicts = node_name_conflicts(members.iter().map(|m| (&m.identity, m.health)));
        self.node_name_conflicts.set(conflicts.len() as i64);
        self.last = stats.clone();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counters_follow_the_node_and_only_grow() {
        let mut metrics = Metrics::new();
        let mut stats = NodeStats {
            bytes_sent: 100,
            ..NodeStats::default()
        };
        stats.dropped.insert("unknown_key", 3);
        let text = metrics.render(&stats, &[], 0, &Store::new());
        assert!(
            text.contains("hab_gossip_bytes_total{direction=\"out\"} 100"),
            "{text}"
        );
        assert!(
            text.contains("hab_gossip_dropped_total{reason=\"unknown_key\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("hab_gossip_members{health=\"alive\"} 0"),
            "{text}"
        );
        stats.bytes_sent = 150;
        stats.rumors_forwarded = 4;
        let mut store = Store::new();
        store.insert(
            crate::gossip::rumor::Rumor::Retirement(crate::gossip::rumor::RetirementRumor {
                service_group: crate::gossip::rumor::ServiceGroup::parse("pg.default").unwrap(),
                member_id: crate::gossip::member::MemberId([3; 16]),
                incarnation: 1,
                retired_by: crate::gossip::member::MemberId([1; 16]),
                term: 7,
            }),
            0,
        );
        let text = metrics.render(&stats, &[], 2, &store);
        assert!(text.contains("hab_gossip_retirements_total 1"), "{text}");
        assert!(text.contains("hab_gossip_rumors_stored 1"), "{text}");
        assert!(
            text.contains("hab_gossip_bytes_total{direction=\"out\"} 150"),
            "{text}"
        );
        assert!(
            text.contains("hab_gossip_rumors_total{event=\"forwarded\"} 4"),
            "{text}"
        );
        assert!(text.contains("hab_gossip_local_health 2"), "{text}");
        assert!(text.contains("hab_gossip_node_name_conflicts 0"), "{text}");
    }

    #[test]
    fn a_node_name_held_by_two_up_members_counts_once() {
        use crate::gossip::member::{Identity, MemberId};
        let view = |n: u8, node: &str, health| MemberView {
            identity: Identity {
                id: MemberId([n; 16]),
                incarnation: 1,
                node: node.into(),
                addr: format!("10.0.0.{n}:9638").parse().unwrap(),
                persistent: false,
                named: false,
            },
            health,
        };
        let members = [
            view(1, "host", Health::Alive),
            view(2, "host", Health::Alive),
            view(3, "host", Health::Suspect),
            view(4, "other", Health::Alive),
            view(5, "other", Health::Confirmed),
        ];
        let text = Metrics::new().render(&NodeStats::default(), &members, 0, &Store::new());
        assert!(text.contains("hab_gossip_node_name_conflicts 1"), "{text}");
    }
}
