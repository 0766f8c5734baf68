//! Locating the shared conformance data (`../shared/conformance` beside the
//! project root). Locally a missing folder skips with a message; under CI
//! (`CI=true`) it is a failure, so that data silently going missing can never
//! turn the conformance tests green.

use std::path::PathBuf;

pub fn conformance_dir(sub: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("RBUILD_CONFORMANCE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    }
    .join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "conformance data missing at {} (required when CI=true)",
            dir.display()
        );
    }
    eprintln!("SKIPPED: conformance data not found at {}", dir.display());
    None
}

/// Sorted sub-directories (or files) of `dir`.
pub fn entries(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}
