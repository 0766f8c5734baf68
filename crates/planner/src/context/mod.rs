//! The build context: which files a COPY/ADD (or `RUN --mount=type=bind`)
//! source selects, and a content digest of that selection for the cache key.
//!
//! [`BuildContext::open`] reads the `.dockerignore` rules (BuildKit's choice of
//! file: `<Dockerfile>.dockerignore` next to the Dockerfile, else
//! `<context>/.dockerignore`) and the metadata cache.
//! [`BuildContext::select`] resolves the sources (see the `resolve` submodule
//! for paths, wildcards and symlinks, and `walk` for directory sources,
//! `.dockerignore` and `--exclude`), hashes the selected files' contents and
//! returns a [`Selection`] with its digest. The executor later copies exactly
//! [`Selection::files`].
//!
//! # The selection digest
//!
//! `Selection::digest` is `sha256:<hex>` of the byte stream below. It is meant
//! to change exactly when the result of copying the selection changes: the
//! names the entries get at the destination, their types, permission bits and
//! contents. Integers are little-endian; `str(x)` is `u64(len) ‖ bytes`.
//!
//! ```text
//! "rbuild-context-v1\0"
//! u64(number of sources)
//! for each source, in the given order:
//!   "S" u64(number of matches)
//!   for each match, in match order:
//!     a directory:  "D" u64(number of entries) entry…   (the directory itself
//!                   first, relative path "", then everything selected below it)
//!     a file:       "F" entry                            (relative path = the
//!                   matched name's last component)
//! entry:
//!   type      "d" | "f" | "l"
//!   u32(mode & 0o7777)   permission bits incl. setuid/setgid/sticky
//!                        (0 for symlinks, whose bits mean nothing on Linux)
//!   str(relative path)   for entries below a directory match: the path below
//!                        that directory, `/`-separated
//!   file:     sha256 of the content (32 bytes)
//!   symlink:  str(target text, as read by readlink)
//! ```
//!
//! Entries of a directory match come in walk order: depth first, a directory
//! before its entries, names sorted bytewise within each directory.
//!
//! Deliberately **not** included: the source spelling (`./a`, `/a` and `a*`
//! selecting the same file give the same digest), the name of a matched
//! directory (COPY copies its contents, not the directory), the context root's
//! location, owners, mtimes/ctimes, inode and device numbers, and sizes (the
//! content hash covers them). A matched symlink is followed, so the content of
//! its target is hashed under the symlink's name, which is the name the copy
//! gets.
//!
//! # Metadata cache
//!
//! File hashes are remembered under `(path, size, mtime, ctime, inode, device,
//! mode)`; a file whose stamp is unchanged is not read again. Files modified
//! within a second of being hashed are trusted only for the current session
//! (a later write in the same timestamp tick could go unnoticed), see
//! [`BuildContext::save_meta_cache`].

mod glob;
mod hash;
mod meta;
mod resolve;
mod walk;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::ignore::{read_ignore_file, IgnoreError, IgnoreMatcher};
use meta::{MetaCache, Stamp};

/// Why a context could not be opened or a selection could not be made.
#[derive(Debug)]
pub enum ContextError {
    /// A source without wildcards names nothing in the (`.dockerignore`
    /// filtered) context. `source` is the cleaned path with a leading `/`.
    NotFound {
        /// The cleaned source path, e.g. `/x`.
        source: String,
    },
    /// A wildcard source matched nothing.
    NoMatch {
        /// The cleaned pattern, e.g. `/*.txt`.
        pattern: String,
    },
    /// The source (or a symlink it goes through) leads outside the context.
    Escapes {
        /// The source as given.
        source: String,
    },
    /// A file or directory could not be read.
    Io {
        /// The absolute path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A `.dockerignore` or `--exclude` pattern is invalid.
    Ignore(IgnoreError),
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextError::NotFound { source } => write!(f, "{source:?}: not found"),
            ContextError::NoMatch { pattern } => write!(
                f,
                "{pattern:?}: not found (no file in the build context matches the pattern)"
            ),
            ContextError::Escapes { source } => {
                write!(f, "{source:?}: path is outside the build context")
            }
            ContextError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ContextError::Ignore(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ContextError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ContextError::Io { source, .. } => Some(source),
            ContextError::Ignore(e) => Some(e),
            _ => None,
        }
    }
}

impl From<IgnoreError> for ContextError {
    fn from(e: IgnoreError) -> Self {
        ContextError::Ignore(e)
    }
}

/// The type of a selected entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// One selected file, directory or symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Context-relative path of the entry as it is read (`.` for the root). For
    /// a matched symlink that was followed, this is the target's path.
    pub path: String,
    pub kind: FileKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes as `lstat` reported it.
    pub size: u64,
    /// The target text of a symlink.
    pub link_target: Option<String>,
    /// Lowercase hex sha256 of a regular file's content.
    pub sha256: Option<String>,
}

