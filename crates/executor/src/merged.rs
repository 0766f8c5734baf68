//! Reading a stack of overlay-format layer dirs (topmost first) the way an
//! overlay mount would show them, without mounting: for `COPY --from` of a
//! directory, which hardlinks the source stage's files into the new layer
//! instead of copying their bytes.
//!
//! The rules are overlayfs's: the topmost layer that has a name decides what
//! it is; a 0/0 character device (a whiteout) deletes the name from the
//! layers below; a directory merges with same-named directories below it
//! unless it is opaque (`trusted.overlay.opaque=y`) or something that is not
//! a directory hides them. Layers are immutable once made (later steps
//! change files through overlay copy-up, never in place), which is what
//! makes sharing their inodes safe.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::fsops::{self, CopyAttrs, Owner};

/// One directory of the merged view: its instances in the layers that
/// contribute to it, topmost first.
pub(crate) struct Dir {
    layers: Vec<OwnedFd>,
}

/// One name in a merged directory, and the layer (index into
/// [`Dir::layers`]) whose entry it is.
pub(crate) struct Entry {
    pub name: OsString,
    layer: usize,
    is_dir: bool,
}

/// The regular file at `rel` in the merged view of `lowers`, opened
/// `O_PATH` in the layer that provides it; `None` when `rel` is anything
/// else there (missing, deleted, a directory, a symlink...).
pub(crate) fn open_file(lowers: &[PathBuf], rel: &Path) -> io::Result<Option<OwnedFd>> {
    let (Some(name), Some(parent)) = (rel.file_name(), rel.parent()) else {
        return Ok(None);
    };
    let Some(dir) = open_dir(lowers, parent)? else {
        return Ok(None);
    };
    for layer in &dir.layers {
        match fsops::file_type_at(layer, name.as_bytes())? {
            None => continue,
            Some(libc::S_IFREG) => {
                return fsops::open_file_path_at(layer, name.as_bytes()).map(Some)
            }
            Some(_) => return Ok(None),
        }
    }
    Ok(None)
}

/// What a name is in a merged directory.
pub(crate) enum Lookup {
    /// Not there (or deleted by a whiteout).
    Missing,
    /// A directory, with the metadata of its topmost instance.
    Dir(Dir, std::fs::Metadata),
    /// Anything else (a file, a symlink, a device...).
    Other,
}

/// Directory `rel` of the merged view of `lowers`; `None` when it is not a
/// directory there (missing, deleted, or hidden by a non-directory).
pub(crate) fn open_dir(lowers: &[PathBuf], rel: &Path) -> io::Result<Option<Dir>> {
    let mut layers = Vec::with_capacity(lowers.len());
    for l in lowers {
        layers.push(fsops::open_dir_abs(l)?);
    }
    let mut dir = Dir { layers };
    for c in rel.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                let Some(sub) = dir.child(name, 0)? else {
                    return Ok(None);
                };
                dir = sub;
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(dir))
}

