//! `push_image` against a real `docker-registry` on loopback, checked with
//! skopeo (manifest, layer media types) and umoci (the pushed image unpacks
//! to the same files).

mod support;

use std::fs;
use std::io::Read;
use std::process::Command;

use rbuild_cache::sha256_digest;
use rbuild_push::{push_image, push_image_with_stats, PushError, PushStats};
use rbuild_registry::{Client, ClientConfig, Reference};
use support::*;

fn client(t: &TestImage) -> Client {
    Client::new(ClientConfig {
        // Hermetic: never the developer's ~/.docker/config.json.
        docker_config: Some(t.dir.path().join("no-docker-config.json")),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// The manifest as the registry serves it.
fn remote_manifest(reg: &Registry, repo_tag: &str) -> (Vec<u8>, serde_json::Value) {
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{repo_tag}", reg.host())));
    let v = json(&raw);
    (raw.into_bytes(), v)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_compresses_uploads_and_second_push_uploads_nothing() {
    if !have_all(&["skopeo", "umoci"]) {
        return;
    }
    let Some(reg) = Registry::start() else {
        return;
    };
    let t = build_image("docker.io/library/app:latest", false);
    let client = client(&t);
    let dest = Reference::parse(&format!("{}/team/app:v1", reg.host())).unwrap();

    let (digest, stats) = push_image_with_stats(&t.root, &client, &t.image, &dest)
        .await
        .unwrap_or_else(|e| panic!("push: {e}\nregistry log:\n{}", reg.log()));
    assert_eq!(
        stats,
        PushStats {
            uploaded: 3,
            skipped: 0
        },
        "2 layers + config"
    );

    // What the registry serves is what push_image says it pushed.
    let (raw, manifest) = remote_manifest(&reg, "team/app:v1");
    assert_eq!(sha256_digest(&raw), digest);
    assert_ne!(digest, t.image.manifest_digest, "layers were compressed");
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(manifest["config"]["digest"], t.config_digest.as_str());
    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(l["mediaType"], OCI_GZIP, "layer {i}");
        // The compressed blob is cached in the local store, and decompresses
        // to the layer the config's diff_id names.
        let d = l["digest"].as_str().unwrap();
        let blob = fs::read(t.root.blob_path(d)).unwrap();
        assert_eq!(blob.len() as u64, l["size"].as_u64().unwrap());
        assert_eq!(&blob[..2], &[0x1f, 0x8b]);
        assert_eq!(sha256_digest(&gunzip(&blob)), t.diff_ids[i], "layer {i}");
    }
    let inspect = json(&run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{}/team/app:v1", reg.host()))));
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    // (Debian's skopeo 1.9 has no LayersData; the media types are checked
    // on the raw manifest above.)

    // Pull it back with skopeo and unpack it: the same files.
    let oci = t.dir.path().join("pulled");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/team/app:v1", reg.host()))
        .arg(format!("oci:{}:x", oci.display())));
    let rootfs = umoci_unpack(&oci, "x", &t.dir.path().join("bundle"));
    t.check_rootfs(&rootfs);

    // Second push: nothing uploaded, nothing compressed. The uncompressed
    // layer blobs are corrupted first (same size, one byte flipped), so any
    // attempt to compress them again fails the push: compress_blob checks
    // the digest of what it reads.
    let aside = t.scratch("aside");
    for d in &t.diff_ids {
        let p = t.root.blob_path(d);
        fs::copy(&p, aside.join(&d[7..])).unwrap();
        let mut bytes = fs::read(&p).unwrap();
        bytes[700] ^= 0x55;
        fs::write(&p, bytes).unwrap();
    }
    let (again, stats) = push_image_with_stats(&t.root, &client, &t.image, &dest)
        .await
        .unwrap();
    assert_eq!(again, digest);
    assert_eq!(
        stats,
        PushStats {
            uploaded: 0,
            skipped: 3
        }
    );
    // Without the cached compressed forms, push_image must compress, and so
    // fails (showing that the passing push above really used the cache).
    let first_gz = layers[0]["digest"].as_str().unwrap();
    let gz_aside = t.dir.path().join("gz-aside");
    fs::rename(t.root.blob_path(first_gz), &gz_aside).unwrap();
    let err = push_image(&t.root, &client, &t.image, &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PushError::Cache(rbuild_cache::CacheError::DigestMismatch { .. })
        ),
        "{err}"
    );
    fs::rename(&gz_aside, t.root.blob_path(first_gz)).unwrap();
    for d in &t.diff_ids {
        fs::copy(aside.join(&d[7..]), t.root.blob_path(d)).unwrap();
    }

    // Another tag in the same repository: same digest, blobs skipped.
    let dest2 = Reference::parse(&format!("{}/team/app:v2", reg.host())).unwrap();
    assert_eq!(
        push_image(&t.root, &client, &t.image, &dest2)
            .await
            .unwrap(),
        digest
    );
    let (raw2, _) = remote_manifest(&reg, "team/app:v2");
    assert_eq!(raw2, raw);
    // By digest.
    let by_digest = dest.with_digest(&digest);
    let by_digest = Reference {
        tag: None,
        ..by_digest
    };
    assert_eq!(
        push_image(&t.root, &client, &t.image, &by_digest)
            .await
            .unwrap(),
        digest
    );
    // A new repository has none of the blobs yet.
    let other = Reference::parse(&format!("{}/other/app:1", reg.host())).unwrap();
    let (_, stats) = push_image_with_stats(&t.root, &client, &t.image, &other)
        .await
        .unwrap();
    assert_eq!(stats.uploaded, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_of_a_pulled_image_keeps_compressed_layers() {
    if !have_all(&["skopeo", "umoci"]) {
        return;
    }
    let Some(reg) = Registry::start() else {
        return;
    };
    let t = build_image("docker.io/library/mixed:1", true);
    let client = client(&t);
    let dest = Reference::parse(&format!("{}/mixed:1", reg.host())).unwrap();
    let (digest, stats) = push_image_with_stats(&t.root, &client, &t.image, &dest)
        .await
        .unwrap_or_else(|e| panic!("push: {e}\nregistry log:\n{}", reg.log()));
    assert_eq!(stats.uploaded, 5, "4 layers + config");
    let (raw, manifest) = remote_manifest(&reg, "mixed:1");
    assert_eq!(sha256_digest(&raw), digest);
    let stored = t.image.manifest.layers();
    let layers = manifest["layers"].as_array().unwrap();
    let types: Vec<&str> = layers
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(types, [OCI_GZIP, OCI_GZIP, OCI_ZSTD, OCI_GZIP]);
    // Pulled layers are pushed as they are (same blobs).
    for i in [2, 3] {
        assert_eq!(layers[i]["digest"], stored[i].digest().to_string());
        assert_eq!(layers[i]["size"], stored[i].size());
    }

    // Pull back (recompressing to gzip, as umoci 0.4.7 cannot read zstd).
    let oci = t.dir.path().join("pulled");
    run(Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            "--dest-compress",
            "--dest-compress-format",
            "gzip",
        ])
        .arg(format!("docker://{}/mixed:1", reg.host()))
        .arg(format!("oci:{}:x", oci.display())));
    let rootfs = umoci_unpack(&oci, "x", &t.dir.path().join("bundle"));
    t.check_rootfs(&rootfs);
}

#[tokio::test]
async fn push_fails_before_uploading_when_a_blob_is_missing() {
    let t = build_image("docker.io/library/app:latest", false);
    fs::remove_file(t.root.blob_path(&t.diff_ids[0])).unwrap();
    let client = client(&t);
    // Nothing listens on this port: the error must come from the store
    // check, before any network traffic.
    let dest = Reference::parse("127.0.0.1:9/x:y").unwrap();
    let err = push_image(&t.root, &client, &t.image, &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, PushError::Cache(_)), "{err}");
    assert!(err.to_string().contains(&t.diff_ids[0][7..]), "{err}");
}
