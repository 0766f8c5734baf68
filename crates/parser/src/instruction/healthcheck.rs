//! `HEALTHCHECK`: the `NONE` / `CMD` forms, Go-syntax durations and retries.
//!
//! BuildKit does not expand variables in HEALTHCHECK flags, so durations and
//! retries are validated here, with Go's `time.ParseDuration` and
//! `strconv.ParseInt` rules and messages.

use std::time::Duration;

use super::flags::{flag, parse_flags, FlagKind, FlagSpec};
use super::{command_line, InstructionError, Spanned};
use crate::error::ParseError;
use crate::node::Node;
use crate::span::Word;
use serde::Serialize;

/// `HEALTHCHECK NONE` or `HEALTHCHECK [flags] CMD command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum HealthcheckInstruction {
    /// Disable any health check inherited from the base image. The word is
    /// the `NONE` argument.
    None(Word),
    Cmd(HealthcheckCmd),
}

/// `HEALTHCHECK [flags] CMD command`. Absent flags mean "inherit / default";
/// a zero duration means the same thing to the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckCmd {
    /// The `CMD` word.
    pub cmd: Word,
    /// The probe: exec form (`CMD` in the image config) or shell form
    /// (`CMD-SHELL`).
    pub command: super::CommandLine,
    pub interval: Option<Spanned<Duration>>,
    pub timeout: Option<Spanned<Duration>>,
    pub start_period: Option<Spanned<Duration>>,
    pub start_interval: Option<Spanned<Duration>>,
    pub retries: Option<Spanned<u32>>,
}

pub(crate) const HEALTHCHECK_FLAGS: &[FlagSpec] = &[
    flag("interval", FlagKind::String),
    flag("timeout", FlagKind::String),
    flag("start-period", FlagKind::String),
    flag("start-interval", FlagKind::String),
    flag("retries", FlagKind::String),
];

pub(crate) fn parse_healthcheck(node: &Node) -> Result<HealthcheckInstruction, ParseError> {
    let words = node.words();
    let Some(kind_word) = words.first() else {
        return Err(ParseError::new(
            InstructionError::AtLeastOneArgument {
                instruction: "HEALTHCHECK".into(),
            },
            node.keyword.span,
        ));
    };
    let kind = kind_word.value.to_uppercase();
    let rest = &words[1..];

    if kind == "NONE" {
        if let Some(extra) = rest.first() {
            return Err(ParseError::new(
                InstructionError::HealthcheckNoneArguments,
                extra.span,
            ));
        }
        // BuildKit silently ignores flags here; they would have no effect,
        // so rbuild reports them.
        if let Some(flag) = node.flags.first() {
            let name = flag.value.trim_start_matches('-');
            let name = name.split_once('=').map_or(name, |(n, _)| n);
            return Err(ParseError::new(
                InstructionError::HealthcheckNoneFlags {
                    flag: name.to_owned(),
                },
                flag.span,
            ));
        }
        return Ok(HealthcheckInstruction::None(kind_word.clone()));
    }

    let flags = parse_flags("HEALTHCHECK", HEALTHCHECK_FLAGS, &node.flags)?;
    if kind != "CMD" {
        return Err(ParseError::new(
            InstructionError::HealthcheckType { kind },
            kind_word.span,
        ));
    }
    if rest.is_empty() {
        return Err(ParseError::new(
            InstructionError::HealthcheckMissingCommand,
            kind_word.span,
        ));
    }
    let command = command_line(rest, node.json, kind_word.span);

    let duration = |name: &str| -> Result<Option<Spanned<Duration>>, ParseError> {
        match flags.string(name) {
            Some(value) => parse_interval(name, &value),
            None => Ok(None),
        }
    };
    let interval = duration("interval")?;
    let timeout = duration("timeout")?;
    let start_period = duration("start-period")?;
    let start_interval = duration("start-interval")?;
    let retries = match flags.string("retries") {
        Some(value) if !value.value.is_empty() => Some(Spanned {
            value: parse_retries(&value.value).map_err(|e| ParseError::new(e, value.span))?,
            span: value.span,
        }),
        _ => None,
    };

    Ok(HealthcheckInstruction::Cmd(HealthcheckCmd {
        cmd: kind_word.clone(),
        command,
        interval,
        timeout,
        start_period,
        start_interval,
        retries,
    }))
}

impl HealthcheckInstruction {
    /// Whether this is `HEALTHCHECK NONE`.
    pub fn is_none(&self) -> bool {
        matches!(self, HealthcheckInstruction::None(_))
    }
}

/// A duration flag: empty means unset; otherwise a Go duration that is 0 or
/// at least 1ms (BuildKit's `parseOptInterval`).
fn parse_interval(flag: &str, value: &Word) -> Result<Option<Spanned<Duration>>, ParseError> {
    if value.value.is_empty() {
        return Ok(None);
    }
    let nanos = parse_go_duration(&value.value).map_err(|message| {
        ParseError::new(
            InstructionError::InvalidDuration {
                flag: flag.to_owned(),
                message,
            },
            value.span,
        )
    })?;
    if nanos != 0 && nanos < 1_000_000 {
        return Err(ParseError::new(
            InstructionError::DurationTooShort {
                flag: flag.to_owned(),
            },
            value.span,
        ));
    }
    Ok(Some(Spanned {
        value: Duration::from_nanos(nanos as u64),
        span: value.span,
    }))
}

