//! Tests of the typed layer on real Dockerfile text (through the raw layer)
//! and on hand-built nodes for shapes the raw layer does not produce.

use super::*;
use crate::error::ParseErrorKind;
use crate::node::{Args, Node};
use crate::span::{Position, Span, Word};
use std::time::Duration;

fn node(src: &str) -> Node {
    if !src.contains(char::is_whitespace) {
        // A keyword alone: built by hand so these tests do not depend on
        // how the raw layer positions an empty argument list.
        return Node {
            keyword: word(src, 1, 1),
            flags: Vec::new(),
            args: Args::Words(Vec::new()),
            json: false,
            heredocs: Vec::new(),
            original: src.to_owned(),
            span: word(src, 1, 1).span,
            comments: Vec::new(),
        };
    }
    crate::parse_nodes(src)
        .unwrap_or_else(|e| panic!("raw parse of {src:?} failed: {e}"))
        .nodes
        .remove(0)
}

fn parse(src: &str) -> Result<Instruction, ParseError> {
    from_node(&node(src))
}

fn kind(src: &str) -> InstructionKind {
    parse(src)
        .unwrap_or_else(|e| panic!("{src:?}: {e} (at {:?})", e.span))
        .kind
}

/// The message, the start of the error span and the error itself.
fn err(src: &str) -> (String, Position, InstructionError) {
    let e = parse(src).expect_err(src);
    match e.kind {
        ParseErrorKind::Instruction(i) => (i.to_string(), e.span.start, i),
        other => panic!("{src:?}: not an instruction error: {other:?}"),
    }
}

fn pos(line: u32, column: u32) -> Position {
    Position::new(line, column)
}

fn values(words: &[Word]) -> Vec<&str> {
    words.iter().map(Word::as_str).collect()
}

fn val(w: &Option<Word>) -> Option<&str> {
    w.as_ref().map(Word::as_str)
}

fn word(text: &str, line: u32, col: u32) -> Word {
    let n = text.chars().count() as u32;
    Word::new(text, Span::new(pos(line, col), pos(line, col + n)))
}

// ----- unknown instructions -----

