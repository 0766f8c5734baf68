//! End to end: the `rbuild` binary builds real images with real namespaces
//! and overlayfs, pushes to and pulls from a real registry on loopback
//! (Debian's `docker-registry`), and the results are checked with
//! independent tools (`umoci`, `oci-image-tool`, `skopeo`, and `docker load`
//! + `docker run` against a dockerd this test starts).
//!
//! These need root and the tools above. Locally a missing piece skips with a
//! message; under CI (`CI=true`) it fails, so they can never be skipped there.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether the test can run; prints why not (or panics under CI).
fn prerequisites(tools: &[&str]) -> bool {
    let mut missing: Vec<String> = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".into());
    }
    for t in tools {
        if which(t).is_none() {
            missing.push((*t).into());
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        !ci(),
        "end-to-end prerequisites missing under CI: {missing:?}"
    );
    eprintln!("SKIPPED: missing {missing:?}");
    false
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn rbuild(root: &Path, args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(root)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run rbuild")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "command failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tool(cmd: &str, args: &[&str]) -> Output {
    ok(Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}")))
}

fn write(dir: &Path, rel: &str, content: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// The statically linked busybox from Debian's `busybox-static` (the plain
/// `busybox` package is dynamically linked and cannot run on scratch).
fn busybox_binary() -> PathBuf {
    let out = Command::new("dpkg")
        .args(["-L", "busybox-static"])
        .output()
        .expect("dpkg");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.ends_with("/bin/busybox"))
        .map(PathBuf::from)
        .expect("busybox-static is not installed")
}

/// A context that builds a busybox base image from scratch with rbuild.
fn busybox_context(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(busybox_binary(), dir.join("busybox")).unwrap();
    write(dir, "passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
    write(dir, "group", "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n");
    write(
        dir,
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY passwd group /etc/\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"sh\"]\n",
    );
}

/// A temp dir and a root in it holding `bb:1`, busybox built on scratch.
fn root_with_busybox() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let base_ctx = tmp.path().join("base");
    busybox_context(&base_ctx);
    ok(rbuild(&root, &["-t", "bb:1", "."], &base_ctx));
    (tmp, root)
}

/// A `docker-registry` on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn untar(archive: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    tool(
        "tar",
        &[
            "-xf",
            archive.to_str().unwrap(),
            "-C",
            dest.to_str().unwrap(),
        ],
    );
}

#[test]
fn scratch_image_is_valid_for_oci_tools() {
    if !prerequisites(&["umoci", "oci-image-tool", "skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (root, ctx) = (tmp.path().join("root"), tmp.path().join("ctx"));
    write(&ctx, "app/hello.txt", "hello\n");
    write(&ctx, "app/debug.log", "ignored\n");
    write(&ctx, ".dockerignore", "**/*.log\n");
    write(&ctx, "run.sh", "#!/bin/sh\necho hi\n");
    write(&ctx, "one.conf", "conf\n");
    write(&ctx, "a1.txt", "1\n");
    write(&ctx, "a2.txt", "2\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nCOPY app /srv/\nCOPY *.conf /etc/app.conf\nCOPY a*.txt /texts\nCOPY --chmod=0755 run.sh /usr/bin/run\nCOPY <<EOF /etc/motd\nwelcome\nEOF\nENV GREETING=hi\nWORKDIR /srv\nLABEL org.example=yes\nCMD [\"/usr/bin/run\"]\n",
    );
    let oci = tmp.path().join("image.tar");
    ok(rbuild(
        &root,
        &[
            "-t",
            "scratchy:1",
            "--output",
            &format!("type=oci,dest={}", oci.display()),
            ".",
        ],
        &ctx,
    ));

    let layout = tmp.path().join("layout");
    untar(&oci, &layout);
    tool(
        "oci-image-tool",
        &[
            "validate",
            // Debian's oci-image-tool (1.0.0-rc1) validates a layout
            // directory under the `image` type.
            "--type",
            "image",
            layout.to_str().unwrap(),
        ],
    );
    let bundle = tmp.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:1", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("srv/hello.txt")).unwrap(),
        "hello\n"
    );
    assert!(
        !rootfs.join("srv/debug.log").exists(),
        ".dockerignore'd file was copied"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/motd")).unwrap(),
        "welcome\n"
    );
    // A wildcard matching one file names the destination file; matching
    // several, it makes the destination a directory (as in BuildKit).
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/app.conf")).unwrap(),
        "conf\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("texts/a2.txt")).unwrap(),
        "2\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(rootfs.join("usr/bin/run"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    let inspect = tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("oci:{}:1", layout.display()),
        ],
    );
    let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let env: Vec<String> = serde_json::from_value(config["config"]["Env"].clone()).unwrap();
    assert!(env.contains(&"GREETING=hi".to_string()), "{env:?}");
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    assert_eq!(config["config"]["Labels"]["org.example"], "yes");
    assert_eq!(config["config"]["Cmd"][0], "/usr/bin/run");

    // The image is in the local store too.
    let images = ok(rbuild(&root, &["images"], &ctx));
    assert!(String::from_utf8_lossy(&images.stdout).contains("docker.io/library/scratchy:1"));
}

