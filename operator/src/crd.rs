//! The `Habitat` custom resource (`habitat.sh/v1`): one Habitat service group on Kubernetes.
//!
//! The Rust types are the single source of the CRD: `habitat-operator crd` prints
//! [`crd_yaml`], and the committed `crds/habitat.yaml` must equal it (a test checks). Rules the
//! API server enforces (CEL `x-kubernetes-validations`) live next to the fields they guard.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements, Toleration,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "habitat.sh";
/// Finalizer that earlier versions put on every resource (to delete the volumes). The operator
/// no longer needs one: it removes this one from resources that still carry it, so a delete
/// never waits for a running operator.
pub const LEGACY_FINALIZER: &str = "habitat.sh/cleanup";

/// A Habitat service group: a StatefulSet of pods, each running the application under a
/// `hab sup run` supervisor that joins the group's gossip ring.
// Printer columns repeat `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "habitat.sh",
    version = "v1",
    kind = "Habitat",
    plural = "habitats",
    singular = "habitat",
    shortname = "hab",
    namespaced,
    doc = "A Habitat service group: a StatefulSet of pods, each running the application under a `hab sup run` supervisor that joins the group's gossip ring.",
    status = "HabitatStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.count",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Topology",
        type_ = "string",
        json_path = ".spec.service.topology",
        description = "Topology of the service group"
    ),
    printcolumn(
        name = "Count",
        type_ = "integer",
        json_path = ".spec.count",
        description = "Desired number of members"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.census.ready",
        description = "Alive members in the ring's census of the desired count"
    ),
    printcolumn(
        name = "Leader",
        type_ = "string",
        json_path = ".status.census.leader.pod",
        description = "Pod of the elected leader (leader topologies)"
    ),
    printcolumn(
        name = "Election",
        type_ = "string",
        json_path = ".status.census.electionStatus",
        description = "Election status of the service group",
        priority = "1"
    ),
    printcolumn(
        name = "Config",
        type_ = "integer",
        json_path = ".status.census.configIncarnation",
        description = "Incarnation of the gossiped service config",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.persistentStorage) == has(oldSelf.persistentStorage)")
        .message("persistentStorage cannot be added or removed (a StatefulSet's volumeClaimTemplates are immutable); create a new resource instead"),
    // The claim template's labels name the service group.
    validation = Rule::new("!has(self.persistentStorage) || self.service.group == oldSelf.service.group")
        .message("service.group cannot change with persistentStorage (the volume claim template's labels name the service group, and a StatefulSet's volumeClaimTemplates are immutable)")
)]
pub struct HabitatSpec {
    /// Container image of the application: a Habitat-exported image, or any image with the
    /// package installed under /hab/pkgs. The `hab` supervisor binary is copied in from the
    /// sidecar image by an init container.
    #[x_kube(validation = Rule::new("self != ''").message("image must not be empty"))]
    #[schemars(length(max = 1024))]
    pub image: String,

    /// Number of members (pods) in the service group.
    #[serde(default = "default_count")]
    #[x_kube(validation = Rule::new("self >= 1").message("count must be at least 1"))]
    pub count: i32,

    /// The Habitat service each member runs, and how it joins the ring.
    pub service: ServiceSpec,

    /// Extra environment variables for the application container (the supervisor passes them
    /// on to the service's hooks and run script).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// A PersistentVolumeClaim per member, kept across pod restarts and rolling updates, and
    /// by default also when the resource is deleted or scaled down (`retentionPolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_storage: Option<PersistentStorage>,

    /// Overrides for the pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,

    /// When true the operator leaves the resource's children exactly as they are: no
    /// creation, update or scaling until it is set back to false.
    #[serde(default)]
    pub paused: bool,

    /// How the operator replaces pods when the pod template changes (image, package, env,
    /// config that restarts pods): followers first and the leader last, one at a time, each
    /// waiting until the new pod is Ready and the ring reports it alive and healthy
    /// (`service.strategy: at-once` replaces every outdated pod at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,

    /// A NetworkPolicy `<name>` that keeps other pods off the supervisors' ports: gossip
    /// (9638 TCP and UDP) only from pods of the same ring (this resource and the resources
    /// bound to it, transitively), the HTTP gateway (9631) only from the operator's namespace
    /// and the node (kubelet probes), the ctl gateway (9632) only from the operator's pods and
    /// `ctlFrom`. Off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
}

