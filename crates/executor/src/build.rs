//! Runs a planned [`Graph`]: every vertex becomes a task that waits for its
//! inputs, so independent stages and branches run at once; a semaphore
//! bounds the heavy work (`--jobs`). Every layer-making vertex is looked up by
//! its cache key first and recorded after it succeeds.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use rbuild_cache::{Root, SnapshotId};
use rbuild_planner::context::BuildContext;
use rbuild_planner::graph::{
    CopyFrom, CopyOp, ExecMount, ExecOp, MkdirOp, MountKind, Network, NodeId, Op, Vertex,
};
use rbuild_planner::Graph;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::error::{ExecError, ExecErrorKind};
use crate::pull::Puller;
use crate::sandbox::{self, BindMount, StepSpec};
use crate::staged::Staged;

/// One layer of a filesystem: the snapshot holding it unpacked and the blob
/// holding it as a tar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub snapshot: u64,
    pub diff_id: String,
    /// The blob in the content store (the uncompressed tar for layers rbuild
    /// made, whose digest is the diff_id; the compressed blob for pulled ones).
    pub blob: String,
    pub blob_size: u64,
    pub media_type: String,
}

impl LayerRef {
    /// A layer rbuild made whose diff_id is not known (yet).
    fn unhashed(snap: SnapshotId) -> LayerRef {
        LayerRef {
            snapshot: snap.0,
            diff_id: String::new(),
            blob: String::new(),
            blob_size: 0,
            media_type: LAYER_TAR.into(),
        }
    }
}

/// What the key index remembers for a step: the layer it made, if any.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepRecord {
    layer: Option<LayerRef>,
}

/// The result of one vertex.
#[derive(Debug, Clone, Default)]
pub struct VertexResult {
    /// The filesystem after this vertex, bottom layer first.
    pub layers: Vec<LayerRef>,
    /// For layer-making vertices: whether a (non-empty) layer was made.
    pub made_layer: bool,
    pub cached: bool,
}

/// Something that happened, for the progress display.
#[derive(Debug, Clone)]
pub enum Event {
    Started { vertex: usize, description: String },
    Cached { vertex: usize },
    Output { vertex: usize, line: String },
    Done { vertex: usize, seconds: f64 },
}

pub type Progress = Arc<dyn Fn(Event) + Send + Sync>;

/// Everything the executor needs besides the graph.
pub struct Executor {
    pub root: Arc<Root>,
    pub puller: Arc<Puller>,
    /// Build contexts by name (`""` is the main one).
    pub contexts: HashMap<String, Arc<BuildContext>>,
    /// The binary the RUN sandbox re-executes (`/proc/self/exe` in production).
    pub runner: PathBuf,
    pub no_cache: bool,
    pub jobs: usize,
    pub limits: sandbox::Limits,
    pub progress: Progress,
}

const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Background layer hashes still running (see `Executor::commit_layer`).
type Commits = Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<Result<LayerRef, ExecError>>>>>;

/// `r` with the diff_ids of layers whose hash finished after the step did.
fn with_diff_ids(r: Arc<VertexResult>, done: &HashMap<u64, LayerRef>) -> Arc<VertexResult> {
    if r.layers.iter().all(|l| !l.diff_id.is_empty()) {
        return r;
    }
    let mut fixed = (*r).clone();
    for l in &mut fixed.layers {
        if l.diff_id.is_empty() {
            if let Some(d) = done.get(&l.snapshot) {
                *l = d.clone();
            }
        }
    }
    Arc::new(fixed)
}

/// What a vertex's task shares with the others.
#[derive(Clone, Copy)]
struct Step<'a> {
    permits: &'a Semaphore,
    commits: &'a Commits,
    /// Whether the vertex's layer is part of the target image.
    in_image: bool,
}

type Pending = Shared<BoxFuture<'static, Result<Arc<VertexResult>, Arc<ExecError>>>>;

