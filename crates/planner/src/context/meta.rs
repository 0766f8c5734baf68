//! The metadata cache: `(path, stat stamp) → sha256`, remembered between builds
//! so that an unchanged context is not read again.
//!
//! File format (all integers little-endian):
//!
//! ```text
//! magic        8 bytes  "RBCTXMC1"
//! root_len     u32      length of the context root path the cache belongs to
//! root         bytes
//! count        u64      number of records
//! record × count:
//!   path_len   u32      context-relative path
//!   path       bytes
//!   size       u64
//!   mtime_ns   i64
//!   ctime_ns   i64
//!   inode      u64
//!   dev        u64
//!   mode       u32      st_mode (type and permission bits)
//!   sha256     32 bytes
//! trailer      32 bytes sha256 of everything above
//! ```
//!
//! A file that is missing, truncated, fails its trailer check or belongs to a
//! different root is ignored (the cache starts empty); the cache is only an
//! accelerator.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"RBCTXMC1";

/// Files whose mtime or ctime is this close to (or after) the moment hashing
/// started are "racy": a later write in the same timestamp tick could change
/// their content without changing their stamp (git's "racy git" problem), so
/// their hash is used for the current session only and is not persisted.
pub(crate) const RACY_WINDOW_NS: i64 = 1_000_000_000;

/// What identifies an unchanged file: everything `lstat` says about it that
/// a content change (or a replacement by another file) would alter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
    pub mode: u32,
}

