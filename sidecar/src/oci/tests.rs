//! The image writer's tests: reproducibility, tar entries, config and manifest, layouts and
//! tarballs, references.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// A tree with an executable, a private file, a symlink and an empty directory.
fn sample_tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("empty")).unwrap();
    fs::write(dir.join("bin/run"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("bin/run"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(dir.join("default.toml"), b"port = 80\n").unwrap();
    fs::set_permissions(dir.join("default.toml"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("bin/run", dir.join("run")).unwrap();
    // Longer than tar's 100-byte name field.
    let deep = dir.join("a".repeat(60)).join("b".repeat(60));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("c.txt"), b"deep").unwrap();
}

fn sample_image(src: &Path, created: u64) -> Image {
    let mut base = Layer::new("base");
    base.add_bytes("/etc/passwd", b"root:x:0:0::/:/bin/sh\n".to_vec(), 0o644)
        .unwrap();
    base.add_dir("/tmp", 0o1777).unwrap();
    let mut app = Layer::new("app");
    app.add_tree(src, "/hab/pkgs/core/app/1.0.0/20260101000000")
        .unwrap();
    let config = ImageConfig {
        entrypoint: vec!["/bin/hab".into(), "sup".into(), "run".into()],
        cmd: vec!["core/app".into()],
        env: vec!["HAB_ROOT=/hab".into()],
        exposed_ports: ["9631/tcp".to_string(), "9638/udp".to_string()].into(),
        working_dir: Some("/".into()),
        labels: [("a".to_string(), "b".to_string())].into(),
        user: None,
    };
    let mut image = Image::new(config, created);
    image.layers = vec![base, app];
    image
}

fn refs(text: &[&str]) -> Vec<ImageRef> {
    text.iter().map(|t| t.parse().unwrap()).collect()
}

fn read_blob(layout: &Path, d: &Descriptor) -> Vec<u8> {
    fs::read(layout.join(d.blob_path())).unwrap()
}

struct TarEntry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    names_empty: bool,
    link: Option<String>,
    data: Vec<u8>,
}

fn tar_entries(bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            TarEntry {
                path: e.path().unwrap().display().to_string(),
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                names_empty: h.username_bytes().is_none_or(|u| u.is_empty())
                    && h.groupname_bytes().is_none_or(|g| g.is_empty()),
                link: e.link_name().unwrap().map(|l| l.display().to_string()),
                data,
            }
        })
        .collect()
}

