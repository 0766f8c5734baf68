//! BuildKit's shell-lexer tables (`envVarTest`, `wordsTest`), read exactly as
//! BuildKit's `lex_test.go` reads them (see `SOURCE.md` beside the data):
//! every row must pass.

use rbuild_parser::shell::{ExpandError, Lexer};
use std::collections::HashMap;
use std::path::PathBuf;

/// `../shared/conformance/buildkit-shell` beside the project root. A missing
/// folder skips the test with a message, except under CI (`CI=true`), where
/// missing data must not turn the test green.
fn data_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/buildkit-shell");
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

fn read(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// Go's `EnvsFromSlice`: `NAME=value` split at the first `=` (no `=` means
/// an empty value); a later entry for a name wins.
fn envs_from_slice(entries: &[String]) -> HashMap<String, String> {
    entries
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn show(result: &Result<impl std::fmt::Debug, ExpandError>) -> String {
    match result {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error {:?} at byte {}", e.message, e.offset),
    }
}

fn report(table: &str, rows: usize, failures: &[String]) {
    println!(
        "buildkit-shell {table}: {}/{rows} rows pass",
        rows - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{table} failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn env_var_test_rows() {
    let Some(dir) = data_dir() else { return };
    let text = read(&dir, "envVarTest");
    let env =
        envs_from_slice(&["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="].map(String::from));
    let lexer = Lexer::new('\\');
    let mut rows = 0;
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        let [platform, input, expected] = fields[..] else {
            panic!("envVarTest line {}: expected 3 fields: {line:?}", i + 1);
        };
        match platform {
            "A" | "U" => {}
            "W" => continue,
            _ => panic!("envVarTest line {}: bad platform {platform:?}", i + 1),
        }
        rows += 1;
        let got = lexer.process_word(input, &env);
        let pass = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(word), expected) => expected != "error" && word == expected,
            (Err(_), _) => false,
        };
        if !pass {
            failures.push(format!(
                "line {}: input {input:?}: expected {expected:?}, got {}",
                i + 1,
                show(&got)
            ));
        }
    }
    report("envVarTest", rows, &failures);
}

#[test]
fn words_test_rows() {
    let Some(dir) = data_dir() else { return };
    let text = read(&dir, "wordsTest");
    let lexer = Lexer::new('\\');
    let mut env_entries: Vec<String> = Vec::new();
    let mut rows = 0;
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        // `ENV name=value`: only leading spaces are trimmed, trailing spaces
        // belong to the value.
        if let Some(entry) = line.strip_prefix("ENV ") {
            env_entries.push(entry.trim_start_matches(' ').to_string());
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [input, expected] = fields[..] else {
            panic!(
                "wordsTest line {}: expected exactly one '|': {line:?}",
                i + 1
            );
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        rows += 1;
        let got = lexer.process_words(input, &envs_from_slice(&env_entries));
        let got_words = match &got {
            Ok(words) => words.iter().map(String::as_str).collect(),
            Err(_) => vec!["error"],
        };
        if got_words != expected {
            failures.push(format!(
                "line {}: input {input:?}: expected {expected:?}, got {}",
                i + 1,
                show(&got)
            ));
        }
    }
    report("wordsTest", rows, &failures);
}
