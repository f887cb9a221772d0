//! Services loaded at runtime through the ctl gateway, with real supervisors and processes:
//! `hab svc load|unload|start|stop|status` and their exit codes, several services in one
//! supervisor, specs that survive a restart, and a stopped leader handing over at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use habitat_e2e::{
    agreed_leader, copy_dir, hello_package, run_hab, wait_for, wait_until, Supervisor, CTL_PORT,
};

const BLOCK_LIFECYCLE: u8 = 90;
const BLOCK_MANY: u8 = 91;
const BLOCK_LEADER: u8 = 92;
const SOON: Duration = Duration::from_secs(30);

/// `hab ARGS --remote-sup SUP` with SUP's secret: exit code, stdout, stderr.
fn ctl(sup: &Supervisor, args: &[&str]) -> (i32, String, String) {
    let remote = format!("{}:{CTL_PORT}", sup.ip());
    let secret = std::fs::read_to_string(sup.root().join("sup/default/CTL_SECRET")).unwrap();
    let mut all = args.to_vec();
    all.extend(["--remote-sup", &remote]);
    let (status, out, err) = run_hab(&all, &[("HAB_CTL_SECRET", secret.trim())]);
    (status.code().unwrap_or(-1), out, err)
}

/// Installs a copy of the hello package as `habitat-rs/NAME/0.1.0/20261122000000` under the
/// supervisor's root, as `hab pkg install` would lay it out.
fn install(sup: &Supervisor, name: &str) -> PathBuf {
    let dir = sup
        .root()
        .join("pkgs/habitat-rs")
        .join(name)
        .join("0.1.0/20261122000000");
    copy_dir(&hello_package(), &dir);
    std::fs::write(
        dir.join("IDENT"),
        format!("habitat-rs/{name}/0.1.0/20261122000000"),
    )
    .unwrap();
    dir
}

/// The `hab svc status` row of `ident`, split into its columns.
fn status_row(sup: &Supervisor, ident: &str) -> Option<Vec<String>> {
    let (code, out, _) = ctl(sup, &["svc", "status"]);
    if code != 0 {
        return None;
    }
    out.lines()
        .find(|l| l.starts_with(&format!("{ident}/")))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
}

/// (desired, state, pid) of `ident` as `hab svc status` shows them.
fn desired_state_pid(sup: &Supervisor, ident: &str) -> Option<(String, String, String)> {
    let row = status_row(sup, ident)?;
    Some((row[2].clone(), row[3].clone(), row[5].clone()))
}

fn census_has(sup: &Supervisor, group: &str) -> bool {
    sup.population(group)
        .is_ok_and(|population| population.contains_key(&sup.member_id()))
}

fn process_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