#[test]
fn unknown_instruction_suggestions() {
    for (src, keyword, suggestion) in [
        ("RUNN echo", "RUNN", Some("RUN")),
        ("COPPY a b", "COPPY", Some("COPY")),
        ("form alpine", "form", Some("FROM")),
        ("ENTRYPONT x", "ENTRYPONT", Some("ENTRYPOINT")),
        ("BLAH bar", "BLAH", None),
        ("xyzzy", "xyzzy", None),
    ] {
        let (msg, at, e) = err(src);
        assert_eq!(msg, format!("unknown instruction: {keyword}"));
        assert_eq!(at, pos(1, 1));
        match &e {
            InstructionError::UnknownInstruction {
                suggestion: s,
                keyword: k,
            } => {
                assert_eq!(s.as_deref(), suggestion, "{src}");
                assert_eq!(k, keyword);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.help(),
            suggestion.map(|s| format!("did you mean `{s}`?")),
            "{src}"
        );
    }
    // Span on the keyword, wherever it is.
    let e = parse("FROM a\n   RUNN x").err();
    assert!(e.is_none(), "only the first node is parsed here");
    let n = crate::parse_nodes("FROM a\n   RUNN x")
        .unwrap()
        .nodes
        .remove(1);
    let e = from_node(&n).unwrap_err();
    assert_eq!(e.span, Span::new(pos(2, 4), pos(2, 8)));
}

#[test]
fn keywords_are_case_insensitive() {
    let i = parse("run echo hi").unwrap();
    assert_eq!(i.name(), "RUN");
    assert_eq!(i.keyword.value, "run");
    assert_eq!(i.original, "run echo hi");
    assert_eq!(i.span.start, pos(1, 1));
    assert_eq!(parse("CoPy a b").unwrap().name(), "COPY");
}

#[test]
fn comments_are_kept() {
    let n = crate::parse_nodes("# the base\nFROM alpine\n")
        .unwrap()
        .nodes
        .remove(0);
    let i = from_node(&n).unwrap();
    assert_eq!(i.comments, ["the base"]);
}

// ----- FROM -----

#[test]
fn from_forms() {
    let InstructionKind::From(f) = kind("FROM alpine:3.19") else {
        panic!()
    };
    assert_eq!(f.image.value, "alpine:3.19");
    assert_eq!(f.image.span.start, pos(1, 6));
    assert_eq!(f.name, None);
    assert_eq!(f.platform, None);

    let InstructionKind::From(f) = kind("FROM --platform=$BUILDPLATFORM golang:1.22 As Builder")
    else {
        panic!()
    };
    assert_eq!(f.image.value, "golang:1.22");
    let name = f.name.unwrap();
    assert_eq!(name.value, "builder");
    assert_eq!(name.span.start, pos(1, 47));
    let platform = f.platform.unwrap();
    assert_eq!(platform.value, "$BUILDPLATFORM");
    assert_eq!(platform.span.start, pos(1, 17));

    let InstructionKind::From(f) = kind("from base as my-stage_2.x") else {
        panic!()
    };
    assert_eq!(val(&f.name), Some("my-stage_2.x"));

    // An empty --platform is the same as none (BuildKit).
    let InstructionKind::From(f) = kind("FROM --platform= alpine") else {
        panic!()
    };
    assert_eq!(f.platform, None);
}

#[test]
fn from_errors() {
    let (msg, at, e) = err("FROM");
    assert_eq!(msg, "FROM requires either one or three arguments");
    assert_eq!(at, pos(1, 1));
    assert_eq!(
        e.help().as_deref(),
        Some("write `FROM <image> [AS <name>]`")
    );
    let (msg, at, _) = err("FROM alpine AS");
    assert_eq!(msg, "FROM requires either one or three arguments");
    assert_eq!(at, pos(1, 13));
    let (_, at, _) = err("FROM alpine builder");
    assert_eq!(at, pos(1, 13));
    let (_, at, _) = err("FROM alpine AT builder");
    assert_eq!(at, pos(1, 13));
    let (_, at, _) = err("FROM alpine AS builder extra");
    assert_eq!(at, pos(1, 24));

    for name in ["1stage", "my$stage", "a/b", "_x", "st:age"] {
        let (msg, at, _) = err(&format!("FROM alpine AS {name}"));
        assert_eq!(
            msg,
            format!(
                "invalid name for build stage: \"{name}\", name can't start with a number or contain symbols"
            )
        );
        assert_eq!(at, pos(1, 16));
    }

    let (msg, at, e) = err("FROM --platfrom=linux/amd64 alpine");
    assert_eq!(msg, "unknown flag: --platfrom");
    assert_eq!(at, pos(1, 6));
    assert_eq!(
        e.help().as_deref(),
        Some("did you mean `--platform`? FROM accepts: --platform")
    );
    let (msg, at, _) = err("FROM --platform=a --platform=b alpine");
    assert_eq!(msg, "duplicate flag specified: --platform");
    assert_eq!(at, pos(1, 19));
    let (msg, _, _) = err("FROM --platform alpine");
    assert_eq!(msg, "missing a value on flag: --platform");
}

// ----- RUN -----

#[test]
fn run_shell_and_exec() {
    let InstructionKind::Run(r) = kind("RUN echo \"hello world\" && ls") else {
        panic!()
    };
    assert_eq!(
        r.command,
        CommandLine::Shell(word("echo \"hello world\" && ls", 1, 5))
    );
    assert!(r.mounts.is_empty());
    assert_eq!(r.network, None);
    assert_eq!(r.network_mode(), NetworkMode::Default);
    assert_eq!(r.security_mode(), SecurityMode::Sandbox);

    let InstructionKind::Run(r) = kind(r#"RUN ["echo", "hi"]"#) else {
        panic!()
    };
    assert!(r.command.is_exec());
    assert_eq!(r.command.args(), ["echo", "hi"]);

    let InstructionKind::Run(r) = kind("RUN") else {
        panic!()
    };
    assert_eq!(r.command.args(), Vec::<&str>::new());
    assert!(!r.command.is_exec());
}

#[test]
fn run_heredoc() {
    let InstructionKind::Run(r) = kind("RUN <<EOF\necho hi\nEOF\n") else {
        panic!()
    };
    assert_eq!(r.command.args(), ["<<EOF"]);
    assert_eq!(r.heredocs.len(), 1);
    assert_eq!(r.heredocs[0].name, "EOF");
    assert_eq!(r.heredocs[0].content, "echo hi\n");
}

#[test]
fn run_mounts() {
    let src = "RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=npm,required \\\n    --mount=type=bind,from=build,source=/out,target=/in make";
    let InstructionKind::Run(r) = kind(src) else {
        panic!()
    };
    assert_eq!(r.mounts.len(), 3);
    let cache = r.mounts[0].mount.as_ref().unwrap();
    assert_eq!(cache.mount_type, MountType::Cache);
    assert_eq!(val(&cache.target), Some("/root/.cache"));
    assert_eq!(r.mounts[0].span.start, pos(1, 5));
    assert_eq!(cache.target.as_ref().unwrap().span.start, pos(1, 31));
    let secret = r.mounts[1].mount.as_ref().unwrap();
    assert_eq!(secret.mount_type, MountType::Secret);
    assert!(secret.required);
    let bind = r.mounts[2].mount.as_ref().unwrap();
    assert_eq!(val(&bind.from), Some("build"));
    assert!(bind.readonly);
    // The third flag is on line 2.
    assert_eq!(r.mounts[2].span.start, pos(2, 5));
    assert_eq!(bind.from.as_ref().unwrap().span.start, pos(2, 28));
    assert_eq!(r.command.args(), ["make"]);

    // Variables are left for the planner.
    let InstructionKind::Run(r) = kind("RUN --mount=type=cache,target=$HOME/.cache true") else {
        panic!()
    };
    assert!(r.mounts[0].needs_expansion());
    assert_eq!(
        r.mounts[0].fields[1].value.as_ref().unwrap().value,
        "$HOME/.cache"
    );
}

#[test]
fn run_mount_errors_point_into_the_flag() {
    let (msg, at, e) = err("RUN --mount=type=cahce,target=/x true");
    assert_eq!(msg, "unsupported mount type \"cahce\"");
    assert_eq!(at, pos(1, 18));
    assert!(e.help().unwrap().starts_with("did you mean `cache`?"));
    let (msg, at, _) = err("RUN --mount=type=cache,tagret=/x true");
    assert_eq!(msg, "unexpected key 'tagret' in 'tagret=/x'");
    assert_eq!(at, pos(1, 24));
    let (msg, at, _) = err("RUN --mount=type=secret true");
    assert_eq!(msg, "invalid secret mount. one of source, target required");
    assert_eq!(at, pos(1, 5));
    let (msg, at, _) = err("RUN  --mount=type=bind,target=/x,size=1g true");
    assert_eq!(msg, "unexpected key 'size' for mount type 'bind'");
    assert_eq!(at, pos(1, 34));
    let (msg, _, _) = err("RUN --mount=from=$X,target=/x true");
    assert_eq!(
        msg,
        "'from' doesn't support variable expansion, define alias stage instead"
    );
    let (msg, _, _) = err("RUN --mount true");
    assert_eq!(msg, "missing a value on flag: --mount");
}

#[test]
fn run_network_and_security() {
    for (mode, expected) in [
        ("default", NetworkMode::Default),
        ("none", NetworkMode::None),
        ("host", NetworkMode::Host),
    ] {
        let InstructionKind::Run(r) = kind(&format!("RUN --network={mode} true")) else {
            panic!()
        };
        assert_eq!(r.network_mode(), expected);
        assert_eq!(r.network.unwrap().span.start, pos(1, 15));
        assert_eq!(expected.as_str(), mode);
    }
    let (msg, at, e) = err("RUN --network=hots true");
    assert_eq!(msg, "invalid network mode \"hots\"");
    assert_eq!(at, pos(1, 15));
    assert_eq!(
        e.help().as_deref(),
        Some("did you mean `host`? --network accepts: default, none, host")
    );
    // Not expanded, so a variable is invalid (as in BuildKit).
    let (msg, _, _) = err("RUN --network=$NET true");
    assert_eq!(msg, "invalid network mode \"$NET\"");
    let (msg, _, _) = err("RUN --network= true");
    assert_eq!(msg, "invalid network mode \"\"");
    let (msg, at, _) = err("RUN --network=none --network=host true");
    assert_eq!(msg, "duplicate flag specified: --network");
    assert_eq!(at, pos(1, 20));

    let InstructionKind::Run(r) = kind("RUN --security=insecure true") else {
        panic!()
    };
    assert_eq!(r.security_mode(), SecurityMode::Insecure);
    let InstructionKind::Run(r) = kind("RUN --security=sandbox true") else {
        panic!()
    };
    assert_eq!(r.security_mode(), SecurityMode::Sandbox);
    assert!(r.security.is_some());
    let (msg, at, _) = err("RUN --security=unsafe true");
    assert_eq!(msg, "security \"unsafe\" is not valid");
    assert_eq!(at, pos(1, 16));
}

#[test]
fn run_devices_and_unknown_flags() {
    let InstructionKind::Run(r) =
        kind("RUN --device=vendor.com/gpu=all --device=name=fpga,required true")
    else {
        panic!()
    };
    assert_eq!(r.devices.len(), 2);
    assert_eq!(r.devices[0].name.value, "vendor.com/gpu=all");
    assert!(!r.devices[0].required);
    assert_eq!(r.devices[1].name.value, "fpga");
    assert!(r.devices[1].required);

    let (msg, at, e) = err("RUN --mout=type=cache,target=/x true");
    assert_eq!(msg, "unknown flag: --mout");
    assert_eq!(at, pos(1, 5));
    assert_eq!(
        e.help().as_deref(),
        Some("did you mean `--mount`? RUN accepts: --device, --mount, --network, --security")
    );
}

// ----- CMD, ENTRYPOINT, SHELL -----

#[test]
fn cmd_and_entrypoint() {
    let InstructionKind::Cmd(c) = kind("CMD [\"nginx\", \"-g\", \"daemon off;\"]") else {
        panic!()
    };
    assert_eq!(c.command.args(), ["nginx", "-g", "daemon off;"]);
    assert!(c.command.is_exec());
    let InstructionKind::Cmd(c) = kind("CMD echo $HOME") else {
        panic!()
    };
    assert_eq!(c.command, CommandLine::Shell(word("echo $HOME", 1, 5)));
    let InstructionKind::Entrypoint(c) = kind("ENTRYPOINT [\"/entry.sh\"]") else {
        panic!()
    };
    assert_eq!(c.command.args(), ["/entry.sh"]);
    let InstructionKind::Entrypoint(c) = kind("ENTRYPOINT []") else {
        panic!()
    };
    assert_eq!(c.command, CommandLine::Exec(vec![]));
    let InstructionKind::Entrypoint(c) = kind("ENTRYPOINT exec app") else {
        panic!()
    };
    assert!(!c.command.is_exec());

    let (msg, at, e) = err("CMD --foo=bar echo");
    assert_eq!(msg, "unknown flag: --foo");
    assert_eq!(at, pos(1, 5));
    assert_eq!(e.help().as_deref(), Some("CMD does not accept any flags"));
    let (msg, _, _) = err("ENTRYPOINT --x y");
    assert_eq!(msg, "unknown flag: --x");
}

#[test]
fn shell() {
    let InstructionKind::Shell(s) = kind("SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]")
    else {
        panic!()
    };
    assert_eq!(values(&s.shell), ["/bin/bash", "-o", "pipefail", "-c"]);
    let (msg, at, e) = err("SHELL /bin/bash -c");
    assert_eq!(msg, "SHELL requires the arguments to be in JSON form");
    assert_eq!(at, pos(1, 7));
    assert_eq!(
        e.help().as_deref(),
        Some("write `SHELL [\"executable\", \"parameters\"]`")
    );
    let (msg, _, _) = err("SHELL []");
    assert_eq!(msg, "SHELL requires at least one argument");
    let (msg, at, _) = err("SHELL");
    assert_eq!(msg, "SHELL requires at least one argument");
    assert_eq!(at, pos(1, 1));
}

// ----- ENV, LABEL, ARG -----

#[test]
fn env_and_label() {
    let InstructionKind::Env(e) = kind("ENV A=1 B=\"two words\" C=") else {
        panic!()
    };
    assert_eq!(e.pairs.len(), 3);
    assert_eq!(e.pairs[1].key.value, "B");
    assert_eq!(e.pairs[1].value.value, "\"two words\"");
    assert_eq!(e.pairs[2].value.value, "");
    let InstructionKind::Env(e) = kind("ENV PATH /usr/bin:$PATH") else {
        panic!()
    };
    assert!(e.pairs[0].legacy);
    assert_eq!(e.pairs[0].value.value, "/usr/bin:$PATH");
    let InstructionKind::Label(l) = kind("LABEL org.opencontainers.image.title=\"x y\" a=b") else {
        panic!()
    };
    assert_eq!(l.pairs[0].key.value, "org.opencontainers.image.title");
    assert_eq!(l.pairs[1].value.value, "b");

    let (msg, at, _) = err("ENV =x");
    assert_eq!(msg, "ENV names can not be blank");
    assert_eq!(at, pos(1, 5));
    let (msg, _, _) = err("LABEL =x");
    assert_eq!(msg, "LABEL names can not be blank");
    let (msg, at, e) = err("ENV");
    assert_eq!(msg, "ENV requires at least one argument");
    assert_eq!(at, pos(1, 1));
    assert_eq!(e.help().as_deref(), Some("write `ENV name=value`"));
    let (msg, _, _) = err("LABEL");
    assert_eq!(msg, "LABEL requires at least one argument");
    let (msg, at, _) = err("ENV --foo=bar A=1");
    assert_eq!(msg, "unknown flag: --foo");
    assert_eq!(at, pos(1, 5));
    let (msg, _, _) = err("LABEL --foo a=b");
    assert_eq!(msg, "unknown flag: --foo");
}

#[test]
fn env_with_unexpected_words() {
    let mut n = node("ENV A=1");
    n.args = Args::Words(vec![word("A", 1, 5)]);
    let e = from_node(&n).unwrap_err();
    assert_eq!(e.to_string(), "Bad input to ENV, too many arguments");
}

#[test]
fn arg() {
    let InstructionKind::Arg(a) = kind("ARG VERSION=\"1.0\" DEBUG TAG=") else {
        panic!()
    };
    assert_eq!(a.args.len(), 3);
    assert_eq!(a.args[0].name.value, "VERSION");
    assert_eq!(a.args[0].name.span, Span::new(pos(1, 5), pos(1, 12)));
    let default = a.args[0].default.as_ref().unwrap();
    assert_eq!(default.value, "\"1.0\"");
    assert_eq!(default.span, Span::new(pos(1, 13), pos(1, 18)));
    assert_eq!(a.args[1].name.value, "DEBUG");
    assert_eq!(a.args[1].default, None);
    assert_eq!(val(&a.args[2].default), Some(""));
    // Only the first `=` separates.
    let InstructionKind::Arg(a) = kind("ARG OPTS=a=b") else {
        panic!()
    };
    assert_eq!(val(&a.args[0].default), Some("a=b"));

    let (msg, at, e) = err("ARG");
    assert_eq!(msg, "ARG requires at least one argument");
    assert_eq!(at, pos(1, 1));
    assert_eq!(
        e.help().as_deref(),
        Some("write `ARG name` or `ARG name=default`")
    );
    let (msg, at, _) = err("ARG A=1 =2");
    assert_eq!(msg, "ARG names can not be blank");
    assert_eq!(at, pos(1, 9));
    let (msg, _, _) = err("ARG --foo A");
    assert_eq!(msg, "unknown flag: --foo");
}

// ----- MAINTAINER, EXPOSE, USER, WORKDIR, STOPSIGNAL, VOLUME -----

#[test]
fn simple_instructions() {
    let InstructionKind::Maintainer(m) = kind("MAINTAINER Jane Doe <jane@example.com>") else {
        panic!()
    };
    assert_eq!(m.maintainer.value, "Jane Doe <jane@example.com>");
    let InstructionKind::Expose(e) = kind("EXPOSE 80/tcp 443 $PORT") else {
        panic!()
    };
    assert_eq!(values(&e.ports), ["80/tcp", "443", "$PORT"]);
    assert_eq!(e.ports[2].span.start, pos(1, 19));
    let InstructionKind::User(u) = kind("USER app:app") else {
        panic!()
    };
    assert_eq!(u.user.value, "app:app");
    let InstructionKind::Workdir(w) = kind("WORKDIR /src/$APP") else {
        panic!()
    };
    assert_eq!(w.path.value, "/src/$APP");
    assert_eq!(w.path.span.start, pos(1, 9));
    let InstructionKind::StopSignal(s) = kind("STOPSIGNAL SIGTERM") else {
        panic!()
    };
    assert_eq!(s.signal.value, "SIGTERM");
    let InstructionKind::Volume(v) = kind("VOLUME /data /logs") else {
        panic!()
    };
    assert_eq!(values(&v.volumes), ["/data", "/logs"]);
    let InstructionKind::Volume(v) = kind("VOLUME [\"/data\", \" /x \"]") else {
        panic!()
    };
    assert_eq!(values(&v.volumes), ["/data", "/x"]);
}

#[test]
fn simple_instruction_errors() {
    for keyword in ["MAINTAINER", "USER", "WORKDIR", "STOPSIGNAL"] {
        let (msg, at, _) = err(keyword);
        assert_eq!(msg, format!("{keyword} requires exactly one argument"));
        assert_eq!(at, pos(1, 1));
        let (msg, at, _) = err(&format!("{keyword} --flag x"));
        assert_eq!(msg, "unknown flag: --flag", "{keyword}");
        assert_eq!(at.column, keyword.len() as u32 + 2);
    }
    for keyword in ["EXPOSE", "VOLUME"] {
        let (msg, _, _) = err(keyword);
        assert_eq!(msg, format!("{keyword} requires at least one argument"));
        let (msg, _, _) = err(&format!("{keyword} --flag x"));
        assert_eq!(msg, "unknown flag: --flag");
    }
    let (msg, at, _) = err("VOLUME [\"/a\", \"  \"]");
    assert_eq!(msg, "VOLUME specified can not be an empty string");
    assert_eq!(at, pos(1, 15));

    // Two arguments where one is expected (the raw layer never produces this).
    let mut n = node("USER a");
    n.args = Args::Words(vec![word("a", 1, 6), word("b", 1, 8)]);
    let e = from_node(&n).unwrap_err();
    assert_eq!(e.to_string(), "USER requires exactly one argument");
    assert_eq!(e.span.start, pos(1, 8));
}

// ----- COPY and ADD -----

#[test]
fn copy_flags() {
    let src = "COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=.git ./a ./b /dst/";
    let InstructionKind::Copy(c) = kind(src) else {
        panic!()
    };
    assert_eq!(val(&c.from), Some("build"));
    assert_eq!(c.from.as_ref().unwrap().span.start, pos(1, 13));
    assert_eq!(val(&c.chown), Some("app:app"));
    assert_eq!(val(&c.chmod), Some("0755"));
    assert!(c.link);
    assert!(c.parents);
    assert_eq!(values(&c.exclude), ["*.md", ".git"]);
    assert_eq!(c.files.dest.value, "/dst/");
    assert_eq!(
        c.files.sources,
        [
            CopySource::Path(word("./a", 1, 95)),
            CopySource::Path(word("./b", 1, 99)),
        ]
    );

    let InstructionKind::Copy(c) = kind("COPY --link=false a b") else {
        panic!()
    };
    assert!(!c.link);
    assert!(!c.parents);
    assert_eq!(c.from, None);
    assert!(c.exclude.is_empty());

    let InstructionKind::Copy(c) = kind("COPY [\"a b\", \"/c d/\"]") else {
        panic!()
    };
    assert_eq!(c.files.dest.value, "/c d/");
    let [CopySource::Path(src)] = c.files.sources.as_slice() else {
        panic!()
    };
    assert_eq!(src.value, "a b");
}

#[test]
fn copy_errors() {
    let (msg, at, e) = err("COPY onlyone");
    assert_eq!(
        msg,
        "COPY requires at least two arguments, but only one was provided. Destination could not be determined"
    );
    assert_eq!(at, pos(1, 6));
    assert_eq!(
        e.help().as_deref(),
        Some("write `COPY <source>... <destination>`")
    );
    let (_, at, _) = err("COPY");
    assert_eq!(at, pos(1, 1));
    let (msg, at, e) = err("COPY --form=build a b");
    assert_eq!(msg, "unknown flag: --form");
    assert_eq!(at, pos(1, 6));
    assert_eq!(
        e.help().as_deref(),
        Some("did you mean `--from`? COPY accepts: --chmod, --chown, --exclude, --from, --link, --parents")
    );
    let (msg, _, _) = err("COPY --checksum=sha256:x a b");
    assert_eq!(msg, "unknown flag: --checksum");
    let (msg, _, _) = err("COPY --from=a --from=b a b");
    assert_eq!(msg, "duplicate flag specified: --from");
    let (msg, at, _) = err("COPY --link=yes a b");
    assert_eq!(msg, "expecting boolean value for flag --link, not: yes");
    assert_eq!(at, pos(1, 13));
    let (msg, _, _) = err("COPY --chown a b");
    assert_eq!(msg, "missing a value on flag: --chown");
    let (msg, _, _) = err("COPY --link= a b");
    assert_eq!(msg, "missing a value on flag: --link");
}

#[test]
fn copy_heredocs() {
    let src = "COPY <<EOF <<-\"END\" /dst/\nhello $X\nEOF\n\tworld\n\tEND\n";
    let InstructionKind::Copy(c) = kind(src) else {
        panic!()
    };
    assert_eq!(c.files.dest.value, "/dst/");
    assert_eq!(c.files.sources.len(), 2);
    let CopySource::Heredoc { marker, heredoc } = &c.files.sources[0] else {
        panic!()
    };
    assert_eq!(marker.value, "<<EOF");
    assert_eq!(heredoc.name, "EOF");
    assert_eq!(heredoc.content, "hello $X\n");
    assert!(heredoc.expand);
    let CopySource::Heredoc { heredoc, .. } = &c.files.sources[1] else {
        panic!()
    };
    assert_eq!(heredoc.name, "END");
    assert!(heredoc.chomp);
    assert!(!heredoc.expand);
    assert_eq!(heredoc.chomped_content(), "world\n");

    let (msg, at, _) = err("COPY /foo <<EOF\nEOF\n");
    assert_eq!(msg, "COPY cannot accept a heredoc as a destination");
    assert_eq!(at, pos(1, 11));
    let (msg, _, _) = err("ADD /foo <<EOF\nEOF\n");
    assert_eq!(msg, "ADD cannot accept a heredoc as a destination");
}

#[test]
fn heredoc_markers() {
    assert_eq!(
        heredoc_marker("<<EOF"),
        Some(("EOF".into(), false, true, 0))
    );
    assert_eq!(
        heredoc_marker("3<<-'X'"),
        Some(("X".into(), true, false, 3))
    );
    assert_eq!(heredoc_marker("<<"), None);
    assert_eq!(heredoc_marker("<<<x"), None);
    assert_eq!(heredoc_marker("a<<x"), None);
    assert_eq!(heredoc_marker("file.txt"), None);
}

#[test]
fn add_flags() {
    let src = "ADD --chown=1:2 --chmod=644 --link --keep-git-dir --checksum=sha256:abc --unpack=false --exclude=x https://example.com/a.tar.gz /opt/";
    let InstructionKind::Add(a) = kind(src) else {
        panic!()
    };
    assert_eq!(val(&a.chown), Some("1:2"));
    assert_eq!(val(&a.chmod), Some("644"));
    assert!(a.link);
    assert_eq!(a.keep_git_dir, Some(true));
    assert_eq!(val(&a.checksum), Some("sha256:abc"));
    assert_eq!(a.unpack, Some(false));
    assert_eq!(values(&a.exclude), ["x"]);
    assert_eq!(
        a.files.sources,
        [CopySource::Path(word(
            "https://example.com/a.tar.gz",
            1,
            100
        ))]
    );
    assert_eq!(a.files.dest.value, "/opt/");

    let InstructionKind::Add(a) = kind("ADD a b") else {
        panic!()
    };
    assert_eq!(a.keep_git_dir, None);
    assert_eq!(a.unpack, None);
    assert!(!a.link);

    let (msg, at, e) = err("ADD --from=build a b");
    assert_eq!(msg, "unknown flag: --from");
    assert_eq!(at, pos(1, 5));
    assert_eq!(
        e.help().as_deref(),
        Some("ADD accepts: --checksum, --chmod, --chown, --exclude, --keep-git-dir, --link, --unpack")
    );
    let (msg, _, _) = err("ADD --parents a b");
    assert_eq!(msg, "unknown flag: --parents");
    let (msg, _, _) = err("ADD --unpack=maybe a b");
    assert_eq!(msg, "expecting boolean value for flag --unpack, not: maybe");
    let (msg, _, _) = err("ADD x");
    assert_eq!(
        msg,
        "ADD requires at least two arguments, but only one was provided. Destination could not be determined"
    );
}

// ----- ONBUILD -----

#[test]
fn onbuild() {
    let InstructionKind::Onbuild(o) = kind("ONBUILD RUN make /app") else {
        panic!()
    };
    assert_eq!(o.expression, "RUN make /app");
    assert_eq!(o.trigger.name(), "RUN");
    assert_eq!(o.trigger.original, "RUN make /app");
    let InstructionKind::Run(r) = &o.trigger.kind else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell(word("make /app", 1, 13)));

    let InstructionKind::Onbuild(o) = kind("onbuild  COPY --from=x a b") else {
        panic!()
    };
    assert_eq!(o.expression, "COPY --from=x a b");

    let InstructionKind::Onbuild(o) = kind("ONBUILD RUN <<EOF\necho hi\nEOF\n") else {
        panic!()
    };
    assert_eq!(o.expression, "RUN <<EOF\necho hi\nEOF");
    let InstructionKind::Run(r) = &o.trigger.kind else {
        panic!()
    };
    assert_eq!(r.heredocs.len(), 1);
}

