//! `.dockerignore` semantics, as Docker and BuildKit implement them
//! (moby/patternmatcher v0.6.1 and its `ignorefile.ReadAll`).
//!
//! * [`read_ignore_file`] turns the file's text into a pattern list.
//! * [`IgnoreMatcher::new`] compiles the list; invalid patterns are rejected as
//!   upstream `New` rejects them.
//! * [`IgnoreMatcher::matches`] answers "is this path excluded from the build
//!   context?" with upstream `MatchesOrParentMatches` semantics: patterns are
//!   walked in order, a pattern matches when it matches the path **or any parent
//!   directory of it**, an inclusion pattern is only tried while the path is not
//!   excluded and a `!` pattern only while it is, and the last matching pattern
//!   wins.
//! * [`IgnoreMatcher::matches_with_parent`] is the same question asked during a
//!   directory walk (upstream `MatchesUsingParentResults`): the per-pattern
//!   results of the parent directory are reused, so parents are not re-matched
//!   for every file.
//! * [`IgnoreMatcher::can_skip_dir`] tells a walker when an excluded directory
//!   can be pruned: only when no `!` pattern could re-include anything below it.
//!
//! Paths are slash-separated and relative to the context root. Backslash is an
//! escape character in patterns (upstream's Unix behaviour).
//!
//! Which file is read (decided by the caller, as BuildKit's dockerui frontend
//! does): `<Dockerfile path>.dockerignore` next to the Dockerfile if it exists,
//! otherwise `.dockerignore` at the root of the main context.

mod pattern;

use pattern::Pattern;

/// Why a pattern list could not be compiled or a pattern could not be matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// The pattern is just `!` once trimmed and cleaned (`!`, `! `, `!/`).
    #[error("illegal exclusion pattern: {pattern:?} (a lone \"!\" names nothing to re-include)")]
    IllegalExclusion {
        /// The pattern as given.
        pattern: String,
    },
    /// The pattern is not a valid glob (Go `filepath.Match` rejects it), e.g. an
    /// unterminated `[` class or a trailing `\`. Reported by [`IgnoreMatcher::new`].
    #[error("syntax error in pattern {pattern:?}: {reason}")]
    Syntax {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The pattern is a valid glob but the regular expression upstream builds
    /// from it is invalid (e.g. `[Local-Only]`, whose class holds the backwards
    /// range `l-O`). Like upstream, this is reported when the pattern is matched,
    /// on every attempt, not by [`IgnoreMatcher::new`].
    #[error("syntax error in pattern {pattern:?}: its regular expression `{regexp}` is invalid: {reason}")]
    Regexp {
        /// The pattern as given.
        pattern: String,
        /// The regular expression built from it (Go syntax).
        regexp: String,
        /// What the regular expression parser rejected.
        reason: String,
    },
    /// A [`ParentMatch`] from a different matcher was passed in.
    #[error("parent match state has {got} entries but the matcher has {expected} patterns")]
    ParentMismatch {
        /// Number of patterns in this matcher.
        expected: usize,
        /// Number of entries in the state that was passed in.
        got: usize,
    },
}

/// Reads a `.dockerignore` file the way `ignorefile.ReadAll` does.
///
/// * Lines end at `\n`; one trailing `\r` is dropped. A UTF-8 byte-order mark at
///   the start of the first line is dropped.
/// * A line whose **first character** is `#` is a comment (checked before
///   trimming, so `  # x` is the pattern `# x`).
/// * Lines are trimmed (Unicode white space); empty lines are skipped.
/// * A leading `!` is kept and the rest is trimmed again (`! /a` → `!a`).
/// * The rest is cleaned like Go's `filepath.Clean` (`//`, `.` and `..` resolved,
///   trailing `/` dropped) and one leading `/` is removed unless the pattern is
///   just `/`. A bare `!` is kept; [`IgnoreMatcher::new`] rejects it.
///
/// (Upstream's line scanner also fails on a line longer than 64 KiB; this
/// function has no error case and accepts such lines.)
pub fn read_ignore_file(text: &str) -> Vec<String> {
    let mut patterns = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let mut line = raw.strip_suffix('\r').unwrap_or(raw);
        if index == 0 {
            line = line.strip_prefix('\u{FEFF}').unwrap_or(line);
        }
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut out = String::new();
        if invert {
            out.push('!');
        }
        if !pattern.is_empty() {
            let cleaned = clean_path(pattern);
            match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => out.push_str(rest),
                _ => out.push_str(&cleaned),
            }
        }
        patterns.push(out);
    }
    patterns
}

