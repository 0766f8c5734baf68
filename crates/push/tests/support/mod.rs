//! Shared test helpers: a small image built by hand into a temporary root,
//! external-tool checks, and a real `docker-registry` on loopback.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rbuild_cache::{Compression, Root};
use rbuild_push::ImageRef;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Whether `tool` is on PATH. When it is not: fails under CI (`CI=true`),
/// otherwise prints SKIPPED and returns false.
pub fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            d.join(tool)
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is not on PATH (CI=true: install it, e.g. apt-get install {tool})");
        }
        eprintln!("SKIPPED: {tool} is not on PATH");
    }
    found
}

pub fn have_all(tools: &[&str]) -> bool {
    tools.iter().all(|t| have(t))
}

/// Run a command, panicking with its output if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).unwrap()
}

/// Run a command that must fail; returns stderr.
pub fn run_fails(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A file an image should contain: path in the rootfs → content.
pub type Files = BTreeMap<String, Vec<u8>>;

/// A test image in a temporary root.
pub struct TestImage {
    pub dir: tempfile::TempDir,
    pub root: Root,
    pub name: String,
    pub image: ImageRef,
    pub config_digest: String,
    pub diff_ids: Vec<String>,
    /// Final content of the image's rootfs (after all layers), for the
    /// files the test put there.
    pub files: Files,
    /// `bin/run.sh` is executable.
    pub executable: String,
}

fn write_tree(dir: &Path, files: &[(&str, &[u8], u32)]) {
    for (p, content, mode) in files {
        let path = dir.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
    }
}

/// Pseudo-random, poorly compressible-ish data (xorshift), deterministic.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half the bytes repetitive, so gzip has something to do.
            if i % 2 == 0 {
                (x & 0xff) as u8
            } else {
                b'a'
            }
        })
        .collect()
}

/// Build an image by hand, as the executor would (uncompressed layers,
/// digest == diff_id), tag it `name`. With `pulled_layers`, two more layers
/// are added the way a pull stores them: a zstd blob (`tar+zstd`) and a
/// gzip blob under Docker's media type, with their uncompressed forms NOT in
/// the store.
pub fn build_image(name: &str, pulled_layers: bool) -> TestImage {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(&dir.path().join("root")).unwrap();
    let mut files = Files::new();
    let data = noise(300_000, 42);

    let l1 = tempfile::tempdir().unwrap();
    write_tree(
        l1.path(),
        &[
            ("hello.txt", b"hello from layer 1\n", 0o644),
            ("dir/data.bin", &data, 0o644),
            ("bin/run.sh", b"#!/bin/sh\necho run\n", 0o755),
        ],
    );
    let l2 = tempfile::tempdir().unwrap();
    write_tree(
        l2.path(),
        &[
            ("hello.txt", b"hello from layer 2\n", 0o644),
            ("etc/motd", b"welcome\n", 0o644),
        ],
    );
    files.insert("hello.txt".into(), b"hello from layer 2\n".to_vec());
    files.insert("dir/data.bin".into(), data);
    files.insert("bin/run.sh".into(), b"#!/bin/sh\necho run\n".to_vec());
    files.insert("etc/motd".into(), b"welcome\n".to_vec());

    // (media type, blob digest, blob size, diff_id, created_by)
    let mut layers: Vec<(&str, String, u64, String, &str)> = Vec::new();
    for (d, by) in [(&l1, "COPY . /"), (&l2, "RUN echo welcome > /etc/motd")] {
        let (digest, size) = root.put_layer_from_dir(d.path()).unwrap();
        layers.push((OCI_TAR, digest.clone(), size, digest, by));
    }
    if pulled_layers {
        for (algo, media_type, file, content) in [
            (
                Compression::Zstd,
                OCI_ZSTD,
                "zstd/file.txt",
                &b"from a zstd layer\n"[..],
            ),
            (
                Compression::Gzip,
                DOCKER_GZIP,
                "gz/file.txt",
                &b"from a docker gzip layer\n"[..],
            ),
        ] {
            let d = tempfile::tempdir().unwrap();
            write_tree(d.path(), &[(file, content, 0o644)]);
            let (diff_id, _) = root.put_layer_from_dir(d.path()).unwrap();
            let (digest, size) = root.compress_blob(&diff_id, algo).unwrap();
            // A pulled layer: only the compressed blob is in the store.
            fs::remove_file(root.blob_path(&diff_id)).unwrap();
            files.insert(file.into(), content.to_vec());
            layers.push((media_type, digest, size, diff_id, "ADD pulled.tar /"));
        }
    }

    let created = "2024-05-01T12:00:00Z";
    let diff_ids: Vec<String> = layers.iter().map(|l| l.3.clone()).collect();
    let config = serde_json::json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/run.sh"],
            "WorkingDir": "/"
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|l| serde_json::json!({
            "created": created,
            "created_by": l.4,
        })).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = root.put_blob_bytes(&config_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest,
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.0,
            "digest": l.1,
            "size": l.2,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = root.put_blob_bytes(&manifest_bytes).unwrap();
    root.tag_image(
        name,
        &manifest_digest,
        manifest_bytes.len() as u64,
        OCI_MANIFEST,
    )
    .unwrap();
    let image = rbuild_push::find_image(&root, name).unwrap();
    assert_eq!(image.manifest_digest, manifest_digest);
    TestImage {
        dir,
        root,
        name: name.to_string(),
        image,
        config_digest,
        diff_ids,
        files,
        executable: "bin/run.sh".into(),
    }
}