#[test]
fn onbuild_restrictions() {
    let (msg, at, e) = err("ONBUILD ONBUILD RUN x");
    assert_eq!(msg, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    assert_eq!(at, pos(1, 9));
    assert!(e.help().is_some());
    let (msg, at, _) = err("ONBUILD FROM alpine");
    assert_eq!(msg, "FROM isn't allowed as an ONBUILD trigger");
    assert_eq!(at, pos(1, 9));
    let (msg, _, _) = err("ONBUILD maintainer me");
    assert_eq!(msg, "MAINTAINER isn't allowed as an ONBUILD trigger");
    let (msg, at, _) = err("ONBUILD");
    assert_eq!(msg, "ONBUILD requires at least one argument");
    assert_eq!(at, pos(1, 1));
    // Errors inside the trigger point into the trigger.
    let (msg, at, e) = err("ONBUILD RUNN make");
    assert_eq!(msg, "unknown instruction: RUNN");
    assert_eq!(at, pos(1, 9));
    assert_eq!(e.help().as_deref(), Some("did you mean `RUN`?"));
    let (msg, at, _) = err("ONBUILD RUN --network=bad true");
    assert_eq!(msg, "invalid network mode \"bad\"");
    assert_eq!(at, pos(1, 23));
}

#[test]
fn onbuild_flat_node() {
    let mut n = node("ONBUILD RUN x");
    n.args = Args::Words(vec![word("USER", 1, 9), word("app", 1, 14)]);
    n.original = "ONBUILD USER app".into();
    let i = from_node(&n).unwrap();
    let InstructionKind::Onbuild(o) = i.kind else {
        panic!()
    };
    assert_eq!(o.trigger.name(), "USER");
    assert_eq!(o.expression, "USER app");
}

// ----- HEALTHCHECK -----

#[test]
fn healthcheck_none() {
    let InstructionKind::Healthcheck(h) = kind("HEALTHCHECK NONE") else {
        panic!()
    };
    assert!(h.is_none());
    let InstructionKind::Healthcheck(h) = kind("healthcheck none") else {
        panic!()
    };
    assert!(h.is_none());
    let (msg, at, _) = err("HEALTHCHECK NONE extra");
    assert_eq!(msg, "HEALTHCHECK NONE takes no arguments");
    assert_eq!(at, pos(1, 18));
    let (msg, at, e) = err("HEALTHCHECK --interval=5s NONE");
    assert_eq!(msg, "HEALTHCHECK NONE takes no flags: --interval");
    assert_eq!(at, pos(1, 13));
    assert_eq!(e.help().as_deref(), Some("write just `HEALTHCHECK NONE`"));
}

#[test]
fn healthcheck_cmd() {
    let src = "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5h --start-interval=500ms --retries=3 CMD curl -f http://localhost/";
    let InstructionKind::Healthcheck(HealthcheckInstruction::Cmd(h)) = kind(src) else {
        panic!()
    };
    assert_eq!(h.interval.unwrap().value, Duration::from_secs(30));
    assert_eq!(h.interval.unwrap().span.start, pos(1, 24));
    assert_eq!(h.timeout.unwrap().value, Duration::from_secs(90));
    assert_eq!(h.start_period.unwrap().value, Duration::from_secs(5400));
    assert_eq!(h.start_interval.unwrap().value, Duration::from_millis(500));
    assert_eq!(h.retries.unwrap().value, 3);
    assert_eq!(h.cmd.value, "CMD");
    assert_eq!(
        h.command,
        CommandLine::Shell(word("curl -f http://localhost/", 1, 103))
    );

    let InstructionKind::Healthcheck(HealthcheckInstruction::Cmd(h)) =
        kind("HEALTHCHECK cmd [\"/bin/check\", \"--fast\"]")
    else {
        panic!()
    };
    assert_eq!(h.command.args(), ["/bin/check", "--fast"]);
    assert!(h.command.is_exec());
    assert_eq!(h.interval, None);
    assert_eq!(h.retries, None);

    // Zero means "default"; 1ms is the smallest non-zero value.
    let InstructionKind::Healthcheck(HealthcheckInstruction::Cmd(h)) =
        kind("HEALTHCHECK --interval=0s --timeout=1ms --retries=0 CMD true")
    else {
        panic!()
    };
    assert_eq!(h.interval.unwrap().value, Duration::ZERO);
    assert_eq!(h.timeout.unwrap().value, Duration::from_millis(1));
    assert_eq!(h.retries.unwrap().value, 0);
}

#[test]
fn healthcheck_errors() {
    let (msg, at, e) = err("HEALTHCHECK --interval=5 CMD true");
    assert_eq!(msg, "time: missing unit in duration \"5\"");
    assert_eq!(at, pos(1, 24));
    assert!(e.help().unwrap().contains("1m30s"));
    let (msg, _, _) = err("HEALTHCHECK --timeout=soon CMD true");
    assert_eq!(msg, "time: invalid duration \"soon\"");
    let (msg, at, _) = err("HEALTHCHECK --start-period=50ns CMD true");
    assert_eq!(msg, "Interval \"start-period\" cannot be less than 1ms");
    assert_eq!(at, pos(1, 28));
    let (msg, _, _) = err("HEALTHCHECK --interval=-1s CMD true");
    assert_eq!(msg, "Interval \"interval\" cannot be less than 1ms");
    let (msg, at, _) = err("HEALTHCHECK --retries=-1 CMD true");
    assert_eq!(msg, "--retries cannot be negative (-1)");
    assert_eq!(at, pos(1, 23));
    let (msg, _, _) = err("HEALTHCHECK --retries=x CMD true");
    assert_eq!(msg, "strconv.ParseInt: parsing \"x\": invalid syntax");
    let (msg, at, _) = err("HEALTHCHECK CMD");
    assert_eq!(msg, "Missing command after HEALTHCHECK CMD");
    assert_eq!(at, pos(1, 13));
    let (msg, at, _) = err("HEALTHCHECK RUN true");
    assert_eq!(msg, "Unknown type \"RUN\" in HEALTHCHECK (try CMD)");
    assert_eq!(at, pos(1, 13));
    let (msg, at, _) = err("HEALTHCHECK");
    assert_eq!(msg, "HEALTHCHECK requires at least one argument");
    assert_eq!(at, pos(1, 1));
    let (msg, _, e) = err("HEALTHCHECK --intervl=5s CMD true");
    assert_eq!(msg, "unknown flag: --intervl");
    assert!(e.help().unwrap().starts_with("did you mean `--interval`?"));
    let (msg, _, _) = err("HEALTHCHECK --interval=1s --interval=2s CMD true");
    assert_eq!(msg, "duplicate flag specified: --interval");
}

// ----- spans -----

#[test]
fn sub_word_spans() {
    let w = word("--mount=type=cache", 3, 5);
    let s = sub_word(&w, 8, 12);
    assert_eq!(s.value, "type");
    assert_eq!(s.span, Span::new(pos(3, 13), pos(3, 17)));
    // Out-of-range offsets are clamped.
    let s = sub_word(&w, 15, 99);
    assert_eq!(s.value, "che");
    assert_eq!(s.span.end, pos(3, 23));
    // Text shorter than its span (quotes removed): counted from the start.
    let quoted = Word::new("--a=b c", Span::new(pos(1, 5), pos(1, 14)));
    assert_eq!(sub_word(&quoted, 4, 7).span.start, pos(1, 9));
    // Multi-line words keep their whole span.
    let multi = Word::new("abc", Span::new(pos(1, 5), pos(2, 3)));
    assert_eq!(sub_word(&multi, 1, 2).span, multi.span);
}

#[test]
fn serializes_to_json() {
    let i = parse("RUN --mount=type=cache,target=/c --network=none make").unwrap();
    let json = serde_json::to_value(&i).unwrap();
    let run = &json["kind"]["Run"];
    assert_eq!(run["network"]["value"], "none");
    assert_eq!(run["mounts"][0]["mount"]["type"], "cache");
    assert_eq!(run["command"]["Shell"]["value"], "make");
}

#[test]
fn every_instruction_fixture() {
    let src = include_str!("../../../../fixtures/Dockerfiles/every-instruction.Dockerfile");
    let file = crate::parse(src).unwrap_or_else(|e| panic!("{e} at {:?}", e.span));
    let names: Vec<&str> = file.instructions.iter().map(Instruction::name).collect();
    assert_eq!(
        names,
        [
            "ARG",
            "FROM",
            "LABEL",
            "MAINTAINER",
            "ENV",
            "ENV",
            "ARG",
            "WORKDIR",
            "SHELL",
            "RUN",
            "RUN",
            "COPY",
            "ADD",
            "COPY",
            "EXPOSE",
            "VOLUME",
            "USER",
            "STOPSIGNAL",
            "HEALTHCHECK",
            "ONBUILD",
            "ENTRYPOINT",
            "CMD",
            "FROM",
            "COPY",
            "CMD",
        ]
    );
    let InstructionKind::Run(run) = &file.instructions[9].kind else {
        panic!()
    };
    let mount = run.mounts[0].mount.as_ref().unwrap();
    assert_eq!(mount.sharing, Some(CacheSharing::Locked));
    assert_eq!(run.network_mode(), NetworkMode::None);
    let InstructionKind::Copy(copy) = &file.instructions[11].kind else {
        panic!()
    };
    let CopySource::Heredoc { heredoc, .. } = &copy.files.sources[0] else {
        panic!()
    };
    assert_eq!(heredoc.name, "SCRIPT");
    assert_eq!(
        heredoc.chomped_content(),
        "#!/bin/sh\necho \"hello from $0\"\n"
    );
    let InstructionKind::Healthcheck(HealthcheckInstruction::Cmd(hc)) = &file.instructions[18].kind
    else {
        panic!()
    };
    assert_eq!(hc.start_interval.unwrap().value, Duration::from_secs(1));
    assert_eq!(hc.retries.unwrap().value, 3);
}
