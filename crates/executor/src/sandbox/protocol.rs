//! What the parent and the sandbox child say to each other.
//!
//! Parent → child: one [`Envelope`] as JSON on stdin. Child → parent: JSON
//! lines ([`Report`]) on the control pipe (the child's fd 2 until it execs).

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use serde::{Deserialize, Serialize};

use super::StepSpec;

/// Exit code of the child when the sandbox setup failed.
pub(crate) const EXIT_SETUP: i32 = 125;
/// Exit code when the command exists but cannot be executed.
pub(crate) const EXIT_CANNOT_EXEC: i32 = 126;
/// Exit code when the command is not found.
pub(crate) const EXIT_NOT_FOUND: i32 = 127;

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Envelope {
    pub spec: StepSpec,
    /// The parent's pid: the child checks, after setting PDEATHSIG, that its
    /// parent is still this process.
    pub parent_pid: i32,
    /// An empty host directory owned by the parent; the child mounts a tmpfs
    /// on it (in its private mount namespace) for the rootfs mountpoint, the
    /// empty lower dir and the hosts/resolv.conf files.
    pub scratch: PathBuf,
}

/// One line on the control pipe.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "report", rename_all = "snake_case")]
pub(crate) enum Report {
    /// The child created `path` (relative to the rootfs, symlinks resolved) in
    /// the overlay to serve as a mountpoint. `parent_times` are the
    /// (atime s, atime ns, mtime s, mtime ns) of its parent before.
    Stub {
        path: String,
        parent_times: [i64; 4],
    },
    /// The setup failed; the child exits with [`EXIT_SETUP`] (or 126/127).
    Error { message: String },
    /// The setup is done; the child execs the command now.
    Ready,
}

static CONTROL_FD: AtomicI32 = AtomicI32::new(2);

/// Where [`report`] writes from now on (the grandchild moves the control pipe
/// to a close-on-exec fd so that the command never sees it).
pub(crate) fn set_control_fd(fd: RawFd) {
    CONTROL_FD.store(fd, Ordering::SeqCst);
}

/// Writes one report line. Best effort: if the parent is gone there is nobody
/// to tell.
pub(crate) fn report(r: &Report) {
    let mut line = serde_json::to_vec(r).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    write_all_raw(CONTROL_FD.load(Ordering::SeqCst), &line);
}

pub(crate) fn write_all_raw(fd: RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: plain write(2) of a live buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// What the parent learned from the control pipe.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Control {
    pub stubs: Vec<(String, [i64; 4])>,
    pub errors: Vec<String>,
    /// Lines that are not reports (e.g. a message printed by a dying child).
    pub other: Vec<String>,
    pub ready: bool,
}

pub(crate) fn parse_control(bytes: &[u8]) -> Control {
    let mut c = Control::default();
    for line in String::from_utf8_lossy(bytes).lines() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Report>(line) {
            Ok(Report::Stub { path, parent_times }) => c.stubs.push((path, parent_times)),
            Ok(Report::Error { message }) => c.errors.push(message),
            Ok(Report::Ready) => c.ready = true,
            Err(_) => c.other.push(line.to_string()),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_round_trip() {
        let mut bytes = Vec::new();
        for r in [
            Report::Stub {
                path: "dev".into(),
                parent_times: [1, 2, 3, 4],
            },
            Report::Error {
                message: "boom".into(),
            },
            Report::Ready,
        ] {
            bytes.extend(serde_json::to_vec(&r).unwrap());
            bytes.push(b'\n');
        }
        bytes.extend(b"thread panicked\n");
        let c = parse_control(&bytes);
        assert_eq!(c.stubs, vec![("dev".to_string(), [1, 2, 3, 4])]);
        assert_eq!(c.errors, vec!["boom".to_string()]);
        assert_eq!(c.other, vec!["thread panicked".to_string()]);
        assert!(c.ready);
    }
}
