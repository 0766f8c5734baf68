//! Integration tests against a real registry (Debian's `docker-registry`,
//! i.e. distribution 2.x) started on 127.0.0.1, plus small in-test HTTP
//! servers for what that registry cannot do without certificates (a Bearer
//! token service) and for fault injection (5xx).
//!
//! Without `docker-registry` on PATH the real-registry tests print a message
//! and pass, unless `CI=true`, where they fail.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use rbuild_registry::{
    media_types, sha256_digest, Client, ClientConfig, Platform, Reference, RegistryError,
};
use sha2::Digest as _;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn random_bytes(n: usize) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{:?}-{}-{}",
        SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let mut block = sha2::Sha256::digest(seed.as_bytes());
    let mut out = Vec::with_capacity(n + 32);
    while out.len() < n {
        out.extend_from_slice(&block);
        block = sha2::Sha256::digest(block);
    }
    out.truncate(n);
    out
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The registry binary, or `None` (after printing why) when the test should
/// be skipped. Under `CI=true` a missing binary is a failure.
fn registry_binary() -> Option<PathBuf> {
    match find_in_path("docker-registry") {
        Some(p) => Some(p),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("docker-registry is not on PATH (install Debian's docker-registry package)")
        }
        None => {
            eprintln!("SKIPPED: docker-registry is not on PATH; install Debian's docker-registry package to run this test");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry serve` process on 127.0.0.1, killed on drop.
struct RegistryProc {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RegistryProc {
    /// Starts a registry; with `htpasswd = Some((user, password))` it
    /// demands Basic authentication.
    fn start(bin: &Path, htpasswd: Option<(&str, &str)>) -> RegistryProc {
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: rbuild-test-secret\n",
                dir.path().join("data").display()
            );
            if let Some((user, password)) = htpasswd {
                let hash = bcrypt::hash(password, 4).unwrap();
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{user}:{hash}\n")).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                    path.display()
                ));
            }
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new(bin)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry");
            let mut proc = RegistryProc { child, port, dir };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = proc.child.try_wait() {
                    last_log = proc.log();
                    break; // exited (port taken?): try again
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return proc;
                }
                if Instant::now() > deadline {
                    panic!("docker-registry did not start:\n{}", proc.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("docker-registry failed to start three times:\n{last_log}");
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn reference(&self, repo_and_tag: &str) -> Reference {
        Reference::parse(&format!("{}/{}", self.host(), repo_and_tag)).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Path of a blob's bytes in the registry's filesystem storage.
    fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for RegistryProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client whose Docker config is `config_json` (or none at all).
fn client_with(config_json: Option<&str>, dir: &Path) -> Client {
    let path = dir.join("docker-config.json");
    if let Some(json) = config_json {
        std::fs::write(&path, json).unwrap();
    }
    Client::new(ClientConfig {
        docker_config: Some(path),
        ..Default::default()
    })
    .unwrap()
    .with_retry_delay(Duration::from_millis(20))
}

fn auths_config(host: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Oci,
    Docker,
}

/// A one-layer image built in memory.
struct TestImage {
    layer: Vec<u8>,
    layer_digest: String,
    config: Vec<u8>,
    config_digest: String,
    manifest: Vec<u8>,
    manifest_digest: String,
    media_type: &'static str,
}

fn make_image(arch: &str, variant: Option<&str>, style: Style, layer_size: usize) -> TestImage {
    let layer = random_bytes(layer_size);
    let layer_digest = sha256_digest(&layer);
    let mut cfg = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "config": {"Env": ["PATH=/bin"]},
    });
    if let Some(v) = variant {
        cfg["variant"] = v.into();
    }
    let config = serde_json::to_vec(&cfg).unwrap();
    let config_digest = sha256_digest(&config);
    let (mt, cfg_mt, layer_mt) = match style {
        Style::Oci => (
            media_types::OCI_MANIFEST,
            media_types::OCI_CONFIG,
            media_types::OCI_LAYER_GZIP,
        ),
        Style::Docker => (
            media_types::DOCKER_MANIFEST,
            media_types::DOCKER_CONFIG,
            media_types::DOCKER_LAYER_GZIP,
        ),
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {"mediaType": cfg_mt, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": layer_mt, "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let manifest_digest = sha256_digest(&manifest);
    TestImage {
        layer,
        layer_digest,
        config,
        config_digest,
        manifest,
        manifest_digest,
        media_type: mt,
    }
}

fn write_temp(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Pushes layer, config and manifest of `img` to `r` (whose tag names the
/// manifest).
async fn push_image(client: &Client, r: &Reference, img: &TestImage, dir: &Path) {
    let layer = write_temp(
        dir,
        &format!("layer-{}", &img.layer_digest[7..19]),
        &img.layer,
    );
    client
        .push_blob(r, &img.layer_digest, img.layer.len() as u64, &layer)
        .await
        .unwrap();
    let config = write_temp(
        dir,
        &format!("config-{}", &img.config_digest[7..19]),
        &img.config,
    );
    client
        .push_blob(r, &img.config_digest, img.config.len() as u64, &config)
        .await
        .unwrap();
    let digest = client
        .push_manifest(r, img.media_type, &img.manifest)
        .await
        .unwrap();
    assert_eq!(digest, img.manifest_digest);
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Real registry
// ---------------------------------------------------------------------------

#[tokio::test]
async fn push_resolve_fetch_roundtrip() {
    let Some(bin) = registry_binary() else { return };
    let reg = RegistryProc::start(&bin, None);
    let work = tempfile::tempdir().unwrap();
    let client = client_with(None, work.path());
    let r = reg.reference("rbuild/test:v1");
    let img = make_image("amd64", None, Style::Oci, 100_000);

    assert!(!client.blob_exists(&r, &img.layer_digest).await.unwrap());
    push_image(&client, &r, &img, work.path()).await;
    assert!(client.blob_exists(&r, &img.layer_digest).await.unwrap());
    assert!(client.blob_exists(&r, &img.config_digest).await.unwrap());
    let absent = sha256_digest(b"never pushed");
    assert!(!client.blob_exists(&r, &absent).await.unwrap());
    // Pushing again is a no-op that still succeeds.
    push_image(&client, &r, &img, work.path()).await;

    // Resolve by tag.
    let amd64 = Platform::parse("linux/amd64").unwrap();
    let resolved = client.resolve(&r, &amd64).await.unwrap();
    assert_eq!(resolved.digest, img.manifest_digest);
    assert_eq!(resolved.bytes, img.manifest);
    assert_eq!(resolved.media_type, media_types::OCI_MANIFEST);
    assert_eq!(resolved.manifest.layers().len(), 1);
    assert_eq!(
        resolved.manifest.layers()[0].digest().to_string(),
        img.layer_digest
    );
    assert_eq!(
        resolved.manifest.config().digest().to_string(),
        img.config_digest
    );

    // Resolve by digest.
    let by_digest = Reference::parse(&format!(
        "{}/rbuild/test@{}",
        reg.host(),
        img.manifest_digest
    ))
    .unwrap();
    let again = client.resolve(&by_digest, &amd64).await.unwrap();
    assert_eq!(again.bytes, img.manifest);

    // Fetch the layer to a file and the config into memory.
    let dest = work.path().join("out").join("layer.bin");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    client
        .fetch_blob(&r, &img.layer_digest, Some(img.layer.len() as u64), &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), img.layer);
    assert_eq!(dir_entries(dest.parent().unwrap()), ["layer.bin"]);
    // Size unknown is fine too.
    let dest2 = work.path().join("out").join("layer2.bin");
    client
        .fetch_blob(&r, &img.layer_digest, None, &dest2)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest2).unwrap(), img.layer);
    let cfg = client
        .fetch_blob_bytes(&r, &img.config_digest, 1 << 20)
        .await
        .unwrap();
    assert_eq!(cfg, img.config);
    assert!(matches!(
        client.fetch_blob_bytes(&r, &img.layer_digest, 1000).await,
        Err(RegistryError::TooLarge { .. })
    ));

    // Unknown tag: a status error carrying the registry's code.
    let err = client
        .resolve(&reg.reference("rbuild/test:nope"), &amd64)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.codes().contains(&"MANIFEST_UNKNOWN"), "{err}");
    // Unknown blob.
    let err = client
        .fetch_blob(&r, &absent, None, &work.path().join("absent"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(!work.path().join("absent").exists());

    // A single-platform image does not serve another platform... it is
    // returned as is (no index to choose from), like docker pull does.
    let arm = Platform::parse("linux/arm64").unwrap();
    assert_eq!(
        client.resolve(&r, &arm).await.unwrap().digest,
        img.manifest_digest
    );
}

#[tokio::test]
async fn docker_schema2_and_chunked_upload_and_mount() {
    let Some(bin) = registry_binary() else { return };
    let reg = RegistryProc::start(&bin, None);
    let work = tempfile::tempdir().unwrap();
    // Small chunk size so the layer goes up in several PATCHes.
    let client = client_with(None, work.path()).with_chunk_size(4096);
    let r = reg.reference("rbuild/docker:latest");
    let img = make_image("amd64", None, Style::Docker, 4096 * 3 + 17);
    push_image(&client, &r, &img, work.path()).await;

    let resolved = client
        .resolve(&reg.reference("rbuild/docker"), &Platform::host())
        .await
        .unwrap();
    assert_eq!(resolved.media_type, media_types::DOCKER_MANIFEST);
    assert_eq!(resolved.bytes, img.manifest);
    assert_eq!(resolved.digest, img.manifest_digest);
    let dest = work.path().join("layer");
    client
        .fetch_blob(&r, &img.layer_digest, Some(img.layer.len() as u64), &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), img.layer);

    // Cross-repository mount: hand a file with the right size but wrong
    // bytes. Only a mount (no upload) can succeed.
    let other = reg.reference("rbuild/other:latest");
    let decoy = write_temp(work.path(), "decoy", &vec![0u8; img.layer.len()]);
    assert!(!client.blob_exists(&other, &img.layer_digest).await.unwrap());
    client
        .push_blob_from(
            &other,
            &img.layer_digest,
            img.layer.len() as u64,
            &decoy,
            Some(&r),
        )
        .await
        .unwrap();
    assert!(client.blob_exists(&other, &img.layer_digest).await.unwrap());

    // Without mount the same decoy is uploaded and the registry rejects it.
    let third = reg.reference("rbuild/third:latest");
    let err = client
        .push_blob(&third, &img.layer_digest, img.layer.len() as u64, &decoy)
        .await
        .unwrap_err();
    assert!(
        err.codes().contains(&"DIGEST_INVALID") || err.status() == Some(400),
        "{err}"
    );
    // And a monolithic upload of a bad file fails the same way.
    let mono = client_with(None, work.path());
    let err = mono
        .push_blob(&third, &img.layer_digest, img.layer.len() as u64, &decoy)
        .await
        .unwrap_err();
    assert!(err.codes().contains(&"DIGEST_INVALID"), "{err}");
    // Size disagreeing with the file is caught before any upload.
    assert!(matches!(
        mono.push_blob(&third, &img.layer_digest, 5, &decoy).await,
        Err(RegistryError::SizeMismatch { .. })
    ));
}

#[tokio::test]
async fn digest_and_size_mismatch_leave_no_file() {
    let Some(bin) = registry_binary() else { return };
    let reg = RegistryProc::start(&bin, None);
    let work = tempfile::tempdir().unwrap();
    let client = client_with(None, work.path());
    let r = reg.reference("rbuild/corrupt:v1");
    let img = make_image("amd64", None, Style::Oci, 50_000);
    push_image(&client, &r, &img, work.path()).await;

    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("blob");

    // Wrong expected size: fails, no file.
    let err = client
        .fetch_blob(
            &r,
            &img.layer_digest,
            Some(img.layer.len() as u64 + 1),
            &dest,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");
    assert!(dir_entries(&out).is_empty(), "{:?}", dir_entries(&out));

    // Corrupt the stored layer (same size, other bytes): the registry serves
    // it under the requested digest and the client must notice.
    let data = reg.blob_data_path(&img.layer_digest);
    assert!(data.exists(), "storage layout changed? {}", data.display());
    std::fs::write(&data, random_bytes(img.layer.len())).unwrap();
    let err = client
        .fetch_blob(&r, &img.layer_digest, Some(img.layer.len() as u64), &dest)
        .await
        .unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &img.layer_digest);
            assert_ne!(actual, &img.layer_digest);
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    assert!(!dest.exists());
    assert!(dir_entries(&out).is_empty(), "{:?}", dir_entries(&out));
    // An existing destination is left as it was.
    std::fs::write(&dest, b"old").unwrap();
    assert!(client
        .fetch_blob(&r, &img.layer_digest, None, &dest)
        .await
        .is_err());
    assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    assert_eq!(dir_entries(&out), ["blob"]);

    // Same for small blobs.
    std::fs::write(reg.blob_data_path(&img.config_digest), {
        let mut c = img.config.clone();
        c[0] ^= 1;
        c
    })
    .unwrap();
    assert!(matches!(
        client
            .fetch_blob_bytes(&r, &img.config_digest, 1 << 20)
            .await,
        Err(RegistryError::DigestMismatch { .. })
    ));

    // A corrupted manifest under a digest reference is rejected too.
    // (Still valid JSON, same size: the layer digest's first hex digit is
    // changed, so the registry parses and serves it.)
    let text = String::from_utf8(img.manifest.clone()).unwrap();
    let hex = &img.layer_digest[7..];
    let flipped = format!(
        "{}{}",
        if hex.starts_with('0') { '1' } else { '0' },
        &hex[1..]
    );
    let bad = text.replace(hex, &flipped).into_bytes();
    assert_eq!(bad.len(), img.manifest.len());
    assert_ne!(bad, img.manifest);
    std::fs::write(reg.blob_data_path(&img.manifest_digest), &bad).unwrap();
    let by_digest = Reference::parse(&format!(
        "{}/rbuild/corrupt@{}",
        reg.host(),
        img.manifest_digest
    ))
    .unwrap();
    let err = client
        .resolve(&by_digest, &Platform::parse("linux/amd64").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn index_resolves_to_requested_platform() {
    let Some(bin) = registry_binary() else { return };
    let reg = RegistryProc::start(&bin, None);
    let work = tempfile::tempdir().unwrap();
    let client = client_with(None, work.path());

    for style in [Style::Oci, Style::Docker] {
        let (repo, index_mt) = match style {
            Style::Oci => ("rbuild/multi", media_types::OCI_INDEX),
            Style::Docker => ("rbuild/multi-docker", media_types::DOCKER_MANIFEST_LIST),
        };
        let amd = make_image("amd64", None, style, 1000);
        let arm = make_image("arm64", Some("v8"), style, 1000);
        // Children are pushed by digest, then the index by tag.
        for img in [&amd, &arm] {
            let r = reg.reference(&format!("{repo}@{}", img.manifest_digest));
            push_image(&client, &r, img, work.path()).await;
        }
        let entry = |img: &TestImage, arch: &str, variant: Option<&str>| {
            let mut platform = serde_json::json!({"architecture": arch, "os": "linux"});
            if let Some(v) = variant {
                platform["variant"] = v.into();
            }
            serde_json::json!({
                "mediaType": img.media_type,
                "digest": img.manifest_digest,
                "size": img.manifest.len(),
                "platform": platform,
            })
        };
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": index_mt,
            "manifests": [entry(&amd, "amd64", None), entry(&arm, "arm64", Some("v8"))],
        }))
        .unwrap();
        let tagged = reg.reference(&format!("{repo}:v1"));
        let index_digest = client
            .push_manifest(&tagged, index_mt, &index)
            .await
            .unwrap();
        assert_eq!(index_digest, sha256_digest(&index));

        for (platform, want) in [
            ("linux/arm64", &arm),
            ("linux/arm64/v8", &arm),
            ("linux/amd64", &amd),
        ] {
            let got = client
                .resolve(&tagged, &Platform::parse(platform).unwrap())
                .await
                .unwrap();
            assert_eq!(got.digest, want.manifest_digest, "{platform}");
            assert_eq!(got.bytes, want.manifest, "{platform}");
            assert_eq!(got.media_type, want.media_type, "{platform}");
            assert_eq!(
                got.manifest.config().digest().to_string(),
                want.config_digest
            );
        }
        // Pinned to the index digest works the same way.
        let pinned = Reference::parse(&format!("{}/{repo}@{index_digest}", reg.host())).unwrap();
        let got = client
            .resolve(&pinned, &Platform::parse("linux/arm64").unwrap())
            .await
            .unwrap();
        assert_eq!(got.digest, arm.manifest_digest);

        match client
            .resolve(&tagged, &Platform::parse("linux/s390x").unwrap())
            .await
        {
            Err(RegistryError::NoMatchingPlatform { available, .. }) => {
                assert_eq!(available, ["linux/amd64", "linux/arm64/v8"]);
            }
            other => panic!("expected NoMatchingPlatform, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn basic_auth_with_htpasswd() {
    let Some(bin) = registry_binary() else { return };
    let reg = RegistryProc::start(&bin, Some(("alice", "wonder land")));
    let work = tempfile::tempdir().unwrap();
    let host = reg.host();
    let r = reg.reference("private/app:v1");
    let img = make_image("amd64", None, Style::Oci, 2000);
    let amd64 = Platform::parse("linux/amd64").unwrap();

    // Credentials from a Docker config: everything works.
    let good_dir = work.path().join("good");
    std::fs::create_dir(&good_dir).unwrap();
    let client = client_with(
        Some(&auths_config(&host, "alice", "wonder land")),
        &good_dir,
    );
    push_image(&client, &r, &img, &good_dir).await;
    let resolved = client.resolve(&r, &amd64).await.unwrap();
    assert_eq!(resolved.digest, img.manifest_digest);
    assert!(client.blob_exists(&r, &img.layer_digest).await.unwrap());
    let dest = good_dir.join("layer");
    client
        .fetch_blob(&r, &img.layer_digest, Some(img.layer.len() as u64), &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), img.layer);

    // No credentials: a clear "authentication required".
    let anon_dir = work.path().join("anon");
    std::fs::create_dir(&anon_dir).unwrap();
    let anon = client_with(Some(r#"{"auths":{}}"#), &anon_dir);
    let err = anon.resolve(&r, &amd64).await.unwrap_err();
    match &err {
        RegistryError::AuthRequired { host: h, challenge } => {
            assert_eq!(h, &host);
            assert!(challenge.contains("Basic"), "{challenge}");
        }
        other => panic!("expected AuthRequired, got {other}"),
    }
    assert!(err.is_auth());
    assert!(err.to_string().contains("authentication required"), "{err}");
    assert!(matches!(
        anon.blob_exists(&r, &img.layer_digest).await,
        Err(RegistryError::AuthRequired { .. })
    ));

    // Wrong password: "authentication failed".
    let bad_dir = work.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    let bad = client_with(Some(&auths_config(&host, "alice", "nope")), &bad_dir);
    assert!(matches!(
        bad.resolve(&r, &amd64).await,
        Err(RegistryError::AuthFailed { .. })
    ));
    let layer = write_temp(&bad_dir, "layer", &img.layer);
    let other = reg.reference("private/other:v1");
    assert!(matches!(
        bad.push_blob(&other, &img.layer_digest, img.layer.len() as u64, &layer)
            .await,
        Err(RegistryError::AuthFailed { .. })
    ));
}

#[tokio::test]
async fn mirrors_are_tried_first_and_fall_back() {
    let Some(bin) = registry_binary() else { return };
    let reg = RegistryProc::start(&bin, None);
    let work = tempfile::tempdir().unwrap();
    let client = client_with(None, work.path());
    let img = make_image("amd64", None, Style::Oci, 3000);
    push_image(&client, &reg.reference("lib/app:v1"), &img, work.path()).await;
    let amd64 = Platform::parse("linux/amd64").unwrap();

    // A registry that does not exist (nothing listens), mirrored by the real
    // one: served by the mirror.
    let dead = format!("127.0.0.1:{}", free_port());
    let mut mirrors = HashMap::new();
    mirrors.insert(dead.clone(), vec![format!("http://{}", reg.host())]);
    let mirrored = Client::new(ClientConfig {
        mirrors,
        docker_config: Some(work.path().join("none.json")),
        ..Default::default()
    })
    .unwrap()
    .with_retry_delay(Duration::from_millis(10));
    let r = Reference::parse(&format!("{dead}/lib/app:v1")).unwrap();
    let got = mirrored.resolve(&r, &amd64).await.unwrap();
    assert_eq!(got.digest, img.manifest_digest);
    let bytes = mirrored
        .fetch_blob_bytes(&r, &img.layer_digest, 1 << 20)
        .await
        .unwrap();
    assert_eq!(bytes, img.layer);
    // blob_exists asks the registry itself, which is down.
    assert!(matches!(
        mirrored.blob_exists(&r, &img.layer_digest).await,
        Err(RegistryError::Http(_))
    ));

    // A dead mirror in front of the real registry: falls back.
    let mut mirrors = HashMap::new();
    mirrors.insert(reg.host(), vec![dead.clone()]);
    let fallback = Client::new(ClientConfig {
        mirrors,
        docker_config: Some(work.path().join("none.json")),
        ..Default::default()
    })
    .unwrap()
    .with_retry_delay(Duration::from_millis(10));
    let got = fallback
        .resolve(&reg.reference("lib/app:v1"), &amd64)
        .await
        .unwrap();
    assert_eq!(got.digest, img.manifest_digest);
}

// ---------------------------------------------------------------------------
// In-test HTTP servers (Bearer token flow, fault injection)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }
    fn query(&self) -> Vec<(String, String)> {
        let q = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        q.split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(k), decode(v))
            })
            .collect()
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn new(status: u16) -> Self {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }
}

type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// A tiny HTTP/1.1 server on 127.0.0.1 (one request per connection).
struct FakeServer {
    port: u16,
    requests: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    async fn start(handler: Handler) -> FakeServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 8192];
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p;
                        }
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap().split(' ');
                    let method = first.next().unwrap().to_string();
                    let target = first.next().unwrap().to_string();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .map(|(_, v)| v.parse().unwrap())
                        .unwrap_or(0);
                    let mut body = buf[head_end + 4..].to_vec();
                    while body.len() < len {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => body.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let req = Req {
                        method,
                        target,
                        headers,
                        body,
                    };
                    let resp = handler(&req);
                    log.lock().unwrap().push(req.clone());
                    let mut out = format!("HTTP/1.1 {} X\r\n", resp.status);
                    for (k, v) in &resp.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str(&format!(
                        "Content-Length: {}\r\nConnection: close\r\n\r\n",
                        resp.body.len()
                    ));
                    let mut bytes = out.into_bytes();
                    if req.method != "HEAD" {
                        bytes.extend_from_slice(&resp.body);
                    }
                    let _ = sock.write_all(&bytes).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        FakeServer {
            port,
            requests,
            task,
        }
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

/// A fake registry that demands `Bearer <token>` and serves one image.
async fn bearer_registry(token_port: u16, token: &'static str, img: Arc<TestImage>) -> FakeServer {
    FakeServer::start(Arc::new(move |req: &Req| {
        if req.path() == "/v2/" {
            return Resp::new(200);
        }
        if req.header("authorization") != Some(&format!("Bearer {token}")) {
            return Resp::new(401)
                .header(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="http://127.0.0.1:{token_port}/token",service="fake-svc",scope="repository:app/x:pull""#
                    ),
                )
                .header("Content-Type", "application/json")
                .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#);
        }
        match req.path() {
            "/v2/app/x/manifests/v1" => Resp::new(200)
                .header("Content-Type", media_types::OCI_MANIFEST)
                .body(img.manifest.clone()),
            p if p == format!("/v2/app/x/blobs/{}", img.config_digest) => {
                Resp::new(200).body(img.config.clone())
            }
            p if p == format!("/v2/app/x/blobs/{}", img.layer_digest) => {
                Resp::new(200).body(img.layer.clone())
            }
            _ => Resp::new(404).body(r#"{"errors":[{"code":"NOT_FOUND","message":"nope"}]}"#),
        }
    }))
    .await
}

#[tokio::test]
async fn bearer_token_fetch_and_cache() {
    let work = tempfile::tempdir().unwrap();
    let img = Arc::new(make_image("amd64", None, Style::Oci, 5000));
    // Token service: anonymous tokens, answered with the `token` field.
    let tokens = FakeServer::start(Arc::new(|req: &Req| {
        assert_eq!(req.path(), "/token");
        Resp::new(200)
            .header("Content-Type", "application/json")
            .body(r#"{"token":"tok-anon","expires_in":300}"#)
    }))
    .await;
    let reg = bearer_registry(tokens.port, "tok-anon", img.clone()).await;
    let r = Reference::parse(&format!("127.0.0.1:{}/app/x:v1", reg.port)).unwrap();
    let client = client_with(None, work.path());
    let platform = Platform::parse("linux/amd64").unwrap();

    let resolved = client.resolve(&r, &platform).await.unwrap();
    assert_eq!(resolved.digest, img.manifest_digest);
    let again = client.resolve(&r, &platform).await.unwrap();
    assert_eq!(again.bytes, img.manifest);
    let cfg = client
        .fetch_blob_bytes(&r, &img.config_digest, 1 << 20)
        .await
        .unwrap();
    assert_eq!(cfg, img.config);
    let dest = work.path().join("layer");
    client
        .fetch_blob(&r, &img.layer_digest, Some(img.layer.len() as u64), &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), img.layer);

    // One token for the whole (host, scope): fetched once, then cached.
    let token_reqs = tokens.requests();
    assert_eq!(token_reqs.len(), 1, "{token_reqs:?}");
    let q = token_reqs[0].query();
    assert!(q.contains(&("service".into(), "fake-svc".into())), "{q:?}");
    assert!(
        q.contains(&("scope".into(), "repository:app/x:pull".into())),
        "{q:?}"
    );
    assert!(token_reqs[0].header("authorization").is_none());
    // The registry saw exactly one unauthenticated request.
    let reg_reqs = reg.requests();
    let unauth = reg_reqs
        .iter()
        .filter(|r| r.header("authorization").is_none())
        .count();
    assert_eq!(unauth, 1, "{reg_reqs:?}");
    assert_eq!(reg_reqs.len(), 5, "{reg_reqs:?}");

    // A second client has its own cache.
    let other = client_with(None, work.path());
    other.resolve(&r, &platform).await.unwrap();
    assert_eq!(tokens.requests().len(), 2);
}

#[tokio::test]
async fn bearer_token_with_credentials() {
    let work = tempfile::tempdir().unwrap();
    let img = Arc::new(make_image("amd64", None, Style::Oci, 100));
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bob:hunter2")
    );
    // Token service that wants Basic credentials and answers with the
    // OAuth-style `access_token` field; a refresh-token POST is answered
    // too.
    let tokens = FakeServer::start(Arc::new(move |req: &Req| {
        let ok = match req.method.as_str() {
            "GET" => req.header("authorization") == Some(expected_basic.as_str()),
            "POST" => {
                let body = String::from_utf8_lossy(&req.body).into_owned();
                body.contains("grant_type=refresh_token")
                    && body.contains("refresh_token=refresh-xyz")
            }
            _ => false,
        };
        if ok {
            Resp::new(200).body(r#"{"access_token":"tok-bob"}"#)
        } else {
            Resp::new(401).body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad creds"}]}"#)
        }
    }))
    .await;
    let reg = bearer_registry(tokens.port, "tok-bob", img.clone()).await;
    let host = format!("127.0.0.1:{}", reg.port);
    let r = Reference::parse(&format!("{host}/app/x:v1")).unwrap();
    let platform = Platform::parse("linux/amd64").unwrap();

    let good_dir = work.path().join("good");
    std::fs::create_dir(&good_dir).unwrap();
    let client = client_with(Some(&auths_config(&host, "bob", "hunter2")), &good_dir);
    assert_eq!(
        client.resolve(&r, &platform).await.unwrap().digest,
        img.manifest_digest
    );
    assert_eq!(tokens.requests().len(), 1);

    // Identity token (refresh token) from the config: OAuth2 POST.
    let id_dir = work.path().join("id");
    std::fs::create_dir(&id_dir).unwrap();
    let id_client = client_with(
        Some(&format!(
            r#"{{"auths":{{"{host}":{{"identitytoken":"refresh-xyz"}}}}}}"#
        )),
        &id_dir,
    );
    id_client.resolve(&r, &platform).await.unwrap();
    let last = tokens.requests().pop().unwrap();
    assert_eq!(last.method, "POST");
    let body = String::from_utf8(last.body).unwrap();
    assert!(body.contains("scope=repository%3Aapp%2Fx%3Apull"), "{body}");
    assert!(body.contains("service=fake-svc"), "{body}");

    // Wrong password: token service refuses.
    let bad_dir = work.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    let bad = client_with(Some(&auths_config(&host, "bob", "wrong")), &bad_dir);
    match bad.resolve(&r, &platform).await {
        Err(RegistryError::AuthFailed { reason, .. }) => {
            assert!(reason.contains("401"), "{reason}");
            assert!(reason.contains("UNAUTHORIZED"), "{reason}");
        }
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    // No credentials at all: anonymous token refused → AuthRequired.
    let anon_dir = work.path().join("anon");
    std::fs::create_dir(&anon_dir).unwrap();
    let anon = client_with(None, &anon_dir);
    assert!(matches!(
        anon.resolve(&r, &platform).await,
        Err(RegistryError::AuthRequired { .. })
    ));
}

#[tokio::test]
async fn retries_5xx_then_gives_up() {
    let work = tempfile::tempdir().unwrap();
    let img = make_image("amd64", None, Style::Oci, 10);
    let manifest = img.manifest.clone();
    let count = Arc::new(AtomicU64::new(0));
    let c2 = count.clone();
    // Fails twice with 503, then serves.
    let flaky = FakeServer::start(Arc::new(move |_req: &Req| {
        if c2.fetch_add(1, Ordering::SeqCst) < 2 {
            Resp::new(503).body("busy")
        } else {
            Resp::new(200)
                .header("Content-Type", media_types::OCI_MANIFEST)
                .body(manifest.clone())
        }
    }))
    .await;
    let client = client_with(None, work.path());
    let platform = Platform::parse("linux/amd64").unwrap();
    let r = Reference::parse(&format!("127.0.0.1:{}/a/b:c", flaky.port)).unwrap();
    let got = client.resolve(&r, &platform).await.unwrap();
    assert_eq!(got.digest, img.manifest_digest);
    assert_eq!(flaky.requests().len(), 3);

    // Always 500: three tries, then the status error with the body's codes.
    let broken = FakeServer::start(Arc::new(|_req: &Req| {
        Resp::new(500).body(r#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#)
    }))
    .await;
    let r = Reference::parse(&format!("127.0.0.1:{}/a/b:c", broken.port)).unwrap();
    let err = client.resolve(&r, &platform).await.unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    assert!(err.to_string().contains("disk on fire"), "{err}");
    assert_eq!(broken.requests().len(), 3);

    // 404 is not retried.
    let missing = FakeServer::start(Arc::new(|_req: &Req| Resp::new(404))).await;
    let r = Reference::parse(&format!("127.0.0.1:{}/a/b:c", missing.port)).unwrap();
    assert!(client
        .resolve(&r, &platform)
        .await
        .unwrap_err()
        .is_not_found());
    assert_eq!(missing.requests().len(), 1);

    // Connection refused: a transport error after bounded retries.
    let r = Reference::parse(&format!("127.0.0.1:{}/a/b:c", free_port())).unwrap();
    assert!(matches!(
        client.resolve(&r, &platform).await,
        Err(RegistryError::Http(_))
    ));
}

#[tokio::test]
async fn unsupported_media_type_and_size_checks_on_manifests() {
    let work = tempfile::tempdir().unwrap();
    let schema1 = FakeServer::start(Arc::new(|_req: &Req| {
        Resp::new(200)
            .header("Content-Type", media_types::DOCKER_SCHEMA1_SIGNED)
            .body(r#"{"schemaVersion":1,"name":"a/b","fsLayers":[]}"#)
    }))
    .await;
    let client = client_with(None, work.path());
    let platform = Platform::parse("linux/amd64").unwrap();
    let r = Reference::parse(&format!("127.0.0.1:{}/a/b:c", schema1.port)).unwrap();
    assert!(matches!(
        client.resolve(&r, &platform).await,
        Err(RegistryError::UnsupportedMediaType { .. })
    ));
    // Every manifest request advertises the four supported types.
    let accept = schema1.requests()[0].header("accept").unwrap().to_string();
    for mt in [
        media_types::OCI_MANIFEST,
        media_types::OCI_INDEX,
        media_types::DOCKER_MANIFEST,
        media_types::DOCKER_MANIFEST_LIST,
    ] {
        assert!(accept.contains(mt), "{accept}");
    }

    // An index entry whose size does not match what is served.
    let img = make_image("amd64", None, Style::Oci, 10);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": [{"mediaType": media_types::OCI_MANIFEST, "digest": img.manifest_digest,
                       "size": img.manifest.len() + 1,
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }))
    .unwrap();
    let manifest = img.manifest.clone();
    let liar = FakeServer::start(Arc::new(move |req: &Req| {
        if req.path().ends_with("/manifests/c") {
            Resp::new(200)
                .header("Content-Type", media_types::OCI_INDEX)
                .body(index.clone())
        } else {
            Resp::new(200)
                .header("Content-Type", media_types::OCI_MANIFEST)
                .body(manifest.clone())
        }
    }))
    .await;
    let r = Reference::parse(&format!("127.0.0.1:{}/a/b:c", liar.port)).unwrap();
    assert!(matches!(
        client.resolve(&r, &platform).await,
        Err(RegistryError::SizeMismatch { .. })
    ));
}

#[test]
fn decode_helper() {
    assert_eq!(decode("a%3Ab+c"), "a:b c");
}
