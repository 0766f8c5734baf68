//! Error reports for people: `file:line:col`, the offending source line, a
//! caret under the problem, and a hint when we have one. Libraries return
//! typed errors with spans; only the CLI turns them into text.

use rbuild_parser::{ParseError, Span};
use std::fmt::Write;

/// Renders a parse error against the source it came from.
pub fn render_parse_error(file: &str, source: &str, err: &ParseError) -> String {
    render(
        file,
        source,
        err.span,
        &err.to_string(),
        err.help().as_deref(),
    )
}

/// `error: MESSAGE` / `--> file:line:col` / the line with a caret / `help:`.
pub fn render(file: &str, source: &str, span: Span, message: &str, help: Option<&str>) -> String {
    let line_no = span.start.line.max(1);
    let col = span.start.column.max(1);
    let mut out = String::new();
    let _ = writeln!(out, "error: {message}");
    let _ = writeln!(out, "  --> {file}:{line_no}:{col}");
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    if let Some(text) = source.split('\n').nth(line_no as usize - 1) {
        let text = text.trim_end_matches('\r');
        let gutter = line_no.to_string().len();
        let shown: String = text
            .chars()
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect();
        let width = text.chars().count() as u32;
        let len = if span.end.line == span.start.line && span.end.column > col {
            span.end.column - col
        } else {
            width.saturating_sub(col - 1).max(1)
        };
        let _ = writeln!(out, "{:gutter$} |", "");
        let _ = writeln!(out, "{line_no} | {shown}");
        let _ = writeln!(
            out,
            "{:gutter$} | {}{}",
            "",
            " ".repeat(col as usize - 1),
            "^".repeat(len.clamp(1, 200) as usize)
        );
    }
    if let Some(help) = help {
        let _ = writeln!(out, "  = help: {help}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_parser::Position;

    #[test]
    fn points_a_caret_at_the_span() {
        let src = "FROM x\nRUNN echo\n";
        let span = Span::new(Position::new(2, 1), Position::new(2, 5));
        let out = render(
            "Dockerfile",
            src,
            span,
            "unknown instruction: RUNN",
            Some("did you mean `RUN`?"),
        );
        assert_eq!(
            out,
            "error: unknown instruction: RUNN\n  --> Dockerfile:2:1\n  |\n2 | RUNN echo\n  | ^^^^\n  = help: did you mean `RUN`?\n"
        );
    }

    #[test]
    fn multi_line_spans_underline_to_the_end_of_the_first_line() {
        let src = "COPY a \\\n b";
        let span = Span::new(Position::new(1, 6), Position::new(2, 3));
        let out = render("f", src, span, "m", None);
        assert!(out.contains("1 | COPY a \\\n  |      ^^^\n"), "{out}");
    }
}
