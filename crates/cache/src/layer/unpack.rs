//! OCI layer tar → overlay-format snapshot dir.
//!
//! The archive is hostile. Confinement does not rely on checking path
//! strings and then handing them to the kernel: every entry is created with
//! an `*at` call relative to an fd of its parent directory, and that fd is
//! reached from the destination's fd one component at a time with
//! `O_NOFOLLOW|O_DIRECTORY`. A symlink planted by an earlier entry therefore
//! makes a later entry *fail* (ELOOP/ENOTDIR) instead of redirecting it, and
//! `..` components are refused outright. Symlinks themselves are created
//! verbatim (their targets are only ever resolved inside the container's
//! root); hard links must name an entry already inside the destination, and
//! are made with `linkat` without `AT_SYMLINK_FOLLOW`, so linking to a
//! symlink links the symlink itself.
//!
//! OCI whiteouts become overlayfs ones: `.wh.<name>` → a 0/0 character
//! device `<name>`, `.wh..wh..opq` → `trusted.overlay.opaque=y` on the
//! directory. `trusted.overlay.*` xattrs carried by the archive itself are
//! dropped: a layer must not be able to forge overlay metadata (redirects
//! in particular).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, makedev, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};

use super::sys::{self, XTarget, Xattrs};
use crate::digest::HashingReader;
use crate::CacheError;

/// Unpack an uncompressed OCI layer tar stream into `dest` (normally an
/// empty snapshot dir), converting OCI whiteouts to overlayfs whiteouts so
/// that `dest` can serve directly as an overlayfs lowerdir. Returns the
/// diff_id (sha256 of the tar stream as read, including the end-of-archive
/// blocks and any padding after them), computed in the same pass.
///
/// Entries may be absolute (made relative) but may not contain `..`, pass
/// through a symlink, or hard-link outside `dest`: such an entry is an
/// error (and nothing is ever created outside `dest`). Ownership (numeric
/// ids only), modes including setuid/setgid/sticky, mtimes, xattrs, device
/// nodes and fifos are restored; creating device nodes and setting ownership
/// and `trusted.*` xattrs needs root. On error `dest` holds a partial tree
/// that the caller discards.
pub fn unpack_layer(reader: impl Read, dest: &Path) -> Result<String, CacheError> {
    let root: OwnedFd = File::open(dest)
        .map_err(|e| CacheError::io("open", dest, e))?
        .into();
    let mut hashed = HashingReader::new(reader);
    {
        let mut archive = tar::Archive::new(&mut hashed);
        let mut u = Unpacker {
            root: Rc::new(root),
            dest,
            cached_parent: None,
            dirs: Vec::new(),
        };
        let entries = archive.entries().map_err(|e| u.archive_err(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| u.archive_err(e))?;
            u.entry(&mut entry)?;
        }
        u.finish_dirs()?;
    }
    // The tar reader stops at the first end-of-archive block; the diff_id
    // covers the stream to its end.
    io::copy(&mut hashed, &mut io::sink()).map_err(|source| CacheError::Archive {
        dest: dest.to_path_buf(),
        source,
    })?;
    Ok(hashed.finish().0)
}

/// Path components of an archive path, or why it is refused.
fn components(raw: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut out = Vec::new();
    // Leading `/` are dropped (absolute → relative), `.` and empty
    // components (`./a`, `a//b`, `a/`) are no-ops.
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains a `..` component"),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Metadata of an entry, PAX extensions applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Xattrs,
}

struct Unpacker<'d> {
    root: Rc<OwnedFd>,
    dest: &'d Path,
    /// The parent dir of the previous entry: archives list siblings
    /// together, so this saves re-walking the path for most entries.
    /// Invalidated whenever something is removed.
    cached_parent: Option<(Vec<Vec<u8>>, Rc<OwnedFd>)>,
    /// Directories whose mode and mtime are applied at the end: creating
    /// children changes a dir's mtime, and a read-only dir mode would stop a
    /// non-root unpack from creating them.
    dirs: Vec<(Vec<Vec<u8>>, u32, TimeSpec)>,
}

