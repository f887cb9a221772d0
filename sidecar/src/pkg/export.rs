//! `hab pkg export container`: an installed package as an OCI image, written without a daemon
//! (`crate::oci`). Three layers, bottom first: our `hab` at `/bin/hab` with what it needs to run
//! from an empty root (its ELF interpreter and shared libraries, `/etc/passwd`, `/etc/group`,
//! `/tmp`, and busybox when given); the package's runtime dependencies; the package itself and
//! its origins' public keys. The image runs `hab sup run <ident>`. Same inputs, same image
//! digest. A `.hart` is verified and unpacked into a temporary root first.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::oci::{Image, ImageConfig, ImageRef, Layer};
use crate::package::{Package, PackageIdent};

/// Habitat's uid and gid for the `hab` user its exporter creates.
pub const HAB_USER_ID: u32 = 42;
/// Gossip (TCP and UDP) and the HTTP gateway; the ctl gateway stays on loopback.
pub const EXPOSED_PORTS: [&str; 3] = ["9631/tcp", "9638/tcp", "9638/udp"];
/// Where the image keeps `hab`.
pub const HAB_IN_IMAGE: &str = "/bin/hab";

/// Label naming the package the image runs, fully qualified.
pub const IDENT_LABEL: &str = "sh.habitat.package.ident";

/// What goes into an export besides the package.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Where the package's runtime dependencies are installed (`<root>/pkgs/...`).
    pub root: PathBuf,
    /// The key cache the origins' public keys are copied from.
    pub keys_dir: PathBuf,
    /// The `hab` put at `/bin/hab` (the running one, as a rule).
    pub hab_binary: PathBuf,
    /// A busybox put at `/bin/busybox`, with `/bin/sh` and its other applets linked to it, as
    /// Habitat's images have (hooks written for `/bin/sh` need a shell).
    pub busybox: Option<PathBuf>,
    /// A dependency listed in `TDEPS`/`DEPS` but not installed is left out with a warning
    /// instead of failing the export.
    pub skip_missing_deps: bool,
    /// The image's timestamp (and every file's), seconds since 1970.
    pub created: u64,
}

/// Where an export goes: a path ending in `.tar` is a `docker load` tarball, anything else an
/// OCI image layout directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Layout(PathBuf),
    DockerArchive(PathBuf),
}

impl Output {
    pub fn from_path(path: &Path) -> Output {
        if path.extension().is_some_and(|e| e == "tar") {
            Output::DockerArchive(path.to_path_buf())
        } else {
            Output::Layout(path.to_path_buf())
        }
    }

    /// The default: an OCI layout in the current directory named after the package,
    /// `<origin>-<name>-<version>-<release>.oci`.
    pub fn default_for(ident: &PackageIdent) -> Output {
        let mut name = format!("{}-{}", ident.origin, ident.name);
        for part in [&ident.version, &ident.release].into_iter().flatten() {
            name.push('-');
            name.push_str(part);
        }
        Output::Layout(PathBuf::from(format!("{name}.oci")))
    }

    pub fn path(&self) -> &Path {
        match self {
            Output::Layout(p) | Output::DockerArchive(p) => p,
        }
    }
}

/// Habitat's default tags: `<origin>/<name>:<version>-<release>` and `<origin>/<name>:latest`
/// (lowercased, as Habitat's exporter names images).
pub fn default_refs(ident: &PackageIdent) -> Result<Vec<ImageRef>> {
    let name = format!("{}/{}", ident.origin, ident.name).to_lowercase();
    let (Some(version), Some(release)) = (&ident.version, &ident.release) else {
        return Err(not_qualified(ident));
    };
    let mut refs = Vec::new();
    for tag in [
        ImageRef::sanitized_tag(&format!("{version}-{release}")),
        "latest".to_string(),
    ] {
        refs.push(format!("{name}:{tag}").parse::<ImageRef>().map_err(|e| {
            Error::invalid(
                format!("package {ident}"),
                format!("cannot name an image after it ({e}); give --tag NAME:TAG"),
            )
        })?);
    }
    Ok(refs)
}

