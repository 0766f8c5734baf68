//! ADD's archive extraction: a tar stream unpacked into a directory of the
//! image, with every path resolved as if that directory were `/`, so no
//! entry (`../x`, `/etc/x`, a symlink then a file through it, a hardlink to
//! an outside path) can write outside it.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

use crate::fsops::{Owner, RootDir};

/// Components of an archive path, with `.`, `..` and leading `/` removed
/// (`..` can never climb: it is dropped like tar's `--no-overwrite-dir`
/// handling of hostile names).
fn clean(path: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(path)
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .map(String::from)
        .collect()
}

pub(crate) fn extract(
    reader: Box<dyn Read>,
    dest: &OwnedFd,
    chown: Option<Owner>,
) -> io::Result<()> {
    let root = RootDir::open(&crate::fsops::fd_path(dest))?;
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let parts = clean(&entry.path_bytes());
        let Some((name, parents)) = parts.split_last() else {
            continue;
        };
        let header = entry.header();
        let owner = chown.unwrap_or(Owner {
            uid: header.uid().unwrap_or(0) as u32,
            gid: header.gid().unwrap_or(0) as u32,
        });
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let kind = header.entry_type();
        let parent_path = format!("/{}", parents.join("/"));
        let parent = root.mkdir_all(&parent_path, 0o755, owner)?;
        let c_name =
            std::ffi::CString::new(name.as_bytes()).map_err(|_| io::Error::other("NUL in name"))?;
        if kind.is_dir() {
            root.mkdir_all(&format!("{parent_path}/{name}"), mode, owner)?;
            continue;
        }
        // Replace whatever is there (not a directory) without following it.
        // SAFETY: valid dirfd and NUL-terminated name.
        unsafe { libc::unlinkat(parent.as_raw_fd(), c_name.as_ptr(), 0) };
        if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let c_target =
                std::ffi::CString::new(target).map_err(|_| io::Error::other("NUL in link"))?;
            // SAFETY: valid strings and dirfd.
            if unsafe { libc::symlinkat(c_target.as_ptr(), parent.as_raw_fd(), c_name.as_ptr()) }
                < 0
            {
                return Err(io::Error::last_os_error());
            }
        } else if kind.is_hard_link() {
            let target = clean(
                &entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default(),
            );
            let src = root.open_path(
                &format!("/{}", target.join("/")),
                libc::O_PATH | libc::O_NOFOLLOW,
            )?;
            let empty = std::ffi::CString::new("").expect("no NUL");
            // SAFETY: linking an O_PATH fd (AT_EMPTY_PATH) into a directory we hold.
            if unsafe {
                libc::linkat(
                    src.as_raw_fd(),
                    empty.as_ptr(),
                    parent.as_raw_fd(),
                    c_name.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            } < 0
            {
                return Err(io::Error::last_os_error());
            }
        } else if kind.is_file()
            || kind == tar::EntryType::Continuous
            || kind == tar::EntryType::GNUSparse
        {
            crate::fsops::write_file(&parent, name, &mut entry, mode, owner)?;
            continue;
        } else {
            // Devices and fifos from an archive are skipped: ADD is for files.
            continue;
        }
        // SAFETY: valid dirfd and name.
        unsafe {
            libc::fchownat(
                parent.as_raw_fd(),
                c_name.as_ptr(),
                owner.uid,
                owner.gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_cleaned() {
        assert_eq!(clean(b"../../etc/passwd"), ["etc", "passwd"]);
        assert_eq!(clean(b"/abs/./x"), ["abs", "x"]);
        assert!(clean(b"..").is_empty());
    }
}
