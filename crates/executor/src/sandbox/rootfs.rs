//! The grandchild's mounts, in its private mount namespace, and `pivot_root`.
//!
//! Paths inside the rootfs are hostile (an image may make `/etc` a symlink to
//! `/`...): every path in the rootfs is resolved with
//! `openat2(RESOLVE_IN_ROOT)` from the merged dir, and mounts go onto
//! `/proc/self/fd/N` of the resolved fd, never onto a joined string path.

use std::ffi::CStr;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::sys::statvfs::{fstatvfs, FsFlags};
use nix::unistd::{chdir, fchdir, pivot_root, symlinkat};

use super::protocol::Envelope;
use crate::overlay;

/// Called for every mount stub created on the overlay: (path relative to the
/// rootfs, parent times).
pub(crate) type StubSink<'a> = &'a mut dyn FnMut(String, [i64; 4]);

/// Docker's masked paths (moby `oci/defaults.go`), relative to /proc.
const PROC_MASKED: &[&str] = &[
    "asound",
    "acpi",
    "interrupts",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];
/// Relative to /sys.
const SYS_MASKED: &[&str] = &["firmware", "devices/virtual/powercap"];
/// Docker's read-only paths, relative to /proc.
const PROC_READONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];
/// Device nodes bind-mounted from the host into /dev.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NODEV: u64 = 0x4;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn mount_on(
    source: Option<&str>,
    target: &OwnedFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    mount(source, fd_path(target).as_str(), fstype, flags, data)
}

fn times(st: &FileStat) -> [i64; 4] {
    [st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec]
}

/// The mount id of the mount `fd` is on (statx), if the kernel says.
fn mnt_id(fd: &OwnedFd) -> Option<u64> {
    // SAFETY: statx into a zeroed buffer with an empty path and AT_EMPTY_PATH.
    unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        let r = libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        );
        (r == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
    }
}

/// Lexically cleaned components of a container path.
fn components(rel: &str) -> Vec<&str> {
    let mut v = Vec::new();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                v.pop();
            }
            c => v.push(c),
        }
    }
    v
}

/// Sets mount attributes on the mount whose root `fd` is (mount_setattr, or a
/// bind remount on kernels before 5.12, which is not recursive).
fn set_mount_attrs(fd: &OwnedFd, attrs: u64, recursive: bool) -> Result<(), String> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr(2) with a valid fd, an empty C string and a
    // mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = Errno::last();
    if e != Errno::ENOSYS {
        return Err(err(
            format!("setting mount attributes on {}", fd_path(fd)),
            e,
        ));
    }
    let st = fstatvfs(fd).map_err(|e| err("statvfs", e))?;
    let mut ms = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    for (f, m) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if st.flags().contains(f) {
            ms |= m;
        }
    }
    if attrs & MOUNT_ATTR_RDONLY != 0 {
        ms |= MsFlags::MS_RDONLY;
    }
    if attrs & MOUNT_ATTR_NODEV != 0 {
        ms |= MsFlags::MS_NODEV;
    }
    mount_on(None, fd, None, ms, None).map_err(|e| err("remounting", e))
}

/// The merged rootfs, before pivot_root.
struct Root {
    path: PathBuf,
    fd: OwnedFd,
    /// What readlink(/proc/self/fd/N) returns for the root.
    prefix: String,
    mnt_id: Option<u64>,
}

