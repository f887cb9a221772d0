//! Habitat resources whose pods really run: the control plane with kube-controller-manager,
//! a test node agent for one namespace with the two images the operator's pods need, and the
//! operator binary. Shared by `tests/e2e.rs` and the `k8s` bench.
//!
//! Images are directories built here: the sidecar image holds the workspace's `hab` at
//! `/bin/hab` (what the init container copies), the application image the example packages
//! installed under `/hab/pkgs/<origin>/<name>/<version>/<release>/` (what `hab sup run <pkg>`
//! loads).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use habitat_e2e::node_agent::{AgentError, NodeAgent};
use habitat_operator::crd::{CensusStatus, Habitat};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, PostParams};
use kube::Api;

use super::{control_plane_with_controllers, eventually, ControlPlane, Operator};

/// The sidecar image (`/bin/hab`), as the operator's `--sidecar-image` names it.
pub const SIDECAR_IMAGE: &str = "habitat-test/hab:1";
/// The application image: packages `habitat-rs/hello` and `habitat-rs/web`.
pub const APP_IMAGE: &str = "habitat-test/app:1";
/// A new tag of the application image (the same directory): a pod template change that works.
pub const APP_IMAGE_2: &str = "habitat-test/app:2";
/// A release whose `hello` never passes its health check (critical): its pods never turn
/// Ready.
pub const BROKEN_IMAGE: &str = "habitat-test/app:broken";
/// Release of the test packages.
pub const RELEASE: &str = "0.1.0/20261122000000";

/// The image directories (removed on drop).
pub struct Images {
    pub dir: tempfile::TempDir,
    pub sidecar: PathBuf,
    pub app: PathBuf,
    pub broken: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Installs package `name` (IDENT `habitat-rs/<name>/<RELEASE>`) from `source` into `app`.
fn install(app: &Path, name: &str, source: &Path) {
    let dest = app.join(format!("hab/pkgs/habitat-rs/{name}/{RELEASE}"));
    copy_dir(source, &dest);
}

/// A package that binds `database` to a group exporting `port` and renders the address of
/// that group's leader into `web.conf`.
fn web_package(dir: &Path) -> PathBuf {
    let pkg = dir.join("web-src");
    std::fs::create_dir_all(pkg.join("config")).unwrap();
    std::fs::create_dir_all(pkg.join("hooks")).unwrap();
    let write = |rel: &str, text: &str| std::fs::write(pkg.join(rel), text).unwrap();
    write("IDENT", &format!("habitat-rs/web/{RELEASE}\n"));
    write("BINDS", "database=port\n");
    write("default.toml", "port = 80\n");
    write(
        "config/web.conf",
        "database = \"{{bind.database.leader.sys.ip}}:{{bind.database.leader.cfg.port}}\"\n",
    );
    std::fs::copy(
        habitat_e2e::hello_package().join("hooks/run"),
        pkg.join("hooks/run"),
    )
    .unwrap();
    pkg
}

/// Builds both images in a temporary directory.
pub fn images() -> Images {
    let dir = tempfile::Builder::new()
        .prefix("habitat-images-")
        .tempdir()
        .unwrap();
    let sidecar = dir.path().join("sidecar");
    std::fs::create_dir_all(sidecar.join("bin")).unwrap();
    let built = habitat_e2e::hab_binary();
    if std::fs::hard_link(built, sidecar.join("bin/hab")).is_err() {
        std::fs::copy(built, sidecar.join("bin/hab")).unwrap();
    }
    let app = dir.path().join("app");
    install(&app, "hello", &habitat_e2e::hello_package());
    let web = web_package(dir.path());
    install(&app, "web", &web);
    let broken = dir.path().join("broken");
    install(&broken, "hello", &habitat_e2e::hello_package());
    let hook = broken.join(format!(
        "hab/pkgs/habitat-rs/hello/{RELEASE}/hooks/health-check"
    ));
    std::fs::write(&hook, "#!/bin/sh\necho 'this release is broken'\nexit 2\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    Images {
        dir,
        sidecar,
        app,
        broken,
    }
}

/// One namespace with pods that run and an operator watching it.
pub struct Cluster {
    pub cp: &'static ControlPlane,
    pub ns: String,
    pub client: kube::Client,
    pub agent: NodeAgent,
    pub operator: Operator,
    pub images: Images,
}

impl Cluster {
    /// The cluster for namespace `<prefix>-N`, or None (the caller skips) without root.
    pub async fn start(prefix: &str) -> Option<Cluster> {
        let cp = control_plane_with_controllers();
        let ns = cp.namespace(prefix);
        let images = images();
        let agent = match NodeAgent::builder(&cp.kubeconfig)
            .namespace(&ns)
            .image(SIDECAR_IMAGE, &images.sidecar)
            .image(APP_IMAGE, &images.app)
            .image(APP_IMAGE_2, &images.app)
            .image(BROKEN_IMAGE, &images.broken)
            .start()
        {
            Ok(agent) => agent,
            Err(AgentError::NotRoot) => {
                eprintln!("skipped: the node agent needs root");
                return None;
            }
            Err(e) => panic!("starting the node agent: {e}"),
        };
        eprintln!(
            "node agent {} on 10.231.{}.0/24, events in {}",
            agent.node_name(),
            agent.subnet(),
            agent.journal_path().display()
        );
        let operator = Operator::start(cp, Some(&ns), &["--sidecar-image", SIDECAR_IMAGE]);
        let client = cp.client().await;
        Some(Cluster {
            cp,
            ns,
            client,
            agent,
            operator,
            images,
        })
    }

