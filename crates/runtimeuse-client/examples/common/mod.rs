//! Shared by the examples: where the runtime is.
//!
//! The URL is the first argument, else `RUNTIMEUSE_URL`, else `ws://127.0.0.1:8080`;
//! `RUNTIMEUSE_TOKEN`, when set, is sent as a bearer token. Start a runtime with the
//! deterministic echo agent to try them: `runtimeuse --agent echo --port 8080` (serving is
//! the binary's default; it has no `serve` subcommand).

// Not every example uses every helper.
#![allow(dead_code)]

use runtimeuse_client::RuntimeUseClient;

pub fn ws_url() -> String {
    std::env::args()
        .nth(1)
        .or_else(|| std::env::var("RUNTIMEUSE_URL").ok())
        .unwrap_or_else(|| "ws://127.0.0.1:8080".to_owned())
}

pub fn client() -> Result<RuntimeUseClient, runtimeuse_client::Error> {
    let mut builder = RuntimeUseClient::builder(ws_url());
    if let Ok(token) = std::env::var("RUNTIMEUSE_TOKEN") {
        builder = builder.auth_token(token);
    }
    builder.build()
}

/// The prompt: the second argument, else `default` (an echo-agent prompt).
pub fn prompt(default: &str) -> String {
    std::env::args()
        .nth(2)
        .unwrap_or_else(|| default.to_owned())
}
