//! Layers: tar ⇄ overlay-format snapshot dir, and compressed forms of layer
//! blobs.

mod sys;
mod unpack;
mod write;

use std::io::{self, Read, Write};
use std::path::Path;

pub use unpack::unpack_layer;
pub use write::write_layer_tar;

use crate::digest::digest_hex;
use crate::digest::HashingReader;
use crate::error::IoContext;
use crate::keys::derived_key;
use crate::{CacheError, Root, SnapshotId};

/// Decompress a layer stream by sniffing its first bytes (gzip, zstd, or a
/// plain tar), then [`unpack_layer`]. Returns the diff_id (digest of the
/// *uncompressed* tar).
///
/// gzip is read as a multi-member stream (parallel compressors such as
/// pigz write several members), zstd as a sequence of frames.
pub fn unpack_compressed_layer(reader: impl Read, dest: &Path) -> Result<String, CacheError> {
    let mut reader = reader;
    let mut magic = [0u8; 6];
    let mut n = 0;
    // Fill the sniff buffer even from a reader that returns short reads.
    while n < magic.len() {
        match reader.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(CacheError::Archive {
                    dest: dest.to_path_buf(),
                    source,
                })
            }
        }
    }
    let head = &magic[..n];
    let stream = io::Cursor::new(head.to_vec()).chain(reader);
    match sniff(head) {
        Sniffed::Gzip => unpack_layer(flate2::read::MultiGzDecoder::new(stream), dest),
        Sniffed::Zstd => {
            let dec =
                zstd::stream::read::Decoder::new(stream).map_err(|source| CacheError::Archive {
                    dest: dest.to_path_buf(),
                    source,
                })?;
            unpack_layer(dec, dest)
        }
        Sniffed::Tar => unpack_layer(stream, dest),
        Sniffed::Other(what) => Err(CacheError::Unsupported {
            what: format!("{what}-compressed layer"),
            path: dest.to_path_buf(),
        }),
    }
}

enum Sniffed {
    Gzip,
    Zstd,
    Tar,
    Other(&'static str),
}

fn sniff(head: &[u8]) -> Sniffed {
    if head.starts_with(&[0x1f, 0x8b]) {
        Sniffed::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Sniffed::Zstd
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Sniffed::Other("xz")
    } else if head.starts_with(b"BZh") {
        Sniffed::Other("bzip2")
    } else {
        Sniffed::Tar
    }
}

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// The name used in keys and media types.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The OCI layer media type for a layer compressed this way.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Where a layer known by its diff_id can be regenerated from.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct LayerSource {
    pub snapshot: SnapshotId,
    /// Size of the layer tar.
    pub size: u64,
}

/// What the key index remembers about a compressed form of a blob.
#[derive(serde::Serialize, serde::Deserialize)]
struct CompressedRecord {
    digest: String,
    size: u64,
}

