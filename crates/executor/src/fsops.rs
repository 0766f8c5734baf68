//! File operations (COPY, ADD, WORKDIR) on an image filesystem.
//!
//! The filesystem is an overlay mount (the parent layers below, a fresh
//! snapshot dir above) made on a thread that has its own mount namespace, so
//! the mount disappears with the thread whatever happens. Every path that
//! comes from the Dockerfile or the image is resolved with `openat2` and
//! `RESOLVE_IN_ROOT`: symlinks in the image are followed as if the mount were
//! `/`, never out of it (the class of bug behind runc CVE-2024-21626 and
//! BuildKit CVE-2024-23652).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn cstr(p: &[u8]) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

/// `openat2(dirfd, path, flags, mode, resolve)`.
fn openat2(dirfd: RawFd, path: &[u8], flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: u64::from(mode),
        resolve,
    };
    let c = cstr(if path.is_empty() { b"." } else { path })?;
    // SAFETY: `how` is a valid open_how of the size we pass; `c` is NUL-terminated.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens `path` below `dirfd` as if `dirfd` were `/`: symlinks re-rooted, `..` clamped.
fn open_in_root(dirfd: RawFd, path: &[u8], flags: i32, mode: u32) -> io::Result<OwnedFd> {
    openat2(
        dirfd,
        path,
        flags,
        mode,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// The path of an open descriptor, for APIs that take paths.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Ownership and mode to give created entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// A directory treated as `/`: the root of an image filesystem.
pub struct RootDir {
    fd: OwnedFd,
}

fn split_components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

impl RootDir {
    pub fn open(path: &Path) -> io::Result<RootDir> {
        let c = cstr(path.as_os_str().as_bytes())?;
        // SAFETY: plain open of a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: new descriptor we own.
        Ok(RootDir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Opens `path` inside the root (following symlinks inside it).
    pub fn open_path(&self, path: &str, flags: i32) -> io::Result<OwnedFd> {
        let rel = path.trim_start_matches('/');
        open_in_root(self.fd.as_raw_fd(), rel.as_bytes(), flags, 0)
    }

    /// Whether `path` exists and is a directory (following symlinks in the root).
    pub fn is_dir(&self, path: &str) -> bool {
        self.open_path(path, libc::O_PATH | libc::O_DIRECTORY)
            .is_ok()
    }

    /// `mkdir -p` inside the root; created directories get `mode` and `owner`.
    /// Symlinks on the way are followed as the kernel would if the root were
    /// `/` (absolute targets restart at the root, `..` stops at it), which is
    /// how `mkdir -p` inside the image behaves, and a dangling link gets its
    /// target created. Returns the final directory, opened.
    pub fn mkdir_all(&self, path: &str, mode: u32, owner: Owner) -> io::Result<OwnedFd> {
        use std::collections::VecDeque;
        let open_root = || self.open_path("/", libc::O_DIRECTORY | libc::O_RDONLY);
        let mut queue: VecDeque<String> = split_components(path)
            .into_iter()
            .map(String::from)
            .collect();
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut dir = open_root()?;
        let mut links = 0;
        while let Some(part) = queue.pop_front() {
            if part == ".." {
                dir = match stack.pop() {
                    Some(parent) => parent,
                    None => open_root()?,
                };
                continue;
            }
            match file_type_at(&dir, part.as_bytes())? {
                None => create_dir_at(&dir, part.as_bytes(), mode, owner)?,
                Some(libc::S_IFDIR) => {}
                Some(libc::S_IFLNK) => {
                    links += 1;
                    if links > 40 {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target =
                        nix::fcntl::readlinkat(&dir, part.as_str()).map_err(io::Error::from)?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        stack.clear();
                        dir = open_root()?;
                    }
                    for c in split_components(&target).into_iter().rev() {
                        queue.push_front(c.to_string());
                    }
                    continue;
                }
                Some(_) => {
                    return Err(io::Error::other(format!(
                        "cannot create directory {path}: {part} is not a directory"
                    )))
                }
            }
            let next = open_in_root(
                dir.as_raw_fd(),
                part.as_bytes(),
                libc::O_DIRECTORY | libc::O_RDONLY | libc::O_NOFOLLOW,
                0,
            )?;
            stack.push(std::mem::replace(&mut dir, next));
        }
        Ok(dir)
    }

    /// Reads a small file inside the root (e.g. `/etc/passwd`), `None` if absent.
    pub fn read_file(&self, path: &str, limit: u64) -> io::Result<Option<String>> {
        match self.open_path(path, libc::O_RDONLY) {
            Ok(fd) => {
                let mut s = String::new();
                File::from(fd).take(limit).read_to_string(&mut s)?;
                Ok(Some(s))
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

fn chown_at(dir: &OwnedFd, name: &[u8], owner: Owner, follow: bool) -> io::Result<()> {
    let c = cstr(name)?;
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: valid dirfd and NUL-terminated name.
    check(unsafe { libc::fchownat(dir.as_raw_fd(), c.as_ptr(), owner.uid, owner.gid, flags) })
}

fn chmod_at(dir: &OwnedFd, name: &[u8], mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid dirfd and NUL-terminated name.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode, 0) })
}

/// The type bits (`S_IFMT`) of `name` in `dir` without following a
/// symlink; `None` when there is no such entry.
pub(crate) fn file_type_at(dir: &OwnedFd, name: &[u8]) -> io::Result<Option<libc::mode_t>> {
    let c = cstr(name)?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid dirfd, NUL-terminated name, writable stat buffer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(st.st_mode & libc::S_IFMT))
}

/// `mkdir` of `name` in `dir` with `mode` and `owner`.
fn create_dir_at(dir: &OwnedFd, name: &[u8], mode: u32, owner: Owner) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid dirfd and name.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) })?;
    chown_at(dir, name, owner, false)?;
    chmod_at(dir, name, mode)
}

