//! The `rbuild` command line. It only wires the library crates together and
//! turns their typed errors into reports for people.

mod build;
mod config;
mod images;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rbuild",
    version,
    about = "A daemonless container image builder"
)]
struct Cli {
    /// State directory (cache, snapshots, local image store).
    #[arg(long, global = true, env = "RBUILD_ROOT")]
    root: Option<PathBuf>,
    /// Registries reached over plain HTTP (localhost and 127.0.0.0/8 always are).
    #[arg(long = "insecure-registry", global = true)]
    insecure_registries: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile (`rbuild -t app .` is short for this).
    Build(build::BuildArgs),
    /// Print the build graph: operations, cache keys, dependencies.
    Graph(build::GraphArgs),
    /// List images in the local store.
    Images,
    /// Show an image's manifest and config.
    Inspect { image: String },
    /// Show an image's history.
    History { image: String },
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Remove image names from the local store.
    Rmi { images: Vec<String> },
    /// Push an image from the local store to a registry.
    Push { source: String, destination: String },
    /// Tools for looking inside rbuild.
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Parse a Dockerfile and print its syntax tree in BuildKit's dump format.
    Parse {
        /// Print the typed instructions (with spans) as JSON instead.
        #[arg(long)]
        json: bool,
        /// The Dockerfile.
        file: PathBuf,
    },
}

const SUBCOMMANDS: &[&str] = &[
    "build", "graph", "images", "inspect", "history", "tag", "rmi", "push", "debug", "help",
];

/// `rbuild -t app .` means `rbuild build -t app .`: when the first argument
/// that is not a global option is not a subcommand, insert `build`.
fn with_default_subcommand(mut args: Vec<String>) -> Vec<String> {
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--root" | "--insecure-registry" => i += 2,
            a if a.starts_with("--root=") || a.starts_with("--insecure-registry=") => i += 1,
            "-h" | "--help" | "-V" | "--version" => return args,
            a if SUBCOMMANDS.contains(&a) => return args,
            _ => {
                args.insert(i, "build".into());
                return args;
            }
        }
    }
    args
}

/// The root directory: `--root`, `RBUILD_ROOT`, `/var/lib/rbuild` for root,
/// `$XDG_DATA_HOME/rbuild` (or `~/.local/share/rbuild`) otherwise.
fn root_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(p) = flag {
        return p;
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/rbuild");
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(d) => PathBuf::from(d).join("rbuild"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
            .join(".local/share/rbuild"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(rbuild_executor::sandbox::SANDBOX_ARG) {
        rbuild_executor::sandbox::sandbox_main();
    }
    // `rbuild graph | head` must end quietly, not panic on a closed pipe.
    // SAFETY: restoring the default disposition of a signal at startup.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let cli = Cli::parse_from(with_default_subcommand(args));
    match run(cli) {
        Ok(code) => code,
        Err(report) => {
            eprint!("{report}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let root = root_dir(cli.root);
    let insecure = cli.insecure_registries;
    match cli.command {
        Command::Debug(DebugCommand::Parse { json, file }) => build::debug_parse(&file, json),
        Command::Build(args) => build::build(&root, &insecure, args),
        Command::Graph(args) => build::graph(&root, &insecure, args),
        Command::Images => images::list(&root),
        Command::Inspect { image } => images::inspect(&root, &image),
        Command::History { image } => images::history(&root, &image),
        Command::Tag { source, target } => images::tag(&root, &source, &target),
        Command::Rmi { images } => images::rmi(&root, &images),
        Command::Push {
            source,
            destination,
        } => images::push(&root, &insecure, &source, &destination),
    }
}

#[cfg(test)]
mod tests {
    use super::with_default_subcommand;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn build_is_the_default_subcommand() {
        assert_eq!(
            with_default_subcommand(args("rbuild -t app .")),
            args("rbuild build -t app .")
        );
        assert_eq!(
            with_default_subcommand(args("rbuild --root /r -t app .")),
            args("rbuild --root /r build -t app .")
        );
        assert_eq!(
            with_default_subcommand(args("rbuild debug parse f")),
            args("rbuild debug parse f")
        );
        assert_eq!(
            with_default_subcommand(args("rbuild --help")),
            args("rbuild --help")
        );
        assert_eq!(
            with_default_subcommand(args("rbuild images")),
            args("rbuild images")
        );
    }
}
