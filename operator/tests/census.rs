//! The census stream and config through the resource, end to end: the operator binary against
//! a real kube-apiserver + etcd (`support`), and three real supervisors (`hab sup run` from the
//! workspace's build, started with the habitat-e2e harness) on loopback addresses 127.0.96.1-3,
//! in a leader topology, with the ctl secret and gateway token the operator created.
//!
//! There is no kubelet (and no controller-manager): nothing runs the StatefulSet's pods. The
//! test plays the kubelet's part: it creates the pods the StatefulSet would have (`hello-0..2`,
//! with the StatefulSet's pod labels) and writes their status (podIP = the supervisor's
//! address, phase Running, Ready True) through the API server, where the operator finds them.
//! Everything else is real: the API server, the operator's census stream over HTTP, its ctl
//! client, the ring. Waits are deadlines on conditions (`eventually`), never bare sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use habitat_e2e::{copy_dir, hello_package, run_hab, Supervisor};
use habitat_operator::build;
use habitat_operator::crd::{CensusStatus, Habitat};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{control_plane, eventually, Operator};

/// Loopback block of this file's supervisors (127.0.96.x); see `const BLOCK` in tests/tests.
const BLOCK: u8 = 96;
/// Generous: supervisors, the API server and builds share two cores.
const WAIT: Duration = Duration::from_secs(90);

/// The example package with an init hook that records the environment hooks get.
fn package_with_env_hook(dir: &Path) -> PathBuf {
    let pkg = dir.join("hello");
    copy_dir(&hello_package(), &pkg);
    std::fs::write(
        pkg.join("hooks/init"),
        "#!/bin/sh\nenv > {{pkg.svc_var_path}}/hook-env\n",
    )
    .unwrap();
    pkg
}

fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, BLOCK, host)
}

async fn secret_value(secrets: &Api<Secret>, name: &str, key: &str) -> String {
    eventually(WAIT, &format!("Secret {name}"), || async {
        let secret = secrets.get_opt(name).await.unwrap()?;
        let bytes = secret.data?.remove(key)?;
        Some(String::from_utf8(bytes.0).unwrap())
    })
    .await
}

async fn census(habs: &Api<Habitat>) -> Option<CensusStatus> {
    habs.get("hello").await.unwrap().status?.census
}

/// Waits for the census to satisfy `check`, naming `what`.
async fn census_where(
    habs: &Api<Habitat>,
    what: &str,
    check: impl Fn(&CensusStatus) -> bool,
) -> CensusStatus {
    eventually(WAIT, what, || async {
        census(habs).await.filter(|c| check(c))
    })
    .await
}

async fn degraded(habs: &Api<Habitat>, reason: &str) -> String {
    eventually(WAIT, &format!("Degraded {reason}"), || async {
        let status = habs.get("hello").await.unwrap().status?;
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == reason)
            .map(|c| c.message.clone())
    })
    .await
}

async fn not_degraded(habs: &Api<Habitat>) {
    eventually(WAIT, "Degraded False", || async {
        let status = habs.get("hello").await.unwrap().status?;
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "False")
            .then_some(())
    })
    .await
}

fn alive(census: &CensusStatus) -> usize {
    census
        .members
        .iter()
        .filter(|m| m.health.as_deref() == Some("Alive"))
        .count()
}

fn rendered(sup: &Supervisor) -> String {
    std::fs::read_to_string(sup.root().join("svc/hello/config/hello.conf")).unwrap_or_default()
}

