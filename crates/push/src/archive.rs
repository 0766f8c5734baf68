//! Image archives: BuildKit's `type=oci` (an OCI image layout in a tar) and
//! `type=docker` (the same plus Docker's `manifest.json`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use rbuild_cache::{digest_hex, sha256_digest, HashingReader, HashingWriter, Root};
use rbuild_registry::media_types as mt;
use serde::Serialize;

use crate::image::{layer_types, names, outgoing_manifest, ImageRef, LayerFormat};
use crate::PushError;

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and so BuildKit's and Docker's) full image name annotation.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// mtime of every archive entry.
const MTIME: u64 = 0;

/// Write the image as an OCI image layout in a tar (BuildKit's `type=oci`):
/// `oci-layout`, `index.json` with one manifest descriptor, and
/// `blobs/sha256/*` (manifest, config and every layer as stored).
///
/// `tag`, if given, becomes the descriptor's
/// `org.opencontainers.image.ref.name` annotation as it is; BuildKit puts the
/// short tag there (`latest`, not `docker.io/library/app:latest`), and
/// `skopeo`/`umoci` then address the image as `oci:<dir>:latest`.
pub fn export_oci_archive(
    root: &Root,
    image: &ImageRef,
    tag: Option<&str>,
    out: impl Write,
) -> Result<(), PushError> {
    crate::image::materialize_layers(root, image)?;
    if tag.is_some_and(|t| t.is_empty() || t.chars().any(|c| c.is_whitespace())) {
        return Err(PushError::Invalid(format!(
            "OCI ref name {:?}: must be non-empty and hold no whitespace",
            tag.unwrap_or_default()
        )));
    }
    let mut ar = Archive::new();
    let manifest = add_image_blobs(root, image, &mut ar)?;
    let annotations = tag
        .map(|t| BTreeMap::from([(ANNOTATION_REF_NAME.to_string(), t.to_string())]))
        .unwrap_or_default();
    let index = index_json(vec![manifest.with_annotations(annotations)])?;
    ar.bytes("oci-layout", OCI_LAYOUT.to_vec());
    ar.bytes("index.json", index);
    ar.write(out)
}

