//! Unit tests for the expansion engine. BuildKit's table files are checked in
//! `tests/shell_conformance.rs`; these cover what only its Go tests check
//! (required variables, pattern operators, matched/unmatched names) and the
//! options the tables do not exercise.

use super::*;
use proptest::prelude::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn word(input: &str, vars: &[(&str, &str)]) -> Result<String, ExpandError> {
    Lexer::new('\\').process_word(input, &env(vars))
}

fn words(lexer: &Lexer, input: &str, vars: &[(&str, &str)]) -> Vec<String> {
    lexer.process_words(input, &env(vars)).unwrap()
}

#[test]
fn required_variables() {
    let set = [("VAR", "plain"), ("ARG", "x")];
    let empty = [("VAR", ""), ("ARG", "x")];
    let unset = [("ARG", "x")];

    // `:?` rejects empty and unset; the message is expanded.
    let no_empty = "${VAR:?message here$ARG}";
    assert_eq!(word(no_empty, &set).unwrap(), "plain");
    let e = word(no_empty, &empty).unwrap_err();
    assert_eq!(e.message, "VAR: message herex");
    assert_eq!(e.offset, 0);
    assert_eq!(
        word(no_empty, &unset).unwrap_err().message,
        "VAR: message herex"
    );

    // `?` rejects only unset.
    let no_unset = "${VAR?message here$ARG}";
    assert_eq!(word(no_unset, &set).unwrap(), "plain");
    assert_eq!(word(no_unset, &empty).unwrap(), "");
    assert_eq!(
        word(no_unset, &unset).unwrap_err().message,
        "VAR: message herex"
    );

    // Default messages, and the offset of the `$`.
    let e = word("ab${VAR:?}", &empty).unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.offset),
        ("VAR: is not allowed to be empty", 2)
    );
    let e = word("ab${VAR?}", &unset).unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.offset),
        ("VAR: is not allowed to be unset", 2)
    );
}

/// Variable assignments for one case.
type Vars = &'static [(&'static str, &'static str)];

