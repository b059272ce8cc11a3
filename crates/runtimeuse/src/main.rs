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
    // Logging, and the exporters' own threads, start before the async runtime and stop
    // (flushing pending traces) after it.
    let mut serve_token = None;
    let _logs = if cli.command.is_none() {
        match start_logging(&cli.serve) {
            Ok((token, guard)) => {
                serve_token = token;
                Some(guard)
            }
            Err(e) => {
                eprintln!("runtimeuse: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
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
            None => serve::run(cli.serve, serve_token).await,
            Some(cli::Command::Query(args)) => remote::query(args).await,
            Some(cli::Command::Exec(args)) => remote::exec(args).await,
        }
    });
    drop(runtime);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("runtimeuse: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The token the runtime requires, and logging set up to redact it everywhere.
fn start_logging(args: &cli::ServeArgs) -> anyhow::Result<(Option<String>, logging::LogGuard)> {
    let token = token::resolve(args.token.as_deref(), args.token_file.as_deref())?;
    let guard = logging::init(args.log_format, token::redactor(token.as_deref()))?;
    Ok((token, guard))
}
