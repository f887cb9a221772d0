//! The two images, as `docker/sidecar.Dockerfile` and `docker/operator.Dockerfile` describe
//! them, built from files instead of base images: what each base image gave that our binaries
//! use is written here (busybox's `cp` and `sh`, `/etc/passwd`, `/tmp`), nothing else.
//! Layers are ordered by how often they change (busybox below `hab`), so a new release of
//! `hab` changes only the top layer.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context as _};
use habitat_sidecar::oci::{elf, Image, ImageConfig, ImageRef, Layer, WrittenImage};

pub const SIDECAR_REPOSITORY: &str = "ghcr.io/habitat-rs/hab";
pub const OPERATOR_REPOSITORY: &str = "ghcr.io/habitat-rs/habitat-operator";
/// `target/images/<stem>.oci` and `<stem>.tar`.
pub const SIDECAR_FILE_STEM: &str = "hab";
pub const OPERATOR_FILE_STEM: &str = "habitat-operator";

pub const HAB_IN_IMAGE: &str = "/bin/hab";
pub const OPERATOR_IN_IMAGE: &str = "/habitat-operator";
/// distroless's `nonroot` user and group, which `docker/operator.Dockerfile` runs as.
pub const OPERATOR_USER: u32 = 65532;
/// The busybox image's PATH: the init container's command is a bare `cp`, found through it.
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The applets linked to busybox: `cp` for the init container, `sh` for a person debugging.
const BUSYBOX_APPLETS: [&str; 2] = ["cp", "sh"];

/// An image and whether its binary is static (else its interpreter and libraries are in it).
pub struct Built {
    pub image: Image,
    pub static_binary: bool,
}

pub fn reference(repository: &str, tag: &str) -> anyhow::Result<ImageRef> {
    Ok(format!("{repository}:{tag}").parse()?)
}

