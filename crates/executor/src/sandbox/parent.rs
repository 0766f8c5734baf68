//! Parent side: spawn the runner, stream its output, collect its reports,
//! clean up after it.
//!
//! Two plain threads per step: the *supervisor* spawns the runner, writes the
//! spec, reads the control pipe and waits for the runner (the runner's
//! PDEATHSIG is tied to the thread that spawned it, so that thread must live
//! exactly as long as the runner; tokio's blocking-pool threads may exit
//! early), then removes leftover cgroups and mount stubs. The *reader* splits
//! the output pipe into lines and hands them over a bounded channel (a slow
//! consumer slows the step down instead of buffering without limit).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::{open, openat, AtFlags, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{fstatat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::{pipe2, unlinkat, Pid, UnlinkatFlags};
use tokio::sync::{mpsc, oneshot};

use super::protocol::{parse_control, Control, Envelope};
use super::{cgroup, SandboxError, StepResult, StepSpec, OUTPUT_TAIL_LINES, SANDBOX_ARG};

/// Longest line handed to `on_line`; longer lines are split.
const MAX_LINE: usize = 64 * 1024;

#[derive(Default)]
struct ProcState {
    pid: Option<i32>,
    /// The runner is a zombie or reaped: its pid must not be signalled.
    exited: bool,
    cancelled: bool,
}

fn lock(s: &Mutex<ProcState>) -> std::sync::MutexGuard<'_, ProcState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kills the runner (and so the whole step) when `run_step`'s future is
/// dropped before the step ended.
struct KillGuard {
    state: Arc<Mutex<ProcState>>,
    armed: bool,
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut s = lock(&self.state);
        s.cancelled = true;
        if let (Some(pid), false) = (s.pid, s.exited) {
            // The runner kills its PID namespace and exits on SIGTERM.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
}

struct Finished {
    exit_code: i32,
    control: Control,
}

fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

fn validate(spec: &StepSpec) -> Result<(), SandboxError> {
    let bad = |m: String| Err(SandboxError::InvalidSpec(m));
    if spec.args.is_empty() {
        return bad("no command (args is empty)".into());
    }
    let strings = spec
        .args
        .iter()
        .chain(&spec.env)
        .chain([&spec.cwd, &spec.user, &spec.hostname])
        .chain(spec.mounts.iter().map(|m| &m.target));
    if let Some(s) = strings.into_iter().find(|s| has_nul(s)) {
        return bad(format!("{s:?} contains a NUL byte"));
    }
    if spec.hostname.len() > 64 {
        return bad(format!(
            "hostname {:?} is longer than 64 bytes",
            spec.hostname
        ));
    }
    for (what, p) in [("upperdir", &spec.upperdir), ("workdir", &spec.workdir)]
        .into_iter()
        .chain(spec.lowerdirs.iter().map(|l| ("lowerdir", l)))
    {
        if !p.is_absolute() {
            return bad(format!("{what} {} is not absolute", p.display()));
        }
        if !p.is_dir() {
            return bad(format!("{what} {} is not a directory", p.display()));
        }
    }
    for m in &spec.mounts {
        if !m.source.is_absolute() || !m.source.exists() {
            return bad(format!(
                "bind mount source {} is not an existing absolute path",
                m.source.display()
            ));
        }
        if m.target
            .split('/')
            .all(|c| c.is_empty() || c == "." || c == "..")
        {
            return bad(format!("bind mount target {:?} is the root", m.target));
        }
    }
    let l = &spec.limits;
    if l.memory == Some(0) || l.pids == Some(0) {
        return bad("memory and pids limits must be positive".into());
    }
    if let Some(c) = l.cpus {
        if !c.is_finite() || c <= 0.0 {
            return bad(format!("cpu limit {c} must be positive"));
        }
    }
    Ok(())
}

/// Runs one step in the sandbox; see the module docs.
///
/// `runner` is the executable to re-exec (production: `/proc/self/exe`); its
/// `main` must call [`super::sandbox_main`] when `argv[1]` is
/// [`SANDBOX_ARG`]. Output lines (stdout and stderr combined, in order) go to
/// `on_line` as they arrive. A command that ran returns `Ok` whatever its exit
/// code; a sandbox that could not start the command returns
/// [`SandboxError::Setup`]. Dropping the future kills the step.
pub async fn run_step(
    runner: &Path,
    spec: &StepSpec,
    mut on_line: impl FnMut(&str) + Send,
) -> Result<StepResult, SandboxError> {
    validate(spec)?;
    let scratch = tempfile::Builder::new()
        .prefix("rbuild-step-")
        .tempdir()
        .map_err(|e| SandboxError::io("creating the step's scratch dir", e))?;
    let envelope = Envelope {
        spec: spec.clone(),
        parent_pid: std::process::id() as i32,
        scratch: scratch.path().to_path_buf(),
    };
    let payload =
        serde_json::to_vec(&envelope).map_err(|e| SandboxError::InvalidSpec(e.to_string()))?;
    let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| SandboxError::io("pipe", e.into()));
    let (out_r, out_w) = pipe()?;
    let (ctl_r, ctl_w) = pipe()?;