fn not_qualified(ident: &PackageIdent) -> Error {
    Error::invalid(
        format!("package {ident}"),
        "expected a fully qualified ident ORIGIN/NAME/VERSION/RELEASE in its IDENT file",
    )
}

/// `/hab/pkgs/<origin>/<name>/<version>/<release>`.
fn pkg_path_in_image(ident: &PackageIdent) -> Result<PathBuf> {
    let (Some(version), Some(release)) = (&ident.version, &ident.release) else {
        return Err(not_qualified(ident));
    };
    Ok(Path::new("/hab/pkgs")
        .join(&ident.origin)
        .join(&ident.name)
        .join(version)
        .join(release))
}

/// The package's runtime dependencies installed under `root`, each once, in a stable order:
/// every ident in `TDEPS` and `DEPS`, and theirs in turn (a package without `TDEPS` still gets
/// its whole closure). A dependency that is not installed is an error naming it, or, with
/// `skip_missing`, left out with a warning.
pub fn runtime_deps(root: &Path, pkg: &Package, skip_missing: bool) -> Result<Vec<Package>> {
    let mut found: BTreeMap<String, Package> = BTreeMap::new();
    let mut missing: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<PackageIdent> = pkg.tdeps.iter().chain(&pkg.deps).cloned().collect();
    let own = pkg.ident.to_string();
    while let Some(ident) = queue.pop() {
        let key = ident.to_string();
        if key == own || found.contains_key(&key) || missing.contains(&key) {
            continue;
        }
        match resolve_installed(root, &ident)? {
            Some(dep) => {
                queue.extend(dep.tdeps.iter().chain(&dep.deps).cloned());
                found.insert(key, dep);
            }
            None => {
                missing.insert(key);
            }
        }
    }
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().map(String::as_str).collect();
        let pkgs = root.join("pkgs");
        if !skip_missing {
            return Err(Error::Package {
                path: pkg.path.clone(),
                problem: format!(
                    "runtime dependencies not installed under {}: {} (install them, or give \
                     --skip-missing-deps to export without them)",
                    pkgs.display(),
                    list.join(", ")
                ),
            });
        }
        tracing::warn!(
            package = %pkg.ident,
            "runtime dependencies not installed under {}, left out of the image: {}",
            pkgs.display(),
            list.join(", ")
        );
    }
    // Several releases of one dependency can be listed; each is its own directory.
    let mut by_path: BTreeMap<PathBuf, Package> = BTreeMap::new();
    for dep in found.into_values() {
        by_path.insert(pkg_path_in_image(&dep.ident)?, dep);
    }
    Ok(by_path.into_values().collect())
}

/// An installed package matching `ident` (the newest when it is not fully qualified), looked
/// up only under `<root>/pkgs`, never as a path.
fn resolve_installed(root: &Path, ident: &PackageIdent) -> Result<Option<Package>> {
    let base = root.join("pkgs").join(&ident.origin).join(&ident.name);
    if let (Some(version), Some(release)) = (&ident.version, &ident.release) {
        let dir = base.join(version).join(release);
        return if dir.is_dir() {
            Package::load(&dir).map(Some)
        } else {
            Ok(None)
        };
    }
    if !base.is_dir() {
        return Ok(None);
    }
    match Package::resolve(root, &ident.to_string()) {
        Ok(pkg) => Ok(Some(pkg)),
        Err(Error::Package { problem, .. }) if problem.contains("is not installed") => Ok(None),
        Err(e) => Err(e),
    }
}

