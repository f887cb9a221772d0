#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::pkg::depot::test_harts::make_hart;

fn ident(text: &str) -> PackageIdent {
    text.parse().unwrap()
}

fn latest(store: &Store, pkg: &str, channel: &str) -> Option<String> {
    store
        .latest(&ident(pkg), channel)
        .unwrap()
        .map(|i| i.to_string())
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_upload_lands_under_habitats_file_name_in_unstable_only() {
    let work = tempfile::tempdir().unwrap();
    let depot = tempfile::tempdir().unwrap();
    let store = Store::new(depot.path());
    let hart = make_hart(work.path(), "core/redis/7.2.4/20260101000000");
    let (id, new) = store.upload(&hart).unwrap();
    assert!(new);
    assert_eq!(id.to_string(), "core/redis/7.2.4/20260101000000");
    assert_eq!(
        names(depot.path()),
        ["core-redis-7.2.4-20260101000000-x86_64-linux.hart"]
    );
    assert_eq!(
        fs::read(
            depot
                .path()
                .join("core-redis-7.2.4-20260101000000-x86_64-linux.hart")
        )
        .unwrap(),
        fs::read(&hart).unwrap()
    );
    let channels: Vec<String> = store
        .channels(&id)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(channels, ["unstable"]);
    assert_eq!(latest(&store, "core/redis", "stable"), None);
    assert_eq!(
        latest(&store, "core/redis", "unstable").as_deref(),
        Some("core/redis/7.2.4/20260101000000")
    );
}

#[test]
fn latest_in_a_channel_is_the_highest_version_then_the_highest_release() {
    let work = tempfile::tempdir().unwrap();
    let depot = tempfile::tempdir().unwrap();
    let store = Store::new(depot.path());
    for pkg in [
        "core/app/1.9.0/20260301000000",
        "core/app/1.10.0/20260101000000",
        "core/app/1.10.0/20260102000000",
        "core/app/1.2.0/20260401000000",
        "core/other/9.9.9/20260101000000",
    ] {
        store.upload(&make_hart(work.path(), pkg)).unwrap();
    }
    // Version 1.10.0 beats 1.9.0 and 1.2.0 (numerically, despite newer releases), and its
    // newer release wins.
    assert_eq!(
        latest(&store, "core/app", "unstable").as_deref(),
        Some("core/app/1.10.0/20260102000000")
    );
    assert_eq!(
        latest(&store, "core/app/1.9.0", "unstable").as_deref(),
        Some("core/app/1.9.0/20260301000000")
    );
    assert_eq!(latest(&store, "core/app/3.0", "unstable"), None);
    assert_eq!(latest(&store, "core/none", "unstable"), None);

    for pkg in [
        "core/app/1.9.0/20260301000000",
        "core/app/1.10.0/20260101000000",
    ] {
        store.promote(&ident(pkg), "stable").unwrap();
    }
    assert_eq!(
        latest(&store, "core/app", "stable").as_deref(),
        Some("core/app/1.10.0/20260101000000")
    );
    store
        .demote(&ident("core/app/1.10.0/20260101000000"), "stable")
        .unwrap();
    assert_eq!(
        latest(&store, "core/app", "stable").as_deref(),
        Some("core/app/1.9.0/20260301000000")
    );
    assert_eq!(
        latest(&store, "core/app/1.9.0/20260301000000", "stable").as_deref(),
        Some("core/app/1.9.0/20260301000000")
    );
    assert_eq!(
        latest(&store, "core/app/1.10.0/20260101000000", "stable"),
        None
    );
}

#[test]
fn promote_creates_the_channel_and_demote_never_touches_unstable() {
    let work = tempfile::tempdir().unwrap();
    let depot = tempfile::tempdir().unwrap();
    let store = Store::new(depot.path());
    let id = ident("acme/web/2.0/20260101000000");
    store
        .upload(&make_hart(work.path(), &id.to_string()))
        .unwrap();

    store.promote(&id, "qa-2").unwrap();
    store.promote(&id, "qa-2").unwrap(); // again: nothing changes
    store.promote(&id, "unstable").unwrap();
    assert!(depot
        .path()
        .join("channels/qa-2/acme/web/2.0/20260101000000")
        .is_file());
    let entries = store.channels(&id).unwrap();
    let channel_names: Vec<&str> = entries.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(channel_names, ["unstable", "qa-2"]);
    assert!(entries[1]
        .promoted_at
        .as_ref()
        .is_some_and(|t| t.len() == 14));
    assert!(store
        .origin_channels("acme")
        .unwrap()
        .contains(&"qa-2".to_string()));

    let err = store.demote(&id, "unstable").unwrap_err().to_string();
    assert!(err.contains("cannot be demoted from unstable"), "{err}");
    let err = store.demote(&id, "stable").unwrap_err().to_string();
    assert!(err.contains("in channel stable not found"), "{err}");
    store.demote(&id, "qa-2").unwrap();
    let channel_names: Vec<String> = store
        .channels(&id)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(channel_names, ["unstable"]);
}

#[test]
fn an_unknown_ident_cannot_be_promoted_or_asked_about() {
    let depot = tempfile::tempdir().unwrap();
    let store = Store::new(depot.path());
    let id = ident("core/ghost/1.0/20260101000000");
    for err in [
        store.promote(&id, "stable").unwrap_err(),
        store.demote(&id, "stable").unwrap_err(),
        store.channels(&id).map(|_| ()).unwrap_err(),
    ] {
        assert!(
            matches!(err, Error::Depot(DepotError::NotFound { .. })),
            "{err}"
        );
        assert!(
            err.to_string().contains("core/ghost/1.0/20260101000000"),
            "{err}"
        );
    }
    assert!(!depot.path().join("channels").exists(), "nothing written");
    let err = store.promote(&ident("core/ghost"), "stable").unwrap_err();
    assert!(err.to_string().contains("fully qualified"), "{err}");
}

#[test]
fn path_parts_that_escape_the_directory_are_refused() {
    let depot = tempfile::tempdir().unwrap();
    let store = Store::new(depot.path());
    let id = ident("core/x/1.0/20260101000000");
    for channel in ["..", ".hidden", "a/b", "", "x y"] {
        assert!(store.promote(&id, channel).is_err(), "{channel:?}");
    }
    let escape = PackageIdent {
        origin: "..".into(),
        name: "..".into(),
        version: Some("..".into()),
        release: Some("1".into()),
    };
    let err = store.latest(&escape, "stable").unwrap_err().to_string();
    assert!(err.contains("package origin"), "{err}");
}

#[test]
fn a_plain_directory_of_harts_is_a_depot_in_unstable() {
    let depot = tempfile::tempdir().unwrap();
    // Harts copied in by hand, no channel records; one name with dashes in it is read from
    // the archive, and a leftover temporary file and an unrelated file are ignored.
    make_hart(depot.path(), "core/redis/7.2.4/20260101000000");
    make_hart(depot.path(), "core/redis/7.2.5/20260101000000");
    make_hart(depot.path(), "core/busybox-static/1.36.1/20260101000000");
    fs::write(depot.path().join("README"), b"not a hart").unwrap();
    let store = Store::new(depot.path());
    assert_eq!(
        latest(&store, "core/redis", "unstable").as_deref(),
        Some("core/redis/7.2.5/20260101000000")
    );
    assert_eq!(
        latest(&store, "core/busybox-static", "unstable").as_deref(),
        Some("core/busybox-static/1.36.1/20260101000000")
    );
    // `core-busybox-...` must not pass for origin core, name busybox, version static-1.36.1.
    assert_eq!(latest(&store, "core/busybox", "unstable"), None);
    store
        .promote(
            &ident("core/busybox-static/1.36.1/20260101000000"),
            "stable",
        )
        .unwrap();
    assert_eq!(
        latest(&store, "core/busybox-static", "stable").as_deref(),
        Some("core/busybox-static/1.36.1/20260101000000")
    );
}

#[test]
fn a_leftover_temporary_file_is_invisible_and_cleaned_when_stale() {
    let work = tempfile::tempdir().unwrap();
    let depot = tempfile::tempdir().unwrap();
    let store = Store::new(depot.path());
    // A crash mid-upload: the whole hart sits in a temporary file that was never linked.
    let hart = make_hart(work.path(), "core/half/1.0/20260101000000");
    let (mut temp, temp_path) = store.temp_file().unwrap();
    temp.write_all(&fs::read(&hart).unwrap()).unwrap();
    drop(temp);
    assert_eq!(latest(&store, "core/half", "unstable"), None);
    assert!(store
        .hart_path(&ident("core/half/1.0/20260101000000"))
        .is_err());
    // A crash mid-promotion leaves a temporary record: not a release of the channel.
    make_hart(depot.path(), "core/half/2.0/20260101000000");
    let record_dir = depot.path().join("channels/stable/core/half/2.0");
    fs::create_dir_all(&record_dir).unwrap();
    fs::write(record_dir.join(".write-0123456789abcdef.tmp"), b"2026").unwrap();
    assert_eq!(latest(&store, "core/half", "stable"), None);

    assert_eq!(
        store.remove_stale_temps(std::time::Duration::from_secs(3600)),
        0
    );
    assert!(
        temp_path.exists(),
        "a young temporary file may be a live upload"
    );
    assert_eq!(store.remove_stale_temps(std::time::Duration::ZERO), 1);
    assert!(!temp_path.exists());
}

#[test]
fn the_same_release_again_is_fine_but_other_bytes_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let depot = tempfile::tempdir().unwrap();
    let store = Store::new(depot.path());
    let first = make_hart(work.path(), "core/app/1.0/20260101000000");
    assert!(store.upload(&first).unwrap().1);
    assert!(!store.upload(&first).unwrap().1);
    let other = work.path().join("other");
    fs::create_dir(&other).unwrap();
    let other = crate::pkg::depot::test_harts::make_hart_with(
        &other,
        "core/app/1.0/20260101000000",
        b"other",
    );
    let err = store.upload(&other).unwrap_err();
    assert!(
        matches!(err, Error::Depot(DepotError::Conflict { .. })),
        "{err}"
    );
    assert_eq!(
        fs::read(
            depot
                .path()
                .join("core-app-1.0-20260101000000-x86_64-linux.hart")
        )
        .unwrap(),
        fs::read(&first).unwrap(),
        "the stored release is unchanged"
    );
    assert_eq!(
        names(depot.path()).len(),
        1,
        "no temporary file left: {:?}",
        names(depot.path())
    );
}

