//! Heredoc markers on an instruction line: `<<EOF`, `<<-EOF`, `<<"EOF"`,
//! `3<<EOF`. The bodies are read by the raw parser; this module only decides
//! which words are markers and what their terminators and options are.

use nom::{
    bytes::complete::{tag, take_while},
    character::complete::{char, digit0},
    combinator::{all_consuming, opt},
    IResult, Parser,
};

use crate::node::Heredoc;
use crate::shell::{EmptyEnv, Lexer};
use crate::span::Span;

/// `^(\d*)<<(-?)\s*([^<]*)$`: fd, chomp, terminator word.
fn marker(word: &str) -> IResult<&str, (&str, bool, &str)> {
    let (rest, fd) = digit0(word)?;
    let (rest, _) = tag("<<").parse(rest)?;
    let (rest, dash) = opt(char('-')).parse(rest)?;
    let (rest, _) =
        take_while(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')).parse(rest)?;
    let (rest, name) = all_consuming(take_while(|c| c != '<')).parse(rest)?;
    Ok((rest, (fd, dash.is_some(), name)))
}

/// Parses one word as a heredoc marker. `Ok(None)` when it is not one.
pub fn parse_marker(word: &str) -> Result<Option<Heredoc>, String> {
    let Ok((_, (fd, chomp, name))) = marker(word) else {
        return Ok(None);
    };
    if name.is_empty() {
        return Ok(None);
    }
    // The terminator is lexed twice, with and without quote removal: if the
    // two differ in quote count, part of it was quoted and the body must not
    // be expanded (as in a POSIX shell).
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let words = lexer
        .process_words(name, &EmptyEnv)
        .map_err(|e| e.message)?;
    let [word] = words.as_slice() else {
        return Ok(None);
    };
    lexer.raw_quotes = true;
    let raw = lexer
        .process_words(name, &EmptyEnv)
        .map_err(|e| e.message)?;
    let [raw] = raw.as_slice() else {
        return Err(format!("inconsistent lexing of heredoc marker {name:?}"));
    };
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc {
        name: word.clone(),
        fd: fd.parse().unwrap_or(0),
        expand: quotes(word) == quotes(raw),
        chomp,
        content: String::new(),
        span: Span::default(),
    }))
}

/// All heredoc markers on a logical instruction line, in order.
pub fn markers(line: &str) -> Result<Vec<Heredoc>, String> {
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let words = lexer.process_words(line, &EmptyEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_marker(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_markers() {
        let h = parse_marker("<<EOF").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.fd, h.expand, h.chomp),
            ("EOF", 0, true, false)
        );
        let h = parse_marker("3<<-'E O'").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.fd, h.expand, h.chomp),
            ("E O", 3, false, true)
        );
        let h = parse_marker(r#"<<E"O"F"#).unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand), ("EOF", false));
        assert!(parse_marker("<<").unwrap().is_none());
        assert!(parse_marker("a<<EOF").unwrap().is_none());
        assert!(parse_marker("<<<EOF").unwrap().is_none());
    }

    #[test]
    fn finds_all_markers_on_a_line() {
        let docs = markers("COPY <<A <<-B /dst").unwrap();
        let names: Vec<_> = docs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert!(markers("RUN echo '<<EOF'").unwrap().is_empty());
    }
}
