//! `rbuild-push`: everything by which an image leaves rbuild's local store.
//!
//! * [`find_image`] looks an image up in the store by tag (as given or
//!   Docker-normalised) or by manifest digest.
//! * [`export_docker_archive`] writes a `docker load`-able tar (BuildKit's
//!   `type=docker`): an OCI image layout plus Docker's `manifest.json`.
//! * [`export_oci_archive`] writes an OCI image layout as a tar (BuildKit's
//!   `type=oci`).
//! * [`push_image`] uploads an image to a registry, gzip-compressing the
//!   uncompressed layers rbuild builds (the compressed form is cached in the
//!   store, so the next push of a layer does not compress it again).
//!
//! Archives are written streaming (blob files are copied, never held in
//! memory; each is re-hashed on the way and the write fails if a blob no
//! longer matches its digest) and deterministically: entries sorted by path,
//! mtime 0, uid/gid 0, mode 0644 for files and 0755 for directories.
//!
//! Images leaving the store are normalised to OCI media types: a manifest
//! that still names Docker media types (layers pulled from a Docker registry)
//! is rewritten with their OCI equivalents, which changes its digest; a
//! manifest that needs no rewriting is exported byte for byte.

mod archive;
mod image;
mod push;

use std::io;

pub use archive::{export_docker_archive, export_oci_archive};
pub use image::{docker_short_name, find_image, ImageRef};
pub use push::{push_image, MAX_CONCURRENT_UPLOADS};
#[doc(hidden)]
pub use push::{push_image_with_stats, PushStats};

use rbuild_cache::CacheError;
use rbuild_registry::RegistryError;

/// Everything that can go wrong while exporting or pushing an image.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The local store failed (missing or corrupt blob, I/O in the root).
    #[error(transparent)]
    Cache(#[from] CacheError),

    /// The registry refused or failed an operation.
    #[error(transparent)]
    Registry(#[from] RegistryError),

    /// Writing the output (or a temporary file) failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// No image of that name or digest is in the local store.
    #[error("{0}")]
    NotFound(String),

    /// The image (or an argument) cannot be exported or pushed as it is.
    #[error("{0}")]
    Invalid(String),
}

impl PushError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        PushError::Io {
            context: context.into(),
            source,
        }
    }
}