impl Root {
    fn open(path: &Path) -> Result<Root, String> {
        let fd = open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(format!("opening {}", path.display()), e))?;
        let prefix = fs::read_link(fd_path(&fd))
            .map_err(|e| err("readlink of the rootfs fd", e))?
            .to_string_lossy()
            .into_owned();
        let mnt_id = mnt_id(&fd);
        Ok(Root {
            path: path.to_path_buf(),
            fd,
            prefix,
            mnt_id,
        })
    }

    /// Opens `rel` (O_PATH) inside the root, symlinks resolved inside it.
    fn resolve(&self, rel: &str, extra: OFlag) -> nix::Result<OwnedFd> {
        let comps = components(rel);
        let p = if comps.is_empty() {
            ".".to_string()
        } else {
            comps.join("/")
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | extra)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(&self.fd, p.as_str(), how)
    }

    /// Whether `fd` is on the overlay mount itself (not in a tmpfs or bind
    /// mounted over part of it).
    fn on_overlay(&self, fd: &OwnedFd) -> bool {
        match (self.mnt_id, mnt_id(fd)) {
            (Some(a), Some(b)) => a == b,
            _ => nix::sys::statfs::fstatfs(fd)
                .map(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
                .unwrap_or(false),
        }
    }

    /// Opens `rel` inside the root, creating it (and missing parents, as
    /// directories) when missing; reports what it creates on the overlay.
    fn ensure(&self, rel: &str, kind: Kind, stubs: StubSink) -> Result<OwnedFd, String> {
        let comps = components(rel);
        let mut prefix = String::new();
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let next = if prefix.is_empty() {
                c.to_string()
            } else {
                format!("{prefix}/{c}")
            };
            match self.resolve(&next, OFlag::empty()) {
                Ok(fd) => {
                    if last {
                        return Ok(fd);
                    }
                }
                Err(Errno::ENOENT) => {
                    let parent = self
                        .resolve(&prefix, OFlag::O_DIRECTORY)
                        .map_err(|e| err(format!("resolving /{prefix} in the rootfs"), e))?;
                    if fstatat(&parent, *c, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
                        return Err(format!(
                            "cannot create mountpoint /{next}: it is a dangling symlink"
                        ));
                    }
                    let before = fstat(&parent).map_err(|e| err("stat", e))?;
                    let created = if last && kind == Kind::File {
                        openat(
                            &parent,
                            *c,
                            OFlag::O_CREAT
                                | OFlag::O_EXCL
                                | OFlag::O_WRONLY
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(0o644),
                        )
                        .map(drop)
                    } else {
                        mkdirat(&parent, *c, Mode::from_bits_truncate(0o755))
                    };
                    created.map_err(|e| err(format!("creating mountpoint /{next}"), e))?;
                    let fd = self
                        .resolve(&next, OFlag::empty())
                        .map_err(|e| err(format!("opening /{next}"), e))?;
                    if self.on_overlay(&fd) {
                        let real = fs::read_link(fd_path(&fd))
                            .map_err(|e| err("readlink", e))?
                            .to_string_lossy()
                            .into_owned();
                        let rel = real
                            .strip_prefix(&self.prefix)
                            .unwrap_or(&real)
                            .trim_start_matches('/')
                            .to_string();
                        stubs(rel, times(&before));
                    }
                    if last {
                        return Ok(fd);
                    }
                }
                Err(e) => return Err(err(format!("resolving /{next} in the rootfs"), e)),
            }
            prefix = next;
        }
        self.resolve("", OFlag::empty())
            .map_err(|e| err("opening the rootfs", e))
    }
}

/// Bind-mounts host `source` onto `target` (resolved in the root), then sets
/// nodev (and read-only).
fn bind(
    root: &Root,
    source: &Path,
    target: &str,
    readonly: bool,
    target_fd: OwnedFd,
) -> Result<(), String> {
    let src = source.to_str().ok_or("bind mount source is not UTF-8")?;
    mount_on(
        Some(src),
        &target_fd,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| err(format!("bind-mounting {src} on {target}"), e))?;
    drop(target_fd);
    let mounted = root
        .resolve(target, OFlag::empty())
        .map_err(|e| err(format!("opening {target}"), e))?;
    let attrs = MOUNT_ATTR_NODEV | if readonly { MOUNT_ATTR_RDONLY } else { 0 };
    set_mount_attrs(&mounted, attrs, true)
}

/// Masks paths under a kernel filesystem (proc, sys) like Docker: /dev/null
/// over files, an empty read-only tmpfs over directories.
fn mask(base: &OwnedFd, names: &[&str], what: &str) -> Result<(), String> {
    for name in names {
        let fd = match openat(
            base,
            *name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(err(format!("opening {what}/{name}"), e)),
        };
        let st = fstat(&fd).map_err(|e| err("stat", e))?;
        let r = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            mount_on(
                Some("tmpfs"),
                &fd,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0"),
            )
        } else {
            mount_on(Some("/dev/null"), &fd, None, MsFlags::MS_BIND, None)
        };
        r.map_err(|e| err(format!("masking {what}/{name}"), e))?;
    }
    Ok(())
}

