//! The overlay mount option string.
//!
//! mount(2) copies at most one page of options, so the string must stay below
//! the page size. When the absolute paths are too long, the child `chdir`s into
//! the deepest directory common to all layer dirs and passes paths relative to
//! it (the kernel resolves them against the mounting process's cwd).

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

fn render(lowers: &[String], upper: &str, work: &str, extra: &[&str]) -> String {
    let mut s = format!(
        "lowerdir={},upperdir={upper},workdir={work}",
        lowers.join(":")
    );
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

/// Builds the option string for `lowers` (topmost first), `upper` and `work`,
/// plus `extra` options, no longer than `limit` bytes.
pub(crate) fn options(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
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
    let data = render(&abs_lowers, check_path(upper)?, check_path(work)?, extra);
    if data.len() <= limit {
        return Ok(OverlayOptions { chdir: None, data });
    }
    let all = || lowers.iter().map(PathBuf::as_path).chain([upper, work]);
    let base = common_dir(all());
    let rel_lowers: Vec<String> = lowers.iter().map(|l| relative(l, &base)).collect();
    let rel = render(
        &rel_lowers,
        &relative(upper, &base),
        &relative(work, &base),
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
            Path::new("/s/3/u"),
            Path::new("/s/3/w"),
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
        let o = options(&lowers, &upper, &work, &[], 4095).unwrap();
        assert_eq!(o.chdir, Some(PathBuf::from(format!("{base}/snapshots"))));
        assert!(o.data.starts_with("lowerdir=0:1:2:"));
        assert!(o.data.ends_with(",upperdir=31/fs,workdir=31/work"));
    }

    #[test]
    fn too_long_is_an_error() {
        let lowers: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/a/{i}-{}", "y".repeat(60))))
            .collect();
        let e = options(&lowers, Path::new("/a/u"), Path::new("/a/w"), &[], 4095).unwrap_err();
        assert!(e.contains("one page"), "{e}");
    }

    #[test]
    fn bad_paths() {
        assert!(options(
            &["/a,b".into()],
            Path::new("/u"),
            Path::new("/w"),
            &[],
            4095
        )
        .is_err());
        assert!(options(&["rel".into()], Path::new("/u"), Path::new("/w"), &[], 4095).is_err());
        assert!(options(&[], Path::new("/u"), Path::new("/w"), &[], 4095).is_err());
    }
}
