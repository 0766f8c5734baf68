//! Build-context selection and hashing (`rbuild_planner::context`).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rbuild_planner::context::{BuildContext, ContextError, FileKind, Selection};

/// A temporary directory holding `ctx/` (the context) and room for files
/// outside it.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        fs::create_dir(f.ctx()).unwrap();
        for (path, content) in files {
            f.write(path, content);
        }
        f
    }

    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.ctx().join(rel)
    }

    /// Writes `ctx/<rel>`; a trailing `/` makes a directory.
    fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        if let Some(dir) = rel.strip_suffix('/') {
            fs::create_dir_all(self.path(dir)).unwrap();
            return;
        }
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
    }

    fn link(&self, rel: &str, target: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        symlink(target, p).unwrap();
    }

    fn chmod(&self, rel: &str, mode: u32) {
        fs::set_permissions(self.path(rel), fs::Permissions::from_mode(mode)).unwrap();
    }

    fn open(&self) -> BuildContext {
        BuildContext::open(&self.ctx(), None, None).expect("open context")
    }

    fn open_cached(&self) -> BuildContext {
        let cache = self.dir.path().join("cache/meta.bin");
        BuildContext::open(&self.ctx(), None, Some(cache)).expect("open context")
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn select(ctx: &BuildContext, sources: &[&str]) -> Selection {
    select_ex(ctx, sources, &[])
}

fn select_ex(ctx: &BuildContext, sources: &[&str], excludes: &[&str]) -> Selection {
    ctx.select(&strings(sources), &strings(excludes))
        .unwrap_or_else(|e| panic!("select {sources:?} excluding {excludes:?}: {e}"))
}

fn digest(f: &Fixture, sources: &[&str]) -> String {
    select(&f.open(), sources).digest
}

fn paths(sel: &Selection) -> Vec<&str> {
    sel.files.iter().map(|e| e.path.as_str()).collect()
}

fn err(ctx: &BuildContext, sources: &[&str], excludes: &[&str]) -> ContextError {
    match ctx.select(&strings(sources), &strings(excludes)) {
        Ok(sel) => panic!("select {sources:?} should fail, got {:?}", paths(&sel)),
        Err(e) => e,
    }
}

/// Files younger than the racy window are not persisted in the metadata cache;
/// tests of the persisted cache let their files age first.
fn age_past_racy_window() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn sample() -> Fixture {
    Fixture::new(&[
        ("a.txt", "alpha"),
        ("b.txt", "bravo"),
        ("c.md", "charlie"),
        ("src/main.rs", "fn main() {}"),
        ("src/lib.rs", "pub fn f() {}"),
        ("src/nested/deep.txt", "deep"),
        ("docs/guide.md", "guide"),
        ("docs/api.txt", "api"),
    ])
}

#[test]
fn plain_file_source() {
    let f = sample();
    let ctx = f.open();
    for spelling in ["a.txt", "./a.txt", "/a.txt", "src/../a.txt"] {
        let sel = select(&ctx, &[spelling]);
        assert_eq!(paths(&sel), ["a.txt"], "{spelling}");
        let entry = &sel.files[0];
        assert_eq!(entry.kind, FileKind::File);
        assert_eq!(entry.size, 5);
        assert_eq!(
            entry.sha256.as_deref(),
            // sha256("alpha")
            Some("8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8")
        );
        assert_eq!(sel.sources[0].source, spelling);
        assert_eq!(sel.sources[0].paths, ["a.txt"]);
        assert_eq!(sel.sources[0].resolved, ["a.txt"]);
        assert!(sel.digest.starts_with("sha256:") && sel.digest.len() == 71);
    }
    // The spelling does not change the digest.
    assert_eq!(digest(&f, &["a.txt"]), digest(&f, &["./a.txt"]));
    assert_eq!(digest(&f, &["a.txt"]), digest(&f, &["/a.txt"]));
    assert_eq!(digest(&f, &["a.txt"]), digest(&f, &["a.tx?"]));
}

#[test]
fn directory_source_selects_everything_below() {
    let f = sample();
    let ctx = f.open();
    let sel = select(&ctx, &["src"]);
    assert_eq!(
        paths(&sel),
        [
            "src",
            "src/lib.rs",
            "src/main.rs",
            "src/nested",
            "src/nested/deep.txt"
        ]
    );
    let kinds: Vec<FileKind> = sel.files.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            FileKind::Dir,
            FileKind::File,
            FileKind::File,
            FileKind::Dir,
            FileKind::File
        ]
    );
    assert!(sel.files[0].sha256.is_none());

    let all = select(&ctx, &["."]);
    assert_eq!(all.sources[0].paths, ["."]);
    assert_eq!(all.files.len(), 1 + 3 + 3 + 3 + 2, "{:?}", paths(&all));
    assert_eq!(all.files[0].path, ".");
    assert_eq!(digest(&f, &["."]), digest(&f, &["/"]));
    assert_eq!(digest(&f, &["."]), digest(&f, &[""]));
}

