//! Helpers for package-update tests and benchmarks (`tests/update.rs`, `update-bench`): an
//! origin key and releases built with `hab pkg build`, a `file://` depot they are uploaded to,
//! supervisors loading a service that follows it, and a recording of every member's release
//! and health over time (order of updates, members down at once).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{hab_binary, run_hab, wait_until, Supervisor, SupervisorBuilder, CTL_PORT};

pub const GROUP: &str = "web.default";
pub const V1: &str = "test/web/1.0.0/20260101000000";
pub const V2: &str = "test/web/1.1.0/20260102000000";
pub const V3_BAD: &str = "test/web/1.2.0/20260103000000";

/// `hab ARGS --remote-sup SUP` with SUP's secret: exit code, stdout, stderr.
pub fn ctl(sup: &Supervisor, args: &[&str]) -> (i32, String, String) {
    let remote = format!("{}:{CTL_PORT}", sup.ip());
    let secret = std::fs::read_to_string(sup.root().join("sup/default/CTL_SECRET")).unwrap();
    let mut all = args.to_vec();
    all.extend(["--remote-sup", &remote]);
    let (status, out, err) = run_hab(&all, &[("HAB_CTL_SECRET", secret.trim())]);
    (status.code().unwrap_or(-1), out, err)
}

/// The supervisor's only `/services` entry.
pub fn service(sup: &Supervisor) -> Result<Value, String> {
    let services = sup.get_json("/services")?;
    services
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| format!("no service in {services}"))
}

/// A run hook that lives as long as its supervisor.
pub const RUN: &str =
    "#!/bin/sh\nsup=$PPID\nwhile kill -0 \"$sup\" 2>/dev/null; do sleep 1; done\n";

/// An origin key, releases built with `hab pkg build`, and a `file://` depot directory.
pub struct Depot {
    work: tempfile::TempDir,
}

impl Depot {
    /// Generates origin `test`'s key and builds V1 and V2 (health check passing) and V3_BAD
    /// (health check critical); V1 is uploaded and in stable.
    #[allow(clippy::new_without_default)] // it builds releases: not a cheap default
    pub fn new() -> Depot {
        let depot = Depot {
            work: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(depot.dir()).unwrap();
        let keys = depot.keys();
        let (status, out, err) = run_hab(
            &[
                "origin",
                "key",
                "generate",
                "test",
                "--cache-key-path",
                keys.to_str().unwrap(),
            ],
            &[],
        );
        assert!(status.success(), "{out}{err}");
        for (ident, health) in [(V1, 0), (V2, 0), (V3_BAD, 2)] {
            depot.build(ident, health);
        }
        depot.upload_to_stable(V1);
        depot
    }

    pub fn keys(&self) -> PathBuf {
        self.work.path().join("keys")
    }

    pub fn dir(&self) -> PathBuf {
        self.work.path().join("depot")
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir().display())
    }

    pub fn hart(&self, ident: &str) -> PathBuf {
        self.work
            .path()
            .join("harts")
            .join(format!("{}-x86_64-linux.hart", ident.replace('/', "-")))
    }

