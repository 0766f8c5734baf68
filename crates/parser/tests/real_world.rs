//! A few hundred real Dockerfiles must all parse, through both the raw layer
//! and the typed instruction layer.

mod common;

#[test]
fn every_real_world_dockerfile_parses() {
    let Some(dir) = common::conformance_dir("real-world") else {
        return;
    };
    let files: Vec<_> = common::entries(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    let mut failures = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        if let Err(e) = rbuild_parser::parse_bytes(&bytes) {
            failures.push(format!(
                "{}:{}:{}: {e}",
                file.file_name().unwrap().to_string_lossy(),
                e.span.start.line,
                e.span.start.column
            ));
        }
    }
    println!(
        "real-world Dockerfiles: {}/{} parse",
        files.len() - failures.len(),
        files.len()
    );
    assert!(
        files.len() >= 400,
        "expected ~438 files, found {}",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
