//! `GET /services` entries with Habitat's field names and shapes (pure): what the service was
//! told, its process, health, hooks, config and bindings. Fields Habitat has for features we do
//! not run (Builder URL, update channel) keep Habitat's types with our values. Our additions
//! come last: why a service waits, its last config problem, what it keeps encrypted.

use serde_json::{json, Value};

use crate::census::toml_table_to_json;
use crate::service::dirs::SvcDirs;
use crate::service::hooks::{self, HookKind};
use crate::service::runtime::ServiceSpec;
use crate::service::status::ServiceStatus;
use crate::template::context::PkgContext;

fn duration(d: std::time::Duration) -> Value {
    json!({"secs": d.as_secs(), "nanos": d.subsec_nanos()})
}

fn hook_json(spec: &ServiceSpec, status: &ServiceStatus, kind: HookKind) -> Value {
    if !status.hooks.contains(kind.file_name()) {
        return Value::Null;
    }
    let svc = SvcDirs::new(&spec.root, spec.package.name());
    let (stdout, stderr) = hooks::log_paths(&svc.root, kind);
    json!({
        "render_pair": svc.hooks().join(kind.file_name()).display().to_string(),
        "stdout_log_path": stdout.display().to_string(),
        "stderr_log_path": stderr.display().to_string(),
    })
}

/// One `/services` entry.
pub fn service_json(
    spec: &ServiceSpec,
    status: &ServiceStatus,
    pkg: &PkgContext,
    sup_root: &std::path::Path,
    election_status: &str,
) -> Value {
    let package = &spec.package;
    let mut pkg_json = pkg.to_json();
    if let Value::Object(map) = &mut pkg_json {
        map.insert(
            "dependencies".into(),
            json!(package
                .deps
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()),
        );
        map.insert(
            "shutdown_signal".into(),
            json!(package.shutdown_signal.to_string()),
        );
        map.insert(
            "shutdown_timeout".into(),
            json!(package.shutdown_timeout.as_secs()),
        );
    }
    let all_pkg_binds: Vec<Value> = package
        .all_binds()
        .map(|(b, _)| json!({"service": b.name, "exports": b.exports}))
        .collect();
    let binds: Vec<String> = spec
        .bindings
        .iter()
        .map(|b| format!("{}:{}", b.name, b.service_group))
        .collect();
    let ident = &package.ident;
    let mut sys = spec.sys.to_json();
    if let Value::Object(map) = &mut sys {
        map.insert("version".into(), json!(spec.sys.version));
    }
    json!({
        "all_pkg_binds": all_pkg_binds,
        "binding_mode": spec.binding_mode.to_string(),
        "binds": binds,
        "bldr_url": "",
        "cfg": toml_table_to_json(&status.cfg),
        "channel": "stable",
        "config_from": Value::Null,
        "desired_state": if status.desired_up { "Up" } else { "Down" },
        "health_check": status.health.gateway_name(),
        "hooks": {
            "file_updated": hook_json(spec, status, HookKind::FileUpdated),
            "health_check": hook_json(spec, status, HookKind::HealthCheck),
            "init": hook_json(spec, status, HookKind::Init),
            "post_run": hook_json(spec, status, HookKind::PostRun),
            "post_stop": hook_json(spec, status, HookKind::PostStop),
            "reconfigure": hook_json(spec, status, HookKind::Reconfigure),
            "reload": Value::Null,
            "run": hook_json(spec, status, HookKind::Run),
            "suitability": hook_json(spec, status, HookKind::Suitability),
        },
        "initialized": status.initialized,
        "last_election_status": election_status,
        "manager_fs_cfg": {
            "data_path": sup_root.join("data").display().to_string(),
            "member_id_file": sup_root.join("MEMBER_ID").display().to_string(),
            "proc_lock_file": sup_root.join("LOCK").display().to_string(),
            "specs_path": sup_root.join("specs").display().to_string(),
            "sup_root": sup_root.display().to_string(),
        },
        "pkg": pkg_json,
        "process": {
            "pid": status.pid,
            "state": if status.pid.is_some() { "up" } else { "down" },
            "state_entered": status.state_entered,
        },
        "last_process_state": status.last_process.as_ref().map(|p| json!({
            "pid": p.pid,
            "termination_reason": p.reason.as_str(),
            "terminated_at": p.at,
        })),
        "next_restart_at": status.next_restart_at,
        "restart_count": status.restart_count,
        "restart_config": {
            "min_backoff_period": duration(spec.backoff.base),
            "max_backoff_period": duration(spec.backoff.cap),
            "cooldown_period": duration(spec.backoff.reset_after),
        },
        "service_group": spec.service_group.to_string(),
        "spec_file": sup_root.join("specs").join(format!("{}.spec", package.name())).display().to_string(),
        "spec_ident": {
            "origin": ident.origin,
            "name": ident.name,
            "version": ident.version,
            "release": ident.release,
        },
        "spec_identifier": ident.to_string(),
        "svc_encrypted_password": Value::Null,
        "health_check_interval": duration(spec.health_check_interval),
        "sys": sys,
        "topology": spec.topology.as_str(),
        "update_strategy": "none",
        "update_condition": "latest",
        "user_config_updated": status.user_config_updated,
        // Ours: why a service is not running yet, and the last config problem.
        "waiting_for": status.waiting_for,
        "config_error": status.config_error,
        "config_incarnation": status.config_incarnation,
        "suitability": status.suitability,
        // Ours: gossiped config and files sealed for the group (`--user`) that this member
        // cannot open, and why; the service keeps what it had.
        "kept_encrypted": status.kept_encrypted.iter().map(|k| json!({
            "kind": if k.filename.is_some() { "file" } else { "config" },
            "filename": k.filename,
            "incarnation": k.incarnation,
            "reason": k.reason,
        })).collect::<Vec<_>>(),
    })
}
