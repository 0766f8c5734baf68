//! The one error type of the sandbox.

/// Why a step could not be run. A command that ran and exited non-zero is not
/// an error: it is a [`super::StepResult`] with that exit code.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec cannot be run as given (relative paths, NUL bytes, ...).
    #[error("invalid step spec: {0}")]
    InvalidSpec(String),
    /// Something on the parent side failed (spawning the runner, pipes, cleanup).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The sandbox child failed before it could start the command: a mount, the
    /// cgroup, an unknown user, ... `message` is what the child reported.
    #[error("{message}")]
    Setup { exit_code: i32, message: String },
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
}