    let (line_tx, mut line_rx) = mpsc::channel::<String>(256);
    let (done_tx, done_rx) = oneshot::channel();
    let state = Arc::new(Mutex::new(ProcState::default()));
    let mut guard = KillGuard {
        state: state.clone(),
        armed: true,
    };

    std::thread::Builder::new()
        .name("rbuild-step-output".into())
        .spawn(move || read_lines(out_r, line_tx))
        .map_err(|e| SandboxError::io("starting the output reader thread", e))?;
    let runner = runner.to_path_buf();
    let upper = spec.upperdir.clone();
    std::thread::Builder::new()
        .name("rbuild-step".into())
        .spawn(move || {
            let r = supervise(&runner, &payload, out_w, ctl_w, ctl_r, &state, &upper);
            let _ = done_tx.send(r);
        })
        .map_err(|e| SandboxError::io("starting the step supervisor thread", e))?;

    let mut tail: VecDeque<String> = VecDeque::with_capacity(OUTPUT_TAIL_LINES);
    while let Some(line) = line_rx.recv().await {
        on_line(&line);
        if tail.len() == OUTPUT_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let finished = done_rx.await.map_err(|_| {
        SandboxError::io(
            "step supervisor thread",
            std::io::Error::other("ended without a result"),
        )
    })??;
    guard.armed = false;
    let _ = scratch.close();

    let c = finished.control;
    if !c.ready {
        let message = if !c.errors.is_empty() {
            c.errors.join("; ")
        } else if !c.other.is_empty() {
            c.other.join("\n")
        } else {
            format!(
                "the step runner exited with code {} before starting the command",
                finished.exit_code
            )
        };
        return Err(SandboxError::Setup {
            exit_code: finished.exit_code,
            message,
        });
    }
    Ok(StepResult {
        exit_code: finished.exit_code,
        output_tail: tail.into(),
    })
}

fn supervise(
    runner: &Path,
    payload: &[u8],
    out_w: OwnedFd,
    ctl_w: OwnedFd,
    ctl_r: OwnedFd,
    state: &Mutex<ProcState>,
    upper: &Path,
) -> Result<Finished, SandboxError> {
    let mut cmd = Command::new(runner);
    cmd.arg(SANDBOX_ARG)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(ctl_w));
    let spawned = cmd.spawn();
    drop(cmd); // our copies of the write ends: EOF comes when the child's close
    let mut child = spawned.map_err(|e| {
        SandboxError::io(format!("starting the step runner {}", runner.display()), e)
    })?;
    let pid = child.id() as i32;
    {
        let mut s = lock(state);
        s.pid = Some(pid);
        if s.cancelled {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(payload);
    }
    let mut control = Vec::new();
    let _ = File::from(ctl_r).read_to_end(&mut control);
    // Wait without reaping first, so that the kill guard can never signal a
    // recycled pid.
    while let Err(Errno::EINTR) = waitid(
        Id::Pid(Pid::from_raw(pid)),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
    ) {}
    let cancelled = {
        let mut s = lock(state);
        s.exited = true;
        s.cancelled
    };
    let status = child
        .wait()
        .map_err(|e| SandboxError::io("waiting for the step runner", e))?;
    cgroup::remove_leftovers(&cgroup::step_name(pid as u32));
    let exit_code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let control = parse_control(&control);
    if !cancelled {
        // Killed runner: its namespaces may still be going away; the caller
        // discards the upper dir of a cancelled step anyway.
        remove_stubs(upper, &control.stubs)?;
    }
    Ok(Finished { exit_code, control })
}

fn read_lines(fd: OwnedFd, tx: mpsc::Sender<String>) {
    let mut f = File::from(fd);
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut open = true;
    let send = |bytes: &[u8], open: &mut bool| {
        if !*open {
            return;
        }
        let mut b = bytes;
        if b.last() == Some(&b'\r') {
            b = &b[..b.len() - 1];
        }
        if tx
            .blocking_send(String::from_utf8_lossy(b).into_owned())
            .is_err()
        {
            *open = false; // receiver gone: keep draining the pipe
        }
    };
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(i) = pending[start..].iter().position(|b| *b == b'\n') {
            send(&pending[start..start + i], &mut open);
            start += i + 1;
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE {
            let rest = pending.split_off(MAX_LINE);
            send(&pending, &mut open);
            pending = rest;
        }
    }
    if !pending.is_empty() {
        send(&pending, &mut open);
    }
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Opens `comps` under `base` without following any symlink.
fn walk(base: &OwnedFd, comps: &[&str]) -> Option<OwnedFd> {
    let mut cur = openat(
        base,
        ".",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    for c in comps {
        cur = openat(
            &cur,
            *c,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
    }
    Some(cur)
}

fn is_empty_dir(parent: &OwnedFd, name: &str) -> bool {
    let Ok(fd) = openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    std::fs::read_dir(fd_path(&fd))
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// Removes the mount stubs the child created from the upper dir (deepest
/// first) when they are still an empty dir or an empty file, and gives their
/// parents back their times.
fn remove_stubs(upper: &Path, stubs: &[(String, [i64; 4])]) -> Result<(), SandboxError> {
    if stubs.is_empty() {
        return Ok(());
    }
    let ctx = |what: String| move |e: Errno| SandboxError::io(what, e.into());
    let upper_fd = open(
        upper,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(ctx(format!("opening {}", upper.display())))?;
    for (path, t) in stubs.iter().rev() {
        let comps: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if comps.contains(&"..") {
            continue;
        }
        let Some((name, parents)) = comps.split_last() else {
            continue;
        };
        let Some(dir) = walk(&upper_fd, parents) else {
            continue;
        };
        let Ok(st) = fstatat(&dir, *name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let flag = if fmt == SFlag::S_IFDIR && is_empty_dir(&dir, name) {
            UnlinkatFlags::RemoveDir
        } else if fmt == SFlag::S_IFREG && st.st_size == 0 {
            UnlinkatFlags::NoRemoveDir
        } else {
            continue; // the step put something there: keep it
        };
        unlinkat(&dir, *name, flag).map_err(ctx(format!(
            "removing mount stub {path} from {}",
            upper.display()
        )))?;
        let atime = TimeSpec::new(t[0], t[1]);
        let mtime = TimeSpec::new(t[2], t[3]);
        let _ = match parents.split_last() {
            None => utimensat(
                nix::fcntl::AT_FDCWD,
                upper,
                &atime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            ),
            Some((pname, gparents)) => match walk(&upper_fd, gparents) {
                Some(g) => utimensat(&g, *pname, &atime, &mtime, UtimensatFlags::NoFollowSymlink),
                None => Ok(()),
            },
        };
    }
    Ok(())
}
