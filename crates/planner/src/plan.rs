//! Dockerfile semantics: stages, ARG scoping, ENV, expansion, the image
//! config, and the vertices each instruction adds to the graph.
//!
//! Stages are planned lazily from the target, so stages nothing depends on
//! are never planned (BuildKit prunes them too). Cache keys chain through the
//! filesystem inputs only: a config-only change (CMD, LABEL...) changes the
//! image but not the key of any later layer, as in BuildKit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::graph::DiGraph;
use rbuild_parser::instruction::{
    CommandLine, CopySource, HealthcheckInstruction, Instruction, InstructionKind, Mount,
    MountType, NetworkMode, RunInstruction, SecurityMode,
};
use rbuild_parser::shell::Lexer;
use rbuild_parser::{Dockerfile, Span, Word};
use serde::Serialize;

use crate::error::{PlanError, PlanErrorKind};
use crate::graph::*;
use crate::image::{BaseImage, ContainerConfig, EmptyObject, Healthcheck, History, DEFAULT_PATH};

/// A target platform, `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The machine rbuild runs on.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(format!(
                "invalid platform {s:?}: expected os/arch[/variant]"
            )),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    pub dockerfile: &'a Dockerfile,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub platform: Platform,
    pub build_platform: Platform,
    /// Names given with `--build-context name=...`.
    pub named_contexts: BTreeSet<String>,
}

impl<'a> PlanRequest<'a> {
    pub fn new(dockerfile: &'a Dockerfile) -> Self {
        PlanRequest {
            dockerfile,
            build_args: BTreeMap::new(),
            target: None,
            platform: Platform::host(),
            build_platform: Platform::host(),
            named_contexts: BTreeSet::new(),
        }
    }
}

/// What the planner needs from the outside world: base image configs and
/// the digests of context files. The CLI implements it with the registry
/// client and the context hasher; tests implement it in memory.
pub trait PlanInputs {
    /// Resolves an image reference to a pinned base image with its config.
    fn base_image(&mut self, reference: &str, platform: &Platform) -> Result<BaseImage, String>;
    /// A digest covering the files `sources` select from context `context`
    /// (`""` is the main build context), minus `excludes`.
    fn select_context(
        &mut self,
        context: &str,
        sources: &[String],
        excludes: &[String],
    ) -> Result<String, String>;
}

/// Build args that Docker accepts without an ARG declaration and keeps out of
/// the cache key and history.
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

const DEFAULT_SHELL: &[&str] = &["/bin/sh", "-c"];

/// Plans the build.
pub fn plan(req: &PlanRequest<'_>, inputs: &mut dyn PlanInputs) -> Result<Graph, PlanError> {
    Planner::new(req, inputs)?.finish()
}

struct StageSource {
    name: Option<String>,
    /// Index of the FROM in `dockerfile.instructions`.
    start: usize,
    end: usize,
}

struct Planner<'r, 'a> {
    req: &'r PlanRequest<'a>,
    inputs: &'r mut dyn PlanInputs,
    lexer: Lexer,
    dag: DiGraph<Vertex, ()>,
    sources: Vec<StageSource>,
    planned: HashMap<usize, Stage>,
    order: Vec<usize>,
    visiting: Vec<usize>,
    /// Global ARGs (before the first FROM) with values, plus the automatic platform args.
    global_env: BTreeMap<String, String>,
    global_declared: BTreeSet<String>,
    used_args: BTreeSet<String>,
    images: HashMap<String, NodeId>,
    contexts: HashMap<String, NodeId>,
    warnings: Vec<PlanWarning>,
}

/// The state of a stage while its instructions are dispatched.
struct StageState {
    index: usize,
    rootfs: NodeId,
    base: Option<NodeId>,
    base_history: usize,
    config: ContainerConfig,
    history: Vec<History>,
    author: Option<String>,
    platform: Platform,
    /// Declared ARGs in scope, in order, with their values.
    args: Vec<(String, String)>,
    cmd_set: bool,
}

impl StageState {
    /// The variables instructions expand with: ARGs, overridden by ENV.
    fn env(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self.args.iter().cloned().collect();
        env.extend(self.config.env_pairs());
        env
    }

    fn set_arg(&mut self, name: &str, value: String) {
        self.args.retain(|(k, _)| k != name);
        self.args.push((name.to_string(), value));
    }
}

fn automatic_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        v.push((format!("{prefix}PLATFORM"), p.to_string()));
        v.push((format!("{prefix}OS"), p.os.clone()));
        v.push((format!("{prefix}ARCH"), p.architecture.clone()));
        v.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    v
}

fn err(kind: PlanErrorKind, span: Span) -> PlanError {
    PlanError::new(kind, span)
}

