//! The controller: watches `Habitat` resources (and, by metadata only, the children they own)
//! and reconciles each with a fixed pipeline: build -> server-side apply -> status. Children
//! are applied under one field manager with owner references, so a second apply of an
//! unchanged resource writes nothing; `spec.paused` skips the apply.
//!
//! A successful apply hands the resource's census stream (`follow`) what it needs: the ctl
//! secret and gateway token (Secrets `<name>-ctl` and `<name>-gateway`, created once, owned
//! by the resource, never overwritten) and the config and files to apply, read and checked
//! here so that invalid TOML or a missing Secret is a Degraded condition before anything is
//! applied. The stream writes `status.census`; a change of it brings the resource back here,
//! where the conditions follow it.
//!
//! After the apply, the rollout (`rollout`): the StatefulSet updates `OnDelete`, and each
//! reconcile deletes the next outdated pod (followers first, the leader last, one at a time;
//! all at once with `service.strategy: at-once`) once the pods at the new revision are Ready,
//! alive in the ring and healthy. Everything it decides from is read from the cluster (pod
//! revisions, the census in status, the previous `status.rollout`), so an operator restart
//! carries on where the last stopped. A new pod that fails stops the rollout (Degraded,
//! RolloutStalled).
//!
//! No finalizer: owned children go with the resource through the garbage collector, and the
//! volumes follow the StatefulSet's claim retention policy (kept by default), so deleting a
//! resource never waits for the operator. It only deletes what carries an owner reference to
//! the resource, and never regenerates a ring key that existed. Secrets are not watched (so
//! its RBAC needs no list or watch on them): a vanished ring key is noticed at the next
//! reconcile.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{
    DeleteParams, GetParams, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::backoff::Backoff;
use crate::build::{self, netpol, pdb, secrets, services, statefulset, BuildConfig, HTTP_PORT};
use crate::config::{desired_config, Content, Desired};
use crate::crd::{Habitat, RolloutStatus, LEGACY_FINALIZER};
use crate::follow::{Follow, Followers, Timing};
use crate::gateway;
use crate::metrics::Metrics;
use crate::rollout::{self, Decision};
use crate::status::{desired_status_with_rollout, for_patch, is_current, Outcome};
use crate::{Error, Result};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "habitat-operator";
/// How often a resource is reconciled when nothing changes.
pub const RESYNC: Duration = Duration::from_secs(300);
/// How often streams of resources that are gone are ended.
pub const REAP_INTERVAL: Duration = Duration::from_secs(5);
/// How often a resource whose rollout is under way is looked at even when nothing changes
/// (pod and census changes bring it back sooner): progress deadlines, health checks.
pub const ROLLOUT_POLL: Duration = Duration::from_secs(10);
/// How long the operator waits for a new pod's gateway to tell its service's health.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// What every reconcile shares.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Operator-wide settings of the children.
    pub build: BuildConfig,
    /// Controller metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes events about the resources.
    pub recorder: Recorder,
    /// Consecutive failures per resource, for the retry delay.
    pub backoff: Backoff<ObjectRef<Habitat>>,
    /// The census stream of each resource.
    pub followers: Followers,
}

impl Context {
    /// A context for `client`; `instance` names this operator replica in events.
    pub fn new(client: Client, build: BuildConfig, metrics: Arc<Metrics>, instance: &str) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(instance.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            client,
            build,
            backoff: Backoff::default(),
            followers: Followers::new(Arc::clone(&metrics), Timing::default())
                .with_events(reporter),
            metrics,
        }
    }
}