/// Removes whatever non-directory entry is at `name` (COPY replaces files and
/// links; a directory is merged into instead).
fn remove_non_dir(dir: &OwnedFd, name: &[u8]) -> io::Result<bool> {
    match file_type_at(dir, name)? {
        None => Ok(false),
        Some(libc::S_IFDIR) => Ok(true),
        Some(_) => {
            let c = cstr(name)?;
            // SAFETY: valid dirfd and NUL-terminated name.
            check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) })?;
            Ok(false)
        }
    }
}

/// Creates (or opens) directory `name` in `dir` without following a
/// symlink. `None` when `name` is a symlink: the caller resolves it inside
/// the root instead (see [`RootDir::mkdir_all`]).
pub fn mkdir_in(dir: &OwnedFd, name: &str, mode: u32, owner: Owner) -> io::Result<Option<OwnedFd>> {
    match file_type_at(dir, name.as_bytes())? {
        None => create_dir_at(dir, name.as_bytes(), mode, owner)?,
        Some(libc::S_IFLNK) => return Ok(None),
        Some(libc::S_IFDIR) => {}
        Some(_) => {
            remove_non_dir(dir, name.as_bytes())?;
            create_dir_at(dir, name.as_bytes(), mode, owner)?;
        }
    }
    open_in_root(
        dir.as_raw_fd(),
        name.as_bytes(),
        libc::O_DIRECTORY | libc::O_RDONLY | libc::O_NOFOLLOW,
        0,
    )
    .map(Some)
}

/// How copied entries are owned and moded.
#[derive(Debug, Clone, Copy)]
pub struct CopyAttrs {
    /// `None`: 0:0 (COPY's default: context files are never copied with their owners).
    pub owner: Option<Owner>,
    /// `--chmod`: applied to every copied file and directory.
    pub mode: Option<u32>,
    /// Keep the source's owners (COPY --from copies a stage's files as they are).
    pub preserve_owner: bool,
}

