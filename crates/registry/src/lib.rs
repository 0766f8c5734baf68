//! OCI Distribution client for rbuild: resolve and pull base images, push
//! built images.
//!
//! * [`Reference`] parses image references with Docker's normalisation.
//! * [`Client`] speaks the Distribution API (v2) over HTTP(S): manifests
//!   (OCI and Docker schema2, indexes / manifest lists resolved by
//!   [`Platform`]), streaming verified blob download and upload, anonymous,
//!   Basic and Bearer-token authentication with credentials from the Docker
//!   client configuration, mirrors and bounded retries.
//!
//! The client only ever talks to the registry named by a reference, to the
//! mirrors configured for it, and to the hosts the registry sends it to
//! (token realm, redirects, upload locations).

mod auth;
mod client;
mod digest;
mod error;
mod platform;
mod reference;

pub use auth::{parse_www_authenticate, Challenge, Credentials, DOCKER_HUB_AUTH_KEY};
pub use client::Client;
pub use digest::sha256_digest;
pub use error::{ApiError, RegistryError};
pub use platform::Platform;
pub use reference::{Reference, DEFAULT_TAG, DOCKER_HUB, DOCKER_HUB_API_HOST};

use std::collections::HashMap;
use std::path::PathBuf;

/// Manifest and index media types.
pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";

    /// Single-platform image manifests this crate handles.
    pub fn is_manifest(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }

    /// Multi-platform indexes this crate handles.
    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
    }
}

/// Client settings.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Registries (`host[:port]`, or CIDR ranges such as `10.0.0.0/8`)
    /// spoken to over plain HTTP. Loopback hosts always are.
    pub insecure_registries: Vec<String>,
    /// Mirrors per registry name (`docker.io` → `["https://mirror.example"]`),
    /// tried in order before the registry itself when pulling. Entries may be
    /// URLs or bare `host[:port]`.
    pub mirrors: HashMap<String, Vec<String>>,
    /// Docker client config holding credentials; `None` means
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
}

/// A reference resolved to one single-platform image manifest.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Digest of the chosen (platform) manifest.
    pub digest: String,
    /// Its media type (OCI or Docker schema2 manifest).
    pub media_type: String,
    /// Its bytes exactly as served.
    pub bytes: Vec<u8>,
    /// The parsed manifest (Docker schema2 parses structurally as OCI).
    pub manifest: oci_spec::image::ImageManifest,
}