/// `/etc/passwd` and `/etc/group`: root, Habitat's `hab` user and group (uid/gid 42), and the
/// package's `SVC_USER`/`SVC_GROUP` when they are others, so the supervisor can switch to
/// them.
fn etc_files(pkg: &Package) -> (String, String) {
    let mut users = vec![
        ("root".to_string(), 0u32, "/root", "/bin/sh"),
        ("hab".to_string(), HAB_USER_ID, "/hab", "/bin/false"),
    ];
    let mut groups = vec![("root".to_string(), 0u32), ("hab".to_string(), HAB_USER_ID)];
    let mut next = HAB_USER_ID + 1;
    if let Some(user) = pkg
        .svc_user
        .as_ref()
        .filter(|u| !users.iter().any(|x| &x.0 == *u))
    {
        users.push((user.clone(), next, "/hab", "/bin/false"));
        next += 1;
    }
    if let Some(group) = pkg
        .svc_group
        .as_ref()
        .filter(|g| !groups.iter().any(|x| &x.0 == *g))
    {
        groups.push((group.clone(), next));
    }
    let hab_gid = HAB_USER_ID;
    let passwd = users
        .iter()
        .map(|(name, uid, home, shell)| {
            let gid = if *uid == 0 { 0 } else { hab_gid };
            format!("{name}:x:{uid}:{gid}:{name}:{home}:{shell}\n")
        })
        .collect();
    let group = groups
        .iter()
        .map(|(name, gid)| format!("{name}:x:{gid}:\n"))
        .collect();
    (passwd, group)
}

/// The layer with `hab` and what it needs to run from an empty root (and busybox, if given).
pub fn hab_layer(hab_binary: &Path, busybox: Option<&Path>, pkg: &Package) -> Result<Layer> {
    let mut layer = Layer::new(format!(
        "hab at {HAB_IN_IMAGE}, its ELF interpreter and libraries"
    ));
    // Our hab is linked dynamically against glibc (no musl target where it is built): its
    // interpreter and libraries come along.
    layer.add_executable(hab_binary, HAB_IN_IMAGE)?;
    if let Some(busybox) = busybox {
        layer.add_executable(busybox, "/bin/busybox")?;
        for applet in busybox_applets(busybox)? {
            layer.add_symlink(Path::new("/bin").join(applet), "busybox")?;
        }
    }
    let (passwd, group) = etc_files(pkg);
    layer.add_bytes("/etc/passwd", passwd.into_bytes(), 0o644)?;
    layer.add_bytes("/etc/group", group.into_bytes(), 0o644)?;
    layer.add_dir("/tmp", 0o1777)?;
    Ok(layer)
}

/// The applets `busybox --list` names (plain file names only; never `hab` or `busybox`).
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let output = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| Error::io(busybox, e))?;
    let applets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| {
            !a.is_empty() && !a.contains('/') && !matches!(*a, "." | ".." | "hab" | "busybox")
        })
        .map(str::to_string)
        .collect();
    if !output.status.success() || !applets.iter().any(|a| a == "sh") {
        return Err(Error::invalid(
            busybox.display().to_string(),
            format!(
                "expected a busybox whose `--list` names sh; it exited with {}",
                output.status
            ),
        ));
    }
    Ok(applets)
}

/// The origin public keys (`<origin>-<rev>.pub`) of `origins` in `keys_dir`.
fn origin_public_keys(keys_dir: &Path, origins: &BTreeSet<&str>) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(keys_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(keys_dir, e)),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(keys_dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".pub") else {
            continue;
        };
        let Some((origin, rev)) = stem.rsplit_once('-') else {
            continue;
        };
        if origins.contains(origin) && rev.len() == 14 && rev.bytes().all(|b| b.is_ascii_digit()) {
            keys.push(entry.path());
        }
    }
    keys.sort();
    Ok(keys)
}

