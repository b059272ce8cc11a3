//! Driving the OpenAI agent through its public API, as the session does.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use runtimeuse_agents::openai::{OpenAiAgent, OpenAiConfig, RetryPolicy};
use runtimeuse_protocol::ResultData;
use runtimeuse_server::agent::{Agent, AgentContext, AgentError, AgentOutput, AgentRequest};
use runtimeuse_server::artifacts::{ArtifactOptions, Artifacts};
use runtimeuse_server::command::CommandOptions;
use runtimeuse_server::outbox::{Outbox, OutboxReceiver};
use runtimeuse_server::redact::Redactor;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::fake_openai::FakeOpenAi;

pub const KEY: &str = "sk-test-0123456789";

/// Settings for tests: quick retries, and a default base URL where nothing listens, so
/// that every test also shows that `OPENAI_BASE_URL` from the environment is used.
pub fn config() -> OpenAiConfig {
    OpenAiConfig {
        default_base_url: "http://127.0.0.1:9/v1".into(),
        request_timeout: Duration::from_secs(10),
        stream_idle_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(5),
        },
        ..OpenAiConfig::default()
    }
}

/// The key and the fake's URL, as `agent_env` would carry them.
pub fn env_for(fake: &FakeOpenAi) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("OPENAI_API_KEY".to_owned(), KEY.to_owned()),
        ("OPENAI_BASE_URL".to_owned(), fake.base_url()),
    ])
}

/// An invocation of model `gpt-test`.
pub fn request(env: BTreeMap<String, String>, prompt: &str, schema: Option<Value>) -> AgentRequest {
    AgentRequest {
        system_prompt: "You are a test.".into(),
        user_prompt: prompt.into(),
        model: "gpt-test".into(),
        output_schema: schema,
        env,
        secrets: Redactor::default(),
        source_id: None,
    }
}

/// What a run returned and what it sent to the client.
pub struct Finished {
    pub result: Result<AgentOutput, AgentError>,
    pub frames: Vec<Value>,
}

impl Finished {
    pub fn output(&self) -> &AgentOutput {
        self.result.as_ref().expect("the run failed")
    }

    pub fn error(&self) -> &AgentError {
        self.result.as_ref().expect_err("the run succeeded")
    }

    pub fn text(&self) -> &str {
        match &self.output().data {
            ResultData::Text { text } => text,
            other => panic!("not text: {other:?}"),
        }
    }

    pub fn of_type(&self, message_type: &str) -> Vec<&Value> {
        self.frames
            .iter()
            .filter(|f| f["message_type"] == message_type)
            .collect()
    }
}

/// The frames a run sent to the client, as JSON.
pub struct Frames(OutboxReceiver);

impl Frames {
    /// Every frame queued so far.
    pub fn drain(&mut self) -> Vec<Value> {
        std::iter::from_fn(|| self.0.try_recv())
            .map(|frame| serde_json::from_str(&frame).unwrap())
            .collect()
    }
}

/// A context as the session builds it, with an outbox large enough for a whole test run.
pub fn context(cancel: CancellationToken) -> (AgentContext, Frames) {
    let (outbox, rx) = Outbox::channel(1024);
    let artifacts = Artifacts::new(
        outbox.clone(),
        reqwest::Client::new(),
        ArtifactOptions::default(),
    );
    let ctx = AgentContext::new(cancel, outbox, CommandOptions::default(), artifacts);
    (ctx, Frames(rx))
}

/// Runs the agent to its end.
pub async fn run_with(agent: &OpenAiAgent, request: AgentRequest) -> Finished {
    let (ctx, mut rx) = context(CancellationToken::new());
    let result = agent.run(request, ctx).await;
    Finished {
        result,
        frames: rx.drain(),
    }
}

/// Runs an agent with [`config`] against `fake`.
pub async fn run(fake: &FakeOpenAi, prompt: &str, schema: Option<Value>) -> Finished {
    let agent = OpenAiAgent::new(config());
    run_with(&agent, request(env_for(fake), prompt, schema)).await
}

/// The `output` of the `response.completed` event closing `events`.
pub fn final_output(events: &[Value]) -> Vec<Value> {
    events.last().unwrap()["response"]["output"]
        .as_array()
        .unwrap()
        .clone()
}

/// The `input` of the fake's `request`-th request.
pub fn input_of(fake: &FakeOpenAi, request: usize) -> Vec<Value> {
    fake.requests()[request].body["input"]
        .as_array()
        .unwrap()
        .clone()
}
