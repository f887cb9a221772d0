//! Package updates with real `hab sup run` processes: update settings change in place (the
//! service keeps its process), and the strategies at-once and rolling follow a depot's channel
//! (releases built with `hab pkg build`, uploaded to a depot directory that supervisors read as
//! `file://` or through `hab depot serve`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use habitat_e2e::update::{
    all_up_on, ctl, ring, service, update_doc, Depot, Recording, GROUP, V1, V2, V3_BAD,
};
use habitat_e2e::{
    agreed_leader, hello_package, holds_throughout, ip, run_hab, wait_for, Supervisor,
};

const BLOCK_SETTINGS: u8 = 95;
const BLOCK_ROLLING: u8 = 96;
const BLOCK_AT_ONCE: u8 = 97;
const BLOCK_FAILING: u8 = 98;
const SOON: Duration = Duration::from_secs(30);
/// A whole roll of three members on a loaded machine.
const ROLL: Duration = Duration::from_secs(90);

/// The pid of the supervisor's only service, once it runs.
fn service_pid(sup: &Supervisor) -> Result<u64, String> {
    let svc = service(sup)?;
    svc["process"]["pid"]
        .as_u64()
        .ok_or_else(|| format!("no pid yet: {}", svc["process"]))
}

fn spec_text(sup: &Supervisor) -> String {
    std::fs::read_to_string(sup.root().join("sup/default/specs/hello.spec")).unwrap()
}

