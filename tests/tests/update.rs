//! Package updates with real `hab sup run` processes: update settings change in place (the
//! service keeps its process), and the strategies at-once and rolling follow a depot's channel
//! (releases built with `hab pkg build`, served from a `file://` depot directory).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;

use habitat_e2e::{run_hab, wait_for, Supervisor, CTL_PORT};

const BLOCK_SETTINGS: u8 = 95;
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

/// The supervisor's only `/services` entry.
fn service(sup: &Supervisor) -> Result<Value, String> {
    let services = sup.get_json("/services")?;
    services
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| format!("no service in {services}"))
}

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
