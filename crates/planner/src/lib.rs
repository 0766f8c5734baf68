//! `rbuild-planner` turns the parsed Dockerfile AST and the build inputs (build
//! context, build arguments, target platform) into a content-addressed DAG of
//! build steps that the executor runs and the cache keys. This crate is being
//! built bottom-up; its first piece is [`ignore`], the `.dockerignore` semantics
//! (pattern reading, matching and walk pruning) that decide which files of the
//! build context are inputs at all.

pub mod context;
pub mod error;
pub mod graph;
pub mod ignore;
pub mod image;
pub mod plan;

pub use error::{PlanError, PlanErrorKind};
pub use graph::{CacheKey, Graph, NodeId, Op, Vertex};
pub use image::{BaseImage, ContainerConfig};
pub use plan::{plan, PlanInputs, PlanRequest, Platform};