impl Stamp {
    pub(crate) fn of(md: &Metadata) -> Stamp {
        Stamp {
            size: md.size(),
            mtime_ns: md
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.mtime_nsec()),
            ctime_ns: md
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.ctime_nsec()),
            ino: md.ino(),
            dev: md.dev(),
            mode: md.mode(),
        }
    }

    /// Was the file changed so recently (relative to `started_ns`) that a
    /// further change might not alter the stamp?
    pub(crate) fn is_racy(&self, started_ns: i64) -> bool {
        self.mtime_ns.max(self.ctime_ns) > started_ns.saturating_sub(RACY_WINDOW_NS)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheEntry {
    pub stamp: Stamp,
    pub sha256: [u8; 32],
    /// Trusted for this session but not written out (see [`RACY_WINDOW_NS`]).
    pub racy: bool,
}

#[derive(Debug, Default)]
pub(crate) struct MetaCache {
    pub entries: HashMap<String, CacheEntry>,
}

impl MetaCache {
    /// The remembered hash of `path` if its stamp is unchanged.
    pub(crate) fn lookup(&self, path: &str, stamp: &Stamp) -> Option<[u8; 32]> {
        match self.entries.get(path) {
            Some(e) if e.stamp == *stamp => Some(e.sha256),
            _ => None,
        }
    }

    pub(crate) fn insert(&mut self, path: &str, stamp: Stamp, sha256: [u8; 32], racy: bool) {
        let entry = CacheEntry {
            stamp,
            sha256,
            racy,
        };
        if let Some(existing) = self.entries.get_mut(path) {
            *existing = entry;
        } else {
            self.entries.insert(path.to_string(), entry);
        }
    }

    /// Reads the cache file for context `root`; any problem yields an empty cache.
    pub(crate) fn load(file: &Path, root: &Path) -> MetaCache {
        match fs::read(file) {
            Ok(bytes) => Self::decode(&bytes, root).unwrap_or_default(),
            Err(_) => MetaCache::default(),
        }
    }

    fn decode(bytes: &[u8], root: &Path) -> Option<MetaCache> {
        let body_len = bytes.len().checked_sub(32)?;
        let (body, trailer) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != trailer {
            return None;
        }
        let mut r = Reader(body);
        if r.take(8)? != MAGIC {
            return None;
        }
        let root_len = r.u32()? as usize;
        if r.take(root_len)? != root.as_os_str().as_encoded_bytes() {
            return None;
        }
        let count = r.u64()?;
        // Each record is at least 4 + 76 bytes: never trust `count` for capacity.
        let capacity = (count as usize).min(r.0.len() / 80);
        let mut entries = HashMap::with_capacity(capacity);
        for _ in 0..count {
            let path_len = r.u32()? as usize;
            let path = std::str::from_utf8(r.take(path_len)?).ok()?.to_string();
            let stamp = Stamp {
                size: r.u64()?,
                mtime_ns: r.u64()? as i64,
                ctime_ns: r.u64()? as i64,
                ino: r.u64()?,
                dev: r.u64()?,
                mode: r.u32()?,
            };
            let sha256: [u8; 32] = r.take(32)?.try_into().ok()?;
            entries.insert(
                path,
                CacheEntry {
                    stamp,
                    sha256,
                    racy: false,
                },
            );
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(MetaCache { entries })
    }

    /// The file contents for [`load`](Self::load): every non-racy entry.
    pub(crate) fn encode(&self, root: &Path) -> Vec<u8> {
        let root = root.as_os_str().as_encoded_bytes();
        let mut out = Vec::with_capacity(64 + root.len() + self.entries.len() * 128);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(root.len() as u32).to_le_bytes());
        out.extend_from_slice(root);
        let count_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        let mut count = 0u64;
        for (path, e) in &self.entries {
            if e.racy {
                continue;
            }
            count += 1;
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            let s = &e.stamp;
            out.extend_from_slice(&s.size.to_le_bytes());
            out.extend_from_slice(&s.mtime_ns.to_le_bytes());
            out.extend_from_slice(&s.ctime_ns.to_le_bytes());
            out.extend_from_slice(&s.ino.to_le_bytes());
            out.extend_from_slice(&s.dev.to_le_bytes());
            out.extend_from_slice(&s.mode.to_le_bytes());
            out.extend_from_slice(&e.sha256);
        }
        out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
        let trailer = Sha256::digest(&out);
        out.extend_from_slice(&trailer);
        out
    }

    /// Writes the cache next to `file` and renames it into place.
    pub(crate) fn save(&self, file: &Path, root: &Path) -> io::Result<()> {
        let bytes = self.encode(root);
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut tmp_name = file.as_os_str().to_owned();
        tmp_name.push(format!(".tmp.{}", std::process::id()));
        let tmp = Path::new(&tmp_name);
        let result = (|| {
            let mut f = File::create(tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            fs::rename(tmp, file)
        })();
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: u64) -> Stamp {
        Stamp {
            size: n,
            mtime_ns: n as i64 * 7,
            ctime_ns: -(n as i64),
            ino: n + 1,
            dev: 42,
            mode: 0o100644,
        }
    }

    #[test]
    fn round_trip_skips_racy_entries() {
        let mut cache = MetaCache::default();
        cache.insert("a", stamp(1), [1; 32], false);
        cache.insert("dir/ü b", stamp(2), [2; 32], false);
        cache.insert("racy", stamp(3), [3; 32], true);
        let root = Path::new("/ctx");
        let bytes = cache.encode(root);
        let back = MetaCache::decode(&bytes, root).expect("decodes");
        assert_eq!(back.entries.len(), 2);
        assert_eq!(back.lookup("a", &stamp(1)), Some([1; 32]));
        assert_eq!(back.lookup("dir/ü b", &stamp(2)), Some([2; 32]));
        assert_eq!(back.lookup("a", &stamp(2)), None, "stamp must match");
        assert_eq!(back.lookup("racy", &stamp(3)), None);
    }

    #[test]
    fn damaged_or_foreign_files_are_ignored() {
        let mut cache = MetaCache::default();
        cache.insert("a", stamp(1), [1; 32], false);
        let root = Path::new("/ctx");
        let bytes = cache.encode(root);
        assert!(MetaCache::decode(&bytes, Path::new("/other")).is_none());
        for cut in [0, 1, 8, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                MetaCache::decode(&bytes[..cut], root).is_none(),
                "cut {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(MetaCache::decode(&flipped, root).is_none());
    }

    #[test]
    fn racy_window() {
        let s = Stamp {
            mtime_ns: 10_000_000_000,
            ctime_ns: 10_000_000_000,
            ..Stamp::default()
        };
        assert!(s.is_racy(10_000_000_000));
        assert!(s.is_racy(10_500_000_000));
        assert!(!s.is_racy(11_000_000_001));
    }
}
