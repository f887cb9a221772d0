//! The NetworkPolicy `<name>` (`spec.networkPolicy.enabled`): keeps other pods off the
//! supervisors' ports.
//!
//! - gossip (9638 TCP and UDP) only from pods of the same ring: this resource's pods and those
//!   of every resource bound to it, directly or through others (a ring is the connected part
//!   of the bind graph: each member gossips with every other, not only with its bind's);
//! - the HTTP gateway (9631 TCP) only from the operator's namespace (the census stream, the
//!   rollout's health checks). Kubelet probes come from the node, which most CNIs (Calico,
//!   Cilium, kube-router) always let reach the node's pods, so the probes keep working;
//! - the ctl gateway (9632 TCP) only from the operator's pods and `spec.networkPolicy.ctlFrom`;
//! - every other port (the application's) from anywhere, as port ranges around those three,
//!   unless `closeOtherPorts` (a policy that selects a pod closes every port it does not list,
//!   and "all but these ports" cannot be said otherwise).
//!
//! Ring members are named by their selector label (`habitat.sh/habitat`), already on every pod:
//! no label has to be added to (and roll) the pods when binds change.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{
    child_meta, selector_labels, BuildConfig, CTL_PORT, GOSSIP_PORT, HTTP_PORT, SELECTOR_LABEL,
};
use crate::crd::Habitat;

/// Label every namespace carries with its own name (set by the API server).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Whether `a` binds to the service group `b` runs.
fn binds_to(a: &Habitat, b: &Habitat) -> bool {
    let service = &b.spec.service;
    a.spec
        .service
        .binds
        .iter()
        .any(|bind| bind.service == service.name && bind.group == service.group)
}

/// Names of the resources among `all` (those of `hab`'s namespace) in `hab`'s ring: every
/// resource reached from `hab` by following binds in either direction, `hab` included. Sorted.
pub fn ring_of<'a>(hab: &Habitat, all: impl IntoIterator<Item = &'a Habitat>) -> Vec<String> {
    let all: Vec<&Habitat> = all
        .into_iter()
        .filter(|other| other.namespace() == hab.namespace() && other.name_any() != hab.name_any())
        .collect();
    let mut ring: BTreeSet<String> = BTreeSet::from([hab.name_any()]);
    let mut frontier: Vec<&Habitat> = vec![hab];
    while let Some(current) = frontier.pop() {
        for other in &all {
            if ring.contains(&other.name_any()) {
                continue;
            }
            if binds_to(current, other) || binds_to(other, current) {
                ring.insert(other.name_any());
                frontier.push(other);
            }
        }
    }
    ring.into_iter().collect()
}

fn port(port: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some(protocol.to_owned()),
        ..NetworkPolicyPort::default()
    }
}

fn range(from: i32, to: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(from)),
        end_port: Some(to),
        protocol: Some(protocol.to_owned()),
    }
}

/// Every TCP and UDP port but the supervisor's (9631, 9632, 9638).
fn other_ports() -> Vec<NetworkPolicyPort> {
    let mut ports = Vec::new();
    for protocol in ["TCP", "UDP"] {
        ports.push(range(1, HTTP_PORT - 1, protocol));
        ports.push(range(CTL_PORT + 1, GOSSIP_PORT - 1, protocol));
        ports.push(range(GOSSIP_PORT + 1, 65535, protocol));
    }
    ports
}

fn namespace_selector(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            NAMESPACE_NAME_LABEL.to_owned(),
            namespace.to_owned(),
        )])),
        ..LabelSelector::default()
    }
}

/// The selector of the pods of the resources named `ring` (`ring_of`).
pub fn ring_selector(ring: &[String]) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: SELECTOR_LABEL.to_owned(),
            operator: "In".to_owned(),
            values: Some(ring.to_vec()),
        }]),
        ..LabelSelector::default()
    }
}