#[test]
fn two_exports_of_the_same_tree_give_identical_blobs_and_manifest_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let first = sample_image(&src, 0)
        .write_oci_layout(&tmp.path().join("one"), &refs(&["core/app:1"]))
        .unwrap();
    // What a second checkout or build changes: timestamps and permission bits the
    // normalised modes do not keep.
    fs::set_permissions(src.join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(src.join("default.toml"), fs::Permissions::from_mode(0o644)).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(src.join("default.toml"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    let second = sample_image(&src, 0)
        .write_oci_layout(&tmp.path().join("two"), &refs(&["core/app:1"]))
        .unwrap();
    assert_eq!(first, second);
    for d in std::iter::once(&first.manifest)
        .chain([&first.config])
        .chain(&first.layers)
    {
        assert_eq!(
            read_blob(&tmp.path().join("one"), d),
            read_blob(&tmp.path().join("two"), d)
        );
    }
    assert_eq!(
        fs::read(tmp.path().join("one/index.json")).unwrap(),
        fs::read(tmp.path().join("two/index.json")).unwrap()
    );
    // Another timestamp is another image.
    let third = sample_image(&src, 1_700_000_000)
        .write_oci_layout(&tmp.path().join("three"), &refs(&["core/app:1"]))
        .unwrap();
    assert_ne!(third.manifest.digest, first.manifest.digest);
}

#[test]
fn layer_entries_are_sorted_stamped_owned_by_root_with_normalised_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let layout = tmp.path().join("out");
    let written = sample_image(&src, 1_234_567_890)
        .write_oci_layout(&layout, &refs(&["core/app:1"]))
        .unwrap();
    let blob = read_blob(&layout, &written.layers[1]);
    assert_eq!(
        format!("sha256:{}", hex(&Sha256::digest(&blob))),
        written.layers[1].digest
    );
    let entries = tar_entries(&blob);
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| Path::new(a).cmp(Path::new(b)));
    assert_eq!(paths, sorted);
    let root = "hab/pkgs/core/app/1.0.0/20260101000000";
    for parent in ["hab", "hab/pkgs", "hab/pkgs/core", root] {
        assert!(paths.contains(&parent), "{parent} missing from {paths:?}");
    }
    for e in &entries {
        assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 1_234_567_890), "{}", e.path);
        assert!(e.names_empty, "{}", e.path);
    }
    let by_path = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    let run = by_path(&format!("{root}/bin/run"));
    assert_eq!((run.kind, run.mode), (tar::EntryType::Regular, 0o755));
    assert_eq!(run.data, b"#!/bin/sh\necho hi\n");
    assert_eq!(by_path(&format!("{root}/default.toml")).mode, 0o644);
    assert_eq!(by_path(&format!("{root}/empty")).mode, 0o755);
    let link = by_path(&format!("{root}/run"));
    assert_eq!(link.kind, tar::EntryType::Symlink);
    assert_eq!(link.link.as_deref(), Some("bin/run"));
    let deep = format!("{root}/{}/{}/c.txt", "a".repeat(60), "b".repeat(60));
    assert_eq!(by_path(&deep).data, b"deep");
    let base = tar_entries(&read_blob(&layout, &written.layers[0]));
    let tmp_dir = base.iter().find(|e| e.path == "tmp").unwrap();
    assert_eq!(
        (tmp_dir.kind, tmp_dir.mode),
        (tar::EntryType::Directory, 0o1777)
    );
}

#[test]
fn the_config_and_manifest_use_the_image_specs_names() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let layout = tmp.path().join("out");
    let written = sample_image(&src, 0)
        .write_oci_layout(&layout, &refs(&["core/app:1"]))
        .unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&read_blob(&layout, &written.config)).unwrap();
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], host_architecture());
    let run = &config["config"];
    assert_eq!(
        run["Entrypoint"],
        serde_json::json!(["/bin/hab", "sup", "run"])
    );
    assert_eq!(run["Cmd"], serde_json::json!(["core/app"]));
    assert_eq!(run["Env"], serde_json::json!(["HAB_ROOT=/hab"]));
    assert_eq!(
        run["ExposedPorts"],
        serde_json::json!({"9631/tcp": {}, "9638/udp": {}})
    );
    assert_eq!(run["WorkingDir"], "/");
    assert_eq!(run["Labels"], serde_json::json!({"a": "b"}));
    assert!(run.get("User").is_none());
    let diff_ids: Vec<String> = written.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
    assert_eq!(config["history"][1]["created_by"], "app");
    let manifest: serde_json::Value =
        serde_json::from_slice(&read_blob(&layout, &written.manifest)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["config"]["digest"], written.config.digest.as_str());
    assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_CONFIG);
    assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_TYPE_LAYER);
    assert_eq!(manifest["layers"][0]["size"], written.layers[0].size);
}

#[test]
fn a_layout_names_each_tag_and_keeps_other_images() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let layout = tmp.path().join("out");
    let image = sample_image(&src, 0);
    let first = image
        .write_oci_layout(&layout, &refs(&["core/app:1.0", "core/app:latest"]))
        .unwrap();
    assert_eq!(
        fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let mut other = sample_image(&src, 5);
    other.config.cmd = vec!["core/other".into()];
    let second = other
        .write_oci_layout(&layout, &refs(&["core/app:2.0", "core/app:latest"]))
        .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entries: Vec<(String, String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"][REF_NAME_ANNOTATION]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["annotations"][IMAGE_NAME_ANNOTATION]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let (one, two) = (first.manifest.digest, second.manifest.digest);
    assert_eq!(
        entries,
        vec![
            ("1.0".into(), "core/app:1.0".into(), one.clone()),
            ("2.0".into(), "core/app:2.0".into(), two.clone()),
            ("latest".into(), "core/app:latest".into(), two),
        ]
    );
    assert_eq!(index["mediaType"], MEDIA_TYPE_INDEX);
    // No temporary file is left beside the blobs.
    for entry in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
    }
}

