//! The agent loop: call the model, run the tools it calls, give it their outputs, until it
//! answers without calling any (or the turn limit is hit).

use std::time::Instant;

use runtimeuse_protocol::ResultData;
use runtimeuse_server::agent::{AgentContext, AgentError, AgentOutput, AgentRequest};
use serde_json::{Map, Value, json};

use super::client::{Endpoint, open_stream};
use super::config::OpenAiConfig;
use super::error::OpenAiError;
use super::events::Usage;
use super::items::OutputItem;
use super::request_body::{TurnRequest, user_message};
use super::schema_strict::{drop_null_optionals, output_format};
use super::shell_tool::ShellRunner;
use super::turn::{Turn, read_turn};

/// What the run has done so far: reported in the metadata, on success and on failure.
struct Progress {
    started: Instant,
    model: String,
    turns: u32,
    usage: Usage,
    response_id: Option<String>,
}

impl Progress {
    fn metadata(&self) -> Map<String, Value> {
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut metadata = Map::new();
        metadata.insert("agent".into(), json!("openai"));
        metadata.insert("model".into(), json!(self.model));
        metadata.insert("turns".into(), json!(self.turns));
        metadata.insert("duration_ms".into(), json!(duration_ms));
        metadata.insert("usage".into(), self.usage.to_json());
        if let Some(id) = &self.response_id {
            metadata.insert("response_id".into(), json!(id));
        }
        metadata
    }
}

/// Runs one invocation to its result.
pub(crate) async fn run(
    config: &OpenAiConfig,
    http: &reqwest::Client,
    request: &AgentRequest,
    ctx: &AgentContext,
) -> Result<AgentOutput, AgentError> {
    let mut progress = Progress {
        started: Instant::now(),
        model: request.model.clone(),
        turns: 0,
        usage: Usage::default(),
        response_id: None,
    };
    let outcome = drive(config, http, request, ctx, &mut progress).await;
    let metadata = progress.metadata();
    match outcome {
        Ok(data) => Ok(AgentOutput { data, metadata }),
        Err(error) => {
            tracing::debug!(error = %error, turns = progress.turns, "openai run failed");
            let mut agent_error = error.into_agent_error();
            for (key, value) in metadata {
                agent_error.metadata.entry(key).or_insert(value);
            }
            Err(agent_error)
        }
    }
}

async fn drive(
    config: &OpenAiConfig,
    http: &reqwest::Client,
    request: &AgentRequest,
    ctx: &AgentContext,
    progress: &mut Progress,
) -> Result<ResultData, OpenAiError> {
    let endpoint = Endpoint::from_env(&request.env, &config.default_base_url)?;
    // The key may come from the runtime's own environment, which the caller cannot know
    // to list in `secrets_to_redact`: whatever a command or the model prints, it never
    // reaches the client.
    ctx.add_secret(endpoint.api_key());
    let format = request.output_schema.as_ref().map(output_format);
    let shell = ShellRunner::new(ctx, &request.env, config, endpoint.api_key());
    let mut input = vec![user_message(&request.user_prompt)];
    loop {
        if progress.turns >= config.max_turns {
            return Err(OpenAiError::MaxTurns(config.max_turns));
        }
        progress.turns += 1;
        tracing::info!(
            model = %request.model,
            turn = progress.turns,
            url = endpoint.url(),
            "calling the OpenAI Responses API"
        );
        let body = TurnRequest {
            model: &request.model,
            instructions: &request.system_prompt,
            input: &input,
            web_search: config.web_search,
            format: format.as_ref(),
        }
        .body();
        let mut stream = open_stream(http, &endpoint, &body, config, ctx.cancel_token()).await?;
        let turn = read_turn(&mut stream, ctx).await?;
        // The connection is given back (or dropped) before tools run for minutes.
        drop(stream);
        progress.usage.add(&turn.usage);
        progress.response_id.clone_from(&turn.response_id);

        if !turn.items.iter().any(|(_, item)| item.is_tool_call()) {
            let strict = format.as_ref().is_some_and(|f| f.strict);
            return final_answer(&turn, request.output_schema.as_ref(), strict);
        }
        let mut outputs = Vec::new();
        for (_, item) in &turn.items {
            match item {
                OutputItem::FunctionCall {
                    call_id,
                    name,
                    arguments,
                } => outputs.push(shell.answer_function_call(call_id, name, arguments).await?),
                OutputItem::ShellCall { call_id, action } => {
                    outputs.push(shell.answer_shell_call(call_id, action).await?);
                }
                OutputItem::Message(_) | OutputItem::Other => {}
            }
        }
        input.extend(turn.items.into_iter().map(|(raw, _)| raw));
        input.extend(outputs);
    }
}

