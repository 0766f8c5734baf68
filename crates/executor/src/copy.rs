//! COPY, ADD and WORKDIR, run on a blocking thread with a private mount
//! namespace (see [`crate::fsops`]): the parent layers and a fresh snapshot are
//! overlaid, the files are written through the overlay, and the snapshot's
//! upper dir becomes the layer.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbuild_planner::context::{BuildContext, FileKind};
use rbuild_planner::graph::{CopyFrom, CopyOp, MkdirOp};

use crate::error::ExecError;
use crate::fsops::{self, glob_match, has_wildcards, CopyAttrs, Owner, RootDir};

pub(crate) struct CopyJob {
    pub op: CopyOp,
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub context: Option<Arc<BuildContext>>,
    /// The source stage's or image's layers (topmost first) for `--from`.
    pub source_lowers: Option<Vec<PathBuf>>,
    /// ADD URL sources already downloaded: URL → temp file.
    pub downloads: HashMap<String, PathBuf>,
    pub scratch: tempfile::TempDir,
}

pub(crate) struct MkdirJob {
    pub op: MkdirOp,
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub scratch: tempfile::TempDir,
}

/// Threads copying file contents in parallel (this machine class has two cores).
const COPY_THREADS: usize = 2;

fn io_err(what: &str) -> impl Fn(io::Error) -> ExecError + '_ {
    move |e| ExecError::io(what.to_string(), e)
}

/// Resolves a `--chown` / USER value to ids through the rootfs's own
/// passwd and group files. A user given without a group uses the same
/// number as its gid, as Docker documents for `--chown`.
fn resolve_owner(root: &RootDir, spec: &str) -> Result<Owner, ExecError> {
    let passwd = root
        .read_file("/etc/passwd", 1 << 20)
        .map_err(io_err("reading /etc/passwd"))?;
    let group = root
        .read_file("/etc/group", 1 << 20)
        .map_err(io_err("reading /etc/group"))?;
    let user = crate::sandbox::resolve_user(spec, passwd.as_deref(), group.as_deref())
        .map_err(ExecError::invalid)?;
    let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
    let gid = if g.is_empty() && u.parse::<u32>().is_ok() {
        user.uid
    } else {
        user.gid
    };
    Ok(Owner { uid: user.uid, gid })
}

fn parse_chmod(s: &str) -> Result<u32, ExecError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            ExecError::invalid(format!(
                "invalid --chmod value {s:?}: expected an octal mode such as 0755"
            ))
        })
}

impl MkdirJob {
    pub fn run(self) -> Result<(), ExecError> {
        let mnt = self.scratch.path().join("mnt");
        let empty = self.scratch.path().join("empty");
        for d in [&mnt, &empty] {
            std::fs::create_dir_all(d).map_err(io_err("creating mount dirs"))?;
        }
        fsops::with_private_mounts(|| {
            fsops::mount_overlay(&self.lowers, Some((&self.upper, &self.work)), &mnt, &empty)?;
            let root = RootDir::open(&mnt)?;
            let owner = match &self.op.user {
                Some(u) => resolve_owner(&root, u).map_err(|e| io::Error::other(e.to_string()))?,
                None => Owner { uid: 0, gid: 0 },
            };
            root.mkdir_all(&self.op.path, self.op.mode, owner)?;
            Ok(())
        })
        .map_err(io_err("WORKDIR"))
    }
}

/// The conditions of [`CopyJob::stageable`] that the op alone decides.
pub(crate) fn may_stage(op: &CopyOp) -> bool {
    let numeric_owner = |c: &str| {
        let (u, g) = c.split_once(':').unwrap_or((c, "0"));
        u.parse::<u32>().is_ok() && g.parse::<u32>().is_ok()
    };
    matches!(op.from, CopyFrom::Context { .. })
        && !op.add
        && !op.parents
        && op.inline.is_empty()
        && !op.sources.iter().any(|s| is_url(s))
        && op.chown.as_deref().is_none_or(numeric_owner)
}

