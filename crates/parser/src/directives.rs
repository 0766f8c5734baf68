//! Parser directives: `# syntax=...`, `# escape=...`, `# check=...`.
//!
//! Directives are only recognised at the very top of the file: the first line
//! that is not a directive (an ordinary comment, a blank line, an instruction)
//! ends them for good. Each may appear once.

use nom::{
    bytes::complete::{tag, take_while, take_while1},
    character::complete::satisfy,
    combinator::recognize,
    sequence::pair,
    IResult, Parser,
};
use serde::Serialize;

use crate::error::{ParseError, ParseErrorKind};
use crate::span::{Position, Span};

/// The directives found at the top of a Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// `# syntax=` — the frontend image BuildKit would use. rbuild records it
    /// and builds with its own frontend.
    pub syntax: Option<String>,
    /// `# escape=` — `\` (default) or `` ` ``.
    pub escape: char,
    /// `# check=` — lint configuration, kept verbatim.
    pub check: Option<String>,
}

impl Directives {
    pub fn new() -> Self {
        Self {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// Tracks whether we are still in the directive block at the top of the file.
pub(crate) struct DirectiveScanner {
    done: bool,
    seen: Vec<String>,
    pub directives: Directives,
}

fn is_go_re_space(c: char) -> bool {
    // RE2's `\s`: ASCII whitespace only.
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// `name = value` with BuildKit's rules: a name of ASCII letters and digits
/// starting with a letter, a non-empty value with trailing blanks trimmed.
fn directive_body(input: &str) -> IResult<&str, (&str, &str)> {
    let (rest, name) = recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ))
    .parse(input)?;
    let (rest, _) = take_while(is_go_re_space).parse(rest)?;
    let (rest, _) = tag("=").parse(rest)?;
    let (rest, _) = take_while(is_go_re_space).parse(rest)?;
    let (rest, value) = take_while1(|_| true).parse(rest)?;
    Ok((rest, (name, value.trim_end_matches(is_go_re_space))))
}

impl DirectiveScanner {
    pub fn new() -> Self {
        Self {
            done: false,
            seen: Vec::new(),
            directives: Directives::new(),
        }
    }

    /// Looks at one line (newline and leading whitespace already removed).
    /// Returns true when the line was a directive.
    pub fn scan(&mut self, line: &str, line_no: u32, column: u32) -> Result<bool, ParseError> {
        if self.done {
            return Ok(false);
        }
        let Some(after_hash) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(false);
        };
        let body = after_hash.trim_start();
        let parsed = directive_body(body).ok().map(|(_, nv)| nv);
        let Some((name, value)) = parsed.filter(|(_, v)| !v.is_empty()) else {
            self.done = true;
            return Ok(false);
        };
        let key = name.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        let span = Span::new(
            Position::new(line_no, column),
            Position::new(line_no, column + line.chars().count() as u32),
        );
        if self.seen.contains(&key) {
            return Err(ParseError::new(
                ParseErrorKind::DuplicateDirective(key),
                span,
            ));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => match value {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                other => {
                    return Err(ParseError::new(
                        ParseErrorKind::InvalidEscapeToken(other.to_string()),
                        span,
                    ))
                }
            },
            "syntax" => self.directives.syntax = Some(value.to_string()),
            _ => self.directives.check = Some(value.to_string()),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(lines: &[&str]) -> Result<(Directives, usize), ParseError> {
        let mut s = DirectiveScanner::new();
        let mut n = 0;
        for (i, l) in lines.iter().enumerate() {
            if s.scan(l, i as u32 + 1, 1)? {
                n += 1;
            }
        }
        Ok((s.directives, n))
    }

    #[test]
    fn recognises_the_three_directives_case_insensitively() {
        let (d, n) = scan_all(&[
            "# syntax=docker/dockerfile:1",
            "#ESCAPE = `",
            "# check=skip=all",
        ])
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.escape, '`');
        assert_eq!(d.check.as_deref(), Some("skip=all"));
    }

    #[test]
    fn an_ordinary_comment_ends_the_directive_block() {
        let (d, n) = scan_all(&["# hello", "# escape=`"]).unwrap();
        assert_eq!(n, 0);
        assert_eq!(d.escape, '\\');
    }

    #[test]
    fn unknown_directive_ends_the_block() {
        let (d, n) = scan_all(&["# foo=bar", "# escape=`"]).unwrap();
        assert_eq!((n, d.escape), (0, '\\'));
    }

    #[test]
    fn a_blank_line_ends_the_block() {
        let (_, n) = scan_all(&["", "# escape=`"]).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn trailing_blanks_are_trimmed_and_empty_values_are_not_directives() {
        let (d, n) = scan_all(&["# syntax = foo  \t", "# escape="]).unwrap();
        assert_eq!(d.syntax.as_deref(), Some("foo"));
        assert_eq!(n, 1);
    }

    #[test]
    fn repeated_directive_is_an_error() {
        let err = scan_all(&["# escape=`", "# Escape=\\"]).unwrap_err();
        assert_eq!(
            err.kind,
            ParseErrorKind::DuplicateDirective("escape".into())
        );
        assert_eq!(err.span.start.line, 2);
    }

    #[test]
    fn invalid_escape_token_is_an_error() {
        let err = scan_all(&["# escape=x"]).unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::InvalidEscapeToken("x".into()));
    }
}