#[test]
fn an_upload_whose_ident_differs_from_the_expected_one_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let depot = tempfile::tempdir().unwrap();
    let store = Store::new(depot.path());
    let hart = make_hart(work.path(), "core/app/1.0/20260101000000");
    let (mut temp, temp_path) = store.temp_file().unwrap();
    temp.write_all(&fs::read(&hart).unwrap()).unwrap();
    drop(temp);
    let err = store
        .add(&temp_path, Some(&ident("core/app/2.0/20260101000000")))
        .unwrap_err();
    assert!(
        matches!(err, Error::Depot(DepotError::BadHart { .. })),
        "{err}"
    );
    assert!(names(depot.path()).is_empty(), "{:?}", names(depot.path()));
}

#[test]
fn concurrent_uploads_of_different_and_of_the_same_release_all_land_whole() {
    let work = tempfile::tempdir().unwrap();
    let depot = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::new(depot.path()));
    // Four releases, each uploaded twice at once (the same file).
    let mut harts: Vec<PathBuf> = (0..4)
        .map(|i| make_hart(work.path(), &format!("core/app/1.{i}/20260101000000")))
        .collect();
    harts.extend_from_within(..);
    let threads: Vec<_> = harts
        .iter()
        .cloned()
        .map(|hart| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || store.upload(&hart).map(|(id, _)| id.to_string()))
        })
        .collect();
    for thread in threads {
        thread.join().unwrap().unwrap();
    }
    assert_eq!(names(depot.path()).len(), 4, "{:?}", names(depot.path()));
    for hart in &harts[..4] {
        let stored = depot.path().join(hart.file_name().unwrap());
        assert_eq!(fs::read(stored).unwrap(), fs::read(hart).unwrap());
    }
}

