//! Named exclusive locks: `flock(2)` on `ROOT/locks/<name>.lock`.
//!
//! flock rather than fcntl/POSIX locks because flock locks belong to the open
//! file description: two threads of one process that each open the lock file
//! exclude each other (POSIX locks would let them both in), and the lock goes
//! away with the fd, also when the process is killed. Lock files are never
//! deleted: unlinking a lock file while another process waits on it would let
//! a third process lock a fresh file of the same name at the same time.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::IoContext;
use crate::{CacheError, Root};

/// An exclusive lock, held until dropped.
#[derive(Debug)]
pub struct LockGuard {
    // Closing the fd releases the flock.
    _file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Root {
    /// Take the exclusive lock `name`, blocking until it is free.
    ///
    /// Any string is a valid name: names made of `[A-Za-z0-9._:-]` (not
    /// starting with `.`) are used as the file name as they are; others are
    /// hashed, so a name can never reach outside `locks/`. Names starting
    /// with `rbuild.` are taken by this crate (`rbuild.store`,
    /// `rbuild.snapshots`): holding one of them while calling the method
    /// that takes it internally would deadlock, since flock locks taken
    /// through separate opens exclude each other even within one process.
    pub fn lock(&self, name: &str) -> Result<LockGuard, CacheError> {
        self.lock_inner(name, true)
            .map(|g| g.expect("blocking lock returns a guard"))
    }

    /// Take the lock `name` if it is free right now.
    pub fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, CacheError> {
        self.lock_inner(name, false)
    }

    fn lock_inner(&self, name: &str, block: bool) -> Result<Option<LockGuard>, CacheError> {
        let path = self.path().join("locks").join(lock_file_name(name));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx("open lock file", &path)?;
        let op = if block {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        loop {
            // SAFETY: flock on an fd we own; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(Some(LockGuard { _file: file, path }));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if !block => return Ok(None),
                _ => return Err(CacheError::io("flock", path, e)),
            }
        }
    }
}

fn lock_file_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if plain {
        format!("{name}.lock")
    } else {
        format!("h-{}.lock", hex::encode(Sha256::digest(name.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn names_stay_inside_locks_dir() {
        assert_eq!(lock_file_name("store"), "store.lock");
        for hostile in ["../x", "a/b", "", ".hidden", "x\0y"] {
            let n = lock_file_name(hostile);
            assert!(
                n.starts_with("h-") && !n.contains('/'),
                "{hostile:?} -> {n}"
            );
        }
    }

    #[test]
    fn two_threads_serialize() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let entered = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (root, inside, overlaps, entered) = (
                    root.clone(),
                    inside.clone(),
                    overlaps.clone(),
                    entered.clone(),
                );
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        let _g = root.lock("build").unwrap();
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        entered.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(10));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(entered.load(Ordering::SeqCst), 10);
        assert_eq!(
            overlaps.load(Ordering::SeqCst),
            0,
            "critical sections overlapped"
        );
    }

    #[test]
    fn try_lock_sees_held_lock_and_release_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let g = root.lock("x").unwrap();
        assert!(g.path().starts_with(root.path().join("locks")));
        assert!(root.try_lock("x").unwrap().is_none());
        assert!(root.try_lock("y").unwrap().is_some());
        drop(g);
        assert!(root.try_lock("x").unwrap().is_some());
    }
}
