//! The typed layer: one [`Instruction`] per [`Node`], with flags parsed and
//! validated the way BuildKit's `frontend/dockerfile/instructions` package
//! does (its messages, its flag names, its rules), and every value kept as a
//! [`Word`] with its source position.
//!
//! Nothing is expanded here: `$VAR`s in arguments and flag values stay as
//! written for the planner, which knows the ARG/ENV values. What BuildKit
//! validates before expansion (flag names, `--network`, `--security`,
//! HEALTHCHECK durations, stage names...) is validated here, plus whatever
//! can be checked early without changing the result (mount options with
//! literal values).
//!
//! Entry point: [`from_node`].

mod csv;
pub mod error;
mod flags;
pub mod healthcheck;
pub mod mount;
pub mod run;
#[cfg(test)]
mod tests;

pub use error::InstructionError;
pub use healthcheck::{parse_go_duration, HealthcheckCmd, HealthcheckInstruction};
pub use mount::{
    parse_run_mount, split_mount_fields, CacheSharing, Mount, MountField, MountType, RunMount,
};
pub use run::{Device, NetworkMode, RunInstruction, SecurityMode};

use crate::error::ParseError;
use crate::node::{Args, Heredoc, KeyValue, Node};
use crate::span::{Position, Span, Word};
use flags::{flag, no_flags, parse_flags, FlagKind, FlagSpec};
use serde::Serialize;

/// A value and where it was written (for values that are not text, like a
/// parsed duration or an enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// One Dockerfile instruction, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// The keyword as written (`RUN`, `run`...).
    pub keyword: Word,
    /// The whole instruction, from the keyword to its last line.
    pub span: Span,
    /// The logical line as written (continuations joined), for history
    /// entries and messages.
    pub original: String,
    /// `#` comment lines directly above the instruction.
    pub comments: Vec<String>,
    pub kind: InstructionKind,
}

impl Instruction {
    /// The instruction name, upper case (`RUN`).
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

/// The instruction and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum InstructionKind {
    From(FromInstruction),
    Run(RunInstruction),
    Cmd(CommandInstruction),
    Entrypoint(CommandInstruction),
    Shell(ShellInstruction),
    Label(KeyValueInstruction),
    Env(KeyValueInstruction),
    Arg(ArgInstruction),
    Maintainer(MaintainerInstruction),
    Expose(ExposeInstruction),
    Add(AddInstruction),
    Copy(CopyInstruction),
    Volume(VolumeInstruction),
    User(UserInstruction),
    Workdir(WorkdirInstruction),
    Onbuild(OnbuildInstruction),
    StopSignal(StopSignalInstruction),
    Healthcheck(HealthcheckInstruction),
}

impl InstructionKind {
    /// The instruction name, upper case (`RUN`).
    pub fn name(&self) -> &'static str {
        match self {
            InstructionKind::From(_) => "FROM",
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
        }
    }
}

/// Every instruction name, upper case.
pub const INSTRUCTION_NAMES: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// A command line of RUN, CMD, ENTRYPOINT or HEALTHCHECK CMD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CommandLine {
    /// JSON form: run these arguments directly.
    Exec(Vec<Word>),
    /// Shell form: the whole text, to be run by the stage's SHELL. May be
    /// empty (`RUN` with nothing after it).
    Shell(Word),
}

impl CommandLine {
    pub fn is_exec(&self) -> bool {
        matches!(self, CommandLine::Exec(_))
    }

    /// The arguments as BuildKit's `CmdLine` holds them: the exec-form
    /// elements, or the shell-form text as a single element (none if empty).
    pub fn args(&self) -> Vec<&str> {
        match self {
            CommandLine::Exec(words) => words.iter().map(Word::as_str).collect(),
            CommandLine::Shell(w) if w.value.is_empty() => Vec::new(),
            CommandLine::Shell(w) => vec![w.as_str()],
        }
    }
}

