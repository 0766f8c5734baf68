//! `find_image`, `export_oci_archive` and `export_docker_archive`, checked
//! with real third-party readers: GNU tar, oci-image-tool, umoci, skopeo.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use rbuild_cache::sha256_digest;
use rbuild_push::{
    docker_short_name, export_docker_archive, export_oci_archive, find_image, PushError,
};
use support::*;

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap()
}

#[test]
fn find_image_by_name_normalised_name_and_digest() {
    let t = build_image("docker.io/library/app:latest", false);
    let d = &t.image.manifest_digest;
    for name in [
        "docker.io/library/app:latest",
        "app",
        "app:latest",
        "library/app",
        d.as_str(),
        hex(d),
        &format!("app@{d}"),
    ] {
        let found = find_image(&t.root, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(found.manifest_digest, *d, "{name}");
        assert_eq!(found.manifest.layers().len(), 2);
    }
    assert_eq!(
        find_image(&t.root, d).unwrap().manifest_size,
        fs::metadata(t.root.blob_path(d)).unwrap().len()
    );
    for missing in ["app:v2", "other", &sha256_digest(b"nothing")] {
        let err = find_image(&t.root, missing).unwrap_err();
        assert!(matches!(err, PushError::NotFound(_)), "{missing}: {err}");
    }
    // A digest that is in the store but is not a manifest.
    let err = find_image(&t.root, &t.config_digest).unwrap_err();
    assert!(matches!(err, PushError::Invalid(_)), "{err}");

    // An untagged manifest is found by digest.
    t.root.untag_image("docker.io/library/app:latest").unwrap();
    assert!(find_image(&t.root, "app").is_err());
    assert_eq!(find_image(&t.root, d).unwrap().manifest_digest, *d);

    // A multi-platform index is refused with a clear error.
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{}}}]}}"#,
        t.image.manifest_size
    );
    let idx = t.root.put_blob_bytes(index.as_bytes()).unwrap();
    t.root
        .tag_image(
            "docker.io/library/multi:latest",
            &idx,
            index.len() as u64,
            "application/vnd.oci.image.index.v1+json",
        )
        .unwrap();
    let err = find_image(&t.root, "multi").unwrap_err();
    assert!(err.to_string().contains("index"), "{err}");
}

#[test]
fn docker_short_names() {
    assert_eq!(
        docker_short_name("docker.io/library/app:latest").unwrap(),
        "app:latest"
    );
    assert_eq!(docker_short_name("app").unwrap(), "app:latest");
    assert_eq!(docker_short_name("me/app:1").unwrap(), "me/app:1");
    assert_eq!(
        docker_short_name("127.0.0.1:5000/app:x").unwrap(),
        "127.0.0.1:5000/app:x"
    );
}

/// Entries are sorted, owned by 0:0, mtime 0, 0644/0755; output is
/// byte-for-byte reproducible.
fn check_archive_shape(bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(bytes);
    let mut names = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{name}");
        assert_eq!(h.mtime().unwrap(), 0, "{name}");
        let want = if h.entry_type().is_dir() {
            0o755
        } else {
            0o644
        };
        assert_eq!(h.mode().unwrap(), want, "{name}");
        names.push(name);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries not sorted");
    names
}

