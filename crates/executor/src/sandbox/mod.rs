//! The step runner: executes one Dockerfile `RUN` in isolation.
//!
//! # Shape
//!
//! The runner is a re-exec of the current binary, not a fork of the
//! multi-threaded tokio process. [`run_step`] (parent side) spawns `runner`
//! with the hidden first argument [`SANDBOX_ARG`] and a JSON envelope on
//! stdin; the binary's `main` must call [`sandbox_main`] when it sees that
//! argument, before it starts any thread.
//!
//! ```text
//! rbuild (parent, tokio)                 supervisor thread: spawn, wait, cgroup cleanup
//!  └─ runner __rbuild_sandbox            "intermediate": setsid, PDEATHSIG, unshare(PID|UTS|IPC[|NET]),
//!      │                                 cgroup create + move grandchild in, wait, forward exit status
//!      └─ grandchild = PID 1 of new ns   unshare(NS|CGROUP), mount overlay, /proc, /dev, /sys, /etc/hosts,
//!                                        /etc/resolv.conf, bind mounts, pivot_root, hostname, user,
//!                                        cwd, capabilities, exec
//! ```
//!
//! The mount namespace is unshared by the grandchild, not the intermediate:
//! `pivot_root` moves the root of *every* process of the mount namespace that
//! sits on the old root, and the intermediate must keep the host's view to
//! remove the cgroup afterwards. The grandchild joins the cgroup before it does
//! anything (it waits on a pipe until the intermediate has moved it in).
//!
//! File descriptors of the child: 0 = the spec (then /dev/null), 1 = the
//! output pipe (the command's stdout *and* stderr, so lines keep their order),
//! 2 = the control pipe. The control pipe carries JSON lines
//! ([`protocol::Report`]): mount stubs as they are created, a setup error, and
//! `ready` just before `exec`. It is close-on-exec in the grandchild, so the
//! command never sees it. No `ready` ⇒ the setup failed and [`run_step`]
//! returns [`SandboxError::Setup`] with the child's message.
//!
//! # Mount stubs
//!
//! A mount needs a mountpoint. When `/proc`, `/dev`, `/sys`, `/etc/hosts`,
//! `/etc/resolv.conf` or a bind-mount target is missing in the rootfs, the
//! child creates it in the overlay, which puts it in the upper dir, i.e. in the
//! layer. Like BuildKit (`executor/stubs.go`), the child reports every such
//! *stub* (the path it really created, after resolving symlinks inside the
//! rootfs, and only when it is on the overlay mount) together with the times of
//! its parent directory; after the step the parent removes each stub from the
//! upper dir if it is still an empty directory or an empty regular file,
//! deepest first, and restores the parent's times. `/etc/hosts` and
//! `/etc/resolv.conf` are only mounted when `/etc` exists in the rootfs. The
//! files under `/dev` live in a tmpfs and never touch the upper dir. The
//! working directory is *not* a stub: like Docker, a missing `cwd` is created
//! (root, 0755) and stays in the layer.
//!
//! # Isolation (beyond namespaces)
//!
//! * capabilities are cut to Docker's default set (bounding, permitted,
//!   effective; inheritable and ambient empty);
//! * the rootfs, `/dev`, `/dev/shm` and bind mounts are `nodev`: a device node
//!   made with `mknod` can be created (and lands in the layer) but not opened;
//!   the nodes in `/dev` are bind mounts of the host's null, zero, full,
//!   random, urandom and tty;
//! * Docker's masked paths (`/proc/kcore`, `/proc/keys`, `/sys/firmware`, ...)
//!   and read-only paths (`/proc/sys`, `/proc/sysrq-trigger`, ...);
//! * `/sys` is a read-only sysfs.
//!
//! # Lifetime
//!
//! Every process of the step is in the new PID namespace, so all die when its
//! PID 1 exits; the intermediate waits for that before it exits, and all mounts
//! live in the grandchild's private mount namespace, which dies with them.
//!
//! * rbuild dies: the intermediate gets `SIGTERM` as its parent-death signal
//!   (`PR_SET_PDEATHSIG` towards the supervisor thread, which lives until the
//!   runner is reaped); its handler SIGKILLs the grandchild (PID 1: the kernel
//!   then kills the whole namespace), waits for it and exits.
//! * the [`run_step`] future is dropped: the same, through a `SIGTERM` from a
//!   drop guard.
//! * the intermediate itself is SIGKILLed: the grandchild has
//!   `PR_SET_PDEATHSIG(SIGKILL)` towards it.
//!
//! # Differences from `docker build`
//!
//! * no seccomp profile, no AppArmor/SELinux, no user namespace;
//! * device nodes the step creates with `mknod` cannot be opened (Docker
//!   allows the ones its device cgroup lists, e.g. `c 1:3`);
//! * no `/sys/fs/cgroup` inside, no `/etc/hostname` mount;
//! * an exec failure is an exit code (127 not found, 126 not executable) with
//!   the message in the output, not a separate error;
//! * a mountpoint under a *dangling* symlink in the rootfs is an error (runc
//!   creates the symlink's target inside the rootfs);
//! * a setuid program exec'd directly as PID 1 by a non-root user loses its
//!   `PR_SET_PDEATHSIG` (the kernel clears it on a credential change): such a
//!   step outlives its intermediate if *that* process is SIGKILLed (rbuild
//!   dying or cancelling is still covered, through the SIGTERM handler);
//! * the overlay is mounted with `index=off,redirect_dir=off,metacopy=off`
//!   so that the upper dir is a plain layer, and `volatile` (Linux ≥ 5.10);
//!   see [`crate::overlay::WRITABLE`].

