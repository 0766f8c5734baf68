//! Snapshot dir → deterministic OCI layer tar.
//!
//! The output depends only on what an image can observe (names, types,
//! content, link targets, modes, numeric ids, mtimes in whole seconds,
//! xattrs), never on inode numbers, directory order, atimes, the writer's
//! user database or the clock, so equal trees give equal diff_ids on any
//! machine (invariant 1).
//!
//! Format: POSIX ustar headers, with a PAX extended header in front of any
//! entry whose path or link target is longer than 100 bytes, whose
//! uid/gid/size/mtime does not fit the ustar field, or that has xattrs
//! (`SCHILY.xattr.<name>`, the form GNU tar, Go's archive/tar and the `tar`
//! crate read). uname/gname are left empty. The archive ends with two zero
//! blocks and no record padding (as Go/containerd write it).
//!
//! Order: depth first, the entries of each directory sorted by the bytes of
//! their name in the archive (as `tar --sort=name` and containerd do), a
//! directory before its contents, its opaque marker (if any) first among
//! them.
//!
//! The directory is walked through fds (`openat` with `O_NOFOLLOW`), never
//! by re-resolving path strings: content written by a RUN step is hostile
//! and may hold symlinks anywhere.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{FileStat, Mode};

use super::sys::{self, XTarget, Xattrs};
use crate::digest::HashingWriter;
use crate::error::IoContext;
use crate::CacheError;

const BLOCK: usize = 512;
/// Largest value of an 8-byte octal field (uid, gid, mode).
const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (size, mtime).
const MAX_OCTAL_12: u64 = 0o77777777777;

const OVERLAY_OPAQUE: &[u8] = b"trusted.overlay.opaque";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Write the content of `src_dir` (an overlay upper dir or any snapshot dir)
/// as a deterministic OCI layer tar to `out`, streaming; returns
/// `(diff_id, size)` of the tar, computed as it is written.
///
/// Overlay whiteouts (0/0 char devices) become `.wh.<name>` empty files;
/// directories marked opaque (`trusted.overlay.opaque=y`) get a
/// `.wh..wh..opq` entry. Files whose identity is in another layer
/// (`trusted.overlay.redirect`, `trusted.overlay.metacopy`) are refused: the
/// executor must mount with `redirect_dir=off,metacopy=off` so that an upper
/// dir is self-contained. Sockets are skipped (tar cannot hold them).
pub fn write_layer_tar(src_dir: &Path, out: impl Write) -> Result<(String, u64), CacheError> {
    let root = File::open(src_dir).ctx("open", src_dir)?;
    let mut w = LayerWriter {
        out: HashingWriter::new(io::BufWriter::with_capacity(128 * 1024, out)),
        buf: vec![0; COPY_BUF],
        src: src_dir,
        links: HashMap::new(),
    };
    let root_fd: OwnedFd = root.into();
    w.walk(root_fd.as_fd(), &[])?;
    w.out
        .write_all(&[0u8; 2 * BLOCK])
        .ctx("write layer tar from", src_dir)?;
    w.out.flush().ctx("write layer tar from", src_dir)?;
    let (_, digest, size) = w.out.finish();
    Ok((digest, size))
}

/// Read size for file contents: `io::copy` through the hashing writer would
/// read 8 KiB at a time, which makes syscalls dominate for large files.
const COPY_BUF: usize = 256 * 1024;

/// `io::copy` with a caller-owned buffer of [`COPY_BUF`] bytes.
fn copy_large(r: &mut impl Read, w: &mut impl Write, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

struct LayerWriter<'a, W: Write> {
    out: HashingWriter<io::BufWriter<W>>,
    buf: Vec<u8>,
    src: &'a Path,
    /// (dev, inode) of multiply-linked files → the archive path written
    /// first, which later links point at.
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// What goes into one header.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    dev: Option<(u64, u64)>,
}

impl Meta {
    fn from_stat(st: &FileStat) -> Meta {
        Meta {
            mode: st.st_mode & 0o7777,
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            mtime: st.st_mtime,
            size: 0,
            dev: None,
        }
    }
}

