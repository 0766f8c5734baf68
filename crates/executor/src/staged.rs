//! Staged COPY: a COPY of build-context files is started as soon as the
//! build starts, straight into a fresh snapshot dir, instead of after the
//! steps below it. A `COPY . .` after `RUN npm install` is then ready when
//! the install is. When the step's turn comes, [`crate::copy::adopt_staged`]
//! checks that the filesystem below does not change what the copy makes
//! (BuildKit's rule for `COPY --link`, checked rather than assumed), and the
//! staged dir becomes the layer; otherwise it is dropped and the COPY runs
//! through the overlay as usual.

use std::sync::{Arc, Mutex};

use rbuild_cache::{Root, SnapshotId};
use rbuild_planner::context::BuildContext;
use rbuild_planner::graph::CopyOp;
use tokio::sync::Semaphore;

use crate::copy::CopyJob;

enum State {
    Running,
    /// The staged snapshot, not yet taken.
    Finished(SnapshotId),
    /// Taken by the step, or nothing to take.
    Taken,
    /// The step went away first: the staging removes its own snapshot.
    Abandoned,
}

/// A staging copy in the background. Dropping it without [`Staged::take`]
/// removes the staged snapshot (now, or when the copy finishes).
pub(crate) struct Staged {
    root: Arc<Root>,
    state: Arc<Mutex<State>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Staged {
    /// Starts staging `op` (which [`crate::copy::may_stage`]) from
    /// `context`, once one of `permits` is free.
    pub(crate) fn start(
        root: &Arc<Root>,
        op: &CopyOp,
        context: Arc<BuildContext>,
        permits: Arc<Semaphore>,
    ) -> Staged {
        let state = Arc::new(Mutex::new(State::Running));
        let (root2, op, st) = (root.clone(), op.clone(), state.clone());
        let task = tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let done = tokio::task::spawn_blocking(move || {
                let snap = stage(&root2, op, context);
                let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                match (snap, &*s) {
                    (Some(snap), State::Abandoned) => {
                        let _ = root2.remove_snapshot(snap);
                    }
                    (Some(snap), _) => *s = State::Finished(snap),
                    (None, _) => *s = State::Taken,
                }
            });
            let _ = done.await;
        });
        Staged {
            root: root.clone(),
            state,
            task: Some(task),
        }
    }

    /// Waits for the staging and returns its snapshot, if it made one.
    pub(crate) async fn take(mut self) -> Option<SnapshotId> {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *s, State::Taken) {
            State::Finished(snap) => Some(snap),
            _ => None,
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *s, State::Abandoned) {
            State::Finished(snap) => {
                let _ = self.root.remove_snapshot(snap);
            }
            State::Taken => *s = State::Taken,
            State::Running | State::Abandoned => {}
        }
    }
}

/// Copies into a new snapshot; `None` (and no snapshot left) when the op is
/// not stageable or the copy fails (the step then runs it the usual way,
/// which reports the error at its line).
fn stage(root: &Root, op: CopyOp, context: Arc<BuildContext>) -> Option<SnapshotId> {
    let (snap, upper) = root.new_snapshot_dir().ok()?;
    let scratch = match root.tmp_dir() {
        Ok(s) => s,
        Err(_) => {
            let _ = root.remove_snapshot(snap);
            return None;
        }
    };
    let job = CopyJob {
        op,
        lowers: Vec::new(),
        upper,
        work: root.snapshot_work_path(snap),
        context: Some(context),
        source_lowers: None,
        downloads: Default::default(),
        scratch,
    };
    if job.stageable() && job.run_staged().is_ok() {
        Some(snap)
    } else {
        let _ = root.remove_snapshot(snap);
        None
    }
}
