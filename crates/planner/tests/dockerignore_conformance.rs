//! Conformance of `rbuild_planner::ignore` with moby/patternmatcher v0.6.1 and
//! `ignorefile.ReadAll`, using the tables in `shared/conformance/dockerignore/`
//! (see SOURCE.md there). Every row must pass.

use std::path::PathBuf;

use rbuild_planner::ignore::{read_ignore_file, IgnoreMatcher, ParentMatch};

fn tables_dir() -> Option<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/dockerignore");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "conformance tables missing at {} (required when CI=true)",
            dir.display()
        );
    }
    println!(
        "SKIPPED: dockerignore conformance tables not found at {}",
        dir.display()
    );
    None
}

/// Data rows of a TSV table: split on `\n` and `\t` only, header skipped.
fn rows(dir: &std::path::Path, file: &str, columns: usize) -> Vec<(usize, Vec<String>)> {
    let text =
        std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"));
    text.split('\n')
        .enumerate()
        .skip(1)
        .filter(|(_, line)| !line.is_empty())
        .map(|(index, line)| {
            let fields: Vec<String> = line.split('\t').map(str::to_string).collect();
            assert_eq!(
                fields.len(),
                columns,
                "{file} line {}: expected {columns} fields, got {fields:?}",
                index + 1
            );
            (index + 1, fields)
        })
        .collect()
}

fn parse_bool(s: &str) -> bool {
    match s {
        "true" => true,
        "false" => false,
        other => panic!("not a boolean: {other:?}"),
    }
}

/// Upstream's package-level `MatchesOrParentMatches(path, patterns)`.
fn or_parent_matches(patterns: &[String], path: &str) -> Result<bool, String> {
    let m = IgnoreMatcher::new(patterns).map_err(|e| e.to_string())?;
    m.matches(path).map_err(|e| e.to_string())
}

/// The same question answered by walking from the top with
/// `matches_with_parent` (upstream `MatchesUsingParentResults`): the parent
/// prefixes upstream would try, then the path itself.
fn walk_matches(patterns: &[String], path: &str) -> Result<bool, String> {
    let m = IgnoreMatcher::new(patterns).map_err(|e| e.to_string())?;
    let file = clean(path);
    if file == "." {
        return Ok(false); // the context root is never walked as an entry
    }
    let mut steps: Vec<String> = Vec::new();
    if let Some(i) = file.rfind('/') {
        let parent = if i == 0 { "/" } else { &file[..i] };
        steps.extend(
            parent
                .match_indices('/')
                .map(|(j, _)| parent[..j].to_string()),
        );
        steps.push(parent.to_string());
    }
    steps.push(file);
    let mut info = ParentMatch::default();
    let mut excluded = false;
    for step in &steps {
        let (e, next) = m
            .matches_with_parent(step, &info)
            .map_err(|e| e.to_string())?;
        excluded = e;
        info = next;
    }
    Ok(excluded)
}

/// Minimal `filepath.Clean` for the test paths (none contain `..`).
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    match (rooted, parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".to_string(),
        (false, false) => parts.join("/"),
    }
}

#[test]
fn matches_table() {
    let Some(dir) = tables_dir() else { return };
    let table = rows(&dir, "matches.tsv", 3);
    assert_eq!(table.len(), 110, "matches.tsv row count");
    let mut failures = Vec::new();
    for (line, f) in &table {
        let patterns = vec![f[0].clone()];
        let expected = parse_bool(&f[2]);
        let direct = or_parent_matches(&patterns, &f[1]);
        let walked = walk_matches(&patterns, &f[1]);
        if direct != Ok(expected) || walked != Ok(expected) {
            failures.push(format!(
                "line {line}: pattern {:?} path {:?}: expected {expected}, matches={direct:?}, walk={walked:?}",
                f[0], f[1]
            ));
        }
    }
    println!(
        "dockerignore matches.tsv: {}/{} rows pass",
        table.len() - failures.len(),
        table.len()
    );
    assert!(
        failures.is_empty(),
        "failing rows:\n{}",
        failures.join("\n")
    );
}

#[test]
fn exclusions_table() {
    let Some(dir) = tables_dir() else { return };
    let table = rows(&dir, "exclusions.tsv", 3);
    assert_eq!(table.len(), 10, "exclusions.tsv row count");
    let mut failures = Vec::new();
    for (line, f) in &table {
        let patterns: Vec<String> = if f[0].is_empty() {
            Vec::new()
        } else {
            f[0].split(" ; ").map(str::to_string).collect()
        };
        let expected = parse_bool(&f[2]);
        let direct = or_parent_matches(&patterns, &f[1]);
        let walked = walk_matches(&patterns, &f[1]);
        if direct != Ok(expected) || walked != Ok(expected) {
            failures.push(format!(
                "line {line}: patterns {patterns:?} path {:?}: expected {expected}, matches={direct:?}, walk={walked:?}",
                f[1]
            ));
        }
    }
    println!(
        "dockerignore exclusions.tsv: {}/{} rows pass",
        table.len() - failures.len(),
        table.len()
    );
    assert!(
        failures.is_empty(),
        "failing rows:\n{}",
        failures.join("\n")
    );
}

#[test]
fn bad_patterns_table() {
    let Some(dir) = tables_dir() else { return };
    let table = rows(&dir, "bad-patterns.tsv", 4);
    assert!(!table.is_empty(), "bad-patterns.tsv is empty");
    let mut failures = Vec::new();
    for (line, f) in &table {
        let patterns = vec![f[0].clone()];
        let outcome = match (f[2].as_str(), IgnoreMatcher::new(&patterns)) {
            ("new", Err(_)) => Ok(()),
            ("new", Ok(_)) => Err("IgnoreMatcher::new accepted it".to_string()),
            ("match", Err(e)) => Err(format!("IgnoreMatcher::new failed: {e}")),
            ("match", Ok(m)) => {
                // Must fail, and fail again (no poisoned state, no panic).
                match (m.matches(&f[1]), m.matches(&f[1])) {
                    (Err(_), Err(_)) => Ok(()),
                    (a, b) => Err(format!("matching gave {a:?} then {b:?}")),
                }
            }
            (other, _) => Err(format!("unknown error_at {other:?}")),
        };
        if let Err(why) = outcome {
            failures.push(format!(
                "line {line}: pattern {:?} (error_at {}): {why}",
                f[0], f[2]
            ));
        }
    }
    println!(
        "dockerignore bad-patterns.tsv: {}/{} rows pass",
        table.len() - failures.len(),
        table.len()
    );
    assert!(
        failures.is_empty(),
        "failing rows:\n{}",
        failures.join("\n")
    );
}

#[test]
fn readall_case() {
    let Some(dir) = tables_dir() else { return };
    let input = std::fs::read_to_string(dir.join("readall-input.dockerignore"))
        .expect("reading readall-input.dockerignore");
    let expected = std::fs::read_to_string(dir.join("readall-expected.txt"))
        .expect("reading readall-expected.txt");
    let expected: Vec<String> = expected.lines().map(str::to_string).collect();
    let got = read_ignore_file(&input);
    let pass = got == expected;
    println!(
        "dockerignore readall: {}/1 cases pass ({} patterns)",
        usize::from(pass),
        expected.len()
    );
    assert_eq!(
        got, expected,
        "read_ignore_file(readall-input.dockerignore)"
    );
}