/// `FROM [--platform=...] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromInstruction {
    /// The base: an image reference, a stage name or `scratch` (unexpanded).
    pub image: Word,
    /// The stage name, lower-cased (stage names are case-insensitive); the
    /// span is the name as written.
    pub name: Option<Word>,
    /// `--platform`; `None` when absent or empty.
    pub platform: Option<Word>,
}

/// `CMD` and `ENTRYPOINT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandInstruction {
    pub command: CommandLine,
}

/// `SHELL ["executable", "parameters"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShellInstruction {
    pub shell: Vec<Word>,
}

/// `ENV` and `LABEL`: keys and values as written (values keep their quotes
/// and escapes; the planner expands and unquotes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValueInstruction {
    pub pairs: Vec<KeyValue>,
}

/// `ARG name[=default] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgInstruction {
    pub args: Vec<ArgDefinition>,
}

/// One `name[=default]` of an ARG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDefinition {
    pub name: Word,
    /// The default, raw (quotes kept); `Some("")` for `ARG name=`.
    pub default: Option<Word>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaintainerInstruction {
    pub maintainer: Word,
}

/// `EXPOSE port[/proto] ...`, unexpanded, in source order (BuildKit sorts
/// them, which only matters for its own output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExposeInstruction {
    pub ports: Vec<Word>,
}

/// A source of ADD or COPY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CopySource {
    /// A path, glob or URL (unexpanded).
    Path(Word),
    /// A here-document (`COPY <<EOF /dest`): a file named after the
    /// terminator with the body as content.
    Heredoc {
        /// The marker word (`<<EOF`).
        marker: Word,
        heredoc: Heredoc,
    },
}

/// The sources and destination of ADD or COPY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcesAndDest {
    /// In source order.
    pub sources: Vec<CopySource>,
    pub dest: Word,
}

/// `COPY [flags] src... dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyInstruction {
    pub files: SourcesAndDest,
    /// `--from`: stage name, image or named context (unexpanded).
    pub from: Option<Word>,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    pub link: bool,
    pub parents: bool,
    /// `--exclude` patterns, in order.
    pub exclude: Vec<Word>,
}

