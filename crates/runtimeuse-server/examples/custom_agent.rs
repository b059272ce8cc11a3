//! A custom agent in Rust, served with the runtime library.
//!
//! ```bash
//! cargo run -p runtimeuse-server --example custom_agent -- 127.0.0.1:8080
//! runtimeuse query ws://127.0.0.1:8080 "count the files here"
//! ```
//!
//! The agent counts the entries of its working directory: it tells the client what it is
//! doing (`assistant_message`), has the runtime run `ls -A` (output streamed to the
//! client, redacted, killed on cancel), and answers with text, or with
//! `{"files": N}` when the caller asked for structured output. It honours everything the
//! [`Agent`] trait asks: it stops when the cancel token fires, leaves no process behind
//! (the command runner kills the tree), and returns structured output when a schema is
//! given (the runtime validates it against the caller's schema).

use std::net::SocketAddr;
use std::sync::Arc;

use runtimeuse_protocol::{Command, ResultData};
use runtimeuse_server::agent::{Agent, AgentContext, AgentError, AgentOutput, AgentRequest};
use runtimeuse_server::command::CommandError;
use runtimeuse_server::server::{Server, ServerConfig};
use runtimeuse_server::session::SessionConfig;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// Counts the files in the runtime's working directory.
struct FileCounter;

#[async_trait::async_trait]
impl Agent for FileCounter {
    fn name(&self) -> &'static str {
        "file-counter"
    }

    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        ctx.assistant_message(vec![format!(
            "Counting files for {:?} with model {}",
            request.user_prompt, request.model
        )])
        .await;
        let outcome = match ctx.run_command(&Command::new("ls -A")).await {
            Ok(outcome) => outcome,
            // Cancelled: return at once; the runtime reports "Request cancelled".
            Err(CommandError::Cancelled) => return Err(AgentError::new("cancelled")),
            Err(error) => {
                return Err(AgentError::new(format!("could not list files: {error}"))
                    .with_metadata("error_name", "ListFailed"));
            }
        };
        if outcome.exit_code != 0 {
            return Err(AgentError::new("ls failed").with_metadata("exit_code", outcome.exit_code));
        }
        let files = outcome.stdout.lines().count();
        let data = if request.output_schema.is_some() {
            ResultData::StructuredOutput {
                structured_output: json!({ "files": files }),
            }
        } else {
            ResultData::Text {
                text: format!("{files} files"),
            }
        };
        let mut metadata = Map::new();
        metadata.insert("agent".into(), Value::from("file-counter"));
        Ok(AgentOutput { data, metadata })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()?;
    let config = ServerConfig::new(addr, SessionConfig::new(Arc::new(FileCounter)));
    let server = Server::bind(config).await?;
    println!("custom agent listening on ws://{}", server.local_addr());

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    server.run_until(shutdown).await?;
    Ok(())
}
