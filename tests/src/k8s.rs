//! The recipe of the local Kubernetes control plane, shared by the operator's test harness
//! (`operator/tests/support/mod.rs`) and the `k8s-control-plane` binary of `scripts/kube-demo`:
//! where the binaries built by `tests/k8s/build.sh` are, the PKI, the kubeconfig, and the flags
//! of etcd, kube-apiserver and kube-controller-manager.
//!
//! Invariants: every daemon listens on 127.0.0.1 only (pods reach the API server through their
//! node agent's `kubernetes` Service, whose bridge addresses the serving certificate names);
//! private keys are written 0600.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::node_agent;

/// The controllers kube-controller-manager runs: those that act on what the operator writes
/// (StatefulSet, garbage collector, disruption), what a Deployment, a Service and a namespace
/// need, and the service accounts pods take tokens for. No node lifecycle (the test node agent
/// has no kubelet heartbeat contract), no volume, certificate or cloud controllers.
pub const CONTROLLERS: &str = "statefulset,garbagecollector,disruption,deployment,replicaset,\
endpointslice,serviceaccount,serviceaccount-token,podgc,namespace";

/// The Service network; its first address is the `kubernetes` Service's ClusterIP.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// `KEY=value` pairs of `tests/k8s/versions.env`.
pub fn versions() -> std::io::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(crate::workspace_dir().join("tests/k8s/versions.env"))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// Directory with the control plane binaries: `$HABITAT_K8S_BIN`, else
/// `${HABITAT_K8S_CACHE:-$HOME/.cache/habitat-rs}/k8s-<K8S_VERSION>` (as `tests/k8s/build.sh`).
pub fn bin_dir() -> std::io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HABITAT_K8S_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let cache = match std::env::var_os("HABITAT_K8S_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/habitat-rs"),
    };
    let version = versions()?.remove("K8S_VERSION").ok_or_else(|| {
        std::io::Error::other("tests/k8s/versions.env: expected a line K8S_VERSION=v1.X.Y")
    })?;
    Ok(cache.join(format!("k8s-{version}")))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The addresses the API server's certificate names: loopback, the `kubernetes` Service's
/// ClusterIP, and every bridge address a node agent may take (`10.231.<subnet>.1`), where the
/// agent forwards its pods' `KUBERNETES_SERVICE_HOST` to the API server.
pub fn serving_ips() -> Vec<Ipv4Addr> {
    let mut ips = vec![Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 96, 0, 1)];
    ips.extend(node_agent::SUBNETS.map(node_agent::bridge_ip));
    ips
}

/// The control plane's keys and certificates, PEM.
pub struct Pki {
    pub ca: String,
    pub serving_cert: String,
    pub serving_key: String,
    pub client_cert: String,
    pub client_key: String,
    pub service_account_key: String,
    pub service_account_pub: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

impl Pki {
    /// A fresh CA; the API server's serving certificate for `localhost`, `kubernetes`,
    /// `kubernetes.default.svc` and `serving_ips()`; an admin client certificate in
    /// `system:masters`; a service-account signing key.
    pub fn generate() -> Result<Pki, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "habitat-rs test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "kubernetes.default.svc.cluster.local".to_owned(),
        ])?;
        for ip in serving_ips() {
            serving
                .subject_alt_names
                .push(SanType::IpAddress(ip.into()));
        }
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .distinguished_name
            .push(DnType::CommonName, "habitat-test-admin");
        client
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer)?;

        let sa_key = KeyPair::generate()?;
        Ok(Pki {
            ca: ca_cert.pem(),
            serving_cert: serving_cert.pem(),
            serving_key: serving_key.serialize_pem(),
            client_cert: client_cert.pem(),
            client_key: client_key.serialize_pem(),
            service_account_key: sa_key.serialize_pem(),
            service_account_pub: sa_key.public_key_pem(),
        })
    }

    /// Writes the files the daemons read into `dir`: `ca.crt`, `apiserver.crt`,
    /// `apiserver.key`, `sa.key`, `sa.pub` (keys 0600).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        for (name, text, mode) in [
            ("ca.crt", &self.ca, 0o644),
            ("apiserver.crt", &self.serving_cert, 0o644),
            ("apiserver.key", &self.serving_key, 0o600),
            ("sa.key", &self.service_account_key, 0o600),
            ("sa.pub", &self.service_account_pub, 0o644),
        ] {
            write_file(&dir.join(name), text, mode)?;
        }
        Ok(())
    }

    /// An admin kubeconfig for the API server at `url` (context `test`, namespace `default`).
    pub fn kubeconfig(&self, url: &str) -> String {
        use base64::Engine;
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n    namespace: default\ncurrent-context: test\n",
            b64(&self.ca),
            b64(&self.client_cert),
            b64(&self.client_key)
        )
    }
}

