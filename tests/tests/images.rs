//! The project's images as `scripts/images` writes them (`habitat-images`, tools/images), from
//! the binaries cargo already built for the tests (dev profile, so CI builds no release
//! binaries): two builds are byte for byte the same; skopeo (from Debian) reads each layout and
//! docker-load tarball and sees the Dockerfiles' run config under the chart's names; umoci
//! unpacks roots in which, chrooted, `/bin/hab --version` runs, the init container's `cp` copies
//! `hab` out, a name in /etc/hosts resolves, and the operator runs as 65532 and names the
//! sidecar image just built as its default. The chrooted half needs root (CI has it); without
//! it, it prints SKIPPED. skopeo, umoci and busybox-static are installed by scripts/test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use habitat_e2e::{
    hab_binary, image_tool, images_binary, operator_binary, run_ok, skopeo_json, workspace_dir,
};
use serde_json::json;

/// One image as `habitat-images` reports it.
#[derive(Debug, PartialEq, Eq)]
struct Built {
    reference: String,
    layout: PathBuf,
    archive: PathBuf,
    manifest: String,
}

impl Built {
    fn oci(&self) -> String {
        let tag = self.reference.rsplit_once(':').unwrap().1;
        format!("oci:{}:{tag}", self.layout.display())
    }
}

/// Runs the builder into `out` with the test binaries and the repository's chart.
fn build_images(out: &Path) -> Vec<Built> {
    let stdout = run_ok(
        Command::new(images_binary())
            .arg("--hab")
            .arg(hab_binary())
            .arg("--operator")
            .arg(operator_binary())
            .arg("--busybox")
            .arg(image_tool("busybox"))
            .arg("--chart")
            .arg(workspace_dir().join("charts/habitat-operator"))
            .arg("--output")
            .arg(out)
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    let built: Vec<Built> = stdout
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(
                words.len() >= 7
                    && words[1] == "layout"
                    && words[3] == "archive"
                    && words[5] == "manifest",
                "unexpected line from habitat-images: {line}"
            );
            Built {
                reference: words[0].to_string(),
                layout: PathBuf::from(words[2]),
                archive: PathBuf::from(words[4]),
                manifest: words[6].to_string(),
            }
        })
        .collect();
    assert_eq!(built.len(), 2, "two images: {stdout}");
    built
}

/// `key: value` of the first line in `text` whose trimmed start is `key:` after the line
/// `after` (a top-level key), quotes removed: enough for the chart's two flat files.
fn yaml_value(text: &str, after: Option<&str>, key: &str) -> String {
    let mut lines = text.lines();
    if let Some(section) = after {
        lines
            .by_ref()
            .find(|l| *l == format!("{section}:"))
            .unwrap_or_else(|| panic!("no {section}: in {text}"));
    }
    lines
        .find_map(|l| l.trim_start().strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key}: in {text}"))
        .trim()
        .trim_matches('"')
        .to_string()
}

/// The references the chart's defaults point at: values' repositories, tagged appVersion.
fn chart_references() -> (String, String) {
    let chart = workspace_dir().join("charts/habitat-operator");
    let version = yaml_value(
        &fs::read_to_string(chart.join("Chart.yaml")).unwrap(),
        None,
        "appVersion",
    );
    let values = fs::read_to_string(chart.join("values.yaml")).unwrap();
    let sidecar = yaml_value(&values, Some("sidecarImage"), "repository");
    let operator = yaml_value(&values, Some("image"), "repository");
    (
        format!("{sidecar}:{version}"),
        format!("{operator}:{version}"),
    )
}

/// Every file under `dir`, relative and sorted. In a layout, blobs are named by their digest,
/// so equal lists and equal `index.json`s mean equal layouts.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Whether two files hold the same bytes, read a chunk at a time (tarballs of 100+ MB).
fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

