//! Test control plane, like controller-runtime's envtest: etcd and kube-apiserver (built by
//! `tests/k8s/build.sh` at the versions in `tests/k8s/versions.env`) on loopback at free
//! ports, with certificates generated here, an admin client certificate in `system:masters`,
//! a kubeconfig for `kubectl` and `helm`, and the Habitat CRD installed. By default there is no
//! controller-manager and no kubelet: no pods run, and nothing is garbage-collected. Tests that
//! need the real controllers call `control_plane_with_controllers()`, which also starts
//! kube-controller-manager (StatefulSet, garbage collector, disruption, ...) once per test
//! binary; pods then run on a test node agent (`habitat_e2e::node_agent`).
//!
//! One control plane serves a whole test binary; tests isolate themselves by namespace.
//! The daemons are started through a watchdog that ends them (and removes their data) when
//! the test process exits.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod pods;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `KEY=value` pairs of `tests/k8s/versions.env`.
pub fn versions() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo_root().join("tests/k8s/versions.env")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Directory with the control plane binaries: `$HABITAT_K8S_BIN`, else
/// `${HABITAT_K8S_CACHE:-$HOME/.cache/habitat-rs}/k8s-<K8S_VERSION>`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HABITAT_K8S_BIN") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("HABITAT_K8S_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/habitat-rs")
        });
    cache.join(format!("k8s-{}", versions()["K8S_VERSION"]))
}

/// Path of control plane binary `name`, or a panic that says how to build it.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: the Kubernetes tests need the control plane binaries; build them with \
         `tests/k8s/build.sh` (cold: ~30 min on 2 cores, then cached), or point HABITAT_K8S_BIN at them",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shared control plane.
pub struct ControlPlane {
    /// Temporary directory with certificates, kubeconfig and etcd data.
    pub dir: PathBuf,
    /// Admin kubeconfig (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The watchdogs of etcd and kube-apiserver (they exit with the test process).
    daemons: std::sync::Mutex<Vec<Child>>,
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();
static CONTROLLER_MANAGER: OnceLock<()> = OnceLock::new();
static NAMESPACES: AtomicU32 = AtomicU32::new(0);

/// The controllers `control_plane_with_controllers` runs: those that act on what the operator
/// writes (StatefulSet, garbage collector, disruption) and what a Deployment, a Service and a
/// namespace need. No node lifecycle (the test node agent has no kubelet heartbeat contract),
/// no volume, certificate or cloud controllers.
pub const CONTROLLERS: &str = "statefulset,garbagecollector,disruption,deployment,replicaset,\
endpointslice,serviceaccount,serviceaccount-token,podgc,namespace";

/// The control plane of this test binary, started on first use.
pub fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE.get_or_init(ControlPlane::start)
}

/// The control plane with kube-controller-manager running against it (`CONTROLLERS`), both
/// started on first use. Tests that do not call it never start the controller-manager.
pub fn control_plane_with_controllers() -> &'static ControlPlane {
    let cp = control_plane();
    CONTROLLER_MANAGER.get_or_init(|| cp.start_controller_manager());
    cp
}

/// Starts `program args` under a watchdog that kills it, and removes `cleanup`, once the test
/// process `parent` is gone. Output goes to `log`.
fn spawn_watched(program: &Path, args: &[String], log: &Path, cleanup: &Path) -> Child {
    let script = r#"
        parent=$1; log=$2; cleanup=$3; shift 3
        "$@" >"$log" 2>&1 &
        child=$!
        trap 'kill $child 2>/dev/null; exit 0' TERM
        while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
        kill "$child" 2>/dev/null; sleep 0.5; kill -9 "$child" 2>/dev/null
        rm -rf "$cleanup"
    "#;
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(log)
        .arg(cleanup)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

struct Pki {
    ca: String,
    serving_cert: String,
    serving_key: String,
    client_cert: String,
    client_key: String,
    service_account_key: String,
    service_account_pub: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "habitat-rs test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let serving_key = KeyPair::generate().unwrap();
    let mut serving = CertificateParams::new(vec![
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default.svc".to_owned(),
    ])
    .unwrap();
    serving
        .subject_alt_names
        .push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
    serving
        .subject_alt_names
        .push(SanType::IpAddress(Ipv4Addr::new(10, 96, 0, 1).into()));
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "habitat-test-admin");
    client
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer).unwrap();

    let sa_key = KeyPair::generate().unwrap();
    Pki {
        ca: ca_cert.pem(),
        serving_cert: serving_cert.pem(),
        serving_key: serving_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
        service_account_key: sa_key.serialize_pem(),
        service_account_pub: sa_key.public_key_pem(),
    }
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