/// Creates `path` with `mode` (it must not exist) and writes `text` into it.
pub fn write_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// etcd with its data in `<dir>/etcd`, on 127.0.0.1 (no fsync: a throwaway store).
pub fn etcd_args(dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    vec![
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=default={peer_url}"),
        "--unsafe-no-fsync=true".to_owned(),
        "--log-level=warn".to_owned(),
    ]
}

/// kube-apiserver on `127.0.0.1:<secure_port>` with the files `Pki::write` put in `dir`, RBAC,
/// and no ServiceAccount admission plugin (without a controller-manager no `default`
/// ServiceAccount exists; the node agent mounts service account tokens itself).
pub fn apiserver_args(dir: &Path, etcd_client_port: u16, secure_port: u16) -> Vec<String> {
    let file = |name: &str| dir.join(name).display().to_string();
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_client_port}"),
        format!("--cert-dir={}", file("certs")),
        format!("--secure-port={secure_port}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        format!("--tls-cert-file={}", file("apiserver.crt")),
        format!("--tls-private-key-file={}", file("apiserver.key")),
        format!("--client-ca-file={}", file("ca.crt")),
        format!("--service-account-key-file={}", file("sa.pub")),
        format!("--service-account-signing-key-file={}", file("sa.key")),
        format!("--service-account-issuer=https://127.0.0.1:{secure_port}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--authorization-mode=RBAC".to_owned(),
        "--allow-privileged=true".to_owned(),
        "--disable-admission-plugins=ServiceAccount".to_owned(),
        "--v=0".to_owned(),
    ]
}

/// kube-controller-manager with `kubeconfig`, `CONTROLLERS`, no leader election, one identity
/// for all controllers, the service-account key of `dir`, serving on `127.0.0.1:<port>`.
pub fn controller_manager_args(dir: &Path, kubeconfig: &Path, port: u16) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--controllers={CONTROLLERS}"),
        "--leader-elect=false".to_owned(),
        "--use-service-account-credentials=false".to_owned(),
        format!(
            "--service-account-private-key-file={}",
            dir.join("sa.key").display()
        ),
        format!("--root-ca-file={}", dir.join("ca.crt").display()),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", dir.join("kcm-certs").display()),
        "--v=0".to_owned(),
    ]
}

/// Starts `program args` (output to `log`) under a watchdog shell that kills it, and removes
/// `cleanup` (if given), once process `parent` is gone; SIGTERM to the watchdog stops the
/// program and the watchdog alike.
pub fn spawn_watched(
    parent: u32,
    program: &Path,
    args: &[String],
    log: &Path,
    cleanup: Option<&Path>,
) -> std::io::Result<Child> {
    let script = r#"
        parent=$1; log=$2; cleanup=$3; shift 3
        "$@" >"$log" 2>&1 &
        child=$!
        trap 'kill $child 2>/dev/null; wait $child; exit 0' TERM
        while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
        kill "$child" 2>/dev/null; sleep 0.5; kill -9 "$child" 2>/dev/null
        if [ -n "$cleanup" ]; then rm -rf "$cleanup"; fi
    "#;
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(parent.to_string())
        .arg(log)
        .arg(cleanup.map(Path::as_os_str).unwrap_or_default())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_certificate_names_every_bridge_address_and_loopback() {
        let ips = serving_ips();
        assert!(ips.contains(&Ipv4Addr::LOCALHOST));
        for subnet in node_agent::SUBNETS {
            assert!(ips.contains(&Ipv4Addr::new(10, 231, subnet, 1)), "{subnet}");
        }
    }

    #[test]
    fn daemons_listen_on_loopback_only() {
        let dir = Path::new("/tmp/cp");
        let all: Vec<String> = etcd_args(dir, 1, 2)
            .into_iter()
            .chain(apiserver_args(dir, 1, 3))
            .chain(controller_manager_args(dir, &dir.join("kubeconfig"), 4))
            .collect();
        for arg in all.iter().filter(|a| {
            a.starts_with("--listen-") || a.starts_with("--bind-address") || a.contains("-urls=")
        }) {
            assert!(arg.contains("127.0.0.1"), "{arg}");
        }
    }
}