/// Makes paths under /proc read-only (bind onto themselves, then read-only).
fn readonly(base: &OwnedFd, names: &[&str], what: &str) -> Result<(), String> {
    let open_it = |name: &str| {
        openat(
            base,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    for name in names {
        let fd = match open_it(name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(err(format!("opening {what}/{name}"), e)),
        };
        let p = fd_path(&fd);
        mount(
            Some(p.as_str()),
            p.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| err(format!("bind-mounting {what}/{name}"), e))?;
        let top = open_it(name).map_err(|e| err(format!("opening {what}/{name}"), e))?;
        set_mount_attrs(&top, MOUNT_ATTR_RDONLY, true)?;
    }
    Ok(())
}

fn is_char_device(p: &str) -> bool {
    fs::metadata(p)
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false)
}

fn mount_proc(root: &Root, stubs: StubSink) -> Result<(), String> {
    let dir = root.ensure("proc", Kind::Dir, stubs)?;
    mount_on(
        Some("proc"),
        &dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
    .map_err(|e| err("mounting /proc", e))?;
    let proc = root
        .resolve("proc", OFlag::O_DIRECTORY)
        .map_err(|e| err("opening /proc", e))?;
    mask(&proc, PROC_MASKED, "/proc")?;
    readonly(&proc, PROC_READONLY, "/proc")
}

fn mount_dev(root: &Root, stubs: StubSink) -> Result<(), String> {
    let dir = root.ensure("dev", Kind::Dir, stubs)?;
    mount_on(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(|e| err("mounting tmpfs on /dev", e))?;
    let dev = root
        .resolve("dev", OFlag::O_DIRECTORY)
        .map_err(|e| err("opening /dev", e))?;
    let dir_mode = Mode::from_bits_truncate(0o755);
    for name in DEVICES {
        let host = format!("/dev/{name}");
        if !is_char_device(&host) {
            continue;
        }
        let f = openat(
            &dev,
            *name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        )
        .map_err(|e| err(format!("creating /dev/{name}"), e))?;
        mount_on(Some(host.as_str()), &f, None, MsFlags::MS_BIND, None)
            .map_err(|e| err(format!("bind-mounting {host}"), e))?;
    }
    let sub = |name: &str| -> Result<OwnedFd, String> {
        mkdirat(&dev, name, dir_mode).map_err(|e| err(format!("creating /dev/{name}"), e))?;
        openat(
            &dev,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(format!("opening /dev/{name}"), e))
    };
    let pts = sub("pts")?;
    mount_on(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .map_err(|e| err("mounting devpts on /dev/pts", e))?;
    let shm = sub("shm")?;
    mount_on(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| err("mounting tmpfs on /dev/shm", e))?;
    let mq = sub("mqueue")?;
    if mount_on(
        Some("mqueue"),
        &mq,
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
    .is_err()
    {
        // Kernel without POSIX message queues: no /dev/mqueue.
        drop(mq);
        let _ = nix::unistd::unlinkat(&dev, "mqueue", nix::unistd::UnlinkatFlags::RemoveDir);
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlinkat(target, &dev, link).map_err(|e| err(format!("creating /dev/{link}"), e))?;
    }
    Ok(())
}

fn mount_sys(root: &Root, stubs: StubSink) -> Result<(), String> {
    let dir = root.ensure("sys", Kind::Dir, stubs)?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount_on(Some("sysfs"), &dir, Some("sysfs"), flags, None) {
        if e != Errno::EPERM {
            return Err(err("mounting sysfs on /sys", e));
        }
        // Not allowed to mount a sysfs (network namespace not ours): bind the
        // host's, read-only.
        bind(root, Path::new("/sys"), "sys", true, dir)?;
    }
    let sys = root
        .resolve("sys", OFlag::O_DIRECTORY)
        .map_err(|e| err("opening /sys", e))?;
    mask(&sys, SYS_MASKED, "/sys")
}

/// Bind-mounts `source` read-only on /etc/`name` if /etc exists in the rootfs.
fn mount_etc_file(root: &Root, name: &str, source: &Path, stubs: StubSink) -> Result<(), String> {
    let Ok(etc) = root.resolve("etc", OFlag::O_DIRECTORY) else {
        return Ok(());
    };
    let rel = format!("etc/{name}");
    let target = match root.resolve(&rel, OFlag::empty()) {
        Ok(fd) => {
            let st = fstat(&fd).map_err(|e| err("stat", e))?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
                return Ok(()); // a directory or a device: leave it alone
            }
            fd
        }
        Err(Errno::ENOENT) => {
            if fstatat(&etc, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
                return Ok(()); // a dangling symlink: leave it alone
            }
            root.ensure(&rel, Kind::File, stubs)?
        }
        Err(e) => return Err(err(format!("resolving /{rel}"), e)),
    };
    bind(root, source, &rel, true, target)
}

/// Everything from the scratch tmpfs to the last bind mount. Returns the
/// merged rootfs path to pivot into.
pub(crate) fn prepare(env: &Envelope, stubs: StubSink) -> Result<PathBuf, String> {
    let spec = &env.spec;
    let scratch = &env.scratch;
    mount(
        Some("tmpfs"),
        scratch,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700,size=8m"),
    )
    .map_err(|e| err(format!("mounting tmpfs on {}", scratch.display()), e))?;
    let root_path = scratch.join("root");
    fs::create_dir(&root_path).map_err(|e| err("creating the rootfs mountpoint", e))?;
    let mut files = Vec::new();
    for (name, content) in [("hosts", &spec.hosts), ("resolv.conf", &spec.resolv_conf)] {
        if let Some(c) = content {
            let p = scratch.join(name);
            fs::write(&p, c).map_err(|e| err(format!("writing {name}"), e))?;
            files.push((name, p));
        }
    }
    let lowers = if spec.lowerdirs.is_empty() {
        let empty = scratch.join("empty");
        fs::create_dir(&empty).map_err(|e| err("creating the empty lower dir", e))?;
        vec![empty]
    } else {
        spec.lowerdirs.clone()
    };
    overlay::mount(
        &lowers,
        Some((&spec.upperdir, &spec.workdir)),
        &root_path,
        MsFlags::MS_NODEV,
    )?;

    let root = Root::open(&root_path)?;
    mount_proc(&root, stubs)?;
    mount_dev(&root, stubs)?;
    mount_sys(&root, stubs)?;
    for (name, p) in &files {
        mount_etc_file(&root, name, p, stubs)?;
    }
    for m in &spec.mounts {
        let meta = fs::metadata(&m.source)
            .map_err(|e| err(format!("bind mount source {}", m.source.display()), e))?;
        let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
        let target = root.ensure(&m.target, kind, stubs)?;
        bind(&root, &m.source, &m.target, m.readonly, target)?;
    }
    Ok(root.path)
}

/// pivot_root into `new_root` and detach the old root (runc's
/// `pivot_root(".", ".")`: no directory for the old root is needed in the
/// rootfs).
pub(crate) fn pivot(new_root: &Path) -> Result<(), String> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old = open("/", flags, Mode::empty()).map_err(|e| err("opening /", e))?;
    let new = open(new_root, flags, Mode::empty()).map_err(|e| err("opening the rootfs", e))?;
    fchdir(&new).map_err(|e| err("chdir to the rootfs", e))?;
    pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    fchdir(&old).map_err(|e| err("chdir to the old root", e))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err("making the old root a slave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detaching the old root", e))?;
    chdir("/").map_err(|e| err("chdir /", e))?;
    drop(old);
    drop(new);
    Ok(())
}

/// Brings `lo` up (in a new network namespace it starts down).
pub(crate) fn loopback_up() -> Result<(), String> {
    // SAFETY: socket(2); the fd is owned right away.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(err("socket", std::io::Error::last_os_error()));
    }
    // SAFETY: `sock` is a fresh fd we own.
    let sock: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let name: &CStr = c"lo";
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.to_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS with a valid ifreq.
    unsafe {
        if libc::ioctl(sock.as_fd().as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(err("SIOCGIFFLAGS lo", std::io::Error::last_os_error()));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_fd().as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(err("bringing lo up", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::components;

    #[test]
    fn cleans_components() {
        assert_eq!(components("/a//b/./c/"), vec!["a", "b", "c"]);
        assert_eq!(components("../../etc/../x"), vec!["x"]);
        assert!(components("/").is_empty());
    }
}