/// The image of `pkg` (installed or unpacked anywhere; its files go to
/// `/hab/pkgs/<origin>/<name>/<version>/<release>` in the image).
pub fn container_image(pkg: &Package, options: &ExportOptions) -> Result<Image> {
    let own_path = pkg_path_in_image(&pkg.ident)?;
    let deps = runtime_deps(&options.root, pkg, options.skip_missing_deps)?;

    let mut deps_layer = Layer::new("runtime dependencies under /hab/pkgs");
    for dep in &deps {
        deps_layer.add_tree(&dep.path, pkg_path_in_image(&dep.ident)?)?;
    }
    let mut pkg_layer = Layer::new(format!("{} and its origin keys", pkg.ident));
    pkg_layer.add_tree(&pkg.path, &own_path)?;
    let origins: BTreeSet<&str> = std::iter::once(pkg)
        .chain(&deps)
        .map(|p| p.ident.origin.as_str())
        .collect();
    for key in origin_public_keys(&options.keys_dir, &origins)? {
        let name = key.file_name().unwrap_or_default();
        pkg_layer.add_file(&key, Path::new("/hab/cache/keys").join(name))?;
    }

    // The package's binaries first, then its dependencies', as Habitat's images set PATH.
    let mut path: Vec<String> = Vec::new();
    for p in std::iter::once(pkg).chain(&deps) {
        for dir in &p.bin_path {
            let dir = dir.display().to_string();
            if !path.contains(&dir) {
                path.push(dir);
            }
        }
    }
    path.push("/bin".into());
    let mut exposed: BTreeSet<String> = EXPOSED_PORTS.iter().map(|p| p.to_string()).collect();
    for port in &pkg.exposes {
        match port.parse::<u16>() {
            Ok(n) => exposed.insert(format!("{n}/tcp")),
            Err(_) if port.ends_with("/tcp") || port.ends_with("/udp") => {
                exposed.insert(port.clone())
            }
            Err(_) => {
                return Err(Error::Package {
                    path: pkg.path.join("EXPOSES"),
                    problem: format!("expected ports (e.g. 8080 or 53/udp), found {port:?}"),
                })
            }
        };
    }
    let ident = pkg.ident.to_string();
    let mut labels = BTreeMap::new();
    labels.insert(IDENT_LABEL.to_string(), ident.clone());
    labels.insert(
        "org.opencontainers.image.title".to_string(),
        format!("{}/{}", pkg.ident.origin, pkg.ident.name),
    );
    if let (Some(version), Some(release)) = (&pkg.ident.version, &pkg.ident.release) {
        labels.insert(
            "org.opencontainers.image.version".to_string(),
            format!("{version}-{release}"),
        );
    }
    let config = ImageConfig {
        user: None,
        exposed_ports: exposed,
        env: vec![format!("PATH={}", path.join(":")), "HAB_ROOT=/hab".into()],
        entrypoint: vec![HAB_IN_IMAGE.into(), "sup".into(), "run".into()],
        cmd: vec![ident],
        working_dir: Some("/".into()),
        labels,
    };
    let mut image = Image::new(config, options.created);
    image.layers.push(hab_layer(
        &options.hab_binary,
        options.busybox.as_deref(),
        pkg,
    )?);
    if !deps_layer.is_empty() {
        image.layers.push(deps_layer);
    }
    image.layers.push(pkg_layer);
    Ok(image)
}

/// What `hab pkg export container` was asked for.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// An ident installed under `options.root`, a package directory, or a `.hart` file.
    pub package: String,
    /// `NAME:TAG` references; empty: `default_refs`.
    pub tags: Vec<String>,
    /// `None`: `Output::default_for` the package.
    pub output: Option<PathBuf>,
    pub options: ExportOptions,
}

/// Resolves the package, builds its image and writes it; returns what was written and where.
pub fn export_container(request: &ExportRequest) -> Result<(crate::oci::WrittenImage, Output)> {
    let options = &request.options;
    let refs: Vec<ImageRef> = request
        .tags
        .iter()
        .map(|t| t.parse())
        .collect::<Result<_>>()?;
    let spec = request.package.as_str();
    // A .hart is verified and unpacked into a root of its own, kept until the image is written
    // (layers read their files then); its dependencies still come from `options.root`.
    let mut unpacked = None;
    let pkg = if spec.ends_with(".hart") || Path::new(spec).is_file() {
        let temp = TempRoot::new()?;
        let dir = crate::pkg::hart::install(Path::new(spec), temp.path(), &options.keys_dir)?;
        unpacked = Some(temp);
        Package::load(&dir)?
    } else {
        Package::resolve(&options.root, spec)?
    };
    let refs = if refs.is_empty() {
        default_refs(&pkg.ident)?
    } else {
        refs
    };
    let output = match &request.output {
        Some(path) => Output::from_path(path),
        None => Output::default_for(&pkg.ident),
    };
    let image = container_image(&pkg, options)?;
    let written = match &output {
        Output::Layout(dir) => image.write_oci_layout(dir, &refs)?,
        Output::DockerArchive(file) => image.write_docker_archive(file, &refs)?,
    };
    drop(unpacked);
    Ok((written, output))
}

