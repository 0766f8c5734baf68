//! `rbuild build`, `rbuild graph` and `rbuild debug parse`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rbuild_cache::Root;
use rbuild_executor::{Event, Executor, Puller};
use rbuild_planner::context::BuildContext;
use rbuild_planner::image::BaseImage;
use rbuild_planner::{Graph, Op, PlanInputs, PlanRequest, Platform};

use crate::report;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Name and optionally tag of the image (repeatable).
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
    /// Do not use the cache.
    #[arg(long)]
    no_cache: bool,
    /// Resolve base images at the registry even when the local store has one of that name.
    #[arg(long)]
    pull: bool,
    /// How many steps may run at once (default: 4 per CPU, at least 16).
    #[arg(long)]
    jobs: Option<usize>,
    /// Write the image out as well: `type=docker,dest=FILE` or `type=oci,dest=FILE`.
    #[arg(short = 'o', long = "output")]
    outputs: Vec<String>,
    /// Memory limit for RUN steps in bytes (suffixes k, m, g).
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit for RUN steps (e.g. 1.5).
    #[arg(long)]
    cpus: Option<f64>,
    /// Maximum number of processes in a RUN step.
    #[arg(long = "pids-limit")]
    pids_limit: Option<u64>,
}

#[derive(clap::Args)]
pub struct GraphArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// tree, dot (Graphviz) or json (documented in docs/graph-json.md).
    #[arg(long, default_value = "tree")]
    format: String,
    /// Do not contact registries: base images appear unresolved, and COPY
    /// sources missing from the context are shown by their paths.
    #[arg(long)]
    offline: bool,
}

#[derive(clap::Args)]
struct CommonArgs {
    /// Dockerfile path (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Build-time variable `KEY=VALUE`, or `KEY` to take it from the environment.
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Build this stage instead of the last one.
    #[arg(long)]
    target: Option<String>,
    /// Target platform (`linux/amd64`).
    #[arg(long)]
    platform: Option<String>,
    /// Extra named context `NAME=PATH`.
    #[arg(long = "build-context")]
    build_contexts: Vec<String>,
    /// The build context directory.
    context: PathBuf,
}

pub fn read_source(file: &Path) -> Result<String, String> {
    let bytes =
        std::fs::read(file).map_err(|e| format!("error: cannot read {}: {e}\n", file.display()))?;
    match rbuild_parser::utf8(&bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(err) => Err(report::render_parse_error(
            &file.display().to_string(),
            &String::from_utf8_lossy(&bytes),
            &err,
        )),
    }
}

fn read_and_parse(file: &Path) -> Result<(String, rbuild_parser::Dockerfile), String> {
    let source = read_source(file)?;
    match rbuild_parser::parse(&source) {
        Ok(df) => Ok((source, df)),
        Err(err) => Err(report::render_parse_error(
            &file.display().to_string(),
            &source,
            &err,
        )),
    }
}

