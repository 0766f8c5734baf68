//! Whiteouts both ways, checked against the kernel: snapshot dirs made by
//! `unpack_layer` are mounted as overlayfs lowerdirs, and upper dirs written
//! by a real overlay mount are turned into layers. Needs root (mount,
//! device nodes, `trusted.*` xattrs).

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::*;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use rbuild_cache::{unpack_layer, write_layer_tar, Root, SnapshotId};

/// An overlay mount, unmounted on drop (also when an assertion fails).
struct Mounted(PathBuf);

impl Mounted {
    fn new(target: &Path, lower: &[&Path], upper: Option<(&Path, &Path)>) -> Mounted {
        fs::create_dir_all(target).unwrap();
        let lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
        let mut opts = format!("lowerdir={}", lowers.join(":"));
        if let Some((u, w)) = upper {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                u.display(),
                w.display()
            ));
        }
        // Self-contained upper dirs: no redirects, no metacopy.
        opts.push_str(",redirect_dir=off,metacopy=off");
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount overlay {opts}: {e}"));
        Mounted(target.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mknod_whiteout(path: &Path) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .unwrap();
}

fn tar_of(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    write_layer_tar(dir, &mut out).unwrap();
    out
}

fn new_snapshot(root: &Root) -> (SnapshotId, PathBuf) {
    root.new_snapshot_dir().unwrap()
}

#[test]
fn whiteouts_both_ways() {
    if !root_or_skip("overlay whiteouts") {
        return;
    }
    let t = tempdir();
    let root = Root::open(&t.path().join("root")).unwrap();

    // An overlay-format layer dir made by hand.
    let (_, layer) = new_snapshot(&root);
    mknod_whiteout(&layer.join("gone"));
    fs::create_dir(layer.join("opq")).unwrap();
    set_xattr(&layer.join("opq"), "trusted.overlay.opaque", b"y");
    fs::write(layer.join("opq/new"), b"new").unwrap();
    fs::write(layer.join("added"), b"added").unwrap();

    let tar = tar_of(&layer);
    let entries = tar_names(&tar);
    assert_eq!(
        entries,
        [".wh.gone", "added", "opq/", "opq/.wh..wh..opq", "opq/new"]
    );
    // OCI form only: no device nodes, no overlay xattrs in the archive.
    let mut a = tar::Archive::new(&tar[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        assert_ne!(e.header().entry_type(), tar::EntryType::Char);
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                assert!(!x.unwrap().key().unwrap().contains("overlay"));
            }
        }
    }

    // Back to overlay form.
    let (_, unpacked) = new_snapshot(&root);
    unpack_layer(&tar[..], &unpacked).unwrap();
    let md = fs::symlink_metadata(unpacked.join("gone")).unwrap();
    assert!(
        md.file_type().is_char_device() && md.rdev() == 0,
        "whiteout not recreated"
    );
    assert_eq!(
        get_xattr(&unpacked.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!unpacked.join("opq/.wh..wh..opq").exists());
    assert_eq!(names(&unpacked), ["added", "gone", "opq"]);

    // And the kernel agrees: mounted over a base layer, the whiteout hides
    // `gone` and the opaque dir hides the base's `opq` content.
    let (_, base) = new_snapshot(&root);
    fs::write(base.join("gone"), b"old").unwrap();
    fs::write(base.join("keep"), b"keep").unwrap();
    fs::create_dir(base.join("opq")).unwrap();
    fs::write(base.join("opq/old"), b"old").unwrap();
    let mnt = t.path().join("mnt");
    let m = Mounted::new(&mnt, &[&unpacked, &base], None);
    assert_eq!(names(&mnt), ["added", "keep", "opq"]);
    assert_eq!(names(&mnt.join("opq")), ["new"]);
    drop(m);
}

#[test]
fn kernel_upper_dir_becomes_a_layer() {
    if !root_or_skip("overlay mounts") {
        return;
    }
    let t = tempdir();
    let root = Root::open(&t.path().join("root")).unwrap();

    // A base layer, unpacked from a tar like a pulled image.
    let src = t.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("del"), b"delete me").unwrap();
    fs::write(src.join("dir/x"), b"x").unwrap();
    fs::write(src.join("mod"), b"before").unwrap();
    fs::write(src.join("stay"), b"stay").unwrap();
    let (base_id, base) = new_snapshot(&root);
    unpack_layer(&tar_of(&src)[..], &base).unwrap();

    // A "RUN" step: changes made through a real overlay mount.
    let (step_id, upper) = new_snapshot(&root);
    let work = root.snapshot_work_path(step_id);
    let mnt = t.path().join("mnt");
    let m = Mounted::new(&mnt, &[&base], Some((&upper, &work)));
    fs::remove_file(mnt.join("del")).unwrap();
    fs::remove_dir_all(mnt.join("dir")).unwrap();
    fs::create_dir(mnt.join("dir")).unwrap();
    fs::write(mnt.join("dir/y"), b"y").unwrap();
    fs::write(mnt.join("mod"), b"after").unwrap();
    fs::write(mnt.join("new"), b"new").unwrap();
    drop(m);

    // The upper dir, as the kernel left it, is the layer.
    let tar = tar_of(&upper);
    let entries = tar_names(&tar);
    assert_eq!(
        entries,
        [".wh.del", "dir/", "dir/.wh..wh..opq", "dir/y", "mod", "new"],
        "{entries:?}"
    );

    // Unpacked into a fresh snapshot and stacked on the base, it shows the
    // same filesystem the step saw.
    let (_, replay) = new_snapshot(&root);
    unpack_layer(&tar[..], &replay).unwrap();
    let mnt2 = t.path().join("mnt2");
    let m = Mounted::new(&mnt2, &[&replay, &base], None);
    assert_eq!(names(&mnt2), ["dir", "mod", "new", "stay"]);
    assert_eq!(names(&mnt2.join("dir")), ["y"]);
    assert_eq!(fs::read(mnt2.join("mod")).unwrap(), b"after");
    drop(m);

    // Snapshot paths are short: they go into lowerdir= option strings.
    assert!(root.snapshot_path(base_id).ends_with("snapshots/1/fs"));
    root.remove_snapshot(step_id).unwrap();
    assert!(!upper.exists());
}

#[test]
fn layer_cannot_forge_overlay_xattrs() {
    if !root_or_skip("trusted xattrs") {
        return;
    }
    // An archive carrying trusted.overlay.* via PAX must not get them onto
    // disk: a forged redirect or opaque flag would change what overlayfs
    // shows from *other* layers.
    let t = tempdir();
    // "<len> SCHILY.xattr.trusted.overlay.opaque=y\n", len counting itself
    // (two digits + space + the rest).
    let rec = "trusted.overlay.opaque=y\n";
    let body = format!(
        "{} SCHILY.xattr.{rec}",
        "SCHILY.xattr.".len() + rec.len() + 3
    );
    assert_eq!(
        body.len(),
        body.split(' ').next().unwrap().parse::<usize>().unwrap()
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/d").unwrap();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, body.as_bytes()).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_path("d/").unwrap();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    let tar = b.into_inner().unwrap();

    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    unpack_layer(&tar[..], &dst).unwrap();
    assert!(dst.join("d").is_dir());
    assert_eq!(get_xattr(&dst.join("d"), "trusted.overlay.opaque"), None);
}
