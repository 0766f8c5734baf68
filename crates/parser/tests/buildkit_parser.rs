//! BuildKit's parser golden files: for every case our dump must equal the
//! `result` file byte for byte, and every negative case must be rejected.

mod common;

use rbuild_parser::{dump, parse_nodes};

#[test]
fn positive_cases_match_buildkit_dumps() {
    let Some(dir) = common::conformance_dir("buildkit-parser/testfiles") else {
        return;
    };
    let cases = common::entries(&dir);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        match parse_nodes(&src) {
            Ok(raw) => {
                let got = dump(&raw.nodes) + "\n";
                if got != expected {
                    failures.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
                }
            }
            Err(e) => failures.push(format!("{name}: parse error {e} at {:?}", e.span)),
        }
    }
    println!(
        "buildkit-parser testfiles: {}/{} cases match",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(
        cases.len() >= 33,
        "expected the 33 upstream cases, found {}",
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn negative_cases_are_rejected() {
    let Some(dir) = common::conformance_dir("buildkit-parser/testfiles-negative") else {
        return;
    };
    let cases = common::entries(&dir);
    let accepted: Vec<_> = cases
        .iter()
        .filter(|case| {
            parse_nodes(&std::fs::read_to_string(case.join("Dockerfile")).unwrap()).is_ok()
        })
        .collect();
    println!(
        "buildkit-parser testfiles-negative: {}/{} cases rejected",
        cases.len() - accepted.len(),
        cases.len()
    );
    assert_eq!(cases.len(), 4);
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

#[test]
fn instruction_line_numbers() {
    let Some(dir) = common::conformance_dir("buildkit-parser/testfile-line") else {
        return;
    };
    let src = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let raw = parse_nodes(&src).unwrap();
    let lines: Vec<(u32, u32)> = raw
        .nodes
        .iter()
        .map(|n| (n.span.start.line, n.span.end.line))
        .collect();
    assert_eq!(lines, [(5, 5), (11, 12), (17, 31)]);
}
