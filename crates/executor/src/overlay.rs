//! The overlay mount option string, for the RUN sandbox and for COPY/WORKDIR.
//!
//! mount(2) copies at most one page of options, so the string must stay below
//! the page size. When the absolute paths are too long, the caller `chdir`s
//! into the deepest directory common to all layer dirs and passes paths
//! relative to it (the kernel resolves them against the mounting process's cwd).

use std::path::{Component, Path, PathBuf};

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OverlayOptions {
    /// Directory to `chdir` into before mounting, when the paths are relative.
    pub chdir: Option<PathBuf>,
    pub data: String,
}

fn check_path(p: &Path) -> Result<&str, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("overlay path {} is not UTF-8", p.display()))?;
    if !p.is_absolute() {
        return Err(format!("overlay path {s} is not absolute"));
    }
    if s.contains([',', ':', '\\', '\0']) {
        return Err(format!(
            "overlay path {s} contains one of , : \\ (not allowed in overlay mount options)"
        ));
    }
    Ok(s)
}

/// Options for a writable overlay whose upper dir becomes a layer as is.
///
/// * `index`, `redirect_dir` and `metacopy` off: the upper dir must be a
///   plain layer (no redirect or metacopy xattrs, no index entries), which
///   the layer writer can express; Linux ≥ 4.19.
/// * `volatile` (Linux ≥ 5.10): no syncfs of the whole upper filesystem at
///   unmount, which otherwise waits for every dirty page on the disk, other
///   programs' included. Snapshots are never fsynced anyway (see
///   `rbuild_cache::Root::snapshot_intact`), and each work dir is used for
///   one mount only, so the `work/incompat/volatile` mark it leaves is
///   harmless.
pub(crate) const WRITABLE: &[&str] = &["index=off", "redirect_dir=off", "metacopy=off", "volatile"];

fn render(lowers: &[String], rw: Option<(&str, &str)>, extra: &[&str]) -> String {
    let mut s = format!("lowerdir={}", lowers.join(":"));
    if let Some((upper, work)) = rw {
        s.push_str(&format!(",upperdir={upper},workdir={work}"));
    }
    for e in extra {
        s.push(',');
        s.push_str(e);
    }
    s
}

/// Deepest directory that contains all `paths` (all absolute).
fn common_dir<'a>(paths: impl Iterator<Item = &'a Path>) -> PathBuf {
    let mut common: Option<Vec<Component<'a>>> = None;
    for p in paths {
        let comps: Vec<Component<'a>> = p.components().collect();
        common = Some(match common {
            None => comps,
            Some(c) => c
                .iter()
                .zip(comps.iter())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| *a)
                .collect(),
        });
    }
    common.unwrap_or_default().iter().collect()
}

fn relative(p: &Path, base: &Path) -> String {
    match p.strip_prefix(base) {
        Ok(r) if r.as_os_str().is_empty() => ".".to_string(),
        Ok(r) => r.to_string_lossy().into_owned(),
        Err(_) => p.to_string_lossy().into_owned(),
    }
}

/// Mounts an overlay of `lowers` (topmost first) at `target`: writable into
/// `rw`'s upper and work dirs with [`WRITABLE`]'s options, read-only
/// otherwise (`flags` should then include `MS_RDONLY`). Kernels before 5.10
/// reject `volatile`, so the mount is retried without it.
///
/// May `chdir` (see [`options`]): call it where the working directory is
/// the caller's own (a single-threaded child, or a thread with `CLONE_FS`
/// unshared). It is left at `/`.
pub(crate) fn mount(
    lowers: &[PathBuf],
    rw: Option<(&Path, &Path)>,
    target: &Path,
    flags: nix::mount::MsFlags,
) -> Result<(), String> {
    let mut extra: Vec<&str> = if rw.is_some() {
        WRITABLE.to_vec()
    } else {
        Vec::new()
    };
    loop {
        let opts = options(lowers, rw, &extra, page_limit())?;
        if let Some(dir) = &opts.chdir {
            nix::unistd::chdir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
        }
        let r = nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(opts.data.as_str()),
        );
        if opts.chdir.is_some() {
            let _ = nix::unistd::chdir("/");
        }
        match r {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINVAL) if extra.contains(&"volatile") => {
                extra.retain(|o| *o != "volatile");
            }
            Err(e) => {
                let rel = opts
                    .chdir
                    .as_ref()
                    .map(|d| format!(" relative to {}", d.display()))
                    .unwrap_or_default();
                return Err(format!(
                    "mounting overlay: {e} (options{rel}: {}); the kernel log may say more",
                    opts.data
                ));
            }
        }
    }
}

