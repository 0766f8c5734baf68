//! The raw parse: Dockerfile text → [`Node`]s, with exactly BuildKit's rules
//! for directives, continuations, comments, flags, per-instruction argument
//! splitting, JSON (exec) form and heredocs.

use serde::Serialize;

use crate::directives::{DirectiveScanner, Directives};
use crate::error::{ParseError, ParseErrorKind};
use crate::logical::{physical_lines, LogicalLine, PhysicalLine, MAX_LINE_BYTES};
use crate::node::{Args, Heredoc, KeyValue, Node};
use crate::span::{Position, Span, Word};

/// The instruction keywords, lower case.
pub const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The result of the raw parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawDockerfile {
    pub directives: Directives,
    pub nodes: Vec<Node>,
    pub warnings: Vec<Warning>,
}

/// Something suspicious that is not an error (BuildKit warns on the same things).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub message: String,
    pub span: Span,
}

/// Go's `unicode.IsSpace`.
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// The `[\t\v\f\r ]` class BuildKit splits words on.
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_space).starts_with('#')
}

/// Removes a trailing line-continuation escape. Returns the remaining text and
/// whether the line is the last of its instruction.
///
/// The escape continues the line when it is the last non-blank character and
/// is not itself escaped (BuildKit's `([^E])E[ \t]*$|^E[ \t]*$`).
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// Parses Dockerfile text into BuildKit-shaped nodes.
pub fn parse_nodes(src: &str) -> Result<RawDockerfile, ParseError> {
    let lines = physical_lines(src);
    let mut scanner = DirectiveScanner::new();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut i = 0;

    while i < lines.len() {
        let first = &lines[i];
        i += 1;
        check_length(first)?;
        let trimmed = first.text.trim_start_matches(is_space);
        let column = 1 + (first.text.len() - trimmed.len()) as u32;
        if is_comment(first.text) {
            let comment = trimmed[1..].trim();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_string());
            }
        }
        if scanner.scan(trimmed, first.number, column)? {
            comments.pop();
            continue;
        }
        let escape = scanner.directives.escape;
        let content = if is_comment(trimmed) { "" } else { trimmed };
        let (piece, mut at_end) = trim_continuation(content, escape);
        if at_end && piece.is_empty() {
            continue;
        }
        let mut logical = LogicalLine::default();
        logical.push(piece, first.number, column);
        let mut last_line = first.number;
        let mut empty_continuation = false;
        while !at_end && i < lines.len() {
            let line = &lines[i];
            i += 1;
            check_length(line)?;
            last_line = line.number;
            if is_comment(line.text) {
                continue;
            }
            if line.text.trim_start_matches(is_space).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, end) = trim_continuation(line.text, escape);
            logical.push(piece, line.number, 1);
            at_end = end;
        }
        if empty_continuation {
            warnings.push(Warning {
                message: format!("Empty continuation line found in: {}", logical.text),
                span: Span::lines(first.number, last_line),
            });
        }

        let mut node = node_from_text(&logical, &logical.text, escape)?;
        if can_contain_heredoc(&node) && logical.text.contains("<<") {
            let markers = heredoc_markers(&logical)?;
            for mut heredoc in markers {
                i = read_heredoc_body(&lines, i, &mut heredoc, first.number)?;
                last_line = heredoc.span.end.line;
                node.heredocs.push(heredoc);
            }
        }
        let end_col = lines
            .get(last_line as usize - 1)
            .map_or(1, |l| l.text.chars().count() as u32 + 1);
        node.span = Span::new(node.keyword.span.start, Position::new(last_line, end_col));
        node.comments = std::mem::take(&mut comments);
        nodes.push(node);
    }

    if nodes.is_empty() {
        let last = lines.len().max(1) as u32;
        return Err(ParseError::new(
            ParseErrorKind::NoInstructions,
            Span::lines(1, last),
        ));
    }
    Ok(RawDockerfile {
        directives: scanner.directives,
        nodes,
        warnings,
    })
}

fn check_length(line: &PhysicalLine<'_>) -> Result<(), ParseError> {
    if line.text.len() > MAX_LINE_BYTES {
        return Err(ParseError::new(
            ParseErrorKind::LineTooLong,
            Span::lines(line.number, line.number),
        ));
    }
    Ok(())
}

