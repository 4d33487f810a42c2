//! greenbatch-runtime: the GPU side of greenbatch. `profile` measures joules and latency per batch
//! size; `tune` adds the decision core, locally. Exit codes: see `error::RuntimeError::exit_code`.

mod cli;
mod clock;
mod device;
mod error;
mod fetch;
mod loadgen;
mod measure;
mod meter;
mod model;
mod output;
mod profile_cmd;
mod profile_input;
mod protocol;
mod publish;
mod serve;
mod setup;
mod table;
mod tune_cmd;

use clap::Parser;
use cli::{Cli, Command, LogFormat};
use std::process::ExitCode;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GREENBATCH_LOG")
        .unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    model::install_panic_filter();
    let result = match &cli.command {
        Command::Profile(args) => profile_cmd::run(args),
        Command::Tune(args) => tune_cmd::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Loadgen(args) => loadgen::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