/// Copies the host entry `src` (never following a symlink it finds) to
/// `name` inside the directory `dst_dir`, recursively.
pub fn copy_entry(
    src: &Path,
    meta: &std::fs::Metadata,
    dst_dir: &OwnedFd,
    name: &OsStr,
    attrs: CopyAttrs,
) -> io::Result<()> {
    let name_b = name.as_bytes();
    let owner = match (attrs.owner, attrs.preserve_owner) {
        (Some(o), _) => o,
        (None, true) => Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        },
        (None, false) => Owner { uid: 0, gid: 0 },
    };
    let ft = meta.file_type();
    let perm = meta.mode() & 0o7777;
    let mode = attrs.mode.unwrap_or(perm);
    let c = cstr(name_b)?;
    if ft.is_dir() {
        let is_dir = remove_non_dir(dst_dir, name_b)?;
        if !is_dir {
            // SAFETY: valid dirfd and name.
            check(unsafe { libc::mkdirat(dst_dir.as_raw_fd(), c.as_ptr(), 0o700) })?;
        }
        let sub = open_dir_at(dst_dir, name_b)?;
        let mut children: Vec<_> = std::fs::read_dir(src)?.collect::<Result<_, _>>()?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let cmeta = child.path().symlink_metadata()?;
            copy_entry(&child.path(), &cmeta, &sub, &child.file_name(), attrs)?;
        }
        return set_attrs(dst_dir, name_b, owner, mode, meta);
    }
    remove_non_dir(dst_dir, name_b)?;
    if ft.is_symlink() {
        let target = cstr(std::fs::read_link(src)?.as_os_str().as_bytes())?;
        // SAFETY: valid strings and dirfd.
        check(unsafe { libc::symlinkat(target.as_ptr(), dst_dir.as_raw_fd(), c.as_ptr()) })?;
        chown_at(dst_dir, name_b, owner, false)?;
        set_times(dst_dir, name_b, meta, true)?;
    } else if ft.is_file() {
        // File to File, so that std copies in the kernel (copy_file_range,
        // or sendfile) instead of through an 8 KiB buffer.
        let mut input = File::open(src)?;
        let mut out = create_file(dst_dir, name_b)?;
        io::copy(&mut input, &mut out)?;
        finish_file(&out, mode, owner)?;
        drop(out);
        set_times(dst_dir, name_b, meta, false)?;
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() || ft.is_socket() {
        if ft.is_socket() {
            return Ok(()); // sockets are not copied (as in Docker)
        }
        let kind = if ft.is_fifo() {
            libc::S_IFIFO
        } else if ft.is_char_device() {
            libc::S_IFCHR
        } else {
            libc::S_IFBLK
        };
        // SAFETY: valid dirfd and name.
        check(unsafe {
            libc::mknodat(
                dst_dir.as_raw_fd(),
                c.as_ptr(),
                kind | (mode & 0o777),
                meta.rdev(),
            )
        })?;
        chown_at(dst_dir, name_b, owner, false)?;
        set_times(dst_dir, name_b, meta, false)?;
    }
    Ok(())
}

fn set_times(
    dir: &OwnedFd,
    name: &[u8],
    meta: &std::fs::Metadata,
    nofollow: bool,
) -> io::Result<()> {
    let c = cstr(name)?;
    let ts = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    let flags = if nofollow {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        0
    };
    // SAFETY: valid dirfd, name and a two-element timespec array.
    check(unsafe { libc::utimensat(dir.as_raw_fd(), c.as_ptr(), ts.as_ptr(), flags) })
}