/// The NetworkPolicy of `hab`, whose ring holds the resources named `ring` (`ring_of`).
pub fn network_policy(hab: &Habitat, config: &BuildConfig, ring: &[String]) -> NetworkPolicy {
    let mut ring = ring.to_vec();
    if !ring.contains(&hab.name_any()) {
        ring.push(hab.name_any());
        ring.sort();
    }
    let gossip = NetworkPolicyIngressRule {
        ports: Some(vec![port(GOSSIP_PORT, "TCP"), port(GOSSIP_PORT, "UDP")]),
        from: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(ring_selector(&ring)),
            ..NetworkPolicyPeer::default()
        }]),
    };
    let http = NetworkPolicyIngressRule {
        ports: Some(vec![port(HTTP_PORT, "TCP")]),
        from: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_selector(&config.operator_namespace)),
            ..NetworkPolicyPeer::default()
        }]),
    };
    let mut ctl_from = vec![NetworkPolicyPeer {
        namespace_selector: Some(namespace_selector(&config.operator_namespace)),
        pod_selector: Some(LabelSelector {
            match_labels: Some(config.operator_pod_labels.clone()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }];
    ctl_from.extend(
        hab.spec
            .network_policy
            .iter()
            .flat_map(|n| n.ctl_from.iter().cloned()),
    );
    let ctl = NetworkPolicyIngressRule {
        ports: Some(vec![port(CTL_PORT, "TCP")]),
        from: Some(ctl_from),
    };
    let mut ingress = vec![gossip, http, ctl];
    let close = hab
        .spec
        .network_policy
        .as_ref()
        .is_some_and(|n| n.close_other_ports);
    if !close {
        // No `from`: any source.
        ingress.push(NetworkPolicyIngressRule {
            ports: Some(other_ports()),
            from: None,
        });
    }
    NetworkPolicy {
        metadata: child_meta(hab, hab.name_any()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(hab)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::build::golden::assert_golden;
    use crate::crd::NetworkPolicySpec as Spec;

    fn enabled(hab: Habitat, ctl_from: Vec<NetworkPolicyPeer>) -> Habitat {
        let mut hab = hab;
        hab.spec.network_policy = Some(Spec {
            enabled: true,
            ctl_from,
            close_other_ports: false,
        });
        hab
    }

    #[test]
    fn a_ring_is_every_resource_reached_through_binds_in_either_direction() {
        let db = Habitat::test("db").leader().count(3);
        let web = Habitat::test("web").bind("database", "db", "default");
        let cache = Habitat::test("cache");
        let api = Habitat::test("api").bind("cache", "cache", "default");
        // A proxy binds to web: it gossips with db's members too.
        let proxy = Habitat::test("proxy").bind("backend", "web", "default");
        let elsewhere = Habitat::test("db2")
            .in_namespace("other")
            .bind("database", "db", "default");
        let all = [&db, &web, &cache, &api, &proxy, &elsewhere];
        assert_eq!(ring_of(&db, all), ["db", "proxy", "web"]);
        assert_eq!(ring_of(&proxy, all), ["db", "proxy", "web"]);
        assert_eq!(ring_of(&cache, all), ["api", "cache"]);
        assert_eq!(ring_of(&Habitat::test("lone"), all), ["lone"]);
        // A bind to another group of the same service is another ring.
        let staging = Habitat::test("web").bind("database", "db", "staging");
        assert_eq!(ring_of(&staging, [&db]), ["web"]);
    }

    #[test]
    fn the_policy_lets_in_the_ring_the_operator_and_the_listed_ctl_sources() {
        let extra = NetworkPolicyPeer {
            namespace_selector: Some(namespace_selector("ops")),
            ..NetworkPolicyPeer::default()
        };
        let db = enabled(Habitat::test("db").leader().count(3), vec![extra.clone()]);
        let config = BuildConfig {
            operator_namespace: "habitat-system".to_owned(),
            ..BuildConfig::default()
        };
        let policy = network_policy(&db, &config, &["web".to_owned()]);
        assert_eq!(policy.metadata.name.as_deref(), Some("db"));
        let spec = policy.spec.clone().unwrap();
        assert_eq!(
            spec.pod_selector.unwrap().match_labels,
            Some(selector_labels(&db))
        );
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
        let rules = spec.ingress.unwrap();
        let ports = |i: usize| -> Vec<(i32, String)> {
            rules[i]
                .ports
                .clone()
                .unwrap()
                .into_iter()
                .map(|p| {
                    let IntOrString::Int(n) = p.port.unwrap() else {
                        panic!("named port")
                    };
                    (n, p.protocol.unwrap())
                })
                .collect()
        };
        assert_eq!(ports(0), [(9638, "TCP".into()), (9638, "UDP".into())]);
        assert_eq!(ports(1), [(9631, "TCP".into())]);
        assert_eq!(ports(2), [(9632, "TCP".into())]);
        let gossip_from = rules[0].from.clone().unwrap();
        let expression = &gossip_from[0]
            .pod_selector
            .clone()
            .unwrap()
            .match_expressions
            .unwrap()[0];
        assert_eq!(expression.key, SELECTOR_LABEL);
        assert_eq!(
            expression.values,
            Some(vec!["db".to_owned(), "web".to_owned()])
        );
        assert!(
            gossip_from[0].namespace_selector.is_none(),
            "same namespace only"
        );
        let http_from = rules[1].from.clone().unwrap();
        assert_eq!(
            http_from[0]
                .namespace_selector
                .clone()
                .unwrap()
                .match_labels
                .unwrap()[NAMESPACE_NAME_LABEL],
            "habitat-system"
        );
        assert!(http_from[0].pod_selector.is_none());
        let ctl_from = rules[2].from.clone().unwrap();
        assert_eq!(ctl_from.len(), 2);
        assert_eq!(
            ctl_from[0].pod_selector.clone().unwrap().match_labels,
            Some(config.operator_pod_labels.clone())
        );
        assert_eq!(ctl_from[1], extra);
        // The application's ports stay open: every port but the supervisor's three, both
        // protocols, from anywhere.
        assert!(rules[3].from.is_none());
        let open: Vec<(i32, i32, String)> = rules[3]
            .ports
            .clone()
            .unwrap()
            .into_iter()
            .map(|p| {
                let IntOrString::Int(from) = p.port.unwrap() else {
                    panic!("named port")
                };
                (from, p.end_port.unwrap(), p.protocol.unwrap())
            })
            .collect();
        for protocol in ["TCP", "UDP"] {
            for port in [1, 80, 5432, 9630, 9633, 9637, 9639, 65535] {
                assert!(
                    open.iter()
                        .any(|(a, b, p)| p == protocol && (*a..=*b).contains(&port)),
                    "{port}/{protocol} open"
                );
            }
            for port in [9631, 9632, 9638] {
                assert!(
                    !open
                        .iter()
                        .any(|(a, b, p)| p == protocol && (*a..=*b).contains(&port)),
                    "{port}/{protocol} not open to all"
                );
            }
        }
        assert_golden("networkpolicy", &policy);
        // Closed: only the supervisor's rules.
        let mut closed = db.clone();
        if let Some(n) = closed.spec.network_policy.as_mut() {
            n.close_other_ports = true;
        }
        let rules = network_policy(&closed, &config, &[])
            .spec
            .unwrap()
            .ingress
            .unwrap();
        assert_eq!(rules.len(), 3);
    }

    #[test]
    fn a_resource_alone_lets_in_gossip_from_its_own_pods() {
        let web = enabled(Habitat::test("web"), Vec::new());
        let policy = network_policy(&web, &BuildConfig::default(), &[]);
        let rules = policy.spec.unwrap().ingress.unwrap();
        let selector = rules[0].from.clone().unwrap()[0]
            .pod_selector
            .clone()
            .unwrap();
        assert_eq!(
            selector.match_expressions.unwrap()[0].values,
            Some(vec!["web".to_owned()])
        );
        assert_eq!(rules[2].from.clone().unwrap().len(), 1);
    }
}
