//! Layers rbuild builds are recorded by diff_id and snapshot only; their tar
//! is produced when an image leaves the store. These tests hold that path to
//! the same guarantees as a stored blob: same bytes, verified digests.

use std::io::Read;

use rbuild_cache::{Compression, Root};

fn root_with_layer() -> (
    tempfile::TempDir,
    Root,
    rbuild_cache::SnapshotId,
    String,
    u64,
) {
    let tmp = tempfile::tempdir().unwrap();
    let root = Root::open(&tmp.path().join("root")).unwrap();
    let (id, dir) = root.new_snapshot_dir().unwrap();
    let fs = dir.join("fs");
    let fs = if fs.is_dir() {
        fs
    } else {
        root.snapshot_path(id)
    };
    std::fs::create_dir_all(fs.join("app")).unwrap();
    std::fs::write(fs.join("app/a.txt"), "alpha\n".repeat(1000)).unwrap();
    std::os::unix::fs::symlink("a.txt", fs.join("app/link")).unwrap();
    let (diff_id, size) = root.hash_layer_from_snapshot(id).unwrap();
    (tmp, root, id, diff_id, size)
}

#[test]
fn hashing_records_the_source_and_writes_no_blob() {
    let (_t, root, id, diff_id, size) = root_with_layer();
    assert!(!root.has_blob(&diff_id));
    let src = root.layer_source(&diff_id).unwrap().expect("recorded");
    assert_eq!((src.snapshot, src.size), (id, size));
    // The same bytes as writing the tar directly.
    let mut direct = Vec::new();
    let (d2, s2) = rbuild_cache::write_layer_tar(&root.snapshot_path(id), &mut direct).unwrap();
    assert_eq!((d2.as_str(), s2), (diff_id.as_str(), size));
}

#[test]
fn ensure_blob_writes_the_tar_once_and_verifies_it() {
    let (_t, root, _id, diff_id, size) = root_with_layer();
    root.ensure_blob(&diff_id).unwrap();
    assert!(root.has_blob(&diff_id));
    assert_eq!(root.verify_blob(&diff_id).unwrap(), size);
    root.ensure_blob(&diff_id).unwrap();
}

#[test]
fn a_changed_snapshot_is_caught_not_exported() {
    let (_t, root, id, diff_id, _size) = root_with_layer();
    std::fs::write(root.snapshot_path(id).join("app/a.txt"), "tampered").unwrap();
    assert!(root.ensure_blob(&diff_id).is_err());
    assert!(!root.has_blob(&diff_id));
    assert!(root.compress_blob(&diff_id, Compression::Gzip).is_err());
}

#[test]
fn compress_streams_from_the_snapshot_without_the_uncompressed_blob() {
    let (_t, root, _id, diff_id, size) = root_with_layer();
    let (gz, _) = root.compress_blob(&diff_id, Compression::Gzip).unwrap();
    assert!(
        !root.has_blob(&diff_id),
        "the uncompressed tar was never stored"
    );
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(root.open_blob(&gz).unwrap())
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(tar.len() as u64, size);
    assert_eq!(rbuild_cache::sha256_digest(&tar), diff_id);
    // Cached: asking again is a lookup.
    assert_eq!(
        root.compress_blob(&diff_id, Compression::Gzip).unwrap().0,
        gz
    );
}

#[test]
fn an_unknown_digest_is_a_missing_blob() {
    let (_t, root, _id, _diff_id, _size) = root_with_layer();
    let unknown = format!("sha256:{}", "0".repeat(64));
    assert!(root.ensure_blob(&unknown).is_err());
}
