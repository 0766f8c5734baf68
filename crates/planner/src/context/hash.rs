//! Streaming sha256 of context files on a small pool of scoped threads.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::meta::Stamp;

/// Read buffer per worker; large enough that syscall overhead is negligible,
/// small enough to stay in L2.
const BUF_SIZE: usize = 256 * 1024;

/// At most this many hashing threads (the machine's parallelism caps it too).
const MAX_WORKERS: usize = 8;

/// A file to hash: its context-relative path and the stamp `lstat` gave during
/// the walk.
pub(crate) struct Job<'a> {
    pub path: &'a str,
    pub stamp: Stamp,
}

/// The outcome for one job: the digest, and whether the file looked the same
/// (same stamp via `fstat`) after reading it, i.e. whether the digest may be
/// cached under the walk's stamp.
pub(crate) struct Hashed {
    pub sha256: [u8; 32],
    pub stable: bool,
}

/// Hashes every job; results are in job order. `counter` is incremented once
/// per file whose content is read.
pub(crate) fn hash_all(
    root: &Path,
    jobs: &[Job<'_>],
    counter: &AtomicU64,
) -> Vec<Result<Hashed, io::Error>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS)
        .min(jobs.len());
    if workers <= 1 {
        let mut buf = vec![0u8; BUF_SIZE];
        return jobs
            .iter()
            .map(|job| hash_one(root, job, &mut buf, counter))
            .collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Hashed, io::Error>>> = Vec::with_capacity(jobs.len());
    results.resize_with(jobs.len(), || None);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut buf = vec![0u8; BUF_SIZE];
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        done.push((i, hash_one(root, job, &mut buf, counter)));
                    }
                    done
                })
            })
            .collect();
        for handle in handles {
            let done = match handle.join() {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            for (i, result) in done {
                results[i] = Some(result);
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every job was taken by a worker"))
        .collect()
}

fn hash_one(
    root: &Path,
    job: &Job<'_>,
    buf: &mut [u8],
    counter: &AtomicU64,
) -> Result<Hashed, io::Error> {
    // O_NOFOLLOW: if the file was swapped for a symlink since the walk, refuse
    // instead of reading whatever it points at (possibly outside the context).
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(root.join(job.path))?;
    counter.fetch_add(1, Ordering::Relaxed);
    let before = file.metadata()?;
    if !before.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file any more",
        ));
    }
    let mut hasher = Sha256::new();
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    let after = Stamp::of(&file.metadata()?);
    Ok(Hashed {
        sha256: hasher.finalize().into(),
        stable: after == job.stamp,
    })
}
