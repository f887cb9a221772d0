//! The depot over a real listener on 127.0.0.1:0, driven through `Depot` (the HTTP client) and
//! raw requests where a client would not send what is tested.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use super::*;
use crate::connection_slots::SlotLimits;
use crate::pkg::depot::test_harts::{make_hart, make_hart_with, noise};
use crate::pkg::depot::{Depot, DepotError};

const TOKEN: &str = "s3cret-token";

struct Running {
    served: Served,
    dir: tempfile::TempDir,
}

impl Running {
    fn depot(&self, token: Option<&str>) -> Depot {
        Depot::from_url(
            &format!("http://{}", self.served.addr),
            token.map(str::to_string),
        )
        .unwrap()
    }

    /// Every name in the depot directory, hidden ones included.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

async fn start(limits: Limits) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = spawn(
        listener,
        dir.path().to_path_buf(),
        Some(TOKEN.into()),
        limits,
    )
    .unwrap();
    Running { served, dir }
}

/// One raw HTTP/1.1 request; the status and body of the answer.
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: depot\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let parsed = crate::workstation::http_get::parse_response(&answer).unwrap();
    (
        parsed.status,
        String::from_utf8_lossy(&parsed.body).into_owned(),
    )
}

fn ident(text: &str) -> PackageIdent {
    text.parse().unwrap()
}

