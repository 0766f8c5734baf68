//! Layer round trips, determinism, interoperability with GNU tar, and
//! hostile archives.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::*;
use rbuild_cache::{
    sha256_digest, unpack_compressed_layer, unpack_layer, write_layer_tar, CacheError, Compression,
    Root,
};

fn layer_of(dir: &Path) -> (Vec<u8>, String, u64) {
    let mut out = Vec::new();
    let (diff_id, size) = write_layer_tar(dir, &mut out).unwrap();
    (out, diff_id, size)
}

#[test]
fn round_trip_preserves_tree() {
    let root = root_or_skip("device nodes, ownership and capabilities in the round trip");
    let t = tempdir();
    let src = t.path().join("src");
    let dst = t.path().join("dst");
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    build_tree(&src, root);

    let (tar, diff_id, size) = layer_of(&src);
    assert_eq!(
        diff_id,
        sha256_digest(&tar),
        "diff_id is not the digest of the bytes written"
    );
    assert_eq!(size, tar.len() as u64);
    assert!(size > BIG, "the big file's content is missing");

    let unpacked = unpack_layer(&tar[..], &dst).unwrap();
    assert_eq!(
        unpacked, diff_id,
        "reader and writer disagree on the diff_id"
    );

    let (a, b) = (fingerprint(&src), fingerprint(&dst));
    assert_same_tree(&a, &b);
    // Spot checks, so that a fingerprint bug cannot hide everything.
    assert_eq!(
        b["a.txt"].xattrs.get("user.foo").map(Vec::as_slice),
        Some(&b"bar"[..])
    );
    assert_eq!(b["suid"].mode, 0o4755);
    assert_eq!(b["sticky"].mode, 0o1777);
    assert_eq!(b["sgid-dir"].mode, 0o2775);
    assert_eq!(b["private"].mode, 0o700);
    assert_eq!(b["fifo"].kind, "fifo");
    assert_eq!(b["sub/link"].link.as_deref(), Some(Path::new("../a.txt")));
    assert_eq!(
        b["long-link"].link.as_deref(),
        Some(Path::new(&long_path()))
    );
    assert_eq!(b["big"].size, BIG);
    assert!(b.contains_key(&long_path()));
    assert_eq!(b["sub"].mtime, FIXED_MTIME + 3, "dir mtime not restored");
    // Hardlinks stay hardlinks.
    let (m1, m2) = (
        fs::metadata(dst.join("a.txt")).unwrap(),
        fs::metadata(dst.join("sub/hard")).unwrap(),
    );
    assert_eq!(m1.ino(), m2.ino(), "hardlink became a copy");
    if root {
        assert_eq!(b["null"].kind, "char");
        assert_eq!(b["null"].rdev, nix::sys::stat::makedev(1, 3));
        assert_eq!((b["uid100000"].uid, b["uid100000"].gid), (100_000, 100_001));
        assert_eq!((b["suid"].uid, b["suid"].mode), (1000, 0o4755));
        assert_eq!(
            b["ping"].xattrs.get("security.capability"),
            Some(&cap_net_raw())
        );
        assert_eq!((b["sub/link"].uid, b["sub/link"].gid), (7, 8));
        assert_eq!(
            b["sub"]
                .xattrs
                .get("trusted.rbuild-test")
                .map(Vec::as_slice),
            Some(&b"kept"[..])
        );
    }
}

#[test]
fn layers_are_deterministic() {
    let root = is_root();
    let t = tempdir();
    let (x, y) = (t.path().join("x"), t.path().join("y-other-place"));
    fs::create_dir(&x).unwrap();
    build_small_tree(&x, root);
    let (_, d1, _) = layer_of(&x);
    let (_, d2, _) = layer_of(&x);
    assert_eq!(d1, d2);

    // Reading every file and touching atimes changes nothing.
    for e in walkdir::WalkDir::new(&x).min_depth(1) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            fs::read(e.path()).unwrap();
        }
        let atime = nix::sys::time::TimeSpec::new(12345, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            e.path(),
            &atime,
            &nix::sys::time::TimeSpec::UTIME_OMIT,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
    assert_eq!(layer_of(&x).1, d1, "atime leaked into the layer");

    // The same tree built elsewhere (other inodes, other creation order of
    // directory entries) gives the same layer.
    fs::create_dir(&y).unwrap();
    build_small_tree(&y, root);
    assert_eq!(
        layer_of(&y).1,
        d1,
        "layer depends on where/how the tree was made"
    );

    // Unpacked and re-packed: the same bytes again.
    let z = t.path().join("z");
    fs::create_dir(&z).unwrap();
    let (tar, _, _) = layer_of(&x);
    unpack_layer(&tar[..], &z).unwrap();
    assert_eq!(layer_of(&z).1, d1, "unpack → write is not the identity");

    // And a real change shows.
    fs::write(x.join("empty"), b"!").unwrap();
    set_all_mtimes(&x);
    assert_ne!(layer_of(&x).1, d1);
}