#[test]
fn wildcard_sources() {
    let f = sample();
    f.write("sub/x.txt", "nested txt");
    let ctx = f.open();
    // `*` does not cross `/`.
    let sel = select(&ctx, &["*.txt"]);
    assert_eq!(sel.sources[0].paths, ["a.txt", "b.txt"]);
    assert_eq!(paths(&sel), ["a.txt", "b.txt"]);

    let sel = select(&ctx, &["*/*.txt"]);
    assert_eq!(sel.sources[0].paths, ["docs/api.txt", "sub/x.txt"]);

    let sel = select(&ctx, &["[ab].txt", "?.md"]);
    assert_eq!(sel.sources[0].paths, ["a.txt", "b.txt"]);
    assert_eq!(sel.sources[1].paths, ["c.md"]);

    // A matched directory brings its contents.
    let sel = select(&ctx, &["s*"]);
    assert_eq!(sel.sources[0].paths, ["src", "sub"]);
    assert!(paths(&sel).contains(&"src/nested/deep.txt"));
    assert!(paths(&sel).contains(&"sub/x.txt"));

    // Inside a wildcard component, `\*` is a literal `*`; a component without
    // unescaped wildcards is a literal path, backslash included (BuildKit).
    f.write("lit*y.txt", "star");
    f.write("litzy.txt", "no star");
    let sel = select(&f.open(), &["lit\\*[y].txt"]);
    assert_eq!(sel.sources[0].paths, ["lit*y.txt"]);
    let e = err(&f.open(), &["lit\\*y.txt"], &[]);
    assert!(matches!(e, ContextError::NotFound { .. }), "{e}");
}

#[test]
fn overlapping_sources_are_listed_and_read_once() {
    let f = sample();
    let ctx = f.open();
    let sel = select(&ctx, &["src", "src/main.rs", "*.txt", "a.txt"]);
    let p = paths(&sel);
    let mut sorted = p.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(p, sorted, "files are unique and sorted");
    assert_eq!(ctx.files_hashed(), 5, "each distinct file is read once");
}

#[test]
fn dockerignore_excludes_and_reincludes() {
    let f = sample();
    f.write("docs/keep/readme.md", "keep me");
    f.write("docs/keep/drop.txt", "drop me");
    f.write(
        ".dockerignore",
        "# comment\n*.md\ndocs\n!docs/keep/*.md\nsrc/nested\n",
    );
    let ctx = f.open();
    let sel = select(&ctx, &["."]);
    assert_eq!(
        paths(&sel),
        [
            ".",
            ".dockerignore",
            "a.txt",
            "b.txt",
            "docs",
            "docs/keep",
            "docs/keep/readme.md",
            "src",
            "src/lib.rs",
            "src/main.rs",
        ]
    );
    // The re-included file's ignored parents are present, so they can be
    // selected directly.
    let sel = select(&ctx, &["docs"]);
    assert_eq!(paths(&sel), ["docs", "docs/keep", "docs/keep/readme.md"]);
    // Wildcards only see the filtered context.
    let sel = select(&ctx, &["*"]);
    assert_eq!(
        sel.sources[0].paths,
        [".dockerignore", "a.txt", "b.txt", "docs", "src"]
    );
    // Ignored paths are not found.
    assert!(matches!(
        err(&ctx, &["c.md"], &[]),
        ContextError::NotFound { .. }
    ));
    assert!(matches!(
        err(&ctx, &["src/nested/deep.txt"], &[]),
        ContextError::NotFound { .. }
    ));
    assert!(matches!(
        err(&ctx, &["docs/api.txt"], &[]),
        ContextError::NotFound { .. }
    ));
    assert!(matches!(
        err(&ctx, &["*.md"], &[]),
        ContextError::NoMatch { .. }
    ));
    // Changing an ignored file does not change the digest.
    let before = select(&ctx, &["."]).digest;
    f.write("docs/api.txt", "changed");
    f.write("src/nested/deep.txt", "changed");
    assert_eq!(select(&f.open(), &["."]).digest, before);
}

