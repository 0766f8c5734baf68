//! From a COPY/ADD source string to the context paths it selects.
//!
//! * The source is cleaned lexically first (as BuildKit joins it onto `/`): `.`
//!   and empty components vanish, `..` removes the previous component, a
//!   leading `/` means the context root. A `..` that would climb above the root
//!   is an error here ([`ContextError::Escapes`]) where BuildKit would silently
//!   stay at the root.
//! * Components before the first one holding an unescaped `*`, `?` or `[` are a
//!   literal prefix; it is resolved following symlinks. The remaining
//!   components are matched level by level like Go's `filepath.Match` (a `*`
//!   never crosses `/`); the expansion walk does not descend into symlinks and
//!   stops at the first match along a branch, as BuildKit's does. Matches come
//!   in walk order: names sorted bytewise within each directory.
//! * Each match (or the literal path) whose final component is a symlink is
//!   followed (BuildKit copies with `FollowSymlinks`): the target is resolved
//!   component by component against the context root, an absolute target
//!   counting from the context root. A target that climbs out of the context is
//!   an error, never read.
//! * Only what is present in the `.dockerignore`-filtered context can be
//!   selected or followed through (see [`super::walk`]).

use std::fs::{self, Metadata};
use std::io;

use super::glob::{has_wildcards, Glob};
use super::walk::Walk;
use super::{BuildContext, ContextError, FileKind, Matched};
use crate::ignore::{IgnoreMatcher, ParentMatch};

/// Symlinks followed while resolving one path before giving up (Linux's limit).
const MAX_LINKS: usize = 40;

/// The cleaned components of a source, or `Escapes`.
pub(super) fn clean_source(source: &str) -> Result<Vec<&str>, ContextError> {
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ContextError::Escapes {
                        source: source.to_string(),
                    });
                }
            }
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

