//! The expansion engine on arbitrary words and environments: no panics, and
//! an error offset always lies inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_parser::shell::Lexer;
use std::collections::HashMap;

fuzz_target!(|input: (String, Vec<(String, String)>, u8)| {
    let (word, vars, opts) = input;
    let env: HashMap<String, String> = vars.into_iter().collect();
    let mut lexer = Lexer::new(if opts & 1 == 0 { '\\' } else { '`' });
    lexer.raw_quotes = opts & 2 != 0;
    lexer.raw_escapes = opts & 4 != 0;
    lexer.skip_unset_env = opts & 8 != 0;
    lexer.skip_process_quotes = opts & 16 != 0;
    if let Err(e) = lexer.process_word(&word, &env) {
        assert!(e.offset <= word.len());
    }
    let _ = lexer.process_words(&word, &env);
    let _ = lexer.process_word_with_matches(&word, &env);
});
