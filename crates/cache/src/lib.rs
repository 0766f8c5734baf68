//! `rbuild-cache`: not written yet. The crate exists so that the workspace has
//! its final shape and dependency direction from the start; see
//! ARCHITECTURE.md for what it will own.
