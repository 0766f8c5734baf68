//! `RUN` and its flags: `--mount` (see [`super::mount`]), `--network`,
//! `--security` and `--device`.
//!
//! BuildKit validates `--network`, `--security` and `--device` without
//! expanding variables, so rbuild does too.

use super::csv;
use super::flags::{flag, parse_flags, FlagKind, FlagSpec};
use super::mount::{parse_run_mount, RunMount};
use super::{command_line, sub_word, CommandLine, InstructionError, Spanned};
use crate::error::ParseError;
use crate::node::{Heredoc, Node};
use crate::span::{Span, Word};
use crate::suggest::did_you_mean;
use serde::Serialize;

/// `RUN [flags] command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunInstruction {
    pub command: CommandLine,
    /// Here-documents of the command (`RUN <<EOF`), in marker order.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` flags, in order.
    pub mounts: Vec<RunMount>,
    /// `--network`; `None` when not given (same as `default`).
    pub network: Option<Spanned<NetworkMode>>,
    /// `--security`; `None` when not given (same as `sandbox`).
    pub security: Option<Spanned<SecurityMode>>,
    /// `--device` flags (CDI devices), in order.
    pub devices: Vec<Device>,
}

impl RunInstruction {
    pub fn network_mode(&self) -> NetworkMode {
        self.network
            .as_ref()
            .map_or(NetworkMode::Default, |n| n.value)
    }

    pub fn security_mode(&self) -> SecurityMode {
        self.security
            .as_ref()
            .map_or(SecurityMode::Sandbox, |s| s.value)
    }
}

/// `RUN --network=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Default => "default",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }
}

/// `RUN --security=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

impl SecurityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityMode::Sandbox => "sandbox",
            SecurityMode::Insecure => "insecure",
        }
    }
}

/// `RUN --device=name[,required[=bool]]`: a CDI device to expose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The device name (`vendor.com/class=name`, or a class).
    pub name: Word,
    /// Fail when the device is not available (default: optional).
    pub required: bool,
    /// The whole `--device=...` flag.
    pub span: Span,
}

pub(crate) const RUN_FLAGS: &[FlagSpec] = &[
    flag("mount", FlagKind::Strings),
    flag("network", FlagKind::String),
    flag("security", FlagKind::String),
    flag("device", FlagKind::Strings),
];

pub(crate) fn parse_run(node: &Node) -> Result<RunInstruction, ParseError> {
    let flags = parse_flags("RUN", RUN_FLAGS, &node.flags)?;

    let mut devices = Vec::new();
    for f in flags.all("device") {
        if let Some(value) = &f.value {
            devices.push(parse_device(value, f.word.span)?);
        }
    }

    let mut mounts = Vec::new();
    for f in flags.all("mount") {
        if let Some(value) = &f.value {
            mounts.push(parse_run_mount(value, f.word.span)?);
        }
    }

    let network = match flags.string("network") {
        None => None,
        Some(v) => {
            let value = match v.value.as_str() {
                "default" => NetworkMode::Default,
                "none" => NetworkMode::None,
                "host" => NetworkMode::Host,
                other => {
                    return Err(ParseError::new(
                        InstructionError::InvalidNetwork {
                            value: other.to_owned(),
                            suggestion: did_you_mean(other, &["default", "none", "host"])
                                .map(str::to_owned),
                        },
                        v.span,
                    ))
                }
            };
            Some(Spanned {
                value,
                span: v.span,
            })
        }
    };

    let security = match flags.string("security") {
        None => None,
        Some(v) => {
            let value = match v.value.as_str() {
                "sandbox" => SecurityMode::Sandbox,
                "insecure" => SecurityMode::Insecure,
                other => {
                    return Err(ParseError::new(
                        InstructionError::InvalidSecurity {
                            value: other.to_owned(),
                            suggestion: did_you_mean(other, &["sandbox", "insecure"])
                                .map(str::to_owned),
                        },
                        v.span,
                    ))
                }
            };
            Some(Spanned {
                value,
                span: v.span,
            })
        }
    };

    Ok(RunInstruction {
        command: command_line(node.words(), node.json, node.keyword.span),
        heredocs: node.heredocs.clone(),
        mounts,
        network,
        security,
        devices,
    })
}

