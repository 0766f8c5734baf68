//! Shell-word expansion ("the lexer"): BuildKit's `frontend/dockerfile/shell`
//! rules for quotes, escapes, `$VAR`/`${VAR...}` expansion and word splitting.
//!
//! Who uses it:
//! - the planner, to expand ARG/ENV values into instruction arguments (ENV,
//!   ARG, COPY, WORKDIR, USER, LABEL, EXPOSE, FROM, ...; never the command
//!   string of RUN, which goes to the shell unchanged). It also takes the
//!   [`Matches`] to warn about unused build args and undefined variables;
//! - the parser itself, to find heredoc markers (`<<EOF`, `<<-"EOF"`) in an
//!   instruction line, with `raw_quotes`, `raw_escapes` and `skip_unset_env`
//!   so that the words come back as written.
//!
//! The behaviour is BuildKit's, including its oddities, checked against
//! BuildKit's own tables in `tests/shell_conformance.rs`:
//! - single quotes keep everything; inside double quotes the escape
//!   character only escapes `"`, `$` and itself, and stays otherwise;
//! - `$` not followed by a name, `{`, a digit or a special parameter
//!   (`@ * # ? - $ ! 0`) is a literal `$`; positional and special
//!   parameters are simply unset variables;
//! - the word after `:-`, `-`, `:+`, `+`, `:?`, `?` is itself expanded; the
//!   pattern operators `#`, `##`, `%`, `%%`, `/`, `//` keep escapes in their
//!   pattern (see `pattern.rs`); `${VAR:#...}` and friends are errors;
//! - word splitting happens on unquoted whitespace, including whitespace
//!   that comes out of an unquoted expansion, but not after `<<` (so
//!   `<< EOF` stays one word for heredoc detection).
//!
//! Deliberate differences (see also the error messages, which are ours and
//! carry a byte offset, except the text of `${VAR?message}` errors):
//! - since 2024 BuildKit's `ProcessWords` shares one buffer between nested
//!   expansions, so in a word such as `a${X:-b}` everything before the
//!   `${X:-...}` is lost (`["b"]`). This module keeps it (`["ab"]`), as
//!   BuildKit did before and as `ProcessWord` does;
//! - `${...}` nested more than [`MAX_NESTING`] levels deep is an error rather
//!   than deep recursion;
//! - variable names are case-sensitive (BuildKit's Unix behaviour).

mod pattern;
#[cfg(test)]
mod tests;
mod unicode;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

/// Where variable values come from. `None` means unset; `Some("")` is set
/// but empty (which `${VAR-x}` and `${VAR:-x}` tell apart).
pub trait Env {
    fn get(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl<T: Env + ?Sized> Env for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// An environment in which every variable is unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyEnv;

impl Env for EmptyEnv {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// The names looked up while expanding a word: set ones in `matched`, unset
/// ones in `unmatched`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Matches {
    pub matched: BTreeSet<String>,
    pub unmatched: BTreeSet<String>,
}

/// A word that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    /// What is wrong or what was expected. For `${VAR?message}` and
    /// `${VAR:?message}` this is BuildKit's text, `VAR: message` (or `VAR: is
    /// not allowed to be unset`/`empty`), with the message expanded.
    pub message: String,
    /// Byte offset into the input where the problem is: the opening quote or
    /// `$` of what is unterminated, or the offending character.
    pub offset: usize,
}

impl ExpandError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        ExpandError {
            message: message.into(),
            offset,
        }
    }
}

/// How deeply `${...}` may nest (each level recurses). Real Dockerfiles use a
/// handful; the limit only keeps hostile input from exhausting the stack.
pub const MAX_NESTING: usize = 200;

/// BuildKit's `shell.Lex`: the expansion options. Construct with
/// [`Lexer::new`] and set the flags needed.
#[derive(Debug, Clone)]
pub struct Lexer {
    /// The escape character: `'\\'` or `` '`' `` (the `# escape=` directive).
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave `$VAR`/`${VAR...}` text unchanged when VAR is unset.
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters (BuildKit's SkipProcessQuotes).
    pub skip_process_quotes: bool,
}

impl Lexer {
    /// A lexer with the given escape character and all options off.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// One word: quotes removed, escapes processed, variables expanded, no
    /// splitting.
    pub fn process_word(&self, input: &str, env: &dyn Env) -> Result<String, ExpandError> {
        Ok(self.process_word_with_matches(input, env)?.0)
    }

