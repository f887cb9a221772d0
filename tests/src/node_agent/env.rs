//! A container's environment and command line as the kubelet makes them: the `kubernetes`
//! Service's variables, then `envFrom`, then `env` in order (plain values, `fieldRef`,
//! `secretKeyRef`, `configMapKeyRef`), with `$(VAR)` references expanded against the variables
//! defined so far; then `command` (else the image's entrypoint) and `args` expanded against the
//! whole environment. Unknown references stay as written, `$$` is `$`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

use super::AgentError;

/// Expands `$(NAME)` with `vars` as Kubernetes does (`third_party/forked/golang/expansion`):
/// `$$` is a literal `$`, an unknown or unterminated reference is kept verbatim.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API `fieldPath` for `pod` (whose IP is `pod_ip`).
pub fn field_value(
    pod: &Pod,
    path: &str,
    pod_ip: &str,
    host_ip: &str,
) -> Result<String, AgentError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_owned(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_owned(),
        _ => {
            if let Some(v) = keyed("metadata.labels['", meta.labels.as_ref()) {
                v
            } else if let Some(v) = keyed("metadata.annotations['", meta.annotations.as_ref()) {
                v
            } else {
                return Err(AgentError::Spec(format!(
                    "fieldRef {path}: not supported by the test node agent (metadata.name, \
                     metadata.namespace, metadata.uid, metadata.labels['k'], \
                     metadata.annotations['k'], spec.nodeName, spec.serviceAccountName, \
                     status.podIP, status.hostIP)"
                )));
            }
        }
    };
    Ok(value)
}

/// Reads object `name` of `api`, `None` when it does not exist.
async fn fetch<K>(api: &Api<K>, name: &str) -> Result<Option<K>, AgentError>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?)
}

/// Key `key` of Secret `name` (None if the Secret or key is missing).
pub async fn secret_key(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, AgentError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    Ok(fetch(&api, name)
        .await?
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(key))
        .map(|b| b.0))
}

/// Key `key` of ConfigMap `name` (None if the ConfigMap or key is missing).
pub async fn config_map_key(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, AgentError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let Some(cm) = fetch(&api, name).await? else {
        return Ok(None);
    };
    if let Some(v) = cm.data.and_then(|mut d| d.remove(key)) {
        return Ok(Some(v.into_bytes()));
    }
    Ok(cm.binary_data.and_then(|mut d| d.remove(key)).map(|b| b.0))
}

/// The environment of `container` in `pod`: a default `PATH` and `HOSTNAME`, the `services`
/// variables, then `envFrom`, then `env`, resolved against the API server.
pub async fn container_env(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
    host_ip: &str,
    services: &[(String, String)],
) -> Result<BTreeMap<String, String>, AgentError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let cname = &container.name;
    let mut vars = BTreeMap::new();
    vars.insert(
        "PATH".to_owned(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
    );
    vars.insert("HOME".to_owned(), "/root".to_owned());
    vars.insert("HOSTNAME".to_owned(), pod_hostname(pod));
    vars.extend(services.iter().cloned());
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.secret_ref {
            let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
            match fetch(&api, &r.name).await? {
                Some(s) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        vars.insert(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(AgentError::Spec(format!(
                        "container {cname}: envFrom Secret {ns}/{} not found",
                        r.name
                    )))
                }
            }
        }
        if let Some(r) = &from.config_map_ref {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            match fetch(&api, &r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        vars.insert(format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(AgentError::Spec(format!(
                        "container {cname}: envFrom ConfigMap {ns}/{} not found",
                        r.name
                    )))
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or(""), &vars),
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    field_value(pod, &f.field_path, pod_ip, host_ip)?
                } else if let Some(s) = &from.secret_key_ref {
                    match secret_key(client, &ns, &s.name, &s.key).await? {
                        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        None if s.optional == Some(true) => continue,
                        None => {
                            return Err(AgentError::Spec(format!(
                                "container {cname}: env {}: key {} of Secret {ns}/{} not found",
                                var.name, s.key, s.name
                            )))
                        }
                    }
                } else if let Some(c) = &from.config_map_key_ref {
                    match config_map_key(client, &ns, &c.name, &c.key).await? {
                        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        None if c.optional == Some(true) => continue,
                        None => {
                            return Err(AgentError::Spec(format!(
                                "container {cname}: env {}: key {} of ConfigMap {ns}/{} not found",
                                var.name, c.key, c.name
                            )))
                        }
                    }
                } else {
                    return Err(AgentError::Spec(format!(
                        "container {cname}: env {}: only fieldRef, secretKeyRef and \
                         configMapKeyRef are supported",
                        var.name
                    )));
                }
            }
        };
        vars.insert(var.name.clone(), value);
    }
    Ok(vars)
}

/// `command` (else the image's `entrypoint`) + `args` of `container`, expanded against `vars`.
/// An image without an entrypoint needs a `command`.
pub fn argv(
    container: &Container,
    entrypoint: &[String],
    vars: &BTreeMap<String, String>,
) -> Result<Vec<String>, AgentError> {
    let mut command = container.command.clone().unwrap_or_default();
    if command.is_empty() {
        command = entrypoint.to_vec();
    }
    if command.is_empty() {
        return Err(AgentError::Spec(format!(
            "container {}: no command, and image {:?} has no entrypoint in the node agent's \
             image map",
            container.name,
            container.image.as_deref().unwrap_or_default()
        )));
    }
    Ok(command
        .iter()
        .chain(container.args.iter().flatten())
        .map(|a| expand(a, vars))
        .collect())
}

/// The pod's host name: `spec.hostname`, else its name (at most 63 characters).
pub fn pod_hostname(pod: &Pod) -> String {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    name.chars().take(63).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("POD_IP", "10.231.200.2"), ("A", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn references_expand_and_unknown_ones_stay() {
        assert_eq!(expand("$(POD_IP):9638", &vars()), "10.231.200.2:9638");
        assert_eq!(expand("$(NOPE)-$(A)", &vars()), "$(NOPE)-x");
        assert_eq!(expand("$$(A) $$ $", &vars()), "$(A) $ $");
        assert_eq!(expand("a$(A", &vars()), "a$(A");
    }

    #[test]
    fn a_container_without_command_runs_the_images_entrypoint_with_its_args() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "operator", "image": "op:1", "args": ["run", "--ip=$(POD_IP)"],
        }))
        .unwrap();
        let entrypoint = vec!["/habitat-operator".to_owned()];
        assert_eq!(
            argv(&c, &entrypoint, &vars()).unwrap(),
            ["/habitat-operator", "run", "--ip=10.231.200.2"]
        );
        let err = argv(&c, &[], &vars()).unwrap_err().to_string();
        assert!(err.contains("no command") && err.contains("op:1"), "{err}");
        let mut with_command = c.clone();
        with_command.command = Some(vec!["/bin/sh".to_owned()]);
        assert_eq!(
            argv(&with_command, &entrypoint, &vars()).unwrap()[0],
            "/bin/sh"
        );
    }
}