#[test]
fn oci_archive_is_a_valid_layout_that_unpacks() {
    let t = build_image("docker.io/library/app:latest", false);
    let out = t.dir.path().join("image-oci.tar");
    export_oci_archive(
        &t.root,
        &t.image,
        Some("latest"),
        fs::File::create(&out).unwrap(),
    )
    .unwrap();
    let bytes = fs::read(&out).unwrap();

    // Deterministic: a second export is identical.
    let mut again = Vec::new();
    export_oci_archive(&t.root, &t.image, Some("latest"), &mut again).unwrap();
    assert!(again == bytes, "export is not reproducible");

    let names = check_archive_shape(&bytes);
    let mut want = vec![
        "blobs/".to_string(),
        "blobs/sha256/".to_string(),
        "index.json".to_string(),
        "oci-layout".to_string(),
    ];
    for d in [&t.image.manifest_digest, &t.config_digest]
        .into_iter()
        .chain(&t.diff_ids)
    {
        want.push(format!("blobs/sha256/{}", hex(d)));
    }
    want.sort();
    assert_eq!(names, want);

    // index.json: one descriptor, the stored manifest byte for byte, short tag.
    let entries: BTreeMap<String, Vec<u8>> = tar_entries(&bytes)
        .into_iter()
        .map(|(p, _, v)| (p, v))
        .collect();
    let index = json(std::str::from_utf8(&entries["index.json"]).unwrap());
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let m = &index["manifests"][0];
    assert_eq!(m["digest"], t.image.manifest_digest.as_str());
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    for (path, content) in &entries {
        if let Some(h) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(sha256_digest(content), format!("sha256:{h}"), "{path}");
        }
    }

    if !have_all(&["tar", "oci-image-tool", "umoci", "skopeo"]) {
        return;
    }
    let layout = t.scratch("layout");
    run(Command::new("tar")
        .arg("-xf")
        .arg(&out)
        .arg("-C")
        .arg(&layout));
    oci_validate(&layout, "latest");
    let rootfs = umoci_unpack(&layout, "latest", &t.dir.path().join("bundle"));
    t.check_rootfs(&rootfs);

    let inspect = json(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:latest", layout.display()))));
    let layers: Vec<&str> = inspect["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        layers,
        t.diff_ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(inspect["Digest"], t.image.manifest_digest.as_str());
    assert_eq!(inspect["Os"], "linux");
    // Only the tag that was given exists.
    run_fails(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:other", layout.display())),
    );
}

#[test]
fn oci_archive_of_a_pulled_image_normalises_docker_media_types() {
    let t = build_image("docker.io/library/mixed:1", true);
    let mut bytes = Vec::new();
    export_oci_archive(&t.root, &t.image, Some("1"), &mut bytes).unwrap();
    check_archive_shape(&bytes);
    let entries: BTreeMap<String, Vec<u8>> = tar_entries(&bytes)
        .into_iter()
        .map(|(p, _, v)| (p, v))
        .collect();
    let index = json(std::str::from_utf8(&entries["index.json"]).unwrap());
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // Rewritten (Docker layer type → OCI), so a new digest.
    assert_ne!(digest, t.image.manifest_digest);
    let manifest =
        json(std::str::from_utf8(&entries[&format!("blobs/sha256/{}", hex(&digest))]).unwrap());
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(types, [OCI_TAR, OCI_TAR, OCI_ZSTD, OCI_GZIP]);
    // Same blobs: the Docker gzip layer keeps its digest.
    assert_eq!(
        manifest["layers"][3]["digest"],
        t.image.manifest.layers()[3].digest().to_string()
    );

    // Debian's oci-image-tool (1.0.0-rc1) and umoci (0.4.7) predate zstd
    // layers, so this layout is read with skopeo, and unpacked by umoci
    // after skopeo has recompressed it to gzip (which reads every layer).
    if !have_all(&["tar", "skopeo", "umoci"]) {
        return;
    }
    let layout = t.scratch("layout");
    let out = t.dir.path().join("mixed.tar");
    fs::write(&out, &bytes).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&out)
        .arg("-C")
        .arg(&layout));
    let inspect = json(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:1", layout.display()))));
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 4);
    let gz = t.dir.path().join("gzip-layout");
    run(Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--dest-compress",
            "--dest-compress-format",
            "gzip",
        ])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("oci:{}:1", gz.display())));
    let rootfs = umoci_unpack(&gz, "1", &t.dir.path().join("bundle"));
    t.check_rootfs(&rootfs);
}

