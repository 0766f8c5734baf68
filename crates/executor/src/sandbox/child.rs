//! The sandbox child: everything that runs in the re-executed binary.
//!
//! Two processes: the *intermediate* (the re-exec'd runner; stays in the
//! host's PID and mount namespaces, owns the cgroup, forwards the exit status)
//! and the *grandchild* (PID 1 of the new PID namespace, sets up its own mount
//! namespace and execs the command). Both are single-threaded.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getppid, pipe2, ForkResult, Gid, Pid, Uid};

use super::protocol::{
    report, set_control_fd, write_all_raw, Envelope, Report, EXIT_CANNOT_EXEC, EXIT_NOT_FOUND,
    EXIT_SETUP,
};
use super::{caps, cgroup, rootfs, user, Network, DEFAULT_HOSTNAME, DEFAULT_PATH};

/// Reports a setup error on the control pipe and exits with `code`.
fn fail(code: i32, message: impl Into<String>) -> ! {
    report(&Report::Error {
        message: message.into(),
    });
    // SAFETY: _exit never returns and runs no destructors or atexit hooks.
    unsafe { libc::_exit(code) }
}

fn or_fail<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => fail(EXIT_SETUP, format!("{what}: {e}")),
    }
}

/// Closes every fd from 3 up (close_range, or one by one on old kernels).
fn close_fds_from_3() {
    // SAFETY: close_range(2) only closes fds; nothing else holds them yet.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if r == 0 {
        return;
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|fd| *fd > 2) {
        // SAFETY: closing fds nobody in this process uses.
        unsafe { libc::close(fd) };
    }
}

/// Entry point of the sandbox child. Call it from `main` when `argv[1]` is
/// [`super::SANDBOX_ARG`], before anything starts a thread. Reads the spec
/// from stdin, sets up the sandbox and runs the step; exits with the step's
/// exit code (125 when the setup failed, after telling the parent why).
pub fn sandbox_main() -> ! {
    std::panic::set_hook(Box::new(|info| {
        report(&Report::Error {
            message: format!("sandbox internal error: {info}"),
        });
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(EXIT_SETUP) }
    }));
    close_fds_from_3();
    // SIGTERM (from the parent's kill guard, or as parent-death signal) kills
    // the grandchild and waits for the PID namespace to empty before exiting.
    // SAFETY: installing an async-signal-safe handler in a single-threaded
    // process.
    unsafe { libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t) };
    or_fail(
        nix::sys::prctl::set_pdeathsig(Signal::SIGTERM),
        "PR_SET_PDEATHSIG",
    );
    let mut input = Vec::new();
    or_fail(
        std::io::stdin().lock().read_to_end(&mut input),
        "reading the spec",
    );
    let env: Envelope = or_fail(serde_json::from_slice(&input), "parsing the spec");
    if getppid().as_raw() != env.parent_pid {
        // The parent died before PDEATHSIG was armed.
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(EXIT_SETUP) }
    }
    // The step's stdin is /dev/null, as in `docker build`.
    let null = or_fail(
        nix::fcntl::open(
            "/dev/null",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
        "opening /dev/null",
    );
    // SAFETY: dup2 onto fd 0, which we own.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        fail(EXIT_SETUP, "dup2 /dev/null: failed");
    }
    drop(null);
    // Own session: the terminal's ^C goes to rbuild, which decides.
    let _ = nix::unistd::setsid();
    let code = intermediate(&env);
    std::process::exit(code)
}

/// The grandchild's pid, for [`on_sigterm`].
static GRANDCHILD: AtomicI32 = AtomicI32::new(0);

