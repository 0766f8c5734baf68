//! The `rbuild` binary as users meet it: exit codes, stdout, error reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rbuild(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .output()
        .expect("run rbuild")
}

fn temp_dockerfile(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbuild-cli-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("Dockerfile");
    std::fs::write(&file, text).unwrap();
    file
}

fn conformance() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    if dir.is_dir() {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "conformance data missing under CI"
    );
    eprintln!("SKIPPED: no conformance data at {}", dir.display());
    None
}

#[test]
fn debug_parse_prints_exactly_the_buildkit_dump() {
    let Some(dir) = conformance() else { return };
    for case in ["env", "json", "escape", "health"] {
        let case_dir = dir.join("buildkit-parser/testfiles").join(case);
        if !case_dir.is_dir() {
            continue;
        }
        let out = rbuild(&[
            "debug",
            "parse",
            case_dir.join("Dockerfile").to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = std::fs::read(case_dir.join("result")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&expected),
            "{case}"
        );
    }
}

#[test]
fn misspelt_instruction_is_reported_with_location_caret_and_suggestion() {
    let file = temp_dockerfile("misspelt", "FROM scratch\nRUNN echo hi\n");
    for args in [
        vec!["debug", "parse", "--json", file.to_str().unwrap()],
        vec![
            "-t",
            "x",
            "-f",
            file.to_str().unwrap(),
            file.parent().unwrap().to_str().unwrap(),
        ],
    ] {
        let out = rbuild(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{}:2:1", file.display())), "{err}");
        assert!(err.contains("2 | RUNN echo hi\n  | ^^^^\n"), "{err}");
        assert!(err.contains("did you mean `RUN`?"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn bad_flag_is_reported_at_its_column() {
    let file = temp_dockerfile("badflag", "FROM scratch\nCOPY --form=a /x /y\n");
    let out = rbuild(&["debug", "parse", "--json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:6"), "{err}");
    assert!(err.contains("--form"), "{err}");
}

#[test]
fn raw_parse_errors_exit_non_zero() {
    let file = temp_dockerfile("envnovalue", "FROM scratch\nENV PATH\n");
    let out = rbuild(&["debug", "parse", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ENV must have two arguments"), "{err}");
    assert!(err.contains(":2:5"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = rbuild(&["debug", "parse", "/nonexistent/Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/Dockerfile"));
}

#[test]
fn non_utf8_file_points_at_the_bad_byte() {
    let dir = std::env::temp_dir().join(format!("rbuild-cli-test-{}-utf8", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("Dockerfile");
    std::fs::write(&file, b"FROM scratch\nRUN echo \xff\n").unwrap();
    let out = rbuild(&["debug", "parse", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:10"), "{err}");
}

#[test]
fn the_readme_example_parses() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/Dockerfiles/every-instruction.Dockerfile");
    let out = rbuild(&["debug", "parse", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("(arg \"BASE=busybox:latest\")\n(from \"${BASE}\" \"AS\" \"base\")\n"),
        "{stdout}"
    );
    let json = rbuild(&["debug", "parse", "--json", file.to_str().unwrap()]);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let file = temp_dockerfile("pipe", &"FROM scratch\nENV A=b\n".repeat(2000));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(["debug", "parse", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

fn graph_dir() -> PathBuf {
    let file = temp_dockerfile(
        "graph",
        "FROM busybox AS a\nRUN echo hi > /x\nFROM scratch\nCOPY --from=a /x /x\nCOPY f /f\nCMD [\"/x\"]\n",
    );
    let dir = file.parent().unwrap().to_path_buf();
    std::fs::write(dir.join("f"), "f").unwrap();
    dir
}

#[test]
fn graph_json_has_the_documented_shape() {
    let dir = graph_dir();
    let root = dir.join("root");
    let out = rbuild(&[
        "--root",
        root.to_str().unwrap(),
        "graph",
        "--offline",
        "--format",
        "json",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    let nodes = doc["nodes"].as_array().unwrap();
    let mut seen = std::collections::HashSet::new();
    for n in nodes {
        for i in n["inputs"].as_array().unwrap() {
            assert!(
                seen.contains(&i.as_u64().unwrap()),
                "inputs come first: {n}"
            );
        }
        seen.insert(n["id"].as_u64().unwrap());
        assert!(n["key"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(n["cached"], false);
    }
    let exec = nodes.iter().find(|n| n["op"]["kind"] == "exec").unwrap();
    assert_eq!(exec["line"], 2);
    assert_eq!(exec["op"]["args"][2], "echo hi > /x");
    let image = nodes.iter().find(|n| n["op"]["kind"] == "image").unwrap();
    assert_eq!(image["op"]["digest"], "unresolved");
    let copy = nodes
        .iter()
        .find(|n| n["op"]["kind"] == "copy" && n["line"] == 5)
        .unwrap();
    assert_eq!(copy["op"]["from"]["kind"], "context");
    assert!(nodes
        .iter()
        .any(|n| n["op"]["kind"] == "config" && n["line"] == 6));
}

#[test]
fn graph_dot_renders_with_graphviz() {
    let dir = graph_dir();
    let root = dir.join("root");
    let out = rbuild(&[
        "--root",
        root.to_str().unwrap(),
        "graph",
        "--offline",
        "--format",
        "dot",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("digraph rbuild {") && text.contains("->"),
        "{text}"
    );
    let Ok(mut dot) = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "graphviz missing under CI"
        );
        eprintln!("SKIPPED: graphviz (dot) not installed");
        return;
    };
    use std::io::Write;
    dot.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let svg = dot.wait_with_output().unwrap();
    assert!(svg.status.success());
    assert!(String::from_utf8_lossy(&svg.stdout).contains("<svg"));
}

#[test]
fn graph_errors_point_at_the_line() {
    let file = temp_dockerfile("graph-escape", "FROM scratch\nCOPY ../secret /x\n");
    let dir = file.parent().unwrap();
    let out = rbuild(&[
        "--root",
        dir.join("root").to_str().unwrap(),
        "graph",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Dockerfile:2:6") && err.contains("outside the build context"),
        "{err}"
    );
}
