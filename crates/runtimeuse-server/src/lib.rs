//! The runtimeuse runtime as a library.
//!
//! A [`server::Server`] accepts WebSocket connections; each becomes a session that runs
//! invocations (through an [`agent::Agent`]) and command executions, streams their output
//! through a redacting [`outbox::Outbox`], and uploads artifacts.

pub mod agent;
pub mod artifacts;
pub mod command;
pub mod download;
pub mod outbox;
pub mod redact;
pub mod upload;