mod caps;
mod cgroup;
mod child;
mod error;
mod parent;
mod protocol;
mod rootfs;
mod user;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use child::sandbox_main;
pub use error::SandboxError;
pub use parent::run_step;

/// The hidden first argument that makes the binary act as the step runner.
pub const SANDBOX_ARG: &str = "__rbuild_sandbox";

/// How many lines of output [`StepResult::output_tail`] keeps.
pub const OUTPUT_TAIL_LINES: usize = 50;

/// `PATH` when the step's environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Hostname when [`StepSpec::hostname`] is empty (BuildKit's default).
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

/// Everything needed to run one step.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct StepSpec {
    /// Overlay lower dirs, topmost first. Empty (FROM scratch): an empty dir
    /// is used as the only lower.
    pub lowerdirs: Vec<PathBuf>,
    /// Overlay upper dir; becomes the new layer.
    pub upperdir: PathBuf,
    /// Overlay work dir, on the same filesystem as `upperdir`, empty.
    pub workdir: PathBuf,
    /// argv. Shell form is turned into `["/bin/sh", "-c", "..."]` by the caller.
    pub args: Vec<String>,
    /// `KEY=VALUE`. `PATH` and `HOME` get defaults when missing.
    pub env: Vec<String>,
    /// Working directory; created (root, 0755) when missing. Empty = `/`.
    pub cwd: String,
    /// Dockerfile `USER`: `name`, `uid`, `name:group`, `uid:gid`, resolved
    /// inside the rootfs. Empty = root.
    pub user: String,
    /// Empty = [`DEFAULT_HOSTNAME`].
    pub hostname: String,
    pub network: Network,
    /// Extra bind mounts (RUN --mount), mounted after the system mounts.
    pub mounts: Vec<BindMount>,
    pub limits: Limits,
    /// Contents of `/etc/hosts` (bind-mounted read-only from a tmpfs file,
    /// only when `/etc` exists in the rootfs). `None`: the rootfs's own file.
    pub hosts: Option<String>,
    /// Contents of `/etc/resolv.conf`, same rules as `hosts`.
    pub resolv_conf: Option<String>,
}

/// RUN --network.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network namespace.
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
}

/// A bind mount of a host path into the step.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path (trusted: chosen by rbuild, not by the Dockerfile).
    pub source: PathBuf,
    /// Path inside the container; resolved inside the rootfs, created (and
    /// cleaned up afterwards) when missing.
    pub target: String,
    pub readonly: bool,
}

/// cgroup limits; each optional. When all are `None` no cgroup is created.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq)]
#[serde(default)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU quota in CPUs (1.5 = 150ms per 100ms period).
    pub cpus: Option<f64>,
    /// Maximum number of processes (tasks).
    pub pids: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none() && self.pids.is_none()
    }
}

/// The outcome of a command that was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The command's exit code; 128+N when it was killed by signal N; 127 when
    /// the command was not found, 126 when it could not be executed.
    pub exit_code: i32,
    /// The last [`OUTPUT_TAIL_LINES`] lines of combined stdout/stderr.
    pub output_tail: Vec<String>,
}

/// USER resolution through a rootfs's passwd and group file contents, for the
/// file operations (COPY --chown, WORKDIR ownership) outside the sandbox.
pub(crate) fn resolve_user(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, String> {
    let u = user::resolve(user, passwd, group)?;
    Ok(ResolvedUser {
        uid: u.uid,
        gid: u.gid,
    })
}

/// Ids from [`resolve_user`].
pub(crate) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
}
