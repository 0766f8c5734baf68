//! Finding an image in the local store, classifying its layers, and the
//! manifest an image carries when it leaves the store.

use oci_spec::image::{Descriptor, ImageManifest};
use rbuild_cache::Root;
use rbuild_registry::media_types as mt;
use rbuild_registry::{Reference, DOCKER_HUB};
use serde_json::Value;

use crate::PushError;

/// An image manifest in the local store.
#[derive(Debug, Clone)]
pub struct ImageRef {
    /// `sha256:<hex>` of the manifest blob.
    pub manifest_digest: String,
    /// Size of the manifest blob in bytes.
    pub manifest_size: u64,
    /// The parsed manifest.
    pub manifest: ImageManifest,
}

/// Find an image by name (as given, e.g. `docker.io/library/app:latest`, or
/// Docker-normalised, so `app` finds `docker.io/library/app:latest`), by
/// `name@sha256:<hex>`, or by manifest digest (`sha256:<hex>` or the bare 64
/// hex digits; an untagged manifest in the content store is found too).
pub fn find_image(root: &Root, name: &str) -> Result<ImageRef, PushError> {
    if name.is_empty() {
        return Err(PushError::Invalid("empty image name".to_string()));
    }
    if let Some(digest) = as_digest(name) {
        return by_digest(root, &digest, name);
    }
    if let Some(desc) = root.resolve_image(name)? {
        return load(root, &desc, name);
    }
    if let Ok(r) = Reference::parse(name) {
        if let Some(d) = &r.digest {
            return by_digest(root, d, name);
        }
        let full = r.to_string();
        if full != name {
            if let Some(desc) = root.resolve_image(&full)? {
                return load(root, &desc, name);
            }
        }
    }
    Err(PushError::NotFound(format!(
        "no image {name:?} in the local store"
    )))
}

/// `sha256:<hex>` if `s` is a full manifest digest (with or without the
/// algorithm prefix).
fn as_digest(s: &str) -> Option<String> {
    let d = if s.starts_with("sha256:") {
        s.to_string()
    } else if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("sha256:{s}")
    } else {
        return None;
    };
    rbuild_cache::digest_hex(&d).ok()?;
    Some(d)
}

fn by_digest(root: &Root, digest: &str, name: &str) -> Result<ImageRef, PushError> {
    rbuild_cache::digest_hex(digest).map_err(|_| {
        PushError::Invalid(format!(
            "{name:?}: invalid digest (expected sha256:<64 lowercase hex digits>)"
        ))
    })?;
    if let Some((_, desc)) = root
        .list_images()?
        .into_iter()
        .find(|(_, d)| d.digest().to_string() == digest)
    {
        return load(root, &desc, name);
    }
    if !root.has_blob(digest) {
        return Err(PushError::NotFound(format!(
            "no image with manifest digest {digest} in the local store"
        )));
    }
    // An untagged manifest (a build with no -t): sniff what it is.
    let bytes = root.read_blob_bytes(digest)?;
    let media_type = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| {
            let is_manifest = v.get("config").is_some() && v.get("layers").is_some();
            match v.get("mediaType").and_then(Value::as_str) {
                Some(m) => Some(m.to_string()),
                None if is_manifest => Some(mt::OCI_MANIFEST.to_string()),
                None => None,
            }
        })
        .ok_or_else(|| PushError::Invalid(format!("{digest} is not an image manifest")))?;
    parse_manifest(digest, &media_type, bytes, name)
}

fn load(root: &Root, desc: &Descriptor, name: &str) -> Result<ImageRef, PushError> {
    let digest = desc.digest().to_string();
    let bytes = root.read_blob_bytes(&digest)?;
    if bytes.len() as u64 != desc.size() {
        return Err(PushError::Invalid(format!(
            "{name:?}: manifest {digest} is {} bytes, the store index says {}",
            bytes.len(),
            desc.size()
        )));
    }
    parse_manifest(&digest, desc.media_type().as_ref(), bytes, name)
}

fn parse_manifest(
    digest: &str,
    media_type: &str,
    bytes: Vec<u8>,
    name: &str,
) -> Result<ImageRef, PushError> {
    if mt::is_index(media_type) {
        return Err(PushError::Invalid(format!(
            "{name:?} is a multi-platform image index ({digest}); only single-platform \
             images can be exported or pushed"
        )));
    }
    if !mt::is_manifest(media_type) {
        return Err(PushError::Invalid(format!(
            "{name:?}: {digest} has media type {media_type}, not an image manifest"
        )));
    }
    let manifest = ImageManifest::from_reader(&bytes[..])
        .map_err(|e| PushError::Invalid(format!("{name:?}: manifest {digest}: {e}")))?;
    if manifest.schema_version() != 2 {
        return Err(PushError::Invalid(format!(
            "{name:?}: manifest {digest} has schemaVersion {} (expected 2)",
            manifest.schema_version()
        )));
    }
    Ok(ImageRef {
        manifest_digest: digest.to_string(),
        manifest_size: bytes.len() as u64,
        manifest,
    })
}