#[test]
fn multi_stage_build_on_a_pulled_base_with_cache() {
    if !prerequisites(&["docker-registry", "skopeo", "dpkg"]) {
        return;
    }
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let base_ctx = tmp.path().join("base");
    busybox_context(&base_ctx);
    // Build the base with one root and push it...
    let root1 = tmp.path().join("root1");
    ok(rbuild(&root1, &["-t", "busybox:test", "."], &base_ctx));
    let base_ref = format!("{}/test/busybox:1", reg.addr);
    ok(rbuild(
        &root1,
        &["push", "busybox:test", &base_ref],
        &base_ctx,
    ));

    // ...then build on it from an empty root, so the base is pulled.
    let root = tmp.path().join("root2");
    let ctx = tmp.path().join("ctx");
    write(&ctx, "src/main.txt", "v1\n");
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "ARG BASE={base_ref}\nFROM $BASE AS build\nWORKDIR /work\nCOPY src/ ./\nRUN cat main.txt > out.txt && echo built >> out.txt\n\
             FROM $BASE AS unused\nRUN exit 1\n\
             FROM $BASE\nCOPY --from=build /work/out.txt /app/out.txt\nUSER app\nWORKDIR /home/app\nRUN id -u > uid && ls / > root-listing\nCMD [\"cat\", \"/app/out.txt\"]\n"
        ),
    );
    let archive = tmp.path().join("image.tar");
    let out = ok(rbuild(
        &root,
        &[
            "-t",
            "app:1",
            "--output",
            &format!("type=docker,dest={}", archive.display()),
            ".",
        ],
        &ctx,
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("exit 1"),
        "the unused stage ran:\n{stderr}"
    );

    let inspect = tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("docker-archive:{}", archive.display()),
        ],
    );
    let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(config["config"]["User"], "app");
    assert_eq!(config["config"]["Cmd"][1], "/app/out.txt");

    // Unpack the layers in order and look at the result.
    let fs = tmp.path().join("fs");
    let layout = tmp.path().join("layout");
    untar(&archive, &layout);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("manifest.json")).unwrap()).unwrap();
    std::fs::create_dir_all(&fs).unwrap();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        tool(
            "tar",
            &[
                "-xf",
                layout.join(layer.as_str().unwrap()).to_str().unwrap(),
                "-C",
                fs.to_str().unwrap(),
            ],
        );
    }
    assert_eq!(
        std::fs::read_to_string(fs.join("app/out.txt")).unwrap(),
        "v1\nbuilt\n"
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("home/app/uid")).unwrap(),
        "1000\n"
    );
    let listing = std::fs::read_to_string(fs.join("home/app/root-listing")).unwrap();
    let entries: Vec<&str> = listing.lines().collect();
    assert!(
        entries.contains(&"bin") && !entries.contains(&"work"),
        "host paths visible: {listing}"
    );
    assert!(
        !fs.join("etc/hosts").exists() && !fs.join("dev/null").exists(),
        "sandbox mounts leaked into a layer"
    );

    // A second build does no work; an edit re-runs only what depends on it.
    let again = ok(rbuild(&root, &["-t", "app:1", "."], &ctx));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.matches("CACHED").count(), 6, "{stderr}");
    write(&ctx, "src/main.txt", "v2\n");
    let edited = ok(rbuild(&root, &["-t", "app:1", "."], &ctx));
    let stderr = String::from_utf8_lossy(&edited.stderr);
    assert_eq!(
        stderr.matches("CACHED").count(),
        1,
        "only the first WORKDIR stays cached:\n{stderr}"
    );
}