#[test]
fn everything_ignored_but_one_file() {
    let f = sample();
    f.write(".dockerignore", "**\n!src/nested/deep.txt\n");
    let ctx = f.open();
    let sel = select(&ctx, &["."]);
    assert_eq!(
        paths(&sel),
        [".", "src", "src/nested", "src/nested/deep.txt"]
    );
    assert!(matches!(
        err(&ctx, &["docs"], &[]),
        ContextError::NotFound { .. }
    ));
}

#[test]
fn dockerfile_specific_ignore_file_takes_precedence() {
    let f = sample();
    f.write(".dockerignore", "a.txt\n");
    f.write("build/app.Dockerfile", "FROM scratch\n");
    f.write("build/app.Dockerfile.dockerignore", "b.txt\n");
    let generic = BuildContext::open(&f.ctx(), Some(&f.path("build/Dockerfile")), None).unwrap();
    let specific =
        BuildContext::open(&f.ctx(), Some(&f.path("build/app.Dockerfile")), None).unwrap();
    let sel = select(&generic, &["*.txt"]);
    assert_eq!(sel.sources[0].paths, ["b.txt"]);
    let sel = select(&specific, &["*.txt"]);
    assert_eq!(sel.sources[0].paths, ["a.txt"]);
}

#[test]
fn copy_exclude_patterns() {
    let f = sample();
    let ctx = f.open();
    // Relative to the matched directory.
    let sel = select_ex(&ctx, &["src"], &["*.rs"]);
    assert_eq!(paths(&sel), ["src", "src/nested", "src/nested/deep.txt"]);
    let sel = select_ex(&ctx, &["."], &["src", "docs", "*.txt"]);
    assert_eq!(paths(&sel), [".", "c.md"]);
    // `!` re-includes below an excluded directory.
    let sel = select_ex(
        &ctx,
        &["."],
        &["src", "docs", "*.txt", "*.md", "!src/nested"],
    );
    assert_eq!(
        paths(&sel),
        [".", "src", "src/nested", "src/nested/deep.txt"]
    );
    let sel = select_ex(&ctx, &["src"], &["**/*.txt"]);
    assert_eq!(
        paths(&sel),
        ["src", "src/lib.rs", "src/main.rs", "src/nested"]
    );
    // The digest follows the exclusion.
    assert_ne!(
        select_ex(&ctx, &["src"], &["*.rs"]).digest,
        select(&ctx, &["src"]).digest
    );
    // Invalid patterns are reported.
    assert!(matches!(
        err(&ctx, &["src"], &["a["]),
        ContextError::Ignore(_)
    ));
}

#[test]
fn sources_outside_the_context_are_rejected() {
    let f = sample();
    let ctx = f.open();
    for source in ["../x", "a/../../x", "/../ctx/a.txt", "..", "src/../../ctx"] {
        let e = err(&ctx, &[source], &[]);
        assert!(
            matches!(&e, ContextError::Escapes { source: s } if s == source),
            "{source}: {e}"
        );
    }
}

