//! Any bytes: the parser must return Ok or Err, never panic, and every span it
//! reports must lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        let _ = rbuild_parser::parse_bytes(data);
        return;
    };
    let lines = src.split('\n').count() as u32;
    match rbuild_parser::parse_nodes(src) {
        Ok(raw) => {
            let _ = rbuild_parser::dump(&raw.nodes);
            for n in &raw.nodes {
                assert!(n.span.start.line >= 1 && n.span.end.line <= lines);
            }
        }
        Err(e) => assert!(e.span.start.line <= lines.max(1)),
    }
    let _ = rbuild_parser::parse(src);
});