#[test]
fn docker_archive_has_manifest_json_and_loads_with_skopeo() {
    let t = build_image("docker.io/library/app:latest", false);
    let out = t.dir.path().join("image-docker.tar");
    let tags = vec![
        "app".to_string(),
        "docker.io/library/app:v1".to_string(),
        "127.0.0.1:5000/team/app:2".to_string(),
        "app:latest".to_string(), // duplicate of the first
    ];
    export_docker_archive(&t.root, &t.image, &tags, fs::File::create(&out).unwrap()).unwrap();
    let bytes = fs::read(&out).unwrap();
    let mut again = Vec::new();
    export_docker_archive(&t.root, &t.image, &tags, &mut again).unwrap();
    assert!(again == bytes, "export is not reproducible");
    let names = check_archive_shape(&bytes);
    assert!(names.contains(&"manifest.json".to_string()));
    assert!(names.contains(&"oci-layout".to_string()));

    let entries: BTreeMap<String, Vec<u8>> = tar_entries(&bytes)
        .into_iter()
        .map(|(p, _, v)| (p, v))
        .collect();
    let manifest = json(std::str::from_utf8(&entries["manifest.json"]).unwrap());
    let m = &manifest.as_array().unwrap()[0];
    assert_eq!(manifest.as_array().unwrap().len(), 1);
    assert_eq!(
        m["Config"],
        format!("blobs/sha256/{}", hex(&t.config_digest))
    );
    assert_eq!(
        m["RepoTags"],
        serde_json::json!(["app:latest", "app:v1", "127.0.0.1:5000/team/app:2"])
    );
    let layers: Vec<&str> = m["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let want: Vec<String> = t
        .diff_ids
        .iter()
        .map(|d| format!("blobs/sha256/{}", hex(d)))
        .collect();
    assert_eq!(layers, want);
    for p in layers
        .iter()
        .copied()
        .chain([m["Config"].as_str().unwrap()])
    {
        let content = entries
            .get(p)
            .unwrap_or_else(|| panic!("{p} not in archive"));
        assert_eq!(
            sha256_digest(content),
            format!("sha256:{}", p.strip_prefix("blobs/sha256/").unwrap())
        );
    }
    // index.json: one entry per tag, full name + short tag, as containerd.
    let index = json(std::str::from_utf8(&entries["index.json"]).unwrap());
    let descs = index["manifests"].as_array().unwrap();
    let names: Vec<(&str, &str)> = descs
        .iter()
        .map(|d| {
            assert_eq!(d["digest"], t.image.manifest_digest.as_str());
            (
                d["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .unwrap(),
                d["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("docker.io/library/app:latest", "latest"),
            ("docker.io/library/app:v1", "v1"),
            ("127.0.0.1:5000/team/app:2", "2"),
        ]
    );

    if !have_all(&["skopeo", "umoci", "oci-image-tool", "tar"]) {
        return;
    }
    // skopeo's docker-archive reader uses manifest.json and its RepoTags.
    let listed = json(&run(Command::new("skopeo")
        .arg("list-tags")
        .arg(format!("docker-archive:{}", out.display()))));
    assert_eq!(
        listed["Tags"],
        serde_json::json!(["app:latest", "app:v1", "127.0.0.1:5000/team/app:2"])
    );
    let inspect = json(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", out.display()))));
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    for tag in ["app:latest", "app:v1"] {
        let inspect = json(&run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}:{tag}", out.display()))));
        assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2, "{tag}");
        assert_eq!(inspect["Os"], "linux");
    }
    run_fails(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}:nope:latest", out.display())),
    );
    // The archive is also a valid OCI layout. (Exported with a single tag:
    // Debian's oci-image-tool 1.0.0-rc1 mismatches `--ref name=` lookups in
    // an index with several descriptors for one manifest.)
    let single = t.dir.path().join("single.tar");
    export_docker_archive(
        &t.root,
        &t.image,
        &["app:latest".to_string()],
        fs::File::create(&single).unwrap(),
    )
    .unwrap();
    let layout = t.scratch("layout");
    run(Command::new("tar")
        .arg("-xf")
        .arg(&single)
        .arg("-C")
        .arg(&layout));
    oci_validate(&layout, "latest");
    // Round trip through skopeo's docker-archive reader into umoci.
    let oci = t.dir.path().join("from-docker");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy"])
        .arg(format!("docker-archive:{}:app:v1", out.display()))
        .arg(format!("oci:{}:x", oci.display())));
    let rootfs = umoci_unpack(&oci, "x", &t.dir.path().join("bundle"));
    t.check_rootfs(&rootfs);
}

#[test]
fn docker_archive_of_a_pulled_image_has_docker_readable_layers() {
    let t = build_image("docker.io/library/mixed:1", true);
    let out = t.dir.path().join("mixed-docker.tar");
    export_docker_archive(
        &t.root,
        &t.image,
        &["mixed:1".to_string()],
        fs::File::create(&out).unwrap(),
    )
    .unwrap();
    let bytes = fs::read(&out).unwrap();
    check_archive_shape(&bytes);
    let entries: BTreeMap<String, Vec<u8>> = tar_entries(&bytes)
        .into_iter()
        .map(|(p, _, v)| (p, v))
        .collect();
    let manifest = json(std::str::from_utf8(&entries["manifest.json"]).unwrap());
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let stored: Vec<String> = t
        .image
        .manifest
        .layers()
        .iter()
        .map(|l| format!("blobs/sha256/{}", hex(l.digest().as_ref())))
        .collect();
    // Uncompressed layers and the gzip one as stored; the zstd one
    // decompressed (named by its diff_id), since old Docker cannot read zstd.
    assert_eq!(layers[0], stored[0]);
    assert_eq!(layers[1], stored[1]);
    assert_eq!(layers[2], format!("blobs/sha256/{}", hex(&t.diff_ids[2])));
    assert_eq!(layers[3], stored[3]);
    let zstd_tar = &entries[&layers[2]];
    assert_eq!(sha256_digest(zstd_tar), t.diff_ids[2]);
    assert!(tar_entries(zstd_tar)
        .iter()
        .any(|(p, _, _)| p == "zstd/file.txt"));
    let gz = &entries[&layers[3]];
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip layer shipped as stored");
    // The OCI side still references the zstd blob, which is shipped too.
    assert!(entries.contains_key(&stored[2]));

    if !have_all(&["skopeo", "umoci"]) {
        return;
    }
    let oci = t.dir.path().join("from-docker");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy"])
        .arg(format!("docker-archive:{}:mixed:1", out.display()))
        .arg(format!("oci:{}:x", oci.display())));
    let rootfs = umoci_unpack(&oci, "x", &t.dir.path().join("bundle"));
    t.check_rootfs(&rootfs);
}

#[test]
fn export_fails_cleanly_on_a_missing_or_corrupt_blob() {
    let t = build_image("docker.io/library/app:latest", false);
    // Missing layer: error before anything is written.
    let layer = t.root.blob_path(&t.diff_ids[1]);
    let saved = t.dir.path().join("saved-layer");
    fs::copy(&layer, &saved).unwrap();
    fs::remove_file(&layer).unwrap();
    let mut out = Vec::new();
    let err = export_oci_archive(&t.root, &t.image, None, &mut out).unwrap_err();
    assert!(matches!(err, PushError::Cache(_)), "{err}");
    assert!(err.to_string().contains(hex(&t.diff_ids[1])), "{err}");
    assert!(out.is_empty(), "wrote {} bytes before failing", out.len());

    // Corrupt layer of the right size: the streaming check catches it.
    let mut bad = fs::read(&saved).unwrap();
    bad[600] ^= 0xff;
    fs::write(&layer, &bad).unwrap();
    let err = export_docker_archive(&t.root, &t.image, &[], &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");

    // An invalid tag is refused.
    fs::copy(&saved, &layer).unwrap();
    let err = export_docker_archive(
        &t.root,
        &t.image,
        &["Bad Name".to_string()],
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(matches!(err, PushError::Invalid(_)), "{err}");
    // And with the blob back, both work (untagged docker archive too).
    export_docker_archive(&t.root, &t.image, &[], &mut Vec::new()).unwrap();
    export_oci_archive(&t.root, &t.image, None, &mut Vec::new()).unwrap();
}
