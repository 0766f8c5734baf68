//! The directory walk behind a directory source: which entries below it exist
//! in the (`.dockerignore`-filtered) context and survive `COPY --exclude`.
//!
//! Two filters apply, as in BuildKit:
//!
//! 1. `.dockerignore` decides what is in the context at all (BuildKit's context
//!    transfer). Patterns match context-relative paths. An ignored directory is
//!    still present when something below it is re-included by a `!` pattern
//!    (the transfer sends such parents along, with their own metadata).
//! 2. `--exclude` patterns match paths relative to the directory the source
//!    selected (BuildKit's copy matches them against the path below the copy
//!    source). An excluded directory is likewise still created when a `!`
//!    pattern re-includes something below it. The selected directory itself is
//!    never matched against `--exclude`.
//!
//! For an entry `e`: `present(e) = !ignored(e) || (dir(e) && any child present)`
//! and `selected(e) = present(e) && (!excluded(e) || (dir(e) && any child
//! selected))`. Subtrees are pruned as soon as no `!` pattern can bring anything
//! below them back ([`IgnoreMatcher::may_reinclude_below`]).
//!
//! Symlinks are never followed here: they are recorded with their target text.
//! Sockets, FIFOs and device nodes are not part of a build context and are
//! skipped.

use std::fs::{self, FileType, Metadata};
use std::io;
use std::path::PathBuf;

use super::meta::Stamp;
use super::{BuildContext, ContextError, FileKind, Node};
use crate::ignore::{IgnoreMatcher, ParentMatch};

/// Per-walk state that does not change while descending.
pub(super) struct Walk<'a> {
    pub ctx: &'a BuildContext,
    pub exclude: &'a IgnoreMatcher,
    pub use_exclude: bool,
    /// Length of the selected directory's context path plus the `/` after it
    /// (0 for the context root): `path[rel_start..]` is the path below it.
    pub rel_start: usize,
}

/// A directory entry read for the walk, in name order.
pub(super) struct Child {
    pub name: String,
    pub file_type: FileType,
    pub entry: fs::DirEntry,
}

impl BuildContext {
    /// Joins a context path and a name (`"."` is the root).
    pub(super) fn child_path(dir: &str, name: &str) -> String {
        if dir == "." {
            name.to_string()
        } else {
            let mut p = String::with_capacity(dir.len() + 1 + name.len());
            p.push_str(dir);
            p.push('/');
            p.push_str(name);
            p
        }
    }

    /// The absolute path of a context path.
    pub(super) fn abs(&self, path: &str) -> PathBuf {
        if path == "." {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }

    /// The entries of directory `dir` (a context path), sorted bytewise by name.
    /// Names that are not UTF-8 are an error: they can be neither matched
    /// against patterns nor named in the selection.
    pub(super) fn read_sorted(&self, dir: &str) -> Result<Vec<Child>, ContextError> {
        let abs = self.abs(dir);
        let io_err = |source: io::Error| ContextError::Io {
            path: abs.clone(),
            source,
        };
        let mut children = Vec::new();
        for entry in fs::read_dir(&abs).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name().into_string().map_err(|raw| {
                let path = abs.join(raw);
                ContextError::Io {
                    path,
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        "file name is not valid UTF-8",
                    ),
                }
            })?;
            let file_type = entry.file_type().map_err(|source| ContextError::Io {
                path: abs.join(&name),
                source,
            })?;
            children.push(Child {
                name,
                file_type,
                entry,
            });
        }
        children.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(children)
    }

    /// Is `path` ignored, and the per-pattern state to hand to its entries?
    /// Computed by walking from the root, as the context transfer does.
    pub(super) fn ignore_state(&self, path: &str) -> Result<(bool, ParentMatch), ContextError> {
        if !self.has_ignore || path == "." {
            return Ok((false, ParentMatch::default()));
        }
        let mut state = (false, ParentMatch::default());
        for (i, _) in path.match_indices('/') {
            state = self.ignore.matches_with_parent(&path[..i], &state.1)?;
        }
        Ok(self.ignore.matches_with_parent(path, &state.1)?)
    }

    /// Is anything below the ignored directory `dir` present in the context?
    fn has_present_below(&self, dir: &str, state: &ParentMatch) -> Result<bool, ContextError> {
        for child in self.read_sorted(dir)? {
            let path = Self::child_path(dir, &child.name);
            let (ignored, child_state) = self.ignore.matches_with_parent(&path, state)?;
            if !ignored {
                return Ok(true);
            }
            if child.file_type.is_dir()
                && self.ignore.may_reinclude_below(&path)
                && self.has_present_below(&path, &child_state)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) fn node(
        &self,
        path: String,
        rel_start: usize,
        md: &Metadata,
    ) -> Result<Option<Node>, ContextError> {
        let ft = md.file_type();
        let (kind, link_target) = if ft.is_dir() {
            (FileKind::Dir, None)
        } else if ft.is_file() {
            (FileKind::File, None)
        } else if ft.is_symlink() {
            let target = fs::read_link(self.abs(&path)).map_err(|source| ContextError::Io {
                path: self.abs(&path),
                source,
            })?;
            let target = target
                .into_os_string()
                .into_string()
                .map_err(|_| ContextError::Io {
                    path: self.abs(&path),
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        "symlink target is not valid UTF-8",
                    ),
                })?;
            (FileKind::Symlink, Some(target))
        } else {
            return Ok(None);
        };
        Ok(Some(Node {
            path,
            rel_start,
            kind,
            stamp: Stamp::of(md),
            link_target,
            sha256: None,
        }))
    }
}