#[test]
fn missing_sources() {
    let f = sample();
    let ctx = f.open();
    let e = err(&ctx, &["a.txt", "x"], &[]);
    assert!(matches!(&e, ContextError::NotFound { source } if source == "/x"));
    assert_eq!(e.to_string(), "\"/x\": not found");
    assert!(matches!(
        err(&ctx, &["a.txt/b"], &[]),
        ContextError::NotFound { .. }
    ));
    assert!(matches!(
        err(&ctx, &["nope/*.txt"], &[]),
        ContextError::NoMatch { .. }
    ));
    let e = err(&ctx, &["*.nothing"], &[]);
    assert!(
        matches!(&e, ContextError::NoMatch { pattern } if pattern == "/*.nothing"),
        "{e}"
    );
    assert!(matches!(
        err(&ctx, &["[abc"], &[]),
        ContextError::NoMatch { .. }
    ));
}

#[test]
fn symlinks_inside_directories_are_recorded_not_followed() {
    let f = sample();
    f.link("src/link", "main.rs");
    f.link("src/abs", "/a.txt");
    let ctx = f.open();
    let sel = select(&ctx, &["src"]);
    let link = sel.files.iter().find(|e| e.path == "src/link").unwrap();
    assert_eq!(link.kind, FileKind::Symlink);
    assert_eq!(link.link_target.as_deref(), Some("main.rs"));
    assert!(link.sha256.is_none());
    let abs = sel.files.iter().find(|e| e.path == "src/abs").unwrap();
    assert_eq!(abs.link_target.as_deref(), Some("/a.txt"));
    // The targets are not selected along with the links.
    assert!(!paths(&sel).contains(&"a.txt"));
}

#[test]
fn symlinks_out_of_the_context_are_never_followed() {
    let f = sample();
    let outside = f.dir.path().join("secret.txt");
    fs::write(&outside, "outside content v1").unwrap();
    f.link("src/escape", "../../secret.txt");
    f.link("src/escape_abs", outside.to_str().unwrap());
    let before = digest(&f, &["src", "."]);
    let ctx = f.open();
    let sel = select(&ctx, &["src"]);
    let e = sel.files.iter().find(|e| e.path == "src/escape").unwrap();
    assert_eq!(e.kind, FileKind::Symlink);
    assert_eq!(
        ctx.files_hashed(),
        3,
        "only the three regular files are read"
    );

    fs::write(&outside, "outside content v2 (different length)").unwrap();
    assert_eq!(digest(&f, &["src", "."]), before);

    // As a source it would have to be followed: an error, not a read.
    let e = err(&ctx, &["src/escape"], &[]);
    assert!(matches!(e, ContextError::Escapes { .. }), "{e}");
    let e = err(&ctx, &["src/esc*"], &[]);
    assert!(matches!(e, ContextError::Escapes { .. }), "{e}");
    // An absolute target counts from the context root, where it does not exist.
    let e = err(&ctx, &["src/escape_abs"], &[]);
    assert!(matches!(e, ContextError::NotFound { .. }), "{e}");
    // Through a symlinked directory in the middle of the path, too.
    fs::create_dir(f.dir.path().join("outdir")).unwrap();
    fs::write(f.dir.path().join("outdir/f"), "x").unwrap();
    f.link("out", "../outdir");
    let e = err(&f.open(), &["out/f"], &[]);
    assert!(matches!(e, ContextError::Escapes { .. }), "{e}");
}

#[test]
fn symlink_sources_inside_the_context_are_followed() {
    let f = sample();
    f.link("to_a", "a.txt");
    f.link("to_src", "/src/"); // absolute: relative to the context root
    f.link("chain", "to_src/nested/../main.rs");
    f.link("loop1", "loop2");
    f.link("loop2", "loop1");
    f.link("dangling", "nothing");
    let ctx = f.open();

    let sel = select(&ctx, &["to_a"]);
    assert_eq!(sel.sources[0].paths, ["to_a"]);
    assert_eq!(sel.sources[0].resolved, ["a.txt"]);
    assert_eq!(paths(&sel), ["a.txt"]);
    // The copy is named after the link, so the digest differs from `a.txt`'s.
    assert_ne!(sel.digest, digest(&f, &["a.txt"]));

    let sel = select(&ctx, &["to_src"]);
    assert_eq!(sel.sources[0].resolved, ["src"]);
    // A followed directory copies the same contents as the directory itself.
    assert_eq!(sel.digest, digest(&f, &["src"]));

    let sel = select(&ctx, &["chain"]);
    assert_eq!(sel.sources[0].resolved, ["src/main.rs"]);
    let sel = select(&ctx, &["to_src/lib.rs"]);
    assert_eq!(paths(&sel), ["src/lib.rs"]);

    let e = err(&ctx, &["loop1"], &[]);
    assert!(matches!(e, ContextError::Io { .. }), "{e}");
    assert!(matches!(
        err(&ctx, &["dangling"], &[]),
        ContextError::NotFound { .. }
    ));
    // A wildcard match that is a symlink is followed too.
    let sel = select(&ctx, &["to_?"]);
    assert_eq!(sel.sources[0].resolved, ["a.txt"]);
}