impl Unpacker<'_> {
    fn archive_err(&self, source: io::Error) -> CacheError {
        CacheError::Archive {
            dest: self.dest.to_path_buf(),
            source,
        }
    }

    fn unsafe_entry(&self, entry: &[u8], reason: impl Into<String>) -> CacheError {
        CacheError::UnsafeEntry {
            entry: lossy(entry),
            dest: self.dest.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn entry_err(&self, entry: &[u8], op: &'static str, e: impl Into<io::Error>) -> CacheError {
        let source: io::Error = e.into();
        // ELOOP/ENOTDIR while resolving means the archive tried to go
        // through a symlink or a file: report it as the attack it is.
        match source.raw_os_error() {
            Some(libc::ELOOP) => {
                self.unsafe_entry(entry, format!("{op}: path goes through a symlink"))
            }
            _ => CacheError::Entry {
                entry: lossy(entry),
                dest: self.dest.to_path_buf(),
                op,
                source,
            },
        }
    }

    /// An fd for the directory `comps` under the root, reached without
    /// following symlinks; missing directories are created (0755, like tar
    /// does for implied parents) when `create`.
    fn dir(
        &mut self,
        comps: &[Vec<u8>],
        create: bool,
        entry: &[u8],
    ) -> Result<Rc<OwnedFd>, CacheError> {
        if let Some((c, fd)) = &self.cached_parent {
            if c.as_slice() == comps {
                return Ok(fd.clone());
            }
        }
        let mut cur = self.root.clone();
        for c in comps {
            let next = match sys::open_dir_at(cur.as_fd(), c) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    match nix::sys::stat::mkdirat(
                        cur.as_fd(),
                        c.as_slice(),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(self.entry_err(entry, "create parent dir", e)),
                    }
                    sys::open_dir_at(cur.as_fd(), c)
                        .map_err(|e| self.entry_err(entry, "open parent dir", e))?
                }
                Err(Errno::ENOTDIR) => {
                    return Err(self
                        .unsafe_entry(entry, format!("parent {:?} is not a directory", lossy(c))))
                }
                Err(e) => return Err(self.entry_err(entry, "open parent dir", e)),
            };
            cur = Rc::new(next);
        }
        self.cached_parent = Some((comps.to_vec(), cur.clone()));
        Ok(cur)
    }

    /// Remove whatever is at `name` in `dir` (an entry replacing an earlier
    /// one of the same archive).
    fn clear(&mut self, dir: BorrowedFd<'_>, name: &[u8], entry: &[u8]) -> Result<(), CacheError> {
        if sys::lstat_at(dir, name)
            .map_err(|e| self.entry_err(entry, "lstat", e))?
            .is_some()
        {
            self.cached_parent = None;
            sys::remove_all_at(dir, name)
                .map_err(|e| self.entry_err(entry, "remove existing", e))?;
        }
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<Meta, CacheError> {
        let h = entry.header();
        // A numeric field left blank (all NULs or spaces) reads as 0, as in
        // GNU tar and Go's archive/tar; other garbage is an error.
        let field = |r: io::Result<u64>, bytes: &[u8]| match r {
            Ok(v) => Ok(v),
            Err(_) if bytes.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
            Err(e) => Err(self.entry_err(raw, "read header", e)),
        };
        let old = h.as_old();
        // PAX uid/gid have already been folded into the header by `tar`.
        let uid = field(h.uid(), &old.uid)?;
        let gid = field(h.gid(), &old.gid)?;
        let mode = field(h.mode().map(u64::from), &old.mode)? as u32 & 0o7777;
        let mut mtime = TimeSpec::new(field(h.mtime(), &old.mtime)? as i64, 0);
        let mut xattrs = Vec::new();
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| self.entry_err(raw, "read PAX header", e))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| self.entry_err(raw, "read PAX header", e))?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                        mtime = t;
                    }
                }
            }
        }
        let id = |v: u64| {
            u32::try_from(v)
                .map_err(|_| self.unsafe_entry(raw, format!("owner id {v} out of range")))
        };
        Ok(Meta {
            mode,
            uid: id(uid)?,
            gid: id(gid)?,
            mtime,
            xattrs,
        })
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), CacheError> {
        use tar::EntryType as T;
        let raw = entry.path_bytes().into_owned();
        let mut kind = entry.header().entry_type();
        match kind {
            // Global PAX headers and GNU volume labels ('V') describe no
            // file.
            T::XGlobalHeader => return Ok(()),
            _ if kind.as_byte() == b'V' => return Ok(()),
            // Pre-POSIX archives mark directories by a trailing slash only.
            T::Regular if raw.ends_with(b"/") => kind = T::Directory,
            _ => {}
        }
        let comps = components(&raw).map_err(|r| self.unsafe_entry(&raw, r))?;
        let meta = self.meta(entry, &raw)?;

        let Some((name, parent)) = comps.split_last() else {
            // The archive's root (`./`): its metadata goes on `dest` itself.
            if kind != T::Directory {
                return Err(self.unsafe_entry(&raw, "the root entry is not a directory"));
            }
            let root = self.root.clone();
            self.owner_and_xattrs(&raw, XTarget::Fd(root.as_fd()), &meta, None)?;
            self.dirs.push((Vec::new(), meta.mode, meta.mtime));
            return Ok(());
        };

        if let Some(hidden) = name.strip_prefix(b".wh.") {
            return self.whiteout(&raw, parent, hidden, &meta);
        }

        let pdir = self.dir(parent, true, &raw)?;
        let pfd = pdir.as_fd();
        match kind {
            T::Directory => {
                match sys::lstat_at(pfd, name).map_err(|e| self.entry_err(&raw, "lstat", e))? {
                    // An existing dir is kept (and its metadata updated).
                    Some(st) if sys::is_dir(&st) => {}
                    other => {
                        if other.is_some() {
                            self.clear(pfd, name, &raw)?;
                        }
                        nix::sys::stat::mkdirat(
                            pfd,
                            name.as_slice(),
                            Mode::from_bits_truncate(0o700),
                        )
                        .map_err(|e| self.entry_err(&raw, "mkdir", e))?;
                    }
                }
                let fd =
                    sys::open_dir_at(pfd, name).map_err(|e| self.entry_err(&raw, "open dir", e))?;
                self.owner_and_xattrs(&raw, XTarget::Fd(fd.as_fd()), &meta, None)?;
                self.dirs.push((comps.clone(), meta.mode, meta.mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                self.clear(pfd, name, &raw)?;
                let fd = openat(
                    pfd,
                    name.as_slice(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.entry_err(&raw, "create file", e))?;
                let mut file = File::from(fd);
                // Streamed: a layer's files are never held in memory.
                io::copy(entry, &mut file).map_err(|e| self.entry_err(&raw, "write file", e))?;
                self.owner_and_xattrs(&raw, XTarget::Fd(file.as_fd()), &meta, Some(&file))?;
                nix::sys::stat::futimens(&file, &meta.mtime, &meta.mtime)
                    .map_err(|e| self.entry_err(&raw, "set mtime", e))?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_entry(&raw, "symlink without a target"))?
                    .into_owned();
                if target.is_empty() || target.contains(&0) {
                    return Err(self.unsafe_entry(&raw, "invalid symlink target"));
                }
                self.clear(pfd, name, &raw)?;
                nix::unistd::symlinkat(target.as_slice(), pfd, name.as_slice())
                    .map_err(|e| self.entry_err(&raw, "symlink", e))?;
                self.owner_and_xattrs(&raw, XTarget::At(pfd, name), &meta, None)?;
                utimensat(
                    pfd,
                    name.as_slice(),
                    &meta.mtime,
                    &meta.mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| self.entry_err(&raw, "set mtime", e))?;
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_entry(&raw, "hard link without a target"))?
                    .into_owned();
                let tcomps = components(&target)
                    .map_err(|r| self.unsafe_entry(&raw, format!("hard link target: {r}")))?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(self.unsafe_entry(&raw, "hard link to the root"));
                };
                if tcomps == comps {
                    return Ok(());
                }
                let tdir = self.dir(tparent, false, &raw)?;
                // `pdir` may have been evicted from the cache but is still
                // a valid fd; re-resolve nothing.
                if sys::lstat_at(tdir.as_fd(), tname)
                    .map_err(|e| self.entry_err(&raw, "lstat link target", e))?
                    .is_none()
                {
                    return Err(self.unsafe_entry(&raw, "hard link target is not in the layer"));
                }
                self.clear(pfd, name, &raw)?;
                nix::unistd::linkat(
                    tdir.as_fd(),
                    tname.as_slice(),
                    pfd,
                    name.as_slice(),
                    AtFlags::empty(),
                )
                .map_err(|e| self.entry_err(&raw, "hard link", e))?;
            }
            T::Char | T::Block | T::Fifo => {
                let h = entry.header();
                let dev = match kind {
                    T::Fifo => 0,
                    _ => {
                        let major = h.device_major().ok().flatten().unwrap_or(0);
                        let minor = h.device_minor().ok().flatten().unwrap_or(0);
                        makedev(u64::from(major), u64::from(minor))
                    }
                };
                let sflag = match kind {
                    T::Char => SFlag::S_IFCHR,
                    T::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                self.clear(pfd, name, &raw)?;
                mknodat(
                    pfd,
                    name.as_slice(),
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    dev,
                )
                .map_err(|e| self.entry_err(&raw, "mknod", e))?;
                self.owner_and_xattrs(&raw, XTarget::At(pfd, name), &meta, None)?;
                utimensat(
                    pfd,
                    name.as_slice(),
                    &meta.mtime,
                    &meta.mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| self.entry_err(&raw, "set mtime", e))?;
            }
            other => {
                return Err(CacheError::Unsupported {
                    what: format!(
                        "tar entry type {:?} for {:?}",
                        other.as_byte() as char,
                        lossy(&raw)
                    ),
                    path: self.dest.to_path_buf(),
                })
            }
        }
        Ok(())
    }

    /// Ownership, then mode, then xattrs, in that order: chown clears
    /// setuid/setgid and `security.capability`, so both must come after it.
    /// `file` is the open regular file, if any (mode via fchmod); for
    /// directories the mode is applied at the end; for other non-symlinks it
    /// is set through the parent fd.
    fn owner_and_xattrs(
        &self,
        raw: &[u8],
        t: XTarget<'_>,
        meta: &Meta,
        file: Option<&File>,
    ) -> Result<(), CacheError> {
        let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
        match t {
            XTarget::Fd(fd) => nix::unistd::fchown(fd, uid, gid),
            XTarget::At(d, n) => fchownat(d, n, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW),
        }
        .map_err(|e| self.entry_err(raw, "chown", e))?;
        let mode = Mode::from_bits_truncate(meta.mode);
        if let Some(f) = file {
            fchmod(f, mode).map_err(|e| self.entry_err(raw, "chmod", e))?;
        } else if let XTarget::At(d, n) = t {
            let is_link = sys::lstat_at(d, n)
                .map_err(|e| self.entry_err(raw, "lstat", e))?
                .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
            if !is_link {
                // Just created by us as a device/fifo, so following is moot.
                nix::sys::stat::fchmodat(d, n, mode, nix::sys::stat::FchmodatFlags::FollowSymlink)
                    .map_err(|e| self.entry_err(raw, "chmod", e))?;
            }
        }
        for (name, value) in &meta.xattrs {
            if name.starts_with(b"trusted.overlay.") {
                continue;
            }
            match sys::set_xattr(t, name, value) {
                Ok(()) => {}
                // The filesystem has no such namespace (e.g. security.selinux
                // without SELinux): nothing to preserve it in.
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
                Err(e) => return Err(self.entry_err(raw, "set xattr", e)),
            }
        }
        Ok(())
    }

    fn whiteout(
        &mut self,
        raw: &[u8],
        parent: &[Vec<u8>],
        hidden: &[u8],
        meta: &Meta,
    ) -> Result<(), CacheError> {
        if hidden == b".wh..opq" {
            let dir = self.dir(parent, true, raw)?;
            return sys::set_xattr(XTarget::Fd(dir.as_fd()), b"trusted.overlay.opaque", b"y")
                .map_err(|e| self.entry_err(raw, "mark dir opaque", e));
        }
        if hidden.starts_with(b".wh.") {
            // Other `.wh..wh.` names are AUFS bookkeeping (`.wh..wh.plnk`,
            // `.wh..wh.aufs`): nothing to create.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.unsafe_entry(raw, "whiteout names no file"));
        }
        let dir = self.dir(parent, true, raw)?;
        self.clear(dir.as_fd(), hidden, raw)?;
        mknodat(
            dir.as_fd(),
            hidden,
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(|e| self.entry_err(raw, "create whiteout", e))?;
        fchownat(
            dir.as_fd(),
            hidden,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.entry_err(raw, "chown whiteout", e))
    }

    /// Apply directory modes and mtimes now that nothing more is created in
    /// them. A dir that a later entry replaced is skipped.
    fn finish_dirs(&mut self) -> Result<(), CacheError> {
        self.cached_parent = None;
        let dirs = std::mem::take(&mut self.dirs);
        for (comps, mode, mtime) in dirs.iter().rev() {
            let mut cur = self.root.clone();
            let mut gone = false;
            for c in comps {
                match sys::open_dir_at(cur.as_fd(), c) {
                    Ok(fd) => cur = Rc::new(fd),
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {
                        gone = true;
                        break;
                    }
                    Err(e) => return Err(self.entry_err(&comps.join(&b'/'), "open dir", e)),
                }
            }
            if gone {
                continue;
            }
            let raw = comps.join(&b'/');
            fchmod(cur.as_fd(), Mode::from_bits_truncate(*mode))
                .map_err(|e| self.entry_err(&raw, "chmod", e))?;
            nix::sys::stat::futimens(cur.as_fd(), mtime, mtime)
                .map_err(|e| self.entry_err(&raw, "set mtime", e))?;
        }
        Ok(())
    }
}

/// PAX time: decimal seconds with an optional fraction (`1700000000.123`).
fn parse_pax_time(s: &str) -> Option<TimeSpec> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    // A negative time with a fraction counts the fraction downwards.
    let (secs, nanos) = if s.starts_with('-') && nanos > 0 {
        (secs - 1, 1_000_000_000 - nanos)
    } else {
        (secs, nanos)
    };
    Some(TimeSpec::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_confine() {
        assert_eq!(
            components(b"./a//b/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            components(b"/etc/x").unwrap(),
            vec![b"etc".to_vec(), b"x".to_vec()]
        );
        assert!(components(b"./").unwrap().is_empty());
        assert!(components(b"../evil").is_err());
        assert!(components(b"a/../../evil").is_err());
        assert!(components(b"a/..").is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("12"), Some(TimeSpec::new(12, 0)));
        assert_eq!(parse_pax_time("12.5"), Some(TimeSpec::new(12, 500_000_000)));
        assert_eq!(
            parse_pax_time("-1.25"),
            Some(TimeSpec::new(-2, 750_000_000))
        );
        assert_eq!(parse_pax_time("x"), None);
    }
}
