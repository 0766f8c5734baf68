//! `RUN --mount=[type=TYPE][,option[=value]]...`.
//!
//! BuildKit parses a mount twice: at parse time without variables (it only
//! rejects `from=` values that use variables) and again when building, after
//! expanding every option value with the stage's ARG/ENV values. rbuild
//! validates everything it can at parse time, so that mistakes are reported
//! with a precise location before anything runs:
//!
//! * option keys, mount types and every literal value are checked now;
//! * values containing `$` are left for later: [`RunMount::mount`] is then
//!   `None` and the planner, after expanding the field values, calls
//!   [`Mount::from_fields`] to get the typed mount.

use super::csv;
use super::{sub_word, InstructionError};
use crate::error::ParseError;
use crate::span::{Span, Word};
use crate::suggest::did_you_mean;
use serde::Serialize;

/// The kind of mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A directory of the build context, a stage or an image (the default).
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty in-memory filesystem.
    Tmpfs,
    /// A build secret (file or environment variable).
    Secret,
    /// An SSH agent socket.
    Ssh,
}

impl MountType {
    pub const ALL: [MountType; 5] = [
        MountType::Bind,
        MountType::Cache,
        MountType::Tmpfs,
        MountType::Secret,
        MountType::Ssh,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }

    fn parse(s: &str) -> Option<MountType> {
        let lower = s.to_ascii_lowercase();
        MountType::ALL.into_iter().find(|t| t.as_str() == lower)
    }

    /// Types that accept `mode`, `uid` and `gid`.
    fn has_file_info(self) -> bool {
        matches!(self, MountType::Cache | MountType::Secret | MountType::Ssh)
    }
}

impl std::fmt::Display for MountType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

impl CacheSharing {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheSharing::Shared => "shared",
            CacheSharing::Private => "private",
            CacheSharing::Locked => "locked",
        }
    }

    fn parse(s: &str) -> Option<CacheSharing> {
        match s.to_ascii_lowercase().as_str() {
            "shared" => Some(CacheSharing::Shared),
            "private" => Some(CacheSharing::Private),
            "locked" => Some(CacheSharing::Locked),
            _ => None,
        }
    }
}

/// One `key=value` (or bare `key`) field of a `--mount` flag, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountField {
    /// The key as written (keys are matched case-insensitively).
    pub key: Word,
    /// The value after `=`, not expanded; `None` for a bare key (`readonly`).
    pub value: Option<Word>,
    /// The whole field.
    pub span: Span,
}

impl MountField {
    /// The field as written, `key=value` or `key`.
    pub fn text(&self) -> String {
        match &self.value {
            Some(v) => format!("{}={}", self.key.value, v.value),
            None => self.key.value.clone(),
        }
    }
}

/// A `--mount` flag of a RUN instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunMount {
    /// The whole `--mount=...` flag.
    pub span: Span,
    /// The fields in order, values not expanded.
    pub fields: Vec<MountField>,
    /// The typed mount, when no field value needs variable expansion. When
    /// `None`, expand the field values and call [`Mount::from_fields`].
    pub mount: Option<Mount>,
}

impl RunMount {
    /// Whether some field value contains `$` and must be expanded first.
    pub fn needs_expansion(&self) -> bool {
        self.mount.is_none()
    }
}