#[test]
fn two_builds_are_identical_and_skopeo_reads_both_images_under_the_charts_names() {
    let tmp = tempfile::Builder::new()
        .prefix("hab-e2e-images-")
        .tempdir()
        .unwrap();
    let first = build_images(&tmp.path().join("a"));
    let second = build_images(&tmp.path().join("b"));
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.reference, b.reference);
        assert_eq!(a.manifest, b.manifest, "{}: digests differ", a.reference);
        assert_eq!(files(&a.layout), files(&b.layout), "{}", a.reference);
        assert!(
            same_bytes(&a.layout.join("index.json"), &b.layout.join("index.json")),
            "{}: the indexes differ",
            a.reference
        );
        assert!(
            same_bytes(&a.archive, &b.archive),
            "{}: the tarballs differ",
            a.reference
        );
    }

    let (sidecar_ref, operator_ref) = chart_references();
    let [sidecar, operator] = &first[..] else {
        unreachable!()
    };
    assert_eq!(sidecar.reference, sidecar_ref);
    assert_eq!(operator.reference, operator_ref);
    assert!(sidecar.layout.ends_with("hab.oci") && sidecar.archive.ends_with("hab.tar"));
    assert!(operator.layout.ends_with("habitat-operator.oci"));

    for image in [sidecar, operator] {
        let inspect = skopeo_json(&["inspect", &image.oci()]);
        assert_eq!(inspect["Digest"], image.manifest.as_str(), "{inspect}");
        assert_eq!(inspect["Architecture"], "amd64");
        assert_eq!(inspect["Os"], "linux");
        assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2, "{inspect}");
        // The tarball holds the same layers under the same name.
        let archived = skopeo_json(&[
            "inspect",
            &format!(
                "docker-archive:{}:{}",
                image.archive.display(),
                image.reference
            ),
        ]);
        assert_eq!(archived["Layers"], inspect["Layers"]);
    }

    let config = skopeo_json(&["inspect", "--config", &sidecar.oci()])["config"].clone();
    assert_eq!(config["Entrypoint"], json!(["/bin/hab"]));
    assert_eq!(config["Cmd"], json!(["sup", "run"]));
    assert_eq!(
        config["ExposedPorts"],
        json!({"9631/tcp": {}, "9632/tcp": {}, "9638/tcp": {}, "9638/udp": {}})
    );
    assert!(config.get("User").is_none(), "{config}");

    let config = skopeo_json(&["inspect", "--config", &operator.oci()])["config"].clone();
    assert_eq!(config["Entrypoint"], json!(["/habitat-operator"]));
    assert_eq!(config["Cmd"], json!(["run"]));
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["ExposedPorts"], json!({"8080/tcp": {}}));
}

/// `umoci unpack`s `image` into `bundle` and returns its root filesystem.
fn unpack(image: &Built, bundle: &Path) -> PathBuf {
    run_ok(
        Command::new(image_tool("umoci"))
            .args(["unpack", "--rootless", "--image"])
            .arg(&image.oci()[4..])
            .arg(bundle),
    );
    bundle.join("rootfs")
}