impl Executor {
    /// Runs every vertex of `graph` and returns each one's result.
    pub async fn run(
        self: Arc<Self>,
        graph: Arc<Graph>,
    ) -> Result<HashMap<NodeId, Arc<VertexResult>>, ExecError> {
        let permits = Arc::new(Semaphore::new(self.jobs.max(1)));
        let commits: Commits = Arc::default();
        // Only the target image's layers need a diff_id now; other stages'
        // layers get theirs if and when an image includes them.
        let image_layers: Arc<HashSet<NodeId>> =
            Arc::new(graph.target_layers().into_iter().collect());
        let mut pending: HashMap<NodeId, Pending> = HashMap::new();
        let mut handles = Vec::new();
        for id in graph.topological_order() {
            let inputs: Vec<Pending> = graph
                .vertex(id)
                .inputs
                .iter()
                .map(|i| pending[i].clone())
                .collect();
            let this = self.clone();
            let g = graph.clone();
            let permits = permits.clone();
            let commits = commits.clone();
            let in_image = image_layers.contains(&id);
            let staged = self.start_staging(graph.vertex(id), &permits);
            let task = tokio::spawn(async move {
                let results = futures_util::future::try_join_all(inputs).await?;
                let vertex = g.vertex(id);
                let step = Step {
                    permits: &permits,
                    commits: &commits,
                    in_image,
                };
                this.run_vertex(id, vertex, &results, step, staged)
                    .await
                    .map(Arc::new)
                    .map_err(|e| Arc::new(e.at(vertex.span, &vertex.description)))
            });
            handles.push(task.abort_handle());
            let fut = async move {
                task.await.unwrap_or_else(|e| {
                    Err(Arc::new(ExecError::invalid(format!(
                        "build task failed: {e}"
                    ))))
                })
            }
            .boxed()
            .shared();
            pending.insert(id, fut);
        }
        let all = futures_util::future::try_join_all(pending.iter().map(|(id, f)| {
            let id = *id;
            f.clone().map(move |r| r.map(|v| (id, v)))
        }))
        .await;
        match all {
            Ok(v) => {
                let done = self.finish_commits(&commits).await?;
                Ok(v.into_iter()
                    .map(|(id, r)| (id, with_diff_ids(r, &done)))
                    .collect())
            }
            Err(e) => {
                // Stop everything else (dropping a step kills its processes).
                for h in handles {
                    h.abort();
                }
                Err(Arc::try_unwrap(e).unwrap_or_else(|e| {
                    let mut copy = ExecError::invalid(e.to_string());
                    copy.span = e.span;
                    copy.step = e.step.clone();
                    if let ExecErrorKind::StepFailed {
                        command,
                        exit_code,
                        output_tail,
                    } = &*e.kind
                    {
                        copy.kind = Box::new(ExecErrorKind::StepFailed {
                            command: command.clone(),
                            exit_code: *exit_code,
                            output_tail: output_tail.clone(),
                        });
                    }
                    copy
                }))
            }
        }
    }

