//! `rbuild-cache`: rbuild's state directory ("root") and every on-disk
//! format in it.
//!
//! ```text
//! ROOT/format                  "rbuild-root 1": refuses roots from a newer rbuild
//! ROOT/blobs/sha256/<hex>      content store (read-only files, named by digest)
//! ROOT/snapshots/<n>/fs        overlay-format layer dirs; <n>/work is the overlay workdir
//! ROOT/snapshots/<n>/made-in-boot-<id>  the machine boot that wrote it (`verified` once checked)
//! ROOT/snapshots/.next         snapshot number counter (numbers are never reused)
//! ROOT/keys/<hex>.json         key index: CacheKey → JSON record
//! ROOT/store/                  OCI image layout; tags are ref.name annotations in
//!                              index.json; store/blobs -> ../blobs (symlink)
//! ROOT/tmp/                    everything is written here first, then renamed in
//! ROOT/locks/<name>.lock       flock(2) locks shared by every process on the root
//! ```
//!
//! Crash safety: every file is written to `tmp/`, fsynced and renamed into
//! place (then the directory is fsynced); an index entry (key record, tag)
//! is written only after what it points to is complete. Snapshot contents
//! are the exception: they are not fsynced, and a snapshot written before
//! the machine last booted is re-hashed against its diff_id before it is
//! used again ([`Root::snapshot_intact`]). Whatever a killed process leaves
//! behind is in `tmp/` or is an unreferenced snapshot: never a half-written
//! blob, record or index.
//!
//! The crate never runs processes and never mounts anything; it only reads
//! and writes the dirs above.

mod blobs;
mod digest;
mod error;
mod keys;
mod layer;
mod lock;
mod root;
mod snapshots;
mod store;

pub use blobs::BlobWriter;
pub use digest::{digest_hex, sha256_digest, HashingReader, HashingWriter};
pub use error::CacheError;
pub use layer::{unpack_compressed_layer, unpack_layer, write_layer_tar, Compression, LayerSource};
pub use lock::LockGuard;
pub use root::Root;
pub use snapshots::SnapshotId;