/// Creates file `name` in `dir` (replacing a non-directory entry), empty and
/// private until [`finish_file`] gives it its owner and mode. `O_EXCL` and
/// `O_NOFOLLOW` mean a link planted at `name` is never followed.
fn create_file(dir: &OwnedFd, name: &[u8]) -> io::Result<File> {
    remove_non_dir(dir, name)?;
    let c = cstr(name)?;
    // SAFETY: valid dirfd and name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: new descriptor we own.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn finish_file(file: &File, mode: u32, owner: Owner) -> io::Result<()> {
    // chown before chmod: chown clears setuid bits.
    nix::unistd::fchown(file, Some(owner.uid.into()), Some(owner.gid.into()))
        .map_err(io::Error::from)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// Writes `content` as file `name` in `dir` (COPY heredocs, ADD downloads).
pub fn write_file(
    dir: &OwnedFd,
    name: impl AsRef<OsStr>,
    content: &mut dyn Read,
    mode: u32,
    owner: Owner,
) -> io::Result<()> {
    let mut out = create_file(dir, name.as_ref().as_bytes())?;
    io::copy(content, &mut out)?;
    finish_file(&out, mode, owner)
}

/// Whether `name` exists in `dir` (any type, not followed).
pub fn exists_at(dir: &OwnedFd, name: &str) -> io::Result<bool> {
    Ok(file_type_at(dir, name.as_bytes())?.is_some())
}

pub fn unlink_at(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let c = cstr(name.as_bytes())?;
    // SAFETY: valid dirfd and NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) })
}

/// Hardlinks `src_name` in `src_dir` (not followed) as `name` in `dir`.
pub(crate) fn link_named(
    src_dir: &OwnedFd,
    src_name: &[u8],
    dir: &OwnedFd,
    name: &[u8],
) -> io::Result<()> {
    let from = cstr(src_name)?;
    let to = cstr(name)?;
    // SAFETY: valid descriptors and NUL-terminated names.
    check(unsafe {
        libc::linkat(
            src_dir.as_raw_fd(),
            from.as_ptr(),
            dir.as_raw_fd(),
            to.as_ptr(),
            0,
        )
    })
}

/// Opens `name` in `dir` as an `O_PATH` descriptor, not following a symlink.
pub(crate) fn open_file_path_at(dir: &OwnedFd, name: &[u8]) -> io::Result<OwnedFd> {
    open_in_root(dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)
}

/// Opens directory `name` in `dir`, not following a symlink.
pub(crate) fn open_dir_at(dir: &OwnedFd, name: &[u8]) -> io::Result<OwnedFd> {
    open_in_root(
        dir.as_raw_fd(),
        name,
        libc::O_DIRECTORY | libc::O_RDONLY | libc::O_NOFOLLOW,
        0,
    )
}

/// `mkdir` of `name` in `dir`, private (0700) until [`set_attrs`] runs
/// after its contents are in place, as [`copy_entry`] does.
pub(crate) fn mkdir_private(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid dirfd and name.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o700) })
}

/// Gives `name` in `dir` (not a symlink) its owner, mode and `meta`'s times.
pub(crate) fn set_attrs(
    dir: &OwnedFd,
    name: &[u8],
    owner: Owner,
    mode: u32,
    meta: &std::fs::Metadata,
) -> io::Result<()> {
    chown_at(dir, name, owner, false)?;
    chmod_at(dir, name, mode)?;
    set_times(dir, name, meta, false)
}

/// Hardlinks the inode open as `src` (an `O_PATH` descriptor) as `name` in `dir`.
pub fn link_at(src: &OwnedFd, dir: &OwnedFd, name: &str) -> io::Result<()> {
    let c = cstr(name.as_bytes())?;
    let empty = cstr(b"")?;
    // SAFETY: valid descriptors and NUL-terminated names; AT_EMPTY_PATH links `src` itself.
    check(unsafe {
        libc::linkat(
            src.as_raw_fd(),
            empty.as_ptr(),
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    })
}

pub(crate) fn is_opaque(dir: &OwnedFd) -> bool {
    let attr = cstr(b"trusted.overlay.opaque").expect("no NUL");
    let mut v = [0u8; 1];
    // SAFETY: valid fd, NUL-terminated name, 1-byte buffer.
    let n = unsafe { libc::fgetxattr(dir.as_raw_fd(), attr.as_ptr(), v.as_mut_ptr().cast(), 1) };
    n == 1 && v[0] == b'y'
}

/// The upper dir's own directory for the merged directory `merged` (at
/// `rel` below the mount), copying it up through the overlay first when it
/// exists only in a lower layer. `None` if that does not give a directory.
pub fn upper_dir(upper: &Path, rel: &Path, merged: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    let upper_root = open_dir_abs(upper)?;
    let rel_bytes = rel.as_os_str().as_bytes();
    let open = || open_beneath(&upper_root, rel_bytes);
    match open() {
        Ok(d) => return Ok(Some(d)),
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Ok(None),
        Err(_) => {}
    }
    // A metadata change through the overlay copies the directory (and its
    // parents) up.
    let st = nix::sys::stat::fstat(merged).map_err(io::Error::from)?;
    nix::unistd::fchown(merged, Some(st.st_uid.into()), Some(st.st_gid.into()))
        .map_err(io::Error::from)?;
    Ok(open().ok())
}

/// Opens one of rbuild's own directories (a snapshot, an upper dir) by its
/// absolute path.
pub(crate) fn open_dir_abs(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: plain open of a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens directory `rel` below `root` without following any symlink.
fn open_beneath(root: &OwnedFd, rel: &[u8]) -> io::Result<OwnedFd> {
    openat2(
        root.as_raw_fd(),
        rel,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH,
    )
}

/// Runs `f` on a thread with a private mount namespace: every mount it makes
/// vanishes when it returns, panics or the process dies.
pub fn with_private_mounts<T: Send>(f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(
                nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_FS,
            )
            .map_err(io::Error::from)?;
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(io::Error::from)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("file operation thread panicked")))
    })
}

