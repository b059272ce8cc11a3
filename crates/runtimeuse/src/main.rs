//! `runtimeuse`: the runtime (serve, the default) and a command-line client.

mod cli;
mod init;
mod logging;
#[cfg(feature = "otel")]
mod otel;
mod remote;
mod serve;
mod token;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if cli.command.is_none() && init::should_run() {
        return init::run();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("runtimeuse: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => serve::run(cli.serve).await,
            Some(cli::Command::Query(args)) => remote::query(args).await,
            Some(cli::Command::Exec(args)) => remote::exec(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("runtimeuse: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