/// Runs the controller over `namespace` (all namespaces when None) until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let client = &ctx.client;
    let managed =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=habitat-operator");
    let controller = Controller::new(
        api::<Habitat>(client, &namespace),
        watcher::Config::default(),
    );
    // Resources deleted without a finalizer never come back to `reconcile`: their streams
    // end when the controller's cache no longer holds them (by uid: a resource recreated
    // under the same name gets a stream of its own).
    let store = controller.store();
    let binders = store.clone();
    let reaper = {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REAP_INTERVAL).await;
                ctx.followers.retain(|key, uid| {
                    store
                        .get(key)
                        .is_some_and(|hab| hab.metadata.uid.as_deref() == Some(uid))
                });
            }
        })
    };
    let streams = Arc::clone(&ctx);
    // Children are watched by metadata only (`PartialObjectMeta`): a change of any of them,
    // status included, only needs to trigger a reconcile of its owner, and metadata keeps the
    // operator's memory small with many resources.
    controller
        .with_config(ControllerConfig::default().concurrency(64))
        .owns(
            api::<PartialObjectMeta<StatefulSet>>(client, &namespace),
            managed.clone(),
        )
        .owns(
            api::<PartialObjectMeta<Service>>(client, &namespace),
            managed.clone(),
        )
        .owns(
            api::<PartialObjectMeta<PodDisruptionBudget>>(client, &namespace),
            managed.clone(),
        )
        .owns(
            api::<PartialObjectMeta<NetworkPolicy>>(client, &namespace),
            managed,
        )
        // A resource whose service group others bind to: they peer with its pods.
        .watches(
            api::<Habitat>(client, &namespace),
            watcher::Config::default(),
            move |changed| binders_of(&binders, &changed),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "reconcile failed");
            }
        })
        .await;
    reaper.abort();
    streams.followers.stop_all();
}

/// Reconciles one resource: lets go of a legacy finalizer, then applies (unless deleted).
#[instrument(skip_all, fields(habitat = %hab.name_any(), namespace = hab.namespace().unwrap_or_default()))]
pub async fn reconcile(hab: Arc<Habitat>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let ns = hab
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(hab.name_any()))?;
    let result = match remove_legacy_finalizer(&hab, &ctx, &ns).await {
        Err(e) => Err(e),
        // Children go with it (garbage collector); volumes per the retention policy.
        Ok(()) if hab.metadata.deletion_timestamp.is_some() => Ok(Action::await_change()),
        Ok(()) => apply(&hab, &ctx, &ns).await,
    };
    if result.is_ok() {
        ctx.backoff.succeeded(&ObjectRef::from_obj(&*hab));
    }
    ctx.metrics.observe(started.elapsed());
    result
}

/// Logs and counts a failed reconcile, and retries it after an exponential, jittered delay
/// (`backoff`) that the resource's next success resets.
pub fn error_policy(hab: Arc<Habitat>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx
        .backoff
        .failed(ObjectRef::from_obj(&*hab), rand::random::<f64>());
    warn!(habitat = %hab.name_any(), %error, "reconcile failed; retrying in {delay:?}");
    ctx.metrics.failed(error);
    Action::requeue(delay)
}