/// Builds the node for one instruction, `text` being a slice of `logical.text`
/// (the whole line, or the part after `ONBUILD`).
fn node_from_text(logical: &LogicalLine, text: &str, escape: char) -> Result<Node, ParseError> {
    let text = text.trim_matches(is_space);
    let (keyword, after) = match text.find(is_blank) {
        Some(at) => (&text[..at], text[at..].trim_start_matches(is_blank)),
        None => (text, &text[text.len()..]),
    };
    let (rest, flags) = extract_flags(logical, after, escape);
    let rest = rest.trim_matches(is_space);
    let keyword = Word::new(keyword, logical.span_of(keyword));
    let lower = keyword.value.to_lowercase();

    let mut json = false;
    let args = match lower.as_str() {
        "run" | "cmd" | "entrypoint" | "shell" => {
            let (words, is_json) = maybe_json(logical, rest)?;
            json = is_json;
            Args::Words(words)
        }
        "add" | "copy" | "volume" => {
            let (words, is_json) = maybe_json_list(logical, rest)?;
            json = is_json;
            Args::Words(words)
        }
        "from" | "expose" => Args::Words(blank_separated(logical, rest)),
        "maintainer" | "stopsignal" | "user" | "workdir" => Args::Words(whole(logical, rest)),
        "arg" => Args::Words(
            split_words(rest, escape)
                .into_iter()
                .map(|(s, e, v)| {
                    let start = logical.offset_of(rest) + s;
                    Word::new(v, logical.span(start, logical.offset_of(rest) + e))
                })
                .collect(),
        ),
        "env" => Args::KeyValues(name_values(logical, rest, "ENV", escape)?),
        "label" => Args::KeyValues(name_values(logical, rest, "LABEL", escape)?),
        "healthcheck" => {
            let (words, is_json) = health_config(logical, rest)?;
            json = is_json;
            Args::Words(words)
        }
        "onbuild" if rest.is_empty() => Args::Words(Vec::new()),
        "onbuild" => Args::Nested(Box::new(node_from_text(logical, rest, escape)?)),
        _ => Args::Words(Vec::new()),
    };

    Ok(Node {
        span: logical.span_of(text),
        keyword,
        flags,
        args,
        json,
        heredocs: Vec::new(),
        original: logical.text.clone(),
        comments: Vec::new(),
    })
}

/// Splits off leading `--flag` words. Quotes are removed and the escape
/// character escapes the next one; a bare `--` ends the flags and is dropped.
fn extract_flags<'a>(logical: &LogicalLine, line: &'a str, escape: char) -> (&'a str, Vec<Word>) {
    let base = logical.offset_of(line);
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && is_space(chars[i].1) {
            i += 1;
        }
        let Some(&(start, _)) = chars.get(i) else {
            return (&line[line.len()..], flags);
        };
        if !line[start..].starts_with("--") {
            return (&line[start..], flags);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut blank_ok = false;
        while let Some(&(_, ch)) = chars.get(i) {
            if quote.is_none() && is_space(ch) {
                break;
            }
            i += 1;
            match quote {
                None if ch == '\'' || ch == '"' => {
                    quote = Some(ch);
                    blank_ok = true;
                }
                Some(q) if ch == q => quote = None,
                _ if ch == escape => {
                    if let Some(&(_, next)) = chars.get(i) {
                        word.push(next);
                        i += 1;
                    } else {
                        quote = None;
                    }
                }
                _ => word.push(ch),
            }
        }
        let end = chars.get(i).map_or(line.len(), |&(o, _)| o);
        if word == "--" {
            return (&line[end..], flags);
        }
        if blank_ok || !word.is_empty() {
            flags.push(Word::new(word, logical.span(base + start, base + end)));
        }
    }
}

/// The whole rest as one argument (none when empty).
fn whole(logical: &LogicalLine, rest: &str) -> Vec<Word> {
    if rest.is_empty() {
        return Vec::new();
    }
    vec![Word::new(rest, logical.span_of(rest))]
}

/// Split on runs of `[\t\v\f\r ]`.
fn blank_separated(logical: &LogicalLine, rest: &str) -> Vec<Word> {
    rest.split(is_blank)
        .filter(|s| !s.is_empty())
        .map(|s| Word::new(s, logical.span_of(s)))
        .collect()
}

/// RUN/CMD/ENTRYPOINT/SHELL: a JSON array of strings, or the whole rest as one
/// shell-form argument when it is not valid JSON.
fn maybe_json(logical: &LogicalLine, rest: &str) -> Result<(Vec<Word>, bool), ParseError> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match json_array(logical, rest)? {
        Some(words) => Ok((words, true)),
        None => Ok((whole(logical, rest), false)),
    }
}