    /// Like [`Lexer::process_word`], and also reports which variable names
    /// were looked up and found or not found (BuildKit's
    /// `ProcessWordWithMatches`).
    pub fn process_word_with_matches(
        &self,
        input: &str,
        env: &dyn Env,
    ) -> Result<(String, Matches), ExpandError> {
        let mut expander = Expander::new(self, env, input);
        let mut out = Output::default();
        expander.expand_until(None, &mut out)?;
        Ok((out.text, expander.matches))
    }

    /// Several words: expansion, then splitting on unquoted whitespace (also
    /// inside unquoted expansions), as BuildKit's `ProcessWords`. Empty words
    /// (`""`) are dropped.
    pub fn process_words(&self, input: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        let mut expander = Expander::new(self, env, input);
        let mut out = Output {
            words: Some(Words::default()),
            ..Output::default()
        };
        expander.expand_until(None, &mut out)?;
        Ok(out.words.map(Words::finish).unwrap_or_default())
    }
}

/// Whitespace splitting of the top-level word.
#[derive(Debug, Default)]
struct Words {
    done: Vec<String>,
    current: String,
}

impl Words {
    /// An unquoted character: whitespace ends the current word.
    fn split_char(&mut self, c: char) {
        if c.is_whitespace() {
            self.end_word();
        } else {
            self.current.push(c);
        }
    }

    fn end_word(&mut self) {
        if !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.end_word();
        self.done
    }
}

/// The text being built, plus its words when splitting (top level of
/// `process_words` only; nested words such as the `w` of `${V:-w}` are one
/// piece of text whose splitting happens when it is inserted).
#[derive(Debug, Default)]
struct Output {
    text: String,
    words: Option<Words>,
}

impl Output {
    /// A character outside quotes: splits words on whitespace.
    fn unquoted(&mut self, c: char) {
        self.text.push(c);
        if let Some(words) = &mut self.words {
            words.split_char(c);
        }
    }

    /// The result of an unquoted `$` expansion: splits words too.
    fn expansion(&mut self, s: &str) {
        self.text.push_str(s);
        if let Some(words) = &mut self.words {
            s.chars().for_each(|c| words.split_char(c));
        }
    }

    /// Text that never splits: quoted strings and escaped characters.
    fn verbatim(&mut self, s: &str) {
        self.text.push_str(s);
        if let Some(words) = &mut self.words {
            words.current.push_str(s);
        }
    }

    fn verbatim_char(&mut self, c: char) {
        self.verbatim(c.encode_utf8(&mut [0; 4]));
    }
}

/// Special parameters (POSIX 2.5.2): one character each after `$`.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// One expansion run over `src`.
struct Expander<'a> {
    lexer: &'a Lexer,
    env: &'a dyn Env,
    src: &'a str,
    /// Byte offset of the next character; always on a character boundary.
    pos: usize,
    /// Whether escape characters are kept. The lexer's setting at the top;
    /// pattern words turn it on, other `${...}` words turn it off.
    raw_escapes: bool,
    /// Current `${...}` nesting.
    depth: usize,
    matches: Matches,
}