/// `chroot [--userspec U] ROOT ARGS` with only `env` set (chroot by its path: the child's PATH
/// is the image's, or none).
fn chroot(root: &Path, user: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(image_tool("chroot"));
    if let Some(user) = user {
        cmd.arg(format!("--userspec={user}"));
    }
    cmd.arg(root)
        .args(args)
        .env_clear()
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

fn ok_stdout(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn unpacked_roots_run_hab_the_init_containers_cp_and_the_operator() {
    let tmp = tempfile::Builder::new()
        .prefix("hab-e2e-images-")
        .tempdir()
        .unwrap();
    let built = build_images(&tmp.path().join("images"));
    let [sidecar, operator] = &built[..] else {
        unreachable!()
    };
    let hab_root = unpack(sidecar, &tmp.path().join("hab-bundle"));
    let operator_root = unpack(operator, &tmp.path().join("operator-bundle"));

    // The files each image holds, readable without root.
    assert_eq!(
        fs::read(hab_root.join("bin/hab")).unwrap(),
        fs::read(hab_binary()).unwrap()
    );
    for applet in ["cp", "sh"] {
        let link = fs::read_link(hab_root.join("bin").join(applet)).unwrap();
        assert_eq!(link, Path::new("busybox"), "/bin/{applet}");
    }
    assert!(hab_root.join("bin/busybox").is_file());
    assert_eq!(
        fs::read(operator_root.join("habitat-operator")).unwrap(),
        fs::read(operator_binary()).unwrap()
    );
    let passwd = fs::read_to_string(operator_root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");

    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED: the chrooted half of this test (hab, cp and the operator run in their \
             unpacked images) needs root"
        );
        return;
    }
    let sidecar_env = skopeo_json(&["inspect", "--config", &sidecar.oci()])["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().split_once('=').unwrap())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>();
    let env: Vec<(&str, &str)> = sidecar_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    let version = ok_stdout(
        &chroot(&hab_root, None, &["/bin/hab", "--version"], &env),
        "chroot /bin/hab --version",
    );
    assert!(version.starts_with("hab "), "{version}");

    // The init container's command, as the operator writes it: a bare `cp`, found through the
    // image's PATH, into the shared volume.
    fs::create_dir(hab_root.join("hab-bin")).unwrap();
    ok_stdout(
        &chroot(&hab_root, None, &["cp", "/bin/hab", "/hab-bin/hab"], &env),
        "chroot cp /bin/hab /hab-bin/hab",
    );
    assert_eq!(
        fs::read(hab_root.join("hab-bin/hab")).unwrap(),
        fs::read(hab_binary()).unwrap()
    );
    let echoed = ok_stdout(
        &chroot(&hab_root, None, &["sh", "-c", "echo from-sh"], &env),
        "chroot sh -c",
    );
    assert_eq!(echoed.trim(), "from-sh");

    // A name in /etc/hosts resolves inside the root (no nsswitch.conf: glibc's files and dns
    // services are built in, static or not). `hab svc status` resolves --remote-sup, then
    // finds nobody on port 1 of the address it resolved to.
    fs::write(
        hab_root.join("etc/hosts"),
        "127.0.0.1 localhost\n127.0.0.1 sup.images.test\n",
    )
    .unwrap();
    let mut status_env = env.clone();
    status_env.push(("HAB_CTL_SECRET", "not-a-real-secret"));
    let status = chroot(
        &hab_root,
        None,
        &[
            "/bin/hab",
            "svc",
            "status",
            "--remote-sup",
            "sup.images.test:1",
        ],
        &status_env,
    );
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(
        status.status.code(),
        Some(3),
        "no supervisor reachable: {stderr}"
    );
    // Unresolved, it would say "failed to lookup address information".
    assert!(
        stderr.contains("Connection refused"),
        "resolved through /etc/hosts, then refused: {stderr}"
    );

    // The operator runs as its image's user, and its default sidecar image is the one built.
    let user = Some("65532:65532");
    let version = ok_stdout(
        &chroot(
            &operator_root,
            user,
            &["/habitat-operator", "--version"],
            &[],
        ),
        "chroot /habitat-operator --version",
    );
    assert!(version.starts_with("habitat-operator "), "{version}");
    let help = ok_stdout(
        &chroot(
            &operator_root,
            user,
            &["/habitat-operator", "run", "--help"],
            &[],
        ),
        "chroot /habitat-operator run --help",
    );
    assert!(
        help.contains(&format!("[default: {}]", sidecar.reference)),
        "the operator's default sidecar image is {}: {help}",
        sidecar.reference
    );
}

#[test]
fn the_builder_refuses_a_chart_that_names_other_images() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = tmp.path().join("chart");
    fs::create_dir(&chart).unwrap();
    fs::write(chart.join("Chart.yaml"), "appVersion: \"9.9.9\"\n").unwrap();
    fs::write(
        chart.join("values.yaml"),
        "image:\n  repository: example.test/operator\nsidecarImage:\n  repository: ghcr.io/habitat-rs/hab\n",
    )
    .unwrap();
    let out = Command::new(images_binary())
        .arg("--hab")
        .arg(hab_binary())
        .arg("--operator")
        .arg(operator_binary())
        .arg("--chart")
        .arg(&chart)
        .arg("--output")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("image.repository") && stderr.contains("example.test/operator"),
        "{stderr}"
    );
    assert!(!tmp.path().join("out").exists(), "nothing written");
}
