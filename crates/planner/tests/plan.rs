//! Dockerfile semantics of the planner, table- and case-driven, with base
//! images and context digests supplied in memory.

use std::collections::{BTreeMap, HashMap};

use rbuild_planner::graph::{CopyFrom, Op};
use rbuild_planner::image::{BaseImage, ContainerConfig};
use rbuild_planner::{plan, Graph, PlanErrorKind, PlanInputs, PlanRequest, Platform};

#[derive(Default)]
struct Fake {
    images: HashMap<String, BaseImage>,
    /// Context content "version" per source path: changing it changes the digest.
    content: HashMap<String, String>,
    resolved: Vec<String>,
}

impl PlanInputs for Fake {
    fn base_image(&mut self, reference: &str, _p: &Platform) -> Result<BaseImage, String> {
        self.resolved.push(reference.to_string());
        self.images
            .get(reference)
            .cloned()
            .ok_or_else(|| format!("{reference}: not found"))
    }
    fn select_context(
        &mut self,
        ctx: &str,
        sources: &[String],
        excludes: &[String],
    ) -> Result<String, String> {
        let mut s = format!("{ctx}|{excludes:?}");
        for src in sources {
            if src.contains("missing") {
                return Err(format!("\"/{src}\": not found"));
            }
            s.push_str(&format!(
                "|{src}={}",
                self.content.get(src).cloned().unwrap_or_default()
            ));
        }
        Ok(s)
    }
}

fn busybox(digest: &str) -> BaseImage {
    BaseImage {
        reference: "busybox".into(),
        digest: digest.into(),
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
        config: ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "BASE=1".into()]),
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        },
        history: vec![],
    }
}

fn fake() -> Fake {
    let mut f = Fake::default();
    f.images.insert("busybox".into(), busybox("sha256:aaa"));
    f
}

fn planned(
    src: &str,
    args: &[(&str, &str)],
    target: Option<&str>,
    inputs: &mut Fake,
) -> Result<Graph, rbuild_planner::PlanError> {
    let df = rbuild_parser::parse(src).expect("test Dockerfile parses");
    let mut req = PlanRequest::new(&df);
    req.platform = Platform::parse("linux/amd64").unwrap();
    req.build_platform = req.platform.clone();
    req.build_args = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    req.target = target.map(String::from);
    plan(&req, inputs)
}

fn ok(src: &str) -> Graph {
    planned(src, &[], None, &mut fake()).unwrap_or_else(|e| panic!("{e} at {:?}", e.span))
}

/// Keys of the layer-making vertices of the target stage's chain, in order.
fn layer_keys(g: &Graph) -> Vec<String> {
    let mut keys = Vec::new();
    let mut id = g.target_stage().output;
    loop {
        let v = g.vertex(id);
        keys.push(v.key.to_string());
        match v.inputs.first() {
            Some(&parent) => id = parent,
            None => break,
        }
    }
    keys.reverse();
    keys
}