impl ControlPlane {
    fn start() -> ControlPlane {
        let etcd = binary("etcd");
        let apiserver = binary("kube-apiserver");
        binary("kubectl");
        let dir = tempfile::Builder::new()
            .prefix("habitat-k8s-")
            .tempdir()
            .unwrap()
            .keep();
        let pki = pki();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca = write("ca.crt", &pki.ca);
        let serving_cert = write("apiserver.crt", &pki.serving_cert);
        let serving_key = write("apiserver.key", &pki.serving_key);
        let sa_key = write("sa.key", &pki.service_account_key);
        let sa_pub = write("sa.pub", &pki.service_account_pub);

        let (etcd_client, etcd_peer, secure) = (free_port(), free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let etcd_args: Vec<String> = vec![
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        let etcd_daemon = spawn_watched(&etcd, &etcd_args, &dir.join("etcd.log"), &dir);

        let url = format!("https://127.0.0.1:{secure}");
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers={client_url}"),
            format!("--cert-dir={}", dir.join("certs").display()),
            format!("--secure-port={secure}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--tls-cert-file={}", serving_cert.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", ca.display()),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            format!("--service-account-issuer={url}"),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            "--allow-privileged=true".to_owned(),
            // No controller-manager creates the `default` ServiceAccounts.
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            "--v=0".to_owned(),
        ];
        let apiserver_daemon = spawn_watched(
            &apiserver,
            &apiserver_args,
            &dir.join("apiserver.log"),
            &dir,
        );

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n    namespace: default\ncurrent-context: test\n",
                b64(&pki.ca),
                b64(&pki.client_cert),
                b64(&pki.client_key)
            ),
        )
        .unwrap();
        let cp = ControlPlane {
            dir: dir.clone(),
            kubeconfig,
            url,
            daemons: std::sync::Mutex::new(vec![etcd_daemon, apiserver_daemon]),
        };
        cp.wait_ready(Duration::from_secs(120));
        cp.install_crd();
        cp
    }