/// ADD/COPY/VOLUME: a JSON array of strings, or blank-separated words.
fn maybe_json_list(logical: &LogicalLine, rest: &str) -> Result<(Vec<Word>, bool), ParseError> {
    match json_array(logical, rest)? {
        Some(words) => Ok((words, true)),
        None => Ok((blank_separated(logical, rest), false)),
    }
}

/// `Ok(None)` when `rest` is not a JSON array at all (then the caller falls
/// back to shell form); an error when it is an array holding a non-string.
fn json_array(logical: &LogicalLine, rest: &str) -> Result<Option<Vec<Word>>, ParseError> {
    let rest = rest.trim_start_matches(is_space);
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    let spans = crate::json::element_spans(rest);
    let base = logical.offset_of(rest);
    let mut words = Vec::with_capacity(values.len());
    for (idx, value) in values.into_iter().enumerate() {
        let (s, e) = spans.get(idx).copied().unwrap_or((0, rest.len()));
        let span = logical.span(base + s, base + e);
        match value {
            serde_json::Value::String(s) => words.push(Word::new(s, span)),
            _ => return Err(ParseError::new(ParseErrorKind::JsonNotStrings, span)),
        }
    }
    Ok(Some(words))
}

/// HEALTHCHECK: the first word is the type (`CMD`, `NONE`...), the rest is
/// like RUN.
fn health_config(logical: &LogicalLine, rest: &str) -> Result<(Vec<Word>, bool), ParseError> {
    let sep = rest.find(is_space).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = &rest[..sep];
    let cmd = rest[sep..].trim_start_matches(is_space);
    let (mut words, json) = maybe_json(logical, cmd)?;
    words.insert(0, Word::new(typ, logical.span_of(typ)));
    Ok((words, json))
}

/// Quote-aware words: whitespace outside quotes separates words; quotes and
/// escapes are kept in the words. Returns (start, end, text) with byte offsets
/// into `rest`.
pub(crate) fn split_words(rest: &str, escape: char) -> Vec<(usize, usize, String)> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut buf = String::new();
    let mut blank_ok = false;
    let mut start = 0;
    let mut i = 0;
    while let Some(&(pos, ch)) = chars.get(i) {
        match phase {
            Phase::Spaces => {
                if !is_space(ch) {
                    phase = Phase::Word;
                    start = pos;
                    continue;
                }
                i += 1;
            }
            Phase::Word => {
                if is_space(ch) {
                    if blank_ok || !buf.is_empty() {
                        words.push((start, pos, std::mem::take(&mut buf)));
                    }
                    blank_ok = false;
                    phase = Phase::Spaces;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                i += 1;
                if ch == escape {
                    // Outside quotes an escape keeps itself and the next character.
                    // (a trailing escape is dropped)
                    if let Some(&(_, next)) = chars.get(i) {
                        buf.push(ch);
                        buf.push(next);
                        i += 1;
                    }
                } else {
                    buf.push(ch);
                }
            }
            Phase::Quote(q) => {
                i += 1;
                if ch == q {
                    phase = Phase::Word;
                    buf.push(ch);
                } else if ch == escape && q != '\'' {
                    match chars.get(i) {
                        Some(&(_, next)) => {
                            buf.push(ch);
                            buf.push(next);
                            i += 1;
                        }
                        None => phase = Phase::Word,
                    }
                } else {
                    buf.push(ch);
                }
            }
        }
    }
    if phase != Phase::Spaces && (blank_ok || !buf.is_empty()) {
        words.push((start, rest.len(), buf));
    }
    words
}

/// ENV and LABEL: `k=v k2=v2`, or the legacy `k value with spaces`.
fn name_values(
    logical: &LogicalLine,
    rest: &str,
    keyword: &str,
    escape: char,
) -> Result<Vec<KeyValue>, ParseError> {
    let words = split_words(rest, escape);
    let base = logical.offset_of(rest);
    let Some((_, _, first)) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(at) = rest.find(is_blank) else {
            return Err(ParseError::new(
                ParseErrorKind::MissingValue {
                    keyword: keyword.to_string(),
                },
                logical.span_of(rest),
            ));
        };
        let key = &rest[..at];
        let value = rest[at..].trim_start_matches(is_blank);
        return Ok(vec![KeyValue {
            key: Word::new(key, logical.span_of(key)),
            value: Word::new(value, logical.span_of(value)),
            legacy: true,
        }]);
    }
    let mut pairs = Vec::with_capacity(words.len());
    for (s, e, word) in words {
        let Some(eq) = word.find('=') else {
            return Err(ParseError::new(
                ParseErrorKind::MissingEquals { word },
                logical.span(base + s, base + e),
            ));
        };
        let key_end = (base + s + eq).min(base + e);
        pairs.push(KeyValue {
            key: Word::new(&word[..eq], logical.span(base + s, key_end)),
            value: Word::new(
                &word[eq + 1..],
                logical.span((key_end + 1).min(base + e), base + e),
            ),
            legacy: false,
        });
    }
    Ok(pairs)
}

