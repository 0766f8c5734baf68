//! Errors of the typed instruction layer.
//!
//! Messages follow BuildKit's wording (`frontend/dockerfile/instructions`)
//! wherever BuildKit has one, so that users searching for an error find
//! answers; the extra guidance rbuild can give lives in [`InstructionError::help`].
//! The location of the problem is carried by the surrounding
//! [`crate::error::ParseError`].

/// What is wrong with an instruction, its flags or its arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionError {
    // ----- instructions and arguments -----
    /// The keyword is not a Dockerfile instruction.
    #[error("unknown instruction: {keyword}")]
    UnknownInstruction {
        /// The keyword as written.
        keyword: String,
        /// The closest instruction name (upper case), if one is close enough.
        suggestion: Option<String>,
    },
    #[error("{instruction} requires at least one argument")]
    AtLeastOneArgument { instruction: String },
    #[error("{instruction} requires exactly one argument")]
    ExactlyOneArgument { instruction: String },
    #[error(
        "{instruction} requires at least two arguments, but only one was provided. Destination could not be determined"
    )]
    NoDestination { instruction: String },
    #[error("Bad input to {instruction}, too many arguments")]
    TooManyArguments { instruction: String },
    #[error("{instruction} names can not be blank")]
    BlankName { instruction: String },
    #[error("{instruction} cannot accept a heredoc as a destination")]
    HeredocDestination { instruction: String },
    #[error("{instruction} requires the arguments to be in JSON form")]
    NotJson { instruction: String },
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    #[error(
        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
    )]
    InvalidStageName { name: String },
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChaining,
    #[error("{trigger} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger { trigger: String },
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,

    // ----- flags (BuildKit's BFlags) -----
    #[error("unknown flag: --{flag}")]
    UnknownFlag {
        /// The instruction, upper case.
        instruction: String,
        /// The flag name without `--`.
        flag: String,
        /// The flags the instruction accepts (without `--`), sorted.
        allowed: Vec<String>,
        suggestion: Option<String>,
    },
    #[error("duplicate flag specified: --{flag}")]
    DuplicateFlag { flag: String },
    #[error("missing a value on flag: --{flag}")]
    MissingFlagValue { flag: String },
    #[error("expecting boolean value for flag --{flag}, not: {value}")]
    InvalidBoolFlag { flag: String, value: String },
    #[error("arg should start with -- : {word}")]
    NotAFlag { word: String },

    // ----- RUN --network / --security / --device -----
    #[error("invalid network mode {value:?}")]
    InvalidNetwork {
        value: String,
        suggestion: Option<String>,
    },
    #[error("security {value:?} is not valid")]
    InvalidSecurity {
        value: String,
        suggestion: Option<String>,
    },
    #[error("failed to parse csv devices: {message}")]
    DeviceCsv { message: String },
    #[error("device name already set to {name}")]
    DeviceNameTwice { name: String },
    #[error("invalid field '{field}' must be a key=value pair")]
    DeviceFieldNeedsValue { field: String },
    #[error("invalid value for {key}: {value}")]
    InvalidDeviceValue { key: String, value: String },
    #[error("unexpected key '{key}' in '{field}'")]
    UnknownDeviceOption {
        key: String,
        field: String,
        suggestion: Option<String>,
    },

    // ----- RUN --mount -----
    #[error("failed to parse csv mounts: {message}")]
    MountCsv { message: String },
    #[error("unsupported mount type {value:?}")]
    UnsupportedMountType {
        value: String,
        suggestion: Option<String>,
    },
    #[error("unsupported sharing value {value:?}")]
    UnsupportedSharing {
        value: String,
        suggestion: Option<String>,
    },
    #[error("unexpected key '{key}' in '{field}'")]
    UnknownMountOption {
        key: String,
        field: String,
        suggestion: Option<String>,
    },
    #[error("unexpected key '{key}' for mount type '{mount_type}'")]
    MountOptionNotAllowed { key: String, mount_type: String },
    #[error("invalid field '{field}' must be a key=value pair")]
    MountFieldNeedsValue { field: String },
    /// A boolean or size option with a value that does not parse.
    #[error("invalid value for {key}: {value}")]
    InvalidMountValue { key: String, value: String },
    /// `mode`, `uid` or `gid` with a value that does not parse.
    #[error("invalid value {value} for {key}")]
    InvalidMountNumber { key: String, value: String },
    #[error("'{key}' doesn't support variable expansion, define alias stage instead")]
    MountFromVariable { key: String },
    #[error("{option} not allowed for {mount_type:?} type mounts")]
    MountFileInfoNotAllowed { option: String, mount_type: String },
    #[error("secret mount should not have a from")]
    SecretMountFrom,
    #[error("secret mount should not define sharing")]
    SecretMountSharing,
    #[error("invalid secret mount. one of source, target required")]
    SecretMountTarget,
    #[error("both source and id can't be set")]
    SecretMountSourceAndId,
    #[error("invalid cache sharing set for {mount_type} mount")]
    SharingNotCache { mount_type: String },

    // ----- HEALTHCHECK -----
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    /// BuildKit ignores flags on `HEALTHCHECK NONE`; rbuild rejects them.
    #[error("HEALTHCHECK NONE takes no flags: --{flag}")]
    HealthcheckNoneFlags { flag: String },
    #[error("Unknown type {kind:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType { kind: String },
    #[error("Missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    /// A duration flag that Go's `time.ParseDuration` rejects; `message` is
    /// Go's own message (`time: invalid duration "abc"`).
    #[error("{message}")]
    InvalidDuration { flag: String, message: String },
    #[error("Interval {flag:?} cannot be less than 1ms")]
    DurationTooShort { flag: String },
    /// `message` is Go's `strconv.ParseInt` message.
    #[error("{message}")]
    InvalidRetries { message: String },
    #[error("--retries cannot be negative ({value})")]
    NegativeRetries { value: i64 },
}