/// Removes [`LEGACY_FINALIZER`], which earlier versions added, so that deleting the resource
/// never waits for the operator. The patch carries the resourceVersion it was computed from.
async fn remove_legacy_finalizer(hab: &Habitat, ctx: &Context, ns: &str) -> Result<()> {
    if !hab.finalizers().iter().any(|f| f == LEGACY_FINALIZER) {
        return Ok(());
    }
    let kept: Vec<&String> = hab
        .finalizers()
        .iter()
        .filter(|f| *f != LEGACY_FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": hab.resource_version(),
            "finalizers": kept,
        }
    });
    let api: Api<Habitat> = Api::namespaced(ctx.client.clone(), ns);
    match api
        .patch(
            &hab.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(api_error(
            "remove finalizer",
            "Habitat",
            ns,
            &hab.name_any(),
            e,
        )),
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

async fn apply(hab: &Habitat, ctx: &Context, ns: &str) -> Result<Action> {
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let previous_rollout = hab.status.as_ref().and_then(|s| s.rollout.clone());
    if hab.spec.paused {
        let sts = sts_api
            .get_opt(&hab.name_any())
            .await
            .map_err(|e| api_error("get", "StatefulSet", ns, &hab.name_any(), e))?;
        let outcome = Outcome::Paused(sts.as_ref());
        write_status(hab, ctx, ns, outcome, None, previous_rollout).await?;
        return Ok(Action::requeue(RESYNC));
    }
    let mut ring_key = None;
    let applied = match apply_children(hab, ctx, ns, &mut ring_key).await {
        Ok((sts, follow)) => {
            let token = follow.token.clone();
            ctx.followers.follow(&ctx.client, hab, follow);
            match roll(hab, ctx, ns, &sts, &token).await {
                Ok(rolled) => Ok((sts, rolled)),
                Err(error) => Err((error, Some(sts))),
            }
        }
        Err(error) => Err((error, None)),
    };
    match applied {
        Ok((sts, (rollout, requeue))) => {
            let new_generation =
                hab.status.as_ref().and_then(|s| s.observed_generation) != hab.metadata.generation;
            write_status(
                hab,
                ctx,
                ns,
                Outcome::Applied(Some(&sts)),
                ring_key.as_deref(),
                rollout,
            )
            .await?;
            if new_generation {
                let note = format!(
                    "applied generation {}: StatefulSet {} with {} member(s)",
                    hab.metadata.generation.unwrap_or_default(),
                    hab.name_any(),
                    hab.spec.count
                );
                info!("{note}");
                publish(hab, ctx, EventType::Normal, "Applied", note).await;
            }
            Ok(Action::requeue(requeue))
        }
        Err((error, sts)) => {
            let message = error.to_string();
            let sts = match sts {
                Some(sts) => Some(sts),
                None => sts_api.get_opt(&hab.name_any()).await.ok().flatten(),
            };
            // Best effort: the error itself is what the controller reports and retries.
            let outcome = Outcome::Failed(error.reason(), &message, sts.as_ref());
            if let Err(status_error) =
                write_status(hab, ctx, ns, outcome, ring_key.as_deref(), previous_rollout).await
            {
                warn!(%status_error, "could not record the failure in status");
            }
            publish(hab, ctx, EventType::Warning, error.reason(), message).await;
            Err(error)
        }
    }
}

/// One step of the rollout of `sts`'s `updateRevision` (`rollout::plan`): deletes the pods it
/// picks, publishes its events, and returns `status.rollout` and when to look again.
/// `token` is the HTTP gateway's, for asking a new pod's supervisor about its service's
/// health when the census does not carry it.
async fn roll(
    hab: &Habitat,
    ctx: &Context,
    ns: &str,
    sts: &StatefulSet,
    token: &str,
) -> Result<(Option<RolloutStatus>, Duration)> {
    let name = hab.name_any();
    // The controller's cache may not hold the status the last reconcile wrote yet (a pod or
    // StatefulSet change can bring the next one first): the rollout's previous step and the
    // census are read from the API server.
    let habs: Api<Habitat> = Api::namespaced(ctx.client.clone(), ns);
    let fresh = habs
        .get_status(&name)
        .await
        .map_err(|e| api_error("get", "Habitat", ns, &name, e))?
        .status
        .or_else(|| hab.status.clone());
    let previous = fresh.as_ref().and_then(|s| s.rollout.as_ref());
    let sts_status = sts.status.as_ref();
    // Until the StatefulSet controller saw the latest template, `updateRevision` is the old one.
    let observed = sts_status.and_then(|s| s.observed_generation);
    let target = sts_status.and_then(|s| s.update_revision.clone());
    let (Some(target), true) = (target, observed >= sts.metadata.generation) else {
        return Ok((previous.cloned(), ROLLOUT_POLL));
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = ListParams::default().labels(&build::selector_string(hab));
    let pods = pods_api
        .list(&params)
        .await
        .map_err(|e| api_error("list", "Pod", ns, &name, e))?
        .items;
    let census = fresh.as_ref().and_then(|s| s.census.as_ref());
    let completed =
        previous.is_some_and(|p| p.target_revision == target && p.phase == rollout::COMPLETE);
    let has_service = hab.spec.service.package.is_some();
    let service_group = hab.spec.service.service_group();
    let now = now();
    let mut states = Vec::with_capacity(pods.len());
    for pod in &pods {
        let pod_name = pod.name_any();
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let reported = census
            .into_iter()
            .flat_map(|c| &c.members)
            .find(|m| m.pod.as_deref() == Some(pod_name.as_str()) && m.ip == ip)
            .and_then(|m| m.service_health.clone());
        let Some(mut state) = rollout::pod_state(&name, pod, census, reported, &now) else {
            continue;
        };
        // The census carries only its reporter's health check: ask a new pod itself (also
        // when it is not Ready, so that a stall says why).
        let asks = !completed
            && has_service
            && state.service_health.is_none()
            && !state.terminating
            && state.alive_in_ring
            && state.revision.as_deref() == Some(target.as_str());
        if let (true, Some(ip)) = (asks, ip.and_then(|ip| ip.parse().ok())) {
            let addr = std::net::SocketAddr::new(ip, HTTP_PORT as u16);
            state.service_health =
                gateway::service_health(addr, Some(token), &service_group, HEALTH_TIMEOUT).await;
        }
        states.push(state);
    }
    let input = rollout::Input {
        target: &target,
        count: hab.spec.count,
        strategy: hab.spec.service.strategy,
        elects_leader: hab.spec.service.topology.elects_leader(),
        leader: census
            .and_then(|c| c.leader.as_ref())
            .and_then(|l| l.pod.as_deref()),
        has_service,
        deadline_seconds: hab.spec.progress_deadline_seconds(),
        completed,
        pods: &states,
    };
    let plan = rollout::plan(&input);
    let next = rollout::rollout_status(previous, &target, &plan, &now);
    if let Decision::Delete(steps) = &plan.decision {
        for step in steps {
            let Some(pod) = pods.iter().find(|p| p.name_any() == step.pod) else {
                continue;
            };
            // Exactly the pod the plan saw: a pod recreated meanwhile is not deleted again.
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match pods_api.delete(&step.pod, &params).await {
                Ok(_) => {
                    info!(pod = %step.pod, role = step.role, revision = %target, "rollout: deleted an outdated pod")
                }
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(e) => return Err(api_error("delete", "Pod", ns, &step.pod, e)),
            }
        }
    }
    let revision = ObjectReference {
        api_version: Some("apps/v1".to_owned()),
        kind: Some("ControllerRevision".to_owned()),
        namespace: Some(ns.to_owned()),
        name: Some(target.clone()),
        ..ObjectReference::default()
    };
    for note in rollout::notes(previous, &next, &plan) {
        let type_ = if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        if note.warning {
            warn!(reason = note.reason, "{}", note.note);
        } else {
            info!(reason = note.reason, "{}", note.note);
        }
        let related = match &note.pod {
            Some(name) => pods
                .iter()
                .find(|p| &p.name_any() == name)
                .map(|p| p.object_ref(&())),
            None => Some(revision.clone()),
        };
        publish_about(hab, ctx, type_, note.reason, note.note, related).await;
    }
    let requeue = if next.phase == rollout::PROGRESSING {
        ROLLOUT_POLL
    } else {
        RESYNC
    };
    Ok((Some(next), requeue))
}

/// Applies every child of `hab`; returns the StatefulSet as the API server has it and what
/// the census stream needs. Sets `ring_key` to the generated ring key Secret's name once it
/// is known to exist. Config and files are read and checked first: a problem with them
/// applies nothing.
async fn apply_children(
    hab: &Habitat,
    ctx: &Context,
    ns: &str,
    ring_key: &mut Option<String>,
) -> Result<(StatefulSet, Follow)> {
    *ring_key = ensure_ring_key(hab, ctx, ns).await?;
    let desired = read_desired(hab, ctx, ns).await?;
    apply_config_secret(hab, ctx, ns).await?;
    let ctl_secret = ensure_token_secret(hab, ctx, ns, TokenSecret::Ctl).await?;
    let token = ensure_token_secret(hab, ctx, ns, TokenSecret::Gateway).await?;
    server_side_apply(&ctx.client, ns, &services::peers_service(hab)).await?;
    server_side_apply(&ctx.client, ns, &services::client_service(hab)).await?;
    server_side_apply(&ctx.client, ns, &pdb::pdb(hab)).await?;
    let others = others_if_needed(hab, ctx, ns).await?;
    let bound = statefulset::bound_peers(hab, &others);
    apply_network_policy(hab, ctx, ns, &others).await?;
    let sts = server_side_apply(
        &ctx.client,
        ns,
        &statefulset::statefulset_bound(hab, &ctx.build, &bound),
    )
    .await?;
    let follow = Follow {
        namespace: ns.to_owned(),
        name: hab.name_any(),
        uid: hab.uid().unwrap_or_default(),
        service_group: hab.spec.service.service_group(),
        count: hab.spec.count,
        ready_pods: sts
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        pods: sts.status.as_ref().map_or(0, |s| s.replicas),
        ctl_secret,
        token,
        desired,
        apply: true,
    };
    Ok((sts, follow))
}

/// The resources of `hab`'s namespace when its children depend on them: its binds' peers,
/// its NetworkPolicy's ring. None otherwise (no list then).
async fn others_if_needed(hab: &Habitat, ctx: &Context, ns: &str) -> Result<Vec<Habitat>> {
    if hab.spec.service.binds.is_empty() && !hab.spec.network_policy_enabled() {
        return Ok(Vec::new());
    }
    let api: Api<Habitat> = Api::namespaced(ctx.client.clone(), ns);
    let others = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error("list", "Habitat", ns, "", e))?;
    Ok(others.items)
}

/// Applies the NetworkPolicy when `spec.networkPolicy.enabled`, deletes it (when the resource
/// owns it) otherwise. The API server holds the policy only while asked: a resource that
/// turns it off gets its pods' ports open again at the next reconcile.
async fn apply_network_policy(
    hab: &Habitat,
    ctx: &Context,
    ns: &str,
    others: &[Habitat],
) -> Result<()> {
    let name = build::network_policy_name(hab);
    if hab.spec.network_policy_enabled() {
        let ring = netpol::ring_of(hab, others);
        server_side_apply(
            &ctx.client,
            ns,
            &netpol::network_policy(hab, &ctx.build, &ring),
        )
        .await?;
        return Ok(());
    }
    let api: Api<PartialObjectMeta<NetworkPolicy>> = Api::namespaced(ctx.client.clone(), ns);
    // Served from the API server's watch cache (resourceVersion 0): a resource without a
    // policy costs no read of etcd. A stale answer is corrected at the next reconcile.
    let existing = match api.get_metadata_opt_with(&name, &GetParams::any()).await {
        Ok(existing) => existing,
        // Without RBAC for NetworkPolicies the operator cannot have created one.
        Err(kube::Error::Api(status)) if status.code == 403 => None,
        Err(e) => return Err(api_error("get", "NetworkPolicy", ns, &name, e)),
    };
    if let Some(existing) = existing {
        if owned_by(&existing.metadata, hab) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    info!(policy = %name, "deleted the NetworkPolicy (networkPolicy disabled)");
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(api_error("delete", "NetworkPolicy", ns, &name, e)),
            }
        }
    }
    Ok(())
}

