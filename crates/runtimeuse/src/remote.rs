//! `runtimeuse query` and `runtimeuse exec`: the Rust client on the command line.
//!
//! Output goes where a user expects it: assistant text and command stdout on stdout,
//! command stderr on stderr, the result last. Ctrl-C aborts the call (the runtime cancels
//! the request and kills its processes) and exits 130; a second Ctrl-C exits 130 without
//! waiting for the runtime to confirm.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use runtimeuse_client::{
    Command, Error, Event, EventStream, ExecuteCommandsOptions, OutputStream, QueryData,
    QueryOptions, RuntimeUseClient,
};

use crate::cli::{ConnectArgs, ExecArgs, QueryArgs};

/// Exit code after Ctrl-C, as shells report SIGINT.
const INTERRUPTED: u8 = 130;

fn client(args: &ConnectArgs) -> anyhow::Result<RuntimeUseClient> {
    let mut builder = RuntimeUseClient::builder(&args.ws_url).resume(args.resume);
    if let Some(token) = &args.token {
        builder = builder.auth_token(token);
    }
    builder.build().context("invalid connection settings")
}

fn timeout(args: &ConnectArgs) -> anyhow::Result<Option<Duration>> {
    match args.timeout {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => bail!("--timeout must be a positive number of seconds, got {s}"),
    }
}

/// Prints events as they come; returns the result, or the exit code after Ctrl-C.
async fn drive<T>(client: &RuntimeUseClient, mut events: EventStream<T>) -> Result<T, ExitCode> {
    let abort = client.abort_handle();
    let mut interrupted = false;
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = &mut ctrl_c => {
                if interrupted {
                    // The runtime has not confirmed the cancel (with --resume it may be
                    // unreachable for its whole grace period): leave without it.
                    eprintln!(
                        "runtimeuse: interrupted again; leaving without the runtime's confirmation (the request may run on until the runtime notices)"
                    );
                    return Err(ExitCode::from(INTERRUPTED));
                }
                interrupted = true;
                eprintln!("runtimeuse: interrupted; cancelling the request… (Ctrl-C again to leave at once)");
                abort.abort();
                ctrl_c = Box::pin(tokio::signal::ctrl_c());
                continue;
            }
        };
        match event {
            None => {
                eprintln!("runtimeuse: the runtime closed the connection before a result");
                return Err(ExitCode::FAILURE);
            }
            Some(Ok(Event::Result(result))) => return Ok(result),
            Some(Ok(event)) => print_event(event),
            Some(Err(Error::Cancelled)) if interrupted => return Err(ExitCode::from(INTERRUPTED)),
            Some(Err(e)) => {
                // A runtime error's text includes its metadata.
                eprintln!("runtimeuse: {e}");
                return Err(ExitCode::FAILURE);
            }
        }
    }
}

fn print_event<T>(event: Event<T>) {
    match event {
        Event::AssistantMessage(message) => {
            for block in message.text_blocks {
                println!("{block}");
            }
        }
        Event::CommandOutput(chunk) => {
            // Output is forwarded byte for byte; a closed pipe (e.g. `| head`) is not an error.
            let _ = match chunk.stream {
                OutputStream::Stdout => std::io::stdout().write_all(chunk.text.as_bytes()),
                OutputStream::Stderr => std::io::stderr().write_all(chunk.text.as_bytes()),
            };
        }
        Event::ArtifactUploadRequest(request) => {
            eprintln!(
                "runtimeuse: artifact {} is ready (no upload target on the command line)",
                request.request().filepath
            );
        }
        _ => {}
    }
}

/// Says on stderr how often a `--resume` call reconnected, when it did (the result's
/// `reconnects`).
fn report_reconnects(metadata: &serde_json::Map<String, serde_json::Value>) {
    match metadata
        .get("reconnects")
        .and_then(serde_json::Value::as_u64)
    {
        None | Some(0) => {}
        Some(1) => eprintln!("runtimeuse: the connection dropped once and was resumed"),
        Some(n) => eprintln!("runtimeuse: the connection dropped {n} times and was resumed"),
    }
}

/// `runtimeuse query`.
pub async fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.connect)?;
    let mut options = QueryOptions::new(&args.system_prompt, &args.model);
    options.timeout = timeout(&args.connect)?;
    options.secrets_to_redact = args.connect.secrets.clone();
    if let Some(path) = &args.schema_file {
        let schema =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        options = options.output_format_json_schema_str(schema);
    }
    options.validate().context("invalid query options")?;
    let events = client.query_stream(&args.prompt, options);
    let result = match drive(&client, events).await {
        Ok(result) => result,
        Err(code) => return Ok(code),
    };
    report_reconnects(&result.metadata);
    match &result.data {
        QueryData::Text(text) => println!("{text}"),
        QueryData::StructuredOutput(value) => {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The shell command line for `exec`'s words: one word is already a command line (pipes,
/// redirections and all); several are a program and its arguments, so each is quoted to
/// reach the program exactly as given, as `docker exec` and `kubectl exec` pass them.
fn command_line(words: &[String]) -> anyhow::Result<String> {
    match words {
        [line] => Ok(line.clone()),
        words => shlex::try_join(words.iter().map(String::as_str))
            .context("a command word cannot be passed through the shell"),
    }
}

/// `runtimeuse exec`.
pub async fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.connect)?;
    let mut command = Command::new(command_line(&args.command)?);
    command.cwd = args.cwd.clone();
    let mut options = ExecuteCommandsOptions::new();
    options.timeout = timeout(&args.connect)?;
    options.secrets_to_redact = args.connect.secrets.clone();
    let events = client.execute_commands_stream(vec![command], options);
    let result = match drive(&client, events).await {
        Ok(result) => result,
        Err(code) => return Ok(code),
    };
    report_reconnects(&result.metadata);
    Ok(match result.first_failure() {
        None => ExitCode::SUCCESS,
        Some(failed) => {
            let code = u8::try_from(failed.exit_code.clamp(1, 255)).unwrap_or(1);
            ExitCode::from(code)
        }
    })
}