pub fn debug_parse(file: &Path, json: bool) -> Result<ExitCode, String> {
    let name = file.display().to_string();
    if json {
        let (_, df) = read_and_parse(file)?;
        let text = serde_json::to_string_pretty(&df).map_err(|e| format!("error: {e}\n"))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let source = read_source(file)?;
    match rbuild_parser::parse_nodes(&source) {
        Ok(raw) => {
            for w in &raw.warnings {
                eprintln!("warning: {name}:{}: {}", w.span.start.line, w.message);
            }
            println!("{}", rbuild_parser::dump(&raw.nodes));
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => Err(report::render_parse_error(&name, &source, &err)),
    }
}

/// Everything a build or graph command sets up before planning.
struct Session {
    root: Arc<Root>,
    runtime: tokio::runtime::Runtime,
    puller: Arc<Puller>,
    contexts: HashMap<String, Arc<BuildContext>>,
    file: PathBuf,
    source: String,
    dockerfile: rbuild_parser::Dockerfile,
}

fn err(e: impl std::fmt::Display) -> String {
    format!("error: {e}\n")
}

fn open_session(
    root_dir: &Path,
    insecure: &[String],
    common: &CommonArgs,
    pull: bool,
) -> Result<Session, String> {
    let file = common
        .file
        .clone()
        .unwrap_or_else(|| common.context.join("Dockerfile"));
    let (source, dockerfile) = read_and_parse(&file)?;
    let root = Arc::new(Root::open(root_dir).map_err(err)?);
    // Scratch left by killed builds (older than any live build's scratch
    // could plausibly be) is removed; failing to clean is not an error.
    let _ = root.clean_tmp(std::time::Duration::from_secs(6 * 3600));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let client =
        rbuild_registry::Client::new(crate::config::client_config(insecure)?).map_err(err)?;
    let puller = Arc::new(Puller::new(root.clone(), Arc::new(client)).always_pull(pull));
    let mut contexts = HashMap::new();
    let cache_file = |dir: &Path| {
        let id = rbuild_cache::sha256_digest(dir.to_string_lossy().as_bytes());
        root.path()
            .join("contexts")
            .join(format!("{}.cache", &id[7..]))
    };
    let _ = std::fs::create_dir_all(root.path().join("contexts"));
    let main_dir = common
        .context
        .canonicalize()
        .map_err(|e| format!("error: build context {}: {e}\n", common.context.display()))?;
    let main =
        BuildContext::open(&main_dir, Some(&file), Some(cache_file(&main_dir))).map_err(err)?;
    contexts.insert(String::new(), Arc::new(main));
    for spec in &common.build_contexts {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| format!("error: --build-context {spec:?}: expected NAME=PATH\n"))?;
        let dir = Path::new(path)
            .canonicalize()
            .map_err(|e| format!("error: build context {path}: {e}\n"))?;
        let ctx = BuildContext::open(&dir, None, Some(cache_file(&dir))).map_err(err)?;
        contexts.insert(name.to_string(), Arc::new(ctx));
    }
    Ok(Session {
        root,
        runtime,
        puller,
        contexts,
        file,
        source,
        dockerfile,
    })
}

/// `--build-arg K=V` and `--build-arg K` (value from the environment; skipped when unset).
fn build_args(args: &[String]) -> BTreeMap<String, String> {
    args.iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            None => std::env::var(a).ok().map(|v| (a.clone(), v)),
        })
        .collect()
}

struct Inputs<'s> {
    session: &'s Session,
    offline: bool,
}

impl PlanInputs for Inputs<'_> {
    fn base_image(&mut self, reference: &str, platform: &Platform) -> Result<BaseImage, String> {
        if self.offline {
            return Ok(BaseImage {
                reference: reference.to_string(),
                digest: "unresolved".into(),
                os: platform.os.clone(),
                architecture: platform.architecture.clone(),
                variant: platform.variant.clone(),
                ..Default::default()
            });
        }
        self.session
            .runtime
            .block_on(self.session.puller.resolve(reference, platform))
            .map_err(|e| e.to_string())
    }

    fn select_context(
        &mut self,
        context: &str,
        sources: &[String],
        excludes: &[String],
    ) -> Result<String, String> {
        let ctx = self.session.contexts.get(context).ok_or_else(|| {
            format!("build context {context:?} was not given (use --build-context)")
        })?;
        ctx.select(sources, excludes)
            .map(|s| s.digest)
            .map_err(|e| e.to_string())
    }
}

fn plan(session: &Session, common: &CommonArgs, offline: bool) -> Result<Graph, String> {
    let mut req = PlanRequest::new(&session.dockerfile);
    req.build_args = build_args(&common.build_args);
    req.target = common.target.clone();
    if let Some(p) = &common.platform {
        req.platform = Platform::parse(p).map_err(err)?;
    }
    req.named_contexts = session
        .contexts
        .keys()
        .filter(|k| !k.is_empty())
        .cloned()
        .collect::<BTreeSet<_>>();
    let graph = rbuild_planner::plan(&req, &mut Inputs { session, offline }).map_err(|e| {
        let name = session.file.display().to_string();
        match e.span {
            Some(span) => report::render(
                &name,
                &session.source,
                span,
                &e.to_string(),
                e.help().as_deref(),
            ),
            None => format!("error: {e}\n"),
        }
    })?;
    for ctx in session.contexts.values() {
        let _ = ctx.save_meta_cache();
    }
    for w in &graph.warnings {
        match w.span {
            Some(s) => eprintln!(
                "warning: {}:{}: {}",
                session.file.display(),
                s.start.line,
                w.message
            ),
            None => eprintln!("warning: {}", w.message),
        }
    }
    Ok(graph)
}

fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('b') => (&lower[..lower.len() - 1], 1),
        _ => (lower.as_str(), 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("error: invalid size {s:?}\n"))
}

enum Output {
    Docker(PathBuf),
    Oci(PathBuf),
}