/// `ADD [flags] src... dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddInstruction {
    pub files: SourcesAndDest,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    pub link: bool,
    pub exclude: Vec<Word>,
    /// `--checksum` of a remote source (unexpanded).
    pub checksum: Option<Word>,
    /// `--keep-git-dir`; `None` when not given.
    pub keep_git_dir: Option<bool>,
    /// `--unpack`; `None` when not given (archives are unpacked when local).
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInstruction {
    /// Each path, surrounding white space trimmed.
    pub volumes: Vec<Word>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInstruction {
    pub user: Word,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkdirInstruction {
    pub path: Word,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopSignalInstruction {
    pub signal: Word,
}

/// `ONBUILD instruction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnbuildInstruction {
    /// The trigger, parsed.
    pub trigger: Box<Instruction>,
    /// The trigger as text, as stored in the image config (`OnBuild`): the
    /// line without `ONBUILD`, followed by any here-documents.
    pub expression: String,
}

// ----- text helpers -----

/// The characters `start..end` of `word` as a word with its own span.
///
/// When the word's text lines up with its source (same line, as many columns
/// as characters) the span is exact. Otherwise (quotes or escapes were
/// removed, or a line continuation is inside) the columns are counted from
/// the word's start and clamped to its end: close, though not exact.
pub(crate) fn sub_word(word: &Word, start: usize, end: usize) -> Word {
    let count = word.value.chars().count();
    let start = start.min(count);
    let end = end.clamp(start, count);
    let text: String = word.value.chars().skip(start).take(end - start).collect();
    let span = word.span;
    if span.start.line != span.end.line {
        return Word::new(text, span);
    }
    let column = |offset: usize| {
        let c = span.start.column.saturating_add(offset as u32);
        Position::new(
            span.start.line,
            c.min(span.end.column.max(span.start.column)),
        )
    };
    Word::new(text, Span::new(column(start), column(end)))
}

/// The command line of a RUN/CMD/ENTRYPOINT/HEALTHCHECK node. `before` is
/// the span of whatever precedes the arguments (for an empty command).
pub(crate) fn command_line(words: &[Word], json: bool, before: Span) -> CommandLine {
    if json {
        return CommandLine::Exec(words.to_vec());
    }
    match words {
        [] => CommandLine::Shell(Word::new("", Span::new(before.end, before.end))),
        [one] => CommandLine::Shell(one.clone()),
        [first, .., last] => {
            // The raw layer gives one word; join defensively like BuildKit.
            let text: Vec<&str> = words.iter().map(Word::as_str).collect();
            CommandLine::Shell(Word::new(text.join(" "), first.span.to(last.span)))
        }
    }
}

fn error(kind: InstructionError, span: Span) -> ParseError {
    ParseError::new(kind, span)
}

fn at_least_one(node: &Node, instruction: &str) -> ParseError {
    error(
        InstructionError::AtLeastOneArgument {
            instruction: instruction.into(),
        },
        node.keyword.span,
    )
}

/// Exactly one argument; otherwise an error on the second argument (or the
/// keyword when there is none).
fn exactly_one(node: &Node, instruction: &str) -> Result<Word, ParseError> {
    match node.words() {
        [one] => Ok(one.clone()),
        words => Err(error(
            InstructionError::ExactlyOneArgument {
                instruction: instruction.into(),
            },
            words.get(1).map_or(node.keyword.span, |w| w.span),
        )),
    }
}

// ----- the entry point -----

/// Types one instruction. Errors carry the span of the offending keyword,
/// flag, option or argument.
pub fn from_node(node: &Node) -> Result<Instruction, ParseError> {
    let kind = match node.name().as_str() {
        "from" => InstructionKind::From(parse_from(node)?),
        "run" => InstructionKind::Run(run::parse_run(node)?),
        "cmd" => {
            no_flags("CMD", &node.flags)?;
            InstructionKind::Cmd(CommandInstruction {
                command: command_line(node.words(), node.json, node.keyword.span),
            })
        }
        "entrypoint" => {
            no_flags("ENTRYPOINT", &node.flags)?;
            InstructionKind::Entrypoint(CommandInstruction {
                command: command_line(node.words(), node.json, node.keyword.span),
            })
        }
        "shell" => InstructionKind::Shell(parse_shell(node)?),
        "label" => InstructionKind::Label(parse_key_values(node, "LABEL")?),
        "env" => InstructionKind::Env(parse_key_values(node, "ENV")?),
        "arg" => InstructionKind::Arg(parse_arg(node)?),
        "maintainer" => {
            let maintainer = exactly_one(node, "MAINTAINER")?;
            no_flags("MAINTAINER", &node.flags)?;
            InstructionKind::Maintainer(MaintainerInstruction { maintainer })
        }
        "expose" => {
            if node.words().is_empty() {
                return Err(at_least_one(node, "EXPOSE"));
            }
            no_flags("EXPOSE", &node.flags)?;
            InstructionKind::Expose(ExposeInstruction {
                ports: node.words().to_vec(),
            })
        }
        "add" => InstructionKind::Add(parse_add(node)?),
        "copy" => InstructionKind::Copy(parse_copy(node)?),
        "volume" => InstructionKind::Volume(parse_volume(node)?),
        "user" => {
            let user = exactly_one(node, "USER")?;
            no_flags("USER", &node.flags)?;
            InstructionKind::User(UserInstruction { user })
        }
        "workdir" => {
            let path = exactly_one(node, "WORKDIR")?;
            no_flags("WORKDIR", &node.flags)?;
            InstructionKind::Workdir(WorkdirInstruction { path })
        }
        "onbuild" => InstructionKind::Onbuild(parse_onbuild(node)?),
        "stopsignal" => {
            let signal = exactly_one(node, "STOPSIGNAL")?;
            // BuildKit never looks at STOPSIGNAL's flags; rbuild rejects them.
            no_flags("STOPSIGNAL", &node.flags)?;
            InstructionKind::StopSignal(StopSignalInstruction { signal })
        }
        "healthcheck" => InstructionKind::Healthcheck(healthcheck::parse_healthcheck(node)?),
        _ => {
            let suggestion = crate::suggest::did_you_mean(
                &node.keyword.value.to_ascii_uppercase(),
                &INSTRUCTION_NAMES,
            );
            return Err(error(
                InstructionError::UnknownInstruction {
                    keyword: node.keyword.value.clone(),
                    suggestion: suggestion.map(str::to_owned),
                },
                node.keyword.span,
            ));
        }
    };
    Ok(Instruction {
        keyword: node.keyword.clone(),
        span: node.span,
        original: node.original.clone(),
        comments: node.comments.clone(),
        kind,
    })
}

// ----- FROM -----

const FROM_FLAGS: &[FlagSpec] = &[flag("platform", FlagKind::String)];

/// BuildKit's `^[a-z][a-z0-9-_.]*$`, applied to the lower-cased name.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn parse_from(node: &Node) -> Result<FromInstruction, ParseError> {
    let args = node.words();
    // BuildKit checks the arguments before the flags.
    let name = match args {
        [_] => None,
        [_, as_word, name] if as_word.value.eq_ignore_ascii_case("as") => {
            let lower = name.value.to_lowercase();
            if !valid_stage_name(&lower) {
                return Err(error(
                    InstructionError::InvalidStageName {
                        name: name.value.clone(),
                    },
                    name.span,
                ));
            }
            Some(Word::new(lower, name.span))
        }
        _ => {
            let span = match args {
                [] => node.keyword.span,
                [_, second, ..] if !second.value.eq_ignore_ascii_case("as") => second.span,
                [_, as_word] => as_word.span,
                _ => args[3].span,
            };
            return Err(error(InstructionError::FromArguments, span));
        }
    };
    let flags = parse_flags("FROM", FROM_FLAGS, &node.flags)?;
    Ok(FromInstruction {
        image: args[0].clone(),
        name,
        platform: flags.non_empty_string("platform"),
    })
}

// ----- SHELL, ENV/LABEL, ARG, VOLUME -----

fn parse_shell(node: &Node) -> Result<ShellInstruction, ParseError> {
    no_flags("SHELL", &node.flags)?;
    let words = node.words();
    if words.is_empty() || (!node.json && words.iter().all(|w| w.value.trim().is_empty())) {
        return Err(at_least_one(node, "SHELL"));
    }
    if !node.json {
        return Err(error(
            InstructionError::NotJson {
                instruction: "SHELL".into(),
            },
            words[0].span.to(words[words.len() - 1].span),
        ));
    }
    Ok(ShellInstruction {
        shell: words.to_vec(),
    })
}

fn parse_key_values(node: &Node, instruction: &str) -> Result<KeyValueInstruction, ParseError> {
    no_flags(instruction, &node.flags)?;
    let pairs = match &node.args {
        Args::KeyValues(pairs) => pairs,
        Args::Words(words) if !words.is_empty() => {
            return Err(error(
                InstructionError::TooManyArguments {
                    instruction: instruction.into(),
                },
                words[0].span,
            ))
        }
        _ => return Err(at_least_one(node, instruction)),
    };
    if pairs.is_empty() {
        return Err(at_least_one(node, instruction));
    }
    if let Some(blank) = pairs.iter().find(|kv| kv.key.value.is_empty()) {
        return Err(error(
            InstructionError::BlankName {
                instruction: instruction.into(),
            },
            blank.key.span.to(blank.value.span),
        ));
    }
    Ok(KeyValueInstruction {
        pairs: pairs.clone(),
    })
}

fn parse_arg(node: &Node) -> Result<ArgInstruction, ParseError> {
    let words = node.words();
    if words.is_empty() {
        return Err(at_least_one(node, "ARG"));
    }
    // BuildKit never looks at ARG's flags; rbuild rejects them.
    no_flags("ARG", &node.flags)?;
    let mut args = Vec::with_capacity(words.len());
    for word in words {
        let arg = match word.value.split_once('=') {
            Some((name, default)) => {
                if name.is_empty() {
                    return Err(error(
                        InstructionError::BlankName {
                            instruction: "ARG".into(),
                        },
                        word.span,
                    ));
                }
                let name_len = name.chars().count();
                ArgDefinition {
                    name: sub_word(word, 0, name_len),
                    default: Some(sub_word(
                        word,
                        name_len + 1,
                        name_len + 1 + default.chars().count(),
                    )),
                }
            }
            None => ArgDefinition {
                name: word.clone(),
                default: None,
            },
        };
        args.push(arg);
    }
    Ok(ArgInstruction { args })
}

fn parse_volume(node: &Node) -> Result<VolumeInstruction, ParseError> {
    let words = node.words();
    if words.is_empty() {
        return Err(at_least_one(node, "VOLUME"));
    }
    no_flags("VOLUME", &node.flags)?;
    let mut volumes = Vec::with_capacity(words.len());
    for w in words {
        let trimmed = w.value.trim();
        if trimmed.is_empty() {
            return Err(error(InstructionError::EmptyVolume, w.span));
        }
        volumes.push(Word::new(trimmed, w.span));
    }
    Ok(VolumeInstruction { volumes })
}

// ----- ADD / COPY -----

const COPY_FLAGS: &[FlagSpec] = &[
    flag("chown", FlagKind::String),
    flag("from", FlagKind::String),
    flag("chmod", FlagKind::String),
    flag("link", FlagKind::Bool),
    flag("exclude", FlagKind::Strings),
    flag("parents", FlagKind::Bool),
];

const ADD_FLAGS: &[FlagSpec] = &[
    flag("chown", FlagKind::String),
    flag("chmod", FlagKind::String),
    flag("link", FlagKind::Bool),
    flag("keep-git-dir", FlagKind::Bool),
    flag("checksum", FlagKind::String),
    flag("unpack", FlagKind::Bool),
    flag("exclude", FlagKind::Strings),
];

/// A here-document marker among ADD/COPY arguments (BuildKit's
/// `^(\d*)<<(-?)\s*([^<]*)$` with a non-empty single-word terminator):
/// returns the terminator name (quotes removed), whether `<<-` was used and
/// whether the body is expanded (terminator not quoted).
fn heredoc_marker(word: &str) -> Option<(String, bool, bool, u32)> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let quoted = rest.contains(['\'', '"']);
    let name: String = rest.chars().filter(|c| !matches!(c, '\'' | '"')).collect();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let fd = word[..digits].parse().unwrap_or(0);
    Some((name, chomp, !quoted, fd))
}