/// Mounts an overlay of `lowers` (topmost first) at `target`: writable into
/// `upper`/`work` when given, read-only otherwise. With no lowers, `empty`
/// stands in. Call it on a thread whose working directory is its own
/// (`CLONE_FS` unshared, as [`with_private_mounts`] does): long option
/// strings make it `chdir`.
pub fn mount_overlay(
    lowers: &[PathBuf],
    rw: Option<(&Path, &Path)>,
    target: &Path,
    empty: &Path,
) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    let mut lowers: Vec<PathBuf> = lowers.to_vec();
    if lowers.is_empty() {
        lowers.push(empty.to_path_buf());
    }
    match rw {
        None if lowers.len() == 1 => {
            // One read-only layer: a bind mount is enough (overlay wants two lowers without an upper).
            mount(
                Some(&lowers[0]),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(io::Error::from)?;
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(io::Error::from)
        }
        rw => {
            let flags = match rw {
                Some(_) => MsFlags::empty(),
                None => MsFlags::MS_RDONLY,
            };
            crate::overlay::mount(&lowers, rw, target, flags).map_err(io::Error::other)
        }
    }
}

/// Go's `filepath.Match` for one path component (`*`, `?`, `[...]`, `\`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(&c) = n.first() else { return false };
                let mut i = 1;
                let negate = p.get(1) == Some(&'^');
                if negate {
                    i += 1;
                }
                let mut matched = false;
                let mut first = true;
                while i < p.len() && (p[i] != ']' || first) {
                    first = false;
                    let lo = if p[i] == '\\' && i + 1 < p.len() {
                        i += 1;
                        p[i]
                    } else {
                        p[i]
                    };
                    let mut hi = lo;
                    if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                        hi = p[i + 2];
                        i += 2;
                    }
                    if lo <= c && c <= hi {
                        matched = true;
                    }
                    i += 1;
                }
                if i >= p.len() {
                    return false;
                }
                matched != negate && go(&p[i + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

pub fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("\\*", "*"));
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // A hostile image: /etc points at an absolute host path.
        std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        let r = RootDir::open(&root).unwrap();
        let owner = Owner { uid: 0, gid: 0 };
        let dir = r.mkdir_all("/etc/app", 0o755, owner).unwrap();
        write_file(&dir, "conf", &mut "x".as_bytes(), 0o644, owner).unwrap();
        let dir = r.mkdir_all("/up/escaped", 0o755, owner).unwrap();
        drop(dir);
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing was written outside"
        );
        // The absolute symlink target was re-rooted: `<root>/<outside path>/app/conf`.
        let rerooted = root
            .join(outside.strip_prefix("/").unwrap())
            .join("app/conf");
        assert_eq!(std::fs::read_to_string(rerooted).unwrap(), "x");
        assert!(root.join("escaped").is_dir());
    }
}
