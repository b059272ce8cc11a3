//! One model turn: reads a streamed response to its end, forwarding each completed
//! assistant message to the client as one `assistant_message`.

use std::collections::{BTreeMap, BTreeSet};

use runtimeuse_server::agent::AgentContext;
use serde_json::Value;

use super::client::ResponseStream;
use super::error::OpenAiError;
use super::events::{ResponseBody, StreamEvent, Usage, value_text};
use super::items::{MessageContent, OutputItem};

/// What a completed response produced.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    /// The response's output items, raw (for the next turn's input) and read.
    pub items: Vec<(Value, OutputItem)>,
    /// Its token usage.
    pub usage: Usage,
    /// Its id.
    pub response_id: Option<String>,
}

impl Turn {
    /// The last assistant message of the turn.
    pub fn last_message(&self) -> Option<&MessageContent> {
        self.items.iter().rev().find_map(|(_, item)| match item {
            OutputItem::Message(message) => Some(message),
            _ => None,
        })
    }
}

/// Reads `stream` until `response.completed`. Messages are announced as soon as their
/// `response.output_item.done` arrives; messages only present in the final response
/// (servers that send no item events) are announced at the end.
pub(crate) async fn read_turn(
    stream: &mut ResponseStream,
    ctx: &AgentContext,
) -> Result<Turn, OpenAiError> {
    let mut done: BTreeMap<usize, Value> = BTreeMap::new();
    // Text gathered from deltas, per output index: used when an item comes without text.
    let mut deltas: BTreeMap<usize, String> = BTreeMap::new();
    let mut announced: BTreeSet<usize> = BTreeSet::new();
    loop {
        let event = tokio::select! {
            biased;
            () = ctx.cancel_token().cancelled() => return Err(OpenAiError::Cancelled),
            event = stream.next_event() => event?,
        };
        let Some(event) = event else {
            return Err(OpenAiError::Stream(
                "the stream ended before response.completed".into(),
            ));
        };
        match event {
            StreamEvent::OutputTextDelta {
                output_index,
                delta,
            } => {
                let index = output_index.unwrap_or(done.len());
                deltas.entry(index).or_default().push_str(&delta);
            }
            StreamEvent::OutputItemDone { output_index, item } => {
                let index = output_index.unwrap_or(done.len());
                let parsed = OutputItem::parse(&item);
                if let OutputItem::Message(message) = &parsed {
                    announce(ctx, message, deltas.get(&index)).await;
                    announced.insert(index);
                }
                done.insert(index, item);
            }
            StreamEvent::Completed { response } => {
                return Ok(finish(ctx, response, done, &deltas, &announced).await);
            }
            StreamEvent::Failed { response } => {
                let error = response.error.unwrap_or_default();
                return Err(OpenAiError::ResponseFailed {
                    code: value_text(error.code.as_ref()),
                    message: error.message.unwrap_or_else(|| "no details given".into()),
                });
            }
            StreamEvent::Incomplete { response } => {
                let reason = response
                    .incomplete_details
                    .and_then(|d| d.reason)
                    .unwrap_or_else(|| "no reason given".into());
                return Err(OpenAiError::ResponseIncomplete { reason });
            }
            StreamEvent::Error {
                code,
                message,
                error,
            } => {
                let nested = error.unwrap_or_default();
                return Err(OpenAiError::StreamError {
                    code: value_text(code.as_ref()).or_else(|| value_text(nested.code.as_ref())),
                    message: message
                        .or(nested.message)
                        .unwrap_or_else(|| "no details given".into()),
                });
            }
            StreamEvent::Other => {}
        }
    }
}

/// Builds the turn from the final response, preferring its `output` (authoritative) over
/// the items seen one by one.
async fn finish(
    ctx: &AgentContext,
    response: ResponseBody,
    done: BTreeMap<usize, Value>,
    deltas: &BTreeMap<usize, String>,
    announced: &BTreeSet<usize>,
) -> Turn {
    let raw: Vec<Value> = if response.output.is_empty() {
        done.into_values().collect()
    } else {
        response.output
    };
    let mut items = Vec::with_capacity(raw.len());
    for (index, item) in raw.into_iter().enumerate() {
        let mut parsed = OutputItem::parse(&item);
        if let OutputItem::Message(message) = &mut parsed {
            fill_from_deltas(message, deltas.get(&index));
            if !announced.contains(&index) {
                announce(ctx, message, None).await;
            }
        }
        items.push((item, parsed));
    }
    Turn {
        items,
        usage: response.usage.unwrap_or_default(),
        response_id: response.id,
    }
}

/// A message item without text takes the text streamed for it.
fn fill_from_deltas(message: &mut MessageContent, streamed: Option<&String>) {
    let Some(streamed) = streamed else { return };
    if message.texts.iter().all(String::is_empty) && message.refusal.is_none() {
        message.texts = vec![streamed.clone()];
    }
}

/// Sends one `assistant_message` with the message's text parts (or its refusal).
async fn announce(ctx: &AgentContext, message: &MessageContent, streamed: Option<&String>) {
    let mut message = message.clone();
    fill_from_deltas(&mut message, streamed);
    let mut blocks: Vec<String> = message
        .texts
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    blocks.extend(message.refusal);
    if !blocks.is_empty() {
        ctx.assistant_message(blocks).await;
    }
}