/// `spec.networkPolicy`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy (deleted again when set back to false).
    #[serde(default)]
    pub enabled: bool,
    /// Further sources allowed to reach the ctl gateway (9632), e.g. the pods of a
    /// workstation namespace that runs `hab config apply --remote-sup`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ctl_from: Vec<NetworkPolicyPeer>,
    /// When false (default) every other port (the application's) stays open to any source
    /// (port ranges around the supervisor's three); when true only the supervisor's ports are
    /// let in, and the application's clients need a NetworkPolicy of your own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close_other_ports: bool,
}

impl HabitatSpec {
    /// Whether `spec.networkPolicy.enabled`.
    pub fn network_policy_enabled(&self) -> bool {
        self.network_policy.as_ref().is_some_and(|n| n.enabled)
    }
}

/// How a rollout of a new pod template proceeds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Seconds a replaced pod gets to become Ready, alive in the ring and healthy before the
    /// rollout stops (Stalled: no further pod is replaced). Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self >= 1").message("rollout.progressDeadlineSeconds must be at least 1")
    )]
    pub progress_deadline_seconds: Option<i64>,
}

/// Default of `spec.rollout.progressDeadlineSeconds`, as a Deployment's.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i64 = 600;

impl HabitatSpec {
    /// `rollout.progressDeadlineSeconds`, or its default.
    pub fn progress_deadline_seconds(&self) -> i64 {
        self.rollout
            .as_ref()
            .and_then(|r| r.progress_deadline_seconds)
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
    }
}

/// The service each member runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.config) && has(self.configSecretName))")
        .message("set service.config or service.configSecretName, not both"),
    validation = Rule::new("!self.generateRingKey || has(self.ringSecretName)")
        .message("service.generateRingKey needs service.ringSecretName (the Secret to create)")
)]
pub struct ServiceSpec {
    /// Name of the service (the package name, e.g. `redis`); the service group is
    /// `<name>.<group>`. Immutable.
    #[x_kube(
        validation = Rule::new("self.matches('^[a-z0-9][-_a-z0-9]*$')")
            .message("service.name must be lower-case letters, digits, '-' or '_'"),
        validation = Rule::new("self == oldSelf").message("service.name is immutable")
    )]
    #[schemars(length(max = 63))]
    pub name: String,

    /// Package identifier to load, `origin/name[/version[/release]]` (e.g. `core/redis`). When
    /// empty the supervisor starts with no service loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self.matches('^[A-Za-z0-9_-]+/[A-Za-z0-9_-]+(/[^/]+(/[0-9]+)?)?$')")
            .message("service.package must be origin/name[/version[/release]]")
    )]
    #[schemars(length(max = 255))]
    pub package: Option<String>,

    /// Service group name.
    #[serde(default = "default_group")]
    #[x_kube(
        validation = Rule::new("self.matches('^[A-Za-z0-9_-]+$')")
            .message("service.group must be letters, digits, '-' or '_'")
    )]
    #[schemars(length(max = 63))]
    pub group: String,

    /// Topology: `standalone`, `leader` (members elect a leader) or `initializer` (followers
    /// start after the leader is healthy).
    #[serde(default)]
    #[x_kube(
        validation = Rule::new("self in ['standalone', 'leader', 'initializer']")
            .message("service.topology must be one of standalone, leader, initializer")
    )]
    pub topology: Topology,

    /// Update strategy: `none`, `at-once` or `rolling`. A change of the pod template (image,
    /// package, env) replaces the pods one at a time, followers first and the leader last,
    /// unless it is `at-once` (every outdated pod at once). With `channel` and `url` the
    /// supervisors also follow the channel in place with this strategy (`--strategy`).
    #[serde(default)]
    #[x_kube(
        validation = Rule::new("self in ['none', 'at-once', 'rolling']")
            .message("service.strategy must be one of none, at-once, rolling")
    )]
    pub strategy: Strategy,

    /// Package channel the supervisors follow for updates (e.g. `stable`), in place without a
    /// pod restart; needs `url` (`hab sup run --strategy S --channel C --url U`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self.matches('^[A-Za-z0-9_.-]+$')")
            .message("service.channel must be letters, digits, '.', '-' or '_'")
    )]
    #[schemars(length(max = 255))]
    pub channel: Option<String>,

    /// URL of the package depot the supervisors update from (`hab depot serve`, e.g.
    /// `http://depot.infra:9636`, or `file:///path` inside the image); with `channel` the
    /// supervisors follow that channel in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self.matches('^(https?|file)://[^ ]+$')")
            .message("service.url must be an http://, https:// or file:// URL")
    )]
    #[schemars(length(max = 2048))]
    pub url: Option<String>,

    /// Seconds between the supervisors' checks of the channel (`--update-period`, jittered;
    /// the supervisor's default, 60, when unset). Only with `channel` and `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self >= 1").message("service.updatePeriod must be at least 1 second")
    )]
    pub update_period: Option<i32>,

    /// Binds to other service groups, `hab sup run --bind NAME:SERVICE.GROUP`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub binds: Vec<Bind>,

    /// Service configuration (TOML): gossiped to the ring through a member's ctl gateway
    /// (`status.census.configIncarnation` shows it), and mounted as every member's user.toml
    /// so a service's first start already has it. Invalid TOML is not applied (Degraded,
    /// reason InvalidConfig).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,

    /// Name of a Secret in the same namespace whose key `user.toml` is used as `config` is
    /// (gossiped and mounted), instead of `config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_secret_name: Option<String>,

    /// Name of a Secret in the same namespace whose keys are gossiped to the ring as the
    /// service's files (`hab file upload`), one file per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_secret_name: Option<String>,

    /// Name of the Secret holding the ring key under the key `ring-key` (the content of a
    /// `SYM-SEC-1` key file). The name is the key's name and revision,
    /// `<ring>-<YYYYMMDDhhmmss>`, as `hab ring key generate` names it. Without it the ring is
    /// not encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?-[0-9]{14}$')")
            .message("service.ringSecretName must be <ring>-<YYYYMMDDhhmmss>, the ring key's name and revision, e.g. prod-20260101000000")
    )]
    #[schemars(length(max = 253))]
    pub ring_secret_name: Option<String>,

    /// When true and the Secret `ringSecretName` does not exist, the operator creates it with
    /// a new random ring key. An existing Secret is never changed, and a key that existed is
    /// never generated again (the resource turns Degraded, reason RingKeyMissing, instead).
    /// The Secret is not owned by the resource: several resources may share a ring, so it
    /// outlives them; delete it yourself when the ring is retired.
    #[serde(default)]
    pub generate_ring_key: bool,

    /// Seconds between health checks of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self >= 1").message("service.healthCheckInterval must be at least 1 second")
    )]
    pub health_check_interval: Option<i32>,
}