impl TestImage {
    /// A fresh directory inside the test's temp dir.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// Check that an unpacked rootfs holds every file of the image with the
    /// right content (and the executable bit on `bin/run.sh`).
    pub fn check_rootfs(&self, rootfs: &Path) {
        for (p, want) in &self.files {
            let got = fs::read(rootfs.join(p))
                .unwrap_or_else(|e| panic!("{p} missing from {}: {e}", rootfs.display()));
            assert!(got == *want, "{p}: wrong content ({} bytes)", got.len());
        }
        let mode = fs::metadata(rootfs.join(&self.executable))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{} mode", self.executable);
    }
}

/// Unpack `layout:tag` with umoci (rootless) and return the rootfs path.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle));
    bundle.join("rootfs")
}

/// Entries of a tar archive: path → content (directories as empty).
pub fn tar_entries(bytes: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let t = e.header().entry_type();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            (path, t, v)
        })
        .collect()
}

/// A real `docker-registry` on a free loopback port, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Start one, or `None` (SKIPPED) when the binary is absent outside CI.
    pub fn start() -> Option<Registry> {
        if !have("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).unwrap();
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut reg = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = reg.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}):\n{}", reg.log());
            }
            if reg.ping() {
                return Some(reg);
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on 127.0.0.1:{port}:\n{}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Validate an extracted OCI image layout with oci-image-tool. Debian's
/// build (1.0.0-rc1) calls the layout type `image` (newer releases
/// `imageLayout`); `--ref name=<tag>` makes it validate that tag's manifest,
/// config and layers.
pub fn oci_validate(layout: &Path, tag: &str) {
    let help = Command::new("oci-image-tool")
        .args(["validate", "--help"])
        .output()
        .unwrap();
    let kind = if String::from_utf8_lossy(&help.stdout).contains("imageLayout") {
        "imageLayout"
    } else {
        "image"
    };
    let out = Command::new("oci-image-tool")
        .args(["validate", "--type", kind, "--ref"])
        .arg(format!("name={tag}"))
        .arg(layout)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("Validation succeeded"),
        "oci-image-tool validate {}: {said}",
        layout.display()
    );
}

/// A private Docker daemon (Debian's docker.io, Docker 20.10: the old,
/// non-containerd-store `docker load`), with its own data root, exec root
/// and socket in a temp dir, no networking, the vfs storage driver; run in
/// a private mount namespace whose `/run` is a tmpfs and whose
/// `/etc/docker` is a temp dir, so that it leaves nothing on the host
/// (dockerd otherwise writes `/etc/docker/key.json` and `/run/docker`).
/// Stopped with SIGTERM on drop (it then stops its own containerd).
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// Start one, or `None` (SKIPPED) when dockerd, docker, unshare or root
    /// privileges are missing outside CI.
    pub fn start() -> Option<Dockerd> {
        if !have_all(&["dockerd", "docker", "unshare"]) {
            return None;
        }
        let uid = run(Command::new("id").arg("-u"));
        if uid.trim() != "0" || !Path::new("/etc/docker").is_dir() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("the docker load test needs root and /etc/docker (package docker.io)");
            }
            eprintln!("SKIPPED: the docker load test needs root and /etc/docker");
            return None;
        }
        // Short paths: unix socket names are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("dk")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        for sub in ["etc", "data", "exec", "cli"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::write(d.join("daemon.json"), "{}").unwrap();
        let log = fs::File::create(d.join("dockerd.log")).unwrap();
        let script = r#"mount -n -t tmpfs tmpfs /run && mount -n --bind "$1/etc" /etc/docker && exec dockerd --config-file "$1/daemon.json" --data-root "$1/data" --exec-root "$1/exec" --pidfile "$1/exec/dockerd.pid" -H "unix://$1/d.sock" --storage-driver vfs --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false --log-level warn"#;
        let child = Command::new("unshare")
            // Own network namespace too: with --bridge=none dockerd deletes
            // the host's docker0, breaking any other dockerd on the machine.
            .args([
                "--net",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let mut dockerd = Dockerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = dockerd.child.try_wait().unwrap() {
                panic!("dockerd exited ({status}):\n{}", dockerd.log());
            }
            let ok = dockerd
                .docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return Some(dockerd);
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up:\n{}",
                dockerd.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A `docker` command talking to this daemon.
    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.env(
            "DOCKER_HOST",
            format!("unix://{}/d.sock", self.dir.path().display()),
        )
        .env("DOCKER_CONFIG", self.dir.path().join("cli"))
        .env_remove("DOCKER_CONTEXT");
        c
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // If dockerd had to be killed, its containerd may be left: end it
        // by the pid it recorded.
        let pidfile = self.dir.path().join("exec/containerd/containerd.pid");
        if let Ok(pid) = fs::read_to_string(pidfile) {
            let pid = pid.trim();
            if !pid.is_empty() && Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}
