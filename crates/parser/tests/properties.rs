//! Quick property tests run in CI: on Dockerfile-like text built from the
//! pieces that make parsing hard (escapes, quotes, heredoc markers, JSON,
//! flags, continuations), parsing never panics and every span it reports
//! lies inside the input with start ≤ end. The long fuzzing runs live in `fuzz/`.

use proptest::prelude::*;
use rbuild_parser::{parse, parse_nodes, Args, Node, Span};

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("FROM ".to_string()),
        Just("RUN ".to_string()),
        Just("COPY ".to_string()),
        Just("ENV ".to_string()),
        Just("ONBUILD ".to_string()),
        Just("HEALTHCHECK ".to_string()),
        Just("--mount=type=cache,target=/x ".to_string()),
        Just("--from=a ".to_string()),
        Just("<<EOF".to_string()),
        Just("<<-'E'".to_string()),
        Just("EOF".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just(" \\\n".to_string()),
        Just("`\n".to_string()),
        Just("# escape=`\n".to_string()),
        Just("# c\n".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("[1]".to_string()),
        Just("a=b ".to_string()),
        Just("\"q ".to_string()),
        Just("' ".to_string()),
        Just("${V:-w} ".to_string()),
        Just("\t".to_string()),
        Just("é☃".to_string()),
        "[ -~]{0,8}",
    ]
}

fn dockerfile() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..40).prop_map(|v| v.concat())
}

fn check_span(span: Span, lines: u32) {
    assert!(span.start <= span.end, "{span:?}");
    assert!(
        span.start.line >= 1 && span.end.line <= lines,
        "{span:?} outside {lines} lines"
    );
}

fn check_node(n: &Node, lines: u32) {
    check_span(n.span, lines);
    check_span(n.keyword.span, lines);
    n.flags.iter().for_each(|f| check_span(f.span, lines));
    match &n.args {
        Args::Words(w) => w.iter().for_each(|w| check_span(w.span, lines)),
        Args::KeyValues(kv) => kv.iter().for_each(|kv| {
            check_span(kv.key.span, lines);
            check_span(kv.value.span, lines);
        }),
        Args::Nested(child) => check_node(child, lines),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics_and_spans_are_in_range(src in dockerfile()) {
        let lines = src.split('\n').count() as u32;
        match parse_nodes(&src) {
            Ok(raw) => raw.nodes.iter().for_each(|n| check_node(n, lines)),
            Err(e) => check_span(e.span, lines.max(1)),
        }
        if let Err(e) = parse(&src) {
            check_span(e.span, lines.max(1));
        }
    }

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,200}") {
        let _ = parse(&src);
    }
}