#[test]
fn hart_names_are_read_only_when_unambiguous() {
    let parsed = parse_hart_name("core-redis-7.2.4-20260101000000-x86_64-linux.hart").unwrap();
    assert_eq!(parsed.to_string(), "core/redis/7.2.4/20260101000000");
    let kernel2 = parse_hart_name("core-redis-7.2.4-20260101000000-x86_64-linux-kernel2.hart");
    assert_eq!(kernel2.unwrap().name, "redis");
    for ambiguous in [
        "core-busybox-static-1.36.1-20260101000000-x86_64-linux.hart",
        "core-redis-7.2.4-x86_64-linux.hart",
        "core-redis-7.2.4-2026010100000a-x86_64-linux.hart",
        "core-redis-7.2.4-20260101000000-sparc-linux.hart",
        ".core-redis-7.2.4-20260101000000-x86_64-linux.hart",
    ] {
        assert_eq!(parse_hart_name(ambiguous), None, "{ambiguous}");
    }
}

#[test]
fn origin_keys_are_stored_once_and_checked() {
    let depot = tempfile::tempdir().unwrap();
    let store = Store::new(depot.path());
    let key = b"SIG-PUB-1\ncore-20260101000000\n\nAAAA\n";
    assert!(store.put_origin_key("core", "20260101000000", key).unwrap());
    assert!(!store.put_origin_key("core", "20260101000000", key).unwrap());
    let other = b"SIG-PUB-1\ncore-20260101000000\n\nBBBB\n";
    assert!(store
        .put_origin_key("core", "20260101000000", other)
        .is_err());
    assert!(
        store.put_origin_key("core", "20260101000001", key).is_err(),
        "name mismatch"
    );
    assert_eq!(
        fs::read(store.origin_key("core", "20260101000000").unwrap()).unwrap(),
        key
    );
    assert!(store.origin_key("core", "20990101000000").is_err());
}