    async fn run_vertex(
        &self,
        id: NodeId,
        vertex: &Vertex,
        inputs: &[Arc<VertexResult>],
        step: Step<'_>,
        staged: Option<Staged>,
    ) -> Result<VertexResult, ExecError> {
        let n = id.index();
        let parent = || inputs.first().map(|r| r.layers.clone()).unwrap_or_default();
        match &vertex.op {
            Op::Scratch | Op::Context { .. } | Op::Config { .. } => {
                return Ok(VertexResult {
                    layers: if matches!(vertex.op, Op::Config { .. }) {
                        parent()
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                })
            }
            Op::Image { reference, digest } => {
                (self.progress)(Event::Started {
                    vertex: n,
                    description: vertex.description.clone(),
                });
                let start = Instant::now();
                let layers = self.puller.layers(reference, digest).await?;
                (self.progress)(Event::Done {
                    vertex: n,
                    seconds: start.elapsed().as_secs_f64(),
                });
                return Ok(VertexResult {
                    layers,
                    ..Default::default()
                });
            }
            Op::Exec(_) | Op::Copy(_) | Op::Mkdir(_) => {}
        }
        let key = vertex.key.as_str();
        let mut layers = parent();
        if !self.no_cache {
            if let Some(rec) = self.root.get_key::<StepRecord>(key)? {
                let usable = match &rec.layer {
                    // The snapshot is the layer; its tar is made on demand.
                    Some(l) => self
                        .root
                        .snapshot_intact(SnapshotId(l.snapshot), Some(&l.diff_id))?,
                    None => true,
                };
                if usable {
                    (self.progress)(Event::Started {
                        vertex: n,
                        description: vertex.description.clone(),
                    });
                    (self.progress)(Event::Cached { vertex: n });
                    let made_layer = rec.layer.is_some();
                    if let Some(l) = &rec.layer {
                        if l.diff_id.is_empty() && step.in_image {
                            // Made by a build that did not need its diff_id.
                            self.hash_in_background(SnapshotId(l.snapshot), key, step.commits);
                        }
                    }
                    layers.extend(rec.layer);
                    return Ok(VertexResult {
                        layers,
                        made_layer,
                        cached: true,
                    });
                }
            }
        }
        // Dropping `staged` on the cache-hit path above discarded it.
        let adopted = match (staged, &vertex.op) {
            (Some(staged), Op::Copy(op)) => self.adopt_staged(staged, op, &layers).await?,
            _ => None,
        };
        let _permit = match adopted {
            Some(_) => None,
            None => Some(
                step.permits
                    .acquire()
                    .await
                    .map_err(|_| ExecError::invalid("scheduler closed"))?,
            ),
        };
        (self.progress)(Event::Started {
            vertex: n,
            description: vertex.description.clone(),
        });
        let start = Instant::now();
        let snap = match adopted {
            Some(snap) => snap,
            None => {
                let (snap, _) = self.root.new_snapshot_dir()?;
                let outcome = match &vertex.op {
                    Op::Exec(op) => self.exec(n, op, &layers, inputs, snap).await,
                    Op::Copy(op) => self.copy(op, &layers, inputs, snap).await,
                    Op::Mkdir(op) => self.mkdir(op, &layers, snap).await,
                    _ => unreachable!(),
                };
                if let Err(e) = outcome {
                    let _ = self.root.remove_snapshot(snap);
                    return Err(e);
                }
                snap
            }
        };
        let made_layer = self.commit_layer(snap, key, step)?;
        (self.progress)(Event::Done {
            vertex: n,
            seconds: start.elapsed().as_secs_f64(),
        });
        if made_layer {
            // The diff_id is filled in when the background hash finishes.
            layers.push(LayerRef::unhashed(snap));
        }
        Ok(VertexResult {
            layers,
            made_layer,
            cached: false,
        })
    }

    /// The staged snapshot of a COPY, if staging made one and it is what
    /// the COPY gives on top of `layers`; otherwise it is removed.
    async fn adopt_staged(
        &self,
        staged: Staged,
        op: &CopyOp,
        layers: &[LayerRef],
    ) -> Result<Option<SnapshotId>, ExecError> {
        let Some(snap) = staged.take().await else {
            return Ok(None);
        };
        let lowers = self.lowerdirs(layers);
        let staged_dir = self.root.snapshot_path(snap);
        let dest = op.dest.clone();
        let adopted = tokio::task::spawn_blocking(move || {
            crate::copy::adopt_staged(&lowers, &staged_dir, &dest)
        })
        .await
        .map_err(|e| ExecError::invalid(format!("copy task failed: {e}")))?;
        if matches!(adopted, Ok(true)) {
            return Ok(Some(snap));
        }
        self.root.remove_snapshot(snap)?;
        Ok(None)
    }

    /// Starts copying build-context files for a COPY vertex before its
    /// parent is built (see [`crate::staged`]), unless it is likely cached.
    fn start_staging(&self, vertex: &Vertex, permits: &Arc<Semaphore>) -> Option<Staged> {
        let Op::Copy(op) = &vertex.op else {
            return None;
        };
        let CopyFrom::Context { name, .. } = &op.from else {
            return None;
        };
        if !crate::copy::may_stage(op) {
            return None;
        }
        if !self.no_cache
            && matches!(
                self.root.get_key::<StepRecord>(vertex.key.as_str()),
                Ok(Some(_))
            )
        {
            return None;
        }
        let context = self.contexts.get(name)?.clone();
        Some(Staged::start(&self.root, op, context, permits.clone()))
    }

    /// Turns a finished snapshot into a layer; an empty snapshot makes none
    /// (returns false).
    ///
    /// Layers of the target image need their diff_id, which is hashed in
    /// the background ([`Executor::hash_in_background`]). Other stages'
    /// layers are recorded at once with an empty diff_id: COPY --from and
    /// bind mounts only need their snapshot, and a later build whose image
    /// includes one hashes it then. Nothing is fsynced (see
    /// `rbuild_cache::Root::snapshot_intact`).
    fn commit_layer(&self, snap: SnapshotId, key: &str, step: Step<'_>) -> Result<bool, ExecError> {
        let dir = self.root.snapshot_path(snap);
        let empty = std::fs::read_dir(&dir)
            .map_err(|e| ExecError::io(format!("reading {}", dir.display()), e))?
            .next()
            .is_none();
        if empty {
            self.root.remove_snapshot(snap)?;
            self.root.put_key(key, &StepRecord { layer: None })?;
            return Ok(false);
        }
        if !step.in_image {
            let layer = Some(LayerRef::unhashed(snap));
            self.root.put_key(key, &StepRecord { layer })?;
            return Ok(true);
        }
        self.hash_in_background(snap, key, step.commits);
        Ok(true)
    }

    /// Computes snapshot `snap`'s diff_id in one streaming pass that writes
    /// nothing (the tar itself is produced when an image leaves the store),
    /// off the critical path: steps that build on this one only need the
    /// snapshot, so they start while it runs. The step's record under `key`
    /// is written when it is done; [`Executor::finish_commits`] waits for it.
    fn hash_in_background(&self, snap: SnapshotId, key: &str, commits: &Commits) {
        let root = self.root.clone();
        let key = key.to_string();
        let hash = tokio::task::spawn_blocking(move || {
            let (diff_id, size) = root.hash_layer_from_snapshot(snap)?;
            let layer = LayerRef {
                snapshot: snap.0,
                blob: diff_id.clone(),
                diff_id,
                blob_size: size,
                media_type: LAYER_TAR.into(),
            };
            root.put_key(
                &key,
                &StepRecord {
                    layer: Some(layer.clone()),
                },
            )?;
            Ok(layer)
        });
        commits.lock().unwrap_or_else(|e| e.into_inner()).push(hash);
    }

    /// Waits for every background layer hash; returns the layers by snapshot.
    async fn finish_commits(&self, commits: &Commits) -> Result<HashMap<u64, LayerRef>, ExecError> {
        let handles: Vec<_> =
            std::mem::take(&mut *commits.lock().unwrap_or_else(|e| e.into_inner()));
        let mut done = HashMap::new();
        for h in handles {
            let layer = h
                .await
                .map_err(|e| ExecError::invalid(format!("layer task failed: {e}")))??;
            done.insert(layer.snapshot, layer);
        }
        Ok(done)
    }

    fn lowerdirs(&self, layers: &[LayerRef]) -> Vec<PathBuf> {
        layers
            .iter()
            .rev()
            .map(|l| self.root.snapshot_path(SnapshotId(l.snapshot)))
            .collect()
    }

    async fn exec(
        &self,
        n: usize,
        op: &ExecOp,
        layers: &[LayerRef],
        inputs: &[Arc<VertexResult>],
        snap: SnapshotId,
    ) -> Result<(), ExecError> {
        if op.insecure {
            return Err(ExecError::invalid(
                "RUN --security=insecure needs the security.insecure entitlement, which rbuild does not grant",
            ));
        }
        let scratch = self.root.tmp_dir()?;
        let mut mounts = Vec::new();
        let mut _locks = Vec::new();
        let mut views = Vec::new();
        for (i, m) in op.mounts.iter().enumerate() {
            match self.mount_source(m, inputs, scratch.path(), i)? {
                MountSource::Bind(bind, lock, view) => {
                    mounts.push(bind);
                    _locks.extend(lock);
                    views.extend(view);
                }
                MountSource::Skip => {}
            }
        }
        if !op.files.is_empty() {
            let dir = scratch.path().join("pipes");
            std::fs::create_dir_all(&dir).map_err(|e| ExecError::io("creating /dev/pipes", e))?;
            for f in &op.files {
                let name = f.path.rsplit('/').next().unwrap_or_default();
                let p = dir.join(name);
                std::fs::write(&p, &f.content)
                    .map_err(|e| ExecError::io("writing a heredoc file", e))?;
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(f.mode))
                    .map_err(|e| ExecError::io("chmod heredoc file", e))?;
            }
            mounts.push(BindMount {
                source: dir,
                target: "/dev/pipes".into(),
                readonly: true,
            });
        }
        let mut env = op.env.clone();
        env.extend(op.proxy_env.iter().cloned());
        let spec = StepSpec {
            lowerdirs: self.lowerdirs(layers),
            upperdir: self.root.snapshot_path(snap),
            workdir: self.root.snapshot_work_path(snap),
            args: op.args.clone(),
            env,
            cwd: op.cwd.clone(),
            user: op.user.clone(),
            hostname: String::new(),
            network: match op.network {
                Network::Host => sandbox::Network::Host,
                Network::None => sandbox::Network::None,
            },
            mounts,
            limits: self.limits,
            hosts: Some("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".into()),
            resolv_conf: match op.network {
                Network::Host => std::fs::read_to_string("/etc/resolv.conf").ok(),
                Network::None => None,
            },
        };
        let progress = self.progress.clone();
        let result = sandbox::run_step(&self.runner, &spec, move |line| {
            progress(Event::Output {
                vertex: n,
                line: line.to_string(),
            })
        })
        .await;
        drop(views);
        let result = result?;
        if result.exit_code != 0 {
            return Err(ExecError::new(ExecErrorKind::StepFailed {
                command: op.args.join(" "),
                exit_code: result.exit_code,
                output_tail: result.output_tail,
            }));
        }
        Ok(())
    }