fn sources_and_dest(node: &Node, instruction: &str) -> Result<SourcesAndDest, ParseError> {
    let words = node.words();
    let (dest, srcs) = words.split_last().expect("checked: at least two arguments");
    if heredoc_marker(&dest.value).is_some() {
        return Err(error(
            InstructionError::HeredocDestination {
                instruction: instruction.into(),
            },
            dest.span,
        ));
    }
    let mut next_heredoc = 0;
    let mut sources = Vec::with_capacity(srcs.len());
    for src in srcs {
        let Some((name, chomp, expand, fd)) = heredoc_marker(&src.value) else {
            sources.push(CopySource::Path(src.clone()));
            continue;
        };
        // Bodies come in marker order; fall back to a lookup by name (the
        // last one wins, as in BuildKit), then to an empty body.
        let heredoc = match node.heredocs.get(next_heredoc) {
            Some(h) if h.name == name => {
                next_heredoc += 1;
                h.clone()
            }
            _ => node
                .heredocs
                .iter()
                .rev()
                .find(|h| h.name == name)
                .cloned()
                .unwrap_or(Heredoc {
                    name,
                    fd,
                    expand,
                    chomp,
                    content: String::new(),
                    span: src.span,
                }),
        };
        sources.push(CopySource::Heredoc {
            marker: src.clone(),
            heredoc,
        });
    }
    Ok(SourcesAndDest {
        sources,
        dest: dest.clone(),
    })
}