/// Decides whether the staged COPY layer in `staged` (see
/// [`CopyJob::run_staged`]) is exactly what the COPY into `dest` gives on top
/// of `lowers` (topmost first), and if so makes it so: directories on the
/// way to `dest` that exist below get their owner and mode from there (and
/// their times, above the one the copy adds entries to), as an overlay
/// copy-up would have given them. It is not when anything on the way is not
/// a directory below, or when `dest` exists below and already has one of
/// the names the copy makes: then the caller discards the staged layer and
/// copies through the overlay.
pub(crate) fn adopt_staged(
    lowers: &[PathBuf],
    staged: &Path,
    dest: &str,
) -> Result<bool, ExecError> {
    use std::os::unix::fs::MetadataExt;
    let read = io_err("reading the layers below");
    let parts: Vec<&str> = dest
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Ok(false);
    }
    // (path below the root, metadata below) of each existing directory.
    let mut existing: Vec<(String, std::fs::Metadata)> = Vec::new();
    let mut dir = if lowers.is_empty() {
        None
    } else {
        crate::merged::open_dir(lowers, Path::new("/")).map_err(&read)?
    };
    let mut rel = String::new();
    for part in &parts {
        let Some(d) = &dir else { break };
        match d.lookup(std::ffi::OsStr::new(part)).map_err(&read)? {
            crate::merged::Lookup::Missing => {
                dir = None;
            }
            crate::merged::Lookup::Dir(sub, meta) => {
                rel = if rel.is_empty() {
                    part.to_string()
                } else {
                    format!("{rel}/{part}")
                };
                existing.push((rel.clone(), meta));
                dir = Some(sub);
            }
            crate::merged::Lookup::Other => return Ok(false),
        }
    }
    if let Some(d) = &dir {
        // `dest` itself exists below: the copy merges into it, which is only
        // the staged result when none of its names are there yet.
        let made = staged.join(parts.join("/"));
        let mut names = std::fs::read_dir(&made)
            .map_err(io_err("reading the staged layer"))?
            .peekable();
        if names.peek().is_none() {
            // Nothing copied: through the overlay that makes no layer at all.
            return Ok(false);
        }
        for e in names {
            let name = e.map_err(io_err("reading the staged layer"))?.file_name();
            if !matches!(
                d.lookup(&name).map_err(&read)?,
                crate::merged::Lookup::Missing
            ) {
                return Ok(false);
            }
        }
    }
    let deepest = existing.len();
    for (i, (rel, meta)) in existing.iter().enumerate() {
        let path = staged.join(rel);
        std::os::unix::fs::lchown(&path, Some(meta.uid()), Some(meta.gid()))
            .map_err(io_err("copying up a directory"))?;
        std::fs::set_permissions(
            &path,
            std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
        )
        .map_err(io_err("copying up a directory"))?;
        // The directory the copy creates entries in keeps the time that
        // gave it; the ones above keep theirs from below.
        if i + 1 < deepest {
            let times = std::fs::FileTimes::new()
                .set_accessed(meta.accessed().map_err(&read)?)
                .set_modified(meta.modified().map_err(&read)?);
            std::fs::File::open(&path)
                .and_then(|f| f.set_times(times))
                .map_err(io_err("copying up a directory"))?;
        }
    }
    Ok(true)
}

/// One thing to copy: a host path (trusted: the context or a mounted view)
/// and the name it gets.
struct Item {
    path: PathBuf,
    name: String,
    is_dir: bool,
    /// Keeps `path` (`/proc/self/fd/N`) valid.
    _fd: OwnedFd,
}

impl CopyJob {
    pub fn run(self) -> Result<(), ExecError> {
        let mnt = self.scratch.path().join("mnt");
        let src = self.scratch.path().join("src");
        let empty = self.scratch.path().join("empty");
        for d in [&mnt, &src, &empty] {
            std::fs::create_dir_all(d).map_err(io_err("creating mount dirs"))?;
        }
        let result = fsops::with_private_mounts(|| {
            fsops::mount_overlay(&self.lowers, Some((&self.upper, &self.work)), &mnt, &empty)?;
            if let Some(lowers) = &self.source_lowers {
                fsops::mount_overlay(lowers, None, &src, &empty)?;
            }
            self.copy_into(&RootDir::open(&mnt)?, &src, &mnt)
                .map_err(|e| io::Error::other(e.to_string()))
        });
        result.map_err(|e| ExecError::invalid(e.to_string()))
    }

