//! The crate's one error type. Every variant that concerns a file names it, so
//! a report that reaches a user says *which* file in the root (or which layer
//! entry) went wrong without a debugger.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the root dir.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A system call on `path` failed; `op` says what we were doing.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A digest string is not `sha256:<64 lowercase hex>` (the only
    /// algorithm the store accepts).
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),

    /// Content did not hash to what it claimed to be.
    #[error("digest mismatch for {}: expected {expected}, got {actual}", path.display())]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// A blob the operation needs is not in the content store.
    #[error("blob {digest} is missing from the content store ({})", path.display())]
    MissingBlob { digest: String, path: PathBuf },

    /// A layer archive entry was refused (path escape, bad link, bad whiteout).
    #[error("unsafe layer entry {entry:?} (unpacking into {}): {reason}", dest.display())]
    UnsafeEntry {
        entry: String,
        dest: PathBuf,
        reason: String,
    },

    /// The layer archive itself could not be read (corrupt tar, bad
    /// compression stream).
    #[error("reading layer archive (unpacking into {}): {source}", dest.display())]
    Archive {
        dest: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Applying one entry of a layer archive failed.
    #[error("layer entry {entry:?} ({}): {op}: {source}", dest.display())]
    Entry {
        entry: String,
        dest: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// Something in a directory cannot be represented in an OCI layer, or
    /// the input uses a format we do not read.
    #[error("unsupported: {what} ({})", path.display())]
    Unsupported { what: String, path: PathBuf },

    /// A JSON file in the root could not be encoded or decoded.
    #[error("JSON in {}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A cache-index key is not a sha256 hex string.
    #[error(
        "invalid cache key {0:?}: expected 64 lowercase hex digits (optionally sha256:-prefixed)"
    )]
    InvalidKey(String),

    /// An OCI value (descriptor, digest) could not be built.
    #[error("OCI data in {}: {source}", path.display())]
    Oci {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },

    /// The root was written by an rbuild with a newer on-disk format.
    #[error("{}: root format {found:?} is not supported by this rbuild (expects {expected:?})", path.display())]
    FormatVersion {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

impl CacheError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CacheError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// `result.ctx("open", &path)?` instead of a `map_err` closure at every call.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T, CacheError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T, CacheError> {
        self.map_err(|e| CacheError::io(op, path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T, CacheError> {
        self.map_err(|e| CacheError::io(op, path, io::Error::from(e)))
    }
}