#[tokio::test]
async fn upload_promote_demote_latest_channels_and_download_over_http() {
    let running = start(Limits::default()).await;
    let depot = running.depot(Some(TOKEN));
    let work = tempfile::tempdir().unwrap();
    let old = make_hart(work.path(), "core/web/1.9.0/20260101000000");
    let new = make_hart(work.path(), "core/web/1.10.0/20260101000000");
    assert_eq!(
        depot
            .upload(&old, Some("stable"))
            .await
            .unwrap()
            .to_string(),
        "core/web/1.9.0/20260101000000"
    );
    depot.upload(&new, None).await.unwrap();
    // The same release again is fine (Habitat's `hab pkg upload` of an unchanged file).
    depot.upload(&new, None).await.unwrap();

    // Reads are open: a client without a token sees the same.
    let reader = running.depot(None);
    let latest = |d: &Depot, pkg: &'static str, ch: &'static str| {
        let d = d.clone();
        async move {
            d.latest(&ident(pkg), ch)
                .await
                .unwrap()
                .map(|i| i.to_string())
        }
    };
    assert_eq!(
        latest(&reader, "core/web", "unstable").await.as_deref(),
        Some("core/web/1.10.0/20260101000000")
    );
    assert_eq!(
        latest(&reader, "core/web", "stable").await.as_deref(),
        Some("core/web/1.9.0/20260101000000")
    );
    assert_eq!(
        latest(&reader, "core/web/1.9.0", "unstable")
            .await
            .as_deref(),
        Some("core/web/1.9.0/20260101000000")
    );
    assert_eq!(latest(&reader, "core/none", "stable").await, None);

    let newest = ident("core/web/1.10.0/20260101000000");
    depot.promote(&newest, "stable").await.unwrap();
    assert_eq!(
        latest(&reader, "core/web", "stable").await.as_deref(),
        Some("core/web/1.10.0/20260101000000")
    );
    assert_eq!(
        reader.channels(&newest).await.unwrap(),
        ["unstable", "stable"]
    );
    depot.demote(&newest, "stable").await.unwrap();
    assert_eq!(
        latest(&reader, "core/web", "stable").await.as_deref(),
        Some("core/web/1.9.0/20260101000000")
    );
    assert_eq!(reader.channels(&newest).await.unwrap(), ["unstable"]);

    // Demoting from unstable, or an unknown release, is refused with what is wrong.
    let err = depot.demote(&newest, "unstable").await.unwrap_err();
    assert!(
        matches!(err, Error::Depot(DepotError::DemoteUnstable { .. })),
        "{err}"
    );
    let (status, body) = raw(
        running.served.addr,
        "PUT",
        "/v1/depot/channels/core/unstable/pkgs/web/1.10.0/20260101000000/demote",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cannot be demoted from unstable"), "{body}");
    assert!(
        !body.contains(&running.dir.path().display().to_string()),
        "{body}"
    );
    let err = depot
        .promote(&ident("core/web/9.9/20260101000000"), "stable")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Depot(DepotError::NotFound { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("core/web/9.9/20260101000000"),
        "{err}"
    );

    // Download: byte for byte, under Habitat's name, nothing else left beside it.
    let dest = tempfile::tempdir().unwrap();
    let fetched = reader.fetch(&newest, dest.path()).await.unwrap();
    assert_eq!(fetched.file_name(), new.file_name());
    assert_eq!(fs::read(&fetched).unwrap(), fs::read(&new).unwrap());
    assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 1);

    // Origin public keys: stored once, fetched into a key cache whole.
    let key = b"SIG-PUB-1\ncore-20260101000000\n\nAAAA\n".to_vec();
    assert!(depot
        .upload_origin_key("core-20260101000000", key.clone())
        .await
        .unwrap());
    assert!(!depot
        .upload_origin_key("core-20260101000000", key.clone())
        .await
        .unwrap());
    let err = running
        .depot(None)
        .upload_origin_key("core-20260101000001", key.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Depot(DepotError::Unauthorized { .. })),
        "{err}"
    );
    let cache = tempfile::tempdir().unwrap();
    let fetched = reader
        .fetch_origin_key("core-20260101000000", cache.path())
        .await
        .unwrap();
    assert_eq!(fetched, cache.path().join("core-20260101000000.pub"));
    assert_eq!(fs::read(&fetched).unwrap(), key);
    assert!(reader
        .fetch_origin_key("core-20990101000000", cache.path())
        .await
        .is_err());

    // The package document carries Builder's fields, with the file's BLAKE2b checksum.
    let (status, body) = raw(
        running.served.addr,
        "GET",
        "/v1/depot/channels/core/unstable/pkgs/web/latest?target=x86_64-linux",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["ident"]["version"], "1.10.0");
    assert_eq!(doc["checksum"], checksum_file(&new).unwrap());
    assert_eq!(doc["checksum"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn writes_without_the_right_token_are_refused_counted_and_store_nothing() {
    let running = start(Limits::default()).await;
    let work = tempfile::tempdir().unwrap();
    let hart = make_hart(work.path(), "core/app/1.0/20260101000000");
    for token in [None, Some("wrong-token")] {
        let err = running.depot(token).upload(&hart, None).await.unwrap_err();
        match err {
            Error::Depot(DepotError::Unauthorized { token_sent, .. }) => {
                assert_eq!(token_sent, token.is_some());
            }
            other => panic!("{other}"),
        }
        assert!(!err_text(&running.depot(token).upload(&hart, None).await).contains(TOKEN));
    }
    assert_eq!(running.files(), Vec::<String>::new(), "nothing stored");
    assert_eq!(
        running
            .served
            .stats
            .unauthorized
            .load(AtomicOrdering::Relaxed),
        4
    );

    running
        .depot(Some(TOKEN))
        .upload(&hart, None)
        .await
        .unwrap();
    let id = ident("core/app/1.0/20260101000000");
    let err = running
        .depot(Some("wrong"))
        .promote(&id, "stable")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(
        running.depot(None).channels(&id).await.unwrap(),
        ["unstable"]
    );
    let (_, metrics) = raw(running.served.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("hab_depot_unauthorized_total 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_large_upload_without_the_token_is_told_401_not_a_broken_connection() {
    let running = start(Limits::default()).await;
    let work = tempfile::tempdir().unwrap();
    // Larger than socket buffers: the depot reads what it refuses, so the client hears the 401.
    let hart = make_hart_with(
        work.path(),
        "core/big/1.0/20260101000000",
        &noise(8 << 20, 3),
    );
    let err = running
        .depot(Some("wrong"))
        .upload(&hart, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Depot(DepotError::Unauthorized {
                token_sent: true,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(running.files(), Vec::<String>::new());
}

fn err_text<T>(result: &Result<T>) -> String {
    result
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[tokio::test]
async fn an_upload_whose_ident_or_checksum_does_not_match_is_refused_and_not_stored() {
    let running = start(Limits::default()).await;
    let work = tempfile::tempdir().unwrap();
    let hart = make_hart(work.path(), "core/app/1.0/20260101000000");
    let bytes = fs::read(&hart).unwrap();
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = raw(
        running.served.addr,
        "POST",
        "/v1/depot/pkgs/core/app/2.0/20260101000000",
        &[("Authorization", &auth)],
        &bytes,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("core/app/1.0/20260101000000"), "{body}");
    let (status, body) = raw(
        running.served.addr,
        "POST",
        &format!(
            "/v1/depot/pkgs/core/app/1.0/20260101000000?checksum={}",
            "0".repeat(64)
        ),
        &[("Authorization", &auth)],
        &bytes,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("checksum"), "{body}");
    let (status, body) = raw(
        running.served.addr,
        "POST",
        "/v1/depot/pkgs/core/app/1.0/20260101000000",
        &[("Authorization", &auth)],
        b"not a hart at all",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        running.files(),
        Vec::<String>::new(),
        "nothing stored, no temporary file left"
    );

    // Other bytes under a release already stored: 409, the stored one unchanged.
    running
        .depot(Some(TOKEN))
        .upload(&hart, None)
        .await
        .unwrap();
    let other_dir = work.path().join("other");
    fs::create_dir(&other_dir).unwrap();
    let other = make_hart_with(&other_dir, "core/app/1.0/20260101000000", b"other bytes");
    let err = running
        .depot(Some(TOKEN))
        .upload(&other, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Depot(DepotError::Conflict { .. })),
        "{err}"
    );
    assert_eq!(
        fs::read(running.dir.path().join(hart.file_name().unwrap())).unwrap(),
        bytes
    );
}

#[tokio::test]
async fn an_upload_over_the_size_cap_is_refused_and_leaves_nothing() {
    let running = start(Limits {
        max_upload_bytes: 1000,
        ..Limits::default()
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let big = make_hart_with(work.path(), "core/big/1.0/20260101000000", &noise(5000, 1));
    let err = running
        .depot(Some(TOKEN))
        .upload(&big, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 1000 bytes"), "{err}");
    assert_eq!(running.files(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_uploads_all_land_intact() {
    let running = start(Limits::default()).await;
    let depot = running.depot(Some(TOKEN));
    let work = tempfile::tempdir().unwrap();
    // Six releases of about 256 KiB each, two of them uploaded twice at once (the same file).
    let mut harts: Vec<PathBuf> = (0..6u64)
        .map(|release| {
            let dir = work.path().join(release.to_string());
            fs::create_dir(&dir).unwrap();
            let ident = format!("core/many/1.{release}/20260101000000");
            make_hart_with(&dir, &ident, &noise(256 * 1024, release))
        })
        .collect();
    harts.extend_from_within(..2);
    let uploads: Vec<_> = harts
        .iter()
        .map(|hart| {
            let (depot, hart) = (depot.clone(), hart.clone());
            tokio::spawn(async move { depot.upload(&hart, None).await })
        })
        .collect();
    for upload in uploads {
        upload.await.unwrap().unwrap();
    }
    assert_eq!(running.files().len(), 6, "{:?}", running.files());
    for hart in &harts {
        let stored = running.dir.path().join(hart.file_name().unwrap());
        assert_eq!(fs::read(stored).unwrap(), fs::read(hart).unwrap());
    }
    assert_eq!(
        depot
            .latest(&ident("core/many"), "unstable")
            .await
            .unwrap()
            .unwrap()
            .to_string(),
        "core/many/1.5/20260101000000"
    );
}

#[tokio::test]
async fn a_client_that_goes_away_mid_upload_leaves_no_file() {
    let running = start(Limits::default()).await;
    let mut stream = tokio::net::TcpStream::connect(running.served.addr)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/depot/pkgs/core/app/1.0/20260101000000 HTTP/1.1\r\nHost: d\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: 100000\r\n\r\ncore/app/1.0/20260101000000\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The temporary file exists while the body comes in...
    let dir = running.dir.path().to_path_buf();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fs::read_dir(&dir).unwrap().count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no temporary file appeared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... and is gone once the client hangs up, never having been a hart.
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fs::read_dir(&dir).unwrap().count() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            running.files()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn a_token_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    fs::write(&path, format!("{TOKEN}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = read_token_file(&path).unwrap_err().to_string();
    assert!(err.contains("chmod 600") && !err.contains(TOKEN), "{err}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(read_token_file(&path).unwrap(), TOKEN);
    fs::write(&path, "\n").unwrap();
    assert!(read_token_file(&path).is_err());
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_silent_clients_time_out() {
    use crate::gossip::transport::closed_by_server;
    let running = start(Limits {
        connections: SlotLimits {
            max: 2,
            per_source: 2,
        },
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let addr = running.served.addr;
    let mut idle: Vec<tokio::net::TcpStream> = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // The cap counts a connection once it is accepted: wait until the third is refused.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_server(&mut third).await,
        "a third connection stayed open"
    );
    // The two that never sent headers are closed after the header deadline...
    for stream in &mut idle {
        assert!(
            closed_by_server(stream).await,
            "an idle connection stayed open"
        );
    }
    // ... which frees their slots.
    let (status, _) = raw(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_upload_that_stalls_is_answered_408_and_leaves_nothing() {
    let running = start(Limits {
        body_idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(running.served.addr)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/depot/pkgs/core/app/1.0/20260101000000 HTTP/1.1\r\nHost: d\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: 100000\r\n\r\nHART-1\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(running.files(), Vec::<String>::new());
}
