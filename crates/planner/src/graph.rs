//! The build graph: a DAG of operations, each with a content-addressed cache
//! key. It is the only thing the executor runs and the cache keys on (what
//! LLB is to BuildKit), and `rbuild graph` prints it.

use petgraph::graph::{DiGraph, NodeIndex};
use rbuild_parser::Span;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::image::{ContainerConfig, History};

pub type NodeId = NodeIndex<u32>;

/// `sha256:<hex>` over the canonical encoding of an operation and the keys of
/// its inputs. Equal work gives equal keys on any machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct CacheKey(pub String);

impl CacheKey {
    /// Keys are computed over a JSON encoding of a struct whose field order
    /// is fixed by its declaration and whose maps are BTreeMaps, so the
    /// encoding is canonical. The version string lets a change of encoding
    /// invalidate old keys instead of colliding with them.
    pub fn of<T: Serialize>(value: &T) -> CacheKey {
        let mut hasher = Sha256::new();
        hasher.update(b"rbuild-cache-key-v1\0");
        let json = serde_json::to_vec(value).expect("cache key encoding cannot fail");
        hasher.update(&json);
        CacheKey(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One operation of the build.
#[derive(Debug, Clone, Serialize)]
pub struct Vertex {
    pub op: Op,
    /// Inputs, in an order each [`Op`] documents. Also present as graph edges.
    pub inputs: Vec<NodeId>,
    pub key: CacheKey,
    /// Index of the stage this vertex belongs to.
    pub stage: usize,
    /// The Dockerfile instruction it came from (none for base images).
    pub span: Option<Span>,
    /// A human-readable name, e.g. `RUN make` or `FROM docker.io/library/busybox:latest`.
    pub description: String,
}

impl Vertex {
    /// Whether executing this vertex can add a layer.
    pub fn makes_layer(&self) -> bool {
        matches!(self.op, Op::Exec(_) | Op::Copy(_) | Op::Mkdir(_))
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// An empty filesystem (`FROM scratch`).
    Scratch,
    /// A base image's filesystem, pinned by manifest digest.
    Image { reference: String, digest: String },
    /// A build context (the directory given on the command line, or a named
    /// `--build-context`). Its key covers only what the build selects from it.
    Context { name: String },
    /// RUN. `inputs[0]` is the root filesystem; mounts name further inputs.
    Exec(ExecOp),
    /// COPY or ADD. `inputs[0]` is the root filesystem, `inputs[1]` (if any)
    /// the source filesystem (a context or a stage).
    Copy(CopyOp),
    /// WORKDIR: `mkdir -p` with mode 0755. `inputs[0]` is the root filesystem.
    Mkdir(MkdirOp),
    /// An instruction that changes only the image config (ENV, CMD, LABEL...).
    /// `inputs[0]` is the filesystem it applies to; no vertex depends on it,
    /// because, as in BuildKit, config changes do not invalidate later layers.
    Config { instruction: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The host's network (Docker's default for builds).
    Host,
    /// An empty network namespace (`RUN --network=none`).
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecOp {
    pub args: Vec<String>,
    /// `KEY=VALUE`, in order: the image's ENV, then ARGs in scope.
    pub env: Vec<String>,
    pub cwd: String,
    /// The `USER` value (resolved inside the rootfs at run time).
    pub user: String,
    pub network: Network,
    pub insecure: bool,
    pub mounts: Vec<ExecMount>,
    /// Heredoc files to place for the step (`RUN <<EOF` with a shebang),
    /// as (path, content, mode).
    pub files: Vec<InlineFile>,
    /// Proxy variables from build args: given to the step but, as in Docker,
    /// kept out of the cache key.
    #[serde(skip)]
    pub proxy_env: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InlineFile {
    pub path: String,
    pub content: String,
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecMount {
    pub kind: MountKind,
    pub target: String,
    /// Index into the vertex's `inputs` of the filesystem to mount from (bind
    /// and cache mounts with a source).
    pub input: Option<usize>,
    /// Path inside the source filesystem.
    pub source: Option<String>,
    pub readonly: bool,
    /// Cache / secret / ssh id.
    pub id: Option<String>,
    pub sharing: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub required: bool,
    /// Secret exposed as an environment variable instead of a file.
    pub env: Option<String>,
    /// For a bind mount of a build context: its name (`""` for the main
    /// one); `id` then holds the digest of the mounted files.
    pub context: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyOp {
    /// ADD semantics: local archives are unpacked, URLs downloaded.
    pub add: bool,
    /// Where the files come from.
    pub from: CopyFrom,
    /// Source paths (expanded; may hold wildcards), relative to the source root.
    pub sources: Vec<String>,
    /// Inline sources (COPY heredocs), written as files named after the terminator.
    pub inline: Vec<InlineFile>,
    /// Absolute destination path; a trailing `/` means "a directory".
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CopyFrom {
    /// A build context (`inputs[1]`); `digest` covers exactly the selected files.
    Context { name: String, digest: String },
    /// Another stage or an image (`inputs[1]`).
    Filesystem,
    /// Only inline (heredoc) sources or URLs: no source filesystem.
    Nothing,
}

#[derive(Debug, Clone, Serialize)]
pub struct MkdirOp {
    pub path: String,
    pub mode: u32,
    /// Owner, as a USER value resolved in the rootfs (none = root).
    pub user: Option<String>,
}

/// A stage of the Dockerfile as planned.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub index: usize,
    pub name: Option<String>,
    /// The vertex holding the stage's final filesystem.
    pub output: NodeId,
    pub config: ContainerConfig,
    pub history: Vec<History>,
    pub author: Option<String>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// The base image vertex, when the stage (or the stage it starts from)
    /// is built on an image.
    pub base: Option<NodeId>,
    /// How many entries at the start of `history` came from the base image.
    pub base_history: usize,
}

/// Something the user should know that does not stop the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanWarning {
    pub message: String,
    pub span: Option<Span>,
}

/// The planned build.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    pub dag: DiGraph<Vertex, ()>,
    /// Stages that were planned (unused ones are pruned and absent).
    pub stages: Vec<Stage>,
    /// Index into `stages` of the stage whose image is the result.
    pub target: usize,
    pub warnings: Vec<PlanWarning>,
}

impl Graph {
    pub fn vertex(&self, id: NodeId) -> &Vertex {
        &self.dag[id]
    }

    /// The stage that is the build's result.
    pub fn target_stage(&self) -> &Stage {
        &self.stages[self.target]
    }

    /// The layer-making vertices whose layers make up the target image's
    /// filesystem (after its base image's), bottom first: the chain of first
    /// inputs from the target stage's output down to its image or scratch.
    pub fn target_layers(&self) -> Vec<NodeId> {
        let mut chain = Vec::new();
        let mut id = self.target_stage().output;
        loop {
            let v = self.vertex(id);
            if v.makes_layer() {
                chain.push(id);
            }
            match (&v.op, v.inputs.first()) {
                (Op::Image { .. } | Op::Scratch, _) | (_, None) => break,
                (_, Some(&parent)) => id = parent,
            }
        }
        chain.reverse();
        chain
    }

    /// Vertices in an order where every input comes before its users.
    pub fn topological_order(&self) -> Vec<NodeId> {
        petgraph::algo::toposort(&self.dag, None).expect("the planner builds an acyclic graph")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_sensitive() {
        #[derive(Serialize)]
        struct X<'a> {
            a: &'a str,
        }
        let k1 = CacheKey::of(&X { a: "1" });
        assert_eq!(k1, CacheKey::of(&X { a: "1" }));
        assert_ne!(k1, CacheKey::of(&X { a: "2" }));
        assert!(k1.as_str().starts_with("sha256:") && k1.as_str().len() == 71);
    }
}
