//! One service run by `service::runtime` with real files, hooks and processes, fed census views
//! directly (no ring): the restart-or-reconfigure matrix, service files, health checks, binds,
//! the leader and initializer gates, and config layers that go bad.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use habitat_sidecar::binds::{self, BindSpec, BindingMode};
use habitat_sidecar::census::{
    CensusFile, CensusGroup, CensusMember, GossipedConfig, ELECTION_FINISHED, ELECTION_IN_PROGRESS,
};
use habitat_sidecar::gossip::member::MemberId;
use habitat_sidecar::gossip::rumor::{ServiceGroup, SysInfo};
use habitat_sidecar::package::Package;
use habitat_sidecar::service::backoff::BackoffPolicy;
use habitat_sidecar::service::health::HealthStatus;
use habitat_sidecar::service::runtime::{self, RingView, ServiceSpec};
use habitat_sidecar::service::status::ServiceStatus;
use habitat_sidecar::service::Topology;
use habitat_sidecar::template::context::SysContext;
use tokio::sync::watch;

const ME: MemberId = MemberId([1; 16]);
const OTHER: MemberId = MemberId([2; 16]);
const DEADLINE: Duration = Duration::from_secs(20);

/// A package in a temp dir: `files` are (relative path, content); hooks become executable.
fn package(root: &Path, files: &[(&str, &str)]) -> Package {
    let dir = root.join("pkg");
    let mut all = vec![("IDENT", "test/app/1.0.0/20260101000000")];
    all.extend_from_slice(files);
    for (relative, content) in all {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        if relative.starts_with("hooks/") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    Package::load(&dir).unwrap()
}

/// A run hook that records each start and lives until stopped.
const RUN: &str = "#!/bin/sh\necho started >> {{pkg.svc_data_path}}/starts\nexec sleep 1000\n";

fn member(id: MemberId, initialized: bool, cfg: &str) -> CensusMember {
    CensusMember {
        incarnation: 1,
        initialized,
        ..CensusMember::new(
            id,
            "test/app/1.0.0/20260101000000",
            toml::from_str(cfg).unwrap(),
            SysInfo::default(),
        )
    }
}

fn group(name: &str, members: Vec<CensusMember>) -> CensusGroup {
    let mut group = CensusGroup::empty(ServiceGroup::parse(name).unwrap(), ME);
    group.members = members;
    group
}

struct Running {
    root: tempfile::TempDir,
    view: watch::Sender<RingView>,
    status: watch::Receiver<ServiceStatus>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn spec(root: &Path, package: Package) -> ServiceSpec {
    ServiceSpec {
        service_group: ServiceGroup::new(package.name(), "default").unwrap(),
        package,
        topology: Topology::Standalone,
        bindings: Vec::new(),
        binding_mode: BindingMode::Strict,
        health_check_interval: Duration::from_millis(200),
        root: root.to_path_buf(),
        sys: SysContext::new("0.0.0/test", ME, &SysInfo::default(), false),
        env_layer: None,
        hook_timeouts: Default::default(),
        backoff: BackoffPolicy {
            base: Duration::from_millis(50),
            ..BackoffPolicy::default()
        },
    }
}

fn start(root: tempfile::TempDir, spec: ServiceSpec, view: RingView) -> Running {
    let (view_tx, view_rx) = watch::channel(view);
    let (status_tx, status) = watch::channel(ServiceStatus::default());
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(runtime::run(spec, view_rx, status_tx, stop_rx));
    Running {
        root,
        view: view_tx,
        status,
        stop,
        task,
    }
}

impl Running {
    fn svc(&self) -> PathBuf {
        self.root.path().join("svc/app")
    }

    async fn until<T>(&self, what: &str, mut check: impl FnMut(&ServiceStatus) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = check(&self.status.borrow()) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {:?}",
                self.status.borrow()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn until_file(&self, relative: &str, wanted: impl Fn(&str) -> bool) -> String {
        let path = self.svc().join(relative);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                if wanted(&text) {
                    return text;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn pid(&self) -> u32 {
        self.until("the process to run", |s| s.pid).await
    }

    fn set_view(&self, groups: Vec<CensusGroup>) {
        self.view.send_replace(RingView { groups });
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("service stops")
            .unwrap();
    }
}

fn own_group_with_config(incarnation: u64, config: &str) -> CensusGroup {
    let mut own = group("app.default", vec![member(ME, false, "")]);
    own.service_config = Some(GossipedConfig::plain(
        incarnation,
        toml::from_str(config).unwrap(),
    ));
    own
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_config_runs_reconfigure_and_keeps_the_process() {
    let root = tempfile::tempdir().unwrap();
    let pkg = package(
        root.path(),
        &[
            ("default.toml", "port = 80\n"),
            ("config/app.conf", "port={{cfg.port}}\n"),
            ("hooks/run", RUN),
            (
                "hooks/reconfigure",
                "#!/bin/sh\necho {{cfg.port}} >> {{pkg.svc_data_path}}/reconfigured\n",
            ),
        ],
    );
    let spec = spec(root.path(), pkg);
    let svc = start(root, spec, RingView::default());
    let pid = svc.pid().await;
    assert_eq!(
        std::fs::read_to_string(svc.svc().join("config/app.conf")).unwrap(),
        "port=80\n"
    );
    svc.set_view(vec![own_group_with_config(1, "port = 9000")]);
    svc.until_file("data/reconfigured", |t| t.contains("9000"))
        .await;
    assert_eq!(
        std::fs::read_to_string(svc.svc().join("config/app.conf")).unwrap(),
        "port=9000\n"
    );
    assert_eq!(svc.status.borrow().pid, Some(pid), "not restarted");
    assert_eq!(svc.status.borrow().config_incarnation, Some(1));
    // An older incarnation arriving late changes nothing. The same view carries a service
    // file: once it is on disk, the runtime has rendered that view, so the config below is
    // what it decided, not what it had before it looked.
    let mut stale = own_group_with_config(0, "port = 1");
    stale.service_files = vec![CensusFile {
        filename: "seen-stale-view".into(),
        incarnation: 1,
        encrypted: false,
        body: b"1".to_vec(),
    }];
    svc.set_view(vec![stale]);
    svc.until_file("files/seen-stale-view", |t| t == "1").await;
    assert_eq!(
        std::fs::read_to_string(svc.svc().join("config/app.conf")).unwrap(),
        "port=9000\n"
    );
    assert_eq!(svc.status.borrow().config_incarnation, Some(1));
    assert_eq!(svc.status.borrow().pid, Some(pid), "not restarted");
    let reconfigured = std::fs::read_to_string(svc.svc().join("data/reconfigured")).unwrap();
    assert_eq!(
        reconfigured, "9000\n",
        "reconfigure ran only for the newer config"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_config_without_reconfigure_hook_restarts() {
    let root = tempfile::tempdir().unwrap();
    let pkg = package(
        root.path(),
        &[
            ("default.toml", "port = 80\n"),
            ("config/app.conf", "port={{cfg.port}}\n"),
            ("hooks/run", RUN),
        ],
    );
    let spec = spec(root.path(), pkg);
    let svc = start(root, spec, RingView::default());
    let first = svc.pid().await;
    svc.set_view(vec![own_group_with_config(1, "port = 9000")]);
    let second = svc
        .until("a new process", |s| s.pid.filter(|p| *p != first))
        .await;
    assert_ne!(first, second);
    let reason = svc.status.borrow().last_process.clone().unwrap().reason;
    assert_eq!(reason.as_str(), "app_config_updated");
    svc.until_file("data/starts", |t| t.lines().count() == 2)
        .await;
    svc.stop().await;
}

/// Hooks are templates too: a config value used only by the health-check hook rewrites it
/// without a restart; one used by the run hook restarts the service even though a reconfigure
/// hook exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_run_hook_restarts_and_a_changed_health_check_does_not() {
    let root = tempfile::tempdir().unwrap();
    let pkg = package(
        root.path(),
        &[
            ("default.toml", "hc = 0\nflag = \"a\"\n"),
            (
                "hooks/run",
                "#!/bin/sh\n# flag {{cfg.flag}}\necho started >> {{pkg.svc_data_path}}/starts\nexec sleep 1000\n",
            ),
            ("hooks/health-check", "#!/bin/sh\nexit {{cfg.hc}}\n"),
            ("hooks/reconfigure", "#!/bin/sh\ntrue\n"),
        ],
    );
    let spec = spec(root.path(), pkg);
    let svc = start(root, spec, RingView::default());
    let first = svc.pid().await;
    svc.set_view(vec![own_group_with_config(1, "hc = 1")]);
    svc.until_file("hooks/health-check", |t| t.contains("exit 1"))
        .await;
    svc.until("health Warning", |s| {
        (s.health == HealthStatus::Warning).then_some(())
    })
    .await;
    assert_eq!(svc.status.borrow().pid, Some(first), "not restarted");
    svc.set_view(vec![own_group_with_config(2, "hc = 1\nflag = \"b\"")]);
    let second = svc
        .until("a restart", |s| s.pid.filter(|p| *p != first))
        .await;
    assert_ne!(first, second);
    let reason = svc.status.borrow().last_process.clone().unwrap().reason;
    assert_eq!(reason.as_str(), "run_hook_updated");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_exit_codes_reach_the_status() {
    let root = tempfile::tempdir().unwrap();
    let code_file = root.path().join("code");
    std::fs::write(&code_file, "0").unwrap();
    let hook = format!("#!/bin/sh\nexit $(cat {})\n", code_file.display());
    let pkg = package(
        root.path(),
        &[("hooks/run", RUN), ("hooks/health-check", hook.as_str())],
    );
    let spec = spec(root.path(), pkg);
    let svc = start(root, spec, RingView::default());
    svc.pid().await;
    for (code, health) in [
        ("0", HealthStatus::Ok),
        ("1", HealthStatus::Warning),
        ("2", HealthStatus::Critical),
        ("3", HealthStatus::Unknown),
        ("0", HealthStatus::Ok),
    ] {
        std::fs::write(&code_file, code).unwrap();
        svc.until(&format!("health {health:?}"), |s| {
            (s.health == health).then_some(())
        })
        .await;
    }
    assert!(svc.status.borrow().initialized);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_files_land_in_files_and_run_file_updated() {
    let root = tempfile::tempdir().unwrap();
    let pkg = package(
        root.path(),
        &[
            ("hooks/run", RUN),
            (
                "hooks/file-updated",
                "#!/bin/sh\ncat {{pkg.svc_files_path}}/app.crt >> {{pkg.svc_data_path}}/seen\n",
            ),
        ],
    );
    let spec = spec(root.path(), pkg);
    let svc = start(root, spec, RingView::default());
    let pid = svc.pid().await;
    let mut own = group("app.default", vec![member(ME, false, "")]);
    own.service_files = vec![CensusFile {
        filename: "app.crt".into(),
        incarnation: 1,
        encrypted: false,
        body: b"CERT-1".to_vec(),
    }];
    svc.set_view(vec![own]);
    svc.until_file("data/seen", |t| t.contains("CERT-1")).await;
    let path = svc.svc().join("files/app.crt");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(svc.status.borrow().pid, Some(pid), "files do not restart");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_bind_waits_for_a_group_exporting_what_it_needs() {
    let root = tempfile::tempdir().unwrap();
    let pkg = package(
        root.path(),
        &[
            ("BINDS", "db=port\n"),
            ("hooks/run", RUN),
            (
                "config/app.conf",
                "{{#eachAlive bind.db.members as |m|}}db={{m.sys.ip}}:{{m.cfg.port}}{{/eachAlive}}\n",
            ),
        ],
    );
    let mut spec = spec(root.path(), pkg);
    let bind: BindSpec = "db:redis.default".parse().unwrap();
    spec.bindings = binds::validate(&spec.package, &[bind]).unwrap();
    let svc = start(root, spec, RingView::default());
    let reason = svc
        .until("the service to wait", |s| s.waiting_for.clone())
        .await;
    assert!(reason.contains("bind 'db'"), "{reason}");
    // The group appears without the export: still waiting.
    svc.set_view(vec![group("redis.default", vec![member(OTHER, true, "")])]);
    svc.until("the reason to name the export", |s| {
        s.waiting_for.clone().filter(|r| r.contains("port"))
    })
    .await;
    assert_eq!(svc.status.borrow().pid, None);
    let mut redis = member(OTHER, true, "port = 6379");
    redis.sys.ip = "10.0.0.9".into();
    svc.set_view(vec![group("redis.default", vec![redis])]);
    svc.pid().await;
    let conf = svc
        .until_file("config/app.conf", |t| t.contains("db="))
        .await;
    assert_eq!(conf, "db=10.0.0.9:6379\n");
    svc.stop().await;
}

fn leader_group(leader: MemberId, status: &'static str, leader_initialized: bool) -> CensusGroup {
    let mut g = group(
        "app.default",
        vec![member(ME, false, ""), member(OTHER, leader_initialized, "")],
    );
    g.election_status = status;
    g.election_term = Some(7);
    if status == ELECTION_FINISHED {
        g.leader_id = Some(leader);
        for m in &mut g.members {
            m.leader = m.member_id == leader;
            m.follower = !m.leader;
        }
    }
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_topology_starts_after_the_election_and_exports_the_term() {
    let root = tempfile::tempdir().unwrap();
    let pkg = package(
        root.path(),
        &[
            (
                "hooks/run",
                "#!/bin/sh\necho \"term=$HAB_ELECTION_TERM\" >> {{pkg.svc_data_path}}/starts\nexec sleep 1000\n",
            ),
            (
                "config/role.conf",
                "leader={{svc.me.leader}} follower={{svc.me.follower}}\n",
            ),
        ],
    );
    let mut spec = spec(root.path(), pkg);
    spec.topology = Topology::Leader;
    let svc = start(
        root,
        spec,
        RingView {
            groups: vec![leader_group(ME, ELECTION_IN_PROGRESS, false)],
        },
    );
    let reason = svc.until("waiting", |s| s.waiting_for.clone()).await;
    assert!(reason.contains("election"), "{reason}");
    assert_eq!(svc.status.borrow().pid, None);
    svc.set_view(vec![leader_group(ME, ELECTION_FINISHED, false)]);
    svc.pid().await;
    svc.until_file("data/starts", |t| t.contains("term=7"))
        .await;
    let role = svc.until_file("config/role.conf", |_| true).await;
    assert_eq!(role, "leader=true follower=false\n");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializer_followers_wait_for_the_leaders_first_passing_health_check() {
    let root = tempfile::tempdir().unwrap();
    let pkg = package(root.path(), &[("hooks/run", RUN)]);
    let mut spec = spec(root.path(), pkg);
    spec.topology = Topology::Initializer;
    let svc = start(
        root,
        spec,
        RingView {
            groups: vec![leader_group(OTHER, ELECTION_FINISHED, false)],
        },
    );
    let reason = svc.until("waiting", |s| s.waiting_for.clone()).await;
    assert!(reason.contains("initializer"), "{reason}");
    svc.set_view(vec![leader_group(OTHER, ELECTION_FINISHED, true)]);
    svc.pid().await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_user_toml_is_reported_and_the_last_good_config_keeps_running() {
    let root = tempfile::tempdir().unwrap();
    let pkg = package(
        root.path(),
        &[
            ("default.toml", "port = 80\n"),
            ("config/app.conf", "port={{cfg.port}}\n"),
            ("hooks/run", RUN),
            ("hooks/reconfigure", "#!/bin/sh\ntrue\n"),
        ],
    );
    let user_toml = root.path().join("user/app/config/user.toml");
    std::fs::create_dir_all(user_toml.parent().unwrap()).unwrap();
    let spec = spec(root.path(), pkg);
    let svc = start(root, spec, RingView::default());
    svc.pid().await;
    std::fs::write(&user_toml, "port = 81\n").unwrap();
    svc.until_file("config/app.conf", |t| t.contains("81"))
        .await;
    std::fs::write(&user_toml, "port = = broken\n").unwrap();
    let problem = svc
        .until("the config error", |s| s.config_error.clone())
        .await;
    assert!(problem.contains("user.toml"), "{problem}");
    assert!(problem.contains("line 1"), "{problem}");
    assert!(std::fs::read_to_string(svc.svc().join("config/app.conf"))
        .unwrap()
        .contains("81"));
    assert!(
        svc.status.borrow().pid.is_some(),
        "the service keeps running"
    );
    std::fs::write(&user_toml, "port = 82\n").unwrap();
    svc.until_file("config/app.conf", |t| t.contains("82"))
        .await;
    svc.until("the error to clear", |s| {
        s.config_error.is_none().then_some(())
    })
    .await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_runs_post_stop_and_removes_the_pid_file() {
    let root = tempfile::tempdir().unwrap();
    let pkg = package(
        root.path(),
        &[
            ("hooks/run", RUN),
            (
                "hooks/post-stop",
                "#!/bin/sh\necho done > {{pkg.svc_data_path}}/post-stop\n",
            ),
        ],
    );
    let spec = spec(root.path(), pkg);
    let svc = start(root, spec, RingView::default());
    svc.pid().await;
    let svc_dir = svc.svc();
    assert!(svc_dir.join("PID").exists());
    let keep = svc.root.path().to_path_buf();
    svc.stop.send_replace(true);
    tokio::time::timeout(DEADLINE, svc.task)
        .await
        .unwrap()
        .unwrap();
    assert!(!svc_dir.join("PID").exists());
    assert_eq!(
        std::fs::read_to_string(keep.join("svc/app/data/post-stop")).unwrap(),
        "done\n"
    );
}
