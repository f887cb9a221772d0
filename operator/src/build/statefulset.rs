//! The StatefulSet `<name>`: one pod per member, each running `hab sup run` in the
//! application's image with the `hab` binary copied in from the sidecar image.
//!
//! Pods start in parallel (a ring has no start order), update `OnDelete` (the operator picks
//! which pod to replace next, followers first and the leader last: `rollout`), and carry no
//! API credentials (`automountServiceAccountToken: false`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecretKeySelector, SecretVolumeSource, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::secrets::{CTL_SECRET_KEY, GATEWAY_TOKEN_KEY};
use super::{
    child_meta, config_secret_name, ctl_secret_name, gateway_secret_name, labels,
    peers_service_name, selector_labels, BuildConfig, CTL_PORT, GOSSIP_PORT, HTTP_PORT,
};
use crate::crd::Habitat;

/// Name of the application container.
pub const APP_CONTAINER: &str = "habitat";
/// Where the init container puts the `hab` binary in the application container.
pub const HAB_BIN_DIR: &str = "/hab-bin";
/// Key of the ring key Secret that holds the key file's content.
pub const RING_KEY_SECRET_KEY: &str = "ring-key";
/// Key of a config Secret that holds user.toml.
pub const USER_TOML_KEY: &str = "user.toml";
/// Peers every member is told about: the first pods of the StatefulSet.
const MAX_PEERS: i32 = 3;
/// Environment variables the operator sets; the spec's `env` cannot replace them.
const RESERVED_ENV: [&str; 5] = [
    "HAB_NODE_NAME",
    "POD_IP",
    "HAB_RING_KEY",
    "HAB_CTL_SECRET",
    "HAB_SUP_GATEWAY_AUTH_TOKEN",
];
/// Default `terminationGracePeriodSeconds` of the pods. Kubernetes' 30 s is tight for a
/// graceful leave: after SIGTERM the supervisor waits up to the package's SHUTDOWN_TIMEOUT
/// (8 s by default, as in Habitat), runs the post-stop hook, then hands over leadership and
/// gossips its departure; 60 s leaves room for a post-stop hook of half a minute.
pub const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 60;
/// Node label the default anti-affinity spreads a leader group over.
pub const HOSTNAME_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";
/// Node label `pod.spreadOverZones` spreads the members over.
pub const ZONE_TOPOLOGY_KEY: &str = "topology.kubernetes.io/zone";

/// Affinity of the pods: the spec's `pod.affinity` as given, else for topologies that elect a
/// leader a preferred anti-affinity to the resource's own pods on the node. Preferred, not
/// required: a cluster with fewer nodes than members still runs them all, but a scheduler
/// that can spread them keeps one node's failure from taking the quorum.
pub fn affinity(hab: &Habitat) -> Option<Affinity> {
    if let Some(affinity) = hab.spec.pod.as_ref().and_then(|p| p.affinity.clone()) {
        return Some(affinity);
    }
    hab.spec.service.topology.elects_leader().then(|| Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(hab)),
                            ..LabelSelector::default()
                        }),
                        topology_key: HOSTNAME_TOPOLOGY_KEY.to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    })
}

/// `pod.spreadOverZones`: members spread over zones as evenly as the scheduler can, never
/// left unscheduled for it (ScheduleAnyway).
fn topology_spread(hab: &Habitat) -> Option<Vec<TopologySpreadConstraint>> {
    let spread = hab.spec.pod.as_ref().is_some_and(|p| p.spread_over_zones);
    spread.then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: ZONE_TOPOLOGY_KEY.to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(hab)),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]
    })
}

/// Requests of the init container when `pod.initResources` is not given: it runs one `cp`
/// of a ~20 MB binary, and a request keeps quota-enforcing namespaces from refusing the pod.
fn init_resources(hab: &Habitat) -> ResourceRequirements {
    hab.spec
        .pod
        .as_ref()
        .and_then(|p| p.init_resources.clone())
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("10m".to_owned())),
                ("memory".to_owned(), Quantity("16Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("64Mi".to_owned()),
            )])),
            ..ResourceRequirements::default()
        })
}

/// The StatefulSet of `hab`, whose binds name no other resource's pods.
pub fn statefulset(hab: &Habitat, config: &BuildConfig) -> StatefulSet {
    statefulset_bound(hab, config, &[])
}

