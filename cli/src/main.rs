//! `revisit`: run the collector and worker locally on an embedded store, replay a visit log, or
//! check whether Safari would cap the visitor cookie on a domain set-up.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use revisit::{check_domain, replay, serve};

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
    /// Check whether Safari would cap the collector's visitor cookie to 7 days on a storefront.
    CheckDomain(check_domain::CheckDomainArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    revisit::logging::init()?;
    match cli.command {
        Command::Serve(args) => serve::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Replay(args) => replay::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::CheckDomain(args) => check_domain::run(&args),
    }
}
