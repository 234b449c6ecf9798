//! `revisit`: run the collector and worker locally on an embedded store, or replay a visit log.

use clap::{Parser, Subcommand};

use revisit::{replay, serve};

#[derive(Debug, Parser)]
#[command(
    name = "revisit",
    version,
    about = "Server-side session enrichment for online stores"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector, the worker and the demo storefront on 127.0.0.1.
    Serve(serve::ServeArgs),
    /// Run a visit log (JSON lines) through the collector and the worker.
    Replay(replay::ReplayArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    revisit::logging::init();
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Replay(args) => replay::run(args).await,
    }
}