/// The largest option string mount(2) takes: one page, less the NUL.
pub(crate) fn page_limit() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        page as usize - 1
    } else {
        4095
    }
}

/// Builds the option string for `lowers` (topmost first), the optional
/// `(upper, work)` pair, plus `extra` options, no longer than `limit` bytes.
pub(crate) fn options(
    lowers: &[PathBuf],
    rw: Option<(&Path, &Path)>,
    extra: &[&str],
    limit: usize,
) -> Result<OverlayOptions, String> {
    if lowers.is_empty() {
        return Err("overlay needs at least one lower dir".into());
    }
    let mut abs_lowers = Vec::with_capacity(lowers.len());
    for l in lowers {
        abs_lowers.push(check_path(l)?.to_string());
    }
    let abs_rw = match rw {
        Some((u, w)) => Some((check_path(u)?, check_path(w)?)),
        None => None,
    };
    let data = render(&abs_lowers, abs_rw, extra);
    if data.len() <= limit {
        return Ok(OverlayOptions { chdir: None, data });
    }
    let all = || {
        lowers
            .iter()
            .map(PathBuf::as_path)
            .chain(rw.into_iter().flat_map(|(u, w)| [u, w]))
    };
    let base = common_dir(all());
    let rel_lowers: Vec<String> = lowers.iter().map(|l| relative(l, &base)).collect();
    let rel_rw = rw.map(|(u, w)| (relative(u, &base), relative(w, &base)));
    let rel = render(
        &rel_lowers,
        rel_rw.as_ref().map(|(u, w)| (u.as_str(), w.as_str())),
        extra,
    );
    if rel.len() <= limit {
        return Ok(OverlayOptions {
            chdir: Some(base),
            data: rel,
        });
    }
    Err(format!(
        "overlay mount options for {} lower dirs are {} bytes even relative to {} \
         (absolute: {} bytes); the limit is {limit} bytes (one page): use shorter \
         snapshot paths or fewer layers",
        lowers.len(),
        rel.len(),
        base.display(),
        data.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths_stay_absolute() {
        let o = options(
            &["/s/2".into(), "/s/1".into()],
            Some((Path::new("/s/3/u"), Path::new("/s/3/w"))),
            &["index=off"],
            4095,
        )
        .unwrap();
        assert_eq!(o.chdir, None);
        assert_eq!(
            o.data,
            "lowerdir=/s/2:/s/1,upperdir=/s/3/u,workdir=/s/3/w,index=off"
        );
    }

    #[test]
    fn long_paths_become_relative() {
        let base = format!("/{}", "x".repeat(200));
        let lowers: Vec<PathBuf> = (0..30)
            .map(|i| PathBuf::from(format!("{base}/snapshots/{i}")))
            .collect();
        let upper = PathBuf::from(format!("{base}/snapshots/31/fs"));
        let work = PathBuf::from(format!("{base}/snapshots/31/work"));
        let o = options(&lowers, Some((&upper, &work)), &[], 4095).unwrap();
        assert_eq!(o.chdir, Some(PathBuf::from(format!("{base}/snapshots"))));
        assert!(o.data.starts_with("lowerdir=0:1:2:"));
        assert!(o.data.ends_with(",upperdir=31/fs,workdir=31/work"));
    }

    #[test]
    fn too_long_is_an_error() {
        let lowers: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/a/{i}-{}", "y".repeat(60))))
            .collect();
        let e = options(&lowers, None, &[], 4095).unwrap_err();
        assert!(e.contains("one page"), "{e}");
    }

    #[test]
    fn bad_paths() {
        let rw = Some((Path::new("/u"), Path::new("/w")));
        assert!(options(&["/a,b".into()], rw, &[], 4095).is_err());
        assert!(options(&["rel".into()], rw, &[], 4095).is_err());
        assert!(options(
            &["/a".into()],
            Some((Path::new("u"), Path::new("/w"))),
            &[],
            4095
        )
        .is_err());
        assert!(options(&[], rw, &[], 4095).is_err());
    }

    #[test]
    fn read_only_has_no_upper() {
        let o = options(&["/s/2".into(), "/s/1".into()], None, &[], 4095).unwrap();
        assert_eq!(o.data, "lowerdir=/s/2:/s/1");
    }
}