fn exec_args(g: &Graph) -> Vec<Vec<String>> {
    g.topological_order()
        .into_iter()
        .filter_map(|id| match &g.vertex(id).op {
            Op::Exec(e) => Some(e.args.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn unused_stages_are_pruned_and_target_selects() {
    let src = "FROM busybox AS a\nRUN echo a\nFROM busybox AS b\nRUN echo b\nFROM busybox\nCOPY --from=a /x /x\n";
    let g = ok(src);
    let names: Vec<_> = g.stages.iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, [Some("a".to_string()), None]);
    assert_eq!(
        exec_args(&g),
        [vec!["/bin/sh".to_string(), "-c".into(), "echo a".into()]]
    );
    let g = planned(src, &[], Some("B"), &mut fake()).unwrap();
    assert_eq!(g.target_stage().name.as_deref(), Some("b"));
    let e = planned(src, &[], Some("nope"), &mut fake()).unwrap_err();
    assert!(
        matches!(e.kind, PlanErrorKind::TargetNotFound { ref available, .. } if available == "a, b"),
        "{e}"
    );
}

#[test]
fn global_args_feed_from_and_build_args_override() {
    let src = "ARG IMG=busybox\nFROM ${IMG}\n";
    let mut f = fake();
    ok(src);
    f.images.insert("other".into(), busybox("sha256:bbb"));
    planned(src, &[("IMG", "other")], None, &mut f).unwrap();
    assert_eq!(f.resolved, ["other"]);
    let e = planned("FROM ${NOPE}\n", &[], None, &mut fake()).unwrap_err();
    assert!(matches!(e.kind, PlanErrorKind::BlankBaseName(_)));
    assert_eq!(e.span.unwrap().start.line, 1);
    assert_eq!(e.span.unwrap().start.column, 6);
}

#[test]
fn arg_scoping() {
    // A global ARG is visible in a stage only when redeclared.
    let g = ok(
        "ARG V=g\nFROM busybox\nRUN echo $V\nARG V\nRUN echo $V\nARG W=w${V}\nENV V=env\nRUN x\n",
    );
    let stage = g.target_stage();
    let envs: Vec<Vec<String>> = g
        .topological_order()
        .into_iter()
        .filter_map(|id| match &g.vertex(id).op {
            Op::Exec(e) => Some(e.env.clone()),
            _ => None,
        })
        .collect();
    assert!(
        !envs[0].iter().any(|e| e.starts_with("V=")),
        "{:?}",
        envs[0]
    );
    assert!(envs[1].contains(&"V=g".to_string()));
    // ENV overrides the ARG of the same name; the ARG W kept its expansion.
    assert!(envs[2].contains(&"V=env".to_string()) && !envs[2].contains(&"V=g".to_string()));
    assert!(envs[2].contains(&"W=wg".to_string()));
    // ARGs never persist into the image config.
    assert!(!stage
        .config
        .env
        .as_ref()
        .unwrap()
        .iter()
        .any(|e| e.starts_with("W=")));
    // Platform args are automatic in the global scope, and in a stage once declared.
    let g = ok("FROM busybox\nARG TARGETARCH\nWORKDIR /out/$TARGETARCH\n");
    assert_eq!(
        g.target_stage().config.working_dir.as_deref(),
        Some("/out/amd64")
    );
}

#[test]
fn build_arg_values_and_unused_warning() {
    let g = planned(
        "FROM busybox\nARG A=default\nRUN echo\n",
        &[("A", "given"), ("B", "x")],
        None,
        &mut fake(),
    )
    .unwrap();
    let exec = exec_args(&g);
    assert_eq!(exec.len(), 1);
    let hist: Vec<_> = g
        .target_stage()
        .history
        .iter()
        .filter_map(|h| h.created_by.clone())
        .collect();
    assert!(
        hist.contains(&"RUN |1 A=given /bin/sh -c echo # buildkit".to_string()),
        "{hist:?}"
    );
    assert_eq!(g.warnings.len(), 1);
    assert!(g.warnings[0].message.contains("\"B\""));
}

#[test]
fn image_config_semantics() {
    let g = ok(concat!(
        "FROM busybox\n",
        "ENV A=1 B=$A\n",
        "LABEL \"k y\"=\"v w\"\n",
        "EXPOSE 80 53/udp\n",
        "VOLUME /data\n",
        "USER nobody\n",
        "WORKDIR app\n",
        "WORKDIR sub\n",
        "SHELL [\"/bin/bash\", \"-c\"]\n",
        "ENTRYPOINT echo hi\n",
        "STOPSIGNAL SIGKILL\n",
        "HEALTHCHECK --interval=5s --retries=2 CMD true\n",
        "ONBUILD RUN x\n",
    ));
    let c = &g.target_stage().config;
    let env = c.env.clone().unwrap();
    assert_eq!(
        env,
        ["PATH=/bin", "BASE=1", "A=1", "B="],
        "ENV pairs expand with the env before the instruction"
    );
    assert_eq!(c.labels.as_ref().unwrap()["k y"], "v w");
    assert_eq!(
        c.exposed_ports.as_ref().unwrap().keys().collect::<Vec<_>>(),
        ["53/udp", "80/tcp"]
    );
    assert!(c.volumes.as_ref().unwrap().contains_key("/data"));
    assert_eq!(c.user.as_deref(), Some("nobody"));
    assert_eq!(c.working_dir.as_deref(), Some("/app/sub"));
    assert_eq!(
        c.entrypoint.clone().unwrap(),
        ["/bin/bash", "-c", "echo hi"]
    );
    assert_eq!(c.cmd, None, "an inherited CMD is reset by ENTRYPOINT");
    assert_eq!(c.stop_signal.as_deref(), Some("SIGKILL"));
    let hc = c.healthcheck.clone().unwrap();
    assert_eq!(hc.test.unwrap(), ["CMD-SHELL", "true"]);
    assert_eq!((hc.interval, hc.retries), (5_000_000_000, 2));
    assert_eq!(c.on_build.clone().unwrap(), ["RUN x"]);
    // One history entry per instruction, except ONBUILD (as in BuildKit),
    // with BuildKit's wording.
    let hist: Vec<String> = g
        .target_stage()
        .history
        .iter()
        .filter_map(|h| h.created_by.clone())
        .collect();
    assert_eq!(hist.len(), 11, "{hist:?}");
    assert!(
        hist.contains(&"EXPOSE [80/tcp 53/udp]".to_string()),
        "{hist:?}"
    );
    assert!(
        hist.contains(&"HEALTHCHECK {Test:[CMD-SHELL true] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:2}".to_string()),
        "{hist:?}"
    );
    assert!(!hist.iter().any(|h| h.starts_with("ONBUILD")));
}

#[test]
fn scratch_gets_default_path() {
    let g = ok("FROM scratch\nCMD [\"/app\"]\n");
    let c = &g.target_stage().config;
    assert_eq!(
        c.env.clone().unwrap(),
        [format!("PATH={}", rbuild_planner::image::DEFAULT_PATH)]
    );
    assert_eq!(c.cmd.clone().unwrap(), ["/app"]);
}

#[test]
fn onbuild_triggers_of_the_base_run_after_from() {
    let mut f = fake();
    let mut base = busybox("sha256:ccc");
    base.config.on_build = Some(vec!["RUN echo triggered".into()]);
    f.images.insert("busybox".into(), base);
    let g = planned("FROM busybox\nRUN echo mine\n", &[], None, &mut f).unwrap();
    let args: Vec<String> = exec_args(&g).into_iter().map(|a| a[2].clone()).collect();
    assert_eq!(args, ["echo triggered", "echo mine"]);
    assert_eq!(
        g.target_stage().config.on_build,
        None,
        "triggers are not inherited further"
    );
}

#[test]
fn cache_keys_are_stable_and_change_with_what_affects_the_result() {
    let base = "FROM busybox\nRUN echo 1\nCOPY a /a\nRUN echo 2\nCMD [\"x\"]\n";
    let k1 = layer_keys(&ok(base));
    assert_eq!(k1, layer_keys(&ok(base)), "same inputs, same keys");
    // Changing a RUN changes it and everything after it, not what came before.
    let k2 = layer_keys(&ok(&base.replace("echo 2", "echo 3")));
    assert_eq!(k1[..3], k2[..3]);
    assert_ne!(k1[3], k2[3]);
    // A config-only change (CMD) changes no layer key.
    assert_eq!(k1, layer_keys(&ok(&base.replace("[\"x\"]", "[\"y\"]"))));
    // Context content changes the COPY key and later ones.
    let mut f = fake();
    f.content.insert("a".into(), "v2".into());
    let k3 = layer_keys(&planned(base, &[], None, &mut f).unwrap());
    assert_eq!(k1[..2], k3[..2]);
    assert_ne!(k1[2], k3[2]);
    assert_ne!(k1[3], k3[3]);
    // A re-tagged base (new digest) changes every key.
    let mut f = fake();
    f.images.insert("busybox".into(), busybox("sha256:ddd"));
    let k4 = layer_keys(&planned(base, &[], None, &mut f).unwrap());
    assert!(k1.iter().zip(&k4).all(|(a, b)| a != b));
    // Build args used by a RUN change its key; unrelated ones do not.
    let with_arg = "FROM busybox\nARG V\nRUN echo\n";
    let a = layer_keys(&planned(with_arg, &[("V", "1")], None, &mut fake()).unwrap());
    let b = layer_keys(&planned(with_arg, &[("V", "2")], None, &mut fake()).unwrap());
    assert_ne!(a.last(), b.last());
    // Proxy args are passed but stay out of the key.
    let p1 = layer_keys(
        &planned(
            "FROM busybox\nRUN echo\n",
            &[("http_proxy", "http://a")],
            None,
            &mut fake(),
        )
        .unwrap(),
    );
    assert_eq!(p1, layer_keys(&ok("FROM busybox\nRUN echo\n")));
}

#[test]
fn copy_sources_and_destinations() {
    let g = ok("FROM busybox\nWORKDIR /app\nCOPY a b ./\nCOPY --from=busybox /bin/sh rel\n");
    let copies: Vec<_> = g
        .topological_order()
        .into_iter()
        .filter_map(|id| match &g.vertex(id).op {
            Op::Copy(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(copies[0].dest, "/app/");
    let hist: Vec<String> = g
        .target_stage()
        .history
        .iter()
        .filter_map(|h| h.created_by.clone())
        .collect();
    assert!(
        hist.contains(&"COPY a b ./ # buildkit".to_string()),
        "{hist:?}"
    );
    assert!(
        hist.contains(&"COPY /bin/sh rel # buildkit".to_string()),
        "{hist:?}"
    );
    assert_eq!(copies[0].sources, ["a", "b"]);
    assert!(matches!(copies[0].from, CopyFrom::Context { .. }));
    assert_eq!(copies[1].dest, "/app/rel");
    assert!(matches!(copies[1].from, CopyFrom::Filesystem));

    let e = planned("FROM busybox\nCOPY ../secret /x\n", &[], None, &mut fake()).unwrap_err();
    assert!(matches!(e.kind, PlanErrorKind::PathEscapesContext(_)));
    assert_eq!(
        (e.span.unwrap().start.line, e.span.unwrap().start.column),
        (2, 6)
    );
    let e = planned("FROM busybox\nCOPY missing /x\n", &[], None, &mut fake()).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    // The error points at the missing source, not just the instruction.
    assert_eq!(
        (e.span.unwrap().start.line, e.span.unwrap().start.column),
        (2, 6)
    );
}

#[test]
fn stage_references_and_cycles() {
    let g = ok("FROM busybox AS base\nRUN echo\nFROM base AS next\nFROM scratch\nCOPY --from=next /x /x\nCOPY --from=0 /y /y\n");
    assert_eq!(g.stages.len(), 3);
    let e = planned(
        "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n",
        &[],
        None,
        &mut fake(),
    )
    .unwrap_err();
    assert!(matches!(e.kind, PlanErrorKind::CircularStage(_)), "{e}");
    let e = planned(
        "FROM busybox\nCOPY --from=1 /x /x\nFROM busybox\n",
        &[],
        Some("0").filter(|_| false),
        &mut fake(),
    );
    assert!(
        e.is_ok(),
        "stage 0 is pruned, so its bad index never matters"
    );
    let e = planned(
        "FROM busybox\nCOPY --from=0 /x /x\n",
        &[],
        None,
        &mut fake(),
    )
    .unwrap_err();
    assert!(matches!(e.kind, PlanErrorKind::BadStageIndex(0)));
}

#[test]
fn run_heredocs_and_mounts() {
    let g = ok("FROM busybox\nRUN <<EOF\necho a\necho b\nEOF\nRUN <<EOF\n#!/bin/sh\necho x\nEOF\nRUN cat <<A > /f\nhello\nA\nRUN --network=none --mount=type=cache,target=/c echo\n");
    let ops: Vec<_> = g
        .topological_order()
        .into_iter()
        .filter_map(|id| match &g.vertex(id).op {
            Op::Exec(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ops[0].args, ["/bin/sh", "-c", "echo a\necho b\n"]);
    assert_eq!(ops[1].args, ["/dev/pipes/EOF"]);
    assert_eq!(ops[1].files[0].content, "#!/bin/sh\necho x\n");
    assert_eq!(ops[2].args, ["/bin/sh", "-c", "cat <<A > /f\nhello\nA"]);
    assert_eq!(ops[3].network, rbuild_planner::graph::Network::None);
    assert_eq!(ops[3].mounts[0].target, "/c");
    assert_eq!(ops[3].mounts[0].id.as_deref(), Some("/c"));
}

#[test]
fn from_a_named_context_copies_it_as_the_root_filesystem() {
    let df = rbuild_parser::parse("FROM base\nRUN echo\n").unwrap();
    let mut req = PlanRequest::new(&df);
    req.named_contexts.insert("base".into());
    let mut f = fake();
    let g = plan(&req, &mut f).unwrap();
    assert!(f.resolved.is_empty(), "a named context is not an image");
    let run = g.vertex(g.target_stage().output);
    let copy = g.vertex(run.inputs[0]);
    match &copy.op {
        Op::Copy(c) => {
            assert!(matches!(&c.from, CopyFrom::Context { name, .. } if name == "base"));
            assert_eq!(
                (c.sources.as_slice(), c.dest.as_str()),
                ([".".to_string()].as_slice(), "/")
            );
        }
        other => panic!("{other:?}"),
    }
}
