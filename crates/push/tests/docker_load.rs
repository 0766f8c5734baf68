//! `export_docker_archive` loaded by a real Docker daemon: Debian's
//! docker.io (Docker 20.10), whose `docker load` reads `manifest.json`.
//! The loaded image is checked by `docker create` + `docker export` (no
//! container is run).

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use rbuild_push::export_docker_archive;
use support::*;

/// Export the filesystem of `image` through `docker create` + `docker
/// export`; returns path → (mode, content) of the regular files.
fn docker_rootfs(dockerd: &Dockerd, image: &str) -> BTreeMap<String, (u32, Vec<u8>)> {
    let id = run(dockerd.docker().args(["create", image]));
    let id = id.trim();
    let out = dockerd
        .docker()
        .args(["export", id])
        .output()
        .expect("docker export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(dockerd.docker().args(["rm", id]));
    let mut files = BTreeMap::new();
    let mut a = tar::Archive::new(&out.stdout[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mode = e.header().mode().unwrap();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        files.insert(path, (mode, v));
    }
    files
}

fn check(t: &TestImage, files: &BTreeMap<String, (u32, Vec<u8>)>) {
    for (p, want) in &t.files {
        let (_, got) = files
            .get(p)
            .unwrap_or_else(|| panic!("{p} missing from the loaded image"));
        assert!(got == want, "{p}: wrong content");
    }
    assert_eq!(files[&t.executable].0 & 0o777, 0o755);
}

#[test]
fn docker_20_10_loads_the_docker_archive() {
    let Some(dockerd) = Dockerd::start() else {
        return;
    };

    let t = build_image("docker.io/library/app:latest", false);
    let out = t.dir.path().join("app.tar");
    let tags = [
        "app".to_string(),
        "docker.io/library/app:v1".to_string(),
        "127.0.0.1:5000/team/app:2".to_string(),
    ];
    export_docker_archive(&t.root, &t.image, &tags, fs::File::create(&out).unwrap()).unwrap();
    let loaded = run(dockerd.docker().arg("load").arg("-i").arg(&out));
    for tag in ["app:latest", "app:v1", "127.0.0.1:5000/team/app:2"] {
        assert!(
            loaded.contains(&format!("Loaded image: {tag}")),
            "{tag} not loaded: {loaded}"
        );
    }
    let layers = json(&run(dockerd.docker().args([
        "image",
        "inspect",
        "app:v1",
        "--format",
        "{{json .RootFS.Layers}}",
    ])));
    assert_eq!(layers, serde_json::json!(t.diff_ids));
    let id = run(dockerd
        .docker()
        .args(["image", "inspect", "app:latest", "--format", "{{.Id}}"]));
    assert_eq!(id.trim(), t.config_digest, "image ID is the config digest");
    check(&t, &docker_rootfs(&dockerd, "app:latest"));

    // A pulled image: zstd layer (decompressed for manifest.json) and a
    // Docker gzip layer.
    let m = build_image("docker.io/library/mixed:1", true);
    let out = m.dir.path().join("mixed.tar");
    export_docker_archive(
        &m.root,
        &m.image,
        &["mixed:1".to_string()],
        fs::File::create(&out).unwrap(),
    )
    .unwrap();
    let loaded = run(dockerd.docker().arg("load").arg("-i").arg(&out));
    assert!(loaded.contains("Loaded image: mixed:1"), "{loaded}");
    let files = docker_rootfs(&dockerd, "mixed:1");
    check(&m, &files);
}
