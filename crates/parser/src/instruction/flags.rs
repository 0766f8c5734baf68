//! Generic `--flag[=value]` parsing for instructions, with BuildKit's BFlags
//! rules:
//!
//! * a flag is `--name=value` or, for booleans, `--name` (meaning true);
//!   booleans also accept `=true` / `=false` (case-insensitive);
//! * names are case-sensitive; an unknown name is an error, with a
//!   did-you-mean suggestion and the list of flags the instruction accepts;
//! * string flags need a value (`--from` alone is an error, `--from=` gives
//!   the empty string); every flag except the repeatable ones may appear once.
//!
//! Flag values are not expanded here: they stay [`Word`]s for the planner.

use super::{sub_word, InstructionError};
use crate::error::ParseError;
use crate::span::Word;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--name`, `--name=true`, `--name=false`.
    Bool,
    /// `--name=value`, at most once.
    String,
    /// `--name=value`, repeatable.
    Strings,
}

/// One flag an instruction accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlagSpec {
    pub name: &'static str,
    pub kind: FlagKind,
}

pub(crate) const fn flag(name: &'static str, kind: FlagKind) -> FlagSpec {
    FlagSpec { name, kind }
}

/// A flag as it appeared on the instruction line.
#[derive(Debug, Clone)]
pub(crate) struct ParsedFlag {
    /// The flag name, without `--`.
    pub name: &'static str,
    /// The whole flag word, always starting with `--`.
    pub word: Word,
    /// The text after `=`, with its own span; `None` for a bare `--name`.
    pub value: Option<Word>,
    /// For boolean flags, the parsed value.
    pub boolean: bool,
}

/// The flags of one instruction, validated against its [`FlagSpec`]s.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flags {
    pub parsed: Vec<ParsedFlag>,
}

impl Flags {
    /// The first use of flag `name`.
    pub fn get(&self, name: &str) -> Option<&ParsedFlag> {
        self.parsed.iter().find(|f| f.name == name)
    }

    /// The value of a string flag, if it was given.
    pub fn string(&self, name: &str) -> Option<Word> {
        self.get(name).and_then(|f| f.value.clone())
    }

    /// The value of a string flag, treating an empty value like an absent
    /// flag (BuildKit does not distinguish `--from=` from no `--from`).
    pub fn non_empty_string(&self, name: &str) -> Option<Word> {
        self.string(name).filter(|w| !w.value.is_empty())
    }

    /// All values of a repeatable flag, in order.
    pub fn strings(&self, name: &str) -> Vec<Word> {
        self.parsed
            .iter()
            .filter(|f| f.name == name)
            .filter_map(|f| f.value.clone())
            .collect()
    }

    /// All uses of a repeatable flag, in order.
    pub fn all(&self, name: &str) -> impl Iterator<Item = &ParsedFlag> + '_ {
        let name = name.to_owned();
        self.parsed.iter().filter(move |f| f.name == name)
    }

    /// The value of a boolean flag; `false` when not given.
    pub fn bool(&self, name: &str) -> bool {
        self.get(name).is_some_and(|f| f.boolean)
    }

    /// The value of a boolean flag, `None` when not given.
    pub fn opt_bool(&self, name: &str) -> Option<bool> {
        self.get(name).map(|f| f.boolean)
    }
}

/// Parses `words` (the node's flag words) against `specs`. `instruction` is
/// the upper-case instruction name, for messages.
pub(crate) fn parse_flags(
    instruction: &str,
    specs: &[FlagSpec],
    words: &[Word],
) -> Result<Flags, ParseError> {
    let mut flags = Flags::default();
    for raw in words {
        if raw.value == "--" {
            // POSIX end of options; BuildKit's parser already strips it, but
            // honour it if it gets here.
            break;
        }
        let word = raw;
        let text = word.value.as_str();
        if !text.starts_with("--") {
            // The raw layer only collects words starting with `--`.
            return Err(ParseError::new(
                InstructionError::NotAFlag {
                    word: text.to_owned(),
                },
                word.span,
            ));
        }
        let (name_part, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (text, None),
        };
        let name = &name_part[2..];
        let name_len = name_part.chars().count();
        let name_span = sub_word(word, 0, name_len).span;

        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            let mut allowed: Vec<&str> = specs.iter().map(|s| s.name).collect();
            allowed.sort_unstable();
            let suggestion = crate::suggest::did_you_mean(name, &allowed).map(str::to_owned);
            return Err(ParseError::new(
                InstructionError::UnknownFlag {
                    instruction: instruction.to_owned(),
                    flag: name.to_owned(),
                    allowed: allowed.iter().map(|s| s.to_string()).collect(),
                    suggestion,
                },
                name_span,
            ));
        };

        if spec.kind != FlagKind::Strings && flags.get(spec.name).is_some() {
            return Err(ParseError::new(
                InstructionError::DuplicateFlag {
                    flag: spec.name.to_owned(),
                },
                word.span,
            ));
        }

        let value_word = value.map(|v| {
            let start = name_len + 1;
            sub_word(word, start, start + v.chars().count())
        });
        let missing = || {
            ParseError::new(
                InstructionError::MissingFlagValue {
                    flag: spec.name.to_owned(),
                },
                word.span,
            )
        };
        let mut boolean = false;
        match spec.kind {
            FlagKind::Bool => match value {
                // `--link=` is an error, `--link` means true.
                Some("") => return Err(missing()),
                None => boolean = true,
                Some(v) if v.eq_ignore_ascii_case("true") => boolean = true,
                Some(v) if v.eq_ignore_ascii_case("false") => boolean = false,
                Some(v) => {
                    return Err(ParseError::new(
                        InstructionError::InvalidBoolFlag {
                            flag: spec.name.to_owned(),
                            value: v.to_owned(),
                        },
                        value_word.as_ref().map_or(word.span, |w| w.span),
                    ))
                }
            },
            FlagKind::String | FlagKind::Strings => {
                if value.is_none() {
                    return Err(missing());
                }
            }
        }
        flags.parsed.push(ParsedFlag {
            name: spec.name,
            word: word.clone(),
            value: value_word,
            boolean,
        });
    }
    Ok(flags)
}

/// Rejects any flag: for instructions that accept none.
pub(crate) fn no_flags(instruction: &str, words: &[Word]) -> Result<(), ParseError> {
    parse_flags(instruction, &[], words).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ParseErrorKind;
    use crate::span::{Position, Span};

    fn w(text: &str, line: u32, col: u32) -> Word {
        let n = text.chars().count() as u32;
        Word::new(
            text,
            Span::new(Position::new(line, col), Position::new(line, col + n)),
        )
    }

    const SPECS: &[FlagSpec] = &[
        flag("str1", FlagKind::String),
        flag("bool1", FlagKind::Bool),
        flag("many", FlagKind::Strings),
    ];

    fn err(words: &[Word]) -> ParseError {
        parse_flags("COPY", SPECS, words).unwrap_err()
    }

    fn kind(e: &ParseError) -> &InstructionError {
        match &e.kind {
            ParseErrorKind::Instruction(i) => i,
            other => panic!("unexpected error kind {other:?}"),
        }
    }

    #[test]
    fn empty_and_terminator() {
        assert!(parse_flags("COPY", SPECS, &[]).unwrap().parsed.is_empty());
        let f = parse_flags("COPY", SPECS, &[w("--", 1, 6), w("--bogus", 1, 9)]).unwrap();
        assert!(f.parsed.is_empty());
    }

    #[test]
    fn string_values() {
        let f = parse_flags("COPY", SPECS, &[w("--str1=BYE", 1, 6)]).unwrap();
        let v = f.string("str1").unwrap();
        assert_eq!(v.value, "BYE");
        assert_eq!(v.span.start, Position::new(1, 13));
        assert_eq!(v.span.end, Position::new(1, 16));
        assert_eq!(f.get("str1").unwrap().word.span.start.column, 6);

        let f = parse_flags("COPY", SPECS, &[w("--str1=", 1, 6)]).unwrap();
        assert_eq!(f.string("str1").unwrap().value, "");
        assert_eq!(f.non_empty_string("str1"), None);

        // `=` inside the value is kept.
        let f = parse_flags("COPY", SPECS, &[w("--str1=a=b", 1, 1)]).unwrap();
        assert_eq!(f.string("str1").unwrap().value, "a=b");
    }

    #[test]
    fn string_needs_value() {
        let e = err(&[w("--str1", 2, 6)]);
        assert_eq!(e.to_string(), "missing a value on flag: --str1");
        assert_eq!(e.span.start, Position::new(2, 6));
        let e = err(&[w("--many", 2, 6)]);
        assert_eq!(e.to_string(), "missing a value on flag: --many");
    }

    #[test]
    fn booleans() {
        for (text, expected) in [
            ("--bool1", true),
            ("--bool1=true", true),
            ("--bool1=TRUE", true),
            ("--bool1=false", false),
            ("--bool1=False", false),
        ] {
            let f = parse_flags("COPY", SPECS, &[w(text, 1, 1)]).unwrap();
            assert_eq!(f.bool("bool1"), expected, "{text}");
            assert_eq!(f.opt_bool("bool1"), Some(expected), "{text}");
        }
        let f = parse_flags("COPY", SPECS, &[]).unwrap();
        assert!(!f.bool("bool1"));
        assert_eq!(f.opt_bool("bool1"), None);

        let e = err(&[w("--bool1=false1", 1, 6)]);
        assert_eq!(
            e.to_string(),
            "expecting boolean value for flag --bool1, not: false1"
        );
        assert_eq!(e.span.start.column, 14);
        let e = err(&[w("--bool1=", 1, 6)]);
        assert_eq!(e.to_string(), "missing a value on flag: --bool1");
    }

    #[test]
    fn unknown_flag_with_suggestion() {
        let e = err(&[w("--str1=x", 1, 6), w("--bool2=x", 1, 15)]);
        assert_eq!(e.to_string(), "unknown flag: --bool2");
        // The span covers `--bool2`, not the value.
        assert_eq!(e.span.start, Position::new(1, 15));
        assert_eq!(e.span.end, Position::new(1, 22));
        match kind(&e) {
            InstructionError::UnknownFlag {
                suggestion,
                allowed,
                instruction,
                ..
            } => {
                assert_eq!(suggestion.as_deref(), Some("bool1"));
                assert_eq!(allowed, &["bool1", "many", "str1"]);
                assert_eq!(instruction, "COPY");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.help().as_deref(),
            Some("did you mean `--bool1`? COPY accepts: --bool1, --many, --str1")
        );
        // Flag names are case-sensitive.
        let e = err(&[w("--STR1=x", 1, 1)]);
        assert_eq!(e.to_string(), "unknown flag: --STR1");
    }

    #[test]
    fn duplicates() {
        let e = err(&[w("--str1=a", 1, 6), w("--str1=b", 1, 15)]);
        assert_eq!(e.to_string(), "duplicate flag specified: --str1");
        assert_eq!(e.span.start.column, 15);
        let e = err(&[w("--bool1", 1, 6), w("--bool1=false", 1, 14)]);
        assert_eq!(e.to_string(), "duplicate flag specified: --bool1");
        let f = parse_flags("COPY", SPECS, &[w("--many=a", 1, 6), w("--many=b", 1, 15)]).unwrap();
        let values: Vec<_> = f.strings("many").into_iter().map(|w| w.value).collect();
        assert_eq!(values, ["a", "b"]);
        assert_eq!(f.all("many").count(), 2);
    }

    #[test]
    fn no_flags_accepted() {
        let e = no_flags("ENV", &[w("--foo=bar", 1, 5)]).unwrap_err();
        assert_eq!(e.to_string(), "unknown flag: --foo");
        assert_eq!(e.help().as_deref(), Some("ENV does not accept any flags"));
        assert_eq!(e.span.start.column, 5);
        assert_eq!(e.span.end.column, 10);
        assert!(no_flags("ENV", &[]).is_ok());
    }

    #[test]
    fn words_without_dashes_are_not_flags() {
        let e = err(&[w("str1=x", 1, 8)]);
        assert_eq!(e.to_string(), "arg should start with -- : str1=x");
        assert_eq!(e.span.start.column, 8);
    }
}