impl Dir {
    /// The merged entries, sorted by name (whiteouts applied).
    pub(crate) fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for e in std::fs::read_dir(fsops::fd_path(layer))? {
                let e = e?;
                let name = e.file_name();
                if seen.contains(&name) {
                    continue;
                }
                seen.insert(name.clone());
                let ft = e.file_type()?;
                if ft.is_char_device() && e.metadata()?.rdev() == 0 {
                    continue; // a whiteout: deleted
                }
                out.push(Entry {
                    name,
                    layer: i,
                    is_dir: ft.is_dir(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// What `name` is in this directory.
    pub(crate) fn lookup(&self, name: &OsStr) -> io::Result<Lookup> {
        for (i, layer) in self.layers.iter().enumerate() {
            let meta = match fsops::fd_path(layer).join(name).symlink_metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let ft = meta.file_type();
            return Ok(if ft.is_dir() {
                match self.child(name, i)? {
                    Some(d) => Lookup::Dir(d, meta),
                    None => Lookup::Other,
                }
            } else if ft.is_char_device() && meta.rdev() == 0 {
                Lookup::Missing
            } else {
                Lookup::Other
            });
        }
        Ok(Lookup::Missing)
    }

    /// Directory `name`, looked up from layer `from` down: `None` unless the
    /// topmost entry for it is a directory.
    fn child(&self, name: &OsStr, from: usize) -> io::Result<Option<Dir>> {
        let mut layers = Vec::new();
        for layer in &self.layers[from..] {
            match fsops::file_type_at(layer, name.as_bytes())? {
                None => continue,
                Some(libc::S_IFDIR) => {
                    let d = fsops::open_dir_at(layer, name.as_bytes())?;
                    let opaque = fsops::is_opaque(&d);
                    layers.push(d);
                    if opaque {
                        break;
                    }
                }
                // A whiteout or a non-directory hides everything below.
                Some(_) => break,
            }
        }
        Ok((!layers.is_empty()).then_some(Dir { layers }))
    }

    /// Recreates entry `e` as `e.name` in `dst` (a directory of the new
    /// layer's own dir, not of an overlay mount): directories are made
    /// with the source's owner, mode and times; everything else is
    /// hardlinked to the source inode (copied when the filesystem refuses
    /// the link). Sockets are skipped, as COPY does.
    pub(crate) fn link_entry(&self, e: &Entry, dst: &OwnedFd) -> io::Result<()> {
        let src = &self.layers[e.layer];
        let name = e.name.as_bytes();
        let path = fsops::fd_path(src).join(&e.name);
        let meta = path.symlink_metadata()?;
        if e.is_dir {
            let sub_src = self
                .child(&e.name, e.layer)?
                .ok_or_else(|| io::Error::other("source directory vanished"))?;
            fsops::mkdir_private(dst, name)?;
            let sub_dst = fsops::open_dir_at(dst, name)?;
            for child in sub_src.entries()? {
                sub_src.link_entry(&child, &sub_dst)?;
            }
            return fsops::set_attrs(
                dst,
                name,
                Owner {
                    uid: meta.uid(),
                    gid: meta.gid(),
                },
                meta.mode() & 0o7777,
                &meta,
            );
        }
        if meta.file_type().is_socket() {
            return Ok(());
        }
        match fsops::link_named(src, name, dst, name) {
            Ok(()) => Ok(()),
            // Too many links to the inode, or a filesystem without links.
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EMLINK | libc::EPERM | libc::EXDEV)
                ) =>
            {
                let attrs = CopyAttrs {
                    owner: None,
                    mode: None,
                    preserve_owner: true,
                };
                fsops::copy_entry(&path, &meta, dst, &e.name, attrs)
            }
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn whiteout(path: &Path) {
        nix::sys::stat::mknod(
            path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .expect("mknod a whiteout (needs root)");
    }

    /// Three layers (topmost first) with a whiteout, an opaque directory and
    /// a file shadowed from above.
    fn layers(tmp: &Path) -> Vec<PathBuf> {
        let (top, mid, bottom) = (tmp.join("l0"), tmp.join("l1"), tmp.join("l2"));
        for d in ["d/sub", "d/gone"] {
            fs::create_dir_all(bottom.join(d)).unwrap();
        }
        fs::write(bottom.join("d/a"), "bottom a").unwrap();
        fs::write(bottom.join("d/b"), "b").unwrap();
        fs::write(bottom.join("d/sub/x"), "x").unwrap();
        fs::write(bottom.join("d/gone/y"), "y").unwrap();
        fs::create_dir_all(mid.join("d/sub")).unwrap();
        fs::write(mid.join("d/a"), "mid a").unwrap();
        fs::set_permissions(mid.join("d/a"), fs::Permissions::from_mode(0o640)).unwrap();
        whiteout(&mid.join("d/b"));
        xattr_opaque(&mid.join("d/sub"));
        fs::write(mid.join("d/sub/z"), "z").unwrap();
        fs::create_dir_all(top.join("d")).unwrap();
        symlink("a", top.join("d/e")).unwrap();
        whiteout(&top.join("d/gone"));
        vec![top, mid, bottom]
    }

    fn xattr_opaque(dir: &Path) {
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated path and name, one-byte value.
        let r = unsafe {
            libc::setxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(
            r,
            0,
            "setxattr (needs root): {}",
            io::Error::last_os_error()
        );
    }

    fn names(d: &Dir) -> Vec<String> {
        d.entries()
            .unwrap()
            .iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn entries_follow_overlay_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let lowers = layers(tmp.path());
        let d = open_dir(&lowers, Path::new("/d")).unwrap().unwrap();
        // b and gone are whited out; a comes from the middle layer.
        assert_eq!(names(&d), ["a", "e", "sub"]);
        let sub = open_dir(&lowers, Path::new("d/sub")).unwrap().unwrap();
        assert_eq!(names(&sub), ["z"], "the opaque dir hides the bottom's x");
        assert!(open_dir(&lowers, Path::new("d/gone")).unwrap().is_none());
        assert!(open_dir(&lowers, Path::new("d/a")).unwrap().is_none());
        assert!(open_dir(&lowers, Path::new("nowhere")).unwrap().is_none());
        // Files: the topmost regular file, nothing for anything else.
        let a = open_file(&lowers, Path::new("d/a")).unwrap().unwrap();
        let target = fs::read_link(fsops::fd_path(&a)).unwrap();
        assert_eq!(target, lowers[1].join("d/a"));
        for other in ["d/b", "d/e", "d/sub", "d/gone/y", "d/sub/x"] {
            assert!(
                open_file(&lowers, Path::new(other)).unwrap().is_none(),
                "{other}"
            );
        }
    }

    #[test]
    fn link_entry_recreates_the_merged_tree_with_links() {
        let tmp = tempfile::tempdir().unwrap();
        let lowers = layers(tmp.path());
        let out = tmp.path().join("out");
        fs::create_dir(&out).unwrap();
        let dst = fsops::open_dir_abs(&out).unwrap();
        let d = open_dir(&lowers, Path::new("d")).unwrap().unwrap();
        for e in d.entries().unwrap() {
            d.link_entry(&e, &dst).unwrap();
        }
        let a = out.join("a").symlink_metadata().unwrap();
        assert_eq!(fs::read_to_string(out.join("a")).unwrap(), "mid a");
        assert_eq!((a.nlink(), a.mode() & 0o7777), (2, 0o640));
        assert_eq!(fs::read_link(out.join("e")).unwrap(), Path::new("a"));
        assert_eq!(fs::read_dir(out.join("sub")).unwrap().count(), 1);
        assert_eq!(fs::read_to_string(out.join("sub/z")).unwrap(), "z");
        assert!(!out.join("b").exists() && !out.join("gone").exists());
        let src_sub = lowers[1].join("d/sub").metadata().unwrap();
        let sub = out.join("sub").metadata().unwrap();
        assert_eq!(sub.mode(), src_sub.mode());
        assert_eq!(sub.mtime(), src_sub.mtime());
    }
}