/// Expected outcome of one `process_word_with_matches` case.
enum Want<'a> {
    Ok(&'a str, &'a [&'a str], &'a [&'a str]),
    Err,
}

#[test]
fn expansion_operators_and_matches() {
    let cases: &[(&str, Vars, Want)] = &[
        ("plain", &[("A", "a")], Want::Ok("plain", &[], &[])),
        (
            "x ${MISSING}",
            &[("A", "a")],
            Want::Ok("x ", &[], &["MISSING"]),
        ),
        ("x ${A}$A", &[("A", "a")], Want::Ok("x aa", &["A"], &[])),
        // `-` and `:-` differ on set-but-empty.
        (
            "${A-1}|${E-2}|${U-3}",
            &[("A", "a"), ("E", "")],
            Want::Ok("a||3", &["A", "E"], &["U"]),
        ),
        (
            "${A:-1}|${E:-2}|${U:-3}",
            &[("A", "a"), ("E", "")],
            Want::Ok("a|2|3", &["A", "E"], &["U"]),
        ),
        ("${U:-}", &[], Want::Ok("", &[], &["U"])),
        // `+` and `:+` likewise.
        (
            "${A+1}|${E+2}|${U+3}",
            &[("A", "a"), ("E", "")],
            Want::Ok("1|2|", &["A", "E"], &["U"]),
        ),
        (
            "${A:+1}|${E:+2}|${U:+3}",
            &[("A", "a"), ("E", "")],
            Want::Ok("1||", &["A", "E"], &["U"]),
        ),
        ("${A?no}", &[("A", "a")], Want::Ok("a", &["A"], &[])),
        ("${E?no}", &[("E", "")], Want::Ok("", &["E"], &[])),
        ("${U?no}", &[], Want::Err),
        ("${A:?no}", &[("A", "a")], Want::Ok("a", &["A"], &[])),
        ("${E:?no}", &[("E", "")], Want::Err),
        ("${U:?}", &[], Want::Err),
        // Assignment forms and colon before a pattern operator are rejected.
        ("${A=x}", &[("A", "a")], Want::Err),
        ("${A:=x}", &[("A", "a")], Want::Err),
        ("${A=}", &[], Want::Err),
        ("${A:#x}", &[], Want::Err),
        ("${A:##x}", &[], Want::Err),
        ("${A:%x}", &[], Want::Err),
        ("${A:%%x}", &[], Want::Err),
        // Prefix removal: shortest / longest, escapes, expanded patterns.
        ("${A#*x}", &[("A", "axbxc")], Want::Ok("bxc", &["A"], &[])),
        ("${A##*x}", &[("A", "axbxc")], Want::Ok("c", &["A"], &[])),
        ("${A#*}", &[("A", "abc")], Want::Ok("abc", &["A"], &[])),
        ("${A##*}", &[("A", "abc")], Want::Ok("", &["A"], &[])),
        ("${A#}", &[("A", "abc")], Want::Ok("abc", &["A"], &[])),
        ("${A##}", &[("A", "abc")], Want::Ok("abc", &["A"], &[])),
        ("${A#?\\?}", &[("A", "x??y")], Want::Ok("?y", &["A"], &[])),
        (
            "${A#$P}",
            &[("A", "aab"), ("P", "a")],
            Want::Ok("ab", &["A", "P"], &[]),
        ),
        (
            "${A#$P}",
            &[("A", "aab"), ("P", "")],
            Want::Ok("aab", &["A", "P"], &[]),
        ),
        // The doubled operator is recognised after expansion.
        (
            "${A#$P}",
            &[("A", "aab"), ("P", "#*a")],
            Want::Ok("b", &["A", "P"], &[]),
        ),
        (
            "${A#()[]{\\}^$.\\*\\?|\\\\}",
            &[("A", "()[]{}^$.*?|\\rest")],
            Want::Ok("rest", &["A"], &[]),
        ),
        ("${U#x}", &[], Want::Ok("", &[], &["U"])),
        ("${A#\\x}", &[("A", "x")], Want::Err),
        // Suffix removal.
        ("${A%x*}", &[("A", "axbxc")], Want::Ok("axb", &["A"], &[])),
        ("${A%%x*}", &[("A", "axbxc")], Want::Ok("a", &["A"], &[])),
        ("${A%%\\**}", &[("A", "ab**")], Want::Ok("ab", &["A"], &[])),
        (
            "${A%%\\**\\*}",
            &[("A", "a***b*")],
            Want::Ok("a", &["A"], &[]),
        ),
        ("${A%}", &[("A", "abc")], Want::Ok("abc", &["A"], &[])),
        (
            "${A%%$P}",
            &[("A", "abc"), ("P", "")],
            Want::Ok("abc", &["A", "P"], &[]),
        ),
        (
            "${U:-.}${A%c}${U:-.}",
            &[("A", "abc")],
            Want::Ok(".ab.", &["A"], &["U"]),
        ),
        // Substitution: first / all, wildcards, `/` in values and patterns.
        (
            "${A/o/0}|${A//o/0}",
            &[("A", "foo")],
            Want::Ok("f0o|f00", &["A"], &[]),
        ),
        (
            "${A/$N/.}|${A//$N/.}",
            &[("A", "/x*/*/*.txt"), ("N", "\\*/")],
            Want::Ok("/x.*/*.txt|/x..*.txt", &["A", "N"], &[]),
        ),
        (
            "${A/$N/}|${A//$N/}",
            &[("A", "/tmp/tmp/f"), ("N", "/tmp")],
            Want::Ok("/tmp/f|/f", &["A", "N"], &[]),
        ),
        (
            "${A/$N/$R}|${A//$N/$R}",
            &[("A", "/a/b/c/d"), ("N", "/?/"), ("R", "/")],
            Want::Ok("/b/c/d|/b/d", &["A", "N", "R"], &[]),
        ),
        (
            "${A/$N/$R}",
            &[("A", "http://x.org"), ("N", "http://"), ("R", "https://")],
            Want::Ok("https://x.org", &["A", "N", "R"], &[]),
        ),
        (
            "${A//\\//\\/}",
            &[("A", "/a/b")],
            Want::Ok("\\/a\\/b", &["A"], &[]),
        ),
        (
            "${A/$P/ww}",
            &[("A", "ab"), ("P", "")],
            Want::Ok("wwab", &["A", "P"], &[]),
        ),
        ("${A///}", &[("A", "ab")], Want::Ok("ab", &["A"], &[])),
        ("${U///}", &[], Want::Ok("", &[], &["U"])),
        ("${A//ww}", &[("A", "ab")], Want::Err),
        ("${A//}", &[("A", "ab")], Want::Err),
        ("${A/}", &[("A", "ab")], Want::Err),
        // Unbalanced or malformed braces.
        ("${}", &[], Want::Err),
        ("${:}", &[], Want::Err),
        ("${A", &[], Want::Err),
        ("${A:-x", &[], Want::Err),
        ("${A:-${B}", &[], Want::Err),
        ("${.}", &[], Want::Err),
        ("${A.}", &[], Want::Err),
        // Positional and special parameters are just unset names.
        (
            "$1${1}$@${#}$$",
            &[],
            Want::Ok("", &[], &["1", "@", "#", "$"]),
        ),
        ("${#:-n}", &[], Want::Ok("n", &[], &["#"])),
    ];
    let lexer = Lexer::new('\\');
    for (input, vars, want) in cases {
        let got = lexer.process_word_with_matches(input, &env(vars));
        match (want, got) {
            (Want::Ok(text, matched, unmatched), Ok((got, matches))) => {
                assert_eq!(got, *text, "{input}");
                assert_eq!(matches.matched, names(matched), "{input}: matched");
                assert_eq!(matches.unmatched, names(unmatched), "{input}: unmatched");
            }
            (Want::Err, Err(_)) => {}
            (Want::Ok(..), Err(e)) => panic!("{input}: unexpected error {e:?}"),
            (Want::Err, Ok(got)) => panic!("{input}: expected an error, got {got:?}"),
        }
    }
}

#[test]
fn platform_file_names() {
    let release = "rel-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tgz";
    let base = [("VERSION", "v1"), ("TARGETOS", "linux")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let vars: Vec<_> = base.iter().chain(extra).copied().collect();
        word(release, &vars).unwrap()
    };
    assert_eq!(
        with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]),
        "rel-v1.linux-arm-v7.tgz"
    );
    assert_eq!(
        with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]),
        "rel-v1.linux-arm64.tgz"
    );
    assert_eq!(with(&[("TARGETARCH", "arm64")]), "rel-v1.linux-arm64.tgz");
}

