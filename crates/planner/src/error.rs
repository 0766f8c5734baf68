//! The planner's errors. Each carries the span of the instruction or word at
//! fault, so the CLI can show `file:line:col` and the offending text.

use rbuild_parser::Span;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanErrorKind {
    #[error("no build stage in current context: {0} must come after FROM")]
    InstructionBeforeFrom(String),
    #[error("base name ({0}) should not be blank")]
    BlankBaseName(String),
    #[error("duplicate stage name {0:?}")]
    DuplicateStage(String),
    #[error("target stage {target:?} could not be found (stages: {available})")]
    TargetNotFound { target: String, available: String },
    #[error("circular dependency between stages: {0}")]
    CircularStage(String),
    #[error("invalid stage index {0}: only earlier stages can be referenced")]
    BadStageIndex(usize),
    #[error("{0}")]
    Expand(String),
    #[error("source path {0:?} is outside the build context")]
    PathEscapesContext(String),
    #[error("{0}")]
    Context(String),
    #[error("failed to resolve base image {reference}: {message}")]
    BaseImage { reference: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Parse(Box<rbuild_parser::ParseError>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct PlanError {
    pub kind: PlanErrorKind,
    pub span: Option<Span>,
}

impl PlanError {
    pub fn new(kind: PlanErrorKind, span: impl Into<Option<Span>>) -> Self {
        let span = span.into();
        let span = match &kind {
            PlanErrorKind::Parse(e) => Some(e.span),
            _ => span,
        };
        PlanError { kind, span }
    }

    pub fn help(&self) -> Option<String> {
        match &self.kind {
            PlanErrorKind::BlankBaseName(_) => {
                Some("declare the ARG before the first FROM, or pass --build-arg".into())
            }
            PlanErrorKind::PathEscapesContext(_) => {
                Some("COPY and ADD can only read files inside the build context".into())
            }
            PlanErrorKind::Parse(e) => e.help(),
            _ => None,
        }
    }
}

impl From<rbuild_parser::ParseError> for PlanError {
    fn from(e: rbuild_parser::ParseError) -> Self {
        PlanError::new(PlanErrorKind::Parse(Box::new(e)), None)
    }
}
