//! Digest strings and hashing adapters.
//!
//! Invariant 5 ("each byte is hashed once on its way") is why hashing is done
//! by wrapping the reader or writer that moves the bytes anyway, instead of a
//! second pass over a file.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::CacheError;

/// The hex part of a `sha256:<hex>` digest, validated so that it can be used
/// as a file name: hostile manifests carry digests, and `sha256:../../x` must
/// never become a path.
pub fn digest_hex(digest: &str) -> Result<&str, CacheError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| CacheError::InvalidDigest(digest.to_string()))?;
    if is_sha256_hex(hex) {
        Ok(hex)
    } else {
        Err(CacheError::InvalidDigest(digest.to_string()))
    }
}

/// 64 lowercase hex digits (the OCI canonical form; uppercase is rejected so
/// that one blob has exactly one name).
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `sha256:<hex>` of a byte slice.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format_digest(Sha256::digest(bytes).as_slice())
}

pub(crate) fn format_digest(raw: &[u8]) -> String {
    format!("sha256:{}", hex::encode(raw))
}

/// A reader that hashes and counts every byte it hands out.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Finish: `("sha256:<hex>", bytes read)`.
    pub fn finish(self) -> (String, u64) {
        (format_digest(self.hasher.finalize().as_slice()), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts every byte it passes on.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Finish: `(inner writer, "sha256:<hex>", bytes written)`.
    pub fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            format_digest(self.hasher.finalize().as_slice()),
            self.count,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Hash only what the inner writer accepted, so a short write is not
        // hashed twice when the caller retries the rest.
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_validation() {
        let good = sha256_digest(b"");
        assert_eq!(
            good,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(digest_hex(&good).is_ok());
        for bad in [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:../../../../etc/passwd",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0",
        ] {
            assert!(digest_hex(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn hashing_adapters_agree() {
        let data = vec![7u8; 100_000];
        let mut r = HashingReader::new(&data[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (out, wd, wn) = w.finish();
        assert_eq!(out, data);
        assert_eq!(r.finish(), (wd.clone(), wn));
        assert_eq!(wd, sha256_digest(&data));
    }
}