fn blob_names(layout: &Path) -> BTreeSet<String> {
    fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn a_replaced_tags_blobs_go_and_other_images_blobs_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let layout = tmp.path().join("out");
    let kept = sample_image(&src, 0)
        .write_oci_layout(&layout, &refs(&["core/app:1"]))
        .unwrap();
    let replaced = sample_image(&src, 1)
        .write_oci_layout(&layout, &refs(&["core/app:2"]))
        .unwrap();
    let mut changed = sample_image(&src, 1);
    changed.layers[1]
        .add_bytes("/new", b"new".to_vec(), 0o644)
        .unwrap();
    let current = changed
        .write_oci_layout(&layout, &refs(&["core/app:2"]))
        .unwrap();
    let hexes = |w: &WrittenImage| -> BTreeSet<String> {
        std::iter::once(&w.manifest)
            .chain([&w.config])
            .chain(&w.layers)
            .map(|d| d.hex().to_string())
            .collect()
    };
    let expected: BTreeSet<String> = hexes(&kept).union(&hexes(&current)).cloned().collect();
    assert_eq!(blob_names(&layout), expected);
    // The layer both versions share survived; the replaced manifest did not.
    assert!(expected.contains(replaced.layers[0].hex()));
    assert!(!expected.contains(replaced.manifest.hex()));

    // A foreign entry in the index: what it refers to is unknown, so nothing is removed.
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": MEDIA_TYPE_INDEX, "digest": "sha256:00", "size": 1
        }));
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    sample_image(&src, 7)
        .write_oci_layout(&layout, &refs(&["core/app:2"]))
        .unwrap();
    assert!(blob_names(&layout).is_superset(&expected));
}

#[test]
fn a_directory_that_is_not_a_layout_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let err = sample_image(&src, 0)
        .write_oci_layout(&src, &refs(&["core/app:1"]))
        .unwrap_err();
    assert!(err.to_string().contains("oci-layout"), "{err}");
    assert!(!src.join("blobs").exists() && !src.join("index.json").exists());
    // An empty directory is fine.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    sample_image(&src, 0)
        .write_oci_layout(&empty, &refs(&["core/app:1"]))
        .unwrap();
}

#[test]
fn a_docker_archive_holds_manifest_json_repositories_and_the_same_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let image = sample_image(&src, 0);
    let tags = refs(&["core/app:1.0", "core/app:latest"]);
    let file = tmp.path().join("app.tar");
    let archived = image.write_docker_archive(&file, &tags).unwrap();
    let laid_out = image
        .write_oci_layout(&tmp.path().join("layout"), &tags)
        .unwrap();
    assert_eq!(archived, laid_out);
    let entries = tar_entries(&fs::read(&file).unwrap());
    let get = |p: &str| {
        &entries
            .iter()
            .find(|e| e.path == p)
            .unwrap_or_else(|| panic!("{p} missing"))
            .data
    };
    let manifest: serde_json::Value = serde_json::from_slice(get("manifest.json")).unwrap();
    assert_eq!(
        manifest,
        serde_json::json!([{
            "Config": archived.config.blob_path(),
            "RepoTags": ["core/app:1.0", "core/app:latest"],
            "Layers": archived.layers.iter().map(Descriptor::blob_path).collect::<Vec<_>>(),
        }])
    );
    let top = archived.layers.last().unwrap().hex().to_string();
    let repositories: serde_json::Value = serde_json::from_slice(get("repositories")).unwrap();
    assert_eq!(
        repositories,
        serde_json::json!({"core/app": {"1.0": top, "latest": top}})
    );
    assert_eq!(
        get("index.json"),
        &fs::read(tmp.path().join("layout/index.json")).unwrap()
    );
    for d in std::iter::once(&archived.manifest)
        .chain([&archived.config])
        .chain(&archived.layers)
    {
        let blob = get(&d.blob_path());
        assert_eq!(format!("sha256:{}", hex(&Sha256::digest(blob))), d.digest);
        assert_eq!(blob.len() as u64, d.size);
    }
    // Nothing staged is left beside the tarball, and a second run gives the same bytes.
    let again = tmp.path().join("again.tar");
    image.write_docker_archive(&again, &tags).unwrap();
    assert_eq!(fs::read(&file).unwrap(), fs::read(&again).unwrap());
    let mut names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["again.tar", "app.tar", "layout", "src"]);
}