    /// Starts kube-controller-manager with the admin kubeconfig, `CONTROLLERS`, no leader
    /// election, one identity for all controllers and the service-account key the API server
    /// verifies tokens with; waits until it serves.
    fn start_controller_manager(&self) {
        let kcm = binary("kube-controller-manager");
        let port = free_port();
        let args: Vec<String> = vec![
            format!("--kubeconfig={}", self.kubeconfig.display()),
            format!("--controllers={CONTROLLERS}"),
            "--leader-elect=false".to_owned(),
            "--use-service-account-credentials=false".to_owned(),
            format!(
                "--service-account-private-key-file={}",
                self.dir.join("sa.key").display()
            ),
            format!("--root-ca-file={}", self.dir.join("ca.crt").display()),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", self.dir.join("kcm-certs").display()),
            "--v=0".to_owned(),
        ];
        let daemon = spawn_watched(&kcm, &args, &self.dir.join("kcm.log"), &self.dir);
        self.daemons.lock().unwrap().push(daemon);
        let start = Instant::now();
        let timeout = Duration::from_secs(120);
        while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                start.elapsed() < timeout,
                "kube-controller-manager not serving on port {port} after {timeout:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "kube-controller-manager serving in {:?} (log {})",
            start.elapsed(),
            self.dir.join("kcm.log").display()
        );
    }

    /// The last lines of the control plane's logs (etcd, kube-apiserver, and the
    /// controller-manager when it runs), for failure messages.
    pub fn log_tail(&self) -> String {
        ["etcd.log", "apiserver.log", "kcm.log"]
            .iter()
            .filter(|name| self.dir.join(name).exists())
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(20);
                format!("--- {name}\n{}", lines[from..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_ready(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                eprintln!(
                    "control plane ready at {} in {:?}",
                    self.url,
                    start.elapsed()
                );
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "kube-apiserver not ready after {timeout:?}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn install_crd(&self) {
        let crd = repo_root().join("crds/habitat.yaml");
        let out = self.kubectl(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
        assert!(out.status.success(), "installing the CRD: {out:?}");
        let out = self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/habitats.habitat.sh",
        ]);
        assert!(out.status.success(), "CRD not established: {out:?}");
    }

    /// Runs `kubectl --kubeconfig <admin> args`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `kubectl` with `stdin` as standard input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `helm --kubeconfig <admin> args` with a private helm home.
    pub fn helm(&self, args: &[&str]) -> Output {
        helm_command(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .output()
            .unwrap()
    }

    /// A kube client for the current test's runtime.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// Creates a fresh namespace `<prefix>-<n>` and returns its name.
    pub fn namespace(&self, prefix: &str) -> String {
        let ns = format!(
            "{prefix}-{}-{}",
            std::process::id() % 10_000,
            NAMESPACES.fetch_add(1, Ordering::Relaxed)
        );
        let out = self.kubectl(&["create", "namespace", &ns]);
        assert!(out.status.success(), "create namespace {ns}: {out:?}");
        ns
    }
}

/// `helm args` with a private home (no repository config, no cache outside the temp dir).
pub fn helm_command(args: &[&str]) -> Command {
    let home = std::env::temp_dir().join(format!("habitat-helm-{}", std::process::id()));
    let mut cmd = Command::new(binary("helm"));
    cmd.args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

/// A running `habitat-operator run`, killed on drop.
pub struct Operator {
    /// The process.
    pub child: Child,
    /// Where its HTTP server listens.
    pub metrics_addr: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Operator {
    /// Starts the operator binary against `cp`, watching `namespace`, with `extra` args.
    pub fn start(cp: &ControlPlane, namespace: Option<&str>, extra: &[&str]) -> Operator {
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let log = cp.dir.join(format!(
            "operator-{}-{}.log",
            namespace.unwrap_or("all"),
            free_port()
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_habitat-operator"));
        cmd.arg("run")
            .arg("--metrics-addr")
            .arg(&metrics_addr)
            .args(extra)
            .env("KUBECONFIG", &cp.kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ));
        if let Some(ns) = namespace {
            cmd.arg("--namespace").arg(ns);
        }
        Operator {
            child: cmd.spawn().unwrap(),
            metrics_addr,
            log,
        }
    }

    /// GETs `path` from the operator's HTTP server (status and body), or None if it is down.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.metrics_addr).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics_addr
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    }

    /// Sum of metric `name` over all its label sets in /metrics (0 when absent or
    /// unreachable).
    pub fn counter(&self, name: &str) -> f64 {
        self.get("/metrics")
            .map(|(_, body)| {
                body.lines()
                    .filter_map(|l| {
                        let rest = l.strip_prefix(name)?;
                        let value = if let Some(labelled) = rest.strip_prefix('{') {
                            labelled.split_once("} ")?.1
                        } else {
                            rest.strip_prefix(' ')?
                        };
                        value.trim().parse::<f64>().ok()
                    })
                    .sum::<f64>()
                    + 0.0 // an empty sum is -0.0
            })
            .unwrap_or(0.0)
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit (graceful shutdown), up to `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Resident set size high-water mark of the process, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 100 ms until it returns Some, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