fn labels(title: &str, version: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("org.opencontainers.image.title", title),
        ("org.opencontainers.image.version", version),
        (
            "org.opencontainers.image.licenses",
            env!("CARGO_PKG_LICENSE"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn is_static(binary: &Path) -> anyhow::Result<bool> {
    Ok(elf::interpreter(binary)?.is_none())
}

/// `busybox --list` must name the applets we link, or the init container's `cp` would be a
/// dangling link.
fn check_busybox(busybox: &Path) -> anyhow::Result<()> {
    let output = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    let listed = String::from_utf8_lossy(&output.stdout);
    let missing: Vec<&str> = BUSYBOX_APPLETS
        .into_iter()
        .filter(|a| !listed.lines().any(|l| l.trim() == *a))
        .collect();
    if !output.status.success() || !missing.is_empty() {
        bail!(
            "{}: expected a busybox whose `--list` names {}; it exited with {} and lacks {}",
            busybox.display(),
            BUSYBOX_APPLETS.join(" and "),
            output.status,
            missing.join(", ")
        );
    }
    Ok(())
}

/// `hab` at /bin/hab on busybox (static in Debian's busybox-static) with `cp` and `sh`; runs
/// `hab sup run` by default, as the Dockerfile's image does.
pub fn sidecar_image(
    hab: &Path,
    busybox: &Path,
    version: &str,
    created: u64,
) -> anyhow::Result<Built> {
    check_busybox(busybox)?;
    let mut base = Layer::new(format!(
        "busybox at /bin/busybox with /bin/{}; /etc/passwd, /etc/group, /tmp",
        BUSYBOX_APPLETS.join(" and /bin/")
    ));
    base.add_executable(busybox, "/bin/busybox")
        .with_context(|| format!("adding busybox {}", busybox.display()))?;
    for applet in BUSYBOX_APPLETS {
        base.add_symlink(Path::new("/bin").join(applet), "busybox")?;
    }
    // root, and Habitat's `hab` user and group (42), which `hab sup run` runs services as.
    base.add_bytes(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nhab:x:42:42:hab:/hab:/bin/false\n".to_vec(),
        0o644,
    )?;
    base.add_bytes("/etc/group", b"root:x:0:\nhab:x:42:\n".to_vec(), 0o644)?;
    base.add_dir("/tmp", 0o1777)?;
    let mut top = Layer::new(format!("hab at {HAB_IN_IMAGE}"));
    top.add_executable(hab, HAB_IN_IMAGE)
        .with_context(|| format!("adding hab {}", hab.display()))?;
    let config = ImageConfig {
        env: vec![PATH_ENV.to_string()],
        entrypoint: vec![HAB_IN_IMAGE.to_string()],
        cmd: vec!["sup".to_string(), "run".to_string()],
        exposed_ports: ["9631/tcp", "9632/tcp", "9638/tcp", "9638/udp"]
            .into_iter()
            .map(String::from)
            .collect(),
        labels: labels("hab", version),
        ..ImageConfig::default()
    };
    let mut image = Image::new(config, created);
    image.layers = vec![base, top];
    Ok(Built {
        image,
        static_binary: is_static(hab)?,
    })
}

/// The operator alone at /habitat-operator, run as 65532:65532 (`habitat-operator run`).
/// No CA bundle: in a cluster the operator trusts the API server through its service
/// account's `ca.crt`, and it talks to nothing else over TLS.
pub fn operator_image(operator: &Path, version: &str, created: u64) -> anyhow::Result<Built> {
    let mut base = Layer::new("/etc/passwd, /etc/group (nonroot 65532), /tmp");
    base.add_bytes(
        "/etc/passwd",
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\n\
             nonroot:x:{OPERATOR_USER}:{OPERATOR_USER}:nonroot:/home/nonroot:/sbin/nologin\n"
        )
        .into_bytes(),
        0o644,
    )?;
    base.add_bytes(
        "/etc/group",
        format!("root:x:0:\nnonroot:x:{OPERATOR_USER}:\n").into_bytes(),
        0o644,
    )?;
    base.add_dir("/tmp", 0o1777)?;
    let mut top = Layer::new(format!("habitat-operator at {OPERATOR_IN_IMAGE}"));
    top.add_executable(operator, OPERATOR_IN_IMAGE)
        .with_context(|| format!("adding habitat-operator {}", operator.display()))?;
    let config = ImageConfig {
        user: Some(format!("{OPERATOR_USER}:{OPERATOR_USER}")),
        entrypoint: vec![OPERATOR_IN_IMAGE.to_string()],
        cmd: vec!["run".to_string()],
        exposed_ports: ["8080/tcp".to_string()].into(),
        labels: labels("habitat-operator", version),
        ..ImageConfig::default()
    };
    let mut image = Image::new(config, created);
    image.layers = vec![base, top];
    Ok(Built {
        image,
        static_binary: is_static(operator)?,
    })
}

/// Writes `image` as the only image of the OCI layout `dir`: staged beside it, then swapped in,
/// so an older build's tags (another appVersion) never linger in it. An existing `dir` that is
/// not an OCI layout is left alone, with an error.
pub fn write_layout(
    image: &Image,
    dir: &Path,
    reference: &ImageRef,
) -> anyhow::Result<WrittenImage> {
    let name = dir
        .file_name()
        .with_context(|| format!("{}: expected a directory name", dir.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let stage = parent.join(format!(".{name}.new"));
    let old = parent.join(format!(".{name}.old"));
    for leftover in [&stage, &old] {
        remove_dir_if_present(leftover)?;
    }
    let written = image
        .write_oci_layout(&stage, std::slice::from_ref(reference))
        .with_context(|| format!("writing {}", stage.display()))?;
    if dir.exists() {
        if !dir.join("oci-layout").is_file() {
            bail!(
                "{}: exists and is not an OCI image layout (no oci-layout file); refusing to \
                 replace it",
                dir.display()
            );
        }
        fs::rename(dir, &old).with_context(|| format!("moving {} aside", dir.display()))?;
    }
    fs::rename(&stage, dir).with_context(|| format!("renaming {} into place", stage.display()))?;
    remove_dir_if_present(&old)?;
    Ok(written)
}

fn remove_dir_if_present(dir: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}