/// The intermediate's SIGTERM handler. The grandchild also has
/// PDEATHSIG(SIGKILL) towards the intermediate, but the kernel clears that when
/// it execs a setuid program; this handler covers that case whenever the
/// intermediate is told to stop rather than SIGKILLed.
extern "C" fn on_sigterm(_: libc::c_int) {
    let pid = GRANDCHILD.load(Ordering::SeqCst);
    // SAFETY: kill, waitpid and _exit are async-signal-safe.
    unsafe {
        if pid > 0 {
            libc::kill(pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
        libc::_exit(128 + libc::SIGTERM)
    }
}

fn intermediate(env: &Envelope) -> i32 {
    let spec = &env.spec;
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    or_fail(unshare(flags), "unshare(pid, uts, ipc, net)");
    let cg = match cgroup::StepCgroup::create(&spec.limits, &cgroup::step_name(std::process::id()))
    {
        Ok(cg) => cg,
        Err(e) => fail(EXIT_SETUP, e),
    };
    let (sync_r, sync_w) = or_fail(pipe2(OFlag::O_CLOEXEC), "pipe");
    // SAFETY: this process is single-threaded (sandbox_main runs before any
    // thread is started), so the child may do anything after fork.
    match or_fail(unsafe { fork() }, "fork") {
        ForkResult::Child => {
            drop(sync_w);
            grandchild(env, sync_r)
        }
        ForkResult::Parent { child } => {
            GRANDCHILD.store(child.as_raw(), Ordering::SeqCst);
            drop(sync_r);
            if let Some(cg) = &cg {
                if let Err(e) = cg.add(child.as_raw()) {
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    cg.remove();
                    fail(EXIT_SETUP, e);
                }
            }
            write_all_raw(sync_w.as_raw_fd(), b"g");
            drop(sync_w);
            let code = wait_exit_code(child);
            if let Some(cg) = &cg {
                cg.remove();
            }
            code
        }
    }
}

/// Waits for `pid` and turns its status into an exit code (128+N for signal N).
fn wait_exit_code(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => fail(EXIT_SETUP, format!("waitpid: {e}")),
        }
    }
}

fn grandchild(env: &Envelope, sync_r: OwnedFd) -> ! {
    // SAFETY: back to the default SIGTERM action (the handler is the
    // intermediate's).
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_DFL) };
    // PDEATHSIG first, then wait for the go-ahead: if the intermediate died in
    // between, the read sees EOF.
    or_fail(
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL),
        "PR_SET_PDEATHSIG",
    );
    let mut b = [0u8; 1];
    // SAFETY: read(2) into a live buffer.
    let n = unsafe { libc::read(sync_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
    if n != 1 {
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(EXIT_SETUP) }
    }
    drop(sync_r);
    // Move the control pipe off fd 2 to a close-on-exec fd.
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on fd 2.
    let ctl = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if ctl < 0 {
        fail(EXIT_SETUP, "dup of the control pipe failed");
    }
    set_control_fd(ctl);
    umask(Mode::from_bits_truncate(0o022));
    if let Err(e) = setup_and_exec(env) {
        fail(EXIT_SETUP, e)
    }
    unreachable!()
}

