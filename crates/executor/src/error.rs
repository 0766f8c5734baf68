//! The executor's error type: what failed, for which instruction.

use rbuild_parser::Span;

#[derive(Debug, thiserror::Error)]
pub enum ExecErrorKind {
    /// A RUN exited non-zero.
    #[error("process \"{command}\" did not complete successfully: exit code: {exit_code}")]
    StepFailed {
        command: String,
        exit_code: i32,
        output_tail: Vec<String>,
    },
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Cache(#[from] rbuild_cache::CacheError),
    #[error(transparent)]
    Registry(#[from] rbuild_registry::RegistryError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// An execution error, with the instruction it belongs to when known.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct ExecError {
    pub kind: Box<ExecErrorKind>,
    pub span: Option<Span>,
    /// The vertex description (the instruction text).
    pub step: Option<String>,
}

impl ExecError {
    pub fn new(kind: impl Into<ExecErrorKind>) -> Self {
        ExecError {
            kind: Box::new(kind.into()),
            span: None,
            step: None,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ExecErrorKind::Invalid(msg.into()))
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::new(ExecErrorKind::Io {
            context: context.into(),
            source,
        })
    }

    pub fn at(mut self, span: Option<Span>, step: &str) -> Self {
        if self.span.is_none() {
            self.span = span;
        }
        if self.step.is_none() {
            self.step = Some(step.to_string());
        }
        self
    }
}

impl From<rbuild_cache::CacheError> for ExecError {
    fn from(e: rbuild_cache::CacheError) -> Self {
        ExecError::new(e)
    }
}

impl From<rbuild_registry::RegistryError> for ExecError {
    fn from(e: rbuild_registry::RegistryError) -> Self {
        ExecError::new(e)
    }
}

impl From<crate::sandbox::SandboxError> for ExecError {
    fn from(e: crate::sandbox::SandboxError) -> Self {
        ExecError::new(e)
    }
}