/// The resources of `store` that bind to the service group `changed` runs (in its
/// namespace): a bound group's resource appearing, changing its count or going changes
/// their peers; and those with a NetworkPolicy in `changed`'s ring. (A resource that leaves a
/// ring by dropping a bind is no longer in it: the policies it left keep naming it until
/// their next resync, which only lets in more than needed.)
fn binders_of(store: &Store<Habitat>, changed: &Habitat) -> Vec<ObjectRef<Habitat>> {
    let state = store.state();
    let service = &changed.spec.service;
    let binders = state
        .iter()
        .filter(|hab| {
            hab.namespace() == changed.namespace() && hab.name_any() != changed.name_any()
        })
        .filter(|hab| {
            hab.spec
                .service
                .binds
                .iter()
                .any(|b| b.service == service.name && b.group == service.group)
        });
    // Resources with a NetworkPolicy in `changed`'s ring: a member joining (or changing its
    // binds) changes which pods may gossip with theirs.
    let ring = netpol::ring_of(changed, state.iter().map(|h| &**h));
    let guarded = state.iter().filter(|hab| {
        hab.spec.network_policy_enabled()
            && hab.namespace() == changed.namespace()
            && hab.name_any() != changed.name_any()
            && ring.contains(&hab.name_any())
    });
    let mut refs: Vec<ObjectRef<Habitat>> = binders
        .chain(guarded)
        .map(|hab| ObjectRef::from_obj(&**hab))
        .collect();
    refs.sort_by_key(|r| r.name.clone());
    refs.dedup();
    refs
}