    fn mount_source(
        &self,
        m: &ExecMount,
        inputs: &[Arc<VertexResult>],
        scratch: &std::path::Path,
        i: usize,
    ) -> Result<MountSource, ExecError> {
        let bind = |source: PathBuf, readonly: bool| BindMount {
            source,
            target: m.target.clone(),
            readonly,
        };
        match m.kind {
            MountKind::Cache => {
                let id = m.id.clone().unwrap_or_else(|| m.target.clone());
                let hex = rbuild_cache::sha256_digest(id.as_bytes());
                let dir = self
                    .root
                    .path()
                    .join("cachemounts")
                    .join(hex.trim_start_matches("sha256:"));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| ExecError::io("creating a cache mount", e))?;
                if let (Some(uid), gid) = (m.uid, m.gid) {
                    let _ = nix::unistd::chown(&dir, Some(uid.into()), gid.map(Into::into));
                }
                let lock = match m.sharing.as_deref() {
                    Some("locked") => Some(self.root.lock(&format!("cachemount-{}", &hex[7..23]))?),
                    _ => None,
                };
                Ok(MountSource::Bind(bind(dir, m.readonly), lock, None))
            }
            MountKind::Tmpfs => {
                let dir = scratch.join(format!("tmpfs-{i}"));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| ExecError::io("creating a tmpfs mount", e))?;
                Ok(MountSource::Bind(bind(dir, false), None, None))
            }
            MountKind::Bind => {
                let source = m.source.clone().unwrap_or_else(|| ".".into());
                if let Some(name) = &m.context {
                    let ctx = self.contexts.get(name).ok_or_else(|| {
                        ExecError::invalid(format!("build context {name:?} was not given"))
                    })?;
                    let path = resolve_inside(ctx.root(), &source)?;
                    return Ok(MountSource::Bind(bind(path, true), None, None));
                }
                // From a stage or an image: a read-only view of its layers.
                let layers = m
                    .input
                    .and_then(|idx| inputs.get(idx))
                    .map(|r| r.layers.clone())
                    .unwrap_or_default();
                let view = ViewMount::new(&self.root, &self.lowerdirs(&layers), scratch, i)?;
                let path = resolve_inside(&view.path, &source)?;
                Ok(MountSource::Bind(bind(path, true), None, Some(view)))
            }
            MountKind::Secret | MountKind::Ssh => {
                if m.required {
                    return Err(ExecError::invalid(format!(
                        "RUN --mount=type={:?} id={}: secrets and SSH forwarding are not supported yet",
                        m.kind,
                        m.id.clone().unwrap_or_default()
                    )));
                }
                Ok(MountSource::Skip)
            }
        }
    }

    async fn copy(
        &self,
        op: &CopyOp,
        layers: &[LayerRef],
        inputs: &[Arc<VertexResult>],
        snap: SnapshotId,
    ) -> Result<(), ExecError> {
        let ctx = match &op.from {
            CopyFrom::Context { name, .. } => {
                Some(self.contexts.get(name).cloned().ok_or_else(|| {
                    ExecError::invalid(format!("build context {name:?} was not given"))
                })?)
            }
            _ => None,
        };
        let source_layers = match op.from {
            CopyFrom::Filesystem => inputs.get(1).map(|r| self.lowerdirs(&r.layers)),
            _ => None,
        };
        let downloads = crate::copy::download_urls(op, &self.root).await?;
        let job = crate::copy::CopyJob {
            op: op.clone(),
            lowers: self.lowerdirs(layers),
            upper: self.root.snapshot_path(snap),
            work: self.root.snapshot_work_path(snap),
            context: ctx,
            source_lowers: source_layers,
            downloads,
            scratch: self.root.tmp_dir()?,
        };
        tokio::task::spawn_blocking(move || job.run())
            .await
            .map_err(|e| ExecError::invalid(format!("copy task failed: {e}")))?
    }

    async fn mkdir(
        &self,
        op: &MkdirOp,
        layers: &[LayerRef],
        snap: SnapshotId,
    ) -> Result<(), ExecError> {
        let job = crate::copy::MkdirJob {
            op: op.clone(),
            lowers: self.lowerdirs(layers),
            upper: self.root.snapshot_path(snap),
            work: self.root.snapshot_work_path(snap),
            scratch: self.root.tmp_dir()?,
        };
        tokio::task::spawn_blocking(move || job.run())
            .await
            .map_err(|e| ExecError::invalid(format!("mkdir task failed: {e}")))?
    }
}

