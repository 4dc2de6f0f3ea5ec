//! `nelumbo`: the operator and client tool.

mod cmd;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Nelumbo: a Filecoin storage-provider runtime.
#[derive(Debug, Parser)]
#[command(name = "nelumbo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute the piece commitment (piece CID) of a file, or of standard input with `-`.
    Commp(cmd::commp::CommpArgs),
    /// Proof parameters.
    #[command(subcommand)]
    Proofs(cmd::proofs::ProofsCommand),
    /// Run a local devnet: a chain and a hub as separate processes, until Ctrl-C.
    Devnet(cmd::devnet::DevnetArgs),
    /// A storage client: wallet keys, deals over Boost's protocols, deal status, asks.
    Client(cmd::client::ClientArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Commp(args) => cmd::commp::run(args),
        Command::Proofs(command) => cmd::proofs::run(command),
        Command::Devnet(args) => cmd::devnet::run(args),
        Command::Client(args) => cmd::client::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default (`info` for Nelumbo, `warn` for the rest).
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,nelumbo=info,nelumbo_proofs=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