fn setup_and_exec(env: &Envelope) -> Result<(), String> {
    let spec = &env.spec;
    if spec.network == Network::None {
        rootfs::loopback_up()?;
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| format!("unshare(mount, cgroup): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / rprivate: {e}"))?;

    let mut stub_sink = |path: String, parent_times: [i64; 4]| {
        report(&Report::Stub { path, parent_times });
    };
    let root = rootfs::prepare(env, &mut stub_sink)?;
    rootfs::pivot(&root)?;

    let hostname = if spec.hostname.is_empty() {
        DEFAULT_HOSTNAME
    } else {
        &spec.hostname
    };
    nix::unistd::sethostname(hostname).map_err(|e| format!("sethostname: {e}"))?;

    let passwd = read_id_file("/etc/passwd")?;
    let group = read_id_file("/etc/group")?;
    let user = user::resolve(&spec.user, passwd.as_deref(), group.as_deref())?;

    let cwd = if spec.cwd.is_empty() {
        "/".to_string()
    } else if spec.cwd.starts_with('/') {
        spec.cwd.clone()
    } else {
        format!("/{}", spec.cwd)
    };
    std::fs::create_dir_all(&cwd).map_err(|e| format!("creating working directory {cwd}: {e}"))?;

    caps::drop_bounding()?;
    let sgids: Vec<Gid> = user.sgids.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&sgids).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(Gid::from_raw(user.gid))
        .map_err(|e| format!("setgid {}: {e}", user.gid))?;
    nix::unistd::setuid(Uid::from_raw(user.uid))
        .map_err(|e| format!("setuid {}: {e}", user.uid))?;
    if user.uid == 0 {
        caps::set_default_caps()?;
    }
    nix::unistd::chdir(cwd.as_str()).map_err(|e| format!("chdir to {cwd}: {e}"))?;

    let mut envs = spec.env.clone();
    let has = |envs: &[String], k: &str| envs.iter().any(|e| e.split('=').next() == Some(k));
    if !has(&envs, "PATH") {
        envs.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&envs, "HOME") {
        envs.push(format!("HOME={}", user.home));
    }
    let path_var = envs
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();

    reset_signals();
    // stderr joins stdout in the output pipe.
    // SAFETY: dup2 of fd 1 onto fd 2.
    if unsafe { libc::dup2(1, 2) } < 0 {
        return Err("dup2 stdout to stderr failed".into());
    }
    // Nothing but 0, 1, 2 survives exec.
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    exec(&spec.args, &envs, &path_var)
}

/// Reads /etc/passwd or /etc/group of the rootfs. The image is not trusted:
/// a FIFO would block and /dev/zero never ends, so only a regular file of
/// sane size is read; anything else counts as missing.
fn read_id_file(path: &str) -> Result<Option<String>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    const MAX: u64 = 16 << 20;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    let meta = f.metadata().map_err(|e| format!("stat {path}: {e}"))?;
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.len() > MAX {
        return Err(format!("{path} is larger than {MAX} bytes"));
    }
    let mut text = String::new();
    f.take(MAX)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading {path}: {e}"))?;
    Ok(Some(text))
}

/// Default dispositions and an empty mask: ignored signals (the Rust runtime
/// ignores SIGPIPE) would otherwise stay ignored across exec.
fn reset_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to the default.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty, initialised sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, String> {
    v.iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| format!("{s:?} contains a NUL byte")))
        .collect()
}

/// execve with a PATH search through the *step's* PATH (execvpe would use
/// ours). Only returns on a setup error; exec failures exit 126/127.
fn exec(args: &[String], env: &[String], path_var: &str) -> Result<(), String> {
    let prog = args.first().ok_or("no command")?;
    let argv = cstrings(args)?;
    let envp = cstrings(env)?;
    let candidates: Vec<String> = if prog.contains('/') {
        vec![prog.clone()]
    } else if prog.is_empty() {
        Vec::new()
    } else {
        path_var
            .split(':')
            .map(|d| {
                if d.is_empty() {
                    format!("./{prog}")
                } else {
                    format!("{}/{prog}", d.trim_end_matches('/'))
                }
            })
            .collect()
    };
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    report(&Report::Ready);
    let mut error = Errno::ENOENT;
    for c in candidates {
        let Ok(path) = CString::new(c) else { continue };
        // SAFETY: NUL-terminated arrays of pointers into live CStrings.
        unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
        match Errno::last() {
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES => error = Errno::EACCES,
            e => {
                error = e;
                break;
            }
        }
    }
    let (code, msg) = match error {
        Errno::ENOENT => (EXIT_NOT_FOUND, format!("exec: {prog}: not found\n")),
        Errno::EACCES => (
            EXIT_CANNOT_EXEC,
            format!("exec: {prog}: permission denied\n"),
        ),
        e => (EXIT_CANNOT_EXEC, format!("exec: {prog}: {}\n", e.desc())),
    };
    write_all_raw(2, msg.as_bytes());
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(code) }
}