#[test]
fn run_sees_nothing_of_the_host_and_failures_point_at_the_line() {
    if !prerequisites(&[]) {
        return;
    }
    let (tmp, root) = root_with_busybox();
    let ctx = tmp.path().join("ctx");
    let marker = tmp.path().join("host-marker");
    std::fs::write(&marker, "secret").unwrap();
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "FROM bb:1\nRUN ps -o pid,comm > /procs && ls / > /root-ls && (cat {} 2>&1 || true) > /marker && hostname > /host\n",
            marker.display()
        ),
    );
    let oci = tmp.path().join("img.tar");
    ok(rbuild(
        &root,
        &[
            "-t",
            "probe:1",
            "--output",
            &format!("type=oci,dest={}", oci.display()),
            ".",
        ],
        &ctx,
    ));
    let layout = tmp.path().join("layout");
    untar(&oci, &layout);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&manifest_digest)).unwrap(),
    )
    .unwrap();
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let fs = tmp.path().join("fs");
    std::fs::create_dir_all(&fs).unwrap();
    tool(
        "tar",
        &[
            "-xf",
            layout.join("blobs/sha256").join(top).to_str().unwrap(),
            "-C",
            fs.to_str().unwrap(),
        ],
    );
    let procs = std::fs::read_to_string(fs.join("procs")).unwrap();
    let pids: Vec<&str> = procs.lines().skip(1).collect();
    assert!(pids.len() <= 4, "the step sees other processes:\n{procs}");
    assert!(
        procs.lines().nth(1).unwrap().trim_start().starts_with('1'),
        "{procs}"
    );
    assert!(
        std::fs::read_to_string(fs.join("marker"))
            .unwrap()
            .contains("No such file"),
        "host file visible"
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("host")).unwrap().trim(),
        "buildkitsandbox"
    );

    write(
        &ctx,
        "Dockerfile",
        "FROM bb:1\nRUN echo fine\nRUN echo about to fail && exit 7\n",
    );
    let out = rbuild(&root, &["-t", "fail:1", "."], &ctx);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exit code: 7"), "{err}");
    assert!(err.contains("Dockerfile:3:1"), "{err}");
    assert!(err.contains("about to fail"), "{err}");
    // The failed build left the root usable.
    ok(rbuild(&root, &["images"], &ctx));
}

/// dockerd on a private socket and data root, killed on drop.
struct Dockerd {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-dockerd")
            .tempdir()
            .unwrap();
        let sock = dir.path().join("docker.sock");
        let host = format!("unix://{}", sock.display());
        // Its own network namespace: a dockerd started with --bridge=none
        // removes the host's docker0, which would break any other dockerd.
        let child = Command::new("unshare")
            .arg("--net")
            .arg("dockerd")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(&host)
            .arg("--bridge=none")
            .arg("--iptables=false")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("dockerd.log")).unwrap())
            .spawn()
            .expect("start dockerd");
        let d = Dockerd {
            child,
            host,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "dockerd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("/usr/bin/docker")
            .env("DOCKER_HOST", &self.host)
            .args(args)
            .output()
            .expect("run docker")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn docker_loads_and_runs_the_image() {
    if !prerequisites(&["dockerd", "docker", "unshare"]) {
        return;
    }
    let (tmp, root) = root_with_busybox();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "greeting.txt", "hello from rbuild\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM bb:1 AS build\nRUN echo compiled > /artifact\nFROM bb:1\nCOPY greeting.txt /srv/\nCOPY --from=build /artifact /srv/artifact\nENV WHO=docker\nENTRYPOINT [\"sh\", \"-c\", \"cat /srv/greeting.txt /srv/artifact; echo $WHO\"]\n",
    );
    let archive = tmp.path().join("app.tar");
    ok(rbuild(
        &root,
        &[
            "-t",
            "rbuild-e2e:1",
            "--output",
            &format!("type=docker,dest={}", archive.display()),
            ".",
        ],
        &ctx,
    ));
    let dockerd = Dockerd::start();
    let load = dockerd.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        load.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    let run = dockerd.docker(&["run", "--rm", "--network", "none", "rbuild-e2e:1"]);
    assert!(
        run.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "hello from rbuild\ncompiled\ndocker\n"
    );
}