impl<'r, 'a> Planner<'r, 'a> {
    fn new(req: &'r PlanRequest<'a>, inputs: &'r mut dyn PlanInputs) -> Result<Self, PlanError> {
        let instructions = &req.dockerfile.instructions;
        let mut sources: Vec<StageSource> = Vec::new();
        let mut names: BTreeMap<String, Span> = BTreeMap::new();
        for (i, ins) in instructions.iter().enumerate() {
            match &ins.kind {
                InstructionKind::From(from) => {
                    if let Some(last) = sources.last_mut() {
                        last.end = i;
                    }
                    let name = from.name.as_ref().map(|n| n.value.to_lowercase());
                    if let Some(n) = &name {
                        if names.insert(n.clone(), ins.span).is_some() {
                            return Err(err(PlanErrorKind::DuplicateStage(n.clone()), ins.span));
                        }
                    }
                    sources.push(StageSource {
                        name,
                        start: i,
                        end: instructions.len(),
                    });
                }
                InstructionKind::Arg(_) => {}
                _ if sources.is_empty() => {
                    return Err(err(
                        PlanErrorKind::InstructionBeforeFrom(ins.name().to_uppercase()),
                        ins.keyword.span,
                    ))
                }
                _ => {}
            }
        }
        if sources.is_empty() {
            let span = instructions.first().map(|i| i.span).unwrap_or_default();
            return Err(err(
                PlanErrorKind::Invalid("the Dockerfile has no FROM instruction".into()),
                span,
            ));
        }
        let mut planner = Planner {
            req,
            inputs,
            lexer: Lexer::new(req.dockerfile.directives.escape),
            dag: DiGraph::new(),
            sources,
            planned: HashMap::new(),
            order: Vec::new(),
            visiting: Vec::new(),
            global_env: automatic_args(&req.platform, &req.build_platform)
                .into_iter()
                .collect(),
            global_declared: BTreeSet::new(),
            used_args: BTreeSet::new(),
            images: HashMap::new(),
            contexts: HashMap::new(),
            warnings: Vec::new(),
        };
        planner.global_args()?;
        Ok(planner)
    }

    fn finish(mut self) -> Result<Graph, PlanError> {
        let target = match &self.req.target {
            None => self.sources.len() - 1,
            Some(t) => self
                .sources
                .iter()
                .position(|s| s.name.as_deref() == Some(&t.to_lowercase()))
                .ok_or_else(|| {
                    let available: Vec<String> =
                        self.sources.iter().filter_map(|s| s.name.clone()).collect();
                    PlanError::new(
                        PlanErrorKind::TargetNotFound {
                            target: t.clone(),
                            available: if available.is_empty() {
                                "none has a name".into()
                            } else {
                                available.join(", ")
                            },
                        },
                        None,
                    )
                })?,
        };
        self.stage(target, None)?;
        for name in self.req.build_args.keys() {
            if !self.used_args.contains(name) && !PROXY_ARGS.contains(&name.as_str()) {
                self.warnings.push(PlanWarning {
                    message: format!("build arg {name:?} was not consumed by any ARG instruction"),
                    span: None,
                });
            }
        }
        let mut stages = Vec::new();
        let mut target_pos = 0;
        for idx in &self.order {
            if *idx == target {
                target_pos = stages.len();
            }
            stages.push(self.planned[idx].clone());
        }
        Ok(Graph {
            dag: self.dag,
            stages,
            target: target_pos,
            warnings: self.warnings,
        })
    }

    fn expand(&self, word: &Word, env: &BTreeMap<String, String>) -> Result<String, PlanError> {
        self.lexer
            .process_word(&word.value, env)
            .map_err(|e| err(PlanErrorKind::Expand(e.message), word.span))
    }

    fn expand_words(
        &self,
        word: &Word,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, PlanError> {
        self.lexer
            .process_words(&word.value, env)
            .map_err(|e| err(PlanErrorKind::Expand(e.message), word.span))
    }

    fn global_args(&mut self) -> Result<(), PlanError> {
        let first_from = self.sources[0].start;
        for ins in &self.req.dockerfile.instructions[..first_from] {
            let InstructionKind::Arg(arg) = &ins.kind else {
                continue;
            };
            for def in &arg.args {
                let name = def.name.value.clone();
                self.global_declared.insert(name.clone());
                let value = match self.req.build_args.get(&name) {
                    Some(v) => {
                        self.used_args.insert(name.clone());
                        Some(v.clone())
                    }
                    None => match &def.default {
                        Some(d) => Some(self.expand(d, &self.global_env)?),
                        None => None,
                    },
                };
                if let Some(v) = value {
                    self.global_env.insert(name, v);
                }
            }
        }
        Ok(())
    }

    fn add_vertex(
        &mut self,
        op: Op,
        inputs: Vec<NodeId>,
        stage: usize,
        span: Option<Span>,
        description: String,
    ) -> NodeId {
        #[derive(Serialize)]
        struct KeyMaterial<'k> {
            op: &'k Op,
            inputs: Vec<&'k CacheKey>,
        }
        let key = CacheKey::of(&KeyMaterial {
            op: &op,
            inputs: inputs.iter().map(|i| &self.dag[*i].key).collect(),
        });
        let id = self.dag.add_node(Vertex {
            op,
            inputs: inputs.clone(),
            key,
            stage,
            span,
            description,
        });
        for input in inputs {
            self.dag.update_edge(input, id, ());
        }
        id
    }