/// A bind to another service group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bind {
    /// Name of the bind, as the package declares it in BINDS / BINDS_OPTIONAL.
    #[x_kube(
        validation = Rule::new("self.matches('^[A-Za-z0-9_-]+$')")
            .message("bind name must be letters, digits, '-' or '_'")
    )]
    #[schemars(length(max = 63))]
    pub name: String,
    /// Service of the group to bind to.
    #[x_kube(
        validation = Rule::new("self.matches('^[A-Za-z0-9_-]+$')")
            .message("bind service must be letters, digits, '-' or '_'")
    )]
    #[schemars(length(max = 63))]
    pub service: String,
    /// Group of the service to bind to.
    #[serde(default = "default_group")]
    pub group: String,
}

/// Topology of a service group.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// Every member runs the service on its own.
    #[default]
    Standalone,
    /// Members elect a leader.
    Leader,
    /// A leader topology where followers start after the leader is healthy.
    Initializer,
}

impl Topology {
    /// The name used on the command line and in the resource.
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Standalone => "standalone",
            Topology::Leader => "leader",
            Topology::Initializer => "initializer",
        }
    }

    /// Whether members elect a leader (and so need a quorum).
    pub fn elects_leader(self) -> bool {
        !matches!(self, Topology::Standalone)
    }
}

/// Update strategy of the supervisor.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// No updates.
    #[default]
    #[serde(rename = "none")]
    None,
    /// All members update at once.
    #[serde(rename = "at-once")]
    AtOnce,
    /// One member at a time, leader last.
    #[serde(rename = "rolling")]
    Rolling,
}

impl Strategy {
    /// The name used on the command line and in the resource.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::None => "none",
            Strategy::AtOnce => "at-once",
            Strategy::Rolling => "rolling",
        }
    }
}

