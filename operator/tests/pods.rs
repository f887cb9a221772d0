//! Pods that really run: the test control plane with kube-controller-manager, and the test node
//! agent (`habitat_e2e::node_agent`) running pods as processes in their own network and mount
//! namespaces. A plain pod gets its env, volumes, probes, pod IP and status, and stops with
//! SIGTERM when deleted; a StatefulSet's pods come from the real StatefulSet controller and go
//! with the garbage collector.
//!
//! Needs root (namespaces), as `tests/tests/partition.rs` does; without it the tests skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use habitat_e2e::node_agent::{AgentError, NodeAgent};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;
use support::{control_plane_with_controllers, eventually};

/// Deadlines for things that take seconds on an idle machine: generous, for a loaded 2-core one.
const WAIT: Duration = Duration::from_secs(120);

/// An image with nothing of its own: containers see the host's /usr, /bin, /etc.
const SHELL_IMAGE: &str = "habitat-test/shell:1";
/// An image with `hab` at /bin/hab, as the sidecar image has it.
const HAB_IMAGE: &str = "habitat-test/hab:1";

struct Images {
    _dir: tempfile::TempDir,
    shell: PathBuf,
    hab: PathBuf,
}

fn images() -> Images {
    let dir = tempfile::Builder::new()
        .prefix("habitat-images-")
        .tempdir()
        .unwrap();
    let shell = dir.path().join("shell");
    std::fs::create_dir_all(&shell).unwrap();
    let hab = dir.path().join("hab");
    std::fs::create_dir_all(hab.join("bin")).unwrap();
    let built = habitat_e2e::hab_binary();
    if std::fs::hard_link(built, hab.join("bin/hab")).is_err() {
        std::fs::copy(built, hab.join("bin/hab")).unwrap();
    }
    Images {
        shell,
        hab,
        _dir: dir,
    }
}

