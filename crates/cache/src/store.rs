//! Local image store: `ROOT/store/`, an OCI image layout.
//!
//! Tags are descriptors in `index.json` carrying the
//! `org.opencontainers.image.ref.name` annotation; the value is whatever
//! name the caller tags with (normally a full normalised reference such as
//! `docker.io/library/alpine:3.20`). One name maps to one descriptor.
//!
//! Blobs are shared with the content store by a symlink, `store/blobs ->
//! ../blobs`: no copy, no hardlink bookkeeping, one place for GC to look, and
//! tools that read OCI layouts (skopeo `oci:`, umoci) follow the link. Its
//! cost is that `store/` cannot be copied elsewhere without dereferencing
//! (`cp -rL`); the `oci` exporter writes a self-contained layout instead.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use oci_spec::image::{
    Descriptor, Digest, ImageIndex, ImageIndexBuilder, MediaType, ANNOTATION_REF_NAME,
};

use crate::digest::digest_hex;
use crate::{CacheError, Root};

/// Serialises read-modify-write of `index.json` across processes.
const STORE_LOCK: &str = "rbuild.store";

const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

impl Root {
    fn store_path(&self) -> PathBuf {
        self.path().join("store")
    }

    fn index_path(&self) -> PathBuf {
        self.store_path().join("index.json")
    }

    pub(crate) fn init_store(&self) -> Result<(), CacheError> {
        let store = self.store_path();
        let layout = store.join("oci-layout");
        if !layout.is_file() {
            self.write_atomic(&layout, OCI_LAYOUT.as_bytes())?;
        }
        let blobs = store.join("blobs");
        if fs::symlink_metadata(&blobs).is_err() {
            match std::os::unix::fs::symlink("../blobs", &blobs) {
                Ok(()) => crate::root::fsync_dir(&store)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(CacheError::io("symlink", blobs, e)),
            }
        }
        if !self.index_path().is_file() {
            let _g = self.lock(STORE_LOCK)?;
            if !self.index_path().is_file() {
                self.write_index(&empty_index(&self.index_path())?)?;
            }
        }
        Ok(())
    }

    fn read_index(&self) -> Result<ImageIndex, CacheError> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(|e| CacheError::io("read", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| CacheError::Json { path, source })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), CacheError> {
        let path = self.index_path();
        let json = serde_json::to_vec_pretty(index).map_err(|source| CacheError::Json {
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &json)
    }

    /// Point the tag `name` at a manifest (or index) already in the content
    /// store, replacing any previous target of that name. The manifest blob
    /// must be present: an index entry is only ever written after what it
    /// points to is durable.
    pub fn tag_image(
        &self,
        name: &str,
        manifest_digest: &str,
        manifest_size: u64,
        media_type: &str,
    ) -> Result<(), CacheError> {
        digest_hex(manifest_digest)?;
        if !self.has_blob(manifest_digest) {
            return Err(CacheError::MissingBlob {
                digest: manifest_digest.to_string(),
                path: self.blob_path(manifest_digest),
            });
        }
        let digest: Digest = manifest_digest.parse().map_err(|source| CacheError::Oci {
            path: self.index_path(),
            source,
        })?;
        let mut desc = Descriptor::new(MediaType::from(media_type), manifest_size, digest);
        desc.set_annotations(Some(HashMap::from([(
            ANNOTATION_REF_NAME.to_string(),
            name.to_string(),
        )])));

        let _g = self.lock(STORE_LOCK)?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        manifests.retain(|d| ref_name(d) != Some(name));
        manifests.push(desc);
        // Sorted by name so that index.json does not depend on tag history.
        manifests.sort_by(|a, b| ref_name(a).cmp(&ref_name(b)));
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// The descriptor the tag `name` points at.
    pub fn resolve_image(&self, name: &str) -> Result<Option<Descriptor>, CacheError> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .find(|d| ref_name(d) == Some(name))
            .cloned())
    }

    /// All tags and their descriptors, sorted by name. Untagged entries of
    /// `index.json` (put there by other tools) are not listed.
    pub fn list_images(&self) -> Result<Vec<(String, Descriptor)>, CacheError> {
        let mut v: Vec<(String, Descriptor)> = self
            .read_index()?
            .manifests()
            .iter()
            .filter_map(|d| ref_name(d).map(|n| (n.to_string(), d.clone())))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    /// Remove the tag `name`; whether it existed. Blobs stay (GC's job).
    pub fn untag_image(&self, name: &str) -> Result<bool, CacheError> {
        let _g = self.lock(STORE_LOCK)?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        manifests.retain(|d| ref_name(d) != Some(name));
        if manifests.len() == index.manifests().len() {
            return Ok(false);
        }
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(true)
    }
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

fn empty_index(path: &std::path::Path) -> Result<ImageIndex, CacheError> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .map_err(|source| CacheError::Oci {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    #[test]
    fn tag_resolve_list_untag() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let m1 = root.put_blob_bytes(b"{\"m\":1}").unwrap();
        let m2 = root.put_blob_bytes(b"{\"m\":22}").unwrap();

        assert!(root.resolve_image("a:latest").unwrap().is_none());
        root.tag_image("b:1", &m1, 7, MANIFEST).unwrap();
        root.tag_image("a:latest", &m1, 7, MANIFEST).unwrap();
        // Retag replaces.
        root.tag_image("a:latest", &m2, 8, MANIFEST).unwrap();

        let d = root.resolve_image("a:latest").unwrap().unwrap();
        assert_eq!(d.digest().to_string(), m2);
        assert_eq!(d.size(), 8);
        assert_eq!(d.media_type().to_string(), MANIFEST);

        let list = root.list_images().unwrap();
        let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a:latest", "b:1"]);

        // index.json is a valid OCI index a third-party reader accepts.
        let raw = fs::read_to_string(root.path().join("store/index.json")).unwrap();
        let idx: ImageIndex = serde_json::from_str(&raw).unwrap();
        assert_eq!(idx.schema_version(), 2);
        assert!(raw.contains("org.opencontainers.image.ref.name"));
        // store/blobs reaches the content store.
        let hex = m2.strip_prefix("sha256:").unwrap();
        assert!(root.path().join("store/blobs/sha256").join(hex).is_file());

        assert!(root.untag_image("a:latest").unwrap());
        assert!(!root.untag_image("a:latest").unwrap());
        assert!(root.resolve_image("a:latest").unwrap().is_none());
        assert_eq!(root.list_images().unwrap().len(), 1);
        // Reopening keeps the tags.
        let root = Root::open(root.path()).unwrap();
        assert_eq!(root.list_images().unwrap()[0].0, "b:1");
    }

    #[test]
    fn tagging_a_missing_manifest_fails() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let missing = crate::digest::sha256_digest(b"not stored");
        let err = root.tag_image("x", &missing, 10, MANIFEST).unwrap_err();
        assert!(matches!(err, CacheError::MissingBlob { .. }), "{err}");
        assert!(root.list_images().unwrap().is_empty());
        assert!(root.tag_image("x", "sha256:nothex", 1, MANIFEST).is_err());
    }
}
