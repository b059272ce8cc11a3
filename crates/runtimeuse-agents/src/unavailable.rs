//! An agent that is selected but not built in: every invocation fails clearly.

use runtimeuse_server::agent::{Agent, AgentContext, AgentError, AgentOutput, AgentRequest};

/// Fails every invocation with "the `<name>` agent is not available in this build".
#[derive(Debug, Clone)]
pub struct UnavailableAgent {
    name: String,
    reason: String,
}

impl UnavailableAgent {
    /// An agent called `name` that is missing for `reason`.
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

#[async_trait::async_trait]
impl Agent for UnavailableAgent {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(
        &self,
        _request: AgentRequest,
        _ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        Err(AgentError::new(format!(
            "the {} agent is not available in this build: {}",
            self.name, self.reason
        ))
        .with_metadata("error_name", "AgentUnavailable"))
    }
}
