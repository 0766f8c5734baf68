//! The `rbuild` command line. It only wires the library crates together and
//! turns their typed errors into reports for people.

mod report;

use std::path::{Path, PathBuf};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile (`rbuild -t app .` is short for this).
    Build(BuildArgs),
    /// Tools for looking inside rbuild.
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Name and optionally tag of the image (repeatable).
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Dockerfile path (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Do not use the cache.
    #[arg(long)]
    no_cache: bool,
    /// The build context directory.
    context: PathBuf,
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

const SUBCOMMANDS: &[&str] = &["build", "debug", "help"];

/// `rbuild -t app .` means `rbuild build -t app .`: when the first argument
/// that is not a global option is not a subcommand, insert `build`.
fn with_default_subcommand(mut args: Vec<String>) -> Vec<String> {
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--root" => i += 2,
            a if a.starts_with("--root=") => i += 1,
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

fn main() -> ExitCode {
    let cli = Cli::parse_from(with_default_subcommand(std::env::args().collect()));
    match run(cli) {
        Ok(code) => code,
        Err(report) => {
            eprint!("{report}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Debug(DebugCommand::Parse { json, file }) => debug_parse(&file, json),
        Command::Build(args) => {
            let file = args
                .file
                .clone()
                .unwrap_or_else(|| args.context.join("Dockerfile"));
            // Parse first so that a broken Dockerfile gets its real error.
            let (source, _) = read_and_parse(&file)?;
            let _ = (source, args.tags, args.no_cache, cli.root);
            Err(
                "error: `rbuild build` cannot build images yet: the planner and executor are \
                 not written (issues 4 and 5). The Dockerfile parsed without errors.\n"
                    .to_string(),
            )
        }
    }
}

fn read_source(file: &Path) -> Result<String, String> {
    let bytes =
        std::fs::read(file).map_err(|e| format!("error: cannot read {}: {e}\n", file.display()))?;
    match rbuild_parser::utf8(&bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(err) => Err(report::render_parse_error(
            &file.display().to_string(),
            &String::from_utf8_lossy(&bytes),
            &err,
        )),
    }
}

fn read_and_parse(file: &Path) -> Result<(String, rbuild_parser::Dockerfile), String> {
    let source = read_source(file)?;
    match rbuild_parser::parse(&source) {
        Ok(df) => Ok((source, df)),
        Err(err) => Err(report::render_parse_error(
            &file.display().to_string(),
            &source,
            &err,
        )),
    }
}

fn debug_parse(file: &Path, json: bool) -> Result<ExitCode, String> {
    let name = file.display().to_string();
    if json {
        let (_, df) = read_and_parse(file)?;
        let text = serde_json::to_string_pretty(&df).map_err(|e| format!("error: {e}\n"))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let source = read_source(file)?;
    match rbuild_parser::parse_nodes(&source) {
        Ok(raw) => {
            for w in &raw.warnings {
                eprintln!("warning: {name}:{}: {}", w.span.start.line, w.message);
            }
            println!("{}", rbuild_parser::dump(&raw.nodes));
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => Err(report::render_parse_error(&name, &source, &err)),
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
    }
}