#[test]
fn environments() {
    // Set-but-empty is not unset, for every implementation.
    let hash = env(&[("foo", "bar"), ("empty", "")]);
    let tree: BTreeMap<String, String> = hash.clone().into_iter().collect();
    let sources: [&dyn Env; 4] = [&hash, &tree, &&hash, &&&tree];
    for e in sources {
        assert_eq!(e.get("foo"), Some("bar"));
        assert_eq!(e.get("empty"), Some(""));
        assert_eq!(e.get("car"), None);
        assert_eq!(e.get("FOO"), None, "names are case-sensitive");
        assert_eq!(
            Lexer::new('\\')
                .process_word("${empty-x}${car-y}", e)
                .unwrap(),
            "y"
        );
    }
    assert_eq!(EmptyEnv.get("foo"), None);
    assert_eq!(
        Lexer::new('\\').process_word("a$foo", &EmptyEnv).unwrap(),
        "a"
    );
}

#[test]
fn backtick_escape() {
    let lexer = Lexer::new('`');
    let vars = env(&[("PWD", "/home")]);
    let w = |input: &str| lexer.process_word(input, &vars);
    // Backslashes are ordinary characters (Windows paths).
    assert_eq!(w("C:\\dir\\$PWD").unwrap(), "C:\\dir\\/home");
    assert_eq!(w("`$PWD").unwrap(), "$PWD");
    assert_eq!(w("a` b``").unwrap(), "a b`");
    assert_eq!(w("\"`\"`$PWD```x\"").unwrap(), "\"$PWD``x");
    assert_eq!(w("'`'").unwrap(), "`");
    assert_eq!(w("trailing`").unwrap(), "trailing");
    assert!(w("\"`\"").is_err());
    assert_eq!(lexer.process_words("a` b c", &vars).unwrap(), ["a b", "c"]);
    // In patterns the backtick is kept and a backslash still escapes.
    assert_eq!(
        lexer
            .process_word("${PWD#*\\*}", &env(&[("PWD", "a*b")]))
            .unwrap(),
        "b"
    );
    assert_eq!(
        lexer
            .process_word("${PWD%`}}", &env(&[("PWD", "a`}")]))
            .unwrap(),
        "a"
    );
}

