//! `hab pkg export container` read back by standard tools: skopeo (from Debian) inspects the OCI
//! layout and the `docker load` tarball, umoci unpacks a root filesystem in which `/bin/hab`
//! runs (chrooted, or through the unpacked ELF interpreter) and the supervisor the image's
//! config starts runs the package's service; two exports are byte for byte the same. skopeo,
//! umoci and busybox-static are installed by scripts/test; without them these tests fail
//! saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use habitat_e2e::{
    copy_dir, hab_binary, hello_package, http_get, image_tool as tool, ip, run_ok as run,
    skopeo_json, wait_for, HTTP_PORT,
};
use serde_json::Value;

/// Loopback block of the supervisor started from the unpacked image.
const BLOCK_CHROOT: u8 = 147;
const IDENT: &str = "test/exported/1.0.0/20260102030405";
const DEP: &str = "test/dep/2.0.0/20260101000000";
const VERSION_TAG: &str = "1.0.0-20260102030405";

/// A root with the package (the example package under another ident, with a binary, a PATH
/// and a runtime dependency) and its dependency installed, and a key cache with the origin's
/// public key and another origin's.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("hab-e2e-export-")
            .tempdir()
            .unwrap();
        let fx = Fixture { dir };
        let pkg = fx.installed(IDENT);
        copy_dir(&hello_package(), &pkg);
        fs::write(pkg.join("IDENT"), format!("{IDENT}\n")).unwrap();
        fs::write(pkg.join("TDEPS"), format!("{DEP}\n")).unwrap();
        fs::write(pkg.join("EXPOSES"), "8080\n").unwrap();
        let bin = pkg.join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("tool"), "#!/bin/sh\necho tool\n").unwrap();
        fs::set_permissions(bin.join("tool"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(pkg.join("PATH"), format!("/hab/pkgs/{IDENT}/bin\n")).unwrap();
        let dep = fx.installed(DEP);
        fs::create_dir_all(dep.join("lib")).unwrap();
        fs::write(dep.join("IDENT"), format!("{DEP}\n")).unwrap();
        fs::write(dep.join("lib/libdep.txt"), "a dependency\n").unwrap();
        let keys = fx.keys();
        fs::create_dir_all(&keys).unwrap();
        fs::write(
            keys.join("test-20260101000000.pub"),
            "SIG-PUB-1\ntest-20260101000000\n\nx\n",
        )
        .unwrap();
        fs::write(keys.join("other-20260101000000.pub"), "SIG-PUB-1\n").unwrap();
        fx
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    fn keys(&self) -> PathBuf {
        self.path().join("keys")
    }

    fn installed(&self, ident: &str) -> PathBuf {
        self.root().join("pkgs").join(ident)
    }

    /// `hab ARGS` in the fixture's directory, with its root and key cache and `env`.
    fn hab(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(hab_binary());
        cmd.arg("--root")
            .arg(self.root())
            .args(args)
            .env("HAB_CACHE_KEY_PATH", self.keys())
            .env_remove("HAB_ROOT")
            .env_remove("SOURCE_DATE_EPOCH")
            .envs(env.iter().copied())
            .current_dir(self.path());
        cmd.output().unwrap()
    }

    /// `hab pkg export container ARGS`.
    fn export(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let all: Vec<&str> = ["pkg", "export", "container"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        self.hab(&all, env)
    }

    /// Exports and returns the manifest digest `hab` printed.
    fn export_ok(&self, args: &[&str]) -> String {
        let out = self.export(args, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "hab pkg export container {args:?}: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("manifest "))
            .unwrap_or_else(|| panic!("no manifest digest in {stdout}"))
            .to_string()
    }
}

#[test]
fn skopeo_reads_the_layout_and_the_tarball_and_sees_hab_sup_run() {
    let fx = Fixture::new();
    let digest = fx.export_ok(&[IDENT]);
    // The default output: an OCI layout named after the package in the current directory.
    let layout = fx.path().join("test-exported-1.0.0-20260102030405.oci");
    assert!(layout.join("oci-layout").is_file(), "{}", layout.display());
    let at = |tag: &str| format!("oci:{}:{tag}", layout.display());

    let inspect = skopeo_json(&["inspect", &at("latest")]);
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(
        skopeo_json(&["inspect", &at(VERSION_TAG)])["Digest"],
        digest.as_str()
    );
    assert_eq!(inspect["Labels"]["sh.habitat.package.ident"], IDENT);
    assert_eq!(inspect["Architecture"], "amd64");
    let layers = inspect["Layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 3, "hab, dependencies, package: {inspect}");

    let config = skopeo_json(&["inspect", "--config", &at("latest")]);
    let run_config = &config["config"];
    assert_eq!(
        run_config["Entrypoint"],
        serde_json::json!(["/bin/hab", "sup", "run"])
    );
    assert_eq!(run_config["Cmd"], serde_json::json!([IDENT]));
    assert_eq!(
        run_config["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "9631/tcp": {}, "9638/tcp": {}, "9638/udp": {}})
    );
    let env: Vec<&str> = run_config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"HAB_ROOT=/hab"), "{env:?}");
    assert!(
        env.contains(&format!("PATH=/hab/pkgs/{IDENT}/bin:/bin").as_str()),
        "{env:?}"
    );
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");

    // The tarball, with a tag of our own: docker-archive reads the same layers.
    fx.export_ok(&[
        "--output",
        "img.tar",
        "--tag",
        "registry.test/exported:v1",
        IDENT,
    ]);
    let tar = fx.path().join("img.tar");
    let archived = skopeo_json(&["inspect", &format!("docker-archive:{}", tar.display())]);
    assert_eq!(archived["Layers"], Value::Array(layers));
    let named = skopeo_json(&[
        "inspect",
        "--config",
        &format!("docker-archive:{}:registry.test/exported:v1", tar.display()),
    ]);
    assert_eq!(named["config"]["Cmd"], serde_json::json!([IDENT]));
    // The tarball is an OCI layout too.
    let as_oci = skopeo_json(&["inspect", &format!("oci-archive:{}:v1", tar.display())]);
    assert_eq!(as_oci["Layers"], archived["Layers"]);
}

/// Stops the chrooted supervisor however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn umoci_unpacks_a_root_where_hab_runs_the_package_it_holds() {
    let fx = Fixture::new();
    let layout = fx.path().join("layout");
    let busybox = tool("busybox");
    fx.export_ok(&[
        "-o",
        layout.to_str().unwrap(),
        "--busybox",
        busybox.to_str().unwrap(),
        IDENT,
    ]);
    let bundle = fx.path().join("bundle");
    run(Command::new(tool("umoci"))
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");

    // The package, its dependency and its origin's key, nothing else's.
    let pkg = rootfs.join("hab/pkgs").join(IDENT);
    assert_eq!(
        fs::read_to_string(pkg.join("IDENT")).unwrap(),
        format!("{IDENT}\n")
    );
    assert!(pkg.join("hooks/run").is_file() && pkg.join("default.toml").is_file());
    let tool_mode = fs::metadata(pkg.join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(tool_mode & 0o777, 0o755);
    assert_eq!(
        fs::read_to_string(rootfs.join("hab/pkgs").join(DEP).join("lib/libdep.txt")).unwrap(),
        "a dependency\n"
    );
    let keys: Vec<String> = fs::read_dir(rootfs.join("hab/cache/keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(keys, ["test-20260101000000.pub"]);
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("hab:x:42:42:"), "{passwd}");

    // /bin/hab runs from the unpacked files alone: through the unpacked interpreter and
    // libraries (no root needed), and chrooted.
    let interpreter = rootfs.join("lib64/ld-linux-x86-64.so.2");
    let version = run(Command::new(&interpreter)
        .arg("--library-path")
        .arg(rootfs.join("lib/x86_64-linux-gnu"))
        .arg(rootfs.join("bin/hab"))
        .arg("--version"));
    assert!(version.starts_with("hab "), "{version}");
    if !nix::unistd::geteuid().is_root() {
        // As the network-namespace tests do: the rest needs root, which CI has.
        eprintln!(
            "SKIPPED: the chrooted half of this test (hab and its service in the image) needs root"
        );
        return;
    }
    let chrooted = run(Command::new(tool("chroot"))
        .arg(&rootfs)
        .args(["/bin/hab", "--version"]));
    assert_eq!(chrooted, version);
    let shell = run(Command::new(tool("chroot")).arg(&rootfs).args([
        "/bin/sh",
        "-c",
        "echo from the shell in the image",
    ]));
    assert_eq!(shell, "from the shell in the image\n");
    // What a container runtime provides and a bare chroot lacks: the service's stdin.
    fs::create_dir_all(rootfs.join("dev")).unwrap();
    run(Command::new(tool("mknod"))
        .args(["-m", "666"])
        .arg(rootfs.join("dev/null"))
        .args(["c", "1", "3"]));

    // The process umoci's runtime config describes (the image's entrypoint, cmd and env), run
    // chrooted, is a supervisor serving the package.
    let runtime: Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let args: Vec<String> = runtime["process"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args, ["/bin/hab", "sup", "run", IDENT]);
    // chroot by its path: the image's PATH (set below) does not name the host's sbin.
    let mut cmd = Command::new(tool("chroot"));
    cmd.arg(&rootfs).args(&args).env_clear();
    for pair in runtime["process"]["env"].as_array().unwrap() {
        let (key, value) = pair.as_str().unwrap().split_once('=').unwrap();
        cmd.env(key, value);
    }
    let addr = |port: u16| SocketAddr::new(ip(BLOCK_CHROOT, 1).into(), port).to_string();
    cmd.args([
        "--listen-gossip",
        &addr(9638),
        "--listen-http",
        &addr(HTTP_PORT),
    ])
    .args(["--listen-ctl", &addr(9632), "--node-name", "exported"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(fs::File::create(fx.path().join("sup.log")).unwrap());
    let _sup = Killed(cmd.spawn().unwrap());
    let http: SocketAddr = addr(HTTP_PORT).parse().unwrap();
    // The package's run hook (a /bin/sh script) runs in the image.
    let services = wait_for(Duration::from_secs(30), "the service runs", || {
        let text = http_get(http, "/services")?;
        let services: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let process = &services[0]["process"];
        if process["state"] == "up" && process["pid"].is_u64() {
            Ok(services)
        } else {
            Err(format!(
                "{text}\n{}",
                fs::read_to_string(fx.path().join("sup.log")).unwrap_or_default()
            ))
        }
    });
    let idents: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["pkg"]["ident"].as_str())
        .collect();
    assert_eq!(
        idents,
        [IDENT],
        "{services}\n{}",
        fs::read_to_string(fx.path().join("sup.log")).unwrap_or_default()
    );
    assert_eq!(services[0]["pkg"]["path"], format!("/hab/pkgs/{IDENT}"));
    // It writes its state inside the image's /hab, nowhere else.
    assert!(rootfs.join("hab/sup/default").is_dir());
}

/// Every file under `dir`, relative path to bytes.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = fs::read(&path).unwrap();
                out.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn two_exports_of_one_package_are_byte_identical() {
    let fx = Fixture::new();
    let one = fx.export_ok(&["-o", "one", IDENT]);
    // A later export of the same files, touched meanwhile, from another directory name.
    let tool = fx.installed(IDENT).join("bin/tool");
    fs::File::options()
        .write(true)
        .open(&tool)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    let two = fx.export_ok(&["-o", "two", IDENT]);
    assert_eq!(one, two);
    let (a, b) = (tree(&fx.path().join("one")), tree(&fx.path().join("two")));
    assert_eq!(a.len(), b.len());
    assert!(a == b, "the two layouts differ");
    fx.export_ok(&["-o", "one.tar", IDENT]);
    fx.export_ok(&["-o", "two.tar", IDENT]);
    assert!(
        fs::read(fx.path().join("one.tar")).unwrap()
            == fs::read(fx.path().join("two.tar")).unwrap(),
        "the two tarballs differ"
    );
    // SOURCE_DATE_EPOCH stamps the image, so it is another one.
    let epoch = Path::new("1700000000");
    let out = fx.export(&["-o", "epoch", IDENT], &[("SOURCE_DATE_EPOCH", epoch)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = skopeo_json(&[
        "inspect",
        "--config",
        &format!("oci:{}:latest", fx.path().join("epoch").display()),
    ]);
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&one));
}

#[test]
fn a_missing_dependency_fails_naming_it_unless_skipped() {
    let fx = Fixture::new();
    fs::remove_dir_all(fx.installed(DEP)).unwrap();
    let out = fx.export(&["-o", "img", IDENT], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(DEP) && stderr.contains("--skip-missing-deps"),
        "{stderr}"
    );
    assert!(!fx.path().join("img").exists(), "nothing is written");

    let out = fx.export(&["-o", "img", "--skip-missing-deps", IDENT], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("left out of the image") && stderr.contains(DEP),
        "{stderr}"
    );
    let inspect = skopeo_json(&[
        "inspect",
        &format!("oci:{}:latest", fx.path().join("img").display()),
    ]);
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2, "{inspect}");

    // A bad tag is refused before anything is built.
    let out = fx.export(&["-o", "bad", "--tag", "Not/Valid", IDENT], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("\"Not/Valid\"") && stderr.contains("NAME:TAG"),
        "{stderr}"
    );
    assert!(!fx.path().join("bad").exists());
}

#[test]
fn a_hart_is_verified_unpacked_aside_and_exported() {
    let fx = Fixture::new();
    let ok = |out: Output| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    ok(fx.hab(&["origin", "key", "generate", "test"], &[]));
    let pkg = fx.installed(IDENT);
    let built = ok(fx.hab(
        &["pkg", "build", pkg.to_str().unwrap(), "-o", "results"],
        &[],
    ));
    let hart = fx
        .path()
        .join("results/test-exported-1.0.0-20260102030405-x86_64-linux.hart");
    assert!(hart.is_file(), "{built}");
    // The package is only in the .hart now (its dependency stays installed).
    fs::remove_dir_all(&pkg).unwrap();
    let tmp = fx.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let hart_arg = hart.to_str().unwrap();
    ok(fx.export(&["-o", "fromhart", hart_arg], &[("TMPDIR", &tmp)]));
    let at = format!("oci:{}:latest", fx.path().join("fromhart").display());
    let config = skopeo_json(&["inspect", "--config", &at]);
    assert_eq!(config["config"]["Cmd"], serde_json::json!([IDENT]));
    assert_eq!(
        config["config"]["Labels"]["sh.habitat.package.ident"],
        IDENT
    );
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    // The root it was unpacked into is gone, and the real root was not touched.
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    assert!(!pkg.exists());

    // Signed with a key the cache does not hold: refused, naming the key; nothing written.
    let empty = fx.path().join("no-keys");
    fs::create_dir(&empty).unwrap();
    let out = fx.export(
        &["-o", "unverified", hart_arg],
        &[("HAB_CACHE_KEY_PATH", &empty), ("TMPDIR", &tmp)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("public key test-") && stderr.contains("no-keys"),
        "{stderr}"
    );
    assert!(!fx.path().join("unverified").exists());
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
}