/// Go's `path/filepath.Clean` on Unix: the shortest equivalent path, with `//`
/// collapsed, `.` removed and `..` resolved lexically; `""` becomes `"."`.
pub(crate) fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// Go's `path/filepath.Dir` on Unix.
fn dir_of(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean_path(&path[..=i]),
        None => ".".to_string(),
    }
}

/// The parent-directory prefixes upstream tries for `file`: for `a/b/c`, `a`
/// then `a/b`. (For an absolute path the first prefix is the empty string.)
fn parent_prefixes(file: &str) -> Vec<String> {
    let parent = dir_of(file);
    if parent == "." {
        return Vec::new();
    }
    let mut prefixes: Vec<String> = parent
        .match_indices('/')
        .map(|(i, _)| parent[..i].to_string())
        .collect();
    prefixes.push(parent);
    prefixes
}

/// Per-pattern results for a directory, handed back to
/// [`IgnoreMatcher::matches_with_parent`] for its entries (upstream `MatchInfo`).
///
/// The default value means "nothing known about the parent"; then every parent
/// prefix of the path is matched, as [`IgnoreMatcher::matches`] does. Use it for
/// entries of the context root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentMatch {
    matched: Vec<bool>,
}

/// A compiled `.dockerignore` pattern list.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

impl IgnoreMatcher {
    /// Compiles `patterns` in order, as upstream `New` does: each is trimmed
    /// (empty ones are skipped) and cleaned; a leading `!` makes it a re-include
    /// pattern. Fails on a lone `!` and on patterns Go's `filepath.Match` rejects.
    ///
    /// A pattern that passes those checks but whose regular expression is
    /// invalid is accepted here and fails when matched (see
    /// [`IgnoreError::Regexp`]), exactly as upstream.
    pub fn new(patterns: &[String]) -> Result<IgnoreMatcher, IgnoreError> {
        let mut compiled = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            if let Some(p) = Pattern::new(pattern)? {
                compiled.push(p);
            }
        }
        Ok(IgnoreMatcher { patterns: compiled })
    }

    /// Whether any pattern is a `!` (re-include) pattern.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(Pattern::is_exclusion)
    }

    /// The compiled patterns in order: the cleaned text (without `!`) and whether
    /// it is a `!` pattern.
    pub fn patterns(&self) -> impl Iterator<Item = (&str, bool)> + '_ {
        self.patterns
            .iter()
            .map(|p| (p.cleaned(), p.is_exclusion()))
    }

    /// Is `path` excluded from the build context? Upstream's package-level
    /// `MatchesOrParentMatches`: the path is cleaned first, and the context root
    /// (`.`, `""`, `./`) is never excluded.
    ///
    /// Fails only when a pattern with an invalid regular expression has to be
    /// evaluated for this path.
    pub fn matches(&self, path: &str) -> Result<bool, IgnoreError> {
        let file = clean_path(path);
        if file == "." {
            return Ok(false);
        }
        let mut parents: Option<Vec<String>> = None;
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion pattern only matters while the path is not excluded,
            // a `!` pattern only while it is.
            if pattern.is_exclusion() != matched {
                continue;
            }
            let mut hit = pattern.matches(&file)?;
            if !hit {
                let parents = parents.get_or_insert_with(|| parent_prefixes(&file));
                hit = parents
                    .iter()
                    .any(|parent| pattern.matches(parent).unwrap_or(false));
            }
            if hit {
                matched = !pattern.is_exclusion();
            }
        }
        Ok(matched)
    }

    /// The walking form of [`matches`](Self::matches) (upstream
    /// `MatchesUsingParentResults`). `path` is the entry's path relative to the
    /// context root as a walker produces it (slash-separated, no `.` or `..`
    /// segments, no trailing `/`; it is not cleaned here). `parent` is the state
    /// returned for the entry's parent directory, or `ParentMatch::default()` for
    /// entries of the root.
    ///
    /// Returns whether the entry is excluded and, for a directory, the state to
    /// pass for its entries. A pattern that matched the parent counts as
    /// matching the entry without being evaluated again.
    pub fn matches_with_parent(
        &self,
        path: &str,
        parent: &ParentMatch,
    ) -> Result<(bool, ParentMatch), IgnoreError> {
        let parent_matched = &parent.matched;
        let known = !parent_matched.is_empty();
        if known && parent_matched.len() != self.patterns.len() {
            return Err(IgnoreError::ParentMismatch {
                expected: self.patterns.len(),
                got: parent_matched.len(),
            });
        }
        let mut matched = false;
        let mut info = vec![false; self.patterns.len()];
        let mut parents: Option<Vec<String>> = None;
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = known && parent_matched[i];
            if !hit {
                if pattern.is_exclusion() != matched {
                    continue;
                }
                hit = pattern.matches(path)?;
                if !hit && !known {
                    let parents = parents.get_or_insert_with(|| parent_prefixes(path));
                    hit = parents
                        .iter()
                        .any(|parent| pattern.matches(parent).unwrap_or(false));
                }
            }
            info[i] = hit;
            if hit {
                matched = !pattern.is_exclusion();
            }
        }
        Ok((matched, ParentMatch { matched: info }))
    }

    /// Can a walker skip everything below `dir`? True only when `dir` is
    /// excluded ([`matches`](Self::matches) is `Ok(true)`) **and** no `!` pattern
    /// could match anything below it, so that every path below `dir` is excluded
    /// too. When this is false the walker must descend: a later `!` pattern
    /// (`** ; !keep/me`, `node_modules ; !**/*.md`) may re-include something.
    ///
    /// Also sound for a walk that uses
    /// [`matches_with_parent`](Self::matches_with_parent) results: if the walk
    /// finds `dir` excluded and [`may_reinclude_below`](Self::may_reinclude_below)
    /// is false, everything below is excluded.
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        matches!(self.matches(dir), Ok(true)) && !self.may_reinclude_below(dir)
    }

    /// Could some `!` pattern match a path strictly below `dir` (or one of its
    /// parent directories below `dir`)? Conservative: `true` whenever this cannot
    /// be ruled out (e.g. `!**/*.go`, or a `!` pattern whose regular expression is
    /// invalid).
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir = clean_path(dir);
        if dir == "." {
            return self.has_exclusions();
        }
        let prefix = if dir.ends_with('/') {
            dir
        } else {
            format!("{dir}/")
        };
        self.patterns
            .iter()
            .any(|p| p.is_exclusion() && p.may_match_below(&prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> IgnoreMatcher {
        let owned: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        IgnoreMatcher::new(&owned).expect("valid patterns")
    }

    /// Tiny deterministic PRNG (xorshift64*), so the fuzz tests need no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn string(&mut self, alphabet: &[&str], max_len: usize) -> String {
            let len = self.below(max_len + 1);
            (0..len)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect()
        }
    }

    #[test]
    fn clean_path_is_gos() {
        let cases = [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//", "/"),
            ("abc/", "abc"),
            ("abc//def", "abc/def"),
            ("./abc", "abc"),
            ("abc/./def", "abc/def"),
            ("abc/..", "."),
            ("abc/../..", ".."),
            ("../../abc", "../../abc"),
            ("/../abc", "/abc"),
            ("/abc/../../def", "/def"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("!docs/", "!docs"),
        ];
        for (input, want) in cases {
            assert_eq!(clean_path(input), want, "clean({input:?})");
        }
        assert_eq!(dir_of("a/b/c"), "a/b");
        assert_eq!(dir_of("/a"), "/");
        assert_eq!(dir_of("a"), ".");
        assert_eq!(parent_prefixes("a/b/c"), ["a", "a/b"]);
        assert_eq!(parent_prefixes("/a/b"), ["", "/a"]);
    }

    #[test]
    fn read_ignore_file_rules() {
        let text =
            "\u{FEFF}# comment\r\n  # not a comment\n\t/a//b/./c/\r\n\n!  /x/../y\n/\n!/\n.\n";
        assert_eq!(
            read_ignore_file(text),
            ["# not a comment", "a/b/c", "!y", "/", "!/", "."]
        );
        assert!(read_ignore_file("").is_empty());
        assert_eq!(read_ignore_file("x\n\u{FEFF}y"), ["x", "\u{FEFF}y"]);
    }

    #[test]
    fn new_reports_errors() {
        let err = IgnoreMatcher::new(&["!".to_string()]).unwrap_err();
        assert!(matches!(err, IgnoreError::IllegalExclusion { .. }), "{err}");
        let err = IgnoreMatcher::new(&["ok".to_string(), "a[".to_string()]).unwrap_err();
        assert!(err.to_string().contains("\"a[\""), "{err}");
        // Empty and blank patterns are skipped.
        let m = IgnoreMatcher::new(&["".into(), "  ".into()]).unwrap();
        assert_eq!(m.patterns().count(), 0);
        // Whitespace around `!` patterns is trimmed.
        let m = matcher(&["docs", "  !docs/README.md  "]);
        assert!(m.has_exclusions());
        assert_eq!(m.matches("docs/README.md"), Ok(false));
        assert_eq!(m.matches("docs/other.md"), Ok(true));
    }

    #[test]
    fn deferred_regexp_error_only_when_evaluated() {
        let m = matcher(&["[Local-Only]/"]);
        assert!(matches!(m.matches("x"), Err(IgnoreError::Regexp { .. })));
        assert!(matches!(m.matches("x"), Err(IgnoreError::Regexp { .. })));
        // Not evaluated: the path is already excluded, and it is not a `!` pattern.
        let m = matcher(&["x", "[Local-Only]"]);
        assert_eq!(m.matches("x"), Ok(true));
        assert!(m.matches("y").is_err());
    }

    /// Patterns whose regexp text means more than the glob suggests behave as
    /// they do in Docker (upstream copies `[`, `]` and `\x` into a Go regexp).
    #[test]
    fn upstream_quirks_are_kept() {
        let m = matcher(&["[*]"]); // regexp `^[[^/]*]$`
        assert_eq!(m.matches("]"), Ok(true));
        assert_eq!(m.matches("*"), Ok(false));
        let m = matcher(&["\\d"]); // `\d` is a digit class, not `d`
        assert_eq!(m.matches("7"), Ok(true));
        assert_eq!(m.matches("d"), Ok(false));
        let m = matcher(&["[!a]"]); // no `!` negation: the class is {'!', 'a'}
        assert_eq!(m.matches("a"), Ok(true));
        assert_eq!(m.matches("b"), Ok(false));
        let m = matcher(&["[^a]"]);
        assert_eq!(m.matches("b"), Ok(true));
        let m = matcher(&["abc/**"]);
        assert_eq!(m.matches("abc"), Ok(false));
        assert_eq!(m.matches("abc/x"), Ok(true));
    }

    #[test]
    fn walking_reuses_parent_results() {
        let m = matcher(&["**", "!util/docker/web", "util/docker/web/foo"]);
        let (a, pa) = m
            .matches_with_parent("util", &ParentMatch::default())
            .unwrap();
        let (b, pb) = m.matches_with_parent("util/docker", &pa).unwrap();
        let (c, pc) = m.matches_with_parent("util/docker/web", &pb).unwrap();
        let (d, _) = m.matches_with_parent("util/docker/web/foo", &pc).unwrap();
        let (e, _) = m.matches_with_parent("util/docker/web/bar", &pc).unwrap();
        assert_eq!((a, b, c, d, e), (true, true, false, true, false));
        let other = matcher(&["a"]);
        assert!(matches!(
            other.matches_with_parent("x", &pc),
            Err(IgnoreError::ParentMismatch {
                expected: 1,
                got: 3
            })
        ));
    }

    #[test]
    fn can_skip_dir_without_exclusions() {
        let m = matcher(&["node_modules", "build/", "*.log"]);
        assert!(m.can_skip_dir("node_modules"));
        assert!(m.can_skip_dir("build"));
        assert!(m.can_skip_dir("./build/"));
        assert!(!m.can_skip_dir("src"), "not excluded");
        assert!(!m.can_skip_dir("."), "the root is never excluded");
    }

    #[test]
    fn can_skip_dir_with_later_exclusions() {
        let m = matcher(&["**", "!util/docker/web"]);
        assert!(!m.can_skip_dir("util"), "util/docker/web is re-included");
        assert!(!m.can_skip_dir("util/docker"));
        assert!(m.can_skip_dir("vendor"));
        assert!(!m.can_skip_dir("util/docker/web"), "not excluded itself");

        let m = matcher(&["node_modules", "build", "!node_modules/keep.txt"]);
        assert!(!m.can_skip_dir("node_modules"));
        assert!(m.can_skip_dir("build"));

        // `!**/*.go` could re-include a file anywhere.
        let m = matcher(&["vendor", "!**/*.go"]);
        assert!(!m.can_skip_dir("vendor"));

        // `!*.md` only matches top-level names, so nothing below `docs` comes back.
        let m = matcher(&["*", "!*.md"]);
        assert!(m.can_skip_dir("docs"));
        assert_eq!(m.matches("docs/README.md"), Ok(true));
        assert_eq!(m.matches("README.md"), Ok(false));

        // `!*/keep` re-includes one level down.
        let m = matcher(&["**", "!*/keep"]);
        assert!(!m.can_skip_dir("a"));
        assert!(m.can_skip_dir("a/b"));

        // A `!` pattern whose regexp is invalid: never prune.
        let m = matcher(&["**", "![Local-Only]/x"]);
        assert!(!m.can_skip_dir("a"));

        // `!dir/**` (prefix form).
        let m = matcher(&["**", "!keep/**"]);
        assert!(!m.can_skip_dir("keep"));
        assert!(m.can_skip_dir("other"));
    }

    const PATTERN_ALPHABET: &[&str] = &[
        "a", "b", "c", "/", "*", "**", "?", ".", "[", "]", "^", "-", "\\", "!", " ", "a-c", "[a]",
        "[^b]", "{", "}", "(", ")", "|", "$", "+", "α", "☺", ":", "[:", ":]", "\\d", "\\p", "L",
        "\\Q", "\\E", "\\x4", "\t", "\u{FEFF}", "\n", "0",
    ];
    const PATH_ALPHABET: &[&str] = &["a", "b", "c", "/", ".", "..", "*", "[", "α", "☺", "\n", " "];

    #[test]
    fn fuzz_never_panics() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..4000 {
            let patterns: Vec<String> = (0..rng.below(4) + 1)
                .map(|_| rng.string(PATTERN_ALPHABET, 8))
                .collect();
            let _ = read_ignore_file(&patterns.join("\n"));
            for p in &patterns {
                let _ = pattern::glob_match(p, &rng.string(PATH_ALPHABET, 8));
            }
            let Ok(m) = IgnoreMatcher::new(&patterns) else {
                continue;
            };
            let mut parent = ParentMatch::default();
            let mut path = String::new();
            for _ in 0..4 {
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(&rng.string(PATH_ALPHABET, 5));
                let _ = m.matches(&path);
                let _ = m.can_skip_dir(&path);
                match m.matches_with_parent(&path, &parent) {
                    Ok((_, next)) => parent = next,
                    Err(_) => break,
                }
            }
        }
    }

    /// Soundness of `can_skip_dir`: whenever it says a directory can be pruned,
    /// every path below it is excluded, under both matching entry points.
    #[test]
    fn fuzz_can_skip_dir_is_sound() {
        const PATTERNS: &[&str] = &["a", "b", "/", "*", "**", "?", "[ab]", "!"];
        const SEGMENTS: &[&str] = &["a", "b", "ab", "ba", "c"];
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut pruned = 0;
        for _ in 0..3000 {
            let patterns: Vec<String> = (0..rng.below(4) + 1)
                .map(|_| {
                    let body = rng.string(&PATTERNS[..7], 6);
                    if rng.below(3) == 0 {
                        format!("!{body}")
                    } else {
                        body
                    }
                })
                .collect();
            let Ok(m) = IgnoreMatcher::new(&patterns) else {
                continue;
            };
            let depth = rng.below(2) + 1;
            let segments: Vec<&str> = (0..depth)
                .map(|_| SEGMENTS[rng.below(SEGMENTS.len())])
                .collect();
            let dir = segments.join("/");
            if !m.can_skip_dir(&dir) {
                continue;
            }
            pruned += 1;
            for _ in 0..10 {
                let extra: Vec<&str> = (0..rng.below(3) + 1)
                    .map(|_| SEGMENTS[rng.below(SEGMENTS.len())])
                    .collect();
                let below = format!("{dir}/{}", extra.join("/"));
                assert_eq!(
                    m.matches(&below),
                    Ok(true),
                    "{patterns:?}: pruned {dir:?} but {below:?} is included"
                );
                // The same through a walk (which prunes on its own result for
                // `dir` plus `may_reinclude_below`).
                let mut parent = ParentMatch::default();
                let mut walked = String::new();
                let mut dir_excluded = false;
                let mut excluded = false;
                for seg in below.split('/') {
                    if !walked.is_empty() {
                        walked.push('/');
                    }
                    walked.push_str(seg);
                    let (e, next) = m.matches_with_parent(&walked, &parent).unwrap();
                    if walked == dir {
                        dir_excluded = e;
                    }
                    excluded = e;
                    parent = next;
                }
                assert!(
                    !dir_excluded || excluded,
                    "{patterns:?}: walk prunes {dir:?} but includes {below:?}"
                );
            }
        }
        assert!(pruned > 100, "fuzz exercised too few prunes: {pruned}");
    }
}