impl Walk<'_> {
    /// Appends the selected entries below directory `dir` to `out` (pre-order,
    /// names sorted within each directory). `ignored_dir` says whether `dir`
    /// itself is ignored (then the caller needs to know whether anything below
    /// is present). Returns `(anything present below, anything selected below)`.
    pub(super) fn dir(
        &self,
        dir: &str,
        ignore_state: &ParentMatch,
        exclude_state: &ParentMatch,
        ignored_dir: bool,
        out: &mut Vec<Node>,
    ) -> Result<(bool, bool), ContextError> {
        let ctx = self.ctx;
        let mut present_any = false;
        let mut selected_any = false;
        for child in ctx.read_sorted(dir)? {
            let path = BuildContext::child_path(dir, &child.name);
            let (ignored, child_ignore_state) = if ctx.has_ignore {
                ctx.ignore.matches_with_parent(&path, ignore_state)?
            } else {
                (false, ParentMatch::default())
            };
            let rel = &path[self.rel_start..];
            let (excluded, child_exclude_state) = if self.use_exclude {
                self.exclude.matches_with_parent(rel, exclude_state)?
            } else {
                (false, ParentMatch::default())
            };
            if child.file_type.is_dir() {
                if ignored && !ctx.ignore.may_reinclude_below(&path) {
                    continue;
                }
                if excluded && !self.exclude.may_reinclude_below(rel) {
                    // Nothing below can be selected; only presence may matter.
                    if !ignored {
                        present_any = true;
                    } else if ignored_dir && !present_any {
                        present_any = ctx.has_present_below(&path, &child_ignore_state)?;
                    }
                    continue;
                }
                let md = child.entry.metadata().map_err(|source| ContextError::Io {
                    path: ctx.abs(&path),
                    source,
                })?;
                let at = out.len();
                let Some(node) = ctx.node(path.clone(), self.rel_start, &md)? else {
                    continue;
                };
                out.push(node);
                let (present_below, selected_below) = self.dir(
                    &path,
                    &child_ignore_state,
                    &child_exclude_state,
                    ignored,
                    out,
                )?;
                let present = !ignored || present_below;
                let selected = present && (!excluded || selected_below);
                present_any |= present;
                selected_any |= selected;
                if !selected {
                    out.truncate(at);
                }
            } else {
                if ignored {
                    continue;
                }
                present_any = true;
                if excluded {
                    continue;
                }
                let md = child.entry.metadata().map_err(|source| ContextError::Io {
                    path: ctx.abs(&path),
                    source,
                })?;
                if let Some(node) = ctx.node(path, self.rel_start, &md)? {
                    out.push(node);
                    selected_any = true;
                }
            }
        }
        Ok((present_any, selected_any))
    }
}