impl<'a> Expander<'a> {
    fn new(lexer: &'a Lexer, env: &'a dyn Env, src: &'a str) -> Self {
        // BuildKit reads the word with Go's text/scanner, which silently
        // skips a byte-order mark at the very start.
        let pos = if src.starts_with('\u{FEFF}') {
            '\u{FEFF}'.len_utf8()
        } else {
            0
        };
        Expander {
            lexer,
            env,
            src,
            pos,
            raw_escapes: lexer.raw_escapes,
            depth: 0,
            matches: Matches::default(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..)?.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn lookup(&mut self, name: &str) -> Option<&'a str> {
        let value = self.env.get(name);
        let set = match value {
            Some(_) => &mut self.matches.matched,
            None => &mut self.matches.unmatched,
        };
        if !set.contains(name) {
            set.insert(name.to_string());
        }
        value
    }

    /// Expands up to `stop` (consumed) or, without one, to the end of input.
    /// Running out of input before `stop` is an error.
    fn expand_until(&mut self, stop: Option<char>, out: &mut Output) -> Result<(), ExpandError> {
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.bump();
                return Ok(());
            }
            match c {
                '$' => {
                    let value = self.dollar()?;
                    out.expansion(&value);
                }
                '<' => {
                    let text = self.possible_heredoc();
                    out.verbatim(&text);
                }
                '\'' if quotes => {
                    let text = self.single_quoted()?;
                    out.verbatim(&text);
                }
                '"' if quotes => {
                    let text = self.double_quoted()?;
                    out.verbatim(&text);
                }
                _ => {
                    self.bump();
                    if c != self.lexer.escape {
                        out.unquoted(c);
                        continue;
                    }
                    if self.raw_escapes {
                        out.verbatim_char(c);
                    }
                    // An escape at the very end escapes nothing and vanishes.
                    match self.bump() {
                        Some(escaped) => out.verbatim_char(escaped),
                        None => break,
                    }
                }
            }
        }
        match stop {
            None => Ok(()),
            // Callers replace this with their own message (see `nested`).
            Some(stop) => Err(ExpandError::new(
                self.pos,
                format!("unexpected end of input: expected '{stop}'"),
            )),
        }
    }

    /// `<<` plus the blanks after it stay attached to the next word, so that
    /// the parser sees `<< EOF` as one heredoc marker.
    fn possible_heredoc(&mut self) -> String {
        self.bump();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.bump();
        let mut text = "<<".to_string();
        while let Some(c) = self.peek().filter(|c| matches!(c, ' ' | '\t' | '\r')) {
            text.push(c);
            self.bump();
        }
        text
    }

    /// `'...'`: everything literal; there is no way to escape `'`.
    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        let open = self.pos;
        self.bump();
        let mut text = String::new();
        if self.lexer.raw_quotes {
            text.push('\'');
        }
        loop {
            match self.bump() {
                None => {
                    return Err(ExpandError::new(
                        open,
                        "unterminated single-quoted string: expected a closing '",
                    ))
                }
                Some('\'') => break,
                Some(c) => text.push(c),
            }
        }
        if self.lexer.raw_quotes {
            text.push('\'');
        }
        Ok(text)
    }

    /// `"..."`: `$` expands; the escape character escapes only `"`, `$` and
    /// itself and is kept before anything else.
    fn double_quoted(&mut self) -> Result<String, ExpandError> {
        let open = self.pos;
        self.bump();
        let escape = self.lexer.escape;
        let mut text = String::new();
        if self.lexer.raw_quotes {
            text.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(ExpandError::new(
                        open,
                        "unterminated double-quoted string: expected a closing \"",
                    ))
                }
                Some('"') => {
                    self.bump();
                    break;
                }
                Some('$') => text.push_str(&self.dollar()?),
                Some(c) => {
                    self.bump();
                    if c != escape {
                        text.push(c);
                        continue;
                    }
                    if self.raw_escapes {
                        text.push(c);
                    }
                    match self.peek() {
                        // The quote is unterminated; the loop reports it.
                        None => {}
                        Some(next) if next == '"' || next == '$' || next == escape => {
                            self.bump();
                            text.push(next);
                        }
                        // Not escapable here: the escape character is text.
                        // (With raw escapes BuildKit writes it twice; so do we.)
                        Some(_) => text.push(c),
                    }
                }
            }
        }
        if self.lexer.raw_quotes {
            text.push('"');
        }
        Ok(text)
    }

    /// A variable name after `$` or `${`: a run of digits (positional
    /// parameter), one special-parameter character, or letters, digits and
    /// `_`. Empty when none of these follows.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if unicode::is_digit(c) => {
                while let Some(c) = self.peek().filter(|&c| unicode::is_digit(c)) {
                    name.push(c);
                    self.bump();
                }
            }
            Some(c) if is_special_param(c) => {
                name.push(c);
                self.bump();
            }
            _ => {
                while let Some(c) = self
                    .peek()
                    .filter(|&c| unicode::is_letter(c) || unicode::is_digit(c) || c == '_')
                {
                    name.push(c);
                    self.bump();
                }
            }
        }
        name
    }

    /// Expands the `$...` at the current position.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        let start = self.pos;
        self.bump();
        let skip_unset = self.lexer.skip_unset_env;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value.to_string(),
                None if skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.bump();
        match self.peek() {
            None => return Err(unterminated_brace(start)),
            Some('{' | '}' | ':') => {
                return Err(ExpandError::new(
                    self.pos,
                    "bad substitution: expected a variable name after '${'",
                ))
            }
            Some(_) => {}
        }
        let name = self.name();
        let op_pos = self.pos;
        match self.bump() {
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value.to_string(),
                None if skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some('/') => self.substitute(start, &name),
            Some(c @ (':' | '-' | '+' | '?' | '#' | '%')) => self.modifier(start, &name, op_pos, c),
            Some(c) => Err(unsupported_modifier(op_pos, &c.to_string())),
            None => Err(unterminated_brace(start)),
        }
    }

    /// Expands a nested word up to `stop` (the `w` of `${V:-w}`, a pattern or
    /// a replacement). `start` is the `$` of the enclosing `${`.
    fn nested(
        &mut self,
        stop: char,
        raw_escapes: bool,
        start: usize,
    ) -> Result<String, ExpandError> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandError::new(
                start,
                format!("${{...}} nested more than {MAX_NESTING} levels deep"),
            ));
        }
        self.depth += 1;
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let mut out = Output::default();
        let result = self.expand_until(Some(stop), &mut out);
        self.raw_escapes = saved;
        self.depth -= 1;
        match result {
            Ok(()) => Ok(out.text),
            // Whatever went wrong, running into the end of input means this
            // `${` was never closed; BuildKit reports that too.
            Err(_) if self.peek().is_none() => Err(if stop == '/' {
                ExpandError::new(
                    start,
                    "unterminated ${VAR/pattern/replacement}: expected '/' after the pattern",
                )
            } else {
                unterminated_brace(start)
            }),
            Err(e) => Err(e),
        }
    }

    /// `${VAR<op>word}` for the operators `-`, `+`, `?`, `#`, `%`, each
    /// optionally after `:`. `first` is the character after the name.
    fn modifier(
        &mut self,
        start: usize,
        name: &str,
        op_pos: usize,
        first: char,
    ) -> Result<String, ExpandError> {
        // With a colon, a set-but-empty variable counts as unset. Whatever
        // follows the colon is taken as the operator; BuildKit reads the
        // word before rejecting an unknown one, so `skip_unset_env` can still
        // return `${VAR:=w}` untouched.
        let colon = first == ':';
        let op = if colon { self.bump() } else { Some(first) };
        let op_text: String = colon.then_some(':').into_iter().chain(op).collect();
        let pattern_op = matches!(op, Some('#' | '%'));
        if colon && pattern_op {
            return Err(unsupported_modifier(op_pos, &op_text));
        }
        let word_pos = self.pos;
        let word = self.nested('}', pattern_op, start)?;
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset_env {
            return Ok(format!("${{{name}{op_text}{word}}}"));
        }
        let unset_or_null = value.is_none_or(|v| colon && v.is_empty());
        match op {
            Some('-') if unset_or_null => Ok(word),
            Some('-') => Ok(value.unwrap_or_default().to_string()),
            Some('+') if unset_or_null => Ok(String::new()),
            Some('+') => Ok(word),
            Some('?') if unset_or_null => {
                let message = match word.as_str() {
                    "" if value.is_none() => "is not allowed to be unset",
                    "" => "is not allowed to be empty",
                    word => word,
                };
                Err(ExpandError::new(start, format!("{name}: {message}")))
            }
            Some('?') => Ok(value.unwrap_or_default().to_string()),
            Some(op @ ('#' | '%')) => {
                // Doubling the operator asks for the longest match. BuildKit
                // checks the expanded word, so `${V#$P}` with P=`#x` also
                // counts as `##x`.
                let (longest, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                let trimmed = if op == '#' {
                    pattern::trim_prefix(pattern, value, longest)
                } else {
                    pattern::trim_suffix(pattern, value, longest)
                };
                trimmed.map_err(|e| invalid_pattern(word_pos, pattern, &e))
            }
            _ => Err(unsupported_modifier(op_pos, &op_text)),
        }
    }

    /// `${VAR/pattern/replacement}` and `${VAR//pattern/replacement}`; the
    /// first `/` has been read.
    fn substitute(&mut self, start: usize, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.bump();
        }
        let pattern_pos = self.pos;
        let pattern = self.nested('/', true, start)?;
        let replacement = self.nested('}', true, start)?;
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset_env {
            // BuildKit writes a single `/` here even for `//`; kept as is.
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        pattern::replace(&pattern, value.unwrap_or_default(), &replacement, all)
            .map_err(|e| invalid_pattern(pattern_pos, &pattern, &e))
    }
}

fn unterminated_brace(start: usize) -> ExpandError {
    ExpandError::new(start, "unterminated ${ ... }: expected '}'")
}

fn unsupported_modifier(offset: usize, op: &str) -> ExpandError {
    ExpandError::new(
        offset,
        format!(
            "bad substitution: unsupported modifier '{op}' in ${{...}}: expected '}}' or one of \
             :- - :+ + :? ? # ## % %% / //"
        ),
    )
}

fn invalid_pattern(offset: usize, pattern: &str, reason: &str) -> ExpandError {
    ExpandError::new(
        offset,
        format!("invalid pattern '{pattern}' in ${{...}}: {reason}"),
    )
}
