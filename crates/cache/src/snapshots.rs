//! Snapshots: `ROOT/snapshots/<n>/{fs,work}`.
//!
//! Names are short decimal numbers because snapshot paths are joined into
//! overlayfs `lowerdir=` option strings, which the kernel limits to one page.
//! Numbers are never reused (a persistent counter, `snapshots/.next`, only
//! grows, reserved by each process in blocks): a stale key record that still names a removed snapshot must find
//! nothing rather than some other layer's files.
//!
//! Layer data is never fsynced (a syncfs per step costs more than the step;
//! see ARCHITECTURE.md). Instead each snapshot carries an empty file
//! `made-in-boot-<boot id>` naming the machine boot that wrote it: within
//! that boot the page cache makes the files good whatever happens to the
//! process, and after a reboot a snapshot is re-hashed against its diff_id
//! once before anything builds on it ([`Root::snapshot_intact`]), after
//! which an empty `verified` file marks it good.

use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::error::IoContext;
use crate::root::fsync_parent;
use crate::{CacheError, Root};

/// Serialises snapshot numbering across processes.
const SNAPSHOTS_LOCK: &str = "rbuild.snapshots";

/// Name prefix of the empty file that records which boot made a snapshot.
const BOOT_MARK: &str = "made-in-boot-";

/// The file that replaces the boot mark once a snapshot from an earlier
/// boot has been checked against its diff_id.
const VERIFIED_MARK: &str = "verified";

/// How many snapshot numbers a process reserves at once (one durable
/// counter update per block rather than per step).
pub(crate) const SNAPSHOT_BLOCK: u64 = 64;