    pub fn habs(&self) -> Api<Habitat> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates `hab` (a `Habitat::test` fixture) in this namespace with the test image.
    pub async fn create(&self, hab: Habitat) -> Habitat {
        let mut hab = hab;
        hab.metadata.uid = None;
        hab.metadata.generation = None;
        hab.metadata.namespace = None;
        hab.spec.image = APP_IMAGE.to_owned();
        self.habs()
            .create(&PostParams::default(), &hab)
            .await
            .unwrap()
    }

    /// The census in `name`'s status.
    pub async fn census(&self, name: &str) -> Option<CensusStatus> {
        self.habs().get(name).await.ok()?.status?.census
    }

    /// Waits up to `wait` for `name`'s census to satisfy `check`.
    pub async fn census_where(
        &self,
        name: &str,
        wait: Duration,
        what: &str,
        check: impl Fn(&CensusStatus) -> bool,
    ) -> CensusStatus {
        let started = Instant::now();
        let found = eventually(wait, &format!("{name}: {what}"), || async {
            self.census(name).await.filter(|c| check(c))
        })
        .await;
        eprintln!("{name}: {what} after {:?}", started.elapsed());
        found
    }

    /// Waits until `count` pods of `name` are Running and Ready.
    pub async fn pods_ready(&self, name: &str, count: usize, wait: Duration) -> Vec<Pod> {
        let started = Instant::now();
        let pods = self.pods();
        let list = eventually(wait, &format!("{count} pods of {name} Ready"), || async {
            let params = ListParams::default().labels(&format!("habitat.sh/habitat={name}"));
            let list = pods.list(&params).await.ok()?.items;
            let ready = list.iter().filter(|p| is_ready(p)).count();
            (ready == count && list.len() == count).then_some(list)
        })
        .await;
        eprintln!("{name}: {count} pods Ready after {:?}", started.elapsed());
        list
    }

    /// Pod `pod`'s IP, while it runs on the agent.
    pub fn pod_ip(&self, pod: &str) -> Option<String> {
        Some(self.agent.pod(&self.ns, pod)?.ip.to_string())
    }

    /// A file the container `habitat` of `pod` wrote at `path` (absolute in the container),
    /// read from the host through its latest run's overlay upper directory.
    pub fn container_file(&self, pod: &str, path: &str) -> Option<String> {
        let info = self.agent.pod(&self.ns, pod)?;
        let runs = std::fs::read_dir(info.dir.join("containers")).ok()?;
        let latest = runs
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let run: u32 = name.strip_prefix("habitat-")?.parse().ok()?;
                Some(run)
            })
            .max()?;
        let file = info
            .dir
            .join(format!("containers/habitat-{latest}/upper"))
            .join(path.trim_start_matches('/'));
        std::fs::read_to_string(file).ok()
    }

    /// SIGKILLs the processes of pod `pod`'s containers: those of its network namespace that
    /// run chrooted into a container's root file system (not the agent's sandbox process,
    /// which holds the pod's namespaces, as a pause container does).
    pub fn kill_pod_processes(&self, pod: &str) {
        let info = self.agent.pod(&self.ns, pod).unwrap();
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", &info.netns])
            .output()
            .unwrap();
        let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/root"))
                    .is_ok_and(|root| root.starts_with(&info.dir))
            })
            .map(str::to_owned)
            .collect();
        assert!(!pids.is_empty(), "no process in netns {}", info.netns);
        let status = std::process::Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .status()
            .unwrap();
        assert!(status.success(), "kill -KILL {pids:?}");
    }

    /// The value of `key` in Secret `name`.
    pub async fn secret(&self, name: &str, key: &str) -> String {
        let secret = self.secrets().get(name).await.unwrap();
        let bytes = secret.data.unwrap().remove(key).unwrap();
        String::from_utf8(bytes.0).unwrap()
    }

    /// What to print when a test fails: the operator's log tail and the agent's journal.
    pub fn diagnostics(&self) -> String {
        let tail = |text: String, n: usize| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "--- operator\n{}\n--- agent\n{}",
            tail(self.operator.log(), 40),
            tail(self.agent.journal(), 40)
        )
    }
}

/// Whether `pod` is Running with Ready True.
pub fn is_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Alive members of `census`.
pub fn alive(census: &CensusStatus) -> usize {
    census
        .members
        .iter()
        .filter(|m| m.health.as_deref() == Some("Alive"))
        .count()
}

/// `census` shows `n` alive members (mapped to pods) and a leader in a pod.
pub fn complete(census: &CensusStatus, n: usize) -> bool {
    alive(census) == n
        && census
            .members
            .iter()
            .filter(|m| m.health.as_deref() == Some("Alive"))
            .all(|m| m.pod.is_some())
        && census.election_status.as_deref() == Some("ElectionFinished")
        && census.leader.as_ref().is_some_and(|l| l.pod.is_some())
}