    /// Whether this COPY can be staged: run before the filesystem below it
    /// exists, straight into its empty snapshot dir, and adopted later if
    /// [`adopt_staged`] finds that the filesystem below does not change the
    /// result. True for COPY (not ADD) of build-context files, without
    /// `--parents`, with no `--chown` or a numeric one (a name needs the
    /// image's /etc/passwd), whose destination is a directory whatever is
    /// below: it ends in `/`, or every source is a directory.
    pub fn stageable(&self) -> bool {
        let op = &self.op;
        let Some(ctx) = &self.context else {
            return false;
        };
        if !may_stage(op) {
            return false;
        }
        if op.dest.ends_with('/') {
            return true;
        }
        let Ok(selection) = ctx.select(&op.sources, &op.exclude) else {
            return false;
        };
        selection.sources.iter().all(|m| {
            m.resolved.iter().all(|r| {
                selection
                    .files
                    .iter()
                    .any(|f| &f.path == r && f.kind == FileKind::Dir)
            })
        })
    }

    /// Runs a [`CopyJob::stageable`] copy into its snapshot dir as if that
    /// were the whole filesystem: no mounts, nothing below.
    pub fn run_staged(self) -> Result<(), ExecError> {
        let root = RootDir::open(&self.upper).map_err(io_err("opening the snapshot"))?;
        self.copy_into(&root, &self.upper, &self.upper)
    }