fn join_or_root(parts: &[&str]) -> String {
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

/// How the not-found error names a path: `/` + the context path.
fn display_path(path: &str) -> String {
    if path == "." {
        "/".to_string()
    } else {
        format!("/{path}")
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

impl BuildContext {
    /// Every match of one source, in order.
    pub(super) fn select_source(
        &self,
        source: &str,
        exclude: &IgnoreMatcher,
    ) -> Result<Vec<Matched>, ContextError> {
        let parts = clean_source(source)?;
        let shown = display_path(&join_or_root(&parts));
        let Some(first_wild) = parts.iter().position(|p| has_wildcards(p)) else {
            let path = join_or_root(&parts);
            let not_found = || ContextError::NotFound {
                source: shown.clone(),
            };
            let (resolved, md) = self.resolve(&parts, source)?.ok_or_else(not_found)?;
            let (ignored, state) = self.ignore_state(&resolved)?;
            return self
                .make_match(path, resolved, &md, ignored, &state, exclude)?
                .map(|m| vec![m])
                .ok_or_else(not_found);
        };

        let no_match = || ContextError::NoMatch {
            pattern: shown.clone(),
        };
        let globs: Vec<Glob> = parts[first_wild..].iter().map(|p| Glob::new(p)).collect();
        if globs.iter().any(|g| !g.is_valid()) {
            return Err(no_match());
        }
        let base = match self.resolve(&parts[..first_wild], source)? {
            Some((base, md)) if md.is_dir() => base,
            _ => return Err(no_match()),
        };
        let (base_ignored, base_state) = self.ignore_state(&base)?;
        if base_ignored && !self.ignore.may_reinclude_below(&base) {
            return Err(no_match());
        }
        let mut candidates = Vec::new();
        self.expand(&base, &base_state, &globs, &mut candidates)?;

        let mut matches = Vec::new();
        for (path, ignored, state, is_link) in candidates {
            if ignored && is_link {
                continue; // an ignored symlink is not in the context
            }
            if is_link {
                let link_parts: Vec<&str> = path.split('/').collect();
                let not_found = || ContextError::NotFound {
                    source: display_path(&path),
                };
                let (resolved, md) = self.resolve(&link_parts, source)?.ok_or_else(not_found)?;
                let (r_ignored, r_state) = self.ignore_state(&resolved)?;
                let m = self
                    .make_match(path.clone(), resolved, &md, r_ignored, &r_state, exclude)?
                    .ok_or_else(not_found)?;
                matches.push(m);
            } else {
                let md =
                    fs::symlink_metadata(self.abs(&path)).map_err(|source| ContextError::Io {
                        path: self.abs(&path),
                        source,
                    })?;
                if let Some(m) =
                    self.make_match(path.clone(), path, &md, ignored, &state, exclude)?
                {
                    matches.push(m);
                }
            }
        }
        if matches.is_empty() {
            return Err(no_match());
        }
        Ok(matches)
    }

    /// Wildcard expansion below `dir`: candidates `(path, ignored, ignore
    /// state, is symlink)` whose components match `globs`.
    #[allow(clippy::type_complexity)]
    fn expand(
        &self,
        dir: &str,
        state: &ParentMatch,
        globs: &[Glob],
        out: &mut Vec<(String, bool, ParentMatch, bool)>,
    ) -> Result<(), ContextError> {
        let (glob, rest) = globs.split_first().expect("at least one glob");
        for child in self.read_sorted(dir)? {
            if !glob.matches(&child.name) {
                continue;
            }
            let path = Self::child_path(dir, &child.name);
            let (ignored, child_state) = if self.has_ignore {
                self.ignore.matches_with_parent(&path, state)?
            } else {
                (false, ParentMatch::default())
            };
            if rest.is_empty() {
                out.push((path, ignored, child_state, child.file_type.is_symlink()));
            } else if child.file_type.is_dir()
                && (!ignored || self.ignore.may_reinclude_below(&path))
            {
                self.expand(&path, &child_state, rest, out)?;
            }
        }
        Ok(())
    }

    /// A match for the resolved path, or `None` when it is not present in the
    /// filtered context (or is not a file or directory).
    fn make_match(
        &self,
        path: String,
        resolved: String,
        md: &Metadata,
        ignored: bool,
        state: &ParentMatch,
        exclude: &IgnoreMatcher,
    ) -> Result<Option<Matched>, ContextError> {
        let ft = md.file_type();
        if ft.is_dir() {
            let rel_start = if resolved == "." {
                0
            } else {
                resolved.len() + 1
            };
            let Some(mut top) = self.node(resolved.clone(), resolved.len(), md)? else {
                return Ok(None);
            };
            top.rel_start = resolved.len(); // its own relative path is ""
            let mut nodes = vec![top];
            let walk = Walk {
                ctx: self,
                exclude,
                use_exclude: exclude.patterns().next().is_some(),
                rel_start,
            };
            let (present_below, _) = walk.dir(
                &resolved,
                state,
                &ParentMatch::default(),
                ignored,
                &mut nodes,
            )?;
            if ignored && !present_below {
                return Ok(None);
            }
            Ok(Some(Matched {
                path,
                resolved,
                is_dir: true,
                nodes,
            }))
        } else if ft.is_file() && !ignored {
            let node = self.node(resolved.clone(), resolved.len(), md)?;
            Ok(node.map(|node| {
                debug_assert_eq!(node.kind, FileKind::File);
                Matched {
                    path,
                    resolved,
                    is_dir: false,
                    nodes: vec![node],
                }
            }))
        } else {
            Ok(None)
        }
    }

    /// Resolves the context path `parts` following every symlink (including
    /// the last component) inside the context. `Ok(None)` when some component
    /// does not exist (or is a non-directory in the middle, or is an ignored
    /// symlink); `Escapes` when a symlink leads out of the context.
    pub(super) fn resolve(
        &self,
        parts: &[&str],
        source: &str,
    ) -> Result<Option<(String, Metadata)>, ContextError> {
        // Components still to resolve, next one last.
        let mut pending: Vec<String> = parts.iter().rev().map(|p| p.to_string()).collect();
        let mut current: Vec<String> = Vec::with_capacity(parts.len());
        let mut links = 0;
        let mut last_md: Option<Metadata> = None;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    if current.pop().is_none() {
                        return Err(ContextError::Escapes {
                            source: source.to_string(),
                        });
                    }
                    last_md = None;
                    continue;
                }
                _ => {}
            }
            current.push(part);
            let path = current.join("/");
            let abs = self.abs(&path);
            let md = match fs::symlink_metadata(&abs) {
                Ok(md) => md,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(source) => return Err(ContextError::Io { path: abs, source }),
            };
            if md.file_type().is_symlink() {
                if self.ignore_state(&path)?.0 {
                    return Ok(None);
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(ContextError::Io {
                        path: abs,
                        source: io::Error::from_raw_os_error(libc::ELOOP),
                    });
                }
                let target = fs::read_link(&abs).map_err(|source| ContextError::Io {
                    path: abs.clone(),
                    source,
                })?;
                let target = target.to_str().ok_or_else(|| ContextError::Io {
                    path: abs.clone(),
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        "symlink target is not valid UTF-8",
                    ),
                })?;
                current.pop();
                if target.starts_with('/') {
                    current.clear();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
                last_md = None;
            } else {
                if !pending.is_empty() && !md.is_dir() {
                    return Ok(None);
                }
                last_md = Some(md);
            }
        }
        let md = match last_md {
            Some(md) => md,
            // The root, or a path that ended on `..`: stat the directory.
            None => {
                let path = if current.is_empty() {
                    ".".to_string()
                } else {
                    current.join("/")
                };
                let abs = self.abs(&path);
                fs::symlink_metadata(&abs)
                    .map_err(|source| ContextError::Io { path: abs, source })?
            }
        };
        let refs: Vec<&str> = current.iter().map(String::as_str).collect();
        Ok(Some((join_or_root(&refs), md)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(clean_source("./a//b/").unwrap(), ["a", "b"]);
        assert_eq!(clean_source("/a/../b").unwrap(), ["b"]);
        assert!(clean_source(".").unwrap().is_empty());
        assert!(clean_source("/").unwrap().is_empty());
        assert!(clean_source("").unwrap().is_empty());
        for bad in ["..", "../x", "a/../../x", "/../x", "a/b/../../../c"] {
            assert!(
                matches!(clean_source(bad), Err(ContextError::Escapes { .. })),
                "{bad}"
            );
        }
        assert_eq!(display_path(&join_or_root(&[])), "/");
        assert_eq!(display_path("a/b"), "/a/b");
    }
}