/// The result of the last turn: its last message as text, or parsed and validated
/// against the caller's schema (after dropping the nulls that stand for absent optional
/// properties, when the schema was sent `strict`).
fn final_answer(
    turn: &Turn,
    schema: Option<&Value>,
    strict: bool,
) -> Result<ResultData, OpenAiError> {
    let message = turn.last_message();
    let text = message
        .map(super::items::MessageContent::text)
        .unwrap_or_default();
    let refused = message.and_then(|m| m.refusal.clone());
    if let Some(refusal) = refused.filter(|_| text.trim().is_empty()) {
        return Err(OpenAiError::Refusal(refusal));
    }
    let Some(schema) = schema else {
        return Ok(ResultData::Text { text });
    };
    if message.is_none() {
        return Err(OpenAiError::StructuredOutputInvalid(
            "the model gave no final message".into(),
        ));
    }
    let mut answer: Value = serde_json::from_str(strip_fences(&text)).map_err(|e| {
        OpenAiError::StructuredOutputInvalid(format!(
            "the answer is not JSON ({e}): {}",
            preview(&text)
        ))
    })?;
    if strict {
        drop_null_optionals(&mut answer, schema);
    }
    runtimeuse_server::schema::validate(schema, &answer)
        .map_err(|e| OpenAiError::StructuredOutputInvalid(e.to_string()))?;
    Ok(ResultData::StructuredOutput {
        structured_output: answer,
    })
}

/// Strict mode returns bare JSON; compatible servers sometimes wrap it in a code fence.
fn strip_fences(text: &str) -> &str {
    let trimmed = text.trim();
    trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .map_or(trimmed, str::trim)
}

fn preview(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        text.chars().take(MAX).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::items::MessageContent;

    fn turn_with(text: &str) -> Turn {
        let message = MessageContent {
            texts: vec![text.to_owned()],
            refusal: None,
        };
        Turn {
            items: vec![(Value::Null, OutputItem::Message(message))],
            ..Turn::default()
        }
    }

    #[test]
    fn structured_answers_are_parsed_and_validated() {
        let schema = json!({"type":"object","properties":{"n":{"type":"integer"},"note":{"type":"string"}},"required":["n"]});
        let ok = final_answer(
            &turn_with(r#"{"n": 42, "note": null}"#),
            Some(&schema),
            true,
        )
        .unwrap();
        assert_eq!(
            ok,
            ResultData::StructuredOutput {
                structured_output: json!({"n": 42})
            }
        );
        let fenced = final_answer(&turn_with("```json\n{\"n\": 1}\n```"), Some(&schema), true);
        assert!(fenced.is_ok(), "{fenced:?}");
        let wrong = final_answer(&turn_with(r#"{"n": "x"}"#), Some(&schema), true).unwrap_err();
        assert_eq!(wrong.name(), "StructuredOutputInvalid");
        let not_json = final_answer(&turn_with("forty-two"), Some(&schema), true).unwrap_err();
        assert!(not_json.to_string().contains("not JSON"), "{not_json}");
        assert_eq!(
            final_answer(&turn_with("hello"), None, false).unwrap(),
            ResultData::Text {
                text: "hello".into()
            }
        );
        // Without strict mode a null is the model's answer, not a stand-in for "absent".
        let null = final_answer(
            &turn_with(r#"{"n": 1, "note": null}"#),
            Some(&schema),
            false,
        );
        assert_eq!(null.unwrap_err().name(), "StructuredOutputInvalid");
    }
}