/// The StatefulSet of `hab`, whose members also peer with `bound_peers` (`bound_peers`): the
/// members of the service groups its binds name join the same ring only through a peer.
pub fn statefulset_bound(
    hab: &Habitat,
    config: &BuildConfig,
    bound_peers: &[String],
) -> StatefulSet {
    let spec = &hab.spec;
    let pod = spec.pod.clone().unwrap_or_default();

    let mut pod_labels = pod.labels.clone();
    pod_labels.extend(labels(hab));
    let pod_annotations = (!pod.annotations.is_empty()).then(|| pod.annotations.clone());

    let volume_claim_templates = spec.persistent_storage.as_ref().map(|storage| {
        vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".to_owned()),
                labels: Some(labels(hab)),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                storage_class_name: storage.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity(storage.size.clone()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }]
    });

    // Always set (Retain by default), so the data-keeping default does not depend on the
    // API server's defaulting and a later `Delete` is a plain update of a mutable field.
    let retention = spec.persistent_storage.as_ref().map(|storage| {
        let policy = storage.retention_policy.unwrap_or_default();
        StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some(policy.when_deleted.as_str().to_owned()),
            when_scaled: Some(policy.when_scaled.as_str().to_owned()),
        }
    });

    StatefulSet {
        metadata: child_meta(hab, hab.name_any()),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.count),
            persistent_volume_claim_retention_policy: retention,
            service_name: Some(peers_service_name(hab)),
            pod_management_policy: Some("Parallel".to_owned()),
            // The StatefulSet controller would roll by ordinal, blind to the leader: the
            // operator deletes outdated pods itself, in election-aware order.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(hab)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: pod_annotations,
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(
                        pod.termination_grace_period_seconds
                            .unwrap_or(DEFAULT_TERMINATION_GRACE_SECONDS),
                    ),
                    service_account_name: pod.service_account_name.clone(),
                    security_context: pod.security_context.clone(),
                    node_selector: (!pod.node_selector.is_empty())
                        .then(|| pod.node_selector.clone()),
                    affinity: affinity(hab),
                    topology_spread_constraints: topology_spread(hab),
                    tolerations: (!pod.tolerations.is_empty()).then(|| pod.tolerations.clone()),
                    image_pull_secrets: (!pod.image_pull_secrets.is_empty())
                        .then(|| pod.image_pull_secrets.clone()),
                    init_containers: Some(vec![install_hab_container(hab, config)]),
                    containers: vec![app_container(hab, bound_peers)],
                    volumes: Some(volumes(hab)),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates,
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// Copies `hab` from the sidecar image into the shared emptyDir.
fn install_hab_container(hab: &Habitat, config: &BuildConfig) -> Container {
    Container {
        name: "install-hab".to_owned(),
        image: Some(config.sidecar_image.clone()),
        command: Some(vec![
            "cp".to_owned(),
            "/bin/hab".to_owned(),
            format!("{HAB_BIN_DIR}/hab"),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: "hab-bin".to_owned(),
            mount_path: HAB_BIN_DIR.to_owned(),
            ..VolumeMount::default()
        }]),
        resources: Some(init_resources(hab)),
        ..Container::default()
    }
}

/// Peers in the service groups `hab` binds to: for every bind, the first pods (up to three)
/// of each resource in `others` (same namespace) that runs that service group. Without one, a
/// bound group lives in a ring of its own and the bind never resolves. Sorted, no duplicates.
pub fn bound_peers<'a>(
    hab: &Habitat,
    others: impl IntoIterator<Item = &'a Habitat>,
) -> Vec<String> {
    let binds = &hab.spec.service.binds;
    let mut peers: Vec<String> = others
        .into_iter()
        .filter(|other| other.name_any() != hab.name_any())
        .filter(|other| {
            let service = &other.spec.service;
            binds
                .iter()
                .any(|b| b.service == service.name && b.group == service.group)
        })
        .flat_map(|other| {
            let name = other.name_any();
            let service = peers_service_name(other);
            (0..other.spec.count.clamp(1, MAX_PEERS)).map(move |n| format!("{name}-{n}.{service}"))
        })
        .collect();
    peers.sort();
    peers.dedup();
    peers
}

/// `hab sup run` arguments of a member of `hab`.
pub fn sup_run_args(hab: &Habitat) -> Vec<String> {
    sup_run_args_bound(hab, &[])
}