/// A node agent serving `ns`, or None (the test skips) when this process is not root.
fn agent(kubeconfig: &Path, ns: &str, images: &Images) -> Option<NodeAgent> {
    let started = std::time::Instant::now();
    match NodeAgent::builder(kubeconfig)
        .namespace(ns)
        .image(SHELL_IMAGE, &images.shell)
        .image(HAB_IMAGE, &images.hab)
        .start()
    {
        Ok(agent) => {
            eprintln!(
                "node agent {} on 10.231.{}.0/24 in {:?}, events in {}",
                agent.node_name(),
                agent.subnet(),
                started.elapsed(),
                agent.journal_path().display()
            );
            Some(agent)
        }
        Err(AgentError::NotRoot) => {
            eprintln!("skipped: the node agent needs root");
            None
        }
        Err(e) => panic!("starting the node agent: {e}"),
    }
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

fn netns_exists(name: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

const PROBE_SCRIPT: &str = r#"
trap 'echo "$POD_NAME" > /out/sigterm; exit 0' TERM
printf '%s\n' "$POD_NAME" "$POD_NAMESPACE" "$POD_IP" "$PASSWORD" "$MODE" "$GREETING" > /out/env.tmp
mv /out/env.tmp /out/env
cat /etc/creds/pw/password.txt > /out/secret
stat -c %a /etc/creds/pw/password.txt > /out/secret-mode
cat /etc/cfg/mode.txt /etc/cfg/name > /out/projected
cat /proc/sys/kernel/hostname > /out/hostname
echo kept > /scratch/file
touch /scratch/ready
while true; do sleep 1 & wait $!; done
"#;

#[tokio::test]
async fn a_pod_runs_with_its_env_volumes_probes_and_ip_and_stops_with_sigterm() {
    let cp = control_plane_with_controllers();
    let ns = cp.namespace("pods");
    let images = images();
    let Some(agent) = agent(&cp.kubeconfig, &ns, &images) else {
        return;
    };
    let out = tempfile::Builder::new()
        .prefix("habitat-pod-out-")
        .tempdir()
        .unwrap();
    let client = cp.client().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "stringData": {"password": "s3cret", "unused": "x"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"},
        "data": {"mode": "fast\n"},
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {
            "terminationGracePeriodSeconds": 20,
            "volumes": [
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400,
                    "items": [{"key": "password", "path": "pw/password.txt"}]}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "out", "hostPath": {"path": out.path(), "type": "Directory"}},
                {"name": "cfg", "projected": {"sources": [
                    {"configMap": {"name": "settings", "items": [{"key": "mode", "path": "mode.txt", "mode": 0o600}]}},
                    {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                ]}},
            ],
            "containers": [
                {
                    "name": "shell",
                    "image": SHELL_IMAGE,
                    "command": ["/bin/sh", "-c", PROBE_SCRIPT],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                        {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
                        {"name": "POD_IP", "valueFrom": field("status.podIP")},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                        {"name": "GREETING", "value": "hello from $(POD_NAME)"},
                    ],
                    "volumeMounts": [
                        {"name": "creds", "mountPath": "/etc/creds", "readOnly": true},
                        {"name": "scratch", "mountPath": "/scratch"},
                        {"name": "out", "mountPath": "/out"},
                        {"name": "cfg", "mountPath": "/etc/cfg"},
                    ],
                    "readinessProbe": {"exec": {"command": ["/bin/sh", "-c", "test -f /scratch/ready"]},
                        "periodSeconds": 1, "timeoutSeconds": 10},
                },
                {
                    "name": "gateway",
                    "image": HAB_IMAGE,
                    "command": ["/bin/hab"],
                    "args": ["sup", "run", "--listen-gossip", "$(POD_IP):9638",
                        "--listen-http", "0.0.0.0:9631", "--listen-ctl", "127.0.0.1:9632"],
                    "env": [
                        {"name": "POD_IP", "valueFrom": field("status.podIP")},
                        {"name": "HAB_NODE_NAME", "valueFrom": field("metadata.name")},
                    ],
                    "ports": [{"name": "http", "containerPort": 9631}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                        "periodSeconds": 1, "timeoutSeconds": 10},
                    "livenessProbe": {"tcpSocket": {"port": 9631}, "initialDelaySeconds": 1,
                        "periodSeconds": 2, "timeoutSeconds": 10, "failureThreshold": 30},
                },
            ],
        },
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let ready = eventually(WAIT, "pod probe Ready", || async {
        let pod = pods.get("probe").await.unwrap();
        (condition(&pod, "Ready").as_deref() == Some("True")).then_some(pod)
    })
    .await;
    let status = ready.status.clone().unwrap();
    let ip = status.pod_ip.clone().unwrap();
    assert!(
        ip.starts_with(&format!("10.231.{}.", agent.subnet())),
        "pod IP {ip}"
    );
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(
        ready.spec.as_ref().unwrap().node_name.as_deref(),
        Some(agent.node_name())
    );
    for c in status.container_statuses.as_ref().unwrap() {
        assert!(c.ready, "{c:?}");
        assert_eq!(c.restart_count, 0, "{c:?}");
        assert!(c.state.as_ref().unwrap().running.is_some(), "{c:?}");
    }
    assert_eq!(
        read(out.path(), "env"),
        format!("probe\n{ns}\n{ip}\ns3cret\nfast\n\nhello from probe\n")
    );
    assert_eq!(read(out.path(), "secret"), "s3cret");
    assert_eq!(read(out.path(), "secret-mode").trim(), "400");
    assert_eq!(read(out.path(), "projected"), "fast\nprobe");
    assert_eq!(read(out.path(), "hostname").trim(), "probe");

    // The host reaches the pod on its IP: the supervisor's HTTP gateway.
    let addr: std::net::SocketAddr = format!("{ip}:9631").parse().unwrap();
    let body = habitat_e2e::http_get(addr, "/healthz").unwrap();
    assert_eq!(body.trim(), "ok");
    let info = agent.pod(&ns, "probe").unwrap();
    assert!(netns_exists(&info.netns), "netns {}", info.netns);

    // Deleting it: SIGTERM (the trap writes its marker), then the agent removes the object.
    pods.delete("probe", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "pod probe gone from the API server", || async {
        pods.get_opt("probe").await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(read(out.path(), "sigterm"), "probe\n");
    assert!(agent.pod(&ns, "probe").is_none());
    assert!(!netns_exists(&info.netns), "netns {} left", info.netns);
    assert!(!info.dir.exists(), "{} left", info.dir.display());
}

const MEMBER_SCRIPT: &str = r#"
trap 'echo stopped > /out/$POD_NAME.stopped; exit 0' TERM
echo "$POD_NAME" > /data/owner
echo started > /out/$POD_NAME.started
touch /tmp/ready
while true; do
  getent hosts web-0.web web-1.web > /out/$POD_NAME.peers.tmp && mv /out/$POD_NAME.peers.tmp /out/$POD_NAME.peers
  sleep 1 & wait $!
done
"#;

#[tokio::test]
async fn a_statefulsets_pods_run_and_go_with_the_garbage_collector() {
    let cp = control_plane_with_controllers();
    let ns = cp.namespace("sts");
    let images = images();
    let Some(agent) = agent(&cp.kubeconfig, &ns, &images) else {
        return;
    };
    let out = tempfile::Builder::new()
        .prefix("habitat-sts-out-")
        .tempdir()
        .unwrap();
    let client = cp.client().await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "serviceName": "web",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 20,
                    "volumes": [{"name": "out", "hostPath": {"path": out.path(), "type": "Directory"}}],
                    "containers": [{
                        "name": "main",
                        "image": SHELL_IMAGE,
                        "command": ["/bin/sh", "-c", MEMBER_SCRIPT],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "volumeMounts": [
                            {"name": "out", "mountPath": "/out"},
                            {"name": "data", "mountPath": "/data"},
                        ],
                        "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]},
                            "periodSeconds": 1, "timeoutSeconds": 10},
                    }],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    }))
    .unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    sets.create(&PostParams::default(), &sts).await.unwrap();
    eventually(WAIT, "StatefulSet web with 2 ready replicas", || async {
        let sts = sets.get("web").await.unwrap();
        (sts.status?.ready_replicas == Some(2)).then_some(())
    })
    .await;
    for name in ["web-0", "web-1"] {
        assert_eq!(read(out.path(), &format!("{name}.started")), "started\n");
        let info = agent.pod(&ns, name).unwrap();
        assert!(netns_exists(&info.netns), "{name}: netns {}", info.netns);
    }
    // Each pod resolves its peers' stable names through the Service (the node's hosts files).
    let ips: Vec<String> = ["web-0", "web-1"]
        .iter()
        .map(|name| agent.pod(&ns, name).unwrap().ip.to_string())
        .collect();
    for name in ["web-0", "web-1"] {
        let peers = out.path().join(format!("{name}.peers"));
        eventually(WAIT, &format!("{name} resolves both peers"), || async {
            let text = std::fs::read_to_string(&peers).ok()?;
            ips.iter()
                .zip(["web-0.web", "web-1.web"])
                .all(|(ip, host)| {
                    text.lines()
                        .any(|l| l.starts_with(&format!("{ip} ")) && l.contains(host))
                })
                .then_some(())
        })
        .await;
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    sets.delete("web", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        WAIT,
        "web's pods removed by the garbage collector",
        || async {
            let list = pods.list(&ListParams::default()).await.unwrap();
            list.items.is_empty().then_some(())
        },
    )
    .await;
    for name in ["web-0", "web-1"] {
        assert_eq!(read(out.path(), &format!("{name}.stopped")), "stopped\n");
        assert!(agent.pod(&ns, name).is_none(), "{name} still on the node");
    }
}

#[tokio::test]
async fn init_containers_run_first_and_containers_restart_on_exit_and_failed_liveness() {
    let cp = control_plane_with_controllers();
    let ns = cp.namespace("restarts");
    let images = images();
    let Some(agent) = agent(&cp.kubeconfig, &ns, &images) else {
        return;
    };
    let client = cp.client().await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "restarts"},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "volumes": [{"name": "shared", "emptyDir": {}}],
            "initContainers": [{
                "name": "prepare",
                "image": SHELL_IMAGE,
                "command": ["/bin/sh", "-c", "echo prepared > /shared/init"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }],
            "containers": [
                {
                    // Exits 3 unless the init container ran first; restarted each time.
                    "name": "crasher",
                    "image": SHELL_IMAGE,
                    "command": ["/bin/sh", "-c", "test \"$(cat /shared/init)\" = prepared || exit 9; exit 3"],
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                },
                {
                    // Runs for ever but never passes its liveness probe.
                    "name": "stale",
                    "image": SHELL_IMAGE,
                    "command": ["/bin/sh", "-c", "while true; do sleep 1 & wait $!; done"],
                    "livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/alive"]},
                        "periodSeconds": 1, "failureThreshold": 2, "timeoutSeconds": 10},
                },
            ],
        },
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let statuses = eventually(WAIT, "both containers restarted twice", || async {
        let pod = pods.get("restarts").await.unwrap();
        let statuses = pod.status?.container_statuses?;
        statuses
            .iter()
            .all(|c| c.restart_count >= 2)
            .then_some(statuses)
    })
    .await;
    let pod = pods.get("restarts").await.unwrap();
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let init = &status.init_container_statuses.unwrap()[0];
    let done = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (done.exit_code, done.reason.as_deref()),
        (0, Some("Completed"))
    );
    let last = |name: &str| {
        let c = statuses.iter().find(|c| c.name == name).unwrap();
        c.last_state.clone().unwrap().terminated.unwrap()
    };
    assert_eq!(last("crasher").exit_code, 3, "{statuses:?}");
    // SIGTERM after two failed liveness probes: the shell dies of it (128 + 15).
    assert_eq!(last("stale").exit_code, 143, "{statuses:?}");
    assert!(agent.journal().contains("failed its liveness probe"));
}