fn did_you_mean(suggestion: &Option<String>) -> Option<String> {
    suggestion.as_ref().map(|s| format!("did you mean `{s}`?"))
}

fn join_with_suggestion(suggestion: &Option<String>, rest: String) -> String {
    match did_you_mean(suggestion) {
        Some(s) => format!("{s} {rest}"),
        None => rest,
    }
}

impl InstructionError {
    /// A hint for the user, when there is one (e.g. "did you mean `RUN`?").
    pub fn help(&self) -> Option<String> {
        use InstructionError::*;
        match self {
            UnknownInstruction { suggestion, .. } => did_you_mean(suggestion),
            UnknownFlag {
                instruction,
                allowed,
                suggestion,
                ..
            } => {
                let suggestion = suggestion.as_ref().map(|s| format!("--{s}"));
                if allowed.is_empty() {
                    Some(join_with_suggestion(
                        &suggestion,
                        format!("{instruction} does not accept any flags"),
                    ))
                } else {
                    let list: Vec<String> = allowed.iter().map(|f| format!("--{f}")).collect();
                    Some(join_with_suggestion(
                        &suggestion,
                        format!("{instruction} accepts: {}", list.join(", ")),
                    ))
                }
            }
            DuplicateFlag { flag } => Some(format!("--{flag} can only be given once")),
            MissingFlagValue { flag } => Some(format!("write --{flag}=<value>")),
            InvalidBoolFlag { flag, .. } => Some(format!(
                "write --{flag}, --{flag}=true or --{flag}=false"
            )),
            AtLeastOneArgument { instruction } | ExactlyOneArgument { instruction } => {
                Some(match instruction.as_str() {
                    "ENV" | "LABEL" => format!("write `{instruction} name=value`"),
                    "ARG" => "write `ARG name` or `ARG name=default`".into(),
                    "HEALTHCHECK" => {
                        "write `HEALTHCHECK CMD <command>` or `HEALTHCHECK NONE`".into()
                    }
                    "ONBUILD" => "write `ONBUILD <instruction>`, e.g. `ONBUILD RUN make`".into(),
                    "SHELL" => "write `SHELL [\"executable\", \"parameters\"]`".into(),
                    _ => return None,
                })
            }
            NoDestination { instruction } => Some(format!(
                "write `{instruction} <source>... <destination>`"
            )),
            NotJson { instruction } => Some(format!(
                "write `{instruction} [\"executable\", \"parameters\"]`"
            )),
            FromArguments => Some("write `FROM <image> [AS <name>]`".into()),
            InvalidStageName { .. } => Some(
                "stage names start with a letter and contain only letters, digits, `-`, `_` and `.`"
                    .into(),
            ),
            OnbuildChaining | OnbuildTrigger { .. } => Some(
                "ONBUILD triggers cannot be ONBUILD, FROM or MAINTAINER instructions".into(),
            ),
            InvalidNetwork { suggestion, .. } => Some(join_with_suggestion(
                suggestion,
                "--network accepts: default, none, host".into(),
            )),
            InvalidSecurity { suggestion, .. } => Some(join_with_suggestion(
                suggestion,
                "--security accepts: sandbox, insecure".into(),
            )),
            UnknownDeviceOption { suggestion, .. } => Some(join_with_suggestion(
                suggestion,
                "--device accepts: name, required".into(),
            )),
            UnsupportedMountType { suggestion, .. } => Some(join_with_suggestion(
                suggestion,
                "mount types: bind, cache, tmpfs, secret, ssh".into(),
            )),
            UnsupportedSharing { suggestion, .. } => Some(join_with_suggestion(
                suggestion,
                "sharing accepts: shared, private, locked".into(),
            )),
            UnknownMountOption { suggestion, .. } => did_you_mean(suggestion),
            MountOptionNotAllowed { key, .. } => Some(match key.as_str() {
                "size" => "size is only valid for type=tmpfs".into(),
                "required" => "required is only valid for type=secret and type=ssh".into(),
                _ => return None,
            }),
            MountFieldNeedsValue { field } => {
                let key = field.to_ascii_lowercase();
                if super::mount::ALL_KEYS.contains(&key.as_str()) {
                    Some(format!("write `{field}=<value>`"))
                } else {
                    crate::suggest::did_you_mean(&key, super::mount::ALL_KEYS)
                        .map(|s| format!("did you mean `{s}`?"))
                }
            }
            MountFromVariable { .. } => Some(
                "declare a stage `FROM ${VAR} AS alias` and mount `from=alias` instead".into(),
            ),
            MountFileInfoNotAllowed { .. } => {
                Some("mode, uid and gid are only valid for cache, secret and ssh mounts".into())
            }
            SecretMountTarget => Some("add `id=<secret id>` or `target=<path>`".into()),
            SharingNotCache { .. } => Some("sharing is only valid for type=cache".into()),
            HealthcheckNoneArguments | HealthcheckNoneFlags { .. } => {
                Some("write just `HEALTHCHECK NONE`".into())
            }
            HealthcheckType { .. } | HealthcheckMissingCommand => {
                Some("write `HEALTHCHECK [options] CMD <command>` or `HEALTHCHECK NONE`".into())
            }
            InvalidDuration { .. } => {
                Some("durations look like `30s`, `1m30s`, `1.5h` or `500ms`".into())
            }
            DurationTooShort { .. } => Some("use 0 for the default, or at least 1ms".into()),
            InvalidRetries { .. } | NegativeRetries { .. } => {
                Some("--retries takes a whole number, 0 or more".into())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_buildkit() {
        let e = InstructionError::UnknownInstruction {
            keyword: "RUNN".into(),
            suggestion: Some("RUN".into()),
        };
        assert_eq!(e.to_string(), "unknown instruction: RUNN");
        assert_eq!(e.help().as_deref(), Some("did you mean `RUN`?"));

        let e = InstructionError::InvalidStageName { name: "1x".into() };
        assert_eq!(
            e.to_string(),
            "invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
        );
        let e = InstructionError::DurationTooShort {
            flag: "interval".into(),
        };
        assert_eq!(
            e.to_string(),
            "Interval \"interval\" cannot be less than 1ms"
        );
        let e = InstructionError::MountFileInfoNotAllowed {
            option: "uid".into(),
            mount_type: "bind".into(),
        };
        assert_eq!(e.to_string(), "uid not allowed for \"bind\" type mounts");
    }

    #[test]
    fn unknown_flag_help_lists_flags() {
        let e = InstructionError::UnknownFlag {
            instruction: "COPY".into(),
            flag: "lnk".into(),
            allowed: vec!["chown".into(), "link".into()],
            suggestion: Some("link".into()),
        };
        assert_eq!(e.to_string(), "unknown flag: --lnk");
        assert_eq!(
            e.help().as_deref(),
            Some("did you mean `--link`? COPY accepts: --chown, --link")
        );
        let e = InstructionError::UnknownFlag {
            instruction: "ENV".into(),
            flag: "x".into(),
            allowed: vec![],
            suggestion: None,
        };
        assert_eq!(e.help().as_deref(), Some("ENV does not accept any flags"));
    }
}
