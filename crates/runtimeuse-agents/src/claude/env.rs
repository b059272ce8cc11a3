//! The CLI's environment: the request's (the runtime's own without its settings, with
//! `agent_env` over it) plus what the CLI needs to run unattended; credentials in it
//! are registered as secrets.

use std::collections::BTreeMap;

use runtimeuse_server::agent::AgentContext;

/// Variables that hold credentials the CLI may use: redacted from everything sent back.
pub const CREDENTIAL_VARS: [&str; 6] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// The environment for one run; registers the credentials found in it with `ctx`.
pub fn prepare_env(
    request_env: &BTreeMap<String, String>,
    ctx: &AgentContext,
) -> BTreeMap<String, String> {
    let mut env = request_env.clone();
    for name in CREDENTIAL_VARS {
        if let Some(value) = env.get(name).filter(|v| !v.is_empty()) {
            ctx.add_secret(value);
        }
    }
    // What the Agent SDK sets, so the CLI knows it is driven by a program.
    env.entry("CLAUDE_CODE_ENTRYPOINT".to_owned())
        .or_insert_with(|| "sdk-ts".to_owned());
    if nix::unistd::geteuid().is_root() {
        // As root the CLI refuses to skip permissions unless this is exactly "1".
        env.insert("IS_SANDBOX".to_owned(), "1".to_owned());
    }
    env
}
