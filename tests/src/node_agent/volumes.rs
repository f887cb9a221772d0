//! The pod's volumes on the host, written once when the pod starts (no later updates of Secret
//! or ConfigMap contents, no token rotation): Secret, ConfigMap, downwardAPI and projected
//! volumes (also `serviceAccountToken` sources, from the TokenRequest API) as files with their
//! keys, paths and modes under `<pod>/volumes/<name>`; emptyDir as a directory there; a
//! PersistentVolumeClaim as the directory `<agent>/pvcs/<namespace>/<claim>`, which outlives the
//! pod as a volume does; hostPath as the host's path.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};
use kube::Api;

use super::apiserver;
use super::env::field_value;
use super::AgentError;

/// Files of one volume: relative path -> (contents, mode).
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Creates every volume of `pod` and returns name -> host path.
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
    pvc_root: &Path,
    pod_ip: &str,
    host_ip: &str,
) -> Result<BTreeMap<String, PathBuf>, AgentError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut paths = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = pod_dir.join("volumes").join(&volume.name);
        let path = if let Some(claim) = &volume.persistent_volume_claim {
            let dir = pvc_root.join(&ns).join(&claim.claim_name);
            create_dir(&dir)?;
            dir
        } else if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if matches!(
                host.type_.as_deref(),
                Some("DirectoryOrCreate") | None | Some("")
            ) && !path.exists()
            {
                create_dir(&path)?;
            }
            path
        } else if volume.empty_dir.is_some() {
            create_dir(&dir)?;
            dir
        } else {
            let files = files_of(client, &ns, pod, volume, pod_ip, host_ip).await?;
            write_files(&dir, &files)?;
            dir
        };
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

fn create_dir(dir: &Path) -> Result<(), AgentError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| AgentError::io(format!("creating {}", dir.display()), e))
}

/// Writes `files` into `dir` (created if missing).
pub fn write_files(dir: &Path, files: &Files) -> Result<(), AgentError> {
    create_dir(dir)?;
    for (rel, (bytes, mode)) in files {
        if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
            return Err(AgentError::Spec(format!(
                "volume file path {rel}: must be relative, without '..'"
            )));
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            create_dir(parent)?;
        }
        std::fs::write(&path, bytes)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)))
            .map_err(|e| AgentError::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

/// `data` selected and renamed by `items` (all keys when there are none), with modes.
fn select(
    what: &str,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
) -> Result<Files, AgentError> {
    let mut files = Files::new();
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let mode = item.mode.map_or(default_mode, |m| m as u32);
                match data.get(&item.key) {
                    Some(bytes) => {
                        files.insert(item.path.clone(), (bytes.clone(), mode));
                    }
                    None if optional => {}
                    None => return Err(AgentError::Spec(format!("{what}: no key {}", item.key))),
                }
            }
        }
        _ => {
            for (key, bytes) in data {
                files.insert(key, (bytes, default_mode));
            }
        }
    }
    Ok(files)
}

async fn secret_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, AgentError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|s| {
        let mut data: BTreeMap<String, Vec<u8>> = s
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        data.extend(
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        data
    }))
}

async fn config_map_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, AgentError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|cm| {
        let mut data: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        data.extend(
            cm.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        data
    }))
}

async fn secret_files(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    mode: u32,
    optional: bool,
) -> Result<Files, AgentError> {
    let what = format!("Secret {ns}/{name}");
    match secret_data(client, ns, name).await? {
        Some(data) => select(&what, data, items, mode, optional),
        None if optional => Ok(Files::new()),
        None => Err(AgentError::Spec(format!("{what} not found"))),
    }
}

async fn config_map_files(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    mode: u32,
    optional: bool,
) -> Result<Files, AgentError> {
    let what = format!("ConfigMap {ns}/{name}");
    match config_map_data(client, ns, name).await? {
        Some(data) => select(&what, data, items, mode, optional),
        None if optional => Ok(Files::new()),
        None => Err(AgentError::Spec(format!("{what} not found"))),
    }
}

fn downward_files(
    pod: &Pod,
    items: Option<&Vec<DownwardAPIVolumeFile>>,
    mode: u32,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Files, AgentError> {
    let mut files = Files::new();
    for item in items.into_iter().flatten() {
        let Some(field) = &item.field_ref else {
            return Err(AgentError::Spec(format!(
                "downwardAPI item {}: only fieldRef is supported",
                item.path
            )));
        };
        let value = field_value(pod, &field.field_path, pod_ip, host_ip)?;
        files.insert(
            item.path.clone(),
            (value.into_bytes(), item.mode.map_or(mode, |m| m as u32)),
        );
    }
    Ok(files)
}

async fn files_of(
    client: &kube::Client,
    ns: &str,
    pod: &Pod,
    volume: &Volume,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Files, AgentError> {
    const DEFAULT_MODE: u32 = 0o644;
    let mode_of = |m: Option<i32>| m.map_or(DEFAULT_MODE, |m| m as u32);
    if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        return secret_files(
            client,
            ns,
            &name,
            s.items.as_ref(),
            mode_of(s.default_mode),
            s.optional == Some(true),
        )
        .await;
    }
    if let Some(c) = &volume.config_map {
        return config_map_files(
            client,
            ns,
            &c.name,
            c.items.as_ref(),
            mode_of(c.default_mode),
            c.optional == Some(true),
        )
        .await;
    }
    if let Some(d) = &volume.downward_api {
        return downward_files(
            pod,
            d.items.as_ref(),
            mode_of(d.default_mode),
            pod_ip,
            host_ip,
        );
    }
    if let Some(p) = &volume.projected {
        let mode = mode_of(p.default_mode);
        let mut files = Files::new();
        for source in p.sources.iter().flatten() {
            if let Some(s) = &source.secret {
                files.extend(
                    secret_files(
                        client,
                        ns,
                        &s.name,
                        s.items.as_ref(),
                        mode,
                        s.optional == Some(true),
                    )
                    .await?,
                );
            } else if let Some(c) = &source.config_map {
                files.extend(
                    config_map_files(
                        client,
                        ns,
                        &c.name,
                        c.items.as_ref(),
                        mode,
                        c.optional == Some(true),
                    )
                    .await?,
                );
            } else if let Some(d) = &source.downward_api {
                files.extend(downward_files(
                    pod,
                    d.items.as_ref(),
                    mode,
                    pod_ip,
                    host_ip,
                )?);
            } else if let Some(t) = &source.service_account_token {
                let token = apiserver::token(
                    client,
                    pod,
                    t.audience.iter().cloned().collect(),
                    t.expiration_seconds.unwrap_or(3600),
                )
                .await?;
                files.insert(t.path.clone(), (token.into_bytes(), mode));
            } else {
                return Err(AgentError::Spec(format!(
                    "volume {}: projected sources other than secret, configMap, downwardAPI and \
                     serviceAccountToken (e.g. clusterTrustBundle) are not supported by the test \
                     node agent",
                    volume.name
                )));
            }
        }
        return Ok(files);
    }
    Err(AgentError::Spec(format!(
        "volume {}: only secret, configMap, downwardAPI, projected, emptyDir, \
         persistentVolumeClaim and hostPath volumes are supported by the test node agent",
        volume.name
    )))
}