/// The config and files `hab` asks to be gossiped: `service.config`, or key `user.toml` of
/// `configSecretName`, checked as TOML; every key of `filesSecretName`.
async fn read_desired(hab: &Habitat, ctx: &Context, ns: &str) -> Result<Desired> {
    let service = &hab.spec.service;
    if let Some(package) = &service.package {
        let package_name = package.split('/').nth(1).unwrap_or_default();
        if package_name != service.name {
            return Err(Error::ServiceNameMismatch {
                namespace: ns.to_owned(),
                name: hab.name_any(),
                service: service.name.clone(),
                package: package.clone(),
                package_name: package_name.to_owned(),
            });
        }
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let invalid = |source_name: String, problem: String| Error::InvalidConfig {
        namespace: ns.to_owned(),
        name: hab.name_any(),
        source_name,
        problem,
    };
    let missing = |secret: &str, field: &'static str, problem: String| Error::SecretMissing {
        namespace: ns.to_owned(),
        secret: secret.to_owned(),
        field,
        problem,
    };
    let get = |secret: String, field: &'static str| {
        let api = api.clone();
        async move {
            api.get_opt(&secret)
                .await
                .map_err(|e| api_error("get", "Secret", ns, &secret, e))?
                .ok_or_else(|| missing(&secret, field, "no such Secret".to_owned()))
        }
    };
    let config = match (&service.config, &service.config_secret_name) {
        (Some(text), _) => {
            Some(desired_config(text).map_err(|e| invalid("service.config".to_owned(), e))?)
        }
        (None, Some(name)) => {
            let field = "service.configSecretName";
            let secret = get(name.clone(), field).await?;
            let key = statefulset::USER_TOML_KEY;
            let bytes = secret
                .data
                .and_then(|mut d| d.remove(key))
                .ok_or_else(|| missing(name, field, format!("no key {key}")))?;
            let source_name = format!("key {key} of Secret {ns}/{name}");
            let text = String::from_utf8(bytes.0)
                .map_err(|_| invalid(source_name.clone(), "not UTF-8".to_owned()))?;
            Some(desired_config(&text).map_err(|e| invalid(source_name, e))?)
        }
        (None, None) => None,
    };
    let files = match &service.files_secret_name {
        Some(name) => get(name.clone(), "service.filesSecretName")
            .await?
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, bytes)| (key, Content::new(bytes.0)))
            .collect(),
        None => Default::default(),
    };
    Ok(Desired { config, files })
}