    fn copy_into(&self, root: &RootDir, src_view: &Path, mnt: &Path) -> Result<(), ExecError> {
        let op = &self.op;
        let owner = match &op.chown {
            Some(c) => Some(resolve_owner(root, c)?),
            None => None,
        };
        let mode = op.chmod.as_deref().map(parse_chmod).transpose()?;
        let attrs = CopyAttrs {
            owner,
            mode,
            preserve_owner: matches!(op.from, CopyFrom::Filesystem) && owner.is_none(),
        };
        let dir_owner = owner.unwrap_or(Owner { uid: 0, gid: 0 });
        let count = op.sources.len() + op.inline.len();
        let dest_slash = op.dest.ends_with('/');
        if count > 1 && !dest_slash && !root.is_dir(&op.dest) {
            return Err(ExecError::invalid(
                "When using COPY with more than one source file, the destination must be a directory and end with a /",
            ));
        }
        // As in BuildKit, a wildcard matching several files also makes the
        // destination a directory; matching one, it names the file.
        let dest_is_dir = dest_slash || count > 1 || root.is_dir(&op.dest);

        // Context sources: copy exactly what the selection lists, so that
        // .dockerignore'd files inside a copied directory stay out.
        if let (CopyFrom::Context { .. }, Some(ctx)) = (&op.from, &self.context) {
            let local: Vec<String> = op.sources.iter().filter(|s| !is_url(s)).cloned().collect();
            let selection = ctx
                .select(&local, &op.exclude)
                .map_err(|e| ExecError::invalid(e.to_string()))?;
            for m in &selection.sources {
                let dest_is_dir = dest_is_dir || m.paths.len() > 1;
                for (path, resolved) in m.paths.iter().zip(&m.resolved) {
                    let entry = selection.files.iter().find(|f| &f.path == resolved);
                    let is_dir = entry.is_some_and(|e| e.kind == FileKind::Dir);
                    let base = if is_dir || dest_is_dir {
                        self.dest_dir(root, path, dir_owner)?
                    } else {
                        let parent = parent_of(&op.dest);
                        root.mkdir_all(&parent, 0o755, dir_owner)
                            .map_err(io_err("creating the destination"))?
                    };
                    if is_dir {
                        let prefix = if resolved == "." {
                            String::new()
                        } else {
                            format!("{resolved}/")
                        };
                        // Directories come before their contents (the selection
                        // is sorted), so each file's parent is already open here.
                        let mut dirs: HashMap<String, OwnedFd> = HashMap::new();
                        let mut files = Vec::new();
                        let dest_root = self.dest_path(path);
                        for f in selection
                            .files
                            .iter()
                            .filter(|f| f.path.starts_with(&prefix) && &f.path != resolved)
                        {
                            let rel = &f.path[prefix.len()..];
                            let (parent_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
                            let host = ctx.root().join(&f.path);
                            let meta = host
                                .symlink_metadata()
                                .map_err(io_err("reading the context"))?;
                            let parent = match dirs.get(parent_rel) {
                                Some(d) => d,
                                None if parent_rel.is_empty() => &base,
                                None => {
                                    let d = root
                                        .mkdir_all(
                                            &format!("{dest_root}/{parent_rel}"),
                                            0o755,
                                            dir_owner,
                                        )
                                        .map_err(io_err("creating directories"))?;
                                    dirs.entry(parent_rel.to_string()).or_insert(d)
                                }
                            };
                            if meta.is_dir() {
                                // Directories get their own mode; contents follow.
                                let d = fsops::mkdir_in(
                                    parent,
                                    name,
                                    meta_mode(&meta, mode),
                                    owner.unwrap_or(dir_owner),
                                )
                                .map_err(io_err("creating directories"))?;
                                let d = match d {
                                    Some(d) => d,
                                    // A symlink in the image: follow it inside the root.
                                    None => root
                                        .mkdir_all(
                                            &format!("{dest_root}/{rel}"),
                                            meta_mode(&meta, mode),
                                            owner.unwrap_or(dir_owner),
                                        )
                                        .map_err(io_err("creating directories"))?,
                                };
                                dirs.insert(rel.to_string(), d);
                                continue;
                            }
                            files.push((parent_rel.to_string(), host, meta, name.to_string()));
                        }
                        // File contents are copied on two threads: with the
                        // directories in place, files do not depend on each other.
                        let dirs = &dirs;
                        let base = &base;
                        let files = &files;
                        let parent_of = |key: &str| dirs.get(key).unwrap_or(base);
                        std::thread::scope(|scope| {
                            let workers: Vec<_> = (0..COPY_THREADS)
                                .map(|w| {
                                    scope.spawn(move || -> io::Result<()> {
                                        for (parent, host, meta, name) in
                                            files.iter().skip(w).step_by(COPY_THREADS)
                                        {
                                            fsops::copy_entry(
                                                host,
                                                meta,
                                                parent_of(parent),
                                                name.as_ref(),
                                                attrs,
                                            )?;
                                        }
                                        Ok(())
                                    })
                                })
                                .collect();
                            workers.into_iter().try_for_each(|h| {
                                h.join().unwrap_or_else(|_| {
                                    Err(io::Error::other("copy thread panicked"))
                                })
                            })
                        })
                        .map_err(io_err("copying"))?;
                    } else {
                        let host = ctx.root().join(resolved);
                        let meta = host.metadata().map_err(io_err("reading the context"))?;
                        let name = if dest_is_dir {
                            base_name(path)
                        } else {
                            base_name(&op.dest)
                        };
                        self.copy_file(&host, &meta, &base, &name, attrs)?;
                    }
                }
            }
        }

        // Another stage's or an image's files.
        let mut linked_names = std::collections::HashSet::new();
        if matches!(op.from, CopyFrom::Filesystem) {
            let view = RootDir::open(src_view).map_err(io_err("opening the source"))?;
            for source in &op.sources {
                let items = self.fs_items(&view, source)?;
                if items.is_empty() {
                    return Err(ExecError::invalid(format!(
                        "failed to compute cache key: \"{source}\": not found"
                    )));
                }
                let dest_is_dir = dest_is_dir || items.len() > 1;
                // Linking a whole directory writes into the upper dir behind
                // the overlay's back, so only when no other source of this
                // COPY can write to the same names.
                let may_link_dir = attrs.owner.is_none()
                    && attrs.mode.is_none()
                    && !op.add
                    && op.sources.len() == 1
                    && items.len() == 1;
                for item in items {
                    let meta = item.path.metadata().map_err(io_err("reading the source"))?;
                    if item.is_dir {
                        let base = self.dest_dir(root, &item.name, dir_owner)?;
                        if may_link_dir
                            && self.link_dir_contents(src_view, &item, &base, mnt, attrs)?
                        {
                            continue;
                        }
                        let mut children: Vec<_> = std::fs::read_dir(&item.path)
                            .map_err(io_err("reading the source"))?
                            .collect::<Result<_, _>>()
                            .map_err(io_err("reading the source"))?;
                        children.sort_by_key(|e| e.file_name());
                        for child in children {
                            let cmeta = child
                                .path()
                                .symlink_metadata()
                                .map_err(io_err("reading the source"))?;
                            fsops::copy_entry(
                                &child.path(),
                                &cmeta,
                                &base,
                                &child.file_name(),
                                attrs,
                            )
                            .map_err(io_err("copying"))?;
                        }
                    } else {
                        let (dir, name) = if dest_is_dir {
                            (
                                self.dest_dir(root, &item.name, dir_owner)?,
                                item.name.clone(),
                            )
                        } else {
                            let parent = parent_of(&op.dest);
                            (
                                root.mkdir_all(&parent, 0o755, dir_owner)
                                    .map_err(io_err("creating the destination"))?,
                                base_name(&op.dest),
                            )
                        };
                        let linked = attrs.owner.is_none()
                            && attrs.mode.is_none()
                            && !op.add
                            && self
                                .link_from_snapshot(
                                    src_view,
                                    &item,
                                    &meta,
                                    &dir,
                                    &name,
                                    mnt,
                                    &mut linked_names,
                                )
                                .unwrap_or(false);
                        if !linked {
                            self.copy_file(&item.path, &meta, &dir, &name, attrs)?;
                        }
                    }
                }
            }
        }

        // ADD URLs.
        for url in op.sources.iter().filter(|s| is_url(s)) {
            let file = self
                .downloads
                .get(url)
                .ok_or_else(|| ExecError::invalid(format!("{url} was not downloaded")))?;
            let (dir, name) = if dest_is_dir {
                let name = url_file_name(url);
                (
                    root.mkdir_all(&op.dest, 0o755, dir_owner)
                        .map_err(io_err("creating the destination"))?,
                    name,
                )
            } else {
                (
                    root.mkdir_all(&parent_of(&op.dest), 0o755, dir_owner)
                        .map_err(io_err("creating the destination"))?,
                    base_name(&op.dest),
                )
            };
            let mut f = std::fs::File::open(file).map_err(io_err("reading a download"))?;
            fsops::write_file(&dir, &name, &mut f, mode.unwrap_or(0o600), dir_owner)
                .map_err(io_err("writing a download"))?;
        }

        // Heredoc sources.
        for inline in &op.inline {
            let (dir, name) = if dest_is_dir {
                (
                    root.mkdir_all(&op.dest, 0o755, dir_owner)
                        .map_err(io_err("creating the destination"))?,
                    inline.path.clone(),
                )
            } else {
                (
                    root.mkdir_all(&parent_of(&op.dest), 0o755, dir_owner)
                        .map_err(io_err("creating the destination"))?,
                    base_name(&op.dest),
                )
            };
            fsops::write_file(
                &dir,
                &name,
                &mut inline.content.as_bytes(),
                mode.unwrap_or(inline.mode),
                dir_owner,
            )
            .map_err(io_err("writing a heredoc file"))?;
        }
        Ok(())
    }

    /// The destination directory for a source (with `--parents`, the source's
    /// own parent directories are kept below it).
    fn dest_dir(
        &self,
        root: &RootDir,
        source_path: &str,
        owner: Owner,
    ) -> Result<OwnedFd, ExecError> {
        let path = self.dest_path(source_path);
        root.mkdir_all(&path, 0o755, owner)
            .map_err(io_err("creating the destination"))
    }

    fn dest_path(&self, source_path: &str) -> String {
        let dest = self.op.dest.trim_end_matches('/');
        let dest = if dest.is_empty() { "/" } else { dest };
        if self.op.parents {
            let parent = parent_of(source_path.trim_start_matches("./").trim_start_matches('/'));
            if parent != "/" && !parent.is_empty() {
                return format!("{dest}/{}", parent.trim_start_matches('/'));
            }
        }
        dest.to_string()
    }

    /// Copies one file; ADD unpacks local tar archives instead.
    fn copy_file(
        &self,
        host: &Path,
        meta: &std::fs::Metadata,
        dir: &OwnedFd,
        name: &str,
        attrs: CopyAttrs,
    ) -> Result<(), ExecError> {
        if self.op.add && self.op.unpack != Some(false) && meta.is_file() {
            if let Some(reader) = archive_reader(host)? {
                return crate::archive::extract(reader, dir, attrs.owner)
                    .map_err(io_err("unpacking an archive"));
            }
        }
        fsops::copy_entry(host, meta, dir, name.as_ref(), attrs).map_err(io_err("copying"))
    }

    /// Puts a regular file from another stage into the new layer as a
    /// hardlink to the source snapshot's inode instead of copying its bytes.
    ///
    /// Snapshots are immutable once made (later steps change files by
    /// overlay copy-up, never in place), and COPY --from without --chown or
    /// --chmod keeps mode, owner and times, so a link gives the same layer.
    /// The link goes into the new snapshot's upper dir directly (a link
    /// cannot cross the overlay mount), so it is only taken when nothing can
    /// disagree: the file's backing inode is found unambiguously in the
    /// source layers, nothing exists at the destination name, and the
    /// destination directory is (or, after a copy-up, becomes) a real
    /// directory of the upper dir. Any doubt returns `Ok(false)`: copy.
    #[allow(clippy::too_many_arguments)]
    fn link_from_snapshot(
        &self,
        src_view: &Path,
        item: &Item,
        meta: &std::fs::Metadata,
        dir: &OwnedFd,
        name: &str,
        mnt: &Path,
        linked: &mut std::collections::HashSet<(PathBuf, String)>,
    ) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let Some(lowers) = &self.source_lowers else {
            return Ok(false);
        };
        if !meta.is_file() || name.contains('/') {
            return Ok(false);
        }
        let Ok(rel) = std::fs::read_link(&item.path)?
            .strip_prefix(src_view)
            .map(Path::to_path_buf)
        else {
            return Ok(false);
        };
        let Some(backing) = crate::merged::open_file(lowers, &rel)? else {
            return Ok(false);
        };
        let b = nix::sys::stat::fstat(&backing).map_err(io::Error::from)?;
        if (
            b.st_size as u64,
            b.st_mode,
            b.st_uid,
            b.st_gid,
            b.st_mtime,
            b.st_mtime_nsec,
        ) != (
            meta.size(),
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.mtime(),
            meta.mtime_nsec(),
        ) {
            return Ok(false);
        }
        let Ok(drel) = std::fs::read_link(fsops::fd_path(dir))?
            .strip_prefix(mnt)
            .map(Path::to_path_buf)
        else {
            return Ok(false);
        };
        let key = (drel.clone(), name.to_string());
        if !linked.contains(&key) && fsops::exists_at(dir, name)? {
            return Ok(false);
        }
        let Some(upper_dir) = fsops::upper_dir(&self.upper, &drel, dir)? else {
            return Ok(false);
        };
        if linked.contains(&key) {
            // A later source with the same name replaces the earlier link.
            fsops::unlink_at(&upper_dir, name)?;
        }
        if fsops::link_at(&backing, &upper_dir, name).is_err() {
            return Ok(false);
        }
        linked.insert(key);
        Ok(true)
    }

