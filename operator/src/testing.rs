//! Fixtures for tests, built fluently: `Habitat::test("web").leader().count(3)`.
//!
//! Public so the integration tests in `operator/tests/` use the same fixtures as the unit
//! tests; nothing in the operator itself calls it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{
    Bind, ClaimRetention, ClaimRetentionPolicy, Habitat, HabitatSpec, PersistentStorage,
    PodOverrides, ServiceSpec, Topology,
};

impl Habitat {
    /// A standalone resource `name` in namespace `default` running service `name`, one
    /// member, image `example/<name>:1.0`, with a fixed uid and generation 1.
    pub fn test(name: &str) -> Self {
        let mut hab = Habitat::new(
            name,
            HabitatSpec {
                image: format!("example/{name}:1.0"),
                count: 1,
                service: ServiceSpec {
                    name: name.to_owned(),
                    group: "default".to_owned(),
                    ..ServiceSpec::default()
                },
                env: Vec::new(),
                persistent_storage: None,
                pod: None,
                paused: false,
                rollout: None,
                network_policy: None,
            },
        );
        hab.metadata = ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            uid: Some("00000000-0000-4000-8000-000000000001".to_owned()),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        hab
    }

    /// In namespace `ns`.
    pub fn in_namespace(mut self, ns: &str) -> Self {
        self.metadata.namespace = Some(ns.to_owned());
        self
    }

    /// With `count` members.
    pub fn count(mut self, count: i32) -> Self {
        self.spec.count = count;
        self
    }

    /// Leader topology.
    pub fn leader(mut self) -> Self {
        self.spec.service.topology = Topology::Leader;
        self
    }

    /// With `topology`.
    pub fn topology(mut self, topology: Topology) -> Self {
        self.spec.service.topology = topology;
        self
    }

    /// Loading package `ident`.
    pub fn package(mut self, ident: &str) -> Self {
        self.spec.service.package = Some(ident.to_owned());
        self
    }

    /// With a bind `name:service.group`.
    pub fn bind(mut self, name: &str, service: &str, group: &str) -> Self {
        self.spec.service.binds.push(Bind {
            name: name.to_owned(),
            service: service.to_owned(),
            group: group.to_owned(),
        });
        self
    }

    /// With user.toml `config`.
    pub fn config(mut self, config: &str) -> Self {
        self.spec.service.config = Some(config.to_owned());
        self
    }

    /// Encrypted with the ring key in Secret `name`, generated when missing.
    pub fn ring_key(mut self, name: &str) -> Self {
        self.spec.service.ring_secret_name = Some(name.to_owned());
        self.spec.service.generate_ring_key = true;
        self
    }

    /// With a volume of `size` per member.
    pub fn storage(mut self, size: &str) -> Self {
        self.spec.persistent_storage = Some(PersistentStorage {
            size: size.to_owned(),
            mount_path: None,
            storage_class_name: None,
            retention_policy: None,
        });
        self
    }

    /// With volumes deleted with the resource and on scale-down (needs `storage` first).
    pub fn delete_claims(mut self) -> Self {
        if let Some(storage) = self.spec.persistent_storage.as_mut() {
            storage.retention_policy = Some(ClaimRetentionPolicy {
                when_deleted: ClaimRetention::Delete,
                when_scaled: ClaimRetention::Delete,
            });
        }
        self
    }

    /// With pod overrides.
    pub fn pod(mut self, pod: PodOverrides) -> Self {
        self.spec.pod = Some(pod);
        self
    }

    /// Paused.
    pub fn paused(mut self) -> Self {
        self.spec.paused = true;
        self
    }

    /// With update strategy `strategy`.
    pub fn strategy(mut self, strategy: crate::crd::Strategy) -> Self {
        self.spec.service.strategy = strategy;
        self
    }

    /// Following `channel` of the depot at `url`.
    pub fn channel(mut self, channel: &str, url: &str) -> Self {
        self.spec.service.channel = Some(channel.to_owned());
        self.spec.service.url = Some(url.to_owned());
        self
    }

    /// With `rollout.progressDeadlineSeconds` = `seconds`.
    pub fn progress_deadline(mut self, seconds: i64) -> Self {
        self.spec.rollout = Some(crate::crd::RolloutSpec {
            progress_deadline_seconds: Some(seconds),
        });
        self
    }

    /// At generation `generation`.
    pub fn generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }
}