// Topology and Strategy are plain strings in the schema: the allowed values are checked by
// the CEL rules on the fields, so a bad value is rejected with the rule's message.
impl JsonSchema for Topology {
    fn schema_name() -> Cow<'static, str> {
        "Topology".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

impl JsonSchema for Strategy {
    fn schema_name() -> Cow<'static, str> {
        "Strategy".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

/// Persistent storage of each member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
// The volume claim template of a StatefulSet cannot change; refusing the edit here gives a
// clear message at `kubectl apply` instead of a resource stuck retrying a forbidden update.
#[x_kube(
    validation = Rule::new("self.size == oldSelf.size && has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)")
        .message("persistentStorage.size and persistentStorage.storageClassName are immutable (a StatefulSet's volumeClaimTemplates cannot change); expand the PersistentVolumeClaims directly, or create a new resource")
)]
pub struct PersistentStorage {
    /// Size of each member's volume, a Kubernetes quantity (e.g. `1Gi`).
    #[x_kube(
        validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$')")
            .message("persistentStorage.size must be a quantity such as 512Mi or 10Gi")
    )]
    #[schemars(length(max = 32))]
    pub size: String,
    /// Where the volume is mounted in the application container. Defaults to the service's
    /// data directory, `/hab/svc/<service.name>/data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self.startsWith('/')").message("persistentStorage.mountPath must be an absolute path")
    )]
    #[schemars(length(max = 4096))]
    pub mount_path: Option<String>,
    /// StorageClass of the volumes; the cluster's default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
    /// What happens to the volumes when the resource is deleted or scaled down: the
    /// StatefulSet's `persistentVolumeClaimRetentionPolicy`. Both default to `Retain`: data
    /// outlives the resource unless asked otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<ClaimRetentionPolicy>,
}

/// The StatefulSet's `persistentVolumeClaimRetentionPolicy`, applied as given.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRetentionPolicy {
    /// `Retain` (default) keeps the volumes when the resource is deleted; `Delete` deletes
    /// them with it (the StatefulSet controller makes them owned by the StatefulSet).
    #[serde(default)]
    #[x_kube(
        validation = Rule::new("self in ['Retain', 'Delete']")
            .message("persistentStorage.retentionPolicy.whenDeleted must be Retain or Delete")
    )]
    pub when_deleted: ClaimRetention,
    /// `Retain` (default) keeps the volumes of members removed by scaling down; `Delete`
    /// deletes them.
    #[serde(default)]
    #[x_kube(
        validation = Rule::new("self in ['Retain', 'Delete']")
            .message("persistentStorage.retentionPolicy.whenScaled must be Retain or Delete")
    )]
    pub when_scaled: ClaimRetention,
}

/// Retain or delete volumes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClaimRetention {
    /// Keep the volumes.
    #[default]
    Retain,
    /// Delete the volumes.
    Delete,
}

impl ClaimRetention {
    /// The value Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimRetention::Retain => "Retain",
            ClaimRetention::Delete => "Delete",
        }
    }
}

// A plain string in the schema, checked by the CEL rules on the fields (as Topology).
impl JsonSchema for ClaimRetention {
    fn schema_name() -> Cow<'static, str> {
        "ClaimRetention".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

/// Overrides for the pods of the StatefulSet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Resources of the application container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Resources of the init container that copies the `hab` binary into the pod (it runs
    /// `cp` once; small requests are set when this is not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_resources: Option<ResourceRequirements>,
    /// Affinity of the pods. When not given, leader and initializer topologies get a
    /// preferred podAntiAffinity on `kubernetes.io/hostname` (members of one group on
    /// different nodes where possible, so one node failure does not take the quorum); a value
    /// here replaces that default entirely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Spread the members over zones (`topology.kubernetes.io/zone`): a
    /// topologySpreadConstraint with maxSkew 1 and `whenUnsatisfiable: ScheduleAnyway`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spread_over_zones: bool,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Secrets for pulling the images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Service account of the pods (its token is never mounted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Security context of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Extra labels of the pods (the operator's own labels win on conflict).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Seconds a pod gets to stop after SIGTERM before it is killed. Defaults to 60 (not
    /// Kubernetes' 30): the supervisor waits up to the package's SHUTDOWN_TIMEOUT (8 s by
    /// default), runs the post-stop hook, and hands over leadership and leaves the ring.
    /// Raise it for packages with a longer SHUTDOWN_TIMEOUT or a slow post-stop hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self >= 0")
            .message("pod.terminationGracePeriodSeconds must not be negative")
    )]
    pub termination_grace_period_seconds: Option<i64>,
}

