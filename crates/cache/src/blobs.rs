//! Content store: `ROOT/blobs/sha256/<hex>`.
//!
//! A blob enters the store only by rename from `ROOT/tmp` after it has been
//! fsynced and its digest computed (or verified), so a file under `blobs/`
//! always holds exactly the content its name says, even after a crash. Blob
//! files are made read-only (0444): they are shared by every image in the
//! root and by `store/blobs`, and must never be edited in place.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{digest_hex, HashingReader, HashingWriter};
use crate::error::IoContext;
use crate::root::{fsync_parent, set_mode};
use crate::{CacheError, Root};

/// Streams content into the store, hashing (sha256) as it writes into a
/// temporary file under `ROOT/tmp`. Dropped without [`BlobWriter::commit`],
/// it deletes the temporary file and leaves nothing in `blobs/`.
pub struct BlobWriter {
    root: Root,
    out: HashingWriter<io::BufWriter<tempfile::NamedTempFile>>,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("tmp", &self.out.get_ref().get_ref().path())
            .field("written", &self.out.count())
            .finish()
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.count()
    }

    /// Make the content durable and move it into the store under its digest.
    /// Returns `("sha256:<hex>", size)`. If the blob is already present the
    /// new copy is discarded (same digest, same bytes).
    pub fn commit(self) -> Result<(String, u64), CacheError> {
        self.commit_inner(None)
    }

    /// Like [`BlobWriter::commit`], but fails (leaving nothing in the store)
    /// unless the content hashes to `expected`: for content from a registry
    /// or another untrusted source, checked in the same pass that writes it.
    pub fn commit_verified(self, expected: &str) -> Result<(String, u64), CacheError> {
        digest_hex(expected)?;
        self.commit_inner(Some(expected))
    }

    fn commit_inner(self, expected: Option<&str>) -> Result<(String, u64), CacheError> {
        let BlobWriter { root, out } = self;
        let (buf, digest, size) = out.finish();
        let tmp = buf
            .into_inner()
            .map_err(|e| CacheError::io("flush", root.tmp_path(), e.into_error()))?;
        if let Some(expected) = expected {
            if expected != digest {
                return Err(CacheError::DigestMismatch {
                    path: tmp.path().to_path_buf(),
                    expected: expected.to_string(),
                    actual: digest,
                });
            }
        }
        let dest = root.blob_path(&digest);
        if dest.exists() {
            // Dedupe: the temporary file is deleted when `tmp` drops.
            return Ok((digest, size));
        }
        set_mode(tmp.as_file(), 0o444, tmp.path())?;
        tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
        tmp.persist(&dest)
            .map_err(|e| CacheError::io("rename into content store", &dest, e.error))?;
        fsync_parent(&dest)?;
        Ok((digest, size))
    }
}

