//! The runtimeuse runtime as a library.
//!
//! A [`server::Server`] accepts WebSocket connections; each becomes a [`session::Session`]
//! that runs invocations (through an [`agent::Agent`]) and command executions, streams
//! their output through a redacting [`outbox::Outbox`], and uploads artifacts.
//!
//! ```no_run
//! # async fn demo(agent: std::sync::Arc<dyn runtimeuse_server::agent::Agent>) {
//! use runtimeuse_server::server::{Server, ServerConfig};
//! use runtimeuse_server::session::SessionConfig;
//!
//! let config = ServerConfig::new("127.0.0.1:8080".parse().unwrap(), SessionConfig::new(agent));
//! let server = Server::bind(config).await.unwrap();
//! let handle = server.spawn();
//! println!("serving on {}", handle.ws_url());
//! handle.shutdown().await.unwrap();
//! # }
//! ```

pub mod agent;
pub mod artifacts;
pub mod command;
pub mod download;
pub mod http_client;
mod listener;
pub mod logging;
mod memory;
pub mod metrics;
pub mod outbox;
pub mod process;
pub mod redact;
mod request;
pub mod result_size;
pub mod resume;
pub mod schema;
pub mod server;
mod services;
pub mod session;
mod socket;
mod traffic;
pub mod unzip;
mod upgrade;
pub mod upload;

pub use request::CANCELLED;
