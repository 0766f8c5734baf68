//! The root dir: opening it, its layout, and the one way every file in it is
//! written (tmp + fsync + rename + fsync of the parent dir).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::CacheError;

/// The on-disk format this code reads and writes. Bumped when a format in
/// the root changes incompatibly, so an old rbuild refuses a newer root
/// instead of misreading it.
const FORMAT: &str = "rbuild-root 1";

/// rbuild's state directory. Cheap to clone; holds no open files, so any
/// number of `Root`s (in any number of processes) may point at one dir and
/// coordinate through [`Root::lock`].
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
    /// This machine boot's id: snapshots are marked with the boot that made
    /// them (see [`Root::snapshot_intact`]).
    pub(crate) boot: std::sync::Arc<str>,
    /// Snapshot numbers this process has reserved and not used yet.
    pub(crate) snapshot_block: std::sync::Arc<std::sync::Mutex<std::ops::Range<u64>>>,
}

impl Root {
    /// Open (creating if needed) the root at `path`.
    ///
    /// Creates `blobs/sha256`, `snapshots`, `keys`, `store` (an OCI image
    /// layout whose `blobs` is a symlink to `../blobs`), `tmp`, `locks` and
    /// the `format` marker. Safe to call concurrently from several
    /// processes: every step is idempotent or atomic.
    pub fn open(path: &Path) -> Result<Root, CacheError> {
        mkdir_p(path)?;
        // Absolute and canonical: snapshot paths end up in overlay mount
        // options and in other processes' argv, where a relative path would
        // be resolved against the wrong cwd.
        let path = fs::canonicalize(path).ctx("canonicalize", path)?;
        let root = Root {
            path,
            boot: crate::snapshots::current_boot().into(),
            snapshot_block: Default::default(),
        };
        for dir in ["blobs/sha256", "snapshots", "keys", "store", "tmp", "locks"] {
            mkdir_p(&root.path.join(dir))?;
        }
        root.check_format()?;
        root.init_store()?;
        Ok(root)
    }

    /// The root dir (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh temporary directory under `ROOT/tmp`, removed on drop.
    ///
    /// It lives inside the root so that whatever is built in it can be
    /// renamed into place (same filesystem), never copied.
    pub fn tmp_dir(&self) -> Result<tempfile::TempDir, CacheError> {
        let tmp = self.tmp_path();
        tempfile::Builder::new()
            .prefix("rbuild-")
            .tempdir_in(&tmp)
            .ctx("create temporary dir in", tmp)
    }

    pub(crate) fn tmp_path(&self) -> PathBuf {
        self.path.join("tmp")
    }

    /// Remove what killed processes left in `ROOT/tmp`: entries whose
    /// mtime is older than `min_age`. Returns how many were removed.
    ///
    /// Live work in `tmp/` belongs to running processes, which cannot be
    /// told apart from dead ones by name, hence the age: pick one longer
    /// than any single write (a layer download, a snapshot removal).
    pub fn clean_tmp(&self, min_age: std::time::Duration) -> Result<usize, CacheError> {
        let tmp = self.tmp_path();
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&tmp).ctx("read dir", &tmp)? {
            let entry = entry.ctx("read dir", &tmp)?;
            let path = entry.path();
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue; // already gone
            };
            let old = md
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age >= min_age);
            if !old {
                continue;
            }
            let r = if md.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match r {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(CacheError::io("remove", path, e)),
            }
        }
        Ok(removed)
    }

    fn check_format(&self) -> Result<(), CacheError> {
        let marker = self.path.join("format");
        match fs::read_to_string(&marker) {
            Ok(found) if found.trim_end() == FORMAT => Ok(()),
            Ok(found) => Err(CacheError::FormatVersion {
                path: marker,
                found: found.trim_end().to_string(),
                expected: FORMAT.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.write_atomic(&marker, format!("{FORMAT}\n").as_bytes())
            }
            Err(e) => Err(CacheError::io("read", marker, e)),
        }
    }

    /// Write `bytes` to `dest` so that a crash at any instant leaves either
    /// the old file or the complete new one: write to `ROOT/tmp`, fsync,
    /// rename over `dest`, fsync `dest`'s directory (without the last step
    /// the rename itself may be lost and a later index entry would point at
    /// nothing).
    pub(crate) fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let tmp = self.tmp_path();
        let mut file =
            tempfile::NamedTempFile::new_in(&tmp).ctx("create temporary file in", &tmp)?;
        file.write_all(bytes).ctx("write", file.path())?;
        set_mode(file.as_file(), 0o644, file.path())?;
        file.as_file().sync_all().ctx("fsync", file.path())?;
        file.persist(dest)
            .map_err(|e| CacheError::io("rename into place", dest, e.error))?;
        fsync_parent(dest)
    }
}

/// `mkdir -p` with fsync of each directory created, so that a dir that a
/// later index entry relies on cannot vanish in a crash.
pub(crate) fn mkdir_p(path: &Path) -> Result<(), CacheError> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            mkdir_p(parent)?;
        }
    }
    match fs::DirBuilder::new().mode(0o755).create(path) {
        Ok(()) => fsync_parent(path),
        // Another process won the race: fine, the dir exists.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(CacheError::io("create dir", path, e)),
    }
}

/// fsync the directory that holds `path`, making a create/rename/unlink in
/// it durable.
pub(crate) fn fsync_parent(path: &Path) -> Result<(), CacheError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fsync_dir(parent)
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), CacheError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync dir", dir)
}

pub(crate) fn set_mode(file: &File, mode: u32, path: &Path) -> Result<(), CacheError> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .ctx("chmod", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_layout_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let r = Root::open(&dir.path().join("root")).unwrap();
        for d in ["blobs/sha256", "snapshots", "keys", "store", "tmp", "locks"] {
            assert!(r.path().join(d).is_dir(), "{d} missing");
        }
        assert!(r.path().join("store/oci-layout").is_file());
        assert!(r.path().join("store/index.json").is_file());
        // Reopen: same layout, no error.
        let r2 = Root::open(r.path()).unwrap();
        assert_eq!(r.path(), r2.path());
        let t = r.tmp_dir().unwrap();
        assert!(t.path().starts_with(r.path().join("tmp")));
    }

    #[test]
    fn clean_tmp_removes_only_old_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let r = Root::open(dir.path()).unwrap();
        let old = r.path().join("tmp/blob-dead");
        fs::write(&old, b"x").unwrap();
        let old_dir = r.path().join("tmp/rbuild-dead");
        fs::create_dir(&old_dir).unwrap();
        fs::write(old_dir.join("f"), b"x").unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for p in [&old, &old_dir] {
            File::open(p).unwrap().set_modified(past).unwrap();
        }
        let live = r.tmp_dir().unwrap();
        let n = r.clean_tmp(std::time::Duration::from_secs(3600)).unwrap();
        assert_eq!(n, 2);
        assert!(!old.exists() && !old_dir.exists());
        assert!(live.path().exists(), "a fresh temp dir was removed");
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = Root::open(dir.path()).unwrap();
        fs::write(r.path().join("format"), "rbuild-root 99\n").unwrap();
        let err = Root::open(dir.path()).unwrap_err();
        assert!(matches!(err, CacheError::FormatVersion { .. }), "{err}");
        assert!(err.to_string().contains("format"), "{err}");
    }
}