impl Root {
    /// Start writing a blob whose digest is computed as it is written.
    pub fn blob_writer(&self) -> Result<BlobWriter, CacheError> {
        let tmp = self.tmp_path();
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&tmp)
            .ctx("create temporary file in", &tmp)?;
        Ok(BlobWriter {
            root: self.clone(),
            out: HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, file)),
        })
    }

    /// Where the blob `digest` lives (whether or not it is present).
    ///
    /// An invalid digest (anything but `sha256:<64 lowercase hex>`) maps to
    /// `blobs/sha256/invalid-digest`, a name no writer ever creates, so a
    /// hostile digest can never name a path outside the store.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let base = self.path().join("blobs").join("sha256");
        match digest_hex(digest) {
            Ok(hex) => base.join(hex),
            Err(_) => base.join("invalid-digest"),
        }
    }

    /// Whether the blob is in the store (presence only; see
    /// [`Root::verify_blob`] to check content).
    pub fn has_blob(&self, digest: &str) -> bool {
        digest_hex(digest).is_ok() && self.blob_path(digest).is_file()
    }

    /// Open a blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<File, CacheError> {
        digest_hex(digest)?;
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CacheError::MissingBlob {
                digest: digest.to_string(),
                path,
            }),
            Err(e) => Err(CacheError::io("open", path, e)),
        }
    }

    /// Re-hash a stored blob and return its size; an error if it is missing
    /// or its content no longer matches its name (disk corruption, someone
    /// editing the store by hand).
    pub fn verify_blob(&self, digest: &str) -> Result<u64, CacheError> {
        let path = self.blob_path(digest);
        let mut r = HashingReader::new(self.open_blob(digest)?);
        io::copy(&mut r, &mut io::sink()).ctx("read", &path)?;
        let (actual, size) = r.finish();
        if actual != digest {
            return Err(CacheError::DigestMismatch {
                path,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(size)
    }

    /// Move a finished file (normally under `ROOT/tmp`) into the store after
    /// checking that it hashes to `expected_digest`. On success the file is
    /// gone from `tmp_file`; on failure it is left there for its owner (a
    /// `TempDir`, usually) to clean up, and nothing is added to the store.
    pub fn import_blob_file(
        &self,
        tmp_file: &Path,
        expected_digest: &str,
    ) -> Result<(), CacheError> {
        digest_hex(expected_digest)?;
        let file = File::open(tmp_file).ctx("open", tmp_file)?;
        // fsync before hashing: the rename below must not outrun the data.
        file.sync_all().ctx("fsync", tmp_file)?;
        let mut r = HashingReader::new(io::BufReader::with_capacity(256 * 1024, file));
        io::copy(&mut r, &mut io::sink()).ctx("read", tmp_file)?;
        let (actual, _) = r.finish();
        if actual != expected_digest {
            return Err(CacheError::DigestMismatch {
                path: tmp_file.to_path_buf(),
                expected: expected_digest.to_string(),
                actual,
            });
        }
        let dest = self.blob_path(expected_digest);
        if dest.exists() {
            fs::remove_file(tmp_file).ctx("remove", tmp_file)?;
            return Ok(());
        }
        let f = File::open(tmp_file).ctx("open", tmp_file)?;
        set_mode(&f, 0o444, tmp_file)?;
        match fs::rename(tmp_file, &dest) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                // Not on the root's filesystem: copy through a BlobWriter,
                // which re-verifies what it writes.
                let mut w = self.blob_writer()?;
                io::copy(&mut (&f), &mut w).ctx("copy", tmp_file)?;
                w.commit_verified(expected_digest)?;
                fs::remove_file(tmp_file).ctx("remove", tmp_file)?;
                return Ok(());
            }
            Err(e) => return Err(CacheError::io("rename into content store", dest, e)),
        }
        fsync_parent(&dest)
    }

    /// Store a small in-memory blob (a manifest, a config); returns its
    /// digest.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<String, CacheError> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).ctx("write", self.tmp_path())?;
        Ok(w.commit()?.0)
    }

    /// Read a whole blob into memory. Only for small blobs (manifests,
    /// configs); layers are streamed with [`Root::open_blob`]. The content is
    /// verified against its digest, since the caller is about to trust it.
    pub fn read_blob_bytes(&self, digest: &str) -> Result<Vec<u8>, CacheError> {
        let path = self.blob_path(digest);
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .ctx("read", &path)?;
        let actual = crate::digest::sha256_digest(&bytes);
        if actual != digest {
            return Err(CacheError::DigestMismatch {
                path,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_digest;

    fn blobs_in(root: &Root) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(root.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn tmp_entries(root: &Root) -> usize {
        fs::read_dir(root.path().join("tmp")).unwrap().count()
    }

    #[test]
    fn writer_commit_and_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut w = root.blob_writer().unwrap();
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (d, n) = w.commit().unwrap();
        assert_eq!(d, sha256_digest(b"hello world"));
        assert_eq!(n, 11);
        assert!(root.has_blob(&d));
        assert_eq!(fs::read(root.blob_path(&d)).unwrap(), b"hello world");
        assert_eq!(root.put_blob_bytes(b"hello world").unwrap(), d);
        assert_eq!(blobs_in(&root).len(), 1);
        assert_eq!(tmp_entries(&root), 0, "temporary files left behind");
        assert_eq!(root.verify_blob(&d).unwrap(), 11);
        assert_eq!(root.read_blob_bytes(&d).unwrap(), b"hello world");
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        {
            let mut w = root.blob_writer().unwrap();
            w.write_all(&[1u8; 4096]).unwrap();
            assert_eq!(tmp_entries(&root), 1);
        }
        assert!(blobs_in(&root).is_empty());
        assert_eq!(tmp_entries(&root), 0);
    }

    #[test]
    fn commit_verified_rejects_wrong_content() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut w = root.blob_writer().unwrap();
        w.write_all(b"abc").unwrap();
        let err = w.commit_verified(&sha256_digest(b"abd")).unwrap_err();
        assert!(matches!(err, CacheError::DigestMismatch { .. }), "{err}");
        assert!(blobs_in(&root).is_empty());
        assert_eq!(tmp_entries(&root), 0);
    }

    #[test]
    fn import_verifies_digest() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let t = root.tmp_dir().unwrap();
        let f = t.path().join("layer");
        fs::write(&f, b"layer bytes").unwrap();

        let wrong = sha256_digest(b"other bytes");
        let err = root.import_blob_file(&f, &wrong).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert!(blobs_in(&root).is_empty(), "wrong digest left a blob");
        assert!(!root.has_blob(&wrong));
        assert!(f.exists(), "failed import must leave the caller's file");

        let err = root.import_blob_file(&f, "sha256:../../evil").unwrap_err();
        assert!(matches!(err, CacheError::InvalidDigest(_)), "{err}");

        let right = sha256_digest(b"layer bytes");
        root.import_blob_file(&f, &right).unwrap();
        assert!(!f.exists());
        assert!(root.has_blob(&right));
        assert_eq!(fs::read(root.blob_path(&right)).unwrap(), b"layer bytes");
    }

    #[test]
    fn hostile_digest_never_names_a_path_outside() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let p = root.blob_path("sha256:../../../etc/passwd");
        assert!(p.starts_with(root.path().join("blobs/sha256")));
        assert!(!root.has_blob("sha256:../../../etc/passwd"));
        assert!(matches!(
            root.open_blob("md5:abc"),
            Err(CacheError::InvalidDigest(_))
        ));
        let missing = sha256_digest(b"nope");
        assert!(matches!(
            root.open_blob(&missing),
            Err(CacheError::MissingBlob { .. })
        ));
    }

    #[test]
    fn verify_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let d = root.put_blob_bytes(b"original").unwrap();
        let p = root.blob_path(&d);
        let mut perms = fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&p, perms).unwrap();
        fs::write(&p, b"tampered").unwrap();
        assert!(matches!(
            root.verify_blob(&d),
            Err(CacheError::DigestMismatch { .. })
        ));
        assert!(root.read_blob_bytes(&d).is_err());
    }
}
