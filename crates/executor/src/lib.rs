//! `rbuild-executor`: runs the build graph and produces the image.
//!
//! - [`build`] schedules the graph's vertices on tokio (independent branches
//!   at once), looks each step up in the cache and records it after.
//! - [`sandbox`] runs one RUN step in isolation (namespaces, overlayfs,
//!   cgroups) through a re-exec of the current binary.
//! - [`copy`]/[`fsops`] do COPY, ADD and WORKDIR through an overlay mount in a
//!   private mount namespace, resolving every path inside the image root.
//! - [`pull`] resolves and unpacks base images; [`image`] writes the result.

mod archive;
pub mod build;
mod copy;
pub mod error;
pub mod fsops;
pub mod image;
mod merged;
mod overlay;
pub mod pull;
pub mod sandbox;
mod staged;

pub use build::{Event, Executor, LayerRef, Progress, VertexResult};
pub use error::{ExecError, ExecErrorKind};
pub use image::{assemble, BuiltImage};
pub use pull::Puller;