#[test]
fn base_images_come_through_a_configured_mirror() {
    if !prerequisites(&["docker-registry", "dpkg"]) {
        return;
    }
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let base_ctx = tmp.path().join("base");
    busybox_context(&base_ctx);
    let root1 = tmp.path().join("root1");
    ok(rbuild(&root1, &["-t", "bb:1", "."], &base_ctx));
    ok(rbuild(
        &root1,
        &["push", "bb:1", &format!("{}/mirrored/busybox:1", reg.addr)],
        &base_ctx,
    ));

    // `registry.invalid` cannot resolve: the image can only come from the mirror.
    let config = tmp.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"registry":{{"mirrors":{{"registry.invalid":["http://{}"]}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM registry.invalid/mirrored/busybox:1\nRUN echo through-the-mirror\n",
    );
    let out = ok(Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .env("RBUILD_CONFIG", &config)
        .arg("--root")
        .arg(tmp.path().join("root2"))
        .args(["-t", "m:1", "."])
        .current_dir(&ctx)
        .output()
        .unwrap());
    assert!(String::from_utf8_lossy(&out.stderr).contains("through-the-mirror"));
}

#[test]
fn interrupting_a_build_leaves_no_processes_or_mounts() {
    if !prerequisites(&["dpkg"]) {
        return;
    }
    let (tmp, root) = root_with_busybox();
    let ctx = tmp.path().join("ctx");
    let token = format!("rbuild-interrupt-{}", std::process::id());
    write(
        &ctx,
        "Dockerfile",
        &format!("FROM bb:1\nRUN echo started; sh -c 'sleep 1000; true' {token} & wait\n"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(&root)
        .args(["-t", "interrupted:1", "."])
        .current_dir(&ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the step runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&token))
            })
    };
    while !running() {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while running() {
        assert!(
            Instant::now() < deadline,
            "the step's processes outlived the build"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "mounts left behind:\n{mounts}"
    );
    // The root is still usable: the same build runs again (and is interrupted-free).
    write(&ctx, "Dockerfile", "FROM bb:1\nRUN echo after\n");
    ok(rbuild(&root, &["-t", "after:1", "."], &ctx));
}

#[test]
fn a_named_build_context_can_be_the_base() {
    if !prerequisites(&["dpkg"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox_binary(), rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM base\nRUN echo from-the-named-context\n\
         RUN --mount=type=bind,from=base,source=bin,target=/mnt echo mounted: $(ls /mnt)\n",
    );
    let out = ok(rbuild(
        &tmp.path().join("root"),
        &[
            "build",
            "--build-context",
            &format!("base={}", rootfs.display()),
            "-t",
            "named:1",
            ".",
        ],
        &ctx,
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("from-the-named-context"), "{err}");
    assert!(
        err.contains("mounted: busybox sh"),
        "a bind mount of the named context: {err}"
    );
}

#[test]
fn run_mounts_bind_from_stages_and_context_and_cache() {
    if !prerequisites(&["dpkg"]) {
        return;
    }
    let (tmp, root) = root_with_busybox();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "ctxfile.txt", "from-the-context\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM bb:1 AS tools\nRUN echo from-a-stage > /tool.txt\n\
         FROM bb:1\n\
         RUN --mount=type=bind,from=tools,target=/mnt cat /mnt/tool.txt\n\
         RUN --mount=type=bind,source=ctxfile.txt,target=/ctx.txt cat /ctx.txt\n\
         RUN --mount=type=cache,target=/cache echo run >> /cache/log && echo cache-lines-$(wc -l < /cache/log)\n",
    );
    let first = ok(rbuild(&root, &["-t", "mounts:1", "."], &ctx));
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(
        err.contains("from-a-stage") && err.contains("from-the-context"),
        "{err}"
    );
    assert!(err.contains("cache-lines-1"), "{err}");
    // The cache mount persists across builds; the step re-runs with --no-cache.
    let second = ok(rbuild(
        &root,
        &["build", "--no-cache", "-t", "mounts:1", "."],
        &ctx,
    ));
    assert!(String::from_utf8_lossy(&second.stderr).contains("cache-lines-2"));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "a mount view was left behind:\n{mounts}"
    );
}

/// The output lines of the step whose instruction starts with `instruction`,
/// from a build's progress log (`#N <line>`).
fn step_output<'a>(log: &'a str, instruction: &str) -> Vec<&'a str> {
    let step = log
        .lines()
        .find(|l| {
            l.split_once(' ')
                .is_some_and(|(_, rest)| rest.starts_with(instruction))
        })
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no progress line for {instruction:?} in:\n{log}"));
    log.lines()
        .filter_map(|l| l.strip_prefix(step).and_then(|r| r.strip_prefix(' ')))
        .filter(|l| !l.starts_with("RUN ") && !l.starts_with("DONE "))
        .collect()
}