    /// Puts the contents of another stage's directory `item` into `base`
    /// (a directory of the overlay mount at `mnt`) by hardlinking, as
    /// [`CopyJob::link_from_snapshot`] does for one file: the source layers
    /// are read directly ([`crate::merged`]) and the new entries are made in
    /// the upper dir. A name that already exists in `base` is copied through
    /// the overlay instead, which merges with or replaces what is there.
    /// `Ok(false)` (nothing done) when the source or the destination cannot
    /// be matched to real directories.
    fn link_dir_contents(
        &self,
        src_view: &Path,
        item: &Item,
        base: &OwnedFd,
        mnt: &Path,
        attrs: CopyAttrs,
    ) -> Result<bool, ExecError> {
        let Some(lowers) = &self.source_lowers else {
            return Ok(false);
        };
        let read = io_err("reading the source");
        let Ok(rel) = std::fs::read_link(&item.path)
            .map_err(&read)?
            .strip_prefix(src_view)
            .map(Path::to_path_buf)
        else {
            return Ok(false);
        };
        let Some(src) = crate::merged::open_dir(lowers, &rel).map_err(&read)? else {
            return Ok(false);
        };
        let Ok(drel) = std::fs::read_link(fsops::fd_path(base))
            .map_err(io_err("reading the destination"))?
            .strip_prefix(mnt)
            .map(Path::to_path_buf)
        else {
            return Ok(false);
        };
        let Some(upper) = fsops::upper_dir(&self.upper, &drel, base)
            .map_err(io_err("copying up the destination"))?
        else {
            return Ok(false);
        };
        for e in src.entries().map_err(&read)? {
            let exists =
                fsops::file_type_at(base, std::os::unix::ffi::OsStrExt::as_bytes(&*e.name))
                    .map_err(io_err("copying"))?
                    .is_some();
            if exists {
                let path = item.path.join(&e.name);
                let meta = path.symlink_metadata().map_err(&read)?;
                fsops::copy_entry(&path, &meta, base, &e.name, attrs).map_err(io_err("copying"))?;
            } else {
                src.link_entry(&e, &upper).map_err(io_err("linking"))?;
            }
        }
        Ok(true)
    }