/// A private temporary root, removed with everything in it when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new() -> Result<TempRoot> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut attempt = 0u32;
        loop {
            let dir = base.join(format!(
                "hab-export-{}-{stamp}-{attempt}",
                std::process::id()
            ));
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(TempRoot(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => return Err(Error::io(dir, e)),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const IDENT: &str = "core/app/1.0.0/20260102030405";

    /// Installs a package `ident` under `root` with `files` (name, content).
    fn install(root: &Path, ident: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = root.join("pkgs").join(ident);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("IDENT"), format!("{ident}\n")).unwrap();
        for (name, content) in files {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        dir
    }

    fn options(root: &Path) -> ExportOptions {
        ExportOptions {
            root: root.to_path_buf(),
            keys_dir: root.join("cache/keys"),
            hab_binary: std::env::current_exe().unwrap(),
            busybox: None,
            skip_missing_deps: false,
            created: 0,
        }
    }

    #[test]
    fn default_tags_are_habitats_version_release_and_latest() {
        let ident: PackageIdent = "Core/My-App/1.0+b/20260102030405".parse().unwrap();
        let refs: Vec<String> = default_refs(&ident)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            refs,
            ["core/my-app:1.0_b-20260102030405", "core/my-app:latest"]
        );
        let partial: PackageIdent = "core/app".parse().unwrap();
        assert!(default_refs(&partial)
            .unwrap_err()
            .to_string()
            .contains("fully qualified"));
    }

    #[test]
    fn a_tar_path_is_a_tarball_anything_else_a_layout_named_after_the_package() {
        assert_eq!(
            Output::from_path(Path::new("out/app.tar")),
            Output::DockerArchive("out/app.tar".into())
        );
        assert_eq!(
            Output::from_path(Path::new("out/app")),
            Output::Layout("out/app".into())
        );
        assert_eq!(
            Output::default_for(&IDENT.parse().unwrap()),
            Output::Layout("core-app-1.0.0-20260102030405.oci".into())
        );
    }

    #[test]
    fn the_dependency_closure_follows_tdeps_and_deps_once_each() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // app lists only b (DEPS, no TDEPS); b lists c; c lists b again (a cycle).
        install(root, IDENT, &[("DEPS", "core/b/1/1\n")]);
        install(root, "core/b/1/1", &[("DEPS", "core/c\n")]);
        install(root, "core/c/1/1", &[("TDEPS", "core/b/1/1\n")]);
        install(root, "core/c/2/1", &[("TDEPS", "core/b/1/1\n")]);
        let app = Package::load(&root.join("pkgs").join(IDENT)).unwrap();
        let deps: Vec<String> = runtime_deps(root, &app, false)
            .unwrap()
            .iter()
            .map(|p| p.ident.to_string())
            .collect();
        // A partial ident resolves to the newest installed release.
        assert_eq!(deps, ["core/b/1/1", "core/c/2/1"]);
    }

    #[test]
    fn a_missing_dependency_is_an_error_naming_it_or_skipped_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        install(
            root,
            IDENT,
            &[("TDEPS", "core/b/1/1\ncore/gone/1/1\ncore/none\n")],
        );
        install(root, "core/b/1/1", &[]);
        let app = Package::load(&root.join("pkgs").join(IDENT)).unwrap();
        let err = runtime_deps(root, &app, false).unwrap_err().to_string();
        assert!(
            err.contains("core/gone/1/1, core/none") && err.contains("--skip-missing-deps"),
            "{err}"
        );
        let deps = runtime_deps(root, &app, true).unwrap();
        assert_eq!(deps.len(), 1);
        assert_eq!(deps[0].ident.to_string(), "core/b/1/1");
    }

    #[test]
    fn the_image_runs_hab_sup_run_with_the_package_its_deps_and_its_origin_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        install(
            root,
            IDENT,
            &[
                ("TDEPS", "dep/lib/2/1\n"),
                ("PATH", "/hab/pkgs/core/app/1.0.0/20260102030405/bin\n"),
                ("EXPOSES", "8080 53/udp\n"),
                ("SVC_USER", "app\n"),
                ("bin/app", "binary"),
            ],
        );
        install(
            root,
            "dep/lib/2/1",
            &[("PATH", "/hab/pkgs/dep/lib/2/1/bin\n")],
        );
        let keys = root.join("cache/keys");
        fs::create_dir_all(&keys).unwrap();
        for name in [
            "core-20260101000000.pub",
            "dep-20260101000000.pub",
            "other-20260101000000.pub",
            "core-20260101000000.sig.key",
            "core-notarev.pub",
        ] {
            fs::write(keys.join(name), "key").unwrap();
        }
        let app = Package::load(&root.join("pkgs").join(IDENT)).unwrap();
        let image = container_image(&app, &options(root)).unwrap();
        let config = &image.config;
        assert_eq!(config.entrypoint, ["/bin/hab", "sup", "run"]);
        assert_eq!(config.cmd, [IDENT]);
        assert_eq!(
            config.env,
            [
                "PATH=/hab/pkgs/core/app/1.0.0/20260102030405/bin:/hab/pkgs/dep/lib/2/1/bin:/bin",
                "HAB_ROOT=/hab"
            ]
        );
        let ports: Vec<&str> = config.exposed_ports.iter().map(String::as_str).collect();
        assert_eq!(
            ports,
            ["53/udp", "8080/tcp", "9631/tcp", "9638/tcp", "9638/udp"]
        );
        assert_eq!(config.labels[IDENT_LABEL], IDENT);
        assert_eq!(
            config.labels["org.opencontainers.image.version"],
            "1.0.0-20260102030405"
        );

        assert_eq!(image.layers.len(), 3);
        let paths = |i: usize| -> Vec<String> {
            image.layers[i]
                .paths()
                .map(|p| format!("/{}", p.display()))
                .collect()
        };
        let hab = paths(0);
        assert!(hab.contains(&"/bin/hab".to_string()), "{hab:?}");
        assert!(hab.iter().any(|p| p.ends_with("/libc.so.6")), "{hab:?}");
        for p in ["/etc/passwd", "/etc/group", "/tmp"] {
            assert!(hab.contains(&p.to_string()), "{p} in {hab:?}");
        }
        assert!(paths(1).contains(&"/hab/pkgs/dep/lib/2/1/IDENT".to_string()));
        let top = paths(2);
        assert!(
            top.contains(&format!("/hab/pkgs/{IDENT}/bin/app")),
            "{top:?}"
        );
        let keys: Vec<&String> = top.iter().filter(|p| p.contains("cache/keys/")).collect();
        assert_eq!(
            keys,
            [
                "/hab/cache/keys/core-20260101000000.pub",
                "/hab/cache/keys/dep-20260101000000.pub"
            ]
        );
        let (passwd, group) = etc_files(&app);
        assert_eq!(
            passwd,
            "root:x:0:0:root:/root:/bin/sh\nhab:x:42:42:hab:/hab:/bin/false\n\
             app:x:43:42:app:/hab:/bin/false\n"
        );
        assert_eq!(group, "root:x:0:\nhab:x:42:\n");
    }

    #[test]
    fn a_busybox_that_lists_no_shell_is_refused() {
        // `true --list` prints nothing: not a busybox.
        let err = busybox_applets(Path::new("/bin/true"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/bin/true") && err.contains("names sh"),
            "{err}"
        );
    }

    #[test]
    fn bad_exposes_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        install(tmp.path(), IDENT, &[("EXPOSES", "http\n")]);
        let app = Package::load(&tmp.path().join("pkgs").join(IDENT)).unwrap();
        let err = container_image(&app, &options(tmp.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("EXPOSES") && err.contains("\"http\""), "{err}");
    }
}