/// The two random Secrets every resource gets.
#[derive(Clone, Copy)]
enum TokenSecret {
    Ctl,
    Gateway,
}

/// The value of `<name>-ctl` or `<name>-gateway`, created with random bytes when missing (or
/// when ours lost its key). A Secret of that name the resource does not own is refused.
async fn ensure_token_secret(
    hab: &Habitat,
    ctx: &Context,
    ns: &str,
    which: TokenSecret,
) -> Result<String> {
    let (name, key, purpose) = match which {
        TokenSecret::Ctl => (
            build::ctl_secret_name(hab),
            secrets::CTL_SECRET_KEY,
            "ctl gateway's secret",
        ),
        TokenSecret::Gateway => (
            build::gateway_secret_name(hab),
            secrets::GATEWAY_TOKEN_KEY,
            "HTTP gateway's token",
        ),
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let value = |secret: &Secret| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|v| !v.trim().is_empty())
    };
    let existing = api
        .get_opt(&name)
        .await
        .map_err(|e| api_error("get", "Secret", ns, &name, e))?;
    if let Some(secret) = &existing {
        if !owned_by(&secret.metadata, hab) {
            return Err(Error::SecretNotOwned {
                namespace: ns.to_owned(),
                name: hab.name_any(),
                secret: name,
                purpose,
            });
        }
        if let Some(value) = value(secret) {
            return Ok(value);
        }
    }
    let mut bytes = [0u8; secrets::TOKEN_LEN];
    rand::fill(&mut bytes[..]);
    let secret = match which {
        TokenSecret::Ctl => secrets::ctl_secret(hab, &bytes),
        TokenSecret::Gateway => secrets::gateway_secret(hab, &bytes),
    };
    let created = if existing.is_some() {
        server_side_apply(&ctx.client, ns, &secret).await?
    } else {
        match api.create(&PostParams::default(), &secret).await {
            Ok(created) => created,
            // Created meanwhile (another reconcile of ours): that one is the secret.
            Err(kube::Error::Api(status)) if status.code == 409 => api
                .get(&name)
                .await
                .map_err(|e| api_error("get", "Secret", ns, &name, e))?,
            Err(e) => return Err(api_error("create", "Secret", ns, &name, e)),
        }
    };
    value(&created).ok_or_else(|| Error::SecretMissing {
        namespace: ns.to_owned(),
        secret: name,
        field: purpose,
        problem: format!("no key {key} after creating it"),
    })
}