    /// Sources in another stage's filesystem: a path (symlinks resolved inside
    /// that filesystem) or a wildcard in its last component.
    fn fs_items(&self, view: &RootDir, source: &str) -> Result<Vec<Item>, ExecError> {
        let (parent, last) = match source.trim_end_matches('/').rsplit_once('/') {
            Some((p, l)) => (if p.is_empty() { "/" } else { p }, l),
            None => ("/", source.trim_end_matches('/')),
        };
        if has_wildcards(parent) {
            return Err(ExecError::invalid(format!(
                "wildcards are only supported in the last path component of a --from source: {source:?}"
            )));
        }
        let names: Vec<String> = if has_wildcards(last) {
            let dir = match view.open_path(parent, libc::O_RDONLY | libc::O_DIRECTORY) {
                Ok(d) => d,
                Err(_) => return Ok(Vec::new()),
            };
            let mut names: Vec<String> = std::fs::read_dir(fsops::fd_path(&dir))
                .map_err(io_err("listing the source"))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| glob_match(last, n))
                .collect();
            names.sort();
            names
        } else {
            vec![last.to_string()]
        };
        let mut items = Vec::new();
        for name in names {
            let full = if last.is_empty() {
                parent.to_string()
            } else {
                format!("{}/{}", parent.trim_end_matches('/'), name)
            };
            match view.open_path(&full, libc::O_PATH) {
                Ok(fd) => {
                    let path = fsops::fd_path(&fd);
                    let is_dir = path.metadata().map(|m| m.is_dir()).unwrap_or(false);
                    let name = if name.is_empty() || name == "." {
                        "/".to_string()
                    } else {
                        name
                    };
                    items.push(Item {
                        path,
                        name,
                        is_dir,
                        _fd: fd,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(ExecError::io(format!("resolving {full}"), e)),
            }
        }
        Ok(items)
    }
}

fn meta_mode(meta: &std::fs::Metadata, chmod: Option<u32>) -> u32 {
    use std::os::unix::fs::MetadataExt;
    chmod.unwrap_or(meta.mode() & 0o7777)
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn parent_of(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((p, _)) => p.to_string(),
    }
}

fn base_name(path: &str) -> String {
    let p = path.trim_end_matches('/');
    p.rsplit('/').next().unwrap_or(p).to_string()
}

fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if name.is_empty() || name.contains(':') {
        "index.html".into()
    } else {
        name.to_string()
    }
}

/// A decompressing reader when `path` is a tar archive (plain, gzip or zstd).
fn archive_reader(path: &Path) -> Result<Option<Box<dyn Read>>, ExecError> {
    let mut f = std::fs::File::open(path).map_err(io_err("opening a source"))?;
    let mut head = [0u8; 512];
    let n = read_up_to(&mut f, &mut head).map_err(io_err("reading a source"))?;
    let head = &head[..n];
    let file = std::fs::File::open(path).map_err(io_err("opening a source"))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut gz = flate2::read::GzDecoder::new(file);
        let mut inner = [0u8; 512];
        let m = read_up_to(&mut gz, &mut inner).unwrap_or(0);
        if m >= 262 && &inner[257..262] == b"ustar" {
            let file = std::fs::File::open(path).map_err(io_err("opening a source"))?;
            return Ok(Some(Box::new(flate2::read::GzDecoder::new(file))));
        }
        return Ok(None);
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let dec = zstd::stream::read::Decoder::new(file).map_err(io_err("reading zstd"))?;
        return Ok(Some(Box::new(dec)));
    }
    if n >= 262 && &head[257..262] == b"ustar" {
        return Ok(Some(Box::new(file)));
    }
    Ok(None)
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Downloads ADD's URL sources (before the blocking copy starts), verifying
/// `--checksum` when given.
pub(crate) async fn download_urls(
    op: &CopyOp,
    root: &rbuild_cache::Root,
) -> Result<HashMap<String, PathBuf>, ExecError> {
    let mut out = HashMap::new();
    let urls: Vec<&String> = op.sources.iter().filter(|s| is_url(s)).collect();
    if urls.is_empty() {
        return Ok(out);
    }
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| ExecError::invalid(format!("HTTP client: {e}")))?;
    let dir = root.tmp_dir()?.keep();
    for url in urls {
        use futures_util::StreamExt;
        use sha2::Digest;
        use std::io::Write;
        let resp = client
            .get(url.as_str())
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| ExecError::invalid(format!("ADD {url}: {e}")))?;
        let path = dir.join(format!("dl-{}", out.len()));
        let mut file = std::fs::File::create(&path).map_err(io_err("creating a download"))?;
        let mut hasher = sha2::Sha256::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ExecError::invalid(format!("ADD {url}: {e}")))?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .map_err(io_err("writing a download"))?;
        }
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Some(want) = &op.checksum {
            if &got != want {
                return Err(ExecError::invalid(format!(
                    "ADD {url}: checksum mismatch: expected {want}, got {got}"
                )));
            }
        }
        out.insert(url.clone(), path);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::adopt_staged;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::path::Path;

    fn mode(p: &Path) -> u32 {
        p.metadata().unwrap().mode() & 0o7777
    }

    #[test]
    fn staged_copy_takes_the_metadata_of_directories_below() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, staged) = (tmp.path().join("lower"), tmp.path().join("staged"));
        fs::create_dir_all(lower.join("a/b/other")).unwrap();
        fs::set_permissions(lower.join("a"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(lower.join("a/b"), fs::Permissions::from_mode(0o750)).unwrap();
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        fs::File::open(lower.join("a"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        fs::create_dir_all(staged.join("a/b/c")).unwrap();
        fs::write(staged.join("a/b/c/f"), "new").unwrap();

        assert!(adopt_staged(std::slice::from_ref(&lower), &staged, "/a/b/c/").unwrap());
        assert_eq!(mode(&staged.join("a")), 0o700);
        assert_eq!(mode(&staged.join("a/b")), 0o750);
        assert_eq!(mode(&staged.join("a/b/c")), 0o755, "made by the copy");
        // /a keeps its time from below; /a/b got an entry, so it is "now".
        assert_eq!(staged.join("a").metadata().unwrap().mtime(), 1_000_000_000);
        assert!(staged.join("a/b").metadata().unwrap().mtime() > 1_000_000_000);
    }

    #[test]
    fn staged_copy_is_refused_when_below_would_change_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, staged) = (tmp.path().join("lower"), tmp.path().join("staged"));
        fs::create_dir_all(lower.join("real")).unwrap();
        symlink("real", lower.join("link")).unwrap();
        fs::create_dir_all(lower.join("data/sub")).unwrap();
        fs::write(lower.join("file"), "").unwrap();
        for d in ["link/x", "data/sub", "data/new", "file/x", "empty"] {
            fs::create_dir_all(staged.join(d)).unwrap();
        }
        let lowers = [lower];
        // Through a symlink, or a file, below: the copy would go elsewhere.
        assert!(!adopt_staged(&lowers, &staged, "/link/").unwrap());
        assert!(!adopt_staged(&lowers, &staged, "/file/x/").unwrap());
        // Into an existing dir that has one of the copied names: it merges.
        assert!(!adopt_staged(&lowers, &staged, "/data/").unwrap());
        // Nothing copied into an existing dir: no layer at all through the overlay.
        fs::create_dir_all(lowers[0].join("empty")).unwrap();
        assert!(!adopt_staged(&lowers, &staged, "/empty").unwrap());
        // Fresh names into an existing dir, or onto nothing, are fine.
        fs::remove_dir_all(staged.join("data/sub")).unwrap();
        assert!(adopt_staged(&lowers, &staged, "/data/").unwrap());
        assert!(adopt_staged(&[], &staged, "/link/").unwrap());
    }
}
