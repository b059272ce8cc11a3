//! Agents for the runtimeuse runtime.
//!
//! - [`echo::EchoAgent`]: deterministic, for tests and demos (see PROTOCOL.md).
//! - [`claude::ClaudeAgent`]: Claude Code, driving the `claude` CLI over stream-json.
//! - [`handler::HandlerAgent`]: agents in any language, run as a child process speaking
//!   JSON lines (`docs/handler-protocol.md`); JS/TS modules through a Node adapter.
//! - [`unavailable::UnavailableAgent`]: stands in for an agent this build does not have
//!   yet, failing each invocation with a clear message instead of crashing.

pub mod claude;
pub mod echo;
pub mod handler;
pub mod openai;
pub mod unavailable;

pub use claude::{ClaudeAgent, ClaudeConfig};
pub use echo::EchoAgent;
pub use handler::{HandlerAgent, HandlerConfig, HandlerProgram};
pub use openai::{OpenAiAgent, OpenAiConfig};
pub use unavailable::UnavailableAgent;
