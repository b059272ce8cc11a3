//! Agents for the runtimeuse runtime.
//!
//! - [`echo::EchoAgent`]: deterministic, for tests and demos (see PROTOCOL.md).
//! - [`unavailable::UnavailableAgent`]: stands in for an agent this build does not have
//!   yet, failing each invocation with a clear message instead of crashing.

pub mod echo;
pub mod openai;
pub mod unavailable;

pub use echo::EchoAgent;
pub use openai::{OpenAiAgent, OpenAiConfig};
pub use unavailable::UnavailableAgent;
