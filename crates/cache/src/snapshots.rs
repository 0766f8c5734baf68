//! Snapshots: `ROOT/snapshots/<n>/{fs,work}`.
//!
//! Names are short decimal numbers because snapshot paths are joined into
//! overlayfs `lowerdir=` option strings, which the kernel limits to one page.
//! Numbers are never reused (a persistent counter, `snapshots/.next`, only
//! grows): a stale key record that still names a removed snapshot must find
//! nothing rather than some other layer's files.

use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::error::IoContext;
use crate::root::{fsync_dir, fsync_parent};
use crate::{CacheError, Root};

/// Serialises snapshot numbering across processes.
const SNAPSHOTS_LOCK: &str = "rbuild.snapshots";

/// A snapshot's number. `Display` prints just the number (it is the dir
/// name).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct SnapshotId(pub u64);

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Root {
    /// Allocate a new snapshot dir `snapshots/<n>/` with empty `fs/` (layer
    /// content, or an overlay upperdir) and `work/` (the overlay workdir,
    /// which must be on the same filesystem as the upperdir).
    ///
    /// Numbering is atomic across threads and processes: the counter is
    /// advanced under the `snapshots` lock and `mkdir` of the number is the
    /// final arbiter (a dir that exists is skipped, never shared).
    pub fn new_snapshot_dir(&self) -> Result<(SnapshotId, PathBuf), CacheError> {
        let snapshots = self.path().join("snapshots");
        let counter = snapshots.join(".next");
        let _guard = self.lock(SNAPSHOTS_LOCK)?;
        let stored = match fs::read_to_string(&counter) {
            Ok(s) => s.trim().parse::<u64>().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(CacheError::io("read", counter, e)),
        };
        let mut n = match stored {
            Some(n) => n,
            // No (readable) counter: a new root, or one whose counter was
            // lost. Start above everything on disk; only this case pays for
            // a scan.
            None => self.list_snapshots()?.last().map_or(1, |max| max.0 + 1),
        };
        let n = loop {
            let dir = snapshots.join(n.to_string());
            match fs::create_dir(&dir) {
                Ok(()) => break n,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(CacheError::io("create dir", dir, e)),
            }
        };
        // The counter is durable before the dir is handed out, so no later
        // allocation can hand out `n` again even after a crash.
        self.write_atomic(&counter, format!("{}\n", n + 1).as_bytes())?;
        let id = SnapshotId(n);
        let dir = snapshots.join(id.to_string());
        for sub in ["fs", "work"] {
            fs::create_dir(dir.join(sub)).ctx("create dir", dir.join(sub))?;
        }
        fsync_dir(&dir)?;
        fsync_parent(&dir)?;
        Ok((id, dir.join("fs")))
    }

    /// `ROOT/snapshots/<n>/fs`: the layer content (overlay lowerdir/upperdir).
    pub fn snapshot_path(&self, id: SnapshotId) -> PathBuf {
        self.snapshot_dir(id).join("fs")
    }

    /// `ROOT/snapshots/<n>/work`: the overlay workdir paired with
    /// [`Root::snapshot_path`] when that is mounted as an upperdir.
    pub fn snapshot_work_path(&self, id: SnapshotId) -> PathBuf {
        self.snapshot_dir(id).join("work")
    }

    fn snapshot_dir(&self, id: SnapshotId) -> PathBuf {
        self.path().join("snapshots").join(id.to_string())
    }

    /// Whether the snapshot dir exists.
    pub fn has_snapshot(&self, id: SnapshotId) -> bool {
        self.snapshot_path(id).is_dir()
    }

    /// All snapshot ids on disk, ascending.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotId>, CacheError> {
        let dir = self.path().join("snapshots");
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).ctx("read dir", &dir)? {
            let entry = entry.ctx("read dir", &dir)?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u64>().ok())
            {
                // Only canonical spellings ("7", not "07") are ours.
                if n.to_string() == entry.file_name().to_string_lossy() {
                    ids.push(SnapshotId(n));
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Delete a snapshot. It first disappears atomically (renamed into
    /// `ROOT/tmp`), so a crash midway through deleting a large tree never
    /// leaves a half-deleted snapshot under its number; the remains in
    /// `tmp/` are garbage for whoever cleans `tmp/`.
    ///
    /// The caller must make sure no key record or mount still uses it.
    pub fn remove_snapshot(&self, id: SnapshotId) -> Result<(), CacheError> {
        let dir = self.snapshot_dir(id);
        let grave = self.tmp_path().join(format!(
            "removed-snapshot-{id}-{}-{}",
            std::process::id(),
            unique()
        ));
        match fs::rename(&dir, &grave) {
            Ok(()) => {
                fsync_parent(&dir)?;
                // std's remove_dir_all never follows symlinks, so hostile
                // layer content cannot redirect the deletion.
                fs::remove_dir_all(&grave).ctx("remove", &grave)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::io("rename", dir, e)),
        }
    }
}

/// A per-process counter for unique temporary names.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let (a, pa) = root.new_snapshot_dir().unwrap();
        let (b, pb) = root.new_snapshot_dir().unwrap();
        assert_eq!(a.to_string(), "1");
        assert_eq!(b, SnapshotId(2));
        assert_eq!(pa, root.snapshot_path(a));
        assert!(pa.is_dir() && pb.is_dir());
        assert!(root.snapshot_work_path(a).is_dir());
        assert_eq!(pa, root.path().join("snapshots/1/fs"));
        fs::write(pb.join("file"), b"x").unwrap();
        root.remove_snapshot(b).unwrap();
        assert!(!root.has_snapshot(b));
        assert_eq!(root.list_snapshots().unwrap(), vec![a]);
        // Removed numbers are not handed out again.
        let (c, _) = root.new_snapshot_dir().unwrap();
        assert_eq!(c, SnapshotId(3));
        // Removing twice is not an error.
        root.remove_snapshot(b).unwrap();
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn concurrent_allocation_gives_distinct_ids() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .map(|_| root.new_snapshot_dir().unwrap().0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<SnapshotId> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 40);
        assert_eq!(root.list_snapshots().unwrap(), all);
    }
}