/// Whether `meta` carries an owner reference to `hab` (by uid: a resource deleted and
/// recreated under the same name owns nothing of its predecessor).
pub fn owned_by(meta: &ObjectMeta, hab: &Habitat) -> bool {
    let Some(uid) = hab.metadata.uid.as_deref() else {
        return false;
    };
    meta.owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == uid && owner.kind == "Habitat")
}

/// Applies Secret `<name>-config` when the spec has `service.config`, deletes it when not;
/// either only if the resource owns it (a user's Secret of that name is left alone).
async fn apply_config_secret(hab: &Habitat, ctx: &Context, ns: &str) -> Result<()> {
    let name = build::config_secret_name(hab);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let existing = api
        .get_metadata_opt(&name)
        .await
        .map_err(|e| api_error("get", "Secret", ns, &name, e))?;
    let ours = existing.as_ref().map(|e| owned_by(&e.metadata, hab));
    match (secrets::config_secret(hab), ours) {
        (Some(_), Some(false)) => Err(Error::ConfigSecretNotOwned {
            namespace: ns.to_owned(),
            name: hab.name_any(),
            secret: name,
        }),
        (Some(secret), _) => server_side_apply(&ctx.client, ns, &secret).await.map(drop),
        (None, Some(true)) => {
            // Preconditions: delete exactly the object that was checked.
            let meta = existing.map(|e| e.metadata).unwrap_or_default();
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: meta.uid,
                    resource_version: meta.resource_version,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(e) => Err(api_error("delete", "Secret", ns, &name, e)),
            }
        }
        (None, _) => Ok(()),
    }
}

/// The resource, among `habs`, whose status records that ring key Secret `secret` existed.
pub fn ring_key_recorded_by<'a>(
    secret: &str,
    habs: impl IntoIterator<Item = &'a Habitat>,
) -> Option<String> {
    habs.into_iter()
        .find(|h| h.status.as_ref().and_then(|s| s.ring_key_secret.as_deref()) == Some(secret))
        .map(|h| h.name_any())
}

/// With `generateRingKey`: returns the ring key Secret's name once it exists, creating it
/// with a new key only if no resource of the namespace ever saw it. An existing Secret is
/// never changed (beyond dropping the owner references earlier versions gave it): replacing
/// a ring key splits the ring.
async fn ensure_ring_key(hab: &Habitat, ctx: &Context, ns: &str) -> Result<Option<String>> {
    let service = &hab.spec.service;
    let Some(name) = service
        .ring_secret_name
        .clone()
        .filter(|_| service.generate_ring_key)
    else {
        return Ok(None);
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    if let Some(existing) = api
        .get_metadata_opt(&name)
        .await
        .map_err(|e| api_error("get", "Secret", ns, &name, e))?
    {
        disown_ring_key(&api, &existing.metadata, ns).await?;
        return Ok(Some(name));
    }
    // Missing. Listing the namespace's resources is the rare path: only while it is missing.
    let habs: Api<Habitat> = Api::namespaced(ctx.client.clone(), ns);
    let others = habs
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error("list", "Habitat", ns, "*", e))?;
    if let Some(recorded_by) =
        ring_key_recorded_by(&name, std::iter::once(hab).chain(&others.items))
    {
        return Err(Error::RingKeyMissing {
            namespace: ns.to_owned(),
            secret: name,
            recorded_by,
        });
    }
    let mut key = [0u8; secrets::RING_KEY_LEN];
    rand::fill(&mut key[..]);
    let Some(secret) = secrets::ring_key_secret(hab, &key) else {
        return Ok(None);
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            publish(
                hab,
                ctx,
                EventType::Normal,
                "RingKeyGenerated",
                format!("generated ring key Secret {name}"),
            )
            .await;
            Ok(Some(name))
        }
        // Another resource sharing the key created it first: that one is the key.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Some(name)),
        Err(e) => Err(api_error("create", "Secret", ns, &name, e)),
    }
}