/// What one source selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    /// The source as given.
    pub source: String,
    /// Context-relative matched paths (`.` for the root), in copy order: walk
    /// order, names sorted bytewise within each directory. For a source without
    /// wildcards, the single cleaned path.
    pub paths: Vec<String>,
    /// For each of `paths`, the context-relative path it resolves to once a
    /// final symlink is followed (the same path when it is no symlink). The
    /// entries read for `paths[i]` are at and below `resolved[i]`.
    pub resolved: Vec<String>,
}

/// The result of [`BuildContext::select`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// `sha256:<hex>`; see the module documentation for what goes in.
    pub digest: String,
    pub sources: Vec<SourceMatch>,
    /// Every selected entry once, sorted by `path` (bytewise).
    pub files: Vec<FileEntry>,
}

/// One selected entry while a selection is being made.
#[derive(Debug)]
pub(crate) struct Node {
    /// Context-relative path (`.` for the root).
    path: String,
    /// `path[rel_start..]` is the path relative to the matched directory.
    rel_start: usize,
    kind: FileKind,
    stamp: Stamp,
    link_target: Option<String>,
    sha256: Option<[u8; 32]>,
}

impl Node {
    fn rel(&self) -> &str {
        &self.path[self.rel_start..]
    }
}

/// One match of a source.
#[derive(Debug)]
pub(crate) struct Matched {
    /// The matched context path, before following a final symlink.
    path: String,
    /// Where it resolves to.
    resolved: String,
    is_dir: bool,
    /// For a directory, the directory itself then everything selected below;
    /// for a file, the file.
    nodes: Vec<Node>,
}

/// An opened build context directory.
#[derive(Debug)]
pub struct BuildContext {
    root: PathBuf,
    ignore: IgnoreMatcher,
    has_ignore: bool,
    meta_cache_file: Option<PathBuf>,
    cache: Mutex<MetaCache>,
    files_hashed: AtomicU64,
}

