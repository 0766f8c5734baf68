//! Base images: resolving a reference to a pinned manifest and config (at
//! plan time), and making sure every layer is unpacked into a snapshot (at
//! run time). The local store is consulted before any registry, so images
//! rbuild built can be used as bases without a registry.

use std::sync::Arc;

use rbuild_cache::Root;
use rbuild_planner::image::{BaseImage, ContainerConfig, History};
use rbuild_registry::{Client, Reference};
use serde::{Deserialize, Serialize};

use crate::build::LayerRef;
use crate::error::ExecError;

/// The parts of an image config blob the builder reads.
#[derive(Debug, Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<ContainerConfig>,
    #[serde(default)]
    history: Vec<History>,
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Where a pinned image came from, remembered between plan and run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PinnedImage {
    reference: String,
    manifest: String,
}

/// A snapshot that holds one unpacked layer blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub snapshot: u64,
    pub diff_id: String,
}

pub struct Puller {
    root: Arc<Root>,
    client: Arc<Client>,
    always_pull: bool,
}

const MAX_SMALL_BLOB: u64 = 32 << 20;

impl Puller {
    pub fn new(root: Arc<Root>, client: Arc<Client>) -> Self {
        Puller {
            root,
            client,
            always_pull: false,
        }
    }

    /// `--pull`: resolve references at the registry even when the local
    /// store has an image of that name.
    pub fn always_pull(mut self, yes: bool) -> Self {
        self.always_pull = yes;
        self
    }

    /// Resolves `reference` for `platform`: the local store first, then the
    /// registry. The manifest and config are stored in the content store so
    /// the run needs no second round trip.
    pub async fn resolve(
        &self,
        reference: &str,
        platform: &rbuild_planner::Platform,
    ) -> Result<BaseImage, ExecError> {
        if !self.always_pull {
            if let Some(desc) = self.root.resolve_image(reference)? {
                let digest = desc.digest().to_string();
                return self.base_from_store(reference, &digest);
            }
        }
        let r = Reference::parse(reference)?;
        let normalized = r.to_string();
        if normalized != reference && !self.always_pull {
            if let Some(desc) = self.root.resolve_image(&normalized)? {
                let digest = desc.digest().to_string();
                return self.base_from_store(&normalized, &digest);
            }
        }
        let p = rbuild_registry::Platform::new(
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref(),
        );
        let resolved = self.client.resolve(&r, &p).await?;
        let stored = self.root.put_blob_bytes(&resolved.bytes)?;
        if stored != resolved.digest {
            return Err(ExecError::invalid(format!(
                "manifest of {normalized} changed while storing it"
            )));
        }
        let config_digest = resolved.manifest.config().digest().to_string();
        if !self.root.has_blob(&config_digest) {
            let bytes = self
                .client
                .fetch_blob_bytes(&r, &config_digest, MAX_SMALL_BLOB)
                .await?;
            self.root.put_blob_bytes(&bytes)?;
        }
        self.root.put_key(
            &pin_key(&resolved.digest),
            &PinnedImage {
                reference: normalized.clone(),
                manifest: resolved.digest.clone(),
            },
        )?;
        self.base_from_store(&normalized, &resolved.digest)
    }

    fn base_from_store(
        &self,
        reference: &str,
        manifest_digest: &str,
    ) -> Result<BaseImage, ExecError> {
        let manifest = read_manifest(&self.root, manifest_digest)?;
        let config: ConfigBlob = serde_json::from_slice(
            &self
                .root
                .read_blob_bytes(manifest.config().digest().as_ref())?,
        )
        .map_err(|e| ExecError::invalid(format!("invalid image config of {reference}: {e}")))?;
        Ok(BaseImage {
            reference: reference.to_string(),
            digest: manifest_digest.to_string(),
            os: config.os,
            architecture: config.architecture,
            variant: config.variant,
            config: config.config.unwrap_or_default(),
            history: config.history,
        })
    }