#[test]
fn digest_tracks_what_the_copy_produces() {
    let f = sample();
    f.link("src/link", "main.rs");
    let base = digest(&f, &["src", "a.txt"]);
    assert_eq!(digest(&f, &["src", "a.txt"]), base, "deterministic");

    // Content.
    f.write("src/lib.rs", "pub fn g() {}");
    let d1 = digest(&f, &["src", "a.txt"]);
    assert_ne!(d1, base);
    // Same-size content change.
    f.write("src/lib.rs", "pub fn h() {}");
    let d2 = digest(&f, &["src", "a.txt"]);
    assert_ne!(d2, d1);
    // Exec bit.
    f.chmod("src/main.rs", 0o755);
    let d3 = digest(&f, &["src", "a.txt"]);
    assert_ne!(d3, d2);
    // Setuid / sticky bits on a directory.
    f.chmod("src/nested", 0o1755);
    let d4 = digest(&f, &["src", "a.txt"]);
    assert_ne!(d4, d3);
    // A file name.
    fs::rename(
        f.path("src/nested/deep.txt"),
        f.path("src/nested/deeper.txt"),
    )
    .unwrap();
    let d5 = digest(&f, &["src", "a.txt"]);
    assert_ne!(d5, d4);
    // A symlink target.
    f.link("src/link", "lib.rs");
    let d6 = digest(&f, &["src", "a.txt"]);
    assert_ne!(d6, d5);
    // A file turned into a directory of the same name.
    fs::remove_file(f.path("a.txt")).unwrap();
    f.write("a.txt/", "");
    f.write("a.txt/inner", "alpha");
    let d7 = digest(&f, &["src", "a.txt"]);
    assert_ne!(d7, d6);
    // Source order.
    assert_ne!(digest(&f, &["a.txt", "src"]), d7);
}