/// Every `<root>/snapshots/*/fs/<rel>` as (path, link count, content).
fn snapshot_files(root: &Path, rel: &str) -> Vec<(PathBuf, u64, String)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("snapshots")).unwrap().flatten() {
        let p = e.path().join("fs").join(rel);
        if let Ok(m) = p.symlink_metadata() {
            if m.is_file() {
                out.push((
                    p.clone(),
                    m.nlink(),
                    std::fs::read_to_string(&p).unwrap_or_default(),
                ));
            }
        }
    }
    out
}

#[test]
fn copy_from_a_stage_links_files_without_sharing_changes() {
    if !prerequisites(&["dpkg"]) {
        return;
    }
    let (tmp, root) = root_with_busybox();
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM bb:1 AS src\nRUN echo data > /f && chmod 640 /f\n\
         FROM bb:1\nCOPY --from=src /f /linked\nCOPY --from=src --chown=1000:1000 /f /copied\n\
         RUN echo changed > /linked && cat /linked /copied\n",
    );
    let out = ok(rbuild(&root, &["-t", "links:1", "."], &ctx));
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed"));
    // The plain COPY --from shares the source snapshot's inode...
    let linked = snapshot_files(&root, "linked");
    assert!(
        linked.iter().any(|(_, n, c)| *n == 2 && c == "data\n"),
        "{linked:?}"
    );
    // ...the --chown one is a real copy...
    let copied = snapshot_files(&root, "copied");
    assert!(copied.iter().all(|(_, n, _)| *n == 1), "{copied:?}");
    // ...and the RUN that rewrote /linked changed neither the source stage's
    // file nor the COPY layer (overlay copied it up into the RUN's layer).
    let sources = snapshot_files(&root, "f");
    assert!(sources.iter().all(|(_, _, c)| c == "data\n"), "{sources:?}");
    assert!(
        linked.iter().any(|(_, _, c)| c == "changed\n"),
        "the RUN's own layer holds the change"
    );
    assert!(snapshot_files(&root, "linked")
        .iter()
        .filter(|(_, n, _)| *n == 2)
        .all(|(_, _, c)| c == "data\n"));
}