impl BuildContext {
    /// Opens the context at `dir`.
    ///
    /// `dockerfile`: the Dockerfile path; `<Dockerfile>.dockerignore` next to it
    /// takes precedence over `<dir>/.dockerignore` (BuildKit's rule).
    /// `meta_cache`: a file where file hashes are remembered between builds
    /// (missing or damaged files are treated as empty).
    pub fn open(
        dir: &Path,
        dockerfile: Option<&Path>,
        meta_cache: Option<PathBuf>,
    ) -> Result<BuildContext, ContextError> {
        let root = std::fs::canonicalize(dir).map_err(|source| ContextError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if !root.is_dir() {
            return Err(ContextError::Io {
                path: root,
                source: io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }
        let mut candidates = Vec::new();
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_owned();
            name.push(".dockerignore");
            candidates.push(PathBuf::from(name));
        }
        candidates.push(root.join(".dockerignore"));
        let mut patterns = Vec::new();
        for file in candidates {
            match std::fs::read(&file) {
                Ok(bytes) => {
                    patterns = read_ignore_file(&String::from_utf8_lossy(&bytes));
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ContextError::Io { path: file, source }),
            }
        }
        let ignore = IgnoreMatcher::new(&patterns)?;
        let has_ignore = ignore.patterns().next().is_some();
        let cache = match &meta_cache {
            Some(file) => MetaCache::load(file, &root),
            None => MetaCache::default(),
        };
        Ok(BuildContext {
            root,
            ignore,
            has_ignore,
            meta_cache_file: meta_cache,
            cache: Mutex::new(cache),
            files_hashed: AtomicU64::new(0),
        })
    }

    /// The context root (canonicalized).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What COPY/ADD `sources` select (context-relative; wildcards `*?[...]`
    /// allowed; a leading `/` or `./` means the context root), minus
    /// `.dockerignore`'d paths and `excludes` (COPY `--exclude` patterns, same
    /// syntax as `.dockerignore` patterns, matched relative to each matched
    /// directory).
    pub fn select(
        &self,
        sources: &[String],
        excludes: &[String],
    ) -> Result<Selection, ContextError> {
        let exclude = IgnoreMatcher::new(excludes)?;
        let mut groups: Vec<Vec<Matched>> = Vec::with_capacity(sources.len());
        for source in sources {
            groups.push(self.select_source(source, &exclude)?);
        }
        self.hash_contents(&mut groups)?;
        let digest = selection_digest(&groups);

        let sources = sources
            .iter()
            .zip(&groups)
            .map(|(source, matches)| SourceMatch {
                source: source.clone(),
                paths: matches.iter().map(|m| m.path.clone()).collect(),
                resolved: matches.iter().map(|m| m.resolved.clone()).collect(),
            })
            .collect();
        let mut all: Vec<&Node> = groups
            .iter()
            .flatten()
            .flat_map(|m| m.nodes.iter())
            .collect();
        all.sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        all.dedup_by(|a, b| a.path == b.path);
        let files = all
            .into_iter()
            .map(|n| FileEntry {
                path: n.path.clone(),
                kind: n.kind,
                mode: if n.kind == FileKind::Symlink {
                    0o777
                } else {
                    n.stamp.mode & 0o7777
                },
                size: n.stamp.size,
                link_target: n.link_target.clone(),
                sha256: n.sha256.map(hex::encode),
            })
            .collect();
        Ok(Selection {
            digest,
            sources,
            files,
        })
    }

    /// Persists the metadata cache (written to a temporary file, then renamed
    /// into place). Hashes of files changed within a second before they were
    /// hashed are left out. A no-op without a cache file.
    pub fn save_meta_cache(&self) -> Result<(), ContextError> {
        let Some(file) = &self.meta_cache_file else {
            return Ok(());
        };
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .save(file, &self.root)
            .map_err(|source| ContextError::Io {
                path: file.clone(),
                source,
            })
    }

    /// How many files' contents this context has read so far (for tests and
    /// benchmarks of the metadata cache).
    #[doc(hidden)]
    pub fn files_hashed(&self) -> u64 {
        self.files_hashed.load(Ordering::Relaxed)
    }

    /// Fills `sha256` of every file node: from the metadata cache when the
    /// stamp is unchanged, else by reading the file (each distinct path once).
    fn hash_contents(&self, groups: &mut [Vec<Matched>]) -> Result<(), ContextError> {
        // (group, match, node) of every file node, grouped by path.
        let mut refs: Vec<(usize, usize, usize)> = Vec::new();
        for (g, matches) in groups.iter().enumerate() {
            for (m, matched) in matches.iter().enumerate() {
                for (n, node) in matched.nodes.iter().enumerate() {
                    if node.kind == FileKind::File {
                        refs.push((g, m, n));
                    }
                }
            }
        }
        if refs.is_empty() {
            return Ok(());
        }
        let node_at = |&(g, m, n): &(usize, usize, usize)| &groups[g][m].nodes[n];
        // Paths are unique within one match; only several matches can overlap.
        let match_count: usize = groups.iter().map(Vec::len).sum();
        if match_count > 1 {
            refs.sort_by(|a, b| node_at(a).path.cmp(&node_at(b).path));
        }
        // Start of each run of equal paths.
        let mut starts: Vec<usize> = Vec::with_capacity(refs.len());
        for i in 0..refs.len() {
            if i == 0 || node_at(&refs[i]).path != node_at(&refs[i - 1]).path {
                starts.push(i);
            }
        }

        let started_ns = now_ns();
        let mut shas: Vec<[u8; 32]> = vec![[0; 32]; starts.len()];
        let mut jobs = Vec::new();
        let mut job_slot = Vec::new();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            for (slot, &start) in starts.iter().enumerate() {
                let node = node_at(&refs[start]);
                match cache.lookup(&node.path, &node.stamp) {
                    Some(sha) => shas[slot] = sha,
                    None => {
                        jobs.push(hash::Job {
                            path: &node.path,
                            stamp: node.stamp,
                        });
                        job_slot.push(slot);
                    }
                }
            }
        }
        if !jobs.is_empty() {
            let results = hash::hash_all(&self.root, &jobs, &self.files_hashed);
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            for ((job, result), &slot) in jobs.iter().zip(results).zip(&job_slot) {
                let hashed = result.map_err(|source| ContextError::Io {
                    path: self.root.join(job.path),
                    source,
                })?;
                if hashed.stable {
                    cache.insert(
                        job.path,
                        job.stamp,
                        hashed.sha256,
                        job.stamp.is_racy(started_ns),
                    );
                }
                shas[slot] = hashed.sha256;
            }
        }

        for (slot, &start) in starts.iter().enumerate() {
            let end = starts.get(slot + 1).copied().unwrap_or(refs.len());
            for &(g, m, n) in &refs[start..end] {
                groups[g][m].nodes[n].sha256 = Some(shas[slot]);
            }
        }
        Ok(())
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The selection digest; the format is documented on the module.
fn selection_digest(groups: &[Vec<Matched>]) -> String {
    let mut h = Sha256::new();
    h.update(b"rbuild-context-v1\0");
    h.update((groups.len() as u64).to_le_bytes());
    for matches in groups {
        h.update(b"S");
        h.update((matches.len() as u64).to_le_bytes());
        for m in matches {
            if m.is_dir {
                h.update(b"D");
                h.update((m.nodes.len() as u64).to_le_bytes());
                for node in &m.nodes {
                    hash_entry(&mut h, node, node.rel());
                }
            } else {
                h.update(b"F");
                let name = m.path.rsplit('/').next().unwrap_or(&m.path);
                hash_entry(&mut h, &m.nodes[0], name);
            }
        }
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn hash_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

fn hash_entry(h: &mut Sha256, node: &Node, rel: &str) {
    match node.kind {
        FileKind::Dir => {
            h.update(b"d");
            h.update((node.stamp.mode & 0o7777).to_le_bytes());
            hash_str(h, rel);
        }
        FileKind::File => {
            h.update(b"f");
            h.update((node.stamp.mode & 0o7777).to_le_bytes());
            hash_str(h, rel);
            h.update(node.sha256.expect("file contents are hashed first"));
        }
        FileKind::Symlink => {
            h.update(b"l");
            h.update(0u32.to_le_bytes());
            hash_str(h, rel);
            hash_str(h, node.link_target.as_deref().unwrap_or(""));
        }
    }
}