/// The kernel's id for this boot of the machine (`"unknown"` without procfs,
/// which makes every snapshot look current: no worse than no check).
pub(crate) fn current_boot() -> &'static str {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .unwrap_or_else(|| "unknown".into())
    })
}

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
    /// Numbers are reserved in blocks ([`SNAPSHOT_BLOCK`]) under the
    /// `snapshots` lock, and the counter is durable before any number of a
    /// block is used, so no number is handed out twice, even across a crash;
    /// `mkdir` of the number is the final arbiter (a dir that exists is
    /// skipped, never shared). Nothing else is fsynced here: a snapshot dir
    /// or boot mark lost in a crash only makes [`Root::snapshot_intact`]
    /// reject or re-check it.
    pub fn new_snapshot_dir(&self) -> Result<(SnapshotId, PathBuf), CacheError> {
        let snapshots = self.path().join("snapshots");
        let dir = loop {
            let n = self.next_snapshot_number()?;
            let dir = snapshots.join(n.to_string());
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(CacheError::io("create dir", dir, e)),
            }
        };
        for sub in ["fs", "work"] {
            fs::create_dir(dir.join(sub)).ctx("create dir", dir.join(sub))?;
        }
        let mark = dir.join(format!("{BOOT_MARK}{}", self.boot));
        fs::File::create(&mark).ctx("create", &mark)?;
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .map(SnapshotId)
            .expect("snapshot dirs are named by number");
        Ok((id, dir.join("fs")))
    }

    /// The next number of this process's reserved block, reserving a new
    /// block when it is used up.
    fn next_snapshot_number(&self) -> Result<u64, CacheError> {
        let mut block = self
            .snapshot_block
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if block.start >= block.end {
            let counter = self.path().join("snapshots").join(".next");
            let _guard = self.lock(SNAPSHOTS_LOCK)?;
            let stored = match fs::read_to_string(&counter) {
                Ok(s) => s.trim().parse::<u64>().ok(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(CacheError::io("read", counter, e)),
            };
            let first = match stored {
                Some(n) => n,
                // No (readable) counter: a new root, or one whose counter
                // was lost. Start above everything on disk; only this case
                // pays for a scan.
                None => self.list_snapshots()?.last().map_or(1, |max| max.0 + 1),
            };
            let end = first + SNAPSHOT_BLOCK;
            self.write_atomic(&counter, format!("{end}\n").as_bytes())?;
            *block = first..end;
        }
        let n = block.start;
        block.start += 1;
        Ok(n)
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

    /// Whether snapshot `id` exists and can be trusted to hold the layer
    /// `diff_id`, for building on it or exporting it.
    ///
    /// A snapshot made during this boot is trusted as is. One made during an
    /// earlier boot (or whose mark was lost) may have lost unsynced data in a
    /// machine crash, so it is re-hashed once; when it matches `diff_id` it
    /// is marked verified (what was just read back is on disk) and trusted
    /// from then on. Without a `diff_id` to compare, such a snapshot is not
    /// trusted: the caller rebuilds it.
    pub fn snapshot_intact(
        &self,
        id: SnapshotId,
        diff_id: Option<&str>,
    ) -> Result<bool, CacheError> {
        let dir = self.snapshot_dir(id);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(CacheError::io("read dir", dir, e)),
        };
        let mut marks = Vec::new();
        for entry in entries {
            let name = entry.ctx("read dir", &dir)?.file_name();
            let name = name.to_string_lossy();
            if name == VERIFIED_MARK || name.strip_prefix(BOOT_MARK) == Some(&*self.boot) {
                return Ok(self.snapshot_path(id).is_dir());
            }
            if name.starts_with(BOOT_MARK) {
                marks.push(dir.join(&*name));
            }
        }
        let Some(expected) = diff_id.filter(|d| !d.is_empty()) else {
            return Ok(false);
        };
        match crate::write_layer_tar(&self.snapshot_path(id), io::sink()) {
            Ok((actual, _)) if actual == expected => {
                let verified = dir.join(VERIFIED_MARK);
                fs::File::create(&verified).ctx("create", &verified)?;
                for m in marks {
                    fs::remove_file(&m).ctx("remove", &m)?;
                }
                Ok(true)
            }
            // Damaged (or unreadable): not usable; the caller makes a new one.
            _ => Ok(false),
        }
    }

    /// Test hook: pretend to be running in boot `boot` (snapshots made
    /// before look like they survived a reboot).
    #[doc(hidden)]
    pub fn with_boot_id(mut self, boot: &str) -> Root {
        self.boot = boot.into();
        self
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
        assert!(!root.snapshot_path(b).exists());
        assert_eq!(root.list_snapshots().unwrap(), vec![a]);
        // Removed numbers are not handed out again.
        let (c, _) = root.new_snapshot_dir().unwrap();
        assert_eq!(c, SnapshotId(3));
        // Removing twice is not an error.
        root.remove_snapshot(b).unwrap();
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn snapshots_from_an_earlier_boot_are_verified_once() {
        let dir = tempfile::tempdir().unwrap();
        let old = Root::open(dir.path()).unwrap().with_boot_id("boot-a");
        let (good, p) = old.new_snapshot_dir().unwrap();
        fs::write(p.join("f"), b"hello").unwrap();
        let (diff_id, _) = crate::write_layer_tar(&p, io::sink()).unwrap();
        let (bad, q) = old.new_snapshot_dir().unwrap();
        fs::write(q.join("f"), b"hello").unwrap();
        // Same boot: trusted without reading anything.
        assert!(old.snapshot_intact(good, None).unwrap());
        assert!(old.snapshot_intact(bad, Some("sha256:whatever")).unwrap());

        // After a "crash", `bad` lost its data.
        fs::write(q.join("f"), b"").unwrap();
        let new = Root::open(dir.path()).unwrap().with_boot_id("boot-b");
        assert!(
            !new.snapshot_intact(good, None).unwrap(),
            "no diff_id, no trust"
        );
        assert!(!new.snapshot_intact(bad, Some(&diff_id)).unwrap());
        assert!(new.snapshot_intact(good, Some(&diff_id)).unwrap());
        // Verified once: trusted from then on, even in a third boot.
        let third = Root::open(dir.path()).unwrap().with_boot_id("boot-c");
        assert!(third.snapshot_intact(good, None).unwrap());
        // A snapshot whose mark was lost counts as one from an earlier boot.
        let (unmarked, r) = third.new_snapshot_dir().unwrap();
        fs::write(r.join("f"), b"hello").unwrap();
        fs::remove_file(r.parent().unwrap().join("made-in-boot-boot-c")).unwrap();
        assert!(!third.snapshot_intact(unmarked, None).unwrap());
        assert!(third.snapshot_intact(unmarked, Some(&diff_id)).unwrap());
        assert!(!third
            .snapshot_intact(SnapshotId(99), Some(&diff_id))
            .unwrap());
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
