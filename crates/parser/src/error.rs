//! The parser's error type. Every error carries the [`Span`] of the offending
//! text; the CLI turns that into `file:line:col`, the source line and a caret.

use crate::span::Span;

/// What went wrong. Messages follow BuildKit's wording where BuildKit has one,
/// so that users searching for an error find answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("file with no instructions")]
    NoInstructions,
    #[error("the Dockerfile is not valid UTF-8")]
    NotUtf8,
    #[error("dockerfile line greater than max allowed size of 65535")]
    LineTooLong,
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscapeToken(String),
    #[error("{keyword} must have two arguments")]
    MissingValue { keyword: String },
    #[error("Syntax error - can't find = in {word:?}. Must be of the form: name=value")]
    MissingEquals { word: String },
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    #[error("unterminated heredoc: no line `{terminator}` closes it")]
    UnterminatedHeredoc { terminator: String },
    #[error("invalid heredoc marker: {0}")]
    InvalidHeredoc(String),
    /// Errors of the typed layer (unknown instructions, flags, mounts...).
    #[error(transparent)]
    Instruction(#[from] crate::instruction::InstructionError),
}

/// A parse error and where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub span: Span,
}

impl ParseError {
    pub fn new(kind: impl Into<ParseErrorKind>, span: Span) -> Self {
        Self {
            kind: kind.into(),
            span,
        }
    }

    /// A hint for the user, when there is one (e.g. "did you mean `RUN`?").
    pub fn help(&self) -> Option<String> {
        match &self.kind {
            ParseErrorKind::Instruction(e) => e.help(),
            ParseErrorKind::MissingValue { keyword } => Some(format!(
                "write `{keyword} name=value` or `{keyword} name value`"
            )),
            ParseErrorKind::UnterminatedHeredoc { terminator } => Some(format!(
                "end the here-document with a line containing only `{terminator}`"
            )),
            ParseErrorKind::JsonNotStrings => {
                Some("every element of an exec-form array must be a \"string\"".into())
            }
            _ => None,
        }
    }
}