    /// Makes sure every layer of the image is unpacked, downloading what is
    /// missing (concurrently), and returns them bottom first.
    pub async fn layers(
        &self,
        reference: &str,
        manifest_digest: &str,
    ) -> Result<Vec<LayerRef>, ExecError> {
        let manifest = read_manifest(&self.root, manifest_digest)?;
        let config: ConfigBlob = serde_json::from_slice(
            &self
                .root
                .read_blob_bytes(manifest.config().digest().as_ref())?,
        )
        .map_err(|e| ExecError::invalid(format!("invalid image config of {reference}: {e}")))?;
        let layers = manifest.layers();
        if layers.len() != config.rootfs.diff_ids.len() {
            return Err(ExecError::invalid(format!(
                "{reference}: manifest has {} layers but config lists {} diff_ids",
                layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let r = Reference::parse(reference).ok();
        let tasks = layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(desc, diff_id)| {
                let blob = desc.digest().to_string();
                let size = desc.size();
                let media_type = desc.media_type().to_string();
                let diff_id = diff_id.clone();
                let r = r.clone();
                async move {
                    let rec = self
                        .layer_snapshot(r.as_ref(), &blob, size, &diff_id)
                        .await?;
                    Ok::<_, ExecError>(LayerRef {
                        snapshot: rec.snapshot,
                        diff_id: rec.diff_id,
                        blob,
                        blob_size: size,
                        media_type,
                    })
                }
            });
        futures_util::future::try_join_all(tasks).await
    }

    async fn layer_snapshot(
        &self,
        r: Option<&Reference>,
        blob: &str,
        size: u64,
        diff_id: &str,
    ) -> Result<LayerRecord, ExecError> {
        let key = layer_key(blob);
        if let Some(rec) = self.root.get_key::<LayerRecord>(&key)? {
            if self
                .root
                .snapshot_intact(rbuild_cache::SnapshotId(rec.snapshot), Some(&rec.diff_id))?
            {
                return Ok(rec);
            }
        }
        // A layer rbuild built: its blob digest is its diff_id.
        if let Some(src) = self.root.layer_source(blob)? {
            return Ok(LayerRecord {
                snapshot: src.snapshot.0,
                diff_id: blob.to_string(),
            });
        }
        if !self.root.has_blob(blob) {
            let Some(r) = r else {
                return Err(ExecError::invalid(format!(
                    "layer {blob} is missing from the local store"
                )));
            };
            let tmp = self.root.tmp_dir()?;
            let dest = tmp.path().join("blob");
            self.client.fetch_blob(r, blob, Some(size), &dest).await?;
            self.root.import_blob_file(&dest, blob)?;
        }
        let root = self.root.clone();
        let blob = blob.to_string();
        let expected = diff_id.to_string();
        tokio::task::spawn_blocking(move || unpack_blob(&root, &blob, &expected))
            .await
            .map_err(|e| ExecError::invalid(format!("unpack task failed: {e}")))?
    }
}

/// Unpacks a stored layer blob into a new snapshot and records it.
fn unpack_blob(root: &Root, blob: &str, expected_diff_id: &str) -> Result<LayerRecord, ExecError> {
    let (id, _) = root.new_snapshot_dir()?;
    let dest = root.snapshot_path(id);
    let file = root.open_blob(blob)?;
    let diff_id = match rbuild_cache::unpack_compressed_layer(std::io::BufReader::new(file), &dest)
    {
        Ok(d) => d,
        Err(e) => {
            let _ = root.remove_snapshot(id);
            return Err(e.into());
        }
    };
    if diff_id != expected_diff_id {
        let _ = root.remove_snapshot(id);
        return Err(ExecError::invalid(format!(
            "layer {blob} unpacked to {diff_id}, but the image config says {expected_diff_id}"
        )));
    }
    let rec = LayerRecord {
        snapshot: id.0,
        diff_id,
    };
    root.put_key(&layer_key(blob), &rec)?;
    Ok(rec)
}

/// Index keys are sha256 values; records that are not build steps get keys
/// derived from a tag, so they can never collide with a step's key.
pub(crate) fn layer_key(blob: &str) -> String {
    rbuild_cache::sha256_digest(format!("rbuild-layer-snapshot\0{blob}").as_bytes())
}

fn pin_key(manifest: &str) -> String {
    rbuild_cache::sha256_digest(format!("rbuild-pinned-image\0{manifest}").as_bytes())
}

pub(crate) fn read_manifest(
    root: &Root,
    digest: &str,
) -> Result<oci_spec::image::ImageManifest, ExecError> {
    let bytes = root.read_blob_bytes(digest)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ExecError::invalid(format!("invalid manifest {digest}: {e}")))
}