/// A fully validated mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub mount_type: MountType,
    /// `from=`: stage, image or named context providing the source.
    pub from: Option<Word>,
    /// `source=` / `src=`: path inside `from` (or the context), or secret id.
    pub source: Option<Word>,
    /// `target=` / `dst=` / `destination=`. BuildKit does not require it: an
    /// empty target means the working directory (which must not be `/`).
    pub target: Option<Word>,
    /// Whether the mount is read-only, after defaults (bind, secret and ssh
    /// mounts are read-only unless `rw`; cache and tmpfs are writable unless `ro`).
    pub readonly: bool,
    /// `size=` of a tmpfs mount, in bytes.
    pub size: Option<u64>,
    /// `id=`: cache id, secret id or ssh agent id.
    pub id: Option<Word>,
    /// `sharing=` of a cache mount.
    pub sharing: Option<CacheSharing>,
    /// `required` for secret and ssh mounts.
    pub required: bool,
    /// `env=`: expose the secret as this environment variable. An empty
    /// value means "use the default" (BuildKit's non-nil empty pointer).
    pub env: Option<Word>,
    /// `mode=` (octal) for cache, secret and ssh mounts.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Every key BuildKit knows, for suggestions (its order).
pub(crate) const ALL_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Splits the value of a `--mount` flag into fields. `value` is the word
/// after `--mount=` (its span is used for the fields' positions).
pub fn split_mount_fields(value: &Word) -> Result<Vec<MountField>, ParseError> {
    let fields = csv::split(&value.value).map_err(|e| {
        ParseError::new(
            InstructionError::MountCsv { message: e.message },
            sub_word(value, e.offset, e.offset + 1).span,
        )
    })?;
    Ok(fields
        .into_iter()
        .map(|f| {
            let span = sub_word(value, f.start, f.end).span;
            // For quoted fields the text no longer lines up with the source
            // columns; positions inside them are approximate.
            let quoted = f.end - f.start != f.text.chars().count();
            let offset = f.start + usize::from(quoted);
            match f.text.split_once('=') {
                Some((k, v)) => {
                    let k_len = k.chars().count();
                    let key = Word::new(k, sub_word(value, offset, offset + k_len).span);
                    let v_start = offset + k_len + 1;
                    let v_span = sub_word(value, v_start, v_start + v.chars().count()).span;
                    MountField {
                        key,
                        value: Some(Word::new(v, v_span)),
                        span,
                    }
                }
                None => MountField {
                    key: Word::new(f.text, span),
                    value: None,
                    span,
                },
            }
        })
        .collect())
}

/// Parses a `--mount` flag at parse time. `flag_span` is the whole flag,
/// `value` the text after `--mount=`.
pub fn parse_run_mount(value: &Word, flag_span: Span) -> Result<RunMount, ParseError> {
    let fields = split_mount_fields(value)?;
    let deferred = fields
        .iter()
        .any(|f| f.value.as_ref().is_some_and(|v| v.value.contains('$')));
    let mount = build(&fields, flag_span, Stage::Parse)?;
    Ok(RunMount {
        span: flag_span,
        fields,
        mount: (!deferred).then_some(mount),
    })
}