/// BuildKit's `ParseDevice`: CSV fields; the first field without a known key
/// is the name (CDI names contain `=`, e.g. `vendor.com/gpu=all`).
pub(crate) fn parse_device(value: &Word, flag_span: Span) -> Result<Device, ParseError> {
    let fields = csv::split(&value.value).map_err(|e| {
        ParseError::new(
            InstructionError::DeviceCsv { message: e.message },
            sub_word(value, e.offset, e.offset + 1).span,
        )
    })?;
    let mut name: Option<Word> = None;
    let mut required = false;
    for f in fields {
        let field_word = sub_word(value, f.start, f.end);
        let field_word = Word::new(f.text.clone(), field_word.span);
        let unset = |n: &Option<Word>| n.as_ref().is_none_or(|n| n.value.is_empty());
        let Some((key, val)) = f.text.split_once('=') else {
            if f.text.eq_ignore_ascii_case("required") {
                required = true;
            } else if unset(&name) {
                name = Some(field_word);
            } else {
                return Err(ParseError::new(
                    InstructionError::DeviceFieldNeedsValue { field: f.text },
                    field_word.span,
                ));
            }
            continue;
        };
        let key = key.to_ascii_lowercase();
        let key_len = key.chars().count();
        let val_word = Word::new(val, sub_word(value, f.start + key_len + 1, f.end).span);
        match key.as_str() {
            "name" => {
                if let Some(existing) = name.as_ref().filter(|n| !n.value.is_empty()) {
                    return Err(ParseError::new(
                        InstructionError::DeviceNameTwice {
                            name: existing.value.clone(),
                        },
                        field_word.span,
                    ));
                }
                name = Some(val_word);
            }
            "required" => {
                required = match val {
                    "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                    "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                    _ => {
                        return Err(ParseError::new(
                            InstructionError::InvalidDeviceValue {
                                key,
                                value: val.to_owned(),
                            },
                            val_word.span,
                        ))
                    }
                }
            }
            _ if unset(&name) => name = Some(field_word),
            _ => {
                return Err(ParseError::new(
                    InstructionError::UnknownDeviceOption {
                        suggestion: did_you_mean(&key, &["name", "required"]).map(str::to_owned),
                        key,
                        field: f.text,
                    },
                    field_word.span,
                ))
            }
        }
    }
    Ok(Device {
        name: name.unwrap_or_else(|| Word::new("", value.span)),
        required,
        span: flag_span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Position;

    fn value(text: &str) -> Word {
        let n = text.chars().count() as u32;
        Word::new(
            text,
            Span::new(Position::new(1, 14), Position::new(1, 14 + n)),
        )
    }

    fn device(text: &str) -> Result<Device, ParseError> {
        parse_device(&value(text), Span::default())
    }

    #[test]
    fn devices() {
        let d = device("vendor.com/gpu=all").unwrap();
        assert_eq!(d.name.value, "vendor.com/gpu=all");
        assert_eq!(d.name.span.start.column, 14);
        assert!(!d.required);
        let d = device("name=vendor.com/gpu=0,required").unwrap();
        assert_eq!(d.name.value, "vendor.com/gpu=0");
        assert_eq!(d.name.span.start.column, 19);
        assert!(d.required);
        let d = device("gpu,required=false").unwrap();
        assert_eq!(d.name.value, "gpu");
        assert!(!d.required);
        let d = device("required=true,name=x").unwrap();
        assert!(d.required);
        assert_eq!(d.name.value, "x");
    }

    #[test]
    fn device_errors() {
        let e = device("gpu,name=other").unwrap_err();
        assert_eq!(e.to_string(), "device name already set to gpu");
        assert_eq!(e.span.start.column, 18);
        let e = device("gpu,other").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid field 'other' must be a key=value pair"
        );
        let e = device("gpu,requird=true").unwrap_err();
        assert_eq!(e.to_string(), "unexpected key 'requird' in 'requird=true'");
        assert_eq!(
            e.help().as_deref(),
            Some("did you mean `required`? --device accepts: name, required")
        );
        let e = device("gpu,required=sure").unwrap_err();
        assert_eq!(e.to_string(), "invalid value for required: sure");
        assert_eq!(e.span.start.column, 27);
        let e = device("").unwrap_err();
        assert_eq!(e.to_string(), "failed to parse csv devices: EOF");
    }
}