    fn stage_by_name(&self, name: &str) -> Option<usize> {
        let lower = name.to_lowercase();
        self.sources
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// Plans stage `index` (once) and returns its result.
    fn stage(&mut self, index: usize, from: Option<Span>) -> Result<Stage, PlanError> {
        if let Some(done) = self.planned.get(&index) {
            return Ok(done.clone());
        }
        if self.visiting.contains(&index) {
            let names: Vec<String> = self
                .visiting
                .iter()
                .chain(std::iter::once(&index))
                .map(|i| {
                    self.sources[*i]
                        .name
                        .clone()
                        .unwrap_or_else(|| i.to_string())
                })
                .collect();
            let span = from.unwrap_or_default();
            return Err(err(PlanErrorKind::CircularStage(names.join(" -> ")), span));
        }
        self.visiting.push(index);
        let result = self.plan_stage(index);
        self.visiting.pop();
        let stage = result?;
        self.planned.insert(index, stage.clone());
        self.order.push(index);
        Ok(stage)
    }

    fn plan_stage(&mut self, index: usize) -> Result<Stage, PlanError> {
        let (start, end) = (self.sources[index].start, self.sources[index].end);
        let instructions = &self.req.dockerfile.instructions;
        let from_ins = &instructions[start];
        let InstructionKind::From(from) = &from_ins.kind else {
            unreachable!("stages start with FROM");
        };
        let image_name = self.expand(&from.image, &self.global_env.clone())?;
        if image_name.is_empty() {
            return Err(err(
                PlanErrorKind::BlankBaseName(from.image.value.clone()),
                from.image.span,
            ));
        }
        let platform = match &from.platform {
            Some(p) => {
                let text = self.expand(p, &self.global_env.clone())?;
                Platform::parse(&text).map_err(|m| err(PlanErrorKind::Invalid(m), p.span))?
            }
            None => self.req.platform.clone(),
        };

        let mut state = self.base_state(index, &image_name, platform, from_ins.span)?;
        if state.config.env_value("PATH").is_none() {
            state.config.set_env("PATH", DEFAULT_PATH);
        }

        // ONBUILD triggers of the base image run first, then are cleared.
        let triggers = state.config.on_build.take().unwrap_or_default();
        for trigger in triggers {
            let parsed = rbuild_parser::parse(&trigger).map_err(|e| {
                err(
                    PlanErrorKind::Invalid(format!(
                        "invalid ONBUILD trigger {trigger:?} in base image: {e}"
                    )),
                    from_ins.span,
                )
            })?;
            for ins in &parsed.instructions {
                // Errors point at the FROM that pulled the trigger in.
                let mut ins = ins.clone();
                ins.span = from_ins.span;
                self.dispatch(&mut state, &ins)?;
            }
        }

        for ins in &instructions[start + 1..end] {
            self.dispatch(&mut state, ins)?;
        }

        Ok(Stage {
            index,
            name: self.sources[index].name.clone(),
            output: state.rootfs,
            config: state.config,
            history: state.history,
            author: state.author,
            os: state.platform.os.clone(),
            architecture: state.platform.architecture.clone(),
            variant: state.platform.variant.clone(),
            base: state.base,
            base_history: state.base_history,
        })
    }

    fn base_state(
        &mut self,
        index: usize,
        image_name: &str,
        platform: Platform,
        span: Span,
    ) -> Result<StageState, PlanError> {
        let mut state = StageState {
            index,
            rootfs: NodeId::new(0),
            base: None,
            base_history: 0,
            config: ContainerConfig::default(),
            history: Vec::new(),
            author: None,
            platform,
            args: Vec::new(),
            cmd_set: false,
        };
        if let Some(parent) = self.stage_by_name(image_name) {
            let parent = self.stage(parent, Some(span))?;
            state.rootfs = parent.output;
            state.base = parent.base;
            state.base_history = parent.base_history;
            state.config = parent.config;
            state.history = parent.history;
            state.author = parent.author;
            return Ok(state);
        }
        if image_name.eq_ignore_ascii_case("scratch") {
            state.rootfs = self.add_vertex(
                Op::Scratch,
                vec![],
                index,
                Some(span),
                "FROM scratch".into(),
            );
            return Ok(state);
        }
        if self.req.named_contexts.contains(image_name) {
            // `FROM <named context>`: the context's files are the root
            // filesystem, with an empty config (as BuildKit does for a local
            // directory given with --build-context).
            let empty = self.add_vertex(
                Op::Scratch,
                vec![],
                index,
                Some(span),
                "FROM scratch".into(),
            );
            let digest = self
                .inputs
                .select_context(image_name, &[".".to_string()], &[])
                .map_err(|e| err(PlanErrorKind::Context(e), span))?;
            let ctx = self.context_vertex(image_name, index);
            state.rootfs = self.add_vertex(
                Op::Copy(CopyOp {
                    add: false,
                    from: CopyFrom::Context {
                        name: image_name.to_string(),
                        digest,
                    },
                    sources: vec![".".into()],
                    inline: Vec::new(),
                    dest: "/".into(),
                    chown: None,
                    chmod: None,
                    link: false,
                    parents: false,
                    exclude: Vec::new(),
                    checksum: None,
                    keep_git_dir: false,
                    unpack: None,
                }),
                vec![empty, ctx],
                index,
                Some(span),
                format!("FROM {image_name} (build context)"),
            );
            return Ok(state);
        }
        let (vertex, base) = self.image_vertex(image_name, &state.platform.clone(), index, span)?;
        state.rootfs = vertex;
        state.base = Some(vertex);
        state.config = base.config;
        state.base_history = base.history.len();
        state.history = base.history;
        Ok(state)
    }

    fn image_vertex(
        &mut self,
        reference: &str,
        platform: &Platform,
        stage: usize,
        span: Span,
    ) -> Result<(NodeId, BaseImage), PlanError> {
        let base = self
            .inputs
            .base_image(reference, platform)
            .map_err(|message| {
                err(
                    PlanErrorKind::BaseImage {
                        reference: reference.to_string(),
                        message,
                    },
                    span,
                )
            })?;
        let cache_id = format!("{}@{}", base.reference, base.digest);
        if let Some(&id) = self.images.get(&cache_id) {
            return Ok((id, base));
        }
        let id = self.add_vertex(
            Op::Image {
                reference: base.reference.clone(),
                digest: base.digest.clone(),
            },
            vec![],
            stage,
            Some(span),
            format!("FROM {}@{}", base.reference, base.digest),
        );
        self.images.insert(cache_id, id);
        Ok((id, base))
    }

    fn context_vertex(&mut self, name: &str, stage: usize) -> NodeId {
        if let Some(&id) = self.contexts.get(name) {
            return id;
        }
        let label = if name.is_empty() { "context" } else { name };
        let id = self.add_vertex(
            Op::Context {
                name: name.to_string(),
            },
            vec![],
            stage,
            None,
            format!("load build {label}"),
        );
        self.contexts.insert(name.to_string(), id);
        id
    }

    fn history(state: &mut StageState, created_by: String, layer: bool) {
        let created_by = if layer {
            format!("{created_by} # buildkit")
        } else {
            created_by
        };
        state.history.push(History {
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: !layer,
            ..Default::default()
        });
    }

    fn config_change(&mut self, state: &mut StageState, ins: &Instruction, created_by: String) {
        self.add_vertex(
            Op::Config {
                instruction: created_by.clone(),
            },
            vec![state.rootfs],
            state.index,
            Some(ins.span),
            ins.original.trim().to_string(),
        );
        Self::history(state, created_by, false);
    }

    fn dispatch(&mut self, state: &mut StageState, ins: &Instruction) -> Result<(), PlanError> {
        let env = state.env();
        match &ins.kind {
            InstructionKind::From(_) => unreachable!("FROM starts a stage"),
            InstructionKind::Run(run) => self.run(state, ins, run, &env)?,
            InstructionKind::Copy(c) => {
                let from = c.from.as_ref().map(|f| self.expand(f, &env)).transpose()?;
                let spec = CopySpec {
                    add: false,
                    from,
                    from_span: c.from.as_ref().map(|f| f.span),
                    files: &c.files,
                    chown: c.chown.as_ref(),
                    chmod: c.chmod.as_ref(),
                    link: c.link,
                    parents: c.parents,
                    exclude: &c.exclude,
                    checksum: None,
                    keep_git_dir: false,
                    unpack: None,
                };
                self.copy(state, ins, spec, &env)?;
            }
            InstructionKind::Add(a) => {
                let spec = CopySpec {
                    add: true,
                    from: None,
                    from_span: None,
                    files: &a.files,
                    chown: a.chown.as_ref(),
                    chmod: a.chmod.as_ref(),
                    link: a.link,
                    parents: false,
                    exclude: &a.exclude,
                    checksum: a.checksum.as_ref(),
                    keep_git_dir: a.keep_git_dir.unwrap_or(false),
                    unpack: a.unpack,
                };
                self.copy(state, ins, spec, &env)?;
            }
            InstructionKind::Workdir(w) => {
                let path = self.expand(&w.path, &env)?;
                let wd = normalize_workdir(state.config.working_dir.as_deref(), &path);
                state.config.working_dir = Some(wd.clone());
                let layer = wd != "/";
                if layer {
                    let user = state.config.user.clone().filter(|u| !u.is_empty());
                    state.rootfs = self.add_vertex(
                        Op::Mkdir(MkdirOp {
                            path: wd.clone(),
                            mode: 0o755,
                            user,
                        }),
                        vec![state.rootfs],
                        state.index,
                        Some(ins.span),
                        format!("WORKDIR {wd}"),
                    );
                }
                Self::history(state, format!("WORKDIR {wd}"), layer);
            }
            InstructionKind::Env(kv) | InstructionKind::Label(kv) => {
                let is_env = matches!(ins.kind, InstructionKind::Env(_));
                let mut pairs = Vec::new();
                for p in &kv.pairs {
                    let key = self.expand(&p.key, &env)?;
                    if key.is_empty() {
                        return Err(err(
                            PlanErrorKind::Invalid(format!(
                                "{} names must not be empty",
                                ins.name().to_uppercase()
                            )),
                            p.key.span,
                        ));
                    }
                    let value = self.expand(&p.value, &env)?;
                    pairs.push((key, value));
                }
                let mut text = String::from(if is_env { "ENV" } else { "LABEL" });
                for (k, v) in &pairs {
                    if is_env {
                        state.config.set_env(k, v);
                        text.push_str(&format!(" {k}={v}"));
                    } else {
                        state
                            .config
                            .labels
                            .get_or_insert_with(BTreeMap::new)
                            .insert(k.clone(), v.clone());
                        text.push_str(&format!(" {k}={v}"));
                    }
                }
                self.config_change(state, ins, text);
            }
            InstructionKind::Arg(arg) => {
                let mut parts = Vec::new();
                for def in &arg.args {
                    let name = def.name.value.clone();
                    let value = if let Some(v) = self.req.build_args.get(&name) {
                        self.used_args.insert(name.clone());
                        Some(v.clone())
                    } else if let Some(d) = &def.default {
                        Some(self.expand(d, &state.env())?)
                    } else {
                        // A global ARG (or an automatic platform ARG) redeclared in the stage.
                        self.global_env.get(&name).cloned()
                    };
                    match value {
                        Some(v) => {
                            parts.push(format!("{name}={v}"));
                            state.set_arg(&name, v);
                        }
                        None => parts.push(name.clone()),
                    }
                }
                self.config_change(state, ins, format!("ARG {}", parts.join(" ")));
            }
            InstructionKind::User(u) => {
                let user = self.expand(&u.user, &env)?;
                state.config.user = Some(user.clone());
                self.config_change(state, ins, format!("USER {user}"));
            }
            InstructionKind::Expose(e) => {
                let mut ports = Vec::new();
                for w in &e.ports {
                    for p in self.expand_words(w, &env)? {
                        ports.extend(
                            parse_port_spec(&p)
                                .map_err(|m| err(PlanErrorKind::Invalid(m), w.span))?,
                        );
                    }
                }
                let map = state.config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in &ports {
                    map.insert(p.clone(), EmptyObject {});
                }
                self.config_change(state, ins, format!("EXPOSE [{}]", ports.join(" ")));
            }
            InstructionKind::Volume(v) => {
                let mut vols = Vec::new();
                for w in &v.volumes {
                    let path = self.expand(w, &env)?;
                    if path.is_empty() {
                        return Err(err(
                            PlanErrorKind::Invalid(
                                "VOLUME specified can not be an empty string".into(),
                            ),
                            w.span,
                        ));
                    }
                    vols.push(path);
                }
                let map = state.config.volumes.get_or_insert_with(BTreeMap::new);
                for p in &vols {
                    map.insert(p.clone(), EmptyObject {});
                }
                self.config_change(state, ins, format!("VOLUME [{}]", vols.join(" ")));
            }
            InstructionKind::StopSignal(s) => {
                let sig = self.expand(&s.signal, &env)?;
                state.config.stop_signal = Some(sig.clone());
                self.config_change(state, ins, format!("STOPSIGNAL {sig}"));
            }
            InstructionKind::Shell(s) => {
                let shell: Vec<String> = s.shell.iter().map(|w| w.value.clone()).collect();
                state.config.shell = Some(shell.clone());
                self.config_change(state, ins, format!("SHELL [{}]", shell.join(" ")));
            }
            InstructionKind::Cmd(c) => {
                let args = command_args(&c.command, &state.config);
                state.config.cmd = Some(args.clone());
                state.cmd_set = true;
                self.config_change(state, ins, format!("CMD {}", go_list(&args)));
            }
            InstructionKind::Entrypoint(c) => {
                let args = command_args(&c.command, &state.config);
                state.config.entrypoint = Some(args.clone());
                if !state.cmd_set {
                    // An inherited CMD does not survive a new ENTRYPOINT.
                    state.config.cmd = None;
                }
                self.config_change(state, ins, format!("ENTRYPOINT {}", go_list(&args)));
            }
            InstructionKind::Healthcheck(h) => {
                let hc = match h {
                    HealthcheckInstruction::None(_) => Healthcheck {
                        test: Some(vec!["NONE".into()]),
                        ..Default::default()
                    },
                    HealthcheckInstruction::Cmd(c) => {
                        let test = match &c.command {
                            CommandLine::Exec(words) => std::iter::once("CMD".to_string())
                                .chain(words.iter().map(|w| w.value.clone()))
                                .collect(),
                            CommandLine::Shell(w) => vec!["CMD-SHELL".into(), w.value.clone()],
                        };
                        let ns = |d: &Option<
                            rbuild_parser::instruction::Spanned<std::time::Duration>,
                        >| {
                            d.as_ref().map_or(0, |d| d.value.as_nanos() as i64)
                        };
                        Healthcheck {
                            test: Some(test),
                            interval: ns(&c.interval),
                            timeout: ns(&c.timeout),
                            start_period: ns(&c.start_period),
                            start_interval: ns(&c.start_interval),
                            retries: c.retries.as_ref().map_or(0, |r| r.value as i64),
                        }
                    }
                };
                // Go's `%+v` of Docker's HealthConfig, as BuildKit writes it.
                let text = format!(
                    "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                    hc.test.clone().unwrap_or_default().join(" "),
                    go_duration(hc.interval),
                    go_duration(hc.timeout),
                    go_duration(hc.start_period),
                    go_duration(hc.start_interval),
                    hc.retries
                );
                state.config.healthcheck = Some(hc);
                self.config_change(state, ins, text);
            }
            InstructionKind::Onbuild(o) => {
                state
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(o.expression.clone());
                // BuildKit records no history entry for ONBUILD.
                self.add_vertex(
                    Op::Config {
                        instruction: format!("ONBUILD {}", o.expression),
                    },
                    vec![state.rootfs],
                    state.index,
                    Some(ins.span),
                    ins.original.trim().to_string(),
                );
            }
            InstructionKind::Maintainer(m) => {
                state.author = Some(m.maintainer.value.clone());
                self.config_change(state, ins, format!("MAINTAINER {}", m.maintainer.value));
            }
        }
        Ok(())
    }

    fn run(
        &mut self,
        state: &mut StageState,
        ins: &Instruction,
        run: &RunInstruction,
        env: &BTreeMap<String, String>,
    ) -> Result<(), PlanError> {
        let mut files = Vec::new();
        let args = match &run.command {
            CommandLine::Exec(words) => words.iter().map(|w| w.value.clone()).collect(),
            CommandLine::Shell(word) => {
                let mut script = word.value.clone();
                if !run.heredocs.is_empty() {
                    let sole = rbuild_parser::heredoc::parse_marker(script.trim())
                        .ok()
                        .flatten()
                        .is_some();
                    if sole {
                        // `RUN <<EOF`: the body is the script. With a shebang
                        // it is written to a file and executed directly.
                        let doc = &run.heredocs[0];
                        let body = doc.chomped_content();
                        if body.starts_with("#!") {
                            let path = format!("/dev/pipes/{}", doc.name);
                            files.push(InlineFile {
                                path: path.clone(),
                                content: body,
                                mode: 0o755,
                            });
                            let args = vec![path];
                            return self.finish_run(state, ins, run, env, args, files);
                        }
                        script = body;
                    } else {
                        // Hand the heredocs to the shell to interpret.
                        for doc in &run.heredocs {
                            script.push('\n');
                            script.push_str(&doc.content);
                            script.push_str(&doc.name);
                        }
                    }
                }
                let mut args: Vec<String> = state
                    .config
                    .shell
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect());
                args.push(script);
                args
            }
        };
        self.finish_run(state, ins, run, env, args, files)
    }