fn parse_output(spec: &str) -> Result<Output, String> {
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => {
                return Err(format!(
                    "error: --output {spec:?}: expected type=docker|oci,dest=FILE\n"
                ))
            }
        }
    }
    let dest = dest.ok_or_else(|| format!("error: --output {spec:?}: dest=FILE is required\n"))?;
    match kind.as_deref() {
        Some("docker") => Ok(Output::Docker(dest)),
        Some("oci") => Ok(Output::Oci(dest)),
        other => Err(format!(
            "error: --output type {other:?} is not supported (docker, oci)\n"
        )),
    }
}

/// Normalised name for the local store (`app` → `docker.io/library/app:latest`).
pub fn normalize_tag(tag: &str) -> Result<String, String> {
    rbuild_registry::Reference::parse(tag)
        .map(|r| r.to_string())
        .map_err(|e| format!("error: invalid tag {tag:?}: {e}\n"))
}

pub fn build(root_dir: &Path, insecure: &[String], args: BuildArgs) -> Result<ExitCode, String> {
    let started = Instant::now();
    let outputs = args
        .outputs
        .iter()
        .map(|o| parse_output(o))
        .collect::<Result<Vec<_>, _>>()?;
    let tags = args
        .tags
        .iter()
        .map(|t| normalize_tag(t))
        .collect::<Result<Vec<_>, _>>()?;
    let session = open_session(root_dir, insecure, &args.common, args.pull)?;
    let graph = Arc::new(plan(&session, &args.common, false)?);

    let names: HashMap<usize, String> = graph
        .dag
        .node_indices()
        .map(|i| (i.index(), graph.vertex(i).description.clone()))
        .collect();
    let out = Arc::new(Mutex::new(std::io::stderr()));
    let progress: rbuild_executor::Progress = Arc::new(move |ev: Event| {
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = match ev {
            Event::Started {
                vertex,
                description,
            } => writeln!(o, "#{vertex} {description}"),
            Event::Cached { vertex } => writeln!(o, "#{vertex} CACHED"),
            Event::Output { vertex, line } => writeln!(o, "#{vertex} {line}"),
            Event::Done { vertex, seconds } => writeln!(
                o,
                "#{vertex} DONE {seconds:.1}s ({})",
                names.get(&vertex).map_or("", |s| s)
            ),
        };
    });
    let limits = rbuild_executor::sandbox::Limits {
        memory: args.memory.as_deref().map(parse_size).transpose()?,
        cpus: args.cpus,
        pids: args.pids_limit,
    };
    let executor = Arc::new(Executor {
        root: session.root.clone(),
        puller: session.puller.clone(),
        contexts: session.contexts.clone(),
        runner: std::env::current_exe().map_err(err)?,
        no_cache: args.no_cache,
        // Steps often wait (sleep, network, disk) rather than compute, so
        // the default allows well more steps than cores, like BuildKit.
        jobs: args.jobs.unwrap_or_else(|| {
            (4 * std::thread::available_parallelism().map_or(2, |n| n.get())).max(16)
        }),
        limits,
        progress,
    });
    let results = session
        .runtime
        .block_on(executor.run(graph.clone()))
        .map_err(|e| {
            let name = session.file.display().to_string();
            let mut msg = e.to_string();
            if let rbuild_executor::ExecErrorKind::StepFailed { output_tail, .. } = &*e.kind {
                if !output_tail.is_empty() {
                    msg.push_str("\n--- last lines of output ---\n");
                    msg.push_str(&output_tail.join("\n"));
                }
            }
            match e.span {
                Some(span) => report::render(&name, &session.source, span, &msg, None),
                None => format!("error: {msg}\n"),
            }
        })?;
    let created = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let image = rbuild_executor::assemble(&session.root, &graph, &results, created).map_err(err)?;
    for t in &tags {
        session
            .root
            .tag_image(
                t,
                &image.manifest_digest,
                image.manifest_size,
                rbuild_executor::image::MANIFEST_MEDIA_TYPE,
            )
            .map_err(err)?;
    }
    if !outputs.is_empty() {
        let img = rbuild_push::find_image(&session.root, &image.manifest_digest).map_err(err)?;
        let short_tags: Vec<String> = args.tags.clone();
        for o in outputs {
            let (path, result) = match &o {
                Output::Docker(p) => (
                    p.clone(),
                    write_atomically(p, |w| {
                        rbuild_push::export_docker_archive(&session.root, &img, &short_tags, w)
                            .map_err(|e| e.to_string())
                    }),
                ),
                Output::Oci(p) => (
                    p.clone(),
                    write_atomically(p, |w| {
                        rbuild_push::export_oci_archive(
                            &session.root,
                            &img,
                            short_tags.first().map(|t| tag_part(t)),
                            w,
                        )
                        .map_err(|e| e.to_string())
                    }),
                ),
            };
            result.map_err(|e| format!("error: writing {}: {e}\n", path.display()))?;
            eprintln!("exported to {}", path.display());
        }
    }
    eprintln!(
        "built {} in {:.1}s{}",
        image.manifest_digest,
        started.elapsed().as_secs_f64(),
        if tags.is_empty() {
            String::new()
        } else {
            format!(", tagged {}", tags.join(", "))
        }
    );
    println!("{}", image.manifest_digest);
    Ok(ExitCode::SUCCESS)
}