/// Removes owner references to Habitat resources from a ring key Secret (earlier versions
/// made the generating resource its controller, so deleting it deleted the shared key).
async fn disown_ring_key(api: &Api<Secret>, meta: &ObjectMeta, ns: &str) -> Result<()> {
    let owners = meta.owner_references.clone().unwrap_or_default();
    let is_habitat = |o: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference| {
        o.kind == "Habitat" && o.api_version.starts_with("habitat.sh/")
    };
    if !owners.iter().any(is_habitat) {
        return Ok(());
    }
    let kept: Vec<_> = owners.into_iter().filter(|o| !is_habitat(o)).collect();
    let name = meta.name.clone().unwrap_or_default();
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": meta.resource_version,
            "ownerReferences": if kept.is_empty() { serde_json::Value::Null } else { serde_json::json!(kept) },
        }
    });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| api_error("disown", "Secret", ns, &name, e))?;
    info!(secret = %name, "ring key Secret no longer owned by a Habitat (shared keys outlive resources)");
    Ok(())
}

async fn write_status(
    hab: &Habitat,
    ctx: &Context,
    ns: &str,
    outcome: Outcome<'_>,
    ring_key: Option<&str>,
    rollout: Option<RolloutStatus>,
) -> Result<()> {
    let status = desired_status_with_rollout(hab, outcome, ring_key, rollout, &now());
    if is_current(hab, &status) {
        return Ok(());
    }
    let api: Api<Habitat> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": Habitat::api_version(&()),
        "kind": Habitat::kind(&()),
        "status": for_patch(&status),
    });
    api.patch_status(
        &hab.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map_err(|e| api_error("patch status", "Habitat", ns, &hab.name_any(), e))?;
    Ok(())
}

async fn publish(hab: &Habitat, ctx: &Context, type_: EventType, reason: &str, note: String) {
    publish_about(hab, ctx, type_, reason, note, None).await;
}

/// `publish` with a related object. The recorder folds events of one reason about one object
/// into a series that keeps the first note; a related object (the pod replaced, the revision
/// rolled to) keeps distinct happenings distinct.
async fn publish_about(
    hab: &Habitat,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    mut note: String,
    secondary: Option<ObjectReference>,
) {
    // The API server refuses notes over 1 KiB.
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary,
    };
    if let Err(error) = ctx.recorder.publish(&event, &hab.object_ref(&())).await {
        warn!(%error, reason, "could not publish event");
    }
}

fn api_error(
    action: &'static str,
    kind: &'static str,
    ns: &str,
    name: &str,
    source: kube::Error,
) -> Error {
    Error::Api {
        action,
        kind,
        namespace: ns.to_owned(),
        name: name.to_owned(),
        source,
    }
}

/// Server-side applies `obj` in `ns` under [`FIELD_MANAGER`], taking over conflicting fields.
pub async fn server_side_apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.name_any();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|e| api_error("apply", kind_name::<K>(), ns, &name, e))
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "StatefulSet" => "StatefulSet",
        "Service" => "Service",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "NetworkPolicy" => "NetworkPolicy",
        "Secret" => "Secret",
        "Habitat" => "Habitat",
        "Pod" => "Pod",
        _ => "object",
    }
}