enum Kind<'l> {
    File,
    Dir,
    Symlink(&'l [u8]),
    HardLink(&'l [u8]),
    Char,
    Block,
    Fifo,
}

impl<W: Write> LayerWriter<'_, W> {
    fn path_of(&self, rel: &[u8]) -> PathBuf {
        self.src.join(Path::new(std::ffi::OsStr::from_bytes(rel)))
    }

    fn walk(&mut self, dir: BorrowedFd<'_>, prefix: &[u8]) -> Result<(), CacheError> {
        let dir_path = self.path_of(prefix);
        let names = sys::read_dir_names(dir).ctx("read dir", &dir_path)?;
        // (name in the archive, name on disk, stat)
        let mut children = Vec::with_capacity(names.len());
        for name in names {
            let st = nix::sys::stat::fstatat(
                dir,
                name.as_slice(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .ctx("lstat", dir_path.join(std::ffi::OsStr::from_bytes(&name)))?;
            let archive_name = if is_whiteout(&st) {
                [b".wh.".as_slice(), &name].concat()
            } else {
                name.clone()
            };
            children.push((archive_name, name, st));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));

        for (archive_name, name, st) in children {
            let rel = [prefix, archive_name.as_slice()].concat();
            let path = self.path_of(&[prefix, name.as_slice()].concat());
            let mut meta = Meta::from_stat(&st);
            let fmt = st.st_mode & libc::S_IFMT;

            if is_whiteout(&st) {
                // Whiteouts may be hardlinks of one shared inode (newer
                // kernels link them to a whiteout in the workdir), so this
                // comes before hardlink detection.
                self.header(&rel, Kind::File, &meta, &[])?;
                continue;
            }
            if fmt == libc::S_IFSOCK {
                continue;
            }
            if fmt == libc::S_IFDIR {
                let fd = sys::open_dir_at(dir, &name).ctx("open dir", &path)?;
                let xattrs = self.xattrs(XTarget::Fd(fd.as_fd()), &path)?;
                let opaque = xattrs
                    .iter()
                    .any(|(n, v)| n == OVERLAY_OPAQUE && v.as_slice() == b"y");
                let xattrs = keep_xattrs(xattrs);
                let dir_rel = [rel.as_slice(), b"/"].concat();
                self.header(&dir_rel, Kind::Dir, &meta, &xattrs)?;
                if opaque {
                    let marker = [dir_rel.as_slice(), OPAQUE_MARKER].concat();
                    self.header(&marker, Kind::File, &meta, &[])?;
                }
                self.walk(fd.as_fd(), &dir_rel)?;
                continue;
            }

            // Everything else may be one of several links to an inode.
            if st.st_nlink > 1 {
                let id = (st.st_dev, st.st_ino);
                if let Some(first) = self.links.get(&id) {
                    let first = first.clone();
                    self.header(&rel, Kind::HardLink(&first), &meta, &[])?;
                    continue;
                }
                self.links.insert(id, rel.clone());
            }

            match fmt {
                libc::S_IFREG => self.regular(dir, &name, &rel, &path, &st, meta)?,
                libc::S_IFLNK => {
                    let target =
                        nix::fcntl::readlinkat(dir, name.as_slice()).ctx("readlink", &path)?;
                    let xattrs = keep_xattrs(self.xattrs(XTarget::At(dir, &name), &path)?);
                    self.header(&rel, Kind::Symlink(target.as_bytes()), &meta, &xattrs)?;
                }
                libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                    let xattrs = keep_xattrs(self.xattrs(XTarget::At(dir, &name), &path)?);
                    let kind = match fmt {
                        libc::S_IFCHR => Kind::Char,
                        libc::S_IFBLK => Kind::Block,
                        _ => Kind::Fifo,
                    };
                    if fmt != libc::S_IFIFO {
                        meta.dev = Some((
                            u64::from(libc::major(st.st_rdev)),
                            u64::from(libc::minor(st.st_rdev)),
                        ));
                    }
                    self.header(&rel, kind, &meta, &xattrs)?;
                }
                _ => {
                    return Err(CacheError::Unsupported {
                        what: format!("file type {fmt:o}"),
                        path,
                    })
                }
            }
        }
        Ok(())
    }

    fn regular(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        path: &Path,
        st: &FileStat,
        mut meta: Meta,
    ) -> Result<(), CacheError> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        // O_NOATIME: reading a layer must not change the tree it reads
        // (it needs ownership or CAP_FOWNER, hence the fallback).
        let fd = match openat(dir, name, flags | OFlag::O_NOATIME, Mode::empty()) {
            Err(nix::errno::Errno::EPERM) => openat(dir, name, flags, Mode::empty()),
            r => r,
        }
        .ctx("open", path)?;
        let file = File::from(fd);
        // The entry must still be the inode we stat'ed (and sorted by).
        let now = nix::sys::stat::fstat(&file).ctx("stat", path)?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
            return Err(CacheError::io(
                "read",
                path,
                io::Error::other("file replaced while the layer was written"),
            ));
        }
        meta.size = now.st_size as u64;
        let xattrs = keep_xattrs(self.xattrs(XTarget::Fd(file.as_fd()), path)?);
        self.header(rel, Kind::File, &meta, &xattrs)?;
        // Stream exactly `size` bytes: a file that changes length under us
        // must not desynchronise the archive.
        let copied = copy_large(&mut (&file).take(meta.size), &mut self.out, &mut self.buf)
            .ctx("read", path)?;
        if copied != meta.size {
            return Err(CacheError::io(
                "read",
                path,
                io::Error::other(format!(
                    "file shrank while the layer was written ({copied} of {} bytes)",
                    meta.size
                )),
            ));
        }
        self.pad(meta.size)
    }

    fn xattrs(&self, t: XTarget<'_>, path: &Path) -> Result<Xattrs, CacheError> {
        let xattrs = sys::list_xattrs(t).ctx("read xattrs of", path)?;
        for (n, _) in &xattrs {
            if n == b"trusted.overlay.redirect" || n == b"trusted.overlay.metacopy" {
                return Err(CacheError::Unsupported {
                    what: format!(
                        "overlayfs {} (mount with redirect_dir=off,metacopy=off)",
                        String::from_utf8_lossy(n)
                    ),
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(xattrs)
    }

    fn pad(&mut self, size: u64) -> Result<(), CacheError> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out
                .write_all(&[0u8; BLOCK][..BLOCK - rem])
                .ctx("write layer tar from", self.src)?;
        }
        Ok(())
    }

    /// Write one entry's header (preceded by a PAX header when needed).
    fn header(
        &mut self,
        path: &[u8],
        kind: Kind<'_>,
        meta: &Meta,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), CacheError> {
        let link: &[u8] = match kind {
            Kind::Symlink(l) | Kind::HardLink(l) => l,
            _ => b"",
        };
        let size = if matches!(kind, Kind::File) {
            meta.size
        } else {
            0
        };
        let mtime = meta.mtime.clamp(0, MAX_OCTAL_12 as i64) as u64;

        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if path.len() > 100 {
            pax.push((b"path".to_vec(), path.to_vec()));
        }
        if link.len() > 100 {
            pax.push((b"linkpath".to_vec(), link.to_vec()));
        }
        if meta.uid > MAX_OCTAL_8 {
            pax.push((b"uid".to_vec(), meta.uid.to_string().into_bytes()));
        }
        if meta.gid > MAX_OCTAL_8 {
            pax.push((b"gid".to_vec(), meta.gid.to_string().into_bytes()));
        }
        if size > MAX_OCTAL_12 {
            pax.push((b"size".to_vec(), size.to_string().into_bytes()));
        }
        if meta.mtime < 0 || meta.mtime as u64 > MAX_OCTAL_12 {
            pax.push((b"mtime".to_vec(), meta.mtime.to_string().into_bytes()));
        }
        for (n, v) in xattrs {
            pax.push(([b"SCHILY.xattr.".as_slice(), n].concat(), v.clone()));
        }
        if !pax.is_empty() {
            pax.sort();
            let body = pax_body(&pax);
            let base = path
                .strip_suffix(b"/")
                .unwrap_or(path)
                .rsplit(|b| *b == b'/')
                .next()
                .unwrap_or(b"");
            let name = [b"PaxHeaders.0/".as_slice(), base].concat();
            let mut h = ustar_header(&name[..name.len().min(100)]);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(body.len() as u64);
            h.set_cksum();
            self.out
                .write_all(h.as_bytes())
                .and_then(|_| self.out.write_all(&body))
                .ctx("write layer tar from", self.src)?;
            self.pad(body.len() as u64)?;
        }

        let mut h = ustar_header(&path[..path.len().min(100)]);
        h.set_entry_type(match kind {
            Kind::File => tar::EntryType::Regular,
            Kind::Dir => tar::EntryType::Directory,
            Kind::Symlink(_) => tar::EntryType::Symlink,
            Kind::HardLink(_) => tar::EntryType::Link,
            Kind::Char => tar::EntryType::Char,
            Kind::Block => tar::EntryType::Block,
            Kind::Fifo => tar::EntryType::Fifo,
        });
        h.set_mode(meta.mode);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_size(size);
        h.set_mtime(mtime);
        if !link.is_empty() {
            let ustar = h.as_ustar_mut().expect("ustar header");
            let n = link.len().min(100);
            ustar.linkname[..n].copy_from_slice(&link[..n]);
        }
        let (major, minor) = meta.dev.unwrap_or((0, 0));
        h.set_device_major(major as u32)
            .and_then(|_| h.set_device_minor(minor as u32))
            .ctx("write layer tar from", self.src)?;
        h.set_cksum();
        self.out
            .write_all(h.as_bytes())
            .ctx("write layer tar from", self.src)
    }
}

/// A zeroed ustar header with `name` in its name field.
fn ustar_header(name: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let ustar = h.as_ustar_mut().expect("ustar header");
    ustar.name[..name.len()].copy_from_slice(name);
    h
}

/// PAX records: `"<len> <key>=<value>\n"`, where `<len>` counts the whole
/// record including its own digits.
fn pax_body(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        body.extend_from_slice(len.to_string().as_bytes());
        body.push(b' ');
        body.extend_from_slice(k);
        body.push(b'=');
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    body
}

/// Overlay whiteout: a character device with device number 0/0.
pub(crate) fn is_whiteout(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// The xattrs that belong in a layer: not overlayfs' bookkeeping
/// (`trusted.overlay.*`, which describes this host's mount, not the image),
/// not `security.*` labels (host policy: SELinux/IMA/EVM), except
/// `security.capability` (file capabilities are part of the image, e.g.
/// `ping`).
fn keep_xattrs(xattrs: Xattrs) -> Xattrs {
    xattrs
        .into_iter()
        .filter(|(n, _)| {
            !n.starts_with(b"trusted.overlay.")
                && (!n.starts_with(b"security.") || n == b"security.capability")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths() {
        // "6 a=b\n" is 6 bytes; a record crossing a digit boundary must count
        // its own longer length.
        assert_eq!(pax_body(&[(b"a".to_vec(), b"b".to_vec())]), b"6 a=b\n");
        let v = vec![b'x'; 93]; // 1+93+3 = 97 + 2 digits = 99
        let body = pax_body(&[(b"a".to_vec(), v.clone())]);
        assert_eq!(body.len(), 99);
        assert!(body.starts_with(b"99 a="));
        let v = vec![b'x'; 95]; // 1+95+3 = 99 + 2 = 101 → 3 digits → 102
        let body = pax_body(&[(b"a".to_vec(), v)]);
        assert_eq!(body.len(), 102);
        assert!(body.starts_with(b"102 a="));
    }

    #[test]
    fn xattr_filter() {
        let x = |n: &str| (n.as_bytes().to_vec(), b"v".to_vec());
        let kept = keep_xattrs(vec![
            x("security.capability"),
            x("security.selinux"),
            x("trusted.overlay.opaque"),
            x("trusted.other"),
            x("user.foo"),
        ]);
        let names: Vec<_> = kept.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(
            names,
            [
                b"security.capability".as_slice(),
                b"trusted.other",
                b"user.foo"
            ]
        );
    }
}