/// `--retries`: Go's `strconv.ParseInt(s, 10, 32)`, then must not be negative.
pub(crate) fn parse_retries(s: &str) -> Result<u32, InstructionError> {
    let syntax = || InstructionError::InvalidRetries {
        message: format!("strconv.ParseInt: parsing {s:?}: invalid syntax"),
    };
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    // Too many digits for i64 is far out of range either way.
    let magnitude: i64 = digits.parse().unwrap_or(i64::MAX);
    let value = if negative { -magnitude } else { magnitude };
    if value > i64::from(i32::MAX) || value < i64::from(i32::MIN) {
        return Err(InstructionError::InvalidRetries {
            message: format!("strconv.ParseInt: parsing {s:?}: value out of range"),
        });
    }
    if value < 0 {
        return Err(InstructionError::NegativeRetries { value });
    }
    Ok(value as u32)
}

/// Go's `time.ParseDuration`: a possibly signed sequence of decimal numbers,
/// each with optional fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`,
/// `h`), e.g. `300ms`, `-1.5h`, `2h45m`; a bare `0` is allowed. Returns
/// nanoseconds, or Go's error message.
pub fn parse_go_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    const LIMIT: u64 = 1 << 63;

    let mut s = orig;
    let mut negative = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            negative = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut v: u64 = 0;
        for b in s[..int_len].bytes() {
            if v > LIMIT / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(b - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        let pre = int_len > 0;
        s = &s[int_len..];
        // Fraction.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if let Some(after_dot) = s.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for b in after_dot[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                if fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = fraction * 10 + u64::from(b - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = y;
                scale *= 10.0;
            }
            post = frac_len > 0;
            s = &after_dot[frac_len..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        // Unit.
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let unit_text = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u64 = match unit_text {
            "ns" => 1,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {unit_text:?} in duration {orig:?}"
                ))
            }
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if fraction > 0 {
            v += (fraction as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total += v;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        return Ok((total as i128).wrapping_neg() as i64);
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = 1_000_000i64;
        let s = 1_000 * ms;
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("-0"), Ok(0));
        assert_eq!(parse_go_duration("30s"), Ok(30 * s));
        assert_eq!(parse_go_duration("1m30s"), Ok(90 * s));
        assert_eq!(parse_go_duration("1.5h"), Ok(5400 * s));
        assert_eq!(parse_go_duration("500ms"), Ok(500 * ms));
        assert_eq!(parse_go_duration("50ns"), Ok(50));
        assert_eq!(parse_go_duration("3us"), Ok(3_000));
        assert_eq!(parse_go_duration("3µs"), Ok(3_000));
        assert_eq!(parse_go_duration("3μs"), Ok(3_000));
        assert_eq!(parse_go_duration(".5s"), Ok(500 * ms));
        assert_eq!(parse_go_duration("1.s"), Ok(s));
        assert_eq!(parse_go_duration("+2h45m"), Ok((2 * 3600 + 45 * 60) * s));
        assert_eq!(parse_go_duration("-1s"), Ok(-s));
        assert_eq!(parse_go_duration("0s"), Ok(0));
        assert_eq!(parse_go_duration("2562047h"), Ok(2562047 * 3600 * s));
    }

    #[test]
    fn go_duration_errors() {
        assert_eq!(
            parse_go_duration(""),
            Err("time: invalid duration \"\"".into())
        );
        assert_eq!(
            parse_go_duration("abc"),
            Err("time: invalid duration \"abc\"".into())
        );
        assert_eq!(
            parse_go_duration("1"),
            Err("time: missing unit in duration \"1\"".into())
        );
        assert_eq!(
            parse_go_duration("1x"),
            Err("time: unknown unit \"x\" in duration \"1x\"".into())
        );
        assert_eq!(
            parse_go_duration("1S"),
            Err("time: unknown unit \"S\" in duration \"1S\"".into())
        );
        assert_eq!(
            parse_go_duration("."),
            Err("time: invalid duration \".\"".into())
        );
        assert_eq!(
            parse_go_duration("-"),
            Err("time: invalid duration \"-\"".into())
        );
        assert_eq!(
            parse_go_duration("1s "),
            Err("time: unknown unit \"s \" in duration \"1s \"".into())
        );
        assert_eq!(
            parse_go_duration("9999999999h"),
            Err("time: invalid duration \"9999999999h\"".into())
        );
    }

    #[test]
    fn retries() {
        assert_eq!(parse_retries("0"), Ok(0));
        assert_eq!(parse_retries("3"), Ok(3));
        assert_eq!(parse_retries("+3"), Ok(3));
        assert_eq!(parse_retries("2147483647"), Ok(2147483647));
        assert_eq!(
            parse_retries("-1"),
            Err(InstructionError::NegativeRetries { value: -1 })
        );
        assert_eq!(
            parse_retries("2147483648").unwrap_err().to_string(),
            "strconv.ParseInt: parsing \"2147483648\": value out of range"
        );
        assert_eq!(
            parse_retries("three").unwrap_err().to_string(),
            "strconv.ParseInt: parsing \"three\": invalid syntax"
        );
        assert_eq!(
            parse_retries("-").unwrap_err().to_string(),
            "strconv.ParseInt: parsing \"-\": invalid syntax"
        );
    }
}
