//! Key index: `ROOT/keys/<hex>.json`, one JSON record per cache key.
//!
//! One file per key (rather than an embedded database) keeps every write a
//! single atomic rename and lets several processes share the index with no
//! coordination beyond that: a record is immutable once its content is
//! settled, and the last writer of equal work wins harmlessly.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::digest::is_sha256_hex;
use crate::{CacheError, Root};

/// The hex part of a key: keys are sha256 values (`CacheKey`s), with or
/// without a `sha256:` prefix. Anything else is refused so that a key can
/// never be a path.
fn key_hex(key: &str) -> Result<&str, CacheError> {
    let hex = key.strip_prefix("sha256:").unwrap_or(key);
    if is_sha256_hex(hex) {
        Ok(hex)
    } else {
        Err(CacheError::InvalidKey(key.to_string()))
    }
}

/// A key for an internal record derived from a domain tag and parts
/// (`\0`-separated so that parts cannot run into each other). Used by
/// records the cache keeps for itself, e.g. compressed forms of blobs.
pub(crate) fn derived_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

impl Root {
    fn key_path(&self, hex: &str) -> PathBuf {
        self.path().join("keys").join(format!("{hex}.json"))
    }

    /// Look a key up. A record that does not decode as `T` (written by
    /// another rbuild version with a different record shape, or damaged) is
    /// a cache miss, not an error: the cache must never stop a build that
    /// could just redo the work.
    pub fn get_key<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CacheError> {
        let path = self.key_path(key_hex(key)?);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::io("read", path, e)),
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Record `rec` under `key`, replacing any previous record. Durable when
    /// this returns. Write a record only after what it points to (blobs,
    /// snapshot content: see [`Root::sync`]) is durable.
    pub fn put_key<T: Serialize>(&self, key: &str, rec: &T) -> Result<(), CacheError> {
        let path = self.key_path(key_hex(key)?);
        let json = serde_json::to_vec(rec).map_err(|source| CacheError::Json {
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &json)
    }

    /// Remove a key's record; whether it existed.
    pub fn remove_key(&self, key: &str) -> Result<bool, CacheError> {
        let path = self.key_path(key_hex(key)?);
        match fs::remove_file(&path) {
            Ok(()) => {
                crate::root::fsync_parent(&path)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CacheError::io("remove", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        snapshot: u64,
        diff_id: String,
        env: Vec<String>,
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let key = derived_key(&["test", "a"]);
        assert_eq!(root.get_key::<Rec>(&key).unwrap(), None);
        let rec = Rec {
            snapshot: 7,
            diff_id: "sha256:00".into(),
            env: vec!["A=1".into()],
        };
        root.put_key(&key, &rec).unwrap();
        assert_eq!(root.get_key::<Rec>(&key).unwrap(), Some(rec));
        // The prefixed spelling names the same record.
        let prefixed = format!("sha256:{key}");
        assert!(root.get_key::<Rec>(&prefixed).unwrap().is_some());
        assert!(root
            .path()
            .join("keys")
            .join(format!("{key}.json"))
            .is_file());
        // Replace.
        let rec2 = Rec {
            snapshot: 8,
            diff_id: "sha256:01".into(),
            env: vec![],
        };
        root.put_key(&key, &rec2).unwrap();
        assert_eq!(root.get_key::<Rec>(&key).unwrap(), Some(rec2));
        // A record of another shape is a miss.
        assert_eq!(root.get_key::<Vec<u8>>(&key).unwrap(), None);
        assert!(root.remove_key(&key).unwrap());
        assert!(!root.remove_key(&key).unwrap());
        assert_eq!(root.get_key::<Rec>(&key).unwrap(), None);
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn bad_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        for bad in ["", "../../etc/passwd", "abc", &"A".repeat(64)] {
            assert!(matches!(
                root.put_key(bad, &1u32),
                Err(CacheError::InvalidKey(_))
            ));
            assert!(root.get_key::<u32>(bad).is_err());
        }
    }
}