/// Write a `docker load`-able archive (BuildKit's `type=docker`): an OCI
/// image layout whose `index.json` has one entry per tag (annotated with the
/// full name in `io.containerd.image.name` and the tag in
/// `org.opencontainers.image.ref.name`, as containerd writes them), plus
/// Docker's `manifest.json`
/// (`[{"Config":"blobs/sha256/<hex>","RepoTags":[...],"Layers":[...]}]`)
/// for the `docker load` of Docker before the containerd image store.
///
/// `repo_tags` may be given in any form `docker tag` accepts (`app`,
/// `app:1`, `docker.io/library/app:1`); `RepoTags` holds Docker's short
/// form (`app:latest`). Layers that old Docker cannot read (zstd) are
/// decompressed into the archive for `manifest.json` (checked against the
/// config's diff_ids); the OCI manifest still names the stored blobs.
pub fn export_docker_archive(
    root: &Root,
    image: &ImageRef,
    repo_tags: &[String],
    out: impl Write,
) -> Result<(), PushError> {
    crate::image::materialize_layers(root, image)?;
    let mut tags: Vec<(String, String, String)> = Vec::new();
    for t in repo_tags {
        let n = names(t)?;
        if !tags.iter().any(|(full, _, _)| *full == n.0) {
            tags.push(n);
        }
    }

    let mut ar = Archive::new();
    let manifest = add_image_blobs(root, image, &mut ar)?;

    let config_digest = image.manifest.config().digest().to_string();
    let diff_ids = diff_ids(root, &config_digest)?;
    let layers = image.manifest.layers();
    if diff_ids.len() != layers.len() {
        return Err(PushError::Invalid(format!(
            "image {}: config lists {} diff_ids for {} layers",
            image.manifest_digest,
            diff_ids.len(),
            layers.len()
        )));
    }
    // Decompressed zstd layers live here until the archive is written.
    let tmp = root.tmp_dir()?;
    let mut layer_paths = Vec::with_capacity(layers.len());
    for ((layer, t), diff_id) in layers.iter().zip(layer_types(image)?).zip(&diff_ids) {
        let digest = layer.digest().to_string();
        let readable = match t.format {
            LayerFormat::Tar => {
                if digest != *diff_id {
                    return Err(PushError::Invalid(format!(
                        "image {}: uncompressed layer {digest} does not match its diff_id {diff_id}",
                        image.manifest_digest
                    )));
                }
                ar.store_blob(root, &digest, layer.size())?;
                digest
            }
            LayerFormat::Gzip => {
                ar.store_blob(root, &digest, layer.size())?;
                digest
            }
            LayerFormat::Zstd if root.has_blob(diff_id) => {
                let size = root
                    .blob_path(diff_id)
                    .metadata()
                    .map_err(|e| PushError::io(format!("stat blob {diff_id}"), e))?
                    .len();
                ar.store_blob(root, diff_id, size)?;
                diff_id.clone()
            }
            LayerFormat::Zstd => {
                let hex = digest_hex(diff_id)?;
                let path = tmp.path().join(hex);
                let size = decompress_zstd(root, &digest, diff_id, &path)?;
                ar.insert_blob(diff_id, path, size);
                diff_id.clone()
            }
        };
        layer_paths.push(blob_entry(&readable)?);
    }

    let descs = if tags.is_empty() {
        vec![manifest]
    } else {
        tags.iter()
            .map(|(full, _, tag)| {
                manifest.with_annotations(BTreeMap::from([
                    (ANNOTATION_IMAGE_NAME.to_string(), full.clone()),
                    (ANNOTATION_REF_NAME.to_string(), tag.clone()),
                ]))
            })
            .collect()
    };
    let docker_manifest = vec![DockerManifest {
        config: blob_entry(&config_digest)?,
        repo_tags: tags.into_iter().map(|(_, short, _)| short).collect(),
        layers: layer_paths,
    }];
    ar.bytes("oci-layout", OCI_LAYOUT.to_vec());
    ar.bytes("index.json", index_json(descs)?);
    ar.bytes(
        "manifest.json",
        serde_json::to_vec(&docker_manifest)
            .map_err(|e| PushError::Invalid(format!("encoding manifest.json: {e}")))?,
    );
    ar.write(out)?;
    drop(tmp);
    Ok(())
}

/// One entry of Docker's `manifest.json`.
#[derive(Serialize)]
struct DockerManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<DescJson>,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct DescJson {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

impl DescJson {
    fn with_annotations(&self, annotations: BTreeMap<String, String>) -> DescJson {
        DescJson {
            annotations,
            ..self.clone()
        }
    }
}

fn index_json(manifests: Vec<DescJson>) -> Result<Vec<u8>, PushError> {
    serde_json::to_vec(&IndexJson {
        schema_version: 2,
        media_type: mt::OCI_INDEX,
        manifests,
    })
    .map_err(|e| PushError::Invalid(format!("encoding index.json: {e}")))
}

/// `blobs/sha256/<hex>`.
fn blob_entry(digest: &str) -> Result<String, PushError> {
    Ok(format!("blobs/sha256/{}", digest_hex(digest)?))
}

/// Add the manifest (normalised for export), the config and the layers to
/// the archive; returns the manifest's descriptor.
fn add_image_blobs(root: &Root, image: &ImageRef, ar: &mut Archive) -> Result<DescJson, PushError> {
    let types = layer_types(image)?;
    let raw = root.read_blob_bytes(&image.manifest_digest)?;
    let manifest = outgoing_manifest(&raw, &[])?;
    let manifest_digest = sha256_digest(&manifest);
    let manifest_size = manifest.len() as u64;
    ar.bytes(&blob_entry(&manifest_digest)?, manifest);

    let config = image.manifest.config();
    ar.store_blob(root, config.digest().as_ref(), config.size())?;
    for (layer, t) in image.manifest.layers().iter().zip(types) {
        let digest = layer.digest().to_string();
        if t.nondistributable && !root.has_blob(&digest) {
            // Foreign layers are fetched from their URLs, not shipped.
            continue;
        }
        ar.store_blob(root, &digest, layer.size())?;
    }
    Ok(DescJson {
        media_type: mt::OCI_MANIFEST.to_string(),
        digest: manifest_digest,
        size: manifest_size,
        annotations: BTreeMap::new(),
    })
}

/// The config's `rootfs.diff_ids`.
fn diff_ids(root: &Root, config_digest: &str) -> Result<Vec<String>, PushError> {
    let bytes = root.read_blob_bytes(config_digest)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| PushError::Invalid(format!("image config {config_digest}: {e}")))?;
    v.pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .ok_or_else(|| {
            PushError::Invalid(format!(
                "image config {config_digest} has no rootfs.diff_ids"
            ))
        })?
        .iter()
        .map(|d| {
            d.as_str().map(str::to_string).ok_or_else(|| {
                PushError::Invalid(format!(
                    "image config {config_digest}: a diff_id is not a string"
                ))
            })
        })
        .collect()
}

