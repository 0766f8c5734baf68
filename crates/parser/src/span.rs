//! Source positions. Every instruction, flag and argument the parser produces
//! carries a [`Span`] so that errors anywhere in rbuild (parser, planner,
//! executor) can point at the exact text in the Dockerfile.

use serde::Serialize;

/// A 1-based line and column. Columns count Unicode scalar values, not bytes,
/// so a caret printed under a line lands under the right character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl Position {
    pub fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }
}

/// A half-open range of source text: `start` is the first character, `end`
/// the position just after the last one (on the same or a later line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

impl Span {
    pub fn new(start: Position, end: Position) -> Self {
        Self { start, end }
    }

    /// A span covering whole lines `first..=last` (columns unknown → 1).
    pub fn lines(first: u32, last: u32) -> Self {
        Self {
            start: Position::new(first, 1),
            end: Position::new(last, 1),
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// A piece of Dockerfile text (an argument, a flag, a key...) and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    pub value: String,
    pub span: Span,
}

impl Word {
    pub fn new(value: impl Into<String>, span: Span) -> Self {
        Self {
            value: value.into(),
            span,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl std::fmt::Display for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.value)
    }
}
