//! The syntax tree of a Dockerfile as BuildKit's parser sees it: one [`Node`]
//! per instruction, arguments split per instruction kind but not yet
//! interpreted. This layer is what `rbuild debug parse` dumps (byte-for-byte
//! BuildKit's `Node.Dump` format) and what the typed layer in
//! [`crate::instruction`] is built from.

use crate::span::{Span, Word};
use serde::Serialize;

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The instruction keyword exactly as written (`From`, `run`...).
    pub keyword: Word,
    /// Leading `--flag[=value]` words, quotes and escapes removed, `--` dropped.
    pub flags: Vec<Word>,
    pub args: Args,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    /// Heredoc bodies attached to this instruction, in the order of their markers.
    pub heredocs: Vec<Heredoc>,
    /// The logical line (continuations joined, comments dropped).
    pub original: String,
    /// From the keyword to the end of the last continuation or heredoc line.
    pub span: Span,
    /// `#` comment lines directly above the instruction (for tooling).
    pub comments: Vec<String>,
}

/// Arguments after the keyword and flags, shaped by the instruction kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Args {
    /// A list of words (most instructions). Empty when the instruction has none.
    Words(Vec<Word>),
    /// ENV and LABEL: `key=value` pairs, or one legacy `key value` pair.
    KeyValues(Vec<KeyValue>),
    /// ONBUILD: the trigger instruction.
    Nested(Box<Node>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: Word,
    /// Quotes and escapes are still in the value; the planner removes them
    /// when it expands variables.
    pub value: Word,
    /// Written as `ENV key value` (legacy form) rather than `key=value`.
    pub legacy: bool,
}

/// A here-document: `<<EOF` on the instruction line, body on the next lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The terminator word with quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// File descriptor prefix (`3<<EOF`); 0 when none was written.
    pub fd: u32,
    /// Variables in the body are expanded (the terminator was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from body lines and the terminator.
    pub chomp: bool,
    /// The body, each line with its newline, exactly as in the file
    /// (tabs are stripped later by [`Heredoc::chomped_content`]).
    pub content: String,
    /// The body lines.
    pub span: Span,
}

impl Heredoc {
    /// The body as the instruction will see it: with `<<-`, leading tabs removed from every line.
    pub fn chomped_content(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

impl Node {
    /// The keyword in lower case (`from`, `run`...).
    pub fn name(&self) -> String {
        self.keyword.value.to_ascii_lowercase()
    }

    /// The argument words (empty for key/value and nested arguments).
    pub fn words(&self) -> &[Word] {
        match &self.args {
            Args::Words(w) => w,
            _ => &[],
        }
    }
}
