//! The echo agent: interprets the user prompt deterministically (PROTOCOL.md, "The echo
//! agent"), so that every path of the runtime can be exercised without an LLM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runtimeuse_protocol::ResultData;
use runtimeuse_server::agent::{Agent, AgentContext, AgentError, AgentOutput, AgentRequest};
use serde_json::{Map, Value};
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

/// How long `WRITE_FILE:` waits for its file to be uploaded as an artifact.
const ARTIFACT_WAIT: Duration = Duration::from_secs(10);

/// Most bytes `READ_FILE:` returns. The result travels in one frame, and common clients
/// refuse frames above 1 MiB; a larger file is refused with an error instead.
pub const READ_FILE_LIMIT: u64 = 512 * 1024;

/// The deterministic echo agent.
#[derive(Debug, Clone, Default)]
pub struct EchoAgent;

/// What a prompt asks for.
#[derive(Debug, PartialEq)]
enum Instruction<'a> {
    Echo(&'a str),
    Structured(&'a str),
    Slow(&'a str),
    Stream(&'a str),
    StreamText(&'a str),
    Error(&'a str),
    WriteFile(&'a str),
    ReadFile(&'a str),
    Plain(&'a str),
}

/// A prompt prefix and the instruction it introduces.
type Prefix<'a> = (&'static str, fn(&'a str) -> Instruction<'a>);

impl<'a> Instruction<'a> {
    fn parse(prompt: &'a str) -> Self {
        // Longer prefixes first: STREAM_TEXT: must not be read as STREAM:.
        let table: [Prefix<'a>; 8] = [
            ("STREAM_TEXT:", Instruction::StreamText),
            ("STRUCTURED:", Instruction::Structured),
            ("WRITE_FILE:", Instruction::WriteFile),
            ("READ_FILE:", Instruction::ReadFile),
            ("STREAM:", Instruction::Stream),
            ("ERROR:", Instruction::Error),
            ("ECHO:", Instruction::Echo),
            ("SLOW:", Instruction::Slow),
        ];
        table
            .iter()
            .find_map(|(prefix, make)| prompt.strip_prefix(prefix).map(make))
            .unwrap_or(Instruction::Plain(prompt))
    }
}

fn text(text: impl Into<String>) -> Result<AgentOutput, AgentError> {
    let mut metadata = Map::new();
    metadata.insert("agent".into(), Value::String("echo".into()));
    Ok(AgentOutput {
        data: ResultData::Text { text: text.into() },
        metadata,
    })
}

fn bad_prompt(message: String) -> AgentError {
    AgentError::new(message).with_metadata("source", "echo_handler")
}

fn resolve(path: &str) -> PathBuf {
    let path = Path::new(path.trim());
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    }
}

/// The contents of the regular file at `path`, at most [`READ_FILE_LIMIT`] bytes of UTF-8;
/// stops when `cancel` fires. Devices, pipes and directories are refused: reading
/// `/dev/zero` or a FIFO would never end.
async fn read_file(path: &Path, cancel: &CancellationToken) -> Result<String, AgentError> {
    let shown = path.display();
    let failed = |e: std::io::Error| bad_prompt(format!("could not read {shown}: {e}"));
    let read = async {
        let meta = tokio::fs::metadata(path).await.map_err(failed)?;
        if !meta.is_file() {
            return Err(bad_prompt(format!(
                "could not read {shown}: not a regular file"
            )));
        }
        let too_large = || {
            bad_prompt(format!(
                "could not read {shown}: larger than the READ_FILE limit of {READ_FILE_LIMIT} bytes"
            ))
        };
        if meta.len() > READ_FILE_LIMIT {
            return Err(too_large());
        }
        let file = tokio::fs::File::open(path).await.map_err(failed)?;
        let mut bytes = Vec::new();
        // Files under /proc report size 0 and may grow while read: the limit holds anyway.
        file.take(READ_FILE_LIMIT + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(failed)?;
        if bytes.len() as u64 > READ_FILE_LIMIT {
            return Err(too_large());
        }
        String::from_utf8(bytes)
            .map_err(|_| bad_prompt(format!("could not read {shown}: not valid UTF-8")))
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(AgentError::new("cancelled")),
        read = read => read,
    }
}

#[async_trait::async_trait]
impl Agent for EchoAgent {
    fn name(&self) -> &str {
        "echo"
    }

    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        match Instruction::parse(&request.user_prompt) {
            Instruction::Echo(rest) | Instruction::Plain(rest) => text(rest),
            Instruction::Structured(json) => {
                let value: Value = serde_json::from_str(json.trim()).map_err(|e| {
                    bad_prompt(format!("STRUCTURED: payload is not valid JSON: {e}"))
                })?;
                if !value.is_object() {
                    return Err(bad_prompt(
                        "STRUCTURED: payload must be a JSON object".into(),
                    ));
                }
                let mut output = text("")?;
                output.data = ResultData::StructuredOutput {
                    structured_output: value,
                };
                Ok(output)
            }
            Instruction::Slow(ms) => {
                let ms: u64 = ms
                    .trim()
                    .parse()
                    .map_err(|_| bad_prompt(format!("SLOW: expects milliseconds, got {ms:?}")))?;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => text("done"),
                    () = ctx.cancel_token().cancelled() => Err(AgentError::new("cancelled")),
                }
            }
            Instruction::Stream(n) => {
                let n: u64 = n
                    .trim()
                    .parse()
                    .map_err(|_| bad_prompt(format!("STREAM: expects a count, got {n:?}")))?;
                for i in 1..=n {
                    if ctx.cancel_token().is_cancelled() {
                        return Err(AgentError::new("cancelled"));
                    }
                    ctx.assistant_message(vec![format!("message {i} of {n}")])
                        .await;
                }
                text(format!("streamed {n} messages"))
            }
            Instruction::StreamText(body) => {
                ctx.assistant_message(vec![body.to_owned()]).await;
                text("done")
            }
            Instruction::Error(message) => Err(bad_prompt(message.to_owned())),
            Instruction::WriteFile(spec) => {
                let (path, content) = spec.split_once(' ').unwrap_or((spec, ""));
                let path = resolve(path);
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(|e| {
                        bad_prompt(format!("could not create {}: {e}", parent.display()))
                    })?;
                }
                tokio::fs::write(&path, content)
                    .await
                    .map_err(|e| bad_prompt(format!("could not write {}: {e}", path.display())))?;
                // Waiting for the upload (not just the announcement) means the file is in
                // the client's storage by the time the result arrives.
                ctx.wait_for_artifact_upload(&path, ARTIFACT_WAIT).await;
                text(format!("wrote {}", path.display()))
            }
            Instruction::ReadFile(path) => read_file(&resolve(path), ctx.cancel_token())
                .await
                .and_then(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_map_to_instructions_longest_prefix_first() {
        assert_eq!(
            Instruction::parse("STREAM_TEXT:hi"),
            Instruction::StreamText("hi")
        );
        assert_eq!(Instruction::parse("STREAM:3"), Instruction::Stream("3"));
        assert_eq!(Instruction::parse("ECHO:a:b"), Instruction::Echo("a:b"));
        assert_eq!(Instruction::parse("hello"), Instruction::Plain("hello"));
        assert_eq!(
            Instruction::parse("echo:lower"),
            Instruction::Plain("echo:lower")
        );
    }
}