#[test]
fn header_details() {
    let root = is_root();
    let t = tempdir();
    build_small_tree(t.path(), root);
    let (tar, _, _) = layer_of(t.path());

    let mut archive = tar::Archive::new(&tar[..]);
    let mut names = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let h = e.header();
        assert!(h.as_ustar().is_some(), "{name}: not a ustar header");
        assert_eq!(h.username_bytes(), Some(&b""[..]), "{name}: uname set");
        assert_eq!(h.groupname_bytes(), Some(&b""[..]), "{name}: gname set");
        if name == long_path() {
            // The 120-byte name came from a PAX record.
            let pax: Vec<_> = e
                .pax_extensions()
                .unwrap()
                .expect("PAX header for a long name")
                .map(|x| x.unwrap().key().unwrap().to_string())
                .collect();
            assert!(pax.contains(&"path".to_string()), "{pax:?}");
        }
        if name == "uid100000" {
            assert_eq!(e.header().uid().unwrap(), 100_000);
            assert_eq!(e.header().gid().unwrap(), 100_001);
        }
        if name == "sub/hard" {
            assert_eq!(e.header().entry_type(), tar::EntryType::Link);
            assert_eq!(&*e.link_name_bytes().unwrap(), b"a.txt");
        }
        names.push(name);
    }
    // Parents before children, siblings sorted by name bytes.
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n} missing: {names:?}"))
    };
    assert!(pos("sub/") < pos("sub/deep/"));
    assert!(pos("sub/deep/") < pos("sub/deep/file"));
    assert!(pos("a.txt") < pos("abs-link") && pos("abs-link") < pos("big"));
    assert!(!names
        .iter()
        .any(|n| n.starts_with("./") || n.starts_with('/')));
    // Ends with exactly two zero blocks.
    assert!(tar[tar.len() - 1024..].iter().all(|b| *b == 0));
    assert_eq!(tar.len() % 512, 0);
}

/// Independent check of the writer: GNU tar lists and extracts it.
#[test]
fn gnu_tar_reads_our_layers() {
    let root = is_root();
    let t = tempdir();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src, root);
    let tar_path = t.path().join("layer.tar");
    let (tar, _, _) = layer_of(&src);
    fs::write(&tar_path, &tar).unwrap();

    let out = Command::new("tar")
        .arg("-tf")
        .arg(&tar_path)
        .output()
        .expect("GNU tar");
    assert!(
        out.status.success(),
        "tar -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gnu_names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(gnu_names, tar_names(&tar), "GNU tar sees other names");
    assert!(
        gnu_names.contains(&long_path()),
        "120-byte name lost: {gnu_names:?}"
    );

    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(name) || l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{listing}"))
            .to_string()
    };
    assert!(line("sub/hard link to a.txt").starts_with('h'), "{listing}");
    assert!(line("sub/link -> ../a.txt").starts_with('l'));
    assert!(line("fifo").starts_with('p'));
    assert!(line("suid").starts_with("-rwsr-xr-x"));
    if root {
        assert!(
            line("uid100000").contains("100000/100001"),
            "{}",
            line("uid100000")
        );
        assert!(line("null").starts_with('c'));
    }

    // GNU tar extracts it into the same tree.
    let dst = t.path().join("gnu");
    fs::create_dir(&dst).unwrap();
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&tar_path)
        .arg("-C")
        .arg(&dst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar -x: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, mut b) = (fingerprint(&src), fingerprint(&dst));
    if !root {
        // A non-root GNU tar cannot restore everything; compare content.
        for (k, v) in &a {
            assert_eq!(
                b.get(k).map(|i| (&i.content, &i.link)),
                Some((&v.content, &v.link)),
                "{k}"
            );
        }
        return;
    }
    // GNU tar sets symlink mtimes only with --touch semantics of its own;
    // compare those without mtimes.
    for (k, v) in b.iter_mut() {
        if v.kind == "symlink" {
            v.mtime = a[k].mtime;
        }
    }
    assert_same_tree(&a, &b);
}