/// Docker's short ("familiar") form of a reference, as `docker images` and
/// `manifest.json`'s `RepoTags` show it: `docker.io/library/app:latest` →
/// `app:latest`, `docker.io/user/app:1` → `user/app:1`,
/// `localhost:5000/x:y` unchanged. A reference without a tag gets `latest`.
pub fn docker_short_name(reference: &str) -> Result<String, PushError> {
    let (_, short, _) = names(reference)?;
    Ok(short)
}

/// `(full normalised name, Docker short name, tag)` of a tag reference.
pub(crate) fn names(reference: &str) -> Result<(String, String, String), PushError> {
    let r = Reference::parse(reference)
        .map_err(|e| PushError::Invalid(format!("image name {reference:?}: {e}")))?;
    if r.digest.is_some() {
        return Err(PushError::Invalid(format!(
            "image name {reference:?}: a tag name cannot hold a digest"
        )));
    }
    let tag = r
        .tag
        .clone()
        .unwrap_or_else(|| rbuild_registry::DEFAULT_TAG.to_string());
    let repo = if r.registry == DOCKER_HUB {
        match r.repository.strip_prefix("library/") {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => r.repository.clone(),
        }
    } else {
        format!("{}/{}", r.registry, r.repository)
    };
    let full = format!("{}/{}:{tag}", r.registry, r.repository);
    Ok((full, format!("{repo}:{tag}"), tag))
}

/// How a layer blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerFormat {
    Tar,
    Gzip,
    Zstd,
}

/// A layer media type, understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerType {
    pub format: LayerFormat,
    /// Foreign / non-distributable: the registry may not hold the blob and
    /// the store may not either.
    pub nondistributable: bool,
}

impl LayerType {
    /// The OCI media type for this kind of layer.
    pub fn oci_media_type(self) -> &'static str {
        match (self.format, self.nondistributable) {
            (LayerFormat::Tar, false) => mt::OCI_LAYER_TAR,
            (LayerFormat::Gzip, false) => mt::OCI_LAYER_GZIP,
            (LayerFormat::Zstd, false) => mt::OCI_LAYER_ZSTD,
            (LayerFormat::Tar, true) => "application/vnd.oci.image.layer.nondistributable.v1.tar",
            (LayerFormat::Gzip, true) => {
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            }
            (LayerFormat::Zstd, true) => {
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            }
        }
    }
}

/// Classify a layer media type (OCI or Docker); `None` for anything that is
/// not a layer this crate knows how to move.
pub(crate) fn classify_layer(media_type: &str) -> Option<LayerType> {
    use LayerFormat::*;
    let (format, nondistributable) = match media_type {
        "application/vnd.oci.image.layer.v1.tar" => (Tar, false),
        "application/vnd.oci.image.layer.v1.tar+gzip" => (Gzip, false),
        "application/vnd.oci.image.layer.v1.tar+zstd" => (Zstd, false),
        "application/vnd.oci.image.layer.nondistributable.v1.tar" => (Tar, true),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => (Gzip, true),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => (Zstd, true),
        "application/vnd.docker.image.rootfs.diff.tar" => (Tar, false),
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => (Gzip, false),
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => (Zstd, false),
        "application/vnd.docker.image.rootfs.foreign.diff.tar" => (Tar, true),
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => (Gzip, true),
        _ => return None,
    };
    Some(LayerType {
        format,
        nondistributable,
    })
}

/// The layer types of an image, in manifest order; an error naming the
/// first layer whose media type is not a known layer type.
pub(crate) fn layer_types(image: &ImageRef) -> Result<Vec<LayerType>, PushError> {
    image
        .manifest
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let m = l.media_type().to_string();
            classify_layer(&m).ok_or_else(|| {
                PushError::Invalid(format!(
                    "image {}: layer {i} ({}) has unsupported media type {m}",
                    image.manifest_digest,
                    l.digest()
                ))
            })
        })
        .collect()
}

/// A replacement for one layer's descriptor (a compressed form of it).
#[derive(Debug, Clone)]
pub(crate) struct LayerReplacement {
    pub media_type: &'static str,
    pub digest: String,
    pub size: u64,
}