enum MountSource {
    Bind(
        BindMount,
        Option<rbuild_cache::LockGuard>,
        Option<ViewMount>,
    ),
    Skip,
}

/// `rel` inside `base`, refusing anything that climbs out or goes through a
/// symlink pointing out.
fn resolve_inside(base: &std::path::Path, rel: &str) -> Result<PathBuf, ExecError> {
    let joined = base.join(rel.trim_start_matches('/'));
    let real = joined
        .canonicalize()
        .map_err(|e| ExecError::io(format!("mount source {rel:?}"), e))?;
    let base_real = base
        .canonicalize()
        .map_err(|e| ExecError::io("mount base", e))?;
    if !real.starts_with(&base_real) {
        return Err(ExecError::invalid(format!(
            "mount source {rel:?} is outside its root"
        )));
    }
    Ok(real)
}

/// A read-only overlay of some layers, mounted in rbuild's mount namespace
/// for the duration of one step (the step's sandbox bind-mounts it), and
/// unmounted when dropped.
struct ViewMount {
    path: PathBuf,
}

impl ViewMount {
    fn new(
        root: &Root,
        lowers: &[PathBuf],
        scratch: &std::path::Path,
        i: usize,
    ) -> Result<ViewMount, ExecError> {
        let path = scratch.join(format!("view-{i}"));
        let empty = scratch.join(format!("empty-{i}"));
        for d in [&path, &empty] {
            std::fs::create_dir_all(d).map_err(|e| ExecError::io("creating a mount view", e))?;
        }
        let _ = root;
        // The mount must outlive this call (the step bind-mounts it), so it
        // goes into rbuild's own mount namespace; the thread only gets a
        // working directory of its own in case mount_overlay must chdir.
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                    .map_err(std::io::Error::from)?;
                crate::fsops::mount_overlay(lowers, None, &path, &empty)
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("mount thread panicked")))
        })
        .map_err(|e| ExecError::io("mounting a read-only view", e))?;
        Ok(ViewMount { path })
    }
}

impl Drop for ViewMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}