/// Independent check of the reader: archives written by GNU tar, in its own
/// GNU format (long names as 'L' entries) and in POSIX format with xattrs.
#[test]
fn unpack_reads_gnu_tar_archives() {
    let root = is_root();
    let t = tempdir();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    build_small_tree(&src, root);
    for (fmt, extra) in [
        ("gnu", &[][..]),
        ("posix", &["--xattrs", "--xattrs-include=*"][..]),
    ] {
        let tar_path = t.path().join(format!("{fmt}.tar"));
        let out = Command::new("tar")
            .arg(format!("--format={fmt}"))
            .args(extra)
            .args(["--numeric-owner", "-cf"])
            .arg(&tar_path)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tar -c: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = fs::read(&tar_path).unwrap();
        let dst = t.path().join(format!("dst-{fmt}"));
        fs::create_dir(&dst).unwrap();
        let diff_id = unpack_layer(fs::File::open(&tar_path).unwrap(), &dst).unwrap();
        // GNU tar pads to 10 KiB records: the diff_id covers those too.
        assert_eq!(diff_id, sha256_digest(&bytes), "{fmt}");
        let (a, mut b) = (fingerprint(&src), fingerprint(&dst));
        if fmt == "gnu" {
            for v in b.values_mut() {
                v.xattrs.clear();
            }
            let mut a2 = fingerprint(&src);
            for v in a2.values_mut() {
                v.xattrs.clear();
            }
            assert_same_tree(&a2, &b);
        } else {
            assert_same_tree(&a, &b);
        }
    }
}

