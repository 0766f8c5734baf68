//! fd-relative file system helpers for the layer code.
//!
//! Everything here works on a directory fd plus one path *component*, never
//! on a multi-component path string: layer content is hostile, and a path
//! string is re-resolved by the kernel on every call, following any symlink
//! the content planted in it. Extended attributes have no `*at` system call,
//! so for entries we cannot open (symlinks, devices) they go through
//! `/proc/self/fd/<dirfd>/<name>` with the `l*xattr` calls: the parent is
//! pinned by the fd and the last component is not followed.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use nix::unistd::UnlinkatFlags;

/// Extended attributes as (name, value) pairs, sorted by name.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Where an xattr call applies: an open fd, or a name in an open dir.
#[derive(Clone, Copy)]
pub(crate) enum XTarget<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Call `f` with a growing buffer until the kernel's answer fits (the size
/// can change between the size query and the read: ERANGE means retry).
fn sized_call(mut f: impl FnMut(*mut libc::c_void, usize) -> isize) -> io::Result<Option<Vec<u8>>> {
    loop {
        let n = f(std::ptr::null_mut(), 0);
        if n < 0 {
            return match io::Error::last_os_error() {
                e if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::ENOTSUP)) => Ok(None),
                e => Err(e),
            };
        }
        let mut buf = vec![0u8; n as usize];
        if buf.is_empty() {
            return Ok(Some(buf));
        }
        let m = f(buf.as_mut_ptr().cast(), buf.len());
        if m < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) => continue,
                Some(libc::ENODATA | libc::ENOTSUP) => return Ok(None),
                _ => return Err(e),
            }
        }
        buf.truncate(m as usize);
        return Ok(Some(buf));
    }
}

/// All xattrs of the target, sorted by name (for deterministic output).
pub(crate) fn list_xattrs(t: XTarget<'_>) -> io::Result<Xattrs> {
    let path = match t {
        XTarget::At(d, n) => Some(proc_path(d, n)?),
        XTarget::Fd(_) => None,
    };
    let names = sized_call(|buf, len| match (&t, &path) {
        // SAFETY: `buf` is null with len 0, or a live buffer of `len` bytes.
        (XTarget::Fd(fd), _) => unsafe { libc::flistxattr(fd.as_raw_fd(), buf.cast(), len) },
        (XTarget::At(..), Some(p)) => unsafe { libc::llistxattr(p.as_ptr(), buf.cast(), len) },
        _ => unreachable!(),
    })?
    .unwrap_or_default();
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = cstr(name)?;
        let value = sized_call(|buf, len| match (&t, &path) {
            // SAFETY: as above; `cname` is NUL-terminated.
            (XTarget::Fd(fd), _) => unsafe {
                libc::fgetxattr(fd.as_raw_fd(), cname.as_ptr(), buf, len)
            },
            (XTarget::At(..), Some(p)) => unsafe {
                libc::lgetxattr(p.as_ptr(), cname.as_ptr(), buf, len)
            },
            _ => unreachable!(),
        })?;
        // Removed between list and get: it is simply not there.
        if let Some(v) = value {
            out.push((name.to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// Set one xattr (replacing any value).
pub(crate) fn set_xattr(t: XTarget<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let cname = cstr(name)?;
    // SAFETY: pointers to live, correctly sized buffers; C strings are
    // NUL-terminated.
    let rc = match t {
        XTarget::Fd(fd) => unsafe {
            libc::fsetxattr(
                fd.as_raw_fd(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        },
        XTarget::At(d, n) => {
            let p = proc_path(d, n)?;
            unsafe {
                libc::lsetxattr(
                    p.as_ptr(),
                    cname.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            }
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Open a directory under `dir` without following a symlink at `name`.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// `lstat` of `name` in `dir`; `None` if it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> nix::Result<Option<FileStat>> {
    match fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Names in a directory (without `.` and `..`), unsorted.
pub(crate) fn read_dir_names(dir: BorrowedFd<'_>) -> nix::Result<Vec<Vec<u8>>> {
    let mut d = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

/// Remove `name` from `dir` whatever it is, recursing into directories
/// through fds (never following symlinks), like `rm -rf` confined to `dir`.
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> nix::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let sub = open_dir_at(dir, name)?;
        for child in read_dir_names(sub.as_fd())? {
            remove_all_at(sub.as_fd(), &child)?;
        }
        nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir)
    } else {
        nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
    }
}
