//! `rbuild graph` on the shared corpus of real Dockerfiles: every file must
//! plan into a graph with base images left unresolved (as
//! `rbuild graph --offline` does) and context files stood in for by their
//! source paths. Files that cannot plan without a `--build-arg` are listed
//! with the error BuildKit gives them too.

use std::path::PathBuf;

use rbuild_planner::image::BaseImage;
use rbuild_planner::{plan, PlanErrorKind, PlanInputs, PlanRequest, Platform};

struct Offline;

impl PlanInputs for Offline {
    fn base_image(&mut self, reference: &str, p: &Platform) -> Result<BaseImage, String> {
        Ok(BaseImage {
            reference: reference.to_string(),
            digest: format!("unresolved:{reference}"),
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            ..Default::default()
        })
    }
    fn select_context(
        &mut self,
        ctx: &str,
        sources: &[String],
        excludes: &[String],
    ) -> Result<String, String> {
        Ok(format!("unresolved:{ctx}:{sources:?}:{excludes:?}"))
    }
}

fn corpus() -> Option<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/real-world");
    if dir.is_dir() {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "real-world corpus missing under CI"
    );
    eprintln!("SKIPPED: {} not found", dir.display());
    None
}

#[test]
fn every_real_world_dockerfile_plans() {
    let Some(dir) = corpus() else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    let mut planned = 0;
    let mut need_args = Vec::new();
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let df = match rbuild_parser::parse_bytes(&std::fs::read(file).unwrap()) {
            Ok(df) => df,
            Err(e) => {
                failures.push(format!("{name}: parse: {e}"));
                continue;
            }
        };
        let req = PlanRequest::new(&df);
        match plan(&req, &mut Offline) {
            Ok(g) => {
                assert!(g.dag.node_count() > 0);
                planned += 1;
            }
            // `FROM $VAR` with no default: needs --build-arg, as with docker build.
            Err(e) if matches!(e.kind, PlanErrorKind::BlankBaseName(_)) => need_args.push(name),
            Err(e) => failures.push(format!("{name}: {e} at {:?}", e.span.map(|s| s.start))),
        }
    }
    println!(
        "real-world graphs: {planned}/{} plan, {} need a --build-arg for FROM, {} fail",
        files.len(),
        need_args.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(planned + need_args.len(), files.len());
}