/// Reads what a pod's service account can reach: the token files, then the API server through
/// the node's `kubernetes` Service with `kubectl`'s in-cluster config (client-go's own path:
/// KUBERNETES_SERVICE_HOST/PORT, the token and ca.crt).
const API_SCRIPT: &str = r#"
sa=/var/run/secrets/kubernetes.io/serviceaccount
cat $sa/namespace > /out/namespace
test -s $sa/token && test -s $sa/ca.crt && echo yes > /out/token
echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT" > /out/service
cat /projected/vault-token > /out/vault-token
kubectl get --raw /api > /out/api 2> /out/api.err
kubectl auth whoami -o jsonpath='{.status.userInfo.username}' > /out/whoami 2>> /out/api.err
touch /out/done
while true; do sleep 1 & wait $!; done
"#;

/// The payload of a JWT, as JSON.
fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.trim().split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_pod_reads_its_service_account_token_and_reaches_the_api_server_with_it() {
    let cp = control_plane_with_controllers();
    let ns = cp.namespace("token");
    let images = images();
    // kubectl at /bin/kubectl, as an image of its own.
    let kubectl_image = images._dir.path().join("kubectl");
    std::fs::create_dir_all(kubectl_image.join("bin")).unwrap();
    std::fs::copy(
        support::bin_dir().join("kubectl"),
        kubectl_image.join("bin/kubectl"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let agent = match NodeAgent::builder(&cp.kubeconfig)
        .namespace(&ns)
        .image(SHELL_IMAGE, &images.shell)
        .image("habitat-test/kubectl:1", &kubectl_image)
        .start()
    {
        Ok(agent) => agent,
        Err(AgentError::NotRoot) => {
            eprintln!("skipped: the node agent needs root");
            return;
        }
        Err(e) => panic!("starting the node agent: {e}"),
    };
    eprintln!(
        "node agent {} in {:?}",
        agent.node_name(),
        started.elapsed()
    );
    let out = tempfile::Builder::new()
        .prefix("habitat-token-out-")
        .tempdir()
        .unwrap();
    let client = cp.client().await;
    let pod = |name: &str, automount: bool| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                // Named: the API server refuses serviceAccountToken sources without it (the
                // ServiceAccount admission plugin, which fills it in, is off in the harness).
                "serviceAccountName": "default",
                "automountServiceAccountToken": automount,
                "terminationGracePeriodSeconds": 2,
                "volumes": [
                    {"name": "out", "hostPath": {"path": out.path().join(name), "type": "DirectoryOrCreate"}},
                    {"name": "vault", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "vault-token", "audience": "vault", "expirationSeconds": 600}},
                    ]}},
                ],
                "containers": [{
                    "name": "main",
                    "image": "habitat-test/kubectl:1",
                    "command": ["/bin/sh", "-c", API_SCRIPT],
                    "volumeMounts": [
                        {"name": "out", "mountPath": "/out"},
                        {"name": "vault", "mountPath": "/projected", "readOnly": true},
                    ],
                }],
            },
        }))
        .unwrap()
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod("reader", true))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("sealed", false))
        .await
        .unwrap();
    for name in ["reader", "sealed"] {
        let done = out.path().join(name).join("done");
        eventually(WAIT, &format!("pod {name} done"), || async {
            done.exists().then_some(())
        })
        .await;
    }

    let reader = out.path().join("reader");
    assert_eq!(read(&reader, "namespace"), ns);
    assert_eq!(read(&reader, "token"), "yes\n");
    assert_eq!(
        read(&reader, "service").trim(),
        format!("{}:443", agent.host_ip())
    );
    let api: serde_json::Value = serde_json::from_str(&read(&reader, "api"))
        .unwrap_or_else(|e| panic!("GET /api: {e}: {}", read(&reader, "api.err")));
    assert_eq!(api["kind"], "APIVersions", "{api}");
    assert_eq!(
        read(&reader, "whoami"),
        format!("system:serviceaccount:{ns}:default"),
        "{}",
        read(&reader, "api.err")
    );
    // The projected token: for its audience, bound to the pod.
    let claims = jwt_claims(&read(&reader, "vault-token"));
    assert_eq!(claims["aud"], json!(["vault"]), "{claims}");
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "reader", "{claims}");

    // automountServiceAccountToken: false -> no token, and no API access.
    let sealed = out.path().join("sealed");
    assert!(!sealed.join("token").exists());
    assert_eq!(read(&sealed, "namespace"), "");
    assert!(
        read(&sealed, "whoami").is_empty(),
        "{}",
        read(&sealed, "whoami")
    );
    // ... but a projected token it asked for by name.
    assert_eq!(
        jwt_claims(&read(&sealed, "vault-token"))["aud"],
        json!(["vault"])
    );

    for name in ["reader", "sealed"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually(WAIT, "both pods gone", || async {
        let list = pods.list(&ListParams::default()).await.unwrap();
        list.items.is_empty().then_some(())
    })
    .await;
}