/// Observed state of the service group, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HabitatStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Pods of the StatefulSet.
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods of the StatefulSet.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The ring's census as the supervisors report it (written by the census stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub census: Option<CensusStatus>,
    /// Config and files applied to the ring (written by the census stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedStatus>,
    /// Name of the generated ring key Secret (`service.ringSecretName` with
    /// `generateRingKey`) once it has been seen to exist. The operator never generates a key
    /// under a name recorded here by any resource of the namespace: members still run with
    /// the old key, and a new one would split the ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_key_secret: Option<String>,
    /// Progress of replacing the pods with the StatefulSet's current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// Progress of a rollout: pods replaced one at a time (followers first, the leader last) until
/// all run the StatefulSet's `updateRevision`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The StatefulSet's `updateRevision` the pods are being brought to.
    pub target_revision: String,
    /// Pods at the target revision.
    pub updated: i32,
    /// Pods there should be (`spec.count`).
    pub total: i32,
    /// `Progressing`, `Complete` or `Stalled` (a replaced pod failed: no further pod is
    /// replaced until the spec changes).
    pub phase: String,
    /// What the rollout waits for, which pod it replaced last, or why it stalled.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the operator first saw pods behind this revision; absent for a revision every pod
    /// started at (a new resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
}

/// The ring's census as one ready member's HTTP gateway reports it, followed by change
/// (`GET /census` long-polls) and mapped to pods. Written by the operator's census stream of
/// the resource, only when something other than `observedAt` changed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CensusStatus {
    /// Election status of the service group as Habitat names it: `None` (no election:
    /// standalone), `ElectionInProgress`, `ElectionNoQuorum` or `ElectionFinished`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_status: Option<String>,
    /// The elected leader (leader topologies, once an election finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<CensusLeader>,
    /// Term of the last election the reporting member knows of (leader topologies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_term: Option<i64>,
    /// Alive members in the census against `spec.count`, e.g. `3/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Incarnation of the service group's gossiped configuration (`hab config apply`, or
    /// `service.config` applied by the operator); absent while the ring has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_incarnation: Option<i64>,
    /// Incarnation of each file gossiped to the service group, by file name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub file_incarnations: BTreeMap<String, i64>,
    /// Members of the service group, by pod name (members no pod matches last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<CensusMember>,
    /// The member whose gateway reported this census.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_by: Option<String>,
    /// Why no member's HTTP gateway answered the last time the operator asked them all (e.g.
    /// connection refused, 401 for a token the ring refuses); absent once one answers. The rest
    /// of the census is the last one seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// When the operator last saw the census change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
}

/// The elected leader.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CensusLeader {
    /// Member id (128-bit, hex).
    pub member_id: String,
    /// Pod the leader runs in, when a pod of the resource matches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// One member of the census.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CensusMember {
    /// Member id (128-bit, hex).
    pub member_id: String,
    /// Pod the member runs in: the pod whose IP is the member's gossip address (or, failing
    /// that, whose name is the member's host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// IP address the member gossips from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Health in the ring: `Alive`, `Suspect`, `Confirmed` (dead) or `Departed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// `leader`, `follower`, `standalone` (the group holds no election); absent while an
    /// election runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The service's health check (`ok`, `warning`, `critical`, `unknown`): known only for
    /// the member whose gateway reported the census (the census carries no health checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_health: Option<String>,
}

/// Config and files the operator applied to the ring through the ctl gateway: what it sent
/// (by digest) and at which incarnation. A spec whose digest is recorded here is not sent
/// again, so `hab config apply` and `kubectl apply` can be mixed (the later change wins), and
/// an operator restart sends nothing.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AppliedStatus {
    /// `service.config` (or `configSecretName`'s user.toml) as last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<AppliedContent>,
    /// `filesSecretName`'s keys as last applied, by file name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, AppliedContent>,
    /// Why the last attempt to apply failed (retried with a growing delay); absent once one
    /// succeeded. The resource is Degraded (ConfigNotApplied) meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One applied config or file.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AppliedContent {
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Incarnation it was applied at (or found at in the ring).
    pub incarnation: i64,
}

fn default_count() -> i32 {
    1
}

fn default_group() -> String {
    "default".to_owned()
}

impl ServiceSpec {
    /// The service group, `<name>.<group>`.
    pub fn service_group(&self) -> String {
        format!("{}.{}", self.name, self.group)
    }
}