#[test]
fn compressed_layers_round_trip() {
    let t = tempdir();
    let root = Root::open(&t.path().join("root")).unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    build_small_tree(&src, false);
    let (diff_id, size) = root.put_layer_from_dir(&src).unwrap();
    assert!(root.has_blob(&diff_id));
    assert_eq!(fs::metadata(root.blob_path(&diff_id)).unwrap().len(), size);

    for algo in [Compression::Gzip, Compression::Zstd] {
        let (digest, csize) = root.compress_blob(&diff_id, algo).unwrap();
        assert!(
            csize < size / 2,
            "{algo:?} did not compress a mostly-zero layer"
        );
        assert_eq!(root.verify_blob(&digest).unwrap(), csize);
        // Remembered: the second call returns the same blob.
        let blobs = fs::read_dir(root.path().join("blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(
            root.compress_blob(&diff_id, algo).unwrap(),
            (digest.clone(), csize)
        );
        assert_eq!(
            fs::read_dir(root.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            blobs
        );

        let dst = t.path().join(format!("dst-{}", algo.name()));
        fs::create_dir(&dst).unwrap();
        let got = unpack_compressed_layer(root.open_blob(&digest).unwrap(), &dst).unwrap();
        assert_eq!(got, diff_id, "{algo:?}: diff_id of the decompressed stream");
        assert_same_tree(&fingerprint(&src), &fingerprint(&dst));

        // Deterministic across roots.
        let other = Root::open(&t.path().join(format!("root2-{}", algo.name()))).unwrap();
        let (d2, _) = other.put_layer_from_dir(&src).unwrap();
        assert_eq!(other.compress_blob(&d2, algo).unwrap().0, digest);
    }
    // Plain tar through the sniffing entry point.
    let dst = t.path().join("dst-plain");
    fs::create_dir(&dst).unwrap();
    assert_eq!(
        unpack_compressed_layer(root.open_blob(&diff_id).unwrap(), &dst).unwrap(),
        diff_id
    );
    // Formats we do not read are refused by name.
    let err = unpack_compressed_layer(&b"BZh91AY&SY"[..], &dst).unwrap_err();
    assert!(err.to_string().contains("bzip2"), "{err}");
}

#[test]
fn gzip_made_by_gzip_unpacks() {
    let t = tempdir();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let (tar, diff_id, _) = layer_of(&src);
    let tar_path = t.path().join("l.tar");
    fs::write(&tar_path, &tar).unwrap();
    for (tool, ext) in [("gzip", "gz"), ("zstd", "zst")] {
        let st = Command::new(tool)
            .args(["-q", "-k", "-f"])
            .arg(&tar_path)
            .status()
            .unwrap();
        assert!(st.success(), "{tool}");
        let dst = t.path().join(format!("dst-{ext}"));
        fs::create_dir(&dst).unwrap();
        let f = fs::File::open(t.path().join(format!("l.tar.{ext}"))).unwrap();
        assert_eq!(unpack_compressed_layer(f, &dst).unwrap(), diff_id, "{tool}");
        assert_eq!(fs::read(dst.join("f")).unwrap(), b"x");
    }
}

// ---- hostile archives -------------------------------------------------

/// `work/dest` (unpack target) beside `work/sentinel` (must stay as it is).
struct Arena {
    _t: tempfile::TempDir,
    work: std::path::PathBuf,
    dest: std::path::PathBuf,
    sentinel: std::path::PathBuf,
}

fn arena() -> Arena {
    let t = tempdir();
    let work = t.path().to_path_buf();
    let dest = work.join("dest");
    let sentinel = work.join("sentinel");
    fs::create_dir(&dest).unwrap();
    fs::create_dir(&sentinel).unwrap();
    fs::write(sentinel.join("secret"), b"secret").unwrap();
    Arena {
        _t: t,
        work,
        dest,
        sentinel,
    }
}

impl Arena {
    /// Nothing outside `dest` changed.
    fn check(&self, case: &str) {
        let mut top: Vec<_> = fs::read_dir(&self.work)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        top.sort();
        assert_eq!(
            top,
            ["dest", "sentinel"],
            "{case}: something was created beside dest"
        );
        let inside: Vec<_> = fs::read_dir(&self.sentinel)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(inside, ["secret"], "{case}: sentinel dir changed");
        let md = fs::symlink_metadata(self.sentinel.join("secret")).unwrap();
        assert!(md.file_type().is_file(), "{case}: secret replaced");
        assert_eq!(md.nlink(), 1, "{case}: secret was hard-linked");
        assert_eq!(
            fs::read(self.sentinel.join("secret")).unwrap(),
            b"secret",
            "{case}"
        );
        assert!(
            xattrs(&self.sentinel).is_empty(),
            "{case}: sentinel got xattrs"
        );
    }
}

fn unsafe_or_skipped(r: Result<String, CacheError>, case: &str) {
    match r {
        Err(CacheError::UnsafeEntry { .. }) => {}
        Err(other) => panic!("{case}: expected an unsafe-entry error, got {other}"),
        Ok(_) => panic!("{case}: hostile archive accepted"),
    }
}

/// The hostile archives, as (case, tar bytes); built per arena because one
/// of them names the arena's absolute path.
fn hostile_cases(a: &Arena) -> Vec<(&'static str, Vec<u8>)> {
    // `a -> /` then `a/<absolute path of the sentinel>/pwned`: the classic
    // escape, aimed at the sentinel rather than at /etc/passwd so that a
    // regression cannot damage the machine running the tests.
    let through_root = format!(
        "a/{}",
        a.sentinel
            .join("pwned")
            .to_string_lossy()
            .trim_start_matches('/')
    );
    vec![
        ("dotdot", raw_tar(&[file("../evil", b"x")])),
        (
            "dotdot inside",
            raw_tar(&[dir("d/"), file("d/../../evil", b"x")]),
        ),
        (
            "symlink to / then through it",
            raw_tar(&[symlink_to("a", "/"), file(&through_root, b"x")]),
        ),
        (
            "relative symlink out then through it",
            raw_tar(&[symlink_to("b", "../sentinel"), file("b/pwned", b"x")]),
        ),
        (
            "symlink then dir through it",
            raw_tar(&[symlink_to("b", "../sentinel"), dir("b/newdir/")]),
        ),
        (
            "hardlink out",
            raw_tar(&[hardlink_to("stolen", "../sentinel/secret")]),
        ),
        ("hardlink far out", raw_tar(&[hardlink_to("x", "../../x")])),
        (
            "hardlink through symlink",
            raw_tar(&[
                symlink_to("s", "../sentinel"),
                hardlink_to("stolen", "s/secret"),
            ]),
        ),
        ("whiteout of ..", raw_tar(&[file(".wh...", b"")])),
        (
            "whiteout of .",
            raw_tar(&[dir("sub/"), file("sub/.wh..", b"")]),
        ),
        (
            "whiteout through symlink",
            raw_tar(&[symlink_to("s", "../sentinel"), file("s/.wh.secret", b"")]),
        ),
        (
            "opaque marker through symlink",
            raw_tar(&[symlink_to("s", "../sentinel"), file("s/.wh..wh..opq", b"")]),
        ),
        ("symlink named ..", raw_tar(&[symlink_to("..", "/")])),
    ]
}

#[test]
fn hostile_archives_stay_inside() {
    let n = hostile_cases(&arena()).len();
    for i in 0..n {
        let a = arena();
        let (case, tar) = hostile_cases(&a).swap_remove(i);
        unsafe_or_skipped(unpack_layer(&tar[..], &a.dest), case);
        a.check(case);
    }
}

#[test]
fn hostile_but_harmless_archives_are_confined() {
    // Absolute names are made relative.
    let a = arena();
    let existed = Path::new("/etc/x").exists();
    let tar = raw_tar(&[file("/etc/x", b"inside"), file("/abs", b"y")]);
    unpack_layer(&tar[..], &a.dest).unwrap();
    assert_eq!(fs::read(a.dest.join("etc/x")).unwrap(), b"inside");
    assert_eq!(fs::read(a.dest.join("abs")).unwrap(), b"y");
    if !existed {
        assert!(!Path::new("/etc/x").exists(), "wrote the host's /etc/x");
    }
    a.check("absolute");

    // A file entry replaces a symlink of the same name instead of writing
    // through it; so does a directory entry.
    let a = arena();
    let tar = raw_tar(&[
        symlink_to("f", "../sentinel/secret"),
        file("f", b"replaced"),
        symlink_to("d", "../sentinel"),
        dir("d/"),
        file("d/inner", b"in"),
    ]);
    unpack_layer(&tar[..], &a.dest).unwrap();
    assert!(fs::symlink_metadata(a.dest.join("f")).unwrap().is_file());
    assert_eq!(fs::read(a.dest.join("f")).unwrap(), b"replaced");
    assert!(fs::symlink_metadata(a.dest.join("d")).unwrap().is_dir());
    assert_eq!(fs::read(a.dest.join("d/inner")).unwrap(), b"in");
    a.check("replace symlink");

    // Symlinks pointing out are created verbatim (they are only resolved
    // inside the container), and a hardlink to one links the symlink itself.
    let a = arena();
    let tar = raw_tar(&[
        symlink_to("out", "../sentinel/secret"),
        hardlink_to("out2", "out"),
    ]);
    unpack_layer(&tar[..], &a.dest).unwrap();
    let md = fs::symlink_metadata(a.dest.join("out2")).unwrap();
    assert!(md.file_type().is_symlink());
    assert_eq!(
        fs::read_link(a.dest.join("out2")).unwrap(),
        Path::new("../sentinel/secret")
    );
    a.check("outward symlink");

    // Implied parents are created; a long (PAX) name works.
    let a = arena();
    let long = format!("x/{}", "y".repeat(150));
    let tar = raw_tar(&[file(&long, b"l")]);
    unpack_layer(&tar[..], &a.dest).unwrap();
    assert_eq!(fs::read(a.dest.join(&long)).unwrap(), b"l");
    a.check("implied parents");
}

#[test]
fn corrupt_archive_is_an_error() {
    let a = arena();
    let mut tar = raw_tar(&[file("f", b"data")]);
    tar[148] ^= 1; // checksum field
    let err = unpack_layer(&tar[..], &a.dest).unwrap_err();
    assert!(matches!(err, CacheError::Archive { .. }), "{err}");
    assert!(
        err.to_string().contains("dest"),
        "error names the destination: {err}"
    );
    // Truncated in the middle of a file's data.
    let tar = raw_tar(&[file("f", &[1u8; 2000])]);
    assert!(unpack_layer(&tar[..700], &a.dest).is_err());
    a.check("corrupt");
}

#[test]
fn char_device_whiteouts_are_special_only_at_0_0() {
    if !root_or_skip("device nodes") {
        return;
    }
    let t = tempdir();
    nix::sys::stat::mknod(
        &t.path().join("tty"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o620),
        nix::sys::stat::makedev(5, 0),
    )
    .unwrap();
    let (tar, _, _) = layer_of(t.path());
    assert_eq!(tar_names(&tar), ["tty"]);
    let d = tempdir();
    unpack_layer(&tar[..], d.path()).unwrap();
    let md = fs::symlink_metadata(d.path().join("tty")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), nix::sys::stat::makedev(5, 0));
}