#[test]
fn escapes() {
    // Outside quotes the escape character escapes anything; inside double
    // quotes only `"`, `$` and itself.
    assert_eq!(word("a\\b\\\\c\\$d", &[]).unwrap(), "ab\\c$d");
    assert_eq!(word("\"a\\b\\\\c\\$d\\\"\"", &[]).unwrap(), "a\\b\\c$d\"");
    let raw = Lexer {
        raw_escapes: true,
        ..Lexer::new('\\')
    };
    assert_eq!(
        raw.process_word("a\\b\\\\c\\$d", &EmptyEnv).unwrap(),
        "a\\b\\\\c\\$d"
    );
    assert_eq!(
        raw.process_word("\"\\$x\\\\\"", &EmptyEnv).unwrap(),
        "\\$x\\\\"
    );
    // BuildKit doubles a raw escape that escapes nothing inside quotes.
    assert_eq!(raw.process_word("\"\\t\"", &EmptyEnv).unwrap(), "\\\\t");
    assert_eq!(raw.process_word("end\\", &EmptyEnv).unwrap(), "end\\");
    // `${V:-w}` words always process escapes; pattern words always keep them.
    assert_eq!(raw.process_word("${U:-\\a}", &EmptyEnv).unwrap(), "a");
    assert_eq!(word("${A#\"\\x\"}", &[("A", "\\xy")]).unwrap(), "y");
}