fn check_destination(node: &Node, instruction: &str) -> Result<(), ParseError> {
    if node.words().len() < 2 {
        return Err(error(
            InstructionError::NoDestination {
                instruction: instruction.into(),
            },
            node.words().first().map_or(node.keyword.span, |w| w.span),
        ));
    }
    Ok(())
}

fn parse_copy(node: &Node) -> Result<CopyInstruction, ParseError> {
    check_destination(node, "COPY")?;
    let flags = parse_flags("COPY", COPY_FLAGS, &node.flags)?;
    Ok(CopyInstruction {
        files: sources_and_dest(node, "COPY")?,
        from: flags.non_empty_string("from"),
        chown: flags.non_empty_string("chown"),
        chmod: flags.non_empty_string("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        exclude: flags.strings("exclude"),
    })
}

fn parse_add(node: &Node) -> Result<AddInstruction, ParseError> {
    check_destination(node, "ADD")?;
    let flags = parse_flags("ADD", ADD_FLAGS, &node.flags)?;
    Ok(AddInstruction {
        files: sources_and_dest(node, "ADD")?,
        chown: flags.non_empty_string("chown"),
        chmod: flags.non_empty_string("chmod"),
        link: flags.bool("link"),
        exclude: flags.strings("exclude"),
        checksum: flags.non_empty_string("checksum"),
        keep_git_dir: flags.opt_bool("keep-git-dir"),
        unpack: flags.opt_bool("unpack"),
    })
}

// ----- ONBUILD -----

fn parse_onbuild(node: &Node) -> Result<OnbuildInstruction, ParseError> {
    let synthetic;
    let inner: &Node = match &node.args {
        Args::Nested(inner) => inner,
        Args::Words(words) if !words.is_empty() => {
            // The raw layer nests the trigger; cope with a flat node anyway.
            synthetic = Node {
                keyword: words[0].clone(),
                flags: Vec::new(),
                args: Args::Words(words[1..].to_vec()),
                json: node.json,
                heredocs: node.heredocs.clone(),
                original: node.original.clone(),
                span: node.span,
                comments: Vec::new(),
            };
            &synthetic
        }
        _ => return Err(at_least_one(node, "ONBUILD")),
    };
    no_flags("ONBUILD", &node.flags)?;

    let trigger = inner.keyword.value.trim().to_ascii_uppercase();
    match trigger.as_str() {
        "ONBUILD" => return Err(error(InstructionError::OnbuildChaining, inner.keyword.span)),
        "MAINTAINER" | "FROM" => {
            return Err(error(
                InstructionError::OnbuildTrigger { trigger },
                inner.keyword.span,
            ))
        }
        _ => {}
    }
    // The raw layer attaches the trigger's here-documents to the ONBUILD node.
    let mut parsed = if inner.heredocs.is_empty() && !node.heredocs.is_empty() {
        let mut with_bodies = inner.clone();
        with_bodies.heredocs = node.heredocs.clone();
        from_node(&with_bodies)?
    } else {
        from_node(inner)?
    };

    // BuildKit: the original line minus a leading `ONBUILD`, then each
    // here-document's body and terminator.
    let original = node.original.trim_start();
    let mut expression = match original.get(..7) {
        Some(head) if head.eq_ignore_ascii_case("onbuild") => original[7..].trim_start(),
        _ => original,
    }
    .to_owned();
    parsed.original = expression.clone();
    let heredocs = if node.heredocs.is_empty() {
        &inner.heredocs
    } else {
        &node.heredocs
    };
    for h in heredocs {
        expression.push('\n');
        expression.push_str(&h.content);
        expression.push_str(&h.name);
    }

    Ok(OnbuildInstruction {
        trigger: Box::new(parsed),
        expression,
    })
}
