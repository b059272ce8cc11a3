//! Async Rust client for the [runtimeuse](https://github.com/getlark/runtimeuse) agent
//! runtime: a server inside a sandbox that runs an AI agent (or shell commands) on request,
//! driven over a WebSocket.
//!
//! The API mirrors the Python `runtimeuse-client`: [`RuntimeUseClient::query`] sends a
//! prompt and returns a [`QueryResult`], [`RuntimeUseClient::execute_commands`] runs shell
//! commands, callbacks in [`QueryOptions`] see assistant messages, command output and
//! artifact upload requests while the call runs, [`AbortHandle`] cancels from any task, and
//! [`RuntimeUseClient::session`] keeps one connection for many calls. Beyond the Python
//! client, [`RuntimeUseClient::query_stream`] yields typed [`Event`]s instead of calling
//! callbacks, and [`QueryResult::structured`] deserialises structured output into any type.
//!
//! # Quick start
//!
//! ```no_run
//! use runtimeuse_client::{QueryData, QueryOptions, RuntimeUseClient};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), runtimeuse_client::Error> {
//!     let client = RuntimeUseClient::new("ws://127.0.0.1:8080");
//!
//!     let options = QueryOptions::new("You are a helpful assistant.", "gpt-4.1")
//!         .on_assistant_message(|msg| async move {
//!             for block in msg.text_blocks {
//!                 println!("[assistant] {block}");
//!             }
//!         });
//!     let result = client.query("Summarise the repository.", options).await?;
//!     if let QueryData::Text(text) = &result.data {
//!         println!("{text}");
//!     }
//!     println!("{:?}", result.metadata);
//!     Ok(())
//! }
//! ```
//!
//! Structured output:
//!
//! ```no_run
//! # async fn demo(client: runtimeuse_client::RuntimeUseClient) -> Result<(), runtimeuse_client::Error> {
//! use runtimeuse_client::QueryOptions;
//!
//! #[derive(serde::Deserialize)]
//! struct Counts {
//!     file_count: u64,
//!     char_count: u64,
//! }
//!
//! let options = QueryOptions::new("You are a helpful assistant.", "gpt-4.1").output_schema(
//!     serde_json::json!({
//!         "type": "object",
//!         "properties": {
//!             "file_count": { "type": "integer" },
//!             "char_count": { "type": "integer" }
//!         },
//!         "required": ["file_count", "char_count"]
//!     }),
//! );
//! let counts: Counts = client.query("Count the files.", options).await?.structured()?;
//! println!("{} files, {} chars", counts.file_count, counts.char_count);
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! Every call returns [`Error`]: [`Error::Runtime`] carries the runtime's `error` and
//! `metadata`, [`Error::Cancelled`] follows an abort, [`Error::Timeout`] says which limit
//! expired, and connection or protocol problems have their own variants.
//!
//! # Surviving dropped connections
//!
//! [`ClientBuilder::resume`] opens every connection as a durable session of the runtime
//! (the protocol's resumable-sessions extension): after a drop the client reconnects by
//! itself, with jittered exponential backoff within the runtime's grace period, and the
//! call goes on with every message delivered once and in order. Results count the
//! reconnections in `metadata["reconnects"]`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), runtimeuse_client::Error> {
//! use runtimeuse_client::{QueryOptions, RuntimeUseClient};
//!
//! let client = RuntimeUseClient::builder("ws://127.0.0.1:8080").resume(true).build()?;
//! let result = client
//!     .query("STREAM:1000", QueryOptions::new("You are a test.", "echo"))
//!     .await?;
//! println!("reconnected {} times", result.metadata["reconnects"]);
//! # Ok(()) }
//! ```
//!
//! # Logging
//!
//! The crate logs through `tracing`, one `runtimeuse_request` span per call. Reconnections
//! of resumable connections are logged at `warn` (the drop) and `info` (the resume), with
//! the URL's credentials masked; the resume key never appears.

#![warn(missing_docs)]

mod abort;
mod callbacks;
mod client;
mod connection;
mod end_session;
mod error;
mod options;
mod request_loop;
mod result;
mod resume;
mod session;
mod stream;
mod tls;
mod transport;
mod url_mask;

pub use abort::AbortHandle;
pub use callbacks::{
    ArtifactUploadResult, Callback, CallbackError, CallbackResult, IntoCallbackResult,
    OnArtifactUploadRequest, OnAssistantMessage, OnCommandOutput, callback,
};
pub use client::{ClientBuilder, DEFAULT_CONNECT_TIMEOUT, RuntimeUseClient};
pub use error::{Error, TimeoutKind};
pub use options::{ExecuteCommandsOptions, QueryOptions};
pub use result::{CommandExecutionResult, QueryData, QueryResult};
pub use session::{DEFAULT_END_SESSION_TIMEOUT, Session};
pub use stream::{ArtifactUploadRequestEvent, Event, EventStream};
pub use transport::{Transport, TransportLink};

/// Wire types used in this crate's API, re-exported from `runtimeuse-protocol`.
pub use runtimeuse_protocol::{
    ArtifactUploadRequest, AssistantMessage, Command, CommandOutput, CommandResultItem,
    Downloadable, Heartbeat, OutputStream,
};

/// The protocol crate, for everything else on the wire.
pub use runtimeuse_protocol as protocol;