/// `hab sup run` arguments of a member of `hab` that also peers with `bound_peers`.
pub fn sup_run_args_bound(hab: &Habitat, bound_peers: &[String]) -> Vec<String> {
    let service = &hab.spec.service;
    let mut args: Vec<String> = vec!["sup".into(), "run".into()];
    args.extend(service.package.clone());
    // Gossip binds the pod's IP so the supervisor advertises an address its peers can reach;
    // the gateways listen everywhere for probes and port-forwarding.
    args.extend([
        "--listen-gossip".into(),
        format!("$(POD_IP):{GOSSIP_PORT}"),
        "--listen-http".into(),
        format!("0.0.0.0:{HTTP_PORT}"),
        "--listen-ctl".into(),
        format!("0.0.0.0:{CTL_PORT}"),
    ]);
    let peers = peers_service_name(hab);
    for ordinal in 0..hab.spec.count.clamp(1, MAX_PEERS) {
        args.push("--peer".into());
        args.push(format!("{}-{ordinal}.{peers}", hab.name_any()));
    }
    for peer in bound_peers {
        args.push("--peer".into());
        args.push(peer.clone());
    }
    args.extend([
        "--group".into(),
        service.group.clone(),
        "--topology".into(),
        service.topology.as_str().into(),
    ]);
    // Following a channel in place needs both a channel and a depot: only then do the
    // supervisors get the update flags (a strategy alone has nothing to follow; on Kubernetes
    // the operator's rollout replaces pods whose template changed).
    if let (Some(channel), Some(url)) = (&service.channel, &service.url) {
        args.extend([
            "--strategy".into(),
            service.strategy.as_str().into(),
            "--channel".into(),
            channel.clone(),
            "--url".into(),
            url.clone(),
        ]);
        if let Some(period) = service.update_period {
            args.extend(["--update-period".into(), period.to_string()]);
        }
    }
    for bind in &service.binds {
        args.push("--bind".into());
        args.push(format!("{}:{}.{}", bind.name, bind.service, bind.group));
    }
    if let Some(interval) = service.health_check_interval {
        args.extend(["--health-check-interval".into(), interval.to_string()]);
    }
    args
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn secret_env(name: &str, secret: String, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret,
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn app_env(hab: &Habitat) -> Vec<EnvVar> {
    let mut env = vec![
        field_env("HAB_NODE_NAME", "metadata.name"),
        field_env("POD_IP", "status.podIP"),
        // The supervisor keeps both out of its services' and hooks' environment.
        secret_env("HAB_CTL_SECRET", ctl_secret_name(hab), CTL_SECRET_KEY),
        secret_env(
            "HAB_SUP_GATEWAY_AUTH_TOKEN",
            gateway_secret_name(hab),
            GATEWAY_TOKEN_KEY,
        ),
    ];
    if let Some(secret) = &hab.spec.service.ring_secret_name {
        env.push(secret_env(
            "HAB_RING_KEY",
            secret.clone(),
            RING_KEY_SECRET_KEY,
        ));
    }
    env.extend(
        hab.spec
            .env
            .iter()
            .filter(|e| !RESERVED_ENV.contains(&e.name.as_str()))
            .cloned(),
    );
    env
}

fn port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some(protocol.to_owned()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn app_container(hab: &Habitat, bound_peers: &[String]) -> Container {
    let service = &hab.spec.service;
    let mut mounts = vec![VolumeMount {
        name: "hab-bin".to_owned(),
        mount_path: HAB_BIN_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    if service.config.is_some() || service.config_secret_name.is_some() {
        mounts.push(VolumeMount {
            name: "user-toml".to_owned(),
            mount_path: format!("/hab/user/{}/config", service.name),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    // `filesSecretName` is not mounted: its keys reach the ring as file rumors, which the
    // supervisor writes to /hab/svc/<name>/files itself (a read-only mount there would
    // refuse them).
    if let Some(storage) = &hab.spec.persistent_storage {
        mounts.push(VolumeMount {
            name: "data".to_owned(),
            mount_path: storage
                .mount_path
                .clone()
                .unwrap_or_else(|| format!("/hab/svc/{}/data", service.name)),
            ..VolumeMount::default()
        });
    }
    Container {
        name: APP_CONTAINER.to_owned(),
        image: Some(hab.spec.image.clone()),
        command: Some(vec![format!("{HAB_BIN_DIR}/hab")]),
        args: Some(sup_run_args_bound(hab, bound_peers)),
        env: Some(app_env(hab)),
        ports: Some(vec![
            port("gossip-tcp", GOSSIP_PORT, "TCP"),
            port("gossip-udp", GOSSIP_PORT, "UDP"),
            port("http", HTTP_PORT, "TCP"),
            port("ctl", CTL_PORT, "TCP"),
        ]),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        resources: hab.spec.pod.as_ref().and_then(|p| p.resources.clone()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn secret_volume(name: &str, secret: &str, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items,
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn volumes(hab: &Habitat) -> Vec<Volume> {
    let service = &hab.spec.service;
    let mut volumes = vec![Volume {
        name: "hab-bin".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let user_toml = service
        .config_secret_name
        .clone()
        .or_else(|| service.config.as_ref().map(|_| config_secret_name(hab)));
    if let Some(secret) = user_toml {
        volumes.push(secret_volume(
            "user-toml",
            &secret,
            Some(vec![KeyToPath {
                key: USER_TOML_KEY.to_owned(),
                path: USER_TOML_KEY.to_owned(),
                ..KeyToPath::default()
            }]),
        ));
    }
    volumes
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_without_a_depot_passes_no_update_flags() {
        let mut hab = Habitat::test("db").leader();
        hab.spec.service.strategy = crate::crd::Strategy::Rolling;
        hab.spec.service.channel = Some("stable".into());
        let args = sup_run_args(&hab);
        assert!(
            !args
                .iter()
                .any(|a| a == "--strategy" || a == "--channel" || a == "--url"),
            "{args:?}"
        );
    }

    #[test]
    fn a_channel_with_a_depot_makes_the_supervisors_follow_it_in_place() {
        let mut hab = Habitat::test("db")
            .leader()
            .package("core/db")
            .strategy(crate::crd::Strategy::Rolling)
            .channel("stable", "http://depot.infra:9636");
        let args = sup_run_args(&hab);
        let tail: Vec<&str> = args
            .iter()
            .skip_while(|a| *a != "--strategy")
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            [
                "--strategy",
                "rolling",
                "--channel",
                "stable",
                "--url",
                "http://depot.infra:9636"
            ]
        );
        hab.spec.service.update_period = Some(30);
        hab.spec.service.strategy = crate::crd::Strategy::AtOnce;
        let args = sup_run_args(&hab);
        let pairs: Vec<_> = args
            .windows(2)
            .map(|w| (w[0].as_str(), w[1].as_str()))
            .collect();
        assert!(pairs.contains(&("--strategy", "at-once")), "{args:?}");
        assert!(pairs.contains(&("--update-period", "30")), "{args:?}");
        assert_golden("statefulset-channel", &build(&hab));
    }
    use crate::build::golden::assert_golden;
    use crate::crd::{PodOverrides, Topology};
    use k8s_openapi::api::core::v1::Toleration;

    fn build(hab: &Habitat) -> StatefulSet {
        statefulset(hab, &BuildConfig::default())
    }

    fn pod_spec(sts: &StatefulSet) -> PodSpec {
        sts.spec.clone().unwrap().template.spec.unwrap()
    }

    #[test]
    fn standalone_statefulset_matches_golden() {
        assert_golden("statefulset-standalone", &build(&Habitat::test("web")));
    }

    #[test]
    fn full_statefulset_matches_golden() {
        let hab = Habitat::test("db")
            .leader()
            .count(3)
            .package("core/postgresql")
            .bind("cache", "redis", "default")
            .config("port = 5432\n")
            .ring_key("prod-20260101000000")
            .storage("10Gi")
            .pod(PodOverrides {
                node_selector: [("disk".to_owned(), "ssd".to_owned())].into(),
                tolerations: vec![Toleration {
                    key: Some("dedicated".to_owned()),
                    operator: Some("Exists".to_owned()),
                    ..Toleration::default()
                }],
                service_account_name: Some("db".to_owned()),
                labels: [("team".to_owned(), "data".to_owned())].into(),
                annotations: [("example.com/owner".to_owned(), "data".to_owned())].into(),
                ..PodOverrides::default()
            });
        assert_golden("statefulset-full", &build(&hab));
    }

    #[test]
    fn leader_groups_prefer_distinct_nodes_and_standalone_groups_get_no_affinity() {
        for hab in [
            Habitat::test("db").leader().count(3),
            Habitat::test("db").count(3).topology(Topology::Initializer),
        ] {
            let affinity = pod_spec(&build(&hab)).affinity.expect("default affinity");
            let anti = affinity.pod_anti_affinity.expect("podAntiAffinity");
            assert!(anti
                .required_during_scheduling_ignored_during_execution
                .is_none());
            let terms = anti
                .preferred_during_scheduling_ignored_during_execution
                .unwrap();
            assert_eq!(terms.len(), 1);
            assert_eq!(terms[0].weight, 100);
            let term = &terms[0].pod_affinity_term;
            assert_eq!(term.topology_key, "kubernetes.io/hostname");
            assert_eq!(
                term.label_selector.clone().unwrap().match_labels,
                Some(selector_labels(&hab))
            );
            assert!(affinity.node_affinity.is_none() && affinity.pod_affinity.is_none());
        }
        let standalone = pod_spec(&build(&Habitat::test("web").count(3)));
        assert!(standalone.affinity.is_none());
        assert!(standalone.topology_spread_constraints.is_none());
    }

    #[test]
    fn the_pods_affinity_replaces_the_default_and_zones_spread_only_when_asked() {
        let own = Affinity {
            node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity::default()),
            ..Affinity::default()
        };
        let hab = Habitat::test("db").leader().count(3).pod(PodOverrides {
            affinity: Some(own.clone()),
            spread_over_zones: true,
            ..PodOverrides::default()
        });
        let spec = pod_spec(&build(&hab));
        assert_eq!(spec.affinity, Some(own));
        let spread = spec.topology_spread_constraints.unwrap();
        assert_eq!(spread.len(), 1);
        assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
        assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
        assert_eq!(spread[0].max_skew, 1);
        assert_eq!(
            spread[0].label_selector.clone().unwrap().match_labels,
            Some(selector_labels(&hab))
        );
        assert_golden("statefulset-placement", &build(&hab));
    }

    #[test]
    fn the_init_container_has_resources_by_default_and_as_asked() {
        let spec = pod_spec(&build(&Habitat::test("web")));
        let init = &spec.init_containers.unwrap()[0];
        let requests = init.resources.clone().unwrap().requests.unwrap();
        assert_eq!(requests["cpu"].0, "10m");
        let asked = ResourceRequirements {
            requests: Some(BTreeMap::from([(
                "cpu".to_owned(),
                Quantity("100m".to_owned()),
            )])),
            ..ResourceRequirements::default()
        };
        let hab = Habitat::test("web").pod(PodOverrides {
            init_resources: Some(asked.clone()),
            ..PodOverrides::default()
        });
        let init = &pod_spec(&build(&hab)).init_containers.unwrap()[0];
        assert_eq!(init.resources, Some(asked));
    }

    #[test]
    fn pods_start_in_parallel_and_the_operator_replaces_them_on_delete() {
        let spec = build(&Habitat::test("web").count(5)).spec.unwrap();
        assert_eq!(spec.replicas, Some(5));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let strategy = spec.update_strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
        assert_eq!(strategy.rolling_update, None);
        assert_eq!(spec.service_name.as_deref(), Some("web-peers"));
    }

    #[test]
    fn volumes_are_kept_on_delete_and_scale_down_unless_asked() {
        let policy = |hab: &Habitat| {
            build(hab)
                .spec
                .unwrap()
                .persistent_volume_claim_retention_policy
        };
        assert_eq!(policy(&Habitat::test("web")), None);
        let kept = policy(&Habitat::test("web").storage("1Gi")).unwrap();
        assert_eq!(kept.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(kept.when_scaled.as_deref(), Some("Retain"));
        let deleted = policy(&Habitat::test("web").storage("1Gi").delete_claims()).unwrap();
        assert_eq!(deleted.when_deleted.as_deref(), Some("Delete"));
        assert_eq!(deleted.when_scaled.as_deref(), Some("Delete"));
    }

    #[test]
    fn pods_get_time_for_a_graceful_leave() {
        let pod = pod_spec(&build(&Habitat::test("web")));
        // More than Kubernetes' 30 s: SHUTDOWN_TIMEOUT (8 s), post-stop, leaving the ring.
        assert_eq!(pod.termination_grace_period_seconds, Some(60));
        let hab = Habitat::test("web").pod(PodOverrides {
            termination_grace_period_seconds: Some(300),
            ..PodOverrides::default()
        });
        assert_eq!(
            pod_spec(&build(&hab)).termination_grace_period_seconds,
            Some(300)
        );
    }

    #[test]
    fn pods_have_no_api_credentials() {
        let pod = pod_spec(&build(&Habitat::test("web")));
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn members_peer_with_the_first_three_pods() {
        let args = sup_run_args(&Habitat::test("web").count(5));
        let peers: Vec<_> = args
            .windows(2)
            .filter(|w| w[0] == "--peer")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(
            peers,
            ["web-0.web-peers", "web-1.web-peers", "web-2.web-peers"]
        );
        let one = sup_run_args(&Habitat::test("web"));
        assert_eq!(one.iter().filter(|a| *a == "--peer").count(), 1);
    }

    #[test]
    fn members_also_peer_with_the_groups_they_bind_to() {
        let web = Habitat::test("web").bind("database", "postgresql", "default");
        let db = Habitat::test("db").leader().count(5);
        let mut db_prod = Habitat::test("db-prod").count(2);
        db_prod.spec.service.group = "prod".into();
        let mut other = Habitat::test("cache");
        other.spec.service.name = "redis".into();
        let mut named_db = Habitat::test("pg");
        named_db.spec.service.name = "postgresql".into();
        let db_service = {
            let mut db = db.clone();
            db.spec.service.name = "postgresql".into();
            db
        };
        let peers = bound_peers(&web, [&web, &db_service, &db_prod, &other, &named_db, &db]);
        assert_eq!(
            peers,
            [
                "db-0.db-peers",
                "db-1.db-peers",
                "db-2.db-peers",
                "pg-0.pg-peers"
            ]
        );
        let args = sup_run_args_bound(&web, &peers);
        let listed: Vec<_> = args
            .windows(2)
            .filter(|w| w[0] == "--peer")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(listed[0], "web-0.web-peers");
        assert_eq!(&listed[1..], peers);
        // No binds: no foreign peers.
        assert!(bound_peers(&db_service, [&web, &named_db]).is_empty());
    }

    #[test]
    fn user_env_cannot_replace_the_operators_env() {
        let mut hab = Habitat::test("web");
        hab.spec.env = vec![
            EnvVar {
                name: "HAB_NODE_NAME".to_owned(),
                value: Some("evil".to_owned()),
                ..EnvVar::default()
            },
            EnvVar {
                name: "MODE".to_owned(),
                value: Some("fast".to_owned()),
                ..EnvVar::default()
            },
        ];
        let pod = pod_spec(&build(&hab));
        let names: Vec<_> = pod.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "HAB_NODE_NAME",
                "POD_IP",
                "HAB_CTL_SECRET",
                "HAB_SUP_GATEWAY_AUTH_TOKEN",
                "MODE"
            ]
        );
    }

    #[test]
    fn members_get_the_ctl_secret_and_gateway_token_and_files_are_not_mounted() {
        let mut hab = Habitat::test("web");
        hab.spec.service.files_secret_name = Some("web-files".to_owned());
        let pod = pod_spec(&build(&hab));
        let env = pod.containers[0].env.clone().unwrap();
        let from = |name: &str| {
            let e = env.iter().find(|e| e.name == name).unwrap();
            let r = e.value_from.clone().unwrap().secret_key_ref.unwrap();
            (r.name, r.key)
        };
        assert_eq!(
            from("HAB_CTL_SECRET"),
            ("web-ctl".into(), "ctl-secret".into())
        );
        assert_eq!(
            from("HAB_SUP_GATEWAY_AUTH_TOKEN"),
            ("web-gateway".into(), "token".into())
        );
        assert!(pod.volumes.unwrap().iter().all(|v| v.name != "files"));
    }

    #[test]
    fn operator_labels_win_over_pod_labels() {
        let hab = Habitat::test("web").pod(PodOverrides {
            labels: [("habitat.sh/habitat".to_owned(), "other".to_owned())].into(),
            ..PodOverrides::default()
        });
        let sts = build(&hab);
        let labels = sts.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["habitat.sh/habitat"], "web");
    }
}