impl Root {
    /// Compress the (uncompressed layer) blob `uncompressed_digest` into the
    /// content store; returns the compressed blob's `(digest, size)`.
    ///
    /// The result is remembered in the key index, so asking again (the next
    /// push of an image sharing the layer) costs a lookup, not a
    /// recompression. Output is deterministic for a given library version:
    /// gzip with mtime 0 and no file name, level 6; zstd level 3 with a
    /// checksum. The input is re-hashed as it is read and the result is
    /// discarded if the stored blob turns out corrupt.
    pub fn compress_blob(
        &self,
        uncompressed_digest: &str,
        algo: Compression,
    ) -> Result<(String, u64), CacheError> {
        let key = derived_key(&[
            "rbuild-compressed-blob-v1",
            algo.name(),
            uncompressed_digest,
        ]);
        if let Some(rec) = self.get_key::<CompressedRecord>(&key)? {
            if self.has_blob(&rec.digest) {
                return Ok((rec.digest, rec.size));
            }
        }
        let src_path = self.blob_path(uncompressed_digest);
        let out = self.blob_writer()?;
        let tmp = self.tmp_path();
        // A layer rbuild built may exist only as its snapshot: then the tar is
        // regenerated straight into the compressor (it is deterministic, and
        // its digest is checked below), never written uncompressed.
        let from_snapshot = if self.has_blob(uncompressed_digest) {
            None
        } else {
            self.layer_source(uncompressed_digest)?
        };
        let (out, actual) = match from_snapshot {
            Some(src) => {
                let dir = self.snapshot_path(src.snapshot);
                match algo {
                    Compression::Gzip => {
                        let mut enc = flate2::GzBuilder::new().mtime(0).write(
                            io::BufWriter::with_capacity(256 * 1024, out),
                            flate2::Compression::new(6),
                        );
                        let (diff_id, _) = write_layer_tar(&dir, &mut enc)?;
                        let out = enc.finish().ctx("compress into", &tmp)?;
                        (
                            out.into_inner()
                                .map_err(|e| CacheError::io("flush", &tmp, e.into_error()))?,
                            diff_id,
                        )
                    }
                    Compression::Zstd => {
                        let mut enc =
                            zstd::stream::write::Encoder::new(out, 3).ctx("compress into", &tmp)?;
                        enc.include_checksum(true).ctx("compress into", &tmp)?;
                        let (diff_id, _) = write_layer_tar(&dir, &mut enc)?;
                        (enc.finish().ctx("compress into", &tmp)?, diff_id)
                    }
                }
            }
            None => {
                let mut input = HashingReader::new(io::BufReader::with_capacity(
                    256 * 1024,
                    self.open_blob(uncompressed_digest)?,
                ));
                let out = match algo {
                    Compression::Gzip => {
                        let mut enc = flate2::GzBuilder::new()
                            .mtime(0)
                            .write(out, flate2::Compression::new(6));
                        io::copy(&mut input, &mut enc).ctx("compress", &src_path)?;
                        enc.finish().ctx("compress into", &tmp)?
                    }
                    Compression::Zstd => {
                        let mut enc =
                            zstd::stream::write::Encoder::new(out, 3).ctx("compress into", &tmp)?;
                        enc.include_checksum(true).ctx("compress into", &tmp)?;
                        io::copy(&mut input, &mut enc).ctx("compress", &src_path)?;
                        enc.finish().ctx("compress into", &tmp)?
                    }
                };
                (out, input.finish().0)
            }
        };
        if actual != uncompressed_digest {
            // `out` is dropped uncommitted: nothing enters the store.
            return Err(CacheError::DigestMismatch {
                path: src_path,
                expected: uncompressed_digest.to_string(),
                actual,
            });
        }
        let (digest, size) = out.commit()?;
        // The blob is durable (commit fsyncs) before the record naming it.
        self.put_key(
            &key,
            &CompressedRecord {
                digest: digest.clone(),
                size,
            },
        )?;
        Ok((digest, size))
    }

    /// The `(diff_id, size)` of `src_dir` as a layer tar, computed without
    /// storing the tar, and remembered as that layer's source: the blob is
    /// written only when something needs it ([`Root::ensure_blob`], or
    /// [`Root::compress_blob`] straight from the snapshot). A build thus never
    /// writes a layer twice (once as files, once as a tar) on its hot path.
    pub fn hash_layer_from_snapshot(&self, id: SnapshotId) -> Result<(String, u64), CacheError> {
        let (diff_id, size) = write_layer_tar(&self.snapshot_path(id), io::sink())?;
        self.put_key(
            &derived_key(&["rbuild-layer-source-v1", &diff_id]),
            &LayerSource { snapshot: id, size },
        )?;
        Ok((diff_id, size))
    }

    /// The snapshot holding the layer `diff_id`, if one was recorded and still exists.
    pub fn layer_source(&self, diff_id: &str) -> Result<Option<LayerSource>, CacheError> {
        let rec =
            self.get_key::<LayerSource>(&derived_key(&["rbuild-layer-source-v1", diff_id]))?;
        match rec {
            Some(r) if self.snapshot_intact(r.snapshot, Some(diff_id))? => Ok(Some(r)),
            _ => Ok(None),
        }
    }

    /// Makes sure blob `digest` is in the content store: a layer known only
    /// by its snapshot is written out as its tar, verified against `digest`.
    pub fn ensure_blob(&self, digest: &str) -> Result<(), CacheError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let Some(src) = self.layer_source(digest)? else {
            return Err(CacheError::MissingBlob {
                digest: digest.to_string(),
                path: self.blob_path(digest),
            });
        };
        let _guard = self.lock(&format!("layer-{}", &digest_hex(digest)?[..16]))?;
        if self.has_blob(digest) {
            return Ok(());
        }
        let mut w = self.blob_writer()?;
        write_layer_tar(&self.snapshot_path(src.snapshot), &mut w)?;
        w.flush().ctx("write", self.tmp_path())?;
        w.commit_verified(digest)?;
        Ok(())
    }

    /// Write `src_dir` as an uncompressed layer tar into the content store;
    /// returns `(diff_id, size)` (the blob's digest is the diff_id).
    pub fn put_layer_from_dir(&self, src_dir: &Path) -> Result<(String, u64), CacheError> {
        let mut w = self.blob_writer()?;
        let (diff_id, size) = write_layer_tar(src_dir, &mut w)?;
        w.flush().ctx("write", self.tmp_path())?;
        let (digest, stored) = w.commit()?;
        debug_assert_eq!((&digest, stored), (&diff_id, size));
        Ok((digest, stored))
    }
}
