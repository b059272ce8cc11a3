//! What successful calls return.

use runtimeuse_protocol::{
    CommandExecutionResultMessage, CommandResultItem, ResultData, ResultMessage,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::Error;

/// The answer of an agent invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryData {
    /// Plain text (no output format was requested).
    Text(String),
    /// JSON matching the requested output format.
    StructuredOutput(Value),
}

/// What [`RuntimeUseClient::query`](crate::RuntimeUseClient::query) returns.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The answer.
    pub data: QueryData,
    /// Execution metadata reported by the runtime (token usage, durations, cost…).
    pub metadata: Map<String, Value>,
}

impl QueryResult {
    /// The text answer, if the result is text.
    pub fn text(&self) -> Option<&str> {
        match &self.data {
            QueryData::Text(text) => Some(text),
            QueryData::StructuredOutput(_) => None,
        }
    }

    /// The structured answer as JSON, if the result is structured output.
    pub fn structured_output(&self) -> Option<&Value> {
        match &self.data {
            QueryData::StructuredOutput(value) => Some(value),
            QueryData::Text(_) => None,
        }
    }

    /// Deserialises the structured answer into `T`.
    ///
    /// ```
    /// # use runtimeuse_client::{QueryData, QueryResult};
    /// #[derive(serde::Deserialize)]
    /// struct Counts { file_count: u64 }
    ///
    /// let result = QueryResult {
    ///     data: QueryData::StructuredOutput(serde_json::json!({"file_count": 3})),
    ///     metadata: Default::default(),
    /// };
    /// assert_eq!(result.structured::<Counts>().unwrap().file_count, 3);
    /// ```
    ///
    /// # Errors
    /// [`Error::StructuredOutput`] when the result is text or does not fit `T`.
    pub fn structured<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let value = self.structured_output().ok_or_else(|| {
            Error::StructuredOutput(
                "the result is text; set an output format to get structured output".into(),
            )
        })?;
        T::deserialize(value).map_err(|e| Error::StructuredOutput(e.to_string()))
    }
}

impl From<ResultMessage> for QueryResult {
    fn from(message: ResultMessage) -> Self {
        let data = match message.data {
            ResultData::Text { text } => QueryData::Text(text),
            ResultData::StructuredOutput { structured_output } => {
                QueryData::StructuredOutput(structured_output)
            }
        };
        Self {
            data,
            metadata: message.metadata,
        }
    }
}

/// What [`RuntimeUseClient::execute_commands`](crate::RuntimeUseClient::execute_commands)
/// returns: one item per command that ran, in order.
///
/// The runtime stops after the first command that exits non-zero and reports it here;
/// that is not an [`Error`]. Use [`CommandExecutionResult::success`] or
/// [`CommandExecutionResult::first_failure`] to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandExecutionResult {
    /// Per-command outcome (command, exit code, captured stdout).
    pub results: Vec<CommandResultItem>,
    /// What the client knows about the call. The runtime reports no metadata for
    /// commands, so this is empty unless the client has
    /// [`resume`](crate::ClientBuilder::resume) on; then `"reconnects"` counts the
    /// reconnections during the call (as in [`QueryResult::metadata`]).
    pub metadata: Map<String, Value>,
}

impl CommandExecutionResult {
    /// Whether every command that ran exited with 0.
    pub fn success(&self) -> bool {
        self.first_failure().is_none()
    }

    /// The first command that exited non-zero.
    pub fn first_failure(&self) -> Option<&CommandResultItem> {
        self.results.iter().find(|item| item.exit_code != 0)
    }
}

impl From<CommandExecutionResultMessage> for CommandExecutionResult {
    fn from(message: CommandExecutionResultMessage) -> Self {
        Self {
            results: message.results,
            metadata: Map::new(),
        }
    }
}

/// The successful terminal message of a request.
#[derive(Debug)]
pub(crate) enum Terminal {
    Query(ResultMessage),
    Commands(CommandExecutionResultMessage),
}

/// A call's typed result, built from its terminal message.
pub(crate) trait Outcome: Sized + Send + 'static {
    fn from_terminal(terminal: Terminal) -> Result<Self, Error>;

    /// Notes how often a resumable connection reconnected during the call.
    fn note_reconnects(&mut self, reconnects: u64);
}

impl Outcome for QueryResult {
    fn from_terminal(terminal: Terminal) -> Result<Self, Error> {
        match terminal {
            Terminal::Query(message) => Ok(message.into()),
            Terminal::Commands(_) => Err(unexpected_terminal("command_execution_result_message")),
        }
    }

    fn note_reconnects(&mut self, reconnects: u64) {
        self.metadata.insert("reconnects".into(), reconnects.into());
    }
}

impl Outcome for CommandExecutionResult {
    fn from_terminal(terminal: Terminal) -> Result<Self, Error> {
        match terminal {
            Terminal::Commands(message) => Ok(message.into()),
            Terminal::Query(_) => Err(unexpected_terminal("result_message")),
        }
    }

    fn note_reconnects(&mut self, reconnects: u64) {
        self.metadata.insert("reconnects".into(), reconnects.into());
    }
}

fn unexpected_terminal(message_type: &str) -> Error {
    Error::Protocol(format!(
        "unexpected {message_type} as the terminal of this request"
    ))
}