fn can_contain_heredoc(node: &Node) -> bool {
    let node = match &node.args {
        Args::Nested(child) if node.name() == "onbuild" => child,
        _ => node,
    };
    matches!(node.name().as_str(), "run" | "copy" | "add") && !node.json
}

/// Finds `<<EOF`-style markers on an instruction line.
fn heredoc_markers(logical: &LogicalLine) -> Result<Vec<Heredoc>, ParseError> {
    let words = crate::heredoc::markers(&logical.text).map_err(|msg| {
        ParseError::new(
            ParseErrorKind::InvalidHeredoc(msg),
            logical.span_of(&logical.text),
        )
    })?;
    Ok(words)
}

/// Reads the body of `heredoc` from `lines[i..]`; returns the index of the
/// first line after its terminator.
fn read_heredoc_body(
    lines: &[PhysicalLine<'_>],
    mut i: usize,
    heredoc: &mut Heredoc,
    start_line: u32,
) -> Result<usize, ParseError> {
    let first_body = lines.get(i).map_or(start_line + 1, |l| l.number);
    let mut content = String::new();
    while let Some(line) = lines.get(i) {
        i += 1;
        let candidate = if heredoc.chomp {
            line.text.trim_start_matches('\t')
        } else {
            line.text
        };
        if candidate == heredoc.name {
            heredoc.content = content;
            heredoc.span = Span::new(
                Position::new(first_body, 1),
                Position::new(line.number, line.text.chars().count() as u32 + 1),
            );
            return Ok(i);
        }
        content.push_str(line.full);
    }
    let last = lines.last().map_or(start_line, |l| l.number);
    Err(ParseError::new(
        ParseErrorKind::UnterminatedHeredoc {
            terminator: heredoc.name.clone(),
        },
        Span::lines(start_line, last),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::dump;

    fn d(src: &str) -> String {
        dump(&parse_nodes(src).unwrap().nodes)
    }

    #[test]
    fn flags_quotes_and_double_dash() {
        assert_eq!(
            d("COPY --user=me --doit=true foo /tmp/\n"),
            r#"(copy ["--user=me" "--doit=true"] "foo" "/tmp/")"#
        );
        assert_eq!(d("COPY -- foo /tmp/"), r#"(copy "foo" "/tmp/")"#);
        assert_eq!(d("CMD --doit -- [ ]"), r#"(cmd ["--doit"])"#);
        assert_eq!(
            d(r#"RUN --mount="type=bind,a b" x"#),
            r#"(run ["--mount=type=bind,a b"] "x")"#
        );
    }

    #[test]
    fn env_forms() {
        assert_eq!(
            d(r"ENV name=value\ value2"),
            r#"(env "name" "value\\ value2" "=")"#
        );
        assert_eq!(d("ENV name value"), r#"(env "name" "value" "")"#);
        assert_eq!(
            d(r#"ENV a="b c" d=e"#),
            r#"(env "a" "\"b c\"" "=" "d" "e" "=")"#
        );
        let err = parse_nodes("ENV PATH").unwrap_err();
        assert_eq!(
            err.kind,
            ParseErrorKind::MissingValue {
                keyword: "ENV".into()
            }
        );
        let err = parse_nodes("LABEL a=b c").unwrap_err();
        assert!(matches!(err.kind, ParseErrorKind::MissingEquals { .. }));
        assert_eq!(err.span.start, Position::new(1, 11));
    }

    #[test]
    fn json_and_fallback() {
        assert_eq!(d(r#"RUN ["echo", "hi"]"#), r#"(run "echo" "hi")"#);
        assert_eq!(d(r#"RUN ['echo']"#), r#"(run "['echo']")"#);
        assert_eq!(d(r#"CMD []"#), "(cmd)");
        assert!(parse_nodes(r#"CMD [ "echo", [ "nested json" ] ]"#).is_err());
    }

    #[test]
    fn onbuild_and_unknown() {
        assert_eq!(d("ONBUILD RUN echo test"), r#"(onbuild (run "echo test"))"#);
        assert_eq!(d("FOO bar"), r#"(foo "")"#);
        assert_eq!(
            d("HEALTHCHECK CONNECT TCP 7000"),
            r#"(healthcheck "CONNECT" "TCP 7000")"#
        );
    }

    #[test]
    fn continuation_comments_and_blank_lines() {
        let r = parse_nodes("RUN a \\\n# comment\n\n  b\nFROM x").unwrap();
        assert_eq!(dump(&r.nodes), "(run \"a   b\")\n(from \"x\")");
        assert_eq!(r.nodes[0].span.start.line, 1);
        assert_eq!(r.nodes[0].span.end.line, 4);
        assert_eq!(r.nodes[1].span.start.line, 5);
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0]
            .message
            .contains("Empty continuation line found in"));
    }

    #[test]
    fn escaped_escape_does_not_continue() {
        assert_eq!(d("RUN a \\\\\nRUN b"), "(run \"a \\\\\\\\\")\n(run \"b\")");
    }

    #[test]
    fn argument_spans_point_into_continuation_lines() {
        let r = parse_nodes("COPY a \\\n   bcd /x").unwrap();
        let w = r.nodes[0].words();
        assert_eq!(w[1].value, "bcd");
        assert_eq!(w[1].span.start, Position::new(2, 4));
        assert_eq!(w[1].span.end, Position::new(2, 7));
    }

    #[test]
    fn heredocs_are_read_and_hidden_from_the_dump() {
        let src = "RUN <<EOF\necho hi\nEOF\nCOPY <<-\"A\" <<B /dst/\n\tx $y\n\tA\nz\nB\nFROM s\n";
        let r = parse_nodes(src).unwrap();
        assert_eq!(
            dump(&r.nodes),
            "(run \"<<EOF\")\n(copy \"<<-\\\"A\\\"\" \"<<B\" \"/dst/\")\n(from \"s\")"
        );
        let h = &r.nodes[0].heredocs[0];
        assert_eq!(
            (h.name.as_str(), h.content.as_str(), h.expand),
            ("EOF", "echo hi\n", true)
        );
        let c = &r.nodes[1].heredocs;
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].name.as_str(), c[0].chomp, c[0].expand),
            ("A", true, false)
        );
        assert_eq!(c[0].chomped_content(), "x $y\n");
        assert_eq!(c[1].content, "z\n");
        assert_eq!(r.nodes[1].span.end.line, 8);
        assert_eq!(r.nodes[2].span.start.line, 9);
    }

    /// Found by the property test: a logical line made only of escaped
    /// newlines and blanks gave a span whose end preceded its start.
    #[test]
    fn blank_continuation_only_instruction_has_an_ordered_span() {
        let r = parse_nodes(" \\\n \\\n").unwrap();
        let n = &r.nodes[0];
        assert!(n.span.start <= n.span.end, "{:?}", n.span);
        assert!(n.keyword.span.start <= n.keyword.span.end);
        assert_eq!(
            dump(&r.nodes),
            "(\"\")",
            "BuildKit trims the empty keyword's space"
        );
    }

    #[test]
    fn unterminated_heredoc_is_an_error() {
        let err = parse_nodes("RUN <<EOF\necho\n").unwrap_err();
        assert!(matches!(
            err.kind,
            ParseErrorKind::UnterminatedHeredoc { .. }
        ));
    }

    #[test]
    fn json_form_has_no_heredocs() {
        let r = parse_nodes("RUN [\"<<EOF\"]\nEOF\n").unwrap();
        assert!(r.nodes[0].heredocs.is_empty());
        assert_eq!(r.nodes.len(), 2);
    }

    #[test]
    fn too_long_line_is_an_error() {
        let src = format!("RUN {}", "a".repeat(70_000));
        assert_eq!(
            parse_nodes(&src).unwrap_err().kind,
            ParseErrorKind::LineTooLong
        );
    }

    #[test]
    fn empty_and_comment_only_files_fail() {
        assert_eq!(
            parse_nodes("").unwrap_err().kind,
            ParseErrorKind::NoInstructions
        );
        assert_eq!(
            parse_nodes("# a\n\n#b\n").unwrap_err().kind,
            ParseErrorKind::NoInstructions
        );
    }

    #[test]
    fn backtick_escape() {
        assert_eq!(
            d("# escape=`\nRUN a `\n b\nCOPY c:\\x d"),
            "(run \"a  b\")\n(copy \"c:\\\\x\" \"d\")"
        );
    }
}
