//! The controller: watches `Habitat` resources (and, by metadata only, the children they own)
//! and reconciles each with a fixed pipeline: finalizer -> build -> server-side apply ->
//! status. Children are applied under one field manager with owner references, so a second
//! apply of an unchanged resource writes nothing; `spec.paused` skips the apply.
//!
//! The finalizer deletes what owner references do not cover: the members' PersistentVolumeClaims.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::build::{self, pdb, secrets, services, statefulset, BuildConfig};
use crate::crd::{Habitat, FINALIZER};
use crate::metrics::Metrics;
use crate::status::{desired_status, is_current, Outcome};
use crate::{Error, Result};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "habitat-operator";
/// How often a resource is reconciled when nothing changes.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Delay before a failed reconcile is retried.
pub const RETRY: Duration = Duration::from_secs(10);

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
}

impl Context {
    /// A context for `client`; `instance` names this operator replica in events.
    pub fn new(client: Client, build: BuildConfig, metrics: Arc<Metrics>, instance: &str) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(instance.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            build,
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
    // Children are watched by metadata only (`PartialObjectMeta`): a change of any of them,
    // status included, only needs to trigger a reconcile of its owner, and metadata keeps the
    // operator's memory small with many resources.
    Controller::new(
        api::<Habitat>(client, &namespace),
        watcher::Config::default(),
    )
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
        managed,
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(error) = result {
            warn!(%error, "reconcile failed");
        }
    })
    .await;
}

/// Reconciles one resource: adds the finalizer, then applies or cleans up.
#[instrument(skip_all, fields(habitat = %hab.name_any(), namespace = hab.namespace().unwrap_or_default()))]
pub async fn reconcile(hab: Arc<Habitat>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let ns = hab
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(hab.name_any()))?;
    let api: Api<Habitat> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, hab.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(hab) => apply(&hab, &ctx, &ns).await,
            FinalizerEvent::Cleanup(hab) => cleanup(&hab, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| finalizer_error(e, &hab, &ns));
    ctx.metrics.observe(started.elapsed());
    result
}

/// Logs and counts a failed reconcile, and retries it after [`RETRY`].
pub fn error_policy(hab: Arc<Habitat>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(habitat = %hab.name_any(), %error, "reconcile failed; retrying in {RETRY:?}");
    ctx.metrics.failed(error);
    Action::requeue(RETRY)
}

fn finalizer_error(
    error: kube::runtime::finalizer::Error<Error>,
    hab: &Habitat,
    ns: &str,
) -> Error {
    use kube::runtime::finalizer::Error as F;
    match error {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        other => Error::Finalizer {
            finalizer: FINALIZER,
            namespace: ns.to_owned(),
            name: hab.name_any(),
            message: other.to_string(),
        },
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

async fn apply(hab: &Habitat, ctx: &Context, ns: &str) -> Result<Action> {
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    if hab.spec.paused {
        let sts = sts_api
            .get_opt(&hab.name_any())
            .await
            .map_err(|e| api_error("get", "StatefulSet", ns, &hab.name_any(), e))?;
        write_status(hab, ctx, ns, Outcome::Paused(sts.as_ref())).await?;
        return Ok(Action::requeue(RESYNC));
    }
    match apply_children(hab, ctx, ns).await {
        Ok(sts) => {
            let new_generation =
                hab.status.as_ref().and_then(|s| s.observed_generation) != hab.metadata.generation;
            write_status(hab, ctx, ns, Outcome::Applied(Some(&sts))).await?;
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
            Ok(Action::requeue(RESYNC))
        }
        Err(error) => {
            let message = error.to_string();
            let sts = sts_api.get_opt(&hab.name_any()).await.ok().flatten();
            // Best effort: the error itself is what the controller reports and retries.
            if let Err(status_error) =
                write_status(hab, ctx, ns, Outcome::Failed(&message, sts.as_ref())).await
            {
                warn!(%status_error, "could not record the failure in status");
            }
            publish(hab, ctx, EventType::Warning, "ApplyFailed", message).await;
            Err(error)
        }
    }
}

/// Applies every child of `hab`; returns the StatefulSet as the API server has it.
async fn apply_children(hab: &Habitat, ctx: &Context, ns: &str) -> Result<StatefulSet> {
    ensure_ring_key(hab, ctx, ns).await?;
    let config_name = build::config_secret_name(hab);
    match secrets::config_secret(hab) {
        Some(secret) => {
            server_side_apply(&ctx.client, ns, &secret).await?;
        }
        None => delete_if_exists::<Secret>(&ctx.client, ns, &config_name).await?,
    }
    server_side_apply(&ctx.client, ns, &services::peers_service(hab)).await?;
    server_side_apply(&ctx.client, ns, &services::client_service(hab)).await?;
    server_side_apply(&ctx.client, ns, &pdb::pdb(hab)).await?;
    server_side_apply(&ctx.client, ns, &statefulset::statefulset(hab, &ctx.build)).await
}

/// Creates the ring key Secret when the spec asks for one and it does not exist. An existing
/// Secret is never touched: replacing a ring key splits the ring.
async fn ensure_ring_key(hab: &Habitat, ctx: &Context, ns: &str) -> Result<()> {
    let mut key = [0u8; secrets::RING_KEY_LEN];
    rand::fill(&mut key[..]);
    let Some(secret) = secrets::ring_key_secret(hab, &key) else {
        return Ok(());
    };
    let name = secret.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    if api
        .get_metadata_opt(&name)
        .await
        .map_err(|e| api_error("get", "Secret", ns, &name, e))?
        .is_some()
    {
        return Ok(());
    }
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
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(api_error("create", "Secret", ns, &name, e)),
    }
}

async fn cleanup(hab: &Habitat, ctx: &Context, ns: &str) -> Result<Action> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let selector = build::selector_string(hab);
    pvcs.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&selector),
    )
    .await
    .map_err(|e| api_error("delete", "PersistentVolumeClaim", ns, &selector, e))?;
    publish(
        hab,
        ctx,
        EventType::Normal,
        "Deleted",
        format!(
            "deleted the volumes of {}; owned children go with the resource",
            hab.name_any()
        ),
    )
    .await;
    Ok(Action::await_change())
}

async fn write_status(hab: &Habitat, ctx: &Context, ns: &str, outcome: Outcome<'_>) -> Result<()> {
    let status = desired_status(hab, outcome, &now());
    if is_current(hab, &status) {
        return Ok(());
    }
    let api: Api<Habitat> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": Habitat::api_version(&()),
        "kind": Habitat::kind(&()),
        "status": status,
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

async fn publish(hab: &Habitat, ctx: &Context, type_: EventType, reason: &str, mut note: String) {
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
        secondary: None,
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

async fn delete_if_exists<K>(client: &Client, ns: &str, name: &str) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(api_error("delete", kind_name::<K>(), ns, name, e)),
    }
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "StatefulSet" => "StatefulSet",
        "Service" => "Service",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "Secret" => "Secret",
        "PersistentVolumeClaim" => "PersistentVolumeClaim",
        "Habitat" => "Habitat",
        _ => "object",
    }
}