async fn set_config(habs: &Api<Habitat>, config: &str) {
    habs.patch(
        "hello",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"service": {"config": config}}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn status_mirrors_the_census_and_config_reaches_the_ring_through_the_resource() {
    let cp = control_plane();
    let ns = cp.namespace("census");
    let mut operator = Operator::start(cp, Some(&ns), &[]);
    let client = cp.client().await;
    let habs: Api<Habitat> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    let files: Secret = serde_json::from_value(json!({
        "metadata": {"name": "hello-files"},
        "stringData": {"motd.txt": "welcome\n"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &files)
        .await
        .unwrap();
    let mut hab = Habitat::test("hello")
        .leader()
        .count(3)
        .config("message = \"from the resource\"\n");
    hab.spec.service.files_secret_name = Some("hello-files".into());
    hab.metadata.uid = None;
    hab.metadata.generation = None;
    hab.metadata.namespace = None;
    let hab = habs.create(&PostParams::default(), &hab).await.unwrap();

    // The pods' secrets, as the StatefulSet gives them to the supervisors.
    let ctl = secret_value(&secrets, "hello-ctl", "ctl-secret").await;
    let token = secret_value(&secrets, "hello-gateway", "token").await;
    assert_eq!((ctl.len(), token.len()), (64, 64));
    assert_ne!(ctl, token);
    // The workstation flow of the README reads it with kubectl.
    let out = cp.kubectl(&[
        "get",
        "secret",
        "hello-ctl",
        "-n",
        &ns,
        "-o",
        "jsonpath={.data.ctl-secret}",
    ]);
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(out.stdout.trim_ascii())
        .unwrap();
    assert_eq!(decoded, ctl.as_bytes());

    let dir = tempfile::tempdir().unwrap();
    let pkg = package_with_env_hook(dir.path());
    let mut sups: Vec<Supervisor> = (1..=3)
        .map(|host| {
            Supervisor::at(BLOCK, host)
                .without_service()
                .node_name(&format!("hello-{}", host - 1))
                .peers((1..=3).filter(|h| *h != host).map(ip))
                .args([pkg.to_str().unwrap(), "--topology", "leader"])
                .env("HAB_CTL_SECRET", &ctl)
                .env("HAB_SUP_GATEWAY_AUTH_TOKEN", &token)
                .spawn()
        })
        .collect();
    for sup in &mut sups {
        sup.wait_ready();
    }

    // The kubelet's part: the StatefulSet's pods, running at the supervisors' addresses.
    for n in 0..3u8 {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("hello-{n}"), "labels": build::labels(&hab)},
            "spec": {"containers": [{"name": "habitat", "image": "example/hello:1"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let ip = ip(n + 1).to_string();
        pods.patch_status(
            &format!("hello-{n}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }})),
        )
        .await
        .unwrap();
    }

    // Three alive members mapped to their pods, one leader, config and file applied.
    // (Each part may arrive in its own status write: wait for all of them together.)
    let first = census_where(&habs, "3 alive members and a leader", |c| {
        alive(c) == 3
            && c.leader.as_ref().is_some_and(|l| l.pod.is_some())
            && c.config_incarnation.is_some()
            && c.file_incarnations.contains_key("motd.txt")
            && c.election_status.as_deref() == Some("ElectionFinished")
            && c.ready.as_deref() == Some("3/3")
            && c.members.iter().any(|m| m.service_health.is_some())
    })
    .await;
    let mut pod_names: Vec<_> = first.members.iter().filter_map(|m| m.pod.clone()).collect();
    pod_names.sort();
    assert_eq!(pod_names, ["hello-0", "hello-1", "hello-2"]);
    let roles: Vec<_> = first
        .members
        .iter()
        .filter_map(|m| m.role.clone())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| *r == "leader").count(),
        1,
        "{roles:?}"
    );
    for sup in &sups {
        let path = sup.root().join("svc/hello/config/hello.conf");
        eventually(WAIT, "spec config rendered on every member", || async {
            rendered(sup).contains("from the resource").then_some(())
        })
        .await;
        assert!(path.exists());
        let motd = sup.root().join("svc/hello/files/motd.txt");
        eventually(WAIT, "the file on every member", || async {
            (std::fs::read_to_string(&motd).ok()? == "welcome\n").then_some(())
        })
        .await;
        // The supervisor's secrets never reach a hook.
        let env = std::fs::read_to_string(sup.root().join("svc/hello/var/hook-env")).unwrap();
        assert!(env.contains("PATH="), "{env}");
        assert!(
            !env.contains("HAB_CTL_SECRET") && !env.contains(&ctl),
            "{env}"
        );
        assert!(!env.contains("HAB_SUP_GATEWAY_AUTH_TOKEN") && !env.contains(&token));
    }
    let leader_pod = first.leader.clone().unwrap().pod.unwrap();
    eventually(WAIT, "kubectl get hab shows 3/3 and the leader", || async {
        let out = cp.kubectl(&["get", "hab", "hello", "-n", &ns, "--no-headers"]);
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        (line.contains("3/3") && line.contains(&leader_pod)).then_some(())
    })
    .await;

    // The leader's supervisor dies: a new leader, and Degraded while it is confirmed dead.
    let index: usize = leader_pod.trim_start_matches("hello-").parse().unwrap();
    sups[index].kill();
    let failover = census_where(&habs, "a new leader", |c| {
        c.leader
            .as_ref()
            .and_then(|l| l.pod.as_deref())
            .is_some_and(|pod| pod != leader_pod)
    })
    .await;
    assert!(failover
        .members
        .iter()
        .any(|m| m.pod.as_deref() == Some(&leader_pod)));
    let message = degraded(&habs, "MemberDead").await;
    assert!(message.contains(&format!("pod {leader_pod}")), "{message}");
    sups[index].restart();
    census_where(&habs, "the member back", |c| alive(c) == 3).await;
    not_degraded(&habs).await;

    // A spec change reaches every member at a higher incarnation.
    let before = census(&habs).await.unwrap().config_incarnation.unwrap();
    set_config(&habs, "message = \"changed in the spec\"\n").await;
    let changed = census_where(&habs, "a higher config incarnation", |c| {
        c.config_incarnation > Some(before)
    })
    .await
    .config_incarnation
    .unwrap();
    for sup in &sups {
        eventually(WAIT, "the changed config rendered", || async {
            rendered(sup).contains("changed in the spec").then_some(())
        })
        .await;
    }

    // `hab config apply` from a workstation with the secret from `<name>-ctl`.
    let applied = changed + 10;
    let file = dir.path().join("workstation.toml");
    std::fs::write(&file, "message = \"from a workstation\"\n").unwrap();
    let remote = format!("{}:9632", ip(1));
    let (status, stdout, stderr) = run_hab(
        &[
            "config",
            "apply",
            "hello.default",
            &applied.to_string(),
            file.to_str().unwrap(),
            "--remote-sup",
            &remote,
        ],
        &[("HAB_CTL_SECRET", &ctl)],
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    census_where(&habs, "the workstation's incarnation", |c| {
        c.config_incarnation == Some(applied)
    })
    .await;
    // `kubectl describe hab` tells both config changes (from the spec and from the
    // workstation), each as an event of its own, and the member confirmed dead.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    for (reason, note) in [
        ("ConfigApplied", format!("incarnation {changed}")),
        ("ConfigApplied", format!("incarnation {applied}")),
        ("MemberDead", leader_pod.clone()),
    ] {
        eventually(WAIT, &format!("event {reason} {note}"), || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.note.as_deref() == Some(note.as_str())
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("hello")
                })
                .then_some(())
        })
        .await;
    }
    for sup in &sups {
        eventually(WAIT, "the workstation's config rendered", || async {
            rendered(sup).contains("from a workstation").then_some(())
        })
        .await;
    }

    // Invalid TOML: Degraded with the parser's line and column, nothing sent.
    set_config(&habs, "message = \"unterminated\n").await;
    let message = degraded(&habs, "InvalidConfig").await;
    assert!(
        message.contains("line 1") && message.contains("column"),
        "{message}"
    );
    assert_eq!(
        census(&habs).await.unwrap().config_incarnation,
        Some(applied)
    );
    assert!(rendered(&sups[0]).contains("from a workstation"));
    set_config(&habs, "message = \"fixed\"\n").await;
    let fixed = census_where(&habs, "the fixed config applied", |c| {
        c.config_incarnation == Some(applied + 1)
    })
    .await;
    assert_eq!(fixed.config_incarnation, Some(applied + 1));
    not_degraded(&habs).await;
    for sup in &sups {
        eventually(WAIT, "the fixed config rendered", || async {
            rendered(sup).contains("fixed").then_some(())
        })
        .await;
    }

    // An operator restart changes nothing: no write, nothing sent to the ring.
    let exit = operator.stop(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "{}", operator.log());
    let version = habs.get("hello").await.unwrap().resource_version();
    let restarted = Operator::start(cp, Some(&ns), &[]);
    eventually(
        WAIT,
        "the new operator's stream to read the census",
        || async {
            let reconciled = restarted.counter("habitat_operator_reconcile_duration_seconds_count");
            let answers = restarted.counter("habitat_operator_census_answers_total");
            (reconciled >= 1.0 && answers >= 1.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        restarted.counter("habitat_operator_ring_applies_total"),
        0.0
    );
    assert_eq!(
        restarted.counter("habitat_operator_census_status_writes_total"),
        0.0,
        "{}",
        restarted.log()
    );
    assert_eq!(habs.get("hello").await.unwrap().resource_version(), version);
    assert_eq!(
        census(&habs).await.unwrap().config_incarnation,
        Some(applied + 1)
    );

    // The whole ring unreachable: Degraded, naming why, until a member answers again.
    for sup in &mut sups {
        sup.kill();
    }
    let message = degraded(&habs, "RingUnreachable").await;
    assert!(message.contains("hello-0:"), "{message}");
    for sup in &mut sups {
        sup.restart();
    }
    not_degraded(&habs).await;
    assert_eq!(census(&habs).await.unwrap().unreachable, None);
}