#[test]
fn a_service_loads_stops_starts_and_unloads_with_exit_codes_and_its_spec_survives_restarts() {
    let mut sup = Supervisor::at(BLOCK_LIFECYCLE, 1).without_service().start();
    let (code, out, err) = ctl(&sup, &["svc", "status"]);
    assert_eq!((code, out.trim()), (0, "No services loaded."), "{err}");

    // Not installed: refused as not found (exit 2), nothing saved.
    let (code, _, err) = ctl(&sup, &["svc", "load", "habitat-rs/hello"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not installed"), "{err}");
    let specs = sup.root().join("sup/default/specs");
    assert!(!specs.join("hello.spec").exists());

    install(&sup, "hello");
    let (code, out, err) = ctl(&sup, &["svc", "load", "habitat-rs/hello"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Loaded habitat-rs/hello"), "{out}");
    let spec = std::fs::read_to_string(specs.join("hello.spec")).unwrap();
    assert!(spec.contains("desired_state = \"up\""), "{spec}");
    let pid = wait_for(SOON, "hello runs", || {
        desired_state_pid(&sup, "habitat-rs/hello")
            .filter(|(d, s, pid)| d == "up" && s == "up" && pid != "<none>")
            .map(|(_, _, pid)| pid)
            .ok_or_else(|| "not up".to_string())
    });
    wait_until(SOON, "the member is in hello.default", || {
        census_has(&sup, "hello.default")
    });

    // Loaded already: a conflict unless forced.
    let (code, _, err) = ctl(&sup, &["svc", "load", "habitat-rs/hello"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already loaded"), "{err}");

    let (code, out, err) = ctl(&sup, &["svc", "stop", "habitat-rs/hello"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Stopping"), "{out}");
    wait_until(SOON, "hello stopped and left the census", || {
        desired_state_pid(&sup, "habitat-rs/hello")
            .is_some_and(|(d, s, _)| d == "down" && s == "down")
            && !process_alive(&pid)
            && !census_has(&sup, "hello.default")
    });

    // Down stays down across a restart.
    sup.restart();
    wait_until(SOON, "hello is loaded, down, after a restart", || {
        desired_state_pid(&sup, "habitat-rs/hello")
            .is_some_and(|(d, s, _)| d == "down" && s == "down")
    });
    let (code, out, err) = ctl(&sup, &["svc", "start", "habitat-rs/hello"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Starting"), "{out}");
    wait_until(SOON, "hello runs again and is back in the census", || {
        desired_state_pid(&sup, "habitat-rs/hello").is_some_and(|(_, s, _)| s == "up")
            && census_has(&sup, "hello.default")
    });

    // Up comes back up after a restart, with no PKG given to `hab sup run`.
    sup.restart();
    wait_until(SOON, "hello runs after a restart", || {
        desired_state_pid(&sup, "habitat-rs/hello")
            .is_some_and(|(_, s, pid)| s == "up" && pid != "<none>")
    });

    let (code, out, err) = ctl(&sup, &["svc", "unload", "habitat-rs/hello"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Unloading"), "{out}");
    assert!(!specs.join("hello.spec").exists());
    let (code, _, err) = ctl(&sup, &["svc", "status", "habitat-rs/hello"]);
    assert_eq!(code, 2, "{err}");
    for action in ["unload", "start", "stop"] {
        let (code, _, err) = ctl(&sup, &["svc", action, "habitat-rs/hello"]);
        assert_eq!(code, 2, "svc {action} of a service not loaded: {err}");
    }
    wait_until(SOON, "hello left the census", || {
        !census_has(&sup, "hello.default")
    });
    sup.restart();
    let (code, out, err) = ctl(&sup, &["svc", "status"]);
    assert_eq!((code, out.trim()), (0, "No services loaded."), "{err}");
}

#[test]
fn one_supervisor_runs_several_services_and_a_bad_spec_is_reported_not_lost() {
    let mut sup = Supervisor::at(BLOCK_MANY, 1).start();
    install(&sup, "second");
    let (code, _, err) = ctl(
        &sup,
        &["svc", "load", "habitat-rs/second", "--group", "blue"],
    );
    assert_eq!(code, 0, "{err}");
    wait_until(SOON, "both services run and are in the census", || {
        ["habitat-rs/hello", "habitat-rs/second"]
            .iter()
            .all(|ident| desired_state_pid(&sup, ident).is_some_and(|(_, s, _)| s == "up"))
            && census_has(&sup, "hello.default")
            && census_has(&sup, "second.blue")
    });
    let row = status_row(&sup, "habitat-rs/second").unwrap();
    assert_eq!(row.last().unwrap(), "second.blue");
    assert!(sup.root().join("svc/second/config/hello.conf").exists());

    // A spec nobody can read: the supervisor says which file and why, and keeps it.
    let broken = sup.root().join("sup/default/specs/broken.spec");
    std::fs::write(
        &broken,
        "ident = \"habitat-rs/broken\"\ntopology = \"ring\"\n",
    )
    .unwrap();
    sup.restart();
    wait_until(SOON, "both services run again", || {
        ["habitat-rs/hello", "habitat-rs/second"]
            .iter()
            .all(|ident| desired_state_pid(&sup, ident).is_some_and(|(_, s, _)| s == "up"))
    });
    assert!(broken.exists());
    let log = sup.log();
    assert!(
        log.contains("broken.spec") && log.contains("topology"),
        "the log names the bad spec and its field"
    );
}

#[test]
fn a_stopped_leader_hands_over_at_once_comes_back_a_follower_and_hab_census_marks_the_leader() {
    let members: Vec<Supervisor> = (1..=3u8)
        .map(|host| {
            let mut builder = Supervisor::at(BLOCK_LEADER, host).without_service();
            if host > 1 {
                builder = builder.peer(habitat_e2e::ip(BLOCK_LEADER, 1));
            }
            builder.start()
        })
        .collect();
    for sup in &members {
        install(sup, "hello");
        let (code, _, err) = ctl(
            sup,
            &["svc", "load", "habitat-rs/hello", "--topology", "leader"],
        );
        assert_eq!(code, 0, "{err}");
    }
    let all: Vec<&Supervisor> = members.iter().collect();
    let leader_id = wait_for(SOON, "a leader is agreed", || {
        agreed_leader(&all, "hello.default")
    });
    let leader = members.iter().find(|s| s.member_id() == leader_id).unwrap();
    let (code, _, err) = ctl(leader, &["svc", "stop", "habitat-rs/hello"]);
    assert_eq!(code, 0, "{err}");
    let rest: Vec<&Supervisor> = members
        .iter()
        .filter(|s| s.member_id() != leader_id)
        .collect();
    // Well within failure detection (the stopped member's supervisor still answers probes):
    // only its resignation makes the others elect a successor.
    let successor = wait_for(Duration::from_secs(15), "a successor is agreed", || {
        agreed_leader(&rest, "hello.default").and_then(|id| {
            if id == leader_id {
                Err("still the old leader".to_string())
            } else {
                Ok(id)
            }
        })
    });
    let (code, _, err) = ctl(leader, &["svc", "start", "habitat-rs/hello"]);
    assert_eq!(code, 0, "{err}");
    wait_until(SOON, "the old leader follows the successor", || {
        agreed_leader(&all, "hello.default").is_ok_and(|id| id == successor)
    });

    // `hab census` from any member marks the leader, as every member agrees on it.
    let http = leader.http_addr().to_string();
    let (status, out, err) = run_hab(&["census", "--remote-http", &http], &[]);
    assert!(status.success(), "{err}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("hello.default "))
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    let marked: Vec<&&str> = rows.iter().filter(|l| l.contains('*')).collect();
    assert_eq!(marked.len(), 1, "{out}");
    assert!(
        marked[0].contains(&format!("{}*", &successor[..8])) && marked[0].contains("leader"),
        "{out}"
    );
}

#[test]
fn hab_sup_restart_starts_the_same_process_again_with_its_services_and_a_higher_incarnation() {
    const BLOCK_RESTART: u8 = 93;
    let first = Supervisor::at(BLOCK_RESTART, 1).start();
    let mut second = Supervisor::at(BLOCK_RESTART, 2)
        .peer(habitat_e2e::ip(BLOCK_RESTART, 1))
        .start();
    let id = second.member_id();
    let service_pid = wait_for(SOON, "hello runs", || {
        desired_state_pid(&second, "habitat-rs/hello")
            .filter(|(_, s, pid)| s == "up" && pid != "<none>")
            .map(|(_, _, pid)| pid)
            .ok_or_else(|| "not up".to_string())
    });
    let incarnation = wait_for(SOON, "the first member knows the second", || {
        first.incarnation_of(&id)
    });

    let (code, out, err) = ctl(&second, &["sup", "restart"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Restarting"), "{out}");
    wait_until(
        SOON,
        "the second came back: a higher incarnation, its service running anew",
        || {
            first.incarnation_of(&id).is_ok_and(|i| i > incarnation)
                && desired_state_pid(&second, "habitat-rs/hello")
                    .is_some_and(|(_, s, pid)| s == "up" && pid != "<none>" && pid != service_pid)
        },
    );
    assert!(
        !process_alive(&service_pid),
        "the old service process is gone"
    );
    // The same process (exec), still running: a service manager saw no exit.
    assert!(second.exit_status().is_none());
    assert_eq!(second.log().matches("supervisor starting").count(), 2);
}
