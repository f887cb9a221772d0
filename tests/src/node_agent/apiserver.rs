//! How pods reach the API server, as a cluster's kubelet and kube-proxy provide it: the
//! `kubernetes` Service of this node (a TCP proxy from the bridge address, port 443, to the API
//! server of the agent's kubeconfig; TLS passes through, so the API server's certificate must
//! name the bridge address), its environment variables, and service account tokens from the
//! TokenRequest API, both in the volume the ServiceAccount admission plugin would add (`token`,
//! `ca.crt`, `namespace` at `/var/run/secrets/kubernetes.io/serviceaccount`) and as projected
//! `serviceAccountToken` sources.
//!
//! Invariants: a token is requested only for a pod that names its ServiceAccount (the admission
//! plugin fills in `default`; without it the API server binds no token to the pod) and asks for
//! one (automount not false on the pod, else on its ServiceAccount); it is bound to the pod (the
//! API server refuses it once the pod is gone), and never logged.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Pod, ServiceAccount};
use kube::api::PostParams;
use kube::Api;

use super::AgentError;

/// The port of the `kubernetes` Service, as in a cluster.
pub const SERVICE_PORT: u16 = 443;

/// Where the ServiceAccount admission plugin mounts a pod's API credentials.
pub const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The volume the agent adds for the token (a name no pod's volume can have: volume names are
/// DNS labels, without dots).
pub const TOKEN_VOLUME: &str = "kube-api-access.node-agent";

/// What the kubelet requests for the admission plugin's token: one hour and seven seconds, which
/// the API server extends (a year by default) for pod-bound tokens, as it does for every kubelet,
/// since nothing here rotates them.
pub const TOKEN_SECONDS: i64 = 3607;

/// How pods reach the API server: `upstream` is the API server's `host:port` as the agent
/// reaches it, `ca_pem` the CA it trusts it with (the pods' `ca.crt`).
#[derive(Debug, Clone)]
pub struct ApiAccess {
    pub upstream: String,
    pub ca_pem: String,
}

impl ApiAccess {
    /// From the agent's client configuration.
    pub fn of(config: &kube::Config) -> ApiAccess {
        let url = &config.cluster_url;
        let host = url.host().unwrap_or("127.0.0.1");
        let port = url.port_u16().unwrap_or(SERVICE_PORT);
        let upstream = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        ApiAccess {
            upstream,
            ca_pem: pem_certificates(config.root_cert.as_deref().unwrap_or_default()),
        }
    }
}

/// DER certificates as one PEM bundle.
pub fn pem_certificates(ders: &[Vec<u8>]) -> String {
    use base64::Engine;
    let mut pem = String::new();
    for der in ders {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        for line in text.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// The variables the kubelet gives every container for the `kubernetes` Service at
/// `host:port` (whatever `enableServiceLinks` says).
pub fn service_env(host: Ipv4Addr, port: u16) -> Vec<(String, String)> {
    let url = format!("tcp://{host}:{port}");
    let prefix = format!("KUBERNETES_PORT_{port}_TCP");
    vec![
        ("KUBERNETES_SERVICE_HOST".to_owned(), host.to_string()),
        ("KUBERNETES_SERVICE_PORT".to_owned(), port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".to_owned(), port.to_string()),
        ("KUBERNETES_PORT".to_owned(), url.clone()),
        (prefix.clone(), url),
        (format!("{prefix}_PROTO"), "tcp".to_owned()),
        (format!("{prefix}_PORT"), port.to_string()),
        (format!("{prefix}_ADDR"), host.to_string()),
    ]
}

/// The pod's ServiceAccount: `serviceAccountName`, else the deprecated `serviceAccount`, else
/// `default`.
pub fn service_account_name(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.service_account_name.clone())
        .or_else(|| spec.and_then(|s| s.service_account.clone()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// Whether the pod gets a token mounted: the pod's `automountServiceAccountToken`, else its
/// ServiceAccount's, else yes.
pub fn automount(pod: Option<bool>, service_account: Option<bool>) -> bool {
    pod.or(service_account).unwrap_or(true)
}

/// Whether `container` already mounts something at `TOKEN_DIR` (then it gets no token mount,
/// as with the admission plugin).
pub fn mounts_token_dir(container: &Container) -> bool {
    container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path.trim_end_matches('/') == TOKEN_DIR)
}

/// A token of the pod's ServiceAccount for `audiences` (none: the API server's), valid for
/// `seconds`, bound to the pod.
pub async fn token(
    client: &kube::Client,
    pod: &Pod,
    audiences: Vec<String>,
    seconds: i64,
) -> Result<String, AgentError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = service_account_name(pod);
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences,
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let answer = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| AgentError::Spec(format!("token of ServiceAccount {ns}/{sa}: {e}")))?;
    answer
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            AgentError::Spec(format!(
                "token of ServiceAccount {ns}/{sa}: the API server answered without one"
            ))
        })
}

/// Whether the pod names its ServiceAccount (`serviceAccountName`, or the deprecated
/// `serviceAccount`): the API server binds tokens only to such pods, which every pod is once
/// the ServiceAccount admission plugin has seen it.
pub fn names_service_account(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    [
        spec.and_then(|s| s.service_account_name.as_deref()),
        spec.and_then(|s| s.service_account.as_deref()),
    ]
    .into_iter()
    .flatten()
    .any(|n| !n.is_empty())
}

/// The files of the token volume (`token`, `ca.crt`, `namespace`; modes as the kubelet's
/// projection: 0644), or None when the pod does not get one.
pub async fn token_volume(
    client: &kube::Client,
    pod: &Pod,
    ca_pem: &str,
) -> Result<Option<BTreeMap<String, (Vec<u8>, u32)>>, AgentError> {
    let spec_setting = pod
        .spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token);
    if spec_setting == Some(false) || !names_service_account(pod) {
        return Ok(None);
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = service_account_name(pod);
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let account = api.get_opt(&sa).await?.ok_or_else(|| {
        AgentError::Spec(format!(
            "ServiceAccount {ns}/{sa} not found (its token is mounted at {TOKEN_DIR})"
        ))
    })?;
    if !automount(spec_setting, account.automount_service_account_token) {
        return Ok(None);
    }
    let token = token(client, pod, Vec::new(), TOKEN_SECONDS).await?;
    let mut files = BTreeMap::new();
    files.insert("token".to_owned(), (token.into_bytes(), 0o644));
    files.insert("ca.crt".to_owned(), (ca_pem.as_bytes().to_vec(), 0o644));
    files.insert("namespace".to_owned(), (ns.into_bytes(), 0o644));
    Ok(Some(files))
}

/// Serves the `kubernetes` Service on `listener`: every connection is forwarded to `upstream`
/// byte for byte. Runs until the task is dropped.
pub async fn proxy(listener: tokio::net::TcpListener, upstream: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Binds the `kubernetes` Service's address on the bridge.
pub async fn bind(host: Ipv4Addr) -> Result<tokio::net::TcpListener, AgentError> {
    let addr = SocketAddr::from((host, SERVICE_PORT));
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AgentError::io(format!("listening on {addr} (the kubernetes Service)"), e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_service_env_names_the_bridge_address_as_a_kubelet_would() {
        let env: BTreeMap<_, _> = service_env(Ipv4Addr::new(10, 231, 200, 1), 443)
            .into_iter()
            .collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.231.200.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.231.200.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "10.231.200.1");
        assert_eq!(env.len(), 8);
    }

    #[test]
    fn the_pod_setting_wins_over_the_service_accounts_and_the_default_is_to_mount() {
        assert!(automount(None, None));
        assert!(!automount(None, Some(false)));
        assert!(automount(Some(true), Some(false)));
        assert!(!automount(Some(false), Some(true)));
    }

    #[test]
    fn the_service_account_defaults_to_default() {
        let pod = |spec: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
        };
        let containers = json!([{"name": "c"}]);
        assert_eq!(
            service_account_name(&pod(json!({"containers": containers}))),
            "default"
        );
        assert!(!names_service_account(&pod(
            json!({"containers": containers})
        )));
        assert!(names_service_account(&pod(
            json!({"containers": containers, "serviceAccountName": "op"})
        )));
        assert_eq!(
            service_account_name(&pod(
                json!({"containers": containers, "serviceAccountName": "op"})
            )),
            "op"
        );
        assert_eq!(
            service_account_name(&pod(
                json!({"containers": containers, "serviceAccount": "old"})
            )),
            "old"
        );
    }

    #[test]
    fn a_container_that_mounts_the_token_dir_itself_keeps_its_own() {
        let c: Container = serde_json::from_value(json!({
            "name": "c",
            "volumeMounts": [{"name": "mine", "mountPath": format!("{TOKEN_DIR}/")}],
        }))
        .unwrap();
        assert!(mounts_token_dir(&c));
        let plain: Container = serde_json::from_value(json!({"name": "c"})).unwrap();
        assert!(!mounts_token_dir(&plain));
    }

    #[test]
    fn der_certificates_become_pem_lines_of_64() {
        let pem = pem_certificates(&[vec![0u8; 100]]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last().unwrap(), &"-----END CERTIFICATE-----");
        assert_eq!(pem_certificates(&[]), "");
    }

    #[test]
    fn the_upstream_is_the_kubeconfig_servers_host_and_port() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        assert_eq!(ApiAccess::of(&config).upstream, "127.0.0.1:6443");
        config.cluster_url = "https://api.example:443".parse().unwrap();
        assert_eq!(ApiAccess::of(&config).upstream, "api.example:443");
        config.cluster_url = "https://api.example".parse().unwrap();
        assert_eq!(ApiAccess::of(&config).upstream, "api.example:443");
    }
}