/// Decompress the zstd layer `digest` into `dest`, checking that the result
/// is `diff_id`; returns its size.
fn decompress_zstd(
    root: &Root,
    digest: &str,
    diff_id: &str,
    dest: &std::path::Path,
) -> Result<u64, PushError> {
    let ctx = || format!("decompress layer {digest} into {}", dest.display());
    let src = BufReader::with_capacity(256 * 1024, root.open_blob(digest)?);
    let mut dec =
        zstd::stream::read::Decoder::with_buffer(src).map_err(|e| PushError::io(ctx(), e))?;
    let file = File::create(dest).map_err(|e| PushError::io(ctx(), e))?;
    let mut w = HashingWriter::new(BufWriter::with_capacity(256 * 1024, file));
    io::copy(&mut dec, &mut w).map_err(|e| PushError::io(ctx(), e))?;
    let (buf, actual, size) = w.finish();
    buf.into_inner()
        .map_err(|e| PushError::io(ctx(), e.into_error()))?;
    if actual != diff_id {
        return Err(PushError::Invalid(format!(
            "layer {digest} decompresses to {actual}, but the config's diff_id is {diff_id}"
        )));
    }
    Ok(size)
}

/// What one archive entry holds.
enum Content {
    Dir,
    Bytes(Vec<u8>),
    /// A file copied in streaming and checked against its digest and size.
    File {
        path: PathBuf,
        digest: String,
        size: u64,
    },
}

/// An archive being planned: every entry is known (and every blob checked
/// for presence and size) before the first byte is written.
struct Archive {
    entries: BTreeMap<String, Content>,
}

impl Archive {
    fn new() -> Self {
        let mut entries = BTreeMap::new();
        entries.insert("blobs/".to_string(), Content::Dir);
        entries.insert("blobs/sha256/".to_string(), Content::Dir);
        Archive { entries }
    }

    fn bytes(&mut self, path: &str, bytes: Vec<u8>) {
        self.entries.insert(path.to_string(), Content::Bytes(bytes));
    }

    fn insert_blob(&mut self, digest: &str, path: PathBuf, size: u64) {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.entries.insert(
            format!("blobs/sha256/{hex}"),
            Content::File {
                path,
                digest: digest.to_string(),
                size,
            },
        );
    }

    /// Add a blob from the content store, checking that it is there with
    /// the size its descriptor claims.
    fn store_blob(&mut self, root: &Root, digest: &str, size: u64) -> Result<(), PushError> {
        let entry = blob_entry(digest)?;
        if self.entries.contains_key(&entry) {
            return Ok(());
        }
        let path = root.blob_path(digest);
        // open_blob turns "absent" into a MissingBlob error naming the digest.
        let file = root.open_blob(digest)?;
        let actual = file
            .metadata()
            .map_err(|e| PushError::io(format!("stat {}", path.display()), e))?
            .len();
        if actual != size {
            return Err(PushError::Invalid(format!(
                "blob {digest} is {actual} bytes, its descriptor says {size}"
            )));
        }
        self.insert_blob(digest, path, size);
        Ok(())
    }

