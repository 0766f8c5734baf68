//! Helpers shared by the integration tests: a sample tree, a tree
//! fingerprint for comparisons, raw tar construction for hostile archives,
//! and the root-only gate.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A temporary dir on the project's disk (not a tmpfs /tmp, which may lack
/// xattr support).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cache-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether root-only parts may run. Outside CI a non-root run skips them
/// with a message; under CI (which runs as root) not being root is a
/// failure, so the parts cannot be silently skipped there.
pub fn root_or_skip(what: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} needs root, and CI=true");
    }
    eprintln!("skipping {what}: not root");
    false
}

pub const BIG: u64 = 20 * 1024 * 1024;
pub const FIXED_MTIME: i64 = 1_600_000_000;
/// A path of exactly 120 bytes (does not fit the 100-byte ustar name).
pub fn long_path() -> String {
    let p = format!("{}/{}", "d".repeat(59), "f".repeat(60));
    assert_eq!(p.len(), 120);
    p
}

/// A v2 `security.capability` value granting CAP_NET_RAW (effective).
pub fn cap_net_raw() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes()); // revision 2 | effective
    v.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted: CAP_NET_RAW
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// Fill `dir` with every kind of entry a layer can hold. Root-only parts
/// (device node, foreign ownership, capabilities) are added when `root`.
/// All mtimes are set to fixed values at the end, so two calls in different
/// places build trees that must give the same layer.
pub fn build_tree(dir: &Path, root: bool) {
    let p = |s: &str| dir.join(s);
    fs::write(p("a.txt"), b"hello\n").unwrap();
    set_xattr(&p("a.txt"), "user.foo", b"bar");
    fs::write(p("empty"), b"").unwrap();

    // Sparse-ish large file: holes plus some data, streamed through the
    // layer code (20 MiB, never held in memory by it).
    let mut big = File::create(p("big")).unwrap();
    big.set_len(BIG).unwrap();
    for off in [0, BIG / 2, BIG - 4096] {
        big.seek(SeekFrom::Start(off)).unwrap();
        let chunk: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(31) ^ off as u32) as u8)
            .collect();
        big.write_all(&chunk).unwrap();
    }
    drop(big);

    fs::create_dir_all(p("sub/deep")).unwrap();
    fs::write(p("sub/deep/file"), b"deep\n").unwrap();
    symlink("../a.txt", p("sub/link")).unwrap();
    symlink("/etc/passwd", p("abs-link")).unwrap();
    fs::hard_link(p("a.txt"), p("sub/hard")).unwrap();
    nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();

    let long = long_path();
    fs::create_dir_all(p(long.split('/').next().unwrap())).unwrap();
    fs::write(p(&long), b"long name\n").unwrap();
    // A symlink whose target is longer than 100 bytes (PAX linkpath).
    symlink(&long, p("long-link")).unwrap();

    fs::write(p("suid"), b"#!/bin/sh\n").unwrap();
    fs::create_dir(p("sgid-dir")).unwrap();
    fs::create_dir(p("sticky")).unwrap();
    fs::create_dir(p("private")).unwrap();
    fs::write(p("private/secret"), b"s").unwrap();

    if root {
        nix::sys::stat::mknod(
            &p("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        fs::write(p("uid100000"), b"big id\n").unwrap();
        chown(&p("uid100000"), 100_000, 100_001);
        // setuid on a file owned by someone else: chown clears setuid, so
        // this also checks the order in which unpack applies metadata.
        chown(&p("suid"), 1000, 1000);
        fs::write(p("ping"), b"\x7fELF").unwrap();
        fs::set_permissions(p("ping"), fs::Permissions::from_mode(0o755)).unwrap();
        set_xattr(&p("ping"), "security.capability", &cap_net_raw());
        set_xattr(&p("sub"), "trusted.rbuild-test", b"kept");
        chown(&p("sub/link"), 7, 8);
    }
    fs::set_permissions(p("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(p("sgid-dir"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::set_permissions(p("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(p("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(p("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();

    set_all_mtimes(dir);
}

/// [`build_tree`] with the big file cut to 64 KiB, for tests that do not
/// need 20 MiB (debug-build hashing and compression of it take seconds).
pub fn build_small_tree(dir: &Path, root: bool) {
    build_tree(dir, root);
    File::options()
        .write(true)
        .open(dir.join("big"))
        .unwrap()
        .set_len(64 * 1024)
        .unwrap();
    set_all_mtimes(dir);
}

/// Give every entry under `dir` (not `dir` itself) a fixed mtime derived
/// from its name, children before parents.
pub fn set_all_mtimes(dir: &Path) {
    let entries: Vec<_> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .contents_first(true)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect();
    for path in entries {
        let rel = path.strip_prefix(dir).unwrap();
        let t = FIXED_MTIME + rel.as_os_str().len() as i64;
        let ts = nix::sys::time::TimeSpec::new(t, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &path,
            &ts,
            &ts,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}

pub fn chown(path: &Path, uid: u32, gid: u32) {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn cpath(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let n = CString::new(name).unwrap();
    let p = cpath(path);
    // SAFETY: valid C strings and a live buffer.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    xattrs(path).remove(name)
}

/// All xattrs of `path` (not following symlinks).
pub fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let p = cpath(path);
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: live buffers of the given sizes.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return out;
    }
    names.truncate(n as usize);
    for name in names.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let cn = CString::new(name).unwrap();
        let mut val = vec![0u8; 64 * 1024];
        let m =
            unsafe { libc::lgetxattr(p.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if m >= 0 {
            val.truncate(m as usize);
            out.insert(String::from_utf8_lossy(name).into_owned(), val);
        }
    }
    out
}

/// What a layer must preserve about one entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Info {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub content: Option<String>,
    pub link: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Fingerprint every entry under `dir` (not `dir` itself), keyed by relative
/// path. Hardlinks are checked separately (inode identity is not content).
pub fn fingerprint(dir: &Path) -> BTreeMap<String, Info> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let md = fs::symlink_metadata(e.path()).unwrap();
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let content = ft.is_file().then(|| {
            let mut h = Sha256::new();
            let mut f = File::open(e.path()).unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            hex::encode(h.finalize())
        });
        let rel = e
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.insert(
            rel,
            Info {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: md.mtime(),
                size: if ft.is_file() { md.size() } else { 0 },
                content,
                link: ft.is_symlink().then(|| fs::read_link(e.path()).unwrap()),
                rdev: md.rdev(),
                xattrs: xattrs(e.path()),
            },
        );
    }
    out
}

/// Assert two fingerprints are equal, naming the first difference.
pub fn assert_same_tree(a: &BTreeMap<String, Info>, b: &BTreeMap<String, Info>) {
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb, "different entries");
    for (k, va) in a {
        assert_eq!(Some(va), b.get(k), "entry {k} differs");
    }
}

/// Names of the entries of a tar, in order, read with the `tar` crate.
pub fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

/// One entry of a hand-made (possibly hostile) archive.
pub struct Raw<'a> {
    pub name: &'a str,
    pub kind: tar::EntryType,
    pub link: &'a str,
    pub data: &'a [u8],
}

pub fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        link: "",
        data,
    }
}
pub fn dir(name: &str) -> Raw<'_> {
    Raw {
        name,
        kind: tar::EntryType::Directory,
        link: "",
        data: b"",
    }
}
pub fn symlink_to<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name,
        kind: tar::EntryType::Symlink,
        link: target,
        data: b"",
    }
}
pub fn hardlink_to<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name,
        kind: tar::EntryType::Link,
        link: target,
        data: b"",
    }
}

/// Build a tar byte for byte, bypassing every check the `tar` crate's
/// builder makes on names (which is the point for hostile archives). Long
/// names get a PAX `path` record.
pub fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if e.name.len() > 100 {
            let rec = format!("path={}\n", e.name);
            let mut len = rec.len() + 2;
            while len != rec.len() + 1 + len.to_string().len() {
                len = rec.len() + 1 + len.to_string().len();
            }
            let body = format!("{len} {rec}");
            push(
                &mut out,
                "PaxHeaders/x",
                tar::EntryType::XHeader,
                "",
                body.as_bytes(),
            );
        }
        push(&mut out, e.name, e.kind, e.link, e.data);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn push(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    {
        let u = h.as_ustar_mut().unwrap();
        let n = name.len().min(100);
        u.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        u.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(FIXED_MTIME as u64);
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}