impl Mount {
    /// Builds a mount from fields whose values have been expanded (or need
    /// no expansion). `flag_span` is used for errors about the mount as a whole.
    pub fn from_fields(fields: &[MountField], flag_span: Span) -> Result<Mount, ParseError> {
        build(fields, flag_span, Stage::Expanded)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Values may still contain variables: those are not validated.
    Parse,
    /// Values are final.
    Expanded,
}

/// ParseBool from Go's strconv.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `units.RAMInBytes` from docker/go-units: a number (possibly fractional)
/// with an optional binary unit `k`, `m`, `g`, `t`, `p`, optionally followed
/// by `b` or `ib`, case-insensitive (`64m`, `1.5GiB`, `512 kb`, `100`).
pub(crate) fn parse_ram_size(s: &str) -> Option<u64> {
    let sep = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')?;
    let (num, suffix) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    // Go's ParseFloat is more liberal (hex, underscores, inf); plain decimal
    // and exponent notation cover real Dockerfiles.
    if num.is_empty()
        || !num
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    let size: f64 = num.parse().ok()?;
    if size < 0.0 || !size.is_finite() {
        return None;
    }
    let suffix = suffix.to_ascii_lowercase();
    let multiplier: f64 = match suffix.as_str() {
        "" | "b" => 1.0,
        _ => {
            let mut chars = suffix.chars();
            let unit = match chars.next()? {
                'k' => 1u64 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                'p' => 1 << 50,
                _ => return None,
            };
            match chars.as_str() {
                "" | "b" | "ib" => unit as f64,
                _ => return None,
            }
        }
    };
    Some((size * multiplier) as u64)
}

fn parse_u32(s: &str, radix: u32) -> Option<u32> {
    // Go's ParseUint with an explicit base takes no sign and no prefix.
    if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(s, radix).ok()
}

fn err(kind: InstructionError, span: Span) -> ParseError {
    ParseError::new(kind, span)
}

/// The shared validation of [`parse_run_mount`] and [`Mount::from_fields`].
fn build(fields: &[MountField], flag_span: Span, stage: Stage) -> Result<Mount, ParseError> {
    let deferred = |w: &Word| stage == Stage::Parse && w.value.contains('$');

    // The type decides which options are valid. BuildKit applies options in
    // order, so `size=1g,type=tmpfs` fails there; rbuild looks at the last
    // `type` first so that option order does not matter.
    let mut mount_type = Some(MountType::Bind);
    for f in fields {
        if f.key.value.eq_ignore_ascii_case("type") {
            if let Some(v) = &f.value {
                if deferred(v) {
                    mount_type = None; // unknown until expansion
                    continue;
                }
                match MountType::parse(&v.value) {
                    Some(t) => mount_type = Some(t),
                    None => {
                        let names: Vec<&str> = MountType::ALL.iter().map(|t| t.as_str()).collect();
                        return Err(err(
                            InstructionError::UnsupportedMountType {
                                value: v.value.clone(),
                                suggestion: did_you_mean(&v.value, &names).map(str::to_owned),
                            },
                            v.span,
                        ));
                    }
                }
            }
        }
    }
    let type_name = mount_type.map_or("", |t| t.as_str()).to_owned();
    let type_is = |types: &[MountType]| mount_type.is_none_or(|t| types.contains(&t));
    let not_allowed = |f: &MountField, key: &str| {
        err(
            InstructionError::MountOptionNotAllowed {
                key: key.to_owned(),
                mount_type: type_name.clone(),
            },
            f.key.span,
        )
    };
    let bad_value = |key: &str, v: &Word| {
        err(
            InstructionError::InvalidMountValue {
                key: key.to_owned(),
                value: v.value.clone(),
            },
            v.span,
        )
    };
    let bad_number = |key: &str, v: &Word| {
        err(
            InstructionError::InvalidMountNumber {
                key: key.to_owned(),
                value: v.value.clone(),
            },
            v.span,
        )
    };

    let mut m = Mount {
        mount_type: mount_type.unwrap_or(MountType::Bind),
        from: None,
        source: None,
        target: None,
        readonly: false,
        size: None,
        id: None,
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut readonly: Option<bool> = None;
    // Which field set what, for errors found after the loop.
    let mut from_field = None;
    let mut source_field = None;
    let mut id_field = None;
    let mut sharing_field = None;
    let mut file_info_fields: Vec<(&'static str, &MountField)> = Vec::new();

    for f in fields {
        let key = f.key.value.to_ascii_lowercase();
        let Some(v) = &f.value else {
            match key.as_str() {
                "readonly" | "ro" => readonly = Some(true),
                "readwrite" | "rw" => readonly = Some(false),
                // Buildah's SELinux relabel options. rbuild does not label
                // files; accepting them keeps Buildah-targeted Dockerfiles
                // building (BuildKit rejects them when the stage runs).
                "z" => {}
                "required" => {
                    if !type_is(&[MountType::Secret, MountType::Ssh]) {
                        return Err(not_allowed(f, &key));
                    }
                    m.required = true;
                }
                _ => {
                    return Err(err(
                        InstructionError::MountFieldNeedsValue {
                            field: f.key.value.clone(),
                        },
                        f.span,
                    ))
                }
            }
            continue;
        };

        if key == "from" && stage == Stage::Parse {
            // BuildKit resolves `from` before variables are known.
            if let Some(i) = v.value.find('$') {
                if i != v.value.len() - 1 {
                    return Err(err(InstructionError::MountFromVariable { key }, v.span));
                }
            }
        }
        let later = deferred(v);

        match key.as_str() {
            "type" => {} // handled above
            "from" => {
                m.from = Some(v.clone());
                from_field = Some(f);
            }
            "source" | "src" => {
                m.source = Some(v.clone());
                source_field = Some(f);
            }
            "target" | "dst" | "destination" => m.target = Some(v.clone()),
            "readonly" | "ro" | "readwrite" | "rw" => {
                if later {
                    continue;
                }
                let b = parse_go_bool(&v.value).ok_or_else(|| bad_value(&key, v))?;
                let writable = matches!(key.as_str(), "readwrite" | "rw");
                readonly = Some(if writable { !b } else { b });
            }
            "required" => {
                if !type_is(&[MountType::Secret, MountType::Ssh]) {
                    return Err(not_allowed(f, &key));
                }
                if !later {
                    m.required = parse_go_bool(&v.value).ok_or_else(|| bad_value(&key, v))?;
                }
            }
            "size" => {
                if !type_is(&[MountType::Tmpfs]) {
                    return Err(not_allowed(f, &key));
                }
                if !later {
                    m.size = Some(parse_ram_size(&v.value).ok_or_else(|| bad_value(&key, v))?);
                }
            }
            "id" => {
                m.id = Some(v.clone());
                id_field = Some(f);
            }
            "sharing" => {
                sharing_field = Some(f);
                if later {
                    continue;
                }
                match CacheSharing::parse(&v.value) {
                    Some(s) => m.sharing = Some(s),
                    None => {
                        let names = ["shared", "private", "locked"];
                        return Err(err(
                            InstructionError::UnsupportedSharing {
                                value: v.value.clone(),
                                suggestion: did_you_mean(&v.value, &names).map(str::to_owned),
                            },
                            v.span,
                        ));
                    }
                }
            }
            "mode" => {
                file_info_fields.push(("mode", f));
                if !later {
                    m.mode = Some(parse_u32(&v.value, 8).ok_or_else(|| bad_number(&key, v))?);
                }
            }
            "uid" => {
                file_info_fields.push(("uid", f));
                if !later {
                    m.uid = Some(parse_u32(&v.value, 10).ok_or_else(|| bad_number(&key, v))?);
                }
            }
            "gid" => {
                file_info_fields.push(("gid", f));
                if !later {
                    m.gid = Some(parse_u32(&v.value, 10).ok_or_else(|| bad_number(&key, v))?);
                }
            }
            "env" => m.env = Some(v.clone()),
            _ => {
                return Err(err(
                    InstructionError::UnknownMountOption {
                        key: key.clone(),
                        field: f.text(),
                        suggestion: did_you_mean(&key, ALL_KEYS).map(str::to_owned),
                    },
                    f.key.span,
                ))
            }
        }
    }

    let Some(mount_type) = mount_type else {
        // The type is a variable: type-specific rules wait for expansion.
        return Ok(m);
    };

    if !mount_type.has_file_info() {
        // BuildKit reports mode, then uid, then gid.
        for option in ["mode", "uid", "gid"] {
            if let Some((_, f)) = file_info_fields.iter().find(|(o, _)| *o == option) {
                return Err(err(
                    InstructionError::MountFileInfoNotAllowed {
                        option: option.to_owned(),
                        mount_type: type_name,
                    },
                    f.span,
                ));
            }
        }
    }

    m.readonly = readonly.unwrap_or(!matches!(mount_type, MountType::Cache | MountType::Tmpfs));

    if mount_type == MountType::Secret {
        if let Some(f) = from_field.filter(|_| m.from.as_ref().is_some_and(|w| !w.value.is_empty()))
        {
            return Err(err(InstructionError::SecretMountFrom, f.span));
        }
        if let Some(f) = sharing_field {
            return Err(err(InstructionError::SecretMountSharing, f.span));
        }
        let set = |w: &Option<Word>| w.as_ref().is_some_and(|w| !w.value.is_empty());
        if !set(&m.source) && !set(&m.target) && !set(&m.id) {
            return Err(err(InstructionError::SecretMountTarget, flag_span));
        }
        if set(&m.source) && set(&m.id) {
            let span = match (source_field, id_field) {
                (Some(s), Some(i)) => s.span.to(i.span),
                _ => flag_span,
            };
            return Err(err(InstructionError::SecretMountSourceAndId, span));
        }
    }

    if let Some(f) = sharing_field {
        if mount_type != MountType::Cache {
            return Err(err(
                InstructionError::SharingNotCache {
                    mount_type: type_name,
                },
                f.span,
            ));
        }
    }

    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ParseErrorKind;
    use crate::span::Position;

    /// The value word of `--mount=<text>` written at column 5 of line 1
    /// (`RUN --mount=...`): the value starts at column 13.
    fn value(text: &str) -> Word {
        let n = text.chars().count() as u32;
        Word::new(
            text,
            Span::new(Position::new(1, 13), Position::new(1, 13 + n)),
        )
    }

    fn flag_span(text: &str) -> Span {
        let n = text.chars().count() as u32;
        Span::new(Position::new(1, 5), Position::new(1, 13 + n))
    }

    fn parse(text: &str) -> Result<RunMount, ParseError> {
        parse_run_mount(&value(text), flag_span(text))
    }

    fn mount(text: &str) -> Mount {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .mount
            .unwrap_or_else(|| panic!("{text}: deferred"))
    }

    fn error(text: &str) -> (String, u32, InstructionError) {
        let e = parse(text).expect_err(text);
        let col = e.span.start.column;
        match e.kind {
            ParseErrorKind::Instruction(i) => (i.to_string(), col, i),
            other => panic!("{other:?}"),
        }
    }

    fn val(w: &Option<Word>) -> Option<&str> {
        w.as_ref().map(|w| w.value.as_str())
    }

    #[test]
    fn bind_defaults() {
        let m = mount("target=/src");
        assert_eq!(m.mount_type, MountType::Bind);
        assert_eq!(val(&m.target), Some("/src"));
        assert!(m.readonly);
        let m = mount("type=bind,from=build,source=/out,dst=/in,rw");
        assert_eq!(val(&m.from), Some("build"));
        assert_eq!(val(&m.source), Some("/out"));
        assert_eq!(val(&m.target), Some("/in"));
        assert!(!m.readonly);
        let m = mount("type=BIND,src=a,destination=/b,readwrite=true");
        assert_eq!(m.mount_type, MountType::Bind);
        assert_eq!(val(&m.source), Some("a"));
        assert_eq!(val(&m.target), Some("/b"));
        assert!(!m.readonly);
        let m = mount("target=/x,readwrite=false");
        assert!(m.readonly);
        let m = mount("target=/x,rw=0");
        assert!(m.readonly);
        // Target is optional (BuildKit mounts at the working directory).
        let m = mount("type=bind");
        assert_eq!(m.target, None);
    }

    #[test]
    fn buildah_selinux_relabel_options_are_accepted() {
        let m = mount("type=bind,source=.,dst=/tmp,z");
        assert_eq!(val(&m.target), Some("/tmp"));
        mount("type=bind,source=.,dst=/tmp,Z");
        assert!(error("type=bind,dst=/tmp,q")
            .0
            .contains("'q' must be a key=value pair"));
    }

    #[test]
    fn field_spans() {
        let rm = parse("type=cache,target=/root/.cache").unwrap();
        assert_eq!(rm.fields.len(), 2);
        let f = &rm.fields[1];
        assert_eq!(f.key.value, "target");
        assert_eq!(f.key.span.start, Position::new(1, 24));
        assert_eq!(f.value.as_ref().unwrap().span.start, Position::new(1, 31));
        assert_eq!(f.span.end, Position::new(1, 43));
        let m = rm.mount.unwrap();
        assert_eq!(m.target.unwrap().span.start.column, 31);
    }

    #[test]
    fn cache_options() {
        let m = mount("type=cache,target=/root/.cache,id=go,sharing=locked,mode=0700,uid=1000,gid=100,from=base,source=/c");
        assert_eq!(m.mount_type, MountType::Cache);
        assert_eq!(val(&m.id), Some("go"));
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert_eq!(m.mode, Some(0o700));
        assert_eq!(m.uid, Some(1000));
        assert_eq!(m.gid, Some(100));
        assert_eq!(val(&m.from), Some("base"));
        assert_eq!(val(&m.source), Some("/c"));
        assert!(!m.readonly);
        let m = mount("type=cache,target=/c,sharing=Private,ro");
        assert_eq!(m.sharing, Some(CacheSharing::Private));
        assert!(m.readonly);
        let m = mount("type=cache,target=/c,sharing=shared,readonly=true");
        assert_eq!(m.sharing, Some(CacheSharing::Shared));
        assert!(m.readonly);
    }

    #[test]
    fn tmpfs_options() {
        let m = mount("type=tmpfs,target=/tmp,size=64m");
        assert_eq!(m.mount_type, MountType::Tmpfs);
        assert_eq!(m.size, Some(64 << 20));
        assert!(!m.readonly);
        assert_eq!(mount("type=tmpfs,dst=/t,size=1.5GiB").size, Some(3 << 29));
        assert_eq!(mount("type=tmpfs,dst=/t,size=100").size, Some(100));
        assert_eq!(mount("type=tmpfs,dst=/t,size=2kb").size, Some(2048));
        // Order does not matter in rbuild.
        assert_eq!(mount("size=1k,type=tmpfs,dst=/t").size, Some(1024));
        let (msg, col, _) = error("type=tmpfs,target=/t,size=lots");
        assert_eq!(msg, "invalid value for size: lots");
        assert_eq!(col, 13 + 26);
        let (msg, _, _) = error("type=tmpfs,target=/t,size=1x");
        assert_eq!(msg, "invalid value for size: 1x");
    }

    #[test]
    fn secret_options() {
        let m = mount(
            "type=secret,id=aws,target=/root/.aws/credentials,required,mode=0400,uid=1,gid=2",
        );
        assert_eq!(m.mount_type, MountType::Secret);
        assert_eq!(val(&m.id), Some("aws"));
        assert!(m.required);
        assert!(m.readonly);
        assert_eq!(m.mode, Some(0o400));
        let m = mount("type=secret,id=API_KEY,env=API_KEY,required=false");
        assert_eq!(val(&m.env), Some("API_KEY"));
        assert!(!m.required);
        // An empty `from` is no `from` (BuildKit compares with "").
        assert_eq!(
            mount("type=secret,id=a,from=").mount_type,
            MountType::Secret
        );
        let m = mount("type=secret,source=token");
        assert_eq!(val(&m.source), Some("token"));
        let m = mount("type=secret,required=true,dst=/s");
        assert!(m.required);
        // BuildKit's order-dependent check is not copied.
        assert!(mount("required,type=secret,id=x").required);
    }

    #[test]
    fn secret_errors() {
        let (msg, col, _) = error("type=secret");
        assert_eq!(msg, "invalid secret mount. one of source, target required");
        assert_eq!(col, 5, "whole flag");
        let (msg, col, _) = error("type=secret,id=a,from=img");
        assert_eq!(msg, "secret mount should not have a from");
        assert_eq!(col, 13 + 17);
        let (msg, _, _) = error("type=secret,id=a,sharing=locked");
        assert_eq!(msg, "secret mount should not define sharing");
        let (msg, col, _) = error("type=secret,source=a,id=b");
        assert_eq!(msg, "both source and id can't be set");
        assert_eq!(col, 13 + 12);
        let (msg, _, _) = error("type=secret,id=a,required=maybe");
        assert_eq!(msg, "invalid value for required: maybe");
    }

    #[test]
    fn ssh_options() {
        let m = mount("type=ssh");
        assert_eq!(m.mount_type, MountType::Ssh);
        assert!(m.readonly);
        assert!(!m.required);
        let m = mount("type=ssh,id=gitlab,target=/run/ssh.sock,required,mode=0600,uid=10,gid=20");
        assert_eq!(val(&m.id), Some("gitlab"));
        assert!(m.required);
        assert_eq!(m.mode, Some(0o600));
        assert_eq!((m.uid, m.gid), (Some(10), Some(20)));
    }

    #[test]
    fn type_errors() {
        let (msg, col, e) = error("type=cahce,target=/x");
        assert_eq!(msg, "unsupported mount type \"cahce\"");
        assert_eq!(col, 18);
        assert_eq!(
            e.help().as_deref(),
            Some("did you mean `cache`? mount types: bind, cache, tmpfs, secret, ssh")
        );
        let (msg, _, _) = error("type=volume,target=/x");
        assert_eq!(msg, "unsupported mount type \"volume\"");
    }

    #[test]
    fn unknown_options() {
        let (msg, col, e) = error("type=cache,targte=/x");
        assert_eq!(msg, "unexpected key 'targte' in 'targte=/x'");
        assert_eq!(col, 24);
        assert_eq!(e.help().as_deref(), Some("did you mean `target`?"));
        let (msg, _, _) = error("type=cache,Foo=bar");
        assert_eq!(msg, "unexpected key 'foo' in 'Foo=bar'");
        let (msg, col, e) = error("type=cache,target");
        assert_eq!(msg, "invalid field 'target' must be a key=value pair");
        assert_eq!(col, 24);
        assert_eq!(e.help().as_deref(), Some("write `target=<value>`"));
    }

    #[test]
    fn options_not_allowed_for_type() {
        let (msg, col, _) = error("type=bind,target=/x,size=1m");
        assert_eq!(msg, "unexpected key 'size' for mount type 'bind'");
        assert_eq!(col, 13 + 20);
        let (msg, _, _) = error("type=cache,target=/x,required");
        assert_eq!(msg, "unexpected key 'required' for mount type 'cache'");
        let (msg, _, _) = error("target=/x,required=true");
        assert_eq!(msg, "unexpected key 'required' for mount type 'bind'");
        let (msg, col, _) = error("type=bind,target=/x,uid=1");
        assert_eq!(msg, "uid not allowed for \"bind\" type mounts");
        assert_eq!(col, 33);
        let (msg, _, _) = error("type=tmpfs,target=/x,gid=1,mode=0700");
        assert_eq!(msg, "mode not allowed for \"tmpfs\" type mounts");
        let (msg, _, _) = error("type=bind,target=/x,sharing=locked");
        assert_eq!(msg, "invalid cache sharing set for bind mount");
    }

    #[test]
    fn bad_values() {
        let (msg, _, _) = error("type=cache,target=/x,sharing=everyone");
        assert_eq!(msg, "unsupported sharing value \"everyone\"");
        let (msg, _, e) = error("type=cache,target=/x,sharing=lockd");
        assert_eq!(msg, "unsupported sharing value \"lockd\"");
        assert!(e.help().unwrap().starts_with("did you mean `locked`?"));
        let (msg, col, _) = error("type=cache,target=/x,mode=0800");
        assert_eq!(msg, "invalid value 0800 for mode");
        assert_eq!(col, 13 + 26);
        let (msg, _, _) = error("type=cache,target=/x,uid=-1");
        assert_eq!(msg, "invalid value -1 for uid");
        let (msg, _, _) = error("type=cache,target=/x,gid=4294967296");
        assert_eq!(msg, "invalid value 4294967296 for gid");
        let (msg, _, _) = error("target=/x,readonly=yes");
        assert_eq!(msg, "invalid value for readonly: yes");
        let (msg, _, _) = error("target=/x,rw=nope");
        assert_eq!(msg, "invalid value for rw: nope");
    }

    #[test]
    fn csv_errors() {
        let (msg, _, _) = error("");
        assert_eq!(msg, "failed to parse csv mounts: EOF");
        let (msg, col, _) = error("target=/a\"b");
        assert_eq!(
            msg,
            "failed to parse csv mounts: parse error on line 1, column 10: bare \" in non-quoted-field"
        );
        assert_eq!(col, 22);
        // Quoted fields may contain commas.
        let m = mount("type=bind,\"target=/a,b\"");
        assert_eq!(val(&m.target), Some("/a,b"));
    }

    #[test]
    fn variables_are_deferred() {
        let rm = parse("type=cache,target=$HOME/.cache,uid=$UID").unwrap();
        assert!(rm.needs_expansion());
        assert_eq!(rm.mount, None);
        // Keys are still checked.
        let (msg, _, _) = error("type=cache,target=$HOME,uuid=$UID");
        assert_eq!(msg, "unexpected key 'uuid' in 'uuid=$UID'");
        // And so are literal values next to variables.
        let (msg, _, _) = error("type=cache,target=$HOME,sharing=no");
        assert_eq!(msg, "unsupported sharing value \"no\"");
        // A variable type defers type-specific checks.
        assert!(parse("type=$T,target=/x,size=1m,required").is_ok());
        // But the type-specific checks apply when the type is literal.
        let (msg, _, _) = error("type=bind,target=/x,size=$S");
        assert_eq!(msg, "unexpected key 'size' for mount type 'bind'");

        // After expansion the planner gets the typed mount.
        let mut fields = rm.fields.clone();
        fields[1].value.as_mut().unwrap().value = "/root/.cache".into();
        fields[2].value.as_mut().unwrap().value = "1000".into();
        let m = Mount::from_fields(&fields, rm.span).unwrap();
        assert_eq!(m.uid, Some(1000));
        assert_eq!(val(&m.target), Some("/root/.cache"));
        fields[2].value.as_mut().unwrap().value = "x".into();
        let e = Mount::from_fields(&fields, rm.span).unwrap_err();
        assert_eq!(e.to_string(), "invalid value x for uid");
    }

    #[test]
    fn from_rejects_variables() {
        let (msg, col, _) = error("type=bind,from=$STAGE,target=/x");
        assert_eq!(
            msg,
            "'from' doesn't support variable expansion, define alias stage instead"
        );
        assert_eq!(col, 13 + 15);
        // A trailing `$` is not a variable.
        let rm = parse("from=stage$,target=/x").unwrap();
        assert_eq!(rm.mount, None);
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(parse_ram_size("0"), Some(0));
        assert_eq!(parse_ram_size("10b"), Some(10));
        assert_eq!(parse_ram_size("10 MB"), Some(10 << 20));
        assert_eq!(parse_ram_size("1g"), Some(1 << 30));
        assert_eq!(parse_ram_size("1T"), Some(1 << 40));
        assert_eq!(parse_ram_size("1Pib"), Some(1 << 50));
        assert_eq!(parse_ram_size(""), None);
        assert_eq!(parse_ram_size("m"), None);
        assert_eq!(parse_ram_size("-1"), None);
        assert_eq!(parse_ram_size("1mbb"), None);
        assert_eq!(parse_ram_size("1mx"), None);
    }
}