/// The CRD as YAML, exactly what `habitat-operator crd` prints and `crds/habitat.yaml` holds.
pub fn crd_yaml() -> String {
    let crd = Habitat::crd();
    // Serializing a CRD built from our own types cannot fail; an empty string would make the
    // drift test fail loudly anyway.
    serde_yaml::to_string(&crd).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn schema() -> Value {
        let crd = serde_json::to_value(Habitat::crd()).unwrap_or_default();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    fn rules(v: &Value) -> Vec<String> {
        v["x-kubernetes-validations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn crd_names_match_the_contract() {
        let crd = Habitat::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("habitats.habitat.sh"));
        assert_eq!(crd.spec.group, "habitat.sh");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, "Habitat");
        assert_eq!(crd.spec.names.plural, "habitats");
        assert_eq!(crd.spec.names.short_names, Some(vec!["hab".to_owned()]));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1");
        let sub = v.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.count");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        let columns: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            ["Topology", "Count", "Ready", "Leader", "Election", "Config", "Age"]
        );
        // The census columns show with `-o wide` only.
        let wide: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority == Some(1))
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            wide,
            [
                ("Election", ".status.census.electionStatus"),
                ("Config", ".status.census.configIncarnation")
            ]
        );
    }

    #[test]
    fn schema_carries_defaults_and_descriptions() {
        let s = schema();
        let spec = &s["properties"]["spec"];
        assert_eq!(spec["properties"]["count"]["default"], 1);
        let service = &spec["properties"]["service"]["properties"];
        assert_eq!(service["group"]["default"], "default");
        assert_eq!(service["topology"]["default"], "standalone");
        assert_eq!(service["strategy"]["default"], "none");
        assert!(spec["properties"]["image"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("image")));
        let required: Vec<_> = spec["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, ["image", "service"]);
    }

    #[test]
    fn schema_carries_the_cel_rules() {
        let s = schema();
        let spec = &s["properties"]["spec"]["properties"];
        assert_eq!(rules(&spec["count"]), ["self >= 1"]);
        let service = &spec["service"];
        assert!(rules(service)[0].contains("configSecretName"));
        let p = &service["properties"];
        assert!(rules(&p["name"]).contains(&"self == oldSelf".to_owned()));
        assert!(rules(&p["topology"])[0].contains("'initializer'"));
        assert!(rules(&p["ringSecretName"])[0].contains("[0-9]{14}"));
        assert_eq!(
            s["properties"]["status"]["properties"]["conditions"]["x-kubernetes-list-type"],
            "map"
        );
    }

    #[test]
    fn schema_carries_the_rollout_and_channel_fields() {
        let s = schema();
        let spec = &s["properties"]["spec"]["properties"];
        let rollout = &spec["rollout"]["properties"]["progressDeadlineSeconds"];
        assert_eq!(rules(rollout), ["self >= 1"]);
        let service = &spec["service"]["properties"];
        assert!(rules(&service["url"])[0].contains("https?|file"));
        assert!(rules(&service["channel"])[0].contains("A-Za-z0-9_.-"));
        assert_eq!(rules(&service["updatePeriod"]), ["self >= 1"]);
        let status = &s["properties"]["status"]["properties"]["rollout"]["properties"];
        for field in [
            "targetRevision",
            "updated",
            "total",
            "phase",
            "message",
            "startedAt",
        ] {
            assert!(status.get(field).is_some(), "status.rollout.{field}");
        }
        let spec: HabitatSpec =
            serde_json::from_str(r#"{"image":"app:1","service":{"name":"redis"}}"#).unwrap();
        assert_eq!(
            spec.progress_deadline_seconds(),
            DEFAULT_PROGRESS_DEADLINE_SECONDS
        );
        assert_eq!(DEFAULT_PROGRESS_DEADLINE_SECONDS, 600);
    }

    #[test]
    fn spec_defaults_apply_when_deserializing() {
        let spec: HabitatSpec =
            serde_json::from_str(r#"{"image":"app:1","service":{"name":"redis"}}"#).unwrap();
        assert_eq!(spec.count, 1);
        assert_eq!(spec.service.group, "default");
        assert_eq!(spec.service.topology, Topology::Standalone);
        assert_eq!(spec.service.strategy, Strategy::None);
        assert!(!spec.paused);
        assert_eq!(spec.service.service_group(), "redis.default");
    }

    #[test]
    fn crd_yaml_is_a_single_document() {
        let yaml = crd_yaml();
        assert!(yaml.starts_with("apiVersion: apiextensions.k8s.io/v1\n"));
        assert!(!yaml.contains("\n---"));
    }
}
