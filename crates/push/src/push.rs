//! Pushing an image from the local store to a registry.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use rbuild_cache::{Compression, Root};
use rbuild_registry::media_types as mt;
use rbuild_registry::{Client, Reference};

use crate::image::{layer_types, outgoing_manifest, ImageRef, LayerFormat, LayerReplacement};
use crate::PushError;

/// How many blobs are compressed / uploaded at once.
pub const MAX_CONCURRENT_UPLOADS: usize = 4;

/// What a push did (for tests and progress reports).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Blobs (layers and config) uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had (or, for non-distributable layers
    /// absent from the store, that are not ours to upload).
    pub skipped: usize,
}

/// Push `image` to `dest`: compress uncompressed layers with gzip (cached in
/// the store by [`Root::compress_blob`], so a second push does not compress
/// again), skip blobs the registry already has, upload the others
/// concurrently (at most [`MAX_CONCURRENT_UPLOADS`] at once), then the
/// config, then an OCI manifest naming the compressed layers
/// (`application/vnd.oci.image.layer.v1.tar+gzip`; same config, so the same
/// diff_ids). Returns the pushed manifest's digest.
///
/// Layers already compressed (gzip, zstd) are pushed as they are, under
/// their OCI media types. `dest`'s tag (or digest) names the manifest.
pub async fn push_image(
    root: &Root,
    client: &Client,
    image: &ImageRef,
    dest: &Reference,
) -> Result<String, PushError> {
    Ok(push_image_with_stats(root, client, image, dest).await?.0)
}

/// [`push_image`], also returning what it did.
#[doc(hidden)]
pub async fn push_image_with_stats(
    root: &Root,
    client: &Client,
    image: &ImageRef,
    dest: &Reference,
) -> Result<(String, PushStats), PushError> {
    let types = layer_types(image)?;
    let raw = root.read_blob_bytes(&image.manifest_digest)?;
    let config = image.manifest.config();
    let config_digest = config.digest().to_string();
    if !root.has_blob(&config_digest) {
        // Fail before uploading anything.
        root.open_blob(&config_digest)?;
    }

    // One job per distinct layer blob (an image may repeat a layer).
    let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
    for (layer, t) in image.manifest.layers().iter().zip(&types) {
        let digest = layer.digest().to_string();
        // A layer rbuild built may exist only as a snapshot: compress_blob
        // makes its tar from there.
        let present = root.has_blob(&digest)
            || (t.format == LayerFormat::Tar && root.layer_source(&digest)?.is_some());
        if !present && !t.nondistributable {
            root.open_blob(&digest)?; // the MissingBlob error
        }
        jobs.entry(digest.clone()).or_insert(Job {
            digest,
            size: layer.size(),
            compress: t.format == LayerFormat::Tar && !t.nondistributable,
            present,
        });
    }

    let results: Vec<(String, Option<LayerReplacement>, bool)> = stream::iter(
        jobs.into_values()
            .map(|job| push_layer(root, client, dest, job)),
    )
    .buffer_unordered(MAX_CONCURRENT_UPLOADS)
    .try_collect()
    .await?;
    let mut stats = PushStats::default();
    let mut replaced = BTreeMap::new();
    for (digest, replacement, uploaded) in results {
        if uploaded {
            stats.uploaded += 1;
        } else {
            stats.skipped += 1;
        }
        if let Some(r) = replacement {
            replaced.insert(digest, r);
        }
    }

    if upload(root, client, dest, &config_digest, config.size()).await? {
        stats.uploaded += 1;
    } else {
        stats.skipped += 1;
    }

    let replace: Vec<Option<LayerReplacement>> = image
        .manifest
        .layers()
        .iter()
        .map(|l| replaced.get(&l.digest().to_string()).cloned())
        .collect();
    let manifest = outgoing_manifest(&raw, &replace)?;
    let digest = client
        .push_manifest(dest, mt::OCI_MANIFEST, &manifest)
        .await?;
    Ok((digest, stats))
}

struct Job {
    digest: String,
    size: u64,
    /// An uncompressed layer: pushed as its gzip form.
    compress: bool,
    /// In the local store (a non-distributable layer may not be).
    present: bool,
}

/// Compress (if needed) and upload one layer; returns its original digest,
/// the descriptor replacing it (if compressed) and whether it was uploaded.
async fn push_layer(
    root: &Root,
    client: &Client,
    dest: &Reference,
    job: Job,
) -> Result<(String, Option<LayerReplacement>, bool), PushError> {
    if !job.present {
        return Ok((job.digest, None, false));
    }
    let (digest, size, replacement) = if job.compress {
        let r = root.clone();
        let d = job.digest.clone();
        let (digest, size) =
            tokio::task::spawn_blocking(move || r.compress_blob(&d, Compression::Gzip))
                .await
                .map_err(|e| {
                    PushError::io(
                        format!("compress layer {}", job.digest),
                        std::io::Error::other(e),
                    )
                })??;
        let replacement = LayerReplacement {
            media_type: Compression::Gzip.oci_layer_media_type(),
            digest: digest.clone(),
            size,
        };
        (digest, size, Some(replacement))
    } else {
        (job.digest.clone(), job.size, None)
    };
    let uploaded = upload(root, client, dest, &digest, size).await?;
    Ok((job.digest, replacement, uploaded))
}

/// Upload one blob from the store unless the registry has it; whether it
/// was uploaded.
async fn upload(
    root: &Root,
    client: &Client,
    dest: &Reference,
    digest: &str,
    size: u64,
) -> Result<bool, PushError> {
    if client.blob_exists(dest, digest).await? {
        return Ok(false);
    }
    client
        .push_blob(dest, digest, size, &root.blob_path(digest))
        .await?;
    Ok(true)
}