    /// A package directory for `ident` whose health check exits `health`, built into a .hart.
    pub fn build(&self, ident: &str, health: i32) {
        let pkg = self.work.path().join("src").join(ident.replace('/', "-"));
        for (relative, content) in [
            ("IDENT", format!("{ident}\n")),
            ("default.toml", "port = 8000\n".to_string()),
            ("hooks/run", RUN.to_string()),
            // A check that takes a moment, as real ones do: a member is visibly "not yet
            // healthy" after each restart, so the recording sees every one.
            (
                "hooks/health-check",
                format!("#!/bin/sh\nsleep 0.3\nexit {health}\n"),
            ),
        ] {
            let path = pkg.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            if relative.starts_with("hooks/") {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        let out_dir = self.work.path().join("harts");
        let (status, out, err) = run_hab(
            &[
                "pkg",
                "build",
                pkg.to_str().unwrap(),
                "--output",
                out_dir.to_str().unwrap(),
                "--cache-key-path",
                self.keys().to_str().unwrap(),
            ],
            &[],
        );
        assert!(status.success(), "{out}{err}");
        assert!(
            self.hart(ident).is_file(),
            "no {}: {out}",
            self.hart(ident).display()
        );
    }

    /// `hab pkg upload HART --channel stable`: the release becomes the channel's latest.
    pub fn upload_to_stable(&self, ident: &str) {
        let hart = self.hart(ident);
        let url = self.url();
        let (status, out, err) = run_hab(
            &[
                "pkg",
                "upload",
                hart.to_str().unwrap(),
                "--url",
                &url,
                "--channel",
                "stable",
            ],
            &[],
        );
        assert!(status.success(), "{out}{err}");
    }

    /// Serves the depot directory with `hab depot serve` at `addr` (killed when dropped); its
    /// URL is `http://ADDR`. Uploads through `file://` show there too (one directory).
    pub fn serve(&self, addr: SocketAddr) -> DepotServer {
        let log = self.work.path().join("depot-serve.log");
        let child = Command::new(hab_binary())
            .args(["depot", "serve", self.dir().to_str().unwrap(), "--listen"])
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .expect("start hab depot serve");
        let mut server = DepotServer { child, addr };
        wait_until(Duration::from_secs(30), "the depot listens", || {
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "hab depot serve exited"
            );
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        server
    }

    /// Installs V1 on `sup` (as `hab pkg install` does), puts the origin's public key in its
    /// key cache, and loads the service with `strategy` from this depot, polled every second.
    pub fn load(&self, sup: &Supervisor, strategy: &str, topology: &str) {
        self.load_from(sup, strategy, topology, &self.url());
    }

    /// `load`, following the depot at `url`.
    pub fn load_from(&self, sup: &Supervisor, strategy: &str, topology: &str, url: &str) {
        let root = sup.root().to_str().unwrap().to_string();
        let hart = self.hart(V1);
        let keys = self.keys();
        let (status, out, err) = run_hab(
            &[
                "pkg",
                "install",
                hart.to_str().unwrap(),
                "--root",
                &root,
                "--cache-key-path",
                keys.to_str().unwrap(),
            ],
            &[],
        );
        assert!(status.success(), "{out}{err}");
        let sup_keys = sup.root().join("cache/keys");
        std::fs::create_dir_all(&sup_keys).unwrap();
        for entry in std::fs::read_dir(&keys).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "pub") {
                std::fs::copy(&path, sup_keys.join(path.file_name().unwrap())).unwrap();
            }
        }
        let (code, out, err) = ctl(
            sup,
            &[
                "svc",
                "load",
                "test/web",
                "--strategy",
                strategy,
                "--topology",
                topology,
                "--url",
                url,
                "--update-period",
                "1",
                "--health-check-interval",
                "1",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
    }
}

/// A `hab depot serve` process, killed when dropped.
pub struct DepotServer {
    child: Child,
    addr: SocketAddr,
}

impl DepotServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DepotServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One member's service as its own `/services` shows it at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub package: String,
    /// The process runs and its health check passes on that package.
    pub up: bool,
}

pub fn sample(sup: &Supervisor) -> Result<Sample, String> {
    let svc = service(sup)?;
    let package = svc["pkg"]["ident"]
        .as_str()
        .ok_or_else(|| format!("no pkg.ident in {svc}"))?
        .to_string();
    let up = svc["process"]["pid"].is_u64() && svc["health_check"] == "Ok";
    Ok(Sample { package, up })
}

/// Every member's samples over time, each with when it was taken.
#[derive(Default)]
pub struct Recording {
    pub samples: BTreeMap<String, Vec<(Instant, Sample)>>,
}

impl Recording {
    /// Samples every member once (a member that does not answer counts as down); `Ok` when
    /// every one of these samples shows `ident` up.
    pub fn take(&mut self, ring: &[&Supervisor], ident: &str) -> Result<(), String> {
        let mut behind = Vec::new();
        for sup in ring {
            let s = sample(sup).unwrap_or(Sample {
                package: String::new(),
                up: false,
            });
            if !(s.up && s.package == ident) {
                behind.push(format!("{}: {s:?}", sup.name()));
            }
            self.samples
                .entry(sup.member_id())
                .or_default()
                .push((Instant::now(), s));
        }
        if behind.is_empty() {
            Ok(())
        } else {
            Err(behind.join("; "))
        }
    }

    /// When each member was first seen running `ident` and up, in that order.
    pub fn order_up_on(&self, ident: &str) -> Vec<String> {
        let mut firsts: Vec<(Instant, String)> = self
            .samples
            .iter()
            .filter_map(|(id, samples)| {
                samples
                    .iter()
                    .find(|(_, s)| s.up && s.package == ident)
                    .map(|(at, _)| (*at, id.clone()))
            })
            .collect();
        firsts.sort();
        firsts.into_iter().map(|(_, id)| id).collect()
    }

    /// When each member was first seen running `ident` and up, by member id.
    pub fn first_up_on(&self, ident: &str) -> BTreeMap<String, Instant> {
        self.samples
            .iter()
            .filter_map(|(id, samples)| {
                samples
                    .iter()
                    .find(|(_, s)| s.up && s.package == ident)
                    .map(|(at, _)| (id.clone(), *at))
            })
            .collect()
    }

    /// The most members whose down spans overlap at one moment.
    pub fn max_down_at_once(&self) -> usize {
        let spans = self.down_spans();
        spans
            .iter()
            .map(|(_, from, _)| {
                spans
                    .iter()
                    .filter(|(_, f, t)| f <= from && from <= t)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Each member's down spans: from its first sample down to its last sample down before it
    /// was seen up again. Two members' spans overlapping means both were down at once (each
    /// span's ends are moments the member was seen down).
    pub fn down_spans(&self) -> Vec<(String, Instant, Instant)> {
        let mut spans = Vec::new();
        for (id, samples) in &self.samples {
            let mut open: Option<(Instant, Instant)> = None;
            for (at, s) in samples {
                match (s.up, open) {
                    (false, None) => open = Some((*at, *at)),
                    (false, Some((from, _))) => open = Some((from, *at)),
                    (true, Some((from, to))) => {
                        spans.push((id.clone(), from, to));
                        open = None;
                    }
                    (true, None) => {}
                }
            }
            if let Some((from, to)) = open {
                spans.push((id.clone(), from, to));
            }
        }
        spans
    }

    pub fn assert_never_two_down(&self) {
        let spans = self.down_spans();
        for (i, (a, a_from, a_to)) in spans.iter().enumerate() {
            for (b, b_from, b_to) in &spans[i + 1..] {
                assert!(
                    a == b || a_to < b_from || b_to < a_from,
                    "{a} and {b} were down at once: {spans:?}"
                );
            }
        }
    }
}

/// Starts `n` supervisors joined into one ring, without a service yet (fast test timings).
pub fn ring(block: u8, n: u8) -> Vec<Supervisor> {
    ring_with(block, n, |b| b)
}

/// `ring`, each supervisor's builder passed through `configure` first.
pub fn ring_with(
    block: u8,
    n: u8,
    configure: impl Fn(SupervisorBuilder) -> SupervisorBuilder,
) -> Vec<Supervisor> {
    let first = configure(Supervisor::at(block, 1).without_service()).start();
    let first_ip = first.ip();
    let mut ring = vec![first];
    for host in 2..=n {
        ring.push(configure(Supervisor::at(block, host).without_service().peer(first_ip)).start());
    }
    ring
}

/// Waits until every member runs `ident` with its health check passing.
pub fn all_up_on(ring: &[&Supervisor], ident: &str) -> Result<(), String> {
    for sup in ring {
        let s = sample(sup)?;
        if !(s.up && s.package == ident) {
            return Err(format!("{}: {s:?}", sup.name()));
        }
    }
    Ok(())
}

/// The group's `update` entry in `sup`'s census.
pub fn update_doc(sup: &Supervisor) -> Result<Value, String> {
    let census = sup.census()?;
    let update = census["census_groups"][GROUP]["update"].clone();
    if update.is_null() {
        return Err(format!("no update in {}", census["census_groups"][GROUP]));
    }
    Ok(update)
}