/// The manifest bytes an image carries out of the store: the stored bytes
/// with Docker media types mapped to their OCI equivalents and the given
/// layers replaced. When nothing changes, the stored bytes are returned as
/// they are, so the manifest digest is kept.
///
/// Works on the JSON value (not the typed manifest) so that fields this
/// crate does not model survive, and so that the output is deterministic
/// (serde_json maps are ordered; oci-spec's annotation maps are not).
pub(crate) fn outgoing_manifest(
    raw: &[u8],
    replace: &[Option<LayerReplacement>],
) -> Result<Vec<u8>, PushError> {
    let bad = |why: &str| PushError::Invalid(format!("stored manifest: {why}"));
    let original: Value =
        serde_json::from_slice(raw).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let mut v = original.clone();
    let obj = v.as_object_mut().ok_or_else(|| bad("not a JSON object"))?;
    if obj.get("mediaType").and_then(Value::as_str) == Some(mt::DOCKER_MANIFEST) {
        obj.insert("mediaType".into(), mt::OCI_MANIFEST.into());
    }
    if let Some(config) = obj.get_mut("config").and_then(Value::as_object_mut) {
        if config.get("mediaType").and_then(Value::as_str) == Some(mt::DOCKER_CONFIG) {
            config.insert("mediaType".into(), mt::OCI_CONFIG.into());
        }
    }
    let layers = obj
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("no layers array"))?;
    for (i, layer) in layers.iter_mut().enumerate() {
        let layer = layer
            .as_object_mut()
            .ok_or_else(|| bad(&format!("layer {i} is not an object")))?;
        if let Some(Some(r)) = replace.get(i) {
            layer.insert("mediaType".into(), r.media_type.into());
            layer.insert("digest".into(), r.digest.clone().into());
            layer.insert("size".into(), r.size.into());
            continue;
        }
        let m = layer
            .get("mediaType")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("layer {i} has no mediaType")))?;
        let t = classify_layer(m)
            .ok_or_else(|| bad(&format!("layer {i} has unsupported media type {m}")))?;
        if t.oci_media_type() != m {
            layer.insert("mediaType".into(), t.oci_media_type().into());
        }
    }
    if v == original {
        return Ok(raw.to_vec());
    }
    serde_json::to_vec(&v).map_err(|e| bad(&format!("encoding: {e}")))
}

/// Writes out the layer tars of layers rbuild built that so far exist only
/// as snapshots (see `Root::hash_layer_from_snapshot`), so that exporters can
/// read every layer as a blob.
pub fn materialize_layers(root: &Root, image: &ImageRef) -> Result<(), PushError> {
    for layer in image.manifest.layers() {
        let digest = layer.digest().to_string();
        if !root.has_blob(&digest) && root.layer_source(&digest)?.is_some() {
            root.ensure_blob(&digest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        for (input, short, full) in [
            ("app", "app:latest", "docker.io/library/app:latest"),
            ("app:1", "app:1", "docker.io/library/app:1"),
            (
                "docker.io/library/app:latest",
                "app:latest",
                "docker.io/library/app:latest",
            ),
            ("user/app:v2", "user/app:v2", "docker.io/user/app:v2"),
            (
                "localhost:5000/x/y:z",
                "localhost:5000/x/y:z",
                "localhost:5000/x/y:z",
            ),
            ("ghcr.io/o/r", "ghcr.io/o/r:latest", "ghcr.io/o/r:latest"),
        ] {
            let (f, s, _) = names(input).unwrap();
            assert_eq!((f.as_str(), s.as_str()), (full, short), "{input}");
        }
        assert!(names(
            "app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
        )
        .is_err());
        assert!(names("Bad:Name").is_err());
    }

    #[test]
    fn layer_classification() {
        let t = classify_layer("application/vnd.docker.image.rootfs.diff.tar.gzip").unwrap();
        assert_eq!(t.format, LayerFormat::Gzip);
        assert_eq!(t.oci_media_type(), mt::OCI_LAYER_GZIP);
        let t = classify_layer(mt::OCI_LAYER_TAR).unwrap();
        assert_eq!(t.format, LayerFormat::Tar);
        assert!(!t.nondistributable);
        let t =
            classify_layer("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip").unwrap();
        assert!(t.nondistributable);
        assert!(classify_layer("application/json").is_none());
    }

    #[test]
    fn outgoing_manifest_keeps_oci_bytes_and_normalises_docker_types() {
        let oci = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:bb","size":2}]}"#;
        assert_eq!(outgoing_manifest(oci, &[]).unwrap(), oci.to_vec());

        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:aa","size":1},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:bb","size":2},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:cc","size":3}]}"#;
        let out = outgoing_manifest(
            docker,
            &[
                None,
                Some(LayerReplacement {
                    media_type: mt::OCI_LAYER_GZIP,
                    digest: "sha256:dd".into(),
                    size: 4,
                }),
            ],
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["mediaType"], mt::OCI_MANIFEST);
        assert_eq!(v["config"]["mediaType"], mt::OCI_CONFIG);
        assert_eq!(v["config"]["digest"], "sha256:aa");
        assert_eq!(v["layers"][0]["mediaType"], mt::OCI_LAYER_GZIP);
        assert_eq!(v["layers"][0]["digest"], "sha256:bb");
        assert_eq!(v["layers"][1]["mediaType"], mt::OCI_LAYER_GZIP);
        assert_eq!(v["layers"][1]["digest"], "sha256:dd");
        assert_eq!(v["layers"][1]["size"], 4);
        // Deterministic.
        assert_eq!(
            out,
            outgoing_manifest(
                docker,
                &[
                    None,
                    Some(LayerReplacement {
                        media_type: mt::OCI_LAYER_GZIP,
                        digest: "sha256:dd".into(),
                        size: 4,
                    }),
                ],
            )
            .unwrap()
        );
        assert!(outgoing_manifest(b"[]", &[]).is_err());
        assert!(outgoing_manifest(
            br#"{"layers":[{"mediaType":"text/plain","digest":"sha256:aa","size":1}]}"#,
            &[]
        )
        .is_err());
    }
}