#[test]
fn image_refs_follow_dockers_grammar() {
    for good in [
        "core/redis:4.0.14-20190319155852",
        "redis:latest",
        "localhost:5000/core/app:v1",
        "ghcr.io/habitat-rs/hab:0.1.0",
        "core/a.b_c-d:T_1.x",
    ] {
        let r: ImageRef = good.parse().unwrap();
        assert_eq!(r.to_string(), good);
    }
    assert_eq!(
        "localhost:5000/app:v1".parse::<ImageRef>().unwrap().name,
        "localhost:5000/app"
    );
    for bad in [
        "core/redis",
        "Core/redis:1",
        "core/redis:",
        "core/redis:-x",
        "core//redis:1",
        "core/redis:a+b",
        ":1",
        "core/-redis:1",
    ] {
        let err = bad.parse::<ImageRef>().unwrap_err().to_string();
        assert!(
            err.contains(bad) && err.contains("NAME:TAG"),
            "{bad}: {err}"
        );
    }
    assert_eq!(ImageRef::sanitized_tag("1.0+build-2026"), "1.0_build-2026");
    assert_eq!(ImageRef::sanitized_tag(".x"), "_x");
    assert_eq!(ImageRef::sanitized_tag(&"9".repeat(200)).len(), 128);
    let twice = refs(&["a/b:1", "c/d:1"]);
    let tmp = tempfile::tempdir().unwrap();
    let err = Image::new(ImageConfig::default(), 0)
        .write_oci_layout(tmp.path(), &twice)
        .unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");
}

#[test]
fn source_date_epoch_is_whole_seconds_within_tars_range() {
    assert_eq!(parse_epoch("0").unwrap(), 0);
    assert_eq!(parse_epoch(" 1700000000\n").unwrap(), 1_700_000_000);
    assert_eq!(parse_epoch(&MAX_EPOCH.to_string()).unwrap(), MAX_EPOCH);
    for bad in ["-1", "1.5", "soon", "", "8589934592"] {
        let err = parse_epoch(bad).unwrap_err().to_string();
        assert!(err.contains("SOURCE_DATE_EPOCH"), "{bad}: {err}");
    }
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(MAX_EPOCH), "2242-03-16T12:56:31Z");
}

#[test]
fn layer_paths_are_absolute_plain_and_below_directories() {
    let mut layer = Layer::new("t");
    for bad in ["relative", "/a/../b", "/", "/a/b/.."] {
        let err = layer.add_dir(bad, 0o755).unwrap_err().to_string();
        assert!(err.contains("absolute path of plain names"), "{bad}: {err}");
    }
    layer.add_bytes("/etc/file", b"x".to_vec(), 0o644).unwrap();
    let err = layer
        .add_bytes("/etc/file/inside", b"x".to_vec(), 0o644)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/etc/file is already a file"), "{err}");
    let paths: Vec<&Path> = layer.paths().collect();
    assert_eq!(paths, [Path::new("etc"), Path::new("etc/file")]);
}

#[test]
fn special_files_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let err = Layer::new("t")
        .add_tree(tmp.path(), "/x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sock") && err.contains("special file"),
        "{err}"
    );
}