/// The tag of a reference (`app:1` → `1`, `app` → `latest`).
fn tag_part(t: &str) -> &str {
    match t.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag,
        _ => "latest",
    }
}

/// Writes `path` through a temporary file beside it, renamed into place only
/// when complete, so an interrupted export never leaves a half archive.
fn write_atomically(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> Result<(), String>,
) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        f(&mut w)?;
        w.flush().map_err(|e| e.to_string())?;
    }
    tmp.as_file().sync_all().map_err(|e| e.to_string())?;
    tmp.persist(path).map_err(|e| e.to_string())?;
    Ok(())
}

pub fn graph(root_dir: &Path, insecure: &[String], args: GraphArgs) -> Result<ExitCode, String> {
    let session = open_session(root_dir, insecure, &args.common, false)?;
    let graph = plan(&session, &args.common, args.offline)?;
    let hit = |key: &str| -> bool {
        matches!(session.root.get_key::<serde_json::Value>(key), Ok(Some(_)))
    };
    let order = graph.topological_order();
    match args.format.as_str() {
        "json" => {
            let nodes: Vec<serde_json::Value> = order
                .iter()
                .map(|&id| {
                    let v = graph.vertex(id);
                    serde_json::json!({
                        "id": id.index(),
                        "op": v.op,
                        "key": v.key,
                        "inputs": v.inputs.iter().map(|i| i.index()).collect::<Vec<_>>(),
                        "stage": v.stage,
                        "line": v.span.map(|s| s.start.line),
                        "description": v.description,
                        "cached": v.makes_layer() && hit(v.key.as_str()),
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "version": 1,
                "target_stage": graph.target_stage().index,
                "nodes": nodes,
            });
            println!("{}", serde_json::to_string_pretty(&doc).map_err(err)?);
        }
        "dot" => {
            println!("digraph rbuild {{");
            println!("  rankdir=TB; node [shape=box, fontname=monospace];");
            for &id in &order {
                let v = graph.vertex(id);
                let label = format!(
                    "{}\\n{}",
                    v.description.replace('"', "\\\""),
                    &v.key.as_str()[..19]
                );
                println!("  n{} [label=\"{label}\"];", id.index());
                for i in &v.inputs {
                    println!("  n{} -> n{};", i.index(), id.index());
                }
            }
            println!("}}");
        }
        "tree" => {
            for &id in &order {
                let v = graph.vertex(id);
                let kind = match &v.op {
                    Op::Scratch => "scratch",
                    Op::Image { .. } => "image",
                    Op::Context { .. } => "context",
                    Op::Exec(_) => "exec",
                    Op::Copy(_) => "copy",
                    Op::Mkdir(_) => "mkdir",
                    Op::Config { .. } => "config",
                };
                let line = v
                    .span
                    .map(|s| format!("line {}", s.start.line))
                    .unwrap_or_default();
                let cache = if v.makes_layer() && hit(v.key.as_str()) {
                    " (cached)"
                } else {
                    ""
                };
                let deps: Vec<String> =
                    v.inputs.iter().map(|i| format!("#{}", i.index())).collect();
                println!("#{} [{kind}] {}  {line}{cache}", id.index(), v.description);
                println!("    key  {}", v.key);
                if !deps.is_empty() {
                    println!("    from {}", deps.join(" "));
                }
            }
        }
        other => {
            return Err(format!(
                "error: unknown --format {other:?} (tree, dot, json)\n"
            ))
        }
    }
    Ok(ExitCode::SUCCESS)
}