    fn finish_run(
        &mut self,
        state: &mut StageState,
        ins: &Instruction,
        run: &RunInstruction,
        env: &BTreeMap<String, String>,
        args: Vec<String>,
        files: Vec<InlineFile>,
    ) -> Result<(), PlanError> {
        // As in BuildKit, the graph records the request; whether it is
        // allowed (the security.insecure entitlement) is the executor's call.
        let insecure = run
            .security
            .as_ref()
            .is_some_and(|s| s.value == SecurityMode::Insecure);
        let network = match run.network.as_ref().map(|n| n.value) {
            Some(NetworkMode::None) => Network::None,
            _ => Network::Host,
        };
        let mut inputs = vec![state.rootfs];
        let mut mounts = Vec::new();
        for rm in &run.mounts {
            let mount = match &rm.mount {
                Some(m) => m.clone(),
                None => {
                    let mut fields = rm.fields.clone();
                    for f in &mut fields {
                        if let Some(v) = &mut f.value {
                            v.value = self.expand(v, env)?;
                        }
                    }
                    Mount::from_fields(&fields, rm.span)?
                }
            };
            mounts.push(self.exec_mount(state, &mount, rm.span, &mut inputs)?);
        }
        let mut run_env = state.config.env.clone().unwrap_or_default();
        let env_keys: BTreeSet<String> = state
            .config
            .env_pairs()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for (k, v) in &state.args {
            if !env_keys.contains(k) {
                run_env.push(format!("{k}={v}"));
            }
        }
        let proxy_env: Vec<String> = self
            .req
            .build_args
            .iter()
            .filter(|(k, _)| {
                PROXY_ARGS.contains(&k.as_str()) && !state.args.iter().any(|(a, _)| a == *k)
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let history_args: Vec<String> = state
            .args
            .iter()
            .filter(|(k, _)| !env_keys.contains(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let op = ExecOp {
            args: args.clone(),
            env: run_env,
            cwd: state
                .config
                .working_dir
                .clone()
                .unwrap_or_else(|| "/".into()),
            user: state.config.user.clone().unwrap_or_default(),
            network,
            insecure,
            mounts,
            files,
            proxy_env,
        };
        state.rootfs = self.add_vertex(
            Op::Exec(op),
            inputs,
            state.index,
            Some(ins.span),
            ins.original.trim().to_string(),
        );
        let mut text = String::from("RUN ");
        if !history_args.is_empty() {
            text.push_str(&format!(
                "|{} {} ",
                history_args.len(),
                history_args.join(" ")
            ));
        }
        text.push_str(&args.join(" "));
        Self::history(state, text, true);
        Ok(())
    }

    fn exec_mount(
        &mut self,
        state: &StageState,
        m: &Mount,
        span: Span,
        inputs: &mut Vec<NodeId>,
    ) -> Result<ExecMount, PlanError> {
        let cwd = state
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let target = match &m.target {
            Some(t) => join_path(&cwd, &t.value),
            None => cwd.clone(),
        };
        if target == "/"
            && matches!(
                m.mount_type,
                MountType::Bind | MountType::Cache | MountType::Tmpfs
            )
        {
            return Err(err(
                PlanErrorKind::Invalid("invalid mount target \"/\"".into()),
                span,
            ));
        }
        let kind = match m.mount_type {
            MountType::Bind => MountKind::Bind,
            MountType::Cache => MountKind::Cache,
            MountType::Tmpfs => MountKind::Tmpfs,
            MountType::Secret => MountKind::Secret,
            MountType::Ssh => MountKind::Ssh,
        };
        let mut input = None;
        let source = m.source.as_ref().map(|s| s.value.clone());
        match m.mount_type {
            MountType::Bind | MountType::Cache => {
                let fs = match &m.from {
                    Some(from) => Some(self.filesystem_ref(state, &from.value, from.span)?),
                    None => None,
                };
                // A bind of a build context: the main one (no `from`) or a
                // named one. The files' digest enters the key through `id`.
                let context = match fs.map(|f| &self.dag[f].op) {
                    None if m.mount_type == MountType::Bind => Some(String::new()),
                    Some(Op::Context { name }) => Some(name.clone()),
                    _ => None,
                };
                if let Some(name) = context {
                    let src = source.clone().unwrap_or_else(|| ".".into());
                    let digest = self
                        .inputs
                        .select_context(&name, std::slice::from_ref(&src), &[])
                        .map_err(|e| err(PlanErrorKind::Context(e), span))?;
                    let ctx = self.context_vertex(&name, state.index);
                    input = Some(inputs.len());
                    inputs.push(ctx);
                    return Ok(ExecMount {
                        kind,
                        target,
                        input,
                        source: Some(src),
                        readonly: m.readonly,
                        id: Some(digest),
                        sharing: None,
                        mode: None,
                        uid: None,
                        gid: None,
                        size: None,
                        required: false,
                        env: None,
                        context: Some(name),
                    });
                }
                if let Some(fs) = fs {
                    input = Some(inputs.len());
                    inputs.push(fs);
                }
            }
            _ => {}
        }
        let id = match m.mount_type {
            MountType::Cache => Some(m.id.as_ref().map_or(target.clone(), |i| i.value.clone())),
            MountType::Secret => Some(m.id.as_ref().map_or_else(
                || target.rsplit('/').next().unwrap_or_default().to_string(),
                |i| i.value.clone(),
            )),
            MountType::Ssh => Some(m.id.as_ref().map_or("default".into(), |i| i.value.clone())),
            _ => None,
        };
        Ok(ExecMount {
            kind,
            target: if m.mount_type == MountType::Secret && m.target.is_none() && m.env.is_none() {
                format!("/run/secrets/{}", id.clone().unwrap_or_default())
            } else {
                target
            },
            input,
            source,
            readonly: m.readonly,
            id,
            sharing: m.sharing.map(|s| format!("{s:?}").to_lowercase()),
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            size: m.size,
            required: m.required,
            env: m.env.as_ref().map(|e| e.value.clone()),
            context: None,
        })
    }

    /// `--from=` of COPY and RUN --mount: a stage by name or index, a named
    /// context, or an image.
    fn filesystem_ref(
        &mut self,
        state: &StageState,
        from: &str,
        span: Span,
    ) -> Result<NodeId, PlanError> {
        if let Ok(idx) = from.parse::<usize>() {
            if idx >= state.index {
                return Err(err(PlanErrorKind::BadStageIndex(idx), span));
            }
            return Ok(self.stage(idx, Some(span))?.output);
        }
        if let Some(idx) = self.stage_by_name(from) {
            if idx == state.index {
                return Err(err(
                    PlanErrorKind::CircularStage(format!("{from} -> {from}")),
                    span,
                ));
            }
            return Ok(self.stage(idx, Some(span))?.output);
        }
        if self.req.named_contexts.contains(from) {
            return Ok(self.context_vertex(from, state.index));
        }
        let platform = state.platform.clone();
        Ok(self.image_vertex(from, &platform, state.index, span)?.0)
    }

    fn copy(
        &mut self,
        state: &mut StageState,
        ins: &Instruction,
        spec: CopySpec<'_>,
        env: &BTreeMap<String, String>,
    ) -> Result<(), PlanError> {
        let mut sources = Vec::new();
        let mut source_spans: Vec<(String, Span)> = Vec::new();
        let mut inline = Vec::new();
        for src in &spec.files.sources {
            match src {
                CopySource::Path(w) => {
                    let path = self.expand(w, env)?;
                    if spec.from.is_none() && !is_remote(&path) && escapes_root(&path) {
                        return Err(err(PlanErrorKind::PathEscapesContext(path), w.span));
                    }
                    source_spans.push((path.clone(), w.span));
                    sources.push(path);
                }
                CopySource::Heredoc { heredoc, .. } => {
                    let mut content = heredoc.chomped_content();
                    if heredoc.expand {
                        let mut lexer = self.lexer.clone();
                        lexer.raw_quotes = true;
                        content = lexer
                            .process_word(&content, env)
                            .map_err(|e| err(PlanErrorKind::Expand(e.message), heredoc.span))?;
                    }
                    inline.push(InlineFile {
                        path: heredoc.name.clone(),
                        content,
                        mode: 0o644,
                    });
                }
            }
        }
        let dest_raw = self.expand(&spec.files.dest, env)?;
        let cwd = state
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let mut dest = join_path(&cwd, &dest_raw);
        if (dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".")
            && !dest.ends_with('/')
        {
            dest.push('/');
        }
        let exclude = spec
            .exclude
            .iter()
            .map(|w| self.expand(w, env))
            .collect::<Result<Vec<_>, _>>()?;
        let chown = spec.chown.map(|w| self.expand(w, env)).transpose()?;
        let chmod = spec.chmod.map(|w| self.expand(w, env)).transpose()?;
        let checksum = spec.checksum.map(|w| self.expand(w, env)).transpose()?;

        let mut inputs = vec![state.rootfs];
        let local: Vec<String> = sources.iter().filter(|s| !is_remote(s)).cloned().collect();
        let from = if let Some(f) = &spec.from {
            let fs = self.filesystem_ref(state, f, spec.from_span.unwrap_or(ins.span))?;
            inputs.push(fs);
            if let Op::Context { name } = &self.dag[fs].op {
                let name = name.clone();
                let digest = self
                    .inputs
                    .select_context(&name, &local, &exclude)
                    .map_err(|e| {
                        let span = blame_source(&e, &source_spans).unwrap_or(ins.span);
                        err(PlanErrorKind::Context(e), span)
                    })?;
                CopyFrom::Context { name, digest }
            } else {
                CopyFrom::Filesystem
            }
        } else if !local.is_empty() {
            let digest = self
                .inputs
                .select_context("", &local, &exclude)
                .map_err(|e| {
                    let span = blame_source(&e, &source_spans).unwrap_or(ins.span);
                    err(PlanErrorKind::Context(e), span)
                })?;
            inputs.push(self.context_vertex("", state.index));
            CopyFrom::Context {
                name: String::new(),
                digest,
            }
        } else {
            CopyFrom::Nothing
        };
        // BuildKit's history text: flags that shape the files, the sources,
        // heredocs as `<<NAME`, and the destination as written.
        let mut text = String::from(if spec.add { "ADD" } else { "COPY" });
        if spec.parents {
            text.push_str(" --parents");
        }
        if let Some(c) = &chown {
            text.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = &chmod {
            text.push_str(&format!(" --chmod={c}"));
        }
        for src in &sources {
            text.push_str(&format!(" {src}"));
        }
        for f in &inline {
            text.push_str(&format!(" <<{}", f.path));
        }
        text.push_str(&format!(" {dest_raw}"));
        state.rootfs = self.add_vertex(
            Op::Copy(CopyOp {
                add: spec.add,
                from,
                sources,
                inline,
                dest,
                chown,
                chmod,
                link: spec.link,
                parents: spec.parents,
                exclude,
                checksum,
                keep_git_dir: spec.keep_git_dir,
                unpack: spec.unpack,
            }),
            inputs,
            state.index,
            Some(ins.span),
            ins.original.trim().to_string(),
        );
        Self::history(state, text, true);
        Ok(())
    }
}

struct CopySpec<'i> {
    add: bool,
    from: Option<String>,
    from_span: Option<Span>,
    files: &'i rbuild_parser::instruction::SourcesAndDest,
    chown: Option<&'i Word>,
    chmod: Option<&'i Word>,
    link: bool,
    parents: bool,
    exclude: &'i [Word],
    checksum: Option<&'i Word>,
    keep_git_dir: bool,
    unpack: Option<bool>,
}

/// The source a context error is about (its message quotes the cleaned
/// path), so the report can point at that word rather than the instruction.
fn blame_source(message: &str, sources: &[(String, Span)]) -> Option<Span> {
    sources.iter().find_map(|(path, span)| {
        let cleaned = path.trim_start_matches("./").trim_start_matches('/');
        (!cleaned.is_empty() && message.contains(&format!("/{cleaned}\""))).then_some(*span)
    })
}

fn is_remote(src: &str) -> bool {
    src.starts_with("http://") || src.starts_with("https://") || src.starts_with("git@")
}

/// Whether a context-relative source path climbs out of the context.
fn escapes_root(path: &str) -> bool {
    let mut depth: i64 = 0;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// Lexically cleans an absolute path (`/a/./b/../c` → `/a/c`).
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `path` made absolute against `cwd`, cleaned.
pub fn join_path(cwd: &str, path: &str) -> String {
    if path.starts_with('/') {
        clean_path(path)
    } else {
        clean_path(&format!("{cwd}/{path}"))
    }
}

fn normalize_workdir(current: Option<&str>, path: &str) -> String {
    join_path(current.unwrap_or("/"), path)
}

/// CMD/ENTRYPOINT arguments: exec form as written, shell form through SHELL.
fn command_args(cmd: &CommandLine, config: &ContainerConfig) -> Vec<String> {
    match cmd {
        CommandLine::Exec(words) => words.iter().map(|w| w.value.clone()).collect(),
        CommandLine::Shell(w) => {
            let mut args: Vec<String> = config
                .shell
                .clone()
                .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect());
            args.push(w.value.clone());
            args
        }
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_list(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| rbuild_parser::dump::go_quote(a))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `time.Duration.String()` for nanoseconds: `0s`, `1.5s`, `1m30s`, `500ms`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let ns = ns.unsigned_abs();
    let trim = |v: f64| {
        let s = format!("{v:.9}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    let body = if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", trim(ns as f64 / 1e3))
    } else if ns < 1_000_000_000 {
        format!("{}ms", trim(ns as f64 / 1e6))
    } else {
        let h = ns / 3_600_000_000_000;
        let m = ns / 60_000_000_000 % 60;
        let s = trim((ns % 60_000_000_000) as f64 / 1e9);
        match (h, m) {
            (0, 0) => format!("{s}s"),
            (0, m) => format!("{m}m{s}s"),
            (h, m) => format!("{h}h{m}m{s}s"),
        }
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

/// `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`...
fn parse_port_spec(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let parse = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {p}"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(format!("invalid port range: {ports}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(join_path("/app", "src"), "/app/src");
        assert_eq!(join_path("/app", "/x/../y"), "/y");
        assert_eq!(join_path("/", ".."), "/");
        assert!(escapes_root("../x"));
        assert!(escapes_root("a/../../x"));
        assert!(!escapes_root("a/../b"));
        assert!(!escapes_root("/abs"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(10_000_000_000), "10s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    }

    #[test]
    fn port_specs() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            parse_port_spec("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(parse_port_spec("80/icmp").is_err());
        assert!(parse_port_spec("x").is_err());
    }
}