#[test]
fn digest_ignores_mtime_and_unselected_files() {
    let f = sample();
    let base = digest(&f, &["src", "*.txt"]);
    let old = SystemTime::now() - Duration::from_secs(3600);
    for p in ["src/main.rs", "src/nested", "a.txt"] {
        fs::File::options()
            .write(true)
            .open(f.path(p))
            .or_else(|_| fs::File::open(f.path(p)))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    assert_eq!(digest(&f, &["src", "*.txt"]), base, "mtime only");
    f.write("c.md", "changed but not selected");
    f.write("docs/new.txt", "new but not selected");
    assert_eq!(digest(&f, &["src", "*.txt"]), base, "unselected files");
    // Rewriting a file with the same content keeps the digest too.
    f.write("a.txt", "alpha");
    assert_eq!(
        digest(&f, &["src", "*.txt"]),
        base,
        "same content rewritten"
    );
}

#[test]
fn digest_depends_on_copied_names_not_on_source_names() {
    let f = Fixture::new(&[
        ("one/x", "same"),
        ("two/x", "same"),
        ("f1", "same"),
        ("f2", "same"),
    ]);
    // Directory sources copy their contents: identical contents, same result.
    assert_eq!(digest(&f, &["one"]), digest(&f, &["two"]));
    // File sources are copied under their own names.
    assert_ne!(digest(&f, &["f1"]), digest(&f, &["f2"]));
    // Directory vs file with the same content.
    assert_ne!(digest(&f, &["one"]), digest(&f, &["one/x"]));
}

#[test]
fn metadata_cache_avoids_rereading_unchanged_files() {
    let f = sample();
    age_past_racy_window();
    let ctx = f.open_cached();
    let first = select(&ctx, &["."]);
    assert_eq!(ctx.files_hashed(), 8);
    // Within a session, nothing is read twice.
    let again = select(&ctx, &["."]);
    assert_eq!(again, first);
    assert_eq!(ctx.files_hashed(), 8);
    ctx.save_meta_cache().unwrap();
    drop(ctx);

    let ctx = f.open_cached();
    let warm = select(&ctx, &["."]);
    assert_eq!(ctx.files_hashed(), 0, "warm cache must not read any file");
    assert_eq!(warm, first);

    // A changed size is noticed.
    f.write("a.txt", "alpha, longer now");
    // A same-size change with an old mtime is noticed too (ctime/inode differ).
    f.write("b.txt", "BRAVO");
    fs::File::options()
        .write(true)
        .open(f.path("b.txt"))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let ctx = f.open_cached();
    let changed = select(&ctx, &["."]);
    assert_eq!(ctx.files_hashed(), 2);
    assert_ne!(changed.digest, first.digest);
    let a = changed.files.iter().find(|e| e.path == "a.txt").unwrap();
    assert_eq!(
        a.sha256.as_deref(),
        // sha256("alpha, longer now")
        Some("1de9ea98be9b70b34ceff4c09209f7dad2392bea67e737478fc839648a580a81")
    );
}

#[test]
fn metadata_cache_does_not_persist_racy_hashes() {
    let f = sample();
    let ctx = f.open_cached();
    select(&ctx, &["."]);
    assert_eq!(ctx.files_hashed(), 8);
    ctx.save_meta_cache().unwrap();
    // All files were written just now: a same-tick rewrite could keep their
    // stamps, so their hashes were not written out.
    let ctx = f.open_cached();
    select(&ctx, &["."]);
    assert_eq!(ctx.files_hashed(), 8);
}

#[test]
fn metadata_cache_file_damage_is_harmless() {
    let f = sample();
    age_past_racy_window();
    let ctx = f.open_cached();
    let first = select(&ctx, &["."]);
    ctx.save_meta_cache().unwrap();
    let file = f.dir.path().join("cache/meta.bin");
    let mut bytes = fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&file, &bytes).unwrap();
    let ctx = f.open_cached();
    assert_eq!(select(&ctx, &["."]), first);
    assert_eq!(ctx.files_hashed(), 8, "a damaged cache is discarded");
    // Without a cache file, saving is a no-op.
    f.open().save_meta_cache().unwrap();
}

#[test]
fn unreadable_files_are_io_errors() {
    let f = sample();
    // Non-UTF-8 names cannot be selected by name or pattern.
    let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
    fs::write(f.path("src").join(name), "x").unwrap();
    let e = err(&f.open(), &["src"], &[]);
    match &e {
        ContextError::Io { path, .. } => assert!(path.starts_with(f.ctx().join("src")), "{e}"),
        other => panic!("expected Io, got {other}"),
    }
    fs::remove_file(f.path("src").join(name)).unwrap();

    // Permission denied (only meaningful when not running as root).
    f.chmod("src/main.rs", 0o000);
    let readable = fs::read(f.path("src/main.rs")).is_ok();
    let result = f.open().select(&strings(&["src"]), &[]);
    if readable {
        assert!(result.is_ok(), "root can read it");
    } else {
        match result {
            Err(ContextError::Io { path, .. }) => assert_eq!(path, f.path("src/main.rs")),
            other => panic!("expected Io for src/main.rs, got {other:?}"),
        }
    }
    f.chmod("src/main.rs", 0o644);
}

#[test]
fn open_errors() {
    let f = sample();
    assert!(matches!(
        BuildContext::open(&f.path("missing"), None, None),
        Err(ContextError::Io { .. })
    ));
    assert!(matches!(
        BuildContext::open(&f.path("a.txt"), None, None),
        Err(ContextError::Io { .. })
    ));
    f.write(".dockerignore", "!\n");
    assert!(matches!(
        BuildContext::open(&f.ctx(), None, None),
        Err(ContextError::Ignore(_))
    ));
}
