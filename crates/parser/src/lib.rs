//! `rbuild-parser`: Dockerfile text → a syntax tree with source spans.
//!
//! Two layers:
//! - [`parse_nodes`] is the raw parse, BuildKit's rules exactly (directives,
//!   continuations, flags, JSON/shell form, heredocs). [`dump`] prints it in
//!   BuildKit's golden-file format.
//! - [`parse`] goes on to typed [`instruction::Instruction`]s with validated
//!   flags and mounts; this is what the planner consumes.
//!
//! The [`shell`] module is the variable-expansion engine (BuildKit's shell
//! lexer); the planner calls it with ARG/ENV state, the parser itself only
//! uses it to find heredoc markers.

pub mod directives;
pub mod dump;
pub mod error;
pub mod heredoc;
pub mod instruction;
mod json;
mod logical;
pub mod node;
pub mod raw;
pub mod shell;
pub mod span;
pub mod suggest;

pub use directives::Directives;
pub use dump::dump;
pub use error::{ParseError, ParseErrorKind};
pub use node::{Args, Heredoc, KeyValue, Node};
pub use raw::{parse_nodes, RawDockerfile, Warning};
pub use span::{Position, Span, Word};

use serde::Serialize;

/// A parsed Dockerfile: directives, typed instructions and warnings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dockerfile {
    pub directives: Directives,
    pub instructions: Vec<instruction::Instruction>,
    pub warnings: Vec<Warning>,
}

/// Parses a Dockerfile into typed instructions.
pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    let raw = parse_nodes(src)?;
    let instructions = raw
        .nodes
        .iter()
        .map(instruction::from_node)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Dockerfile {
        directives: raw.directives,
        instructions,
        warnings: raw.warnings,
    })
}

/// Parses Dockerfile bytes, rejecting text that is not UTF-8 with the
/// position of the first bad byte.
pub fn parse_bytes(src: &[u8]) -> Result<Dockerfile, ParseError> {
    parse(utf8(src)?)
}

/// Checks that `src` is UTF-8, pointing at the first invalid byte otherwise.
pub fn utf8(src: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(src).map_err(|e| {
        let good = &src[..e.valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() as u32 + 1;
        let at = Position::new(line, column);
        ParseError::new(ParseErrorKind::NotUtf8, Span::new(at, at))
    })
}