    /// Stream the archive to `out`: entries sorted by path, mtime 0, uid/gid
    /// 0, mode 0644 / 0755.
    fn write(self, out: impl Write) -> Result<(), PushError> {
        let mut b = tar::Builder::new(BufWriter::with_capacity(256 * 1024, out));
        for (name, content) in &self.entries {
            let ctx = || format!("write archive entry {name}");
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(MTIME);
            match content {
                Content::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, name, io::empty())
                }
                Content::Bytes(bytes) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(bytes.len() as u64);
                    b.append_data(&mut h, name, &bytes[..])
                }
                Content::File { path, digest, size } => {
                    let file = File::open(path)
                        .map_err(|e| PushError::io(format!("open {}", path.display()), e))?;
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(*size);
                    let r = Verifying::new(file, digest, *size);
                    b.append_data(&mut h, name, r)
                }
            }
            .map_err(|e| PushError::io(ctx(), e))?;
        }
        let w = b
            .into_inner()
            .map_err(|e| PushError::io("finish archive", e))?;
        w.into_inner()
            .map_err(|e| PushError::io("flush archive", e.into_error()))?;
        Ok(())
    }
}

/// Reads exactly `size` bytes of a blob file, hashing them; at the end it
/// fails (so the tar writer fails) if the file was short or its content no
/// longer hashes to its digest.
struct Verifying {
    inner: Option<HashingReader<io::Take<BufReader<File>>>>,
    digest: String,
    size: u64,
}

impl Verifying {
    fn new(file: File, digest: &str, size: u64) -> Self {
        Verifying {
            inner: Some(HashingReader::new(
                BufReader::with_capacity(256 * 1024, file).take(size),
            )),
            digest: digest.to_string(),
            size,
        }
    }
}

impl Read for Verifying {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(0);
        };
        let n = inner.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        let (actual, count) = self.inner.take().expect("checked above").finish();
        if count != self.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "blob {} is {count} bytes, expected {}",
                    self.digest, self.size
                ),
            ));
        }
        if actual != self.digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is corrupt in the content store: its content hashes to {actual}",
                    self.digest
                ),
            ));
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_reader_checks_size_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b");
        std::fs::write(&p, b"hello").unwrap();
        let good = sha256_digest(b"hello");

        let mut out = Vec::new();
        Verifying::new(File::open(&p).unwrap(), &good, 5)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello");

        let err = Verifying::new(File::open(&p).unwrap(), &good, 6)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        let err = Verifying::new(File::open(&p).unwrap(), &sha256_digest(b"other"), 5)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn archive_is_sorted_and_deterministic() {
        let mut ar = Archive::new();
        ar.bytes("oci-layout", OCI_LAYOUT.to_vec());
        ar.bytes("index.json", b"{}".to_vec());
        ar.bytes("blobs/sha256/ab", b"x".to_vec());
        let mut out = Vec::new();
        ar.write(&mut out).unwrap();
        // Insertion order does not matter.
        let mut ar2 = Archive::new();
        ar2.bytes("blobs/sha256/ab", b"x".to_vec());
        ar2.bytes("index.json", b"{}".to_vec());
        ar2.bytes("oci-layout", OCI_LAYOUT.to_vec());
        let mut out2 = Vec::new();
        ar2.write(&mut out2).unwrap();
        assert_eq!(out, out2);
        let mut a = tar::Archive::new(&out[..]);
        let mut names = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            assert_eq!(h.mtime().unwrap(), 0);
            let mode = h.mode().unwrap();
            if h.entry_type().is_dir() {
                assert_eq!(mode, 0o755);
            } else {
                assert_eq!(mode, 0o644);
            }
            names.push(e.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            names,
            [
                "blobs/",
                "blobs/sha256/",
                "blobs/sha256/ab",
                "index.json",
                "oci-layout"
            ]
        );
    }
}