#[test]
fn copy_from_a_stage_links_whole_directories_like_a_copy() {
    if !prerequisites(&["dpkg"]) {
        return;
    }
    let (tmp, root) = root_with_busybox();
    let ctx = tmp.path().join("ctx");
    // The source directory spans two layers, one of which deletes a file;
    // the destination exists already and has a `sub` the copy merges into.
    write(
        &ctx,
        "Dockerfile",
        "FROM bb:1 AS src\n\
         RUN mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && ln -s a /d/l && chmod 600 /d/sub/b\n\
         RUN rm /d/a && echo c > /d/c\n\
         FROM bb:1\n\
         RUN mkdir -p /app/sub && echo old > /app/sub/old\n\
         COPY --from=src /d /app/\n\
         RUN cd /app && ls -A . sub && stat -c '%n %a' sub/b && readlink l && cat c && echo changed > c\n",
    );
    let out = ok(rbuild(&root, &["-t", "dirlinks:1", "."], &ctx));
    let log = String::from_utf8_lossy(&out.stderr);
    let output = step_output(&log, "RUN cd /app");
    // Exactly the merged source (no `a`, deleted in its second layer), the
    // old file kept, modes and the symlink as they were.
    assert_eq!(
        output,
        [
            ".:",
            "c",
            "l",
            "sub",
            "",
            "sub:",
            "b",
            "old",
            "sub/b 600",
            "a",
            "c"
        ],
        "{log}"
    );
    // The COPY layer links the source's inode; the RUN's change went to its
    // own layer, leaving the source stage and the COPY layer as they were.
    let copies = snapshot_files(&root, "app/c");
    assert!(
        copies.iter().any(|(_, n, c)| *n == 2 && c == "c\n"),
        "{copies:?}"
    );
    assert!(
        copies.iter().any(|(_, _, c)| c == "changed\n"),
        "{copies:?}"
    );
    let sources = snapshot_files(&root, "d/c");
    assert!(sources.iter().all(|(_, _, c)| c == "c\n"), "{sources:?}");
}

#[test]
fn layers_outside_the_target_are_hashed_when_an_image_needs_them() {
    if !prerequisites(&["dpkg"]) {
        return;
    }
    let (tmp, root) = root_with_busybox();
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM bb:1 AS a\nRUN echo a > /a\nFROM bb:1\nCOPY --from=a /a /a\n",
    );
    ok(rbuild(&root, &["-t", "full:1", "."], &ctx));
    // Stage a's layer was recorded without a diff_id; now it is in the image.
    let archive = tmp.path().join("a.tar");
    let dest = format!("type=oci,dest={}", archive.display());
    let out = ok(rbuild(
        &root,
        &["--target", "a", "-t", "a:1", "--output", &dest, "."],
        &ctx,
    ));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("CACHED"), "{log}");
    let layout = tmp.path().join("a-layout");
    untar(&archive, &layout);
    let inspect = ok(rbuild(&root, &["inspect", "a:1"], &ctx));
    let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let diff_ids = config["config"]["rootfs"]["diff_ids"].as_array().unwrap();
    let last = diff_ids.last().unwrap().as_str().unwrap();
    assert!(last.starts_with("sha256:") && last.len() == 71, "{config}");
    // The exported layer is that diff_id (the export checks it too).
    assert!(layout
        .join("blobs/sha256")
        .join(last.trim_start_matches("sha256:"))
        .exists());
}

#[test]
fn context_copies_made_ahead_give_what_the_overlay_would() {
    if !prerequisites(&["dpkg"]) {
        return;
    }
    let (tmp, root) = root_with_busybox();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "tree/top", "top\n");
    write(&ctx, "tree/sub/new", "new\n");
    // Three context COPYs, all copied before the RUN below them finishes:
    // one lands through a symlink and one merges into an existing dir (both
    // redone through the overlay), one goes into an existing dir of its own
    // mode (kept).
    write(
        &ctx,
        "Dockerfile",
        "FROM bb:1\n\
         RUN sleep 0.3 && mkdir -p /real /data/sub /app && ln -s /real /link && echo old > /data/sub/old && chmod 700 /app\n\
         COPY tree/ /link/\n\
         COPY tree/ /data/\n\
         COPY tree /app\n\
         RUN ls /real /data/sub /app && stat -c '%a %u' /app /app/top && cat /app/sub/new\n",
    );
    let out = ok(rbuild(&root, &["-t", "staged:1", "."], &ctx));
    let log = String::from_utf8_lossy(&out.stderr);
    let output = step_output(&log, "RUN ls /real");
    assert_eq!(
        output,
        [
            "/app:",
            "sub",
            "top",
            "",
            "/data/sub:",
            "new",
            "old",
            "",
            "/real:",
            "sub",
            "top",
            "700 0",
            "644 0",
            "new"
        ],
        "{log}"
    );
}