#[test]
fn update_settings_change_without_restarting_the_service_and_a_strategy_needs_a_url() {
    // `hab sup run` refuses a strategy without a depot before it listens, naming the flag.
    let root = tempfile::tempdir().unwrap();
    let (status, _, err) = run_hab(
        &[
            "sup",
            "run",
            hello_package().to_str().unwrap(),
            "--root",
            root.path().to_str().unwrap(),
            "--strategy",
            "at-once",
        ],
        &[],
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("--url"), "{err}");

    let sup = Supervisor::at(BLOCK_SETTINGS, 1).start();
    let pid = wait_for(SOON, "the service runs", || service_pid(&sup));
    let svc = service(&sup).unwrap();
    assert_eq!(svc["update_strategy"], "none", "{svc}");
    assert_eq!(svc["channel"], "stable", "{svc}");
    assert_eq!(svc["update"]["period"], 60.0, "the default period: {svc}");

    // A strategy that updates needs a depot: refused, naming the flag, nothing changed.
    let (code, _, err) = ctl(
        &sup,
        &["svc", "update", "habitat-rs/hello", "--strategy", "at-once"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--url"), "{err}");
    assert!(spec_text(&sup).contains("update_strategy = \"none\""));

    let depot = tempfile::tempdir().unwrap();
    let url = format!("file://{}", depot.path().display());
    let (code, out, err) = ctl(
        &sup,
        &[
            "svc",
            "update",
            "habitat-rs/hello",
            "--strategy",
            "rolling",
            "--channel",
            "beta",
            "--url",
            &url,
            "--update-period",
            "7",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("keeps running"), "{out}");
    let svc = service(&sup).unwrap();
    assert_eq!(
        (
            &svc["update_strategy"],
            &svc["channel"],
            &svc["bldr_url"],
            &svc["update"]["period"]
        ),
        (
            &"rolling".into(),
            &"beta".into(),
            &url.clone().into(),
            &7.0.into()
        ),
        "{svc}"
    );
    let spec = spec_text(&sup);
    for line in [
        "update_strategy = \"rolling\"".to_string(),
        "channel = \"beta\"".to_string(),
        format!("bldr_url = \"{url}\""),
        "update_period = 7".to_string(),
    ] {
        assert!(spec.contains(&line), "{line} not in the spec:\n{spec}");
    }
    // Rolling runs the update election: this lone member leads it.
    wait_for(SOON, "the update election finishes", || {
        let census = sup.census()?;
        let group = &census["census_groups"]["hello.default"];
        (group["update_election_status"] == "ElectionFinished")
            .then_some(())
            .ok_or_else(|| format!("{}", group["update_election_status"]))
    });

    assert_eq!(
        service_pid(&sup),
        Ok(pid),
        "hab svc update restarted the service"
    );

    // `hab svc load --force` changing only update settings does not restart either.
    let (code, out, err) = ctl(
        &sup,
        &[
            "svc",
            "load",
            "habitat-rs/hello",
            "--force",
            "--strategy",
            "none",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(service(&sup).unwrap()["update_strategy"], "none");
    assert!(spec_text(&sup).contains("update_strategy = \"none\""));
    assert_eq!(service_pid(&sup), Ok(pid), "the service restarted");
    assert!(std::path::Path::new("/proc").join(pid.to_string()).exists());

    // Anything else with --force still restarts it (the pid changes).
    let (code, out, err) = ctl(
        &sup,
        &[
            "svc",
            "load",
            "habitat-rs/hello",
            "--force",
            "--health-check-interval",
            "3",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    wait_for(SOON, "the service restarts", || match service_pid(&sup) {
        Ok(new) if new != pid => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

#[test]
fn rolling_updates_members_one_at_a_time_with_the_leader_last() {
    let depot = Depot::new();
    let sups = ring(BLOCK_ROLLING, 3);
    for sup in &sups {
        depot.load(sup, "rolling", "leader");
    }
    let ring: Vec<&Supervisor> = sups.iter().collect();
    let loaded = Instant::now();
    wait_for(ROLL, "every member runs V1, healthy", || {
        all_up_on(&ring, V1)
    });
    println!("V1 up everywhere after {:?}", loaded.elapsed());
    let leader = wait_for(SOON, "one leader", || agreed_leader(&ring, GROUP));
    wait_for(SOON, "the update leader announced V1", || {
        let update = update_doc(&sups[0])?;
        (update["target"] == V1 && update["status"] == "done")
            .then_some(())
            .ok_or_else(|| update.to_string())
    });
    println!("V1 announced after {:?}", loaded.elapsed());

    depot.upload_to_stable(V2);
    let started = Instant::now();
    let mut recording = Recording::default();
    wait_for(ROLL, "every member runs V2, healthy", || {
        recording.take(&ring, V2)
    });
    let took = started.elapsed();

    let mut expected: Vec<String> = sups
        .iter()
        .map(Supervisor::member_id)
        .filter(|id| *id != leader)
        .collect();
    expected.sort();
    expected.push(leader.clone());
    assert_eq!(
        recording.order_up_on(V2),
        expected,
        "members update in member id order, the leader ({leader}) last"
    );
    recording.assert_never_two_down();
    let update = wait_for(SOON, "the roll is done", || {
        let update = update_doc(&sups[0])?;
        (update["status"] == "done")
            .then_some(update.clone())
            .ok_or_else(|| update.to_string())
    });
    assert_eq!(update["target"], V2, "{update}");
    assert_eq!(
        agreed_leader(&ring, GROUP),
        Ok(leader),
        "the leader kept leading"
    );
    println!("rolled 3 members in {took:?}");
}

/// Over an HTTP depot (`hab depot serve`), the release uploaded into its directory.
#[test]
fn at_once_updates_every_member() {
    let depot = Depot::new();
    let server = depot.serve(SocketAddr::from((ip(BLOCK_AT_ONCE, 100), 9636)));
    let sups = ring(BLOCK_AT_ONCE, 3);
    for sup in &sups {
        depot.load_from(sup, "at-once", "standalone", &server.url());
    }
    let ring: Vec<&Supervisor> = sups.iter().collect();
    wait_for(ROLL, "every member runs V1, healthy", || {
        all_up_on(&ring, V1)
    });
    depot.upload_to_stable(V2);
    wait_for(ROLL, "every member runs V2, healthy", || {
        all_up_on(&ring, V2)
    });
    for sup in &sups {
        let metrics = sup.metrics().unwrap();
        assert!(
            metrics.contains("updates_total{event=\"restarted\"} 1"),
            "{}: {metrics}",
            sup.name()
        );
    }
}

#[test]
fn a_release_whose_health_check_fails_stops_the_roll_and_is_rolled_back() {
    let depot = Depot::new();
    let sups = ring(BLOCK_FAILING, 3);
    for sup in &sups {
        depot.load(sup, "rolling", "standalone");
    }
    let ring: Vec<&Supervisor> = sups.iter().collect();
    wait_for(ROLL, "every member runs V1, healthy", || {
        all_up_on(&ring, V1)
    });
    wait_for(SOON, "the update leader announced V1", || {
        let update = update_doc(&sups[0])?;
        (update["target"] == V1)
            .then_some(())
            .ok_or_else(|| update.to_string())
    });
    let mut ids: Vec<String> = sups.iter().map(Supervisor::member_id).collect();
    ids.sort();
    let first = ids[0].clone();

    depot.upload_to_stable(V3_BAD);
    let mut recording = Recording::default();
    let failed = wait_for(ROLL, "the roll stops at the first member", || {
        let _ = recording.take(&ring, V1);
        let update = update_doc(&sups[0])?;
        (update["status"] == "failed")
            .then_some(update.clone())
            .ok_or_else(|| update.to_string())
    });
    assert_eq!(failed["target"], V3_BAD, "{failed}");
    assert_eq!(failed["member"], first.as_str(), "{failed}");
    let failed_sup = sups.iter().find(|s| s.member_id() == first).unwrap();
    wait_for(SOON, "the failed member runs V1 again, healthy", || {
        recording.take(&ring, V1)
    });
    let svc = service(failed_sup).unwrap();
    assert_eq!(svc["update"]["status"], "failed", "{svc}");
    // Several update periods later nobody else tried the failed release.
    holds_throughout(Duration::from_secs(4), "nobody else updates to V3", || {
        recording.take(&ring, V1)
    });
    for (id, samples) in &recording.samples {
        if *id != first {
            assert!(
                samples.iter().all(|(_, s)| s.package != V3_BAD),
                "{id} ran the failed release"
            );
        }
    }
    assert!(
        !failed_sup
            .root()
            .join("pkgs/test/web/1.2.0")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "the failed release is uninstalled"
    );
    recording.assert_never_two_down();
}