#[test]
fn skip_unset_env_keeps_text() {
    let lexer = Lexer {
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let vars = env(&[("A", "a")]);
    let w = |input: &str| lexer.process_word(input, &vars).unwrap();
    assert_eq!(w("$A$U${U}${A}"), "a$U${U}a");
    assert_eq!(w("${U:-x}${U+y}${A:-x}"), "${U:-x}${U+y}a");
    assert_eq!(w("${U#*}${U%%x}${U/a/b}"), "${U#*}${U%%x}${U/a/b}");
    // The word inside is expanded; `//` comes back as `/`, as in BuildKit.
    assert_eq!(w("${U:-\"$A\"}${U//x/$A}"), "${U:-a}${U/x/a}");
    // An unknown operator on an unset variable is returned, not rejected.
    assert_eq!(w("${U:=x}"), "${U:=x}");
    assert!(lexer.process_word("${A:=x}", &vars).is_err());
}

#[test]
fn raw_quotes_and_skipped_quotes() {
    let raw = Lexer {
        raw_quotes: true,
        ..Lexer::new('\\')
    };
    let vars = env(&[("A", "a b")]);
    assert_eq!(raw.process_word("'x'\"$A\"", &vars).unwrap(), "'x'\"a b\"");
    assert_eq!(
        raw.process_words("'x y' \"$A\"", &vars).unwrap(),
        ["'x y'", "\"a b\""]
    );
    let skip = Lexer {
        skip_process_quotes: true,
        ..Lexer::new('\\')
    };
    assert_eq!(skip.process_word("'$A' \"x", &vars).unwrap(), "'a b' \"x");
    assert_eq!(
        skip.process_words("'$A' \"x", &vars).unwrap(),
        ["'a", "b'", "\"x"]
    );
}

#[test]
fn word_splitting() {
    let lexer = Lexer::new('\\');
    let vars = [("S", " a  b "), ("E", "")];
    assert_eq!(words(&lexer, "x${S}y", &vars), ["x", "a", "b", "y"]);
    assert_eq!(words(&lexer, "x\"${S}\"y", &vars), ["x a  b y"]);
    assert_eq!(words(&lexer, " \t\n a\u{3000}b ", &vars), ["a", "b"]);
    assert_eq!(words(&lexer, "\"\" '' $E", &vars), Vec::<String>::new());
    assert_eq!(words(&lexer, "a\\ b\\\tc", &vars), ["a b\tc"]);
    // Text before a `${V:-w}` in the same word is kept (BuildKit since 2024
    // loses it: see the module documentation).
    assert_eq!(
        words(&lexer, "80${U:-80} x\"${U:-y}\"", &vars),
        ["8080", "xy"]
    );
    assert_eq!(words(&lexer, "a${U:-b c}d", &vars), ["ab", "cd"]);
    // `<<` and the blanks after it join the next word (heredoc markers).
    assert_eq!(
        words(&lexer, "cat << EOF >x", &vars),
        ["cat", "<< EOF", ">x"]
    );
    assert_eq!(words(&lexer, "a<<\t-EOF b<c", &vars), ["a<<\t-EOF", "b<c"]);
    assert_eq!(words(&lexer, "<<\nEOF", &vars), ["<<", "EOF"]);
    assert_eq!(
        lexer.process_word("cat <<  EOF", &EmptyEnv).unwrap(),
        "cat <<  EOF"
    );
}

#[test]
fn heredoc_marker_detection_mode() {
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    assert_eq!(
        lexer
            .process_words("cat <<\"EOF\" <<-'E2' \\<<x $X", &EmptyEnv)
            .unwrap(),
        ["cat", "<<\"EOF\"", "<<-'E2'", "\\<<x", "$X"]
    );
}

#[test]
fn dollar_without_name_is_literal() {
    assert_eq!(word("$ $. $/ a$", &[]).unwrap(), "$ $. $/ a$");
    assert_eq!(word("$'x'$\"y\"", &[]).unwrap(), "$x$y");
    assert_eq!(word("$001a$0b$@@", &[]).unwrap(), "ab@");
}

#[test]
fn unicode_names_and_values() {
    let vars = [("KOREAN", "한국어"), ("이름", "값"), ("X٣", "d")];
    assert_eq!(
        word("$KOREAN/$이름/$X٣/${이름:-z}", &vars).unwrap(),
        "한국어/값/d/값"
    );
    // A combining vowel sign is not a letter for Go: the name ends before it.
    assert_eq!(word("$X\u{093E}", &[("X", "x")]).unwrap(), "x\u{093E}");
    assert_eq!(word("${KOREAN#?}|${KOREAN%?}", &vars).unwrap(), "국어|한국");
    // A leading byte-order mark is dropped, as Go's scanner does.
    assert_eq!(word("\u{FEFF}a\u{FEFF}", &[]).unwrap(), "a\u{FEFF}");
}

#[test]
fn error_offsets() {
    let at = |input: &str| word(input, &[]).unwrap_err().offset;
    assert_eq!(at("ab'cd"), 2);
    assert_eq!(at("한\"cd"), 3);
    assert_eq!(at("x${A:-'y"), 1);
    assert_eq!(at("x${A:-${B}"), 1);
    assert_eq!(at("x${}"), 3);
    assert_eq!(at("x${A:=b}"), 4);
    assert_eq!(at("x${A/b"), 1);
    assert_eq!(at("x${A#\\q}"), 5);
    let e = word("${A:=b}", &[]).unwrap_err();
    assert!(e.message.contains("':='"), "{}", e.message);
    let e = word("${A", &[]).unwrap_err();
    assert_eq!(e.message, "unterminated ${ ... }: expected '}'");
    // A nested error is reported as such when the `${` is closed later.
    let e = word("${A:-${B:?oops}}", &[]).unwrap_err();
    assert_eq!((e.message.as_str(), e.offset), ("B: oops", 5));
}

#[test]
fn nesting_limit() {
    let nested = |depth: usize| "${A:-".repeat(depth) + "x" + &"}".repeat(depth);
    assert_eq!(word(&nested(MAX_NESTING), &[]).unwrap(), "x");
    assert!(word(&nested(MAX_NESTING + 1), &[]).is_err());
    let quoted = |depth: usize| "\"${A:-".repeat(depth) + "x" + &"}\"".repeat(depth);
    assert_eq!(word(&quoted(MAX_NESTING), &[]).unwrap(), "x");
    assert!(word(&"${A:-".repeat(100_000), &[]).is_err());
}

proptest! {
    #[test]
    fn never_panics(
        input in "[-${}:?#%/*\\\\'\"`<a-c0-9@ \t\n\u{FEFF}é한]{0,40}",
        any_input in any::<String>(),
        vars in proptest::collection::hash_map("[a-c0-9@#]{0,2}", any::<String>(), 0..4),
        opts in 0u8..32,
    ) {
        let mut lexer = Lexer::new(if opts & 1 == 0 { '\\' } else { '`' });
        lexer.raw_quotes = opts & 2 != 0;
        lexer.raw_escapes = opts & 4 != 0;
        lexer.skip_unset_env = opts & 8 != 0;
        lexer.skip_process_quotes = opts & 16 != 0;
        for input in [&input, &any_input] {
            let single = lexer.process_word_with_matches(input, &vars);
            if let Err(e) = &single {
                prop_assert!(e.offset <= input.len() && input.is_char_boundary(e.offset));
            }
            let split = lexer.process_words(input, &vars);
            // Both entry points accept and reject the same inputs.
            prop_assert_eq!(single.is_ok(), split.is_ok());
        }
    }
}
