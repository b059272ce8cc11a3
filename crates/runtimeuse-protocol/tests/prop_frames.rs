//! Property tests of the frame parser: random text, random JSON and mutated golden
//! fixtures never make it panic, every frame lands in exactly the class its shape says,
//! and every accepted message survives a round trip through its own serialisation.
//!
//! Bounded for the normal test run (`PROPTEST_CASES` raises the number of cases).

use proptest::prelude::*;
use proptest::test_runner::Config;
use runtimeuse_protocol::{
    ClientMessage, Incoming, ParseError, ServerMessage, parse_client_frame, parse_server_frame,
    secrets_in_frame,
};
use serde_json::{Map, Value};

const CLIENT_TYPES: &[&str] = &[
    "invocation_message",
    "command_execution_message",
    "artifact_upload_response_message",
    "cancel_message",
    "end_session_message",
];

const SERVER_TYPES: &[&str] = &[
    "result_message",
    "command_execution_result_message",
    "error_message",
    "assistant_message",
    "command_output_message",
    "heartbeat_message",
    "artifact_upload_request_message",
    "end_session_confirm_message",
];

/// Field names of real messages, so random objects often hit real decoders' fields.
const FIELDS: &[&str] = &[
    "system_prompt",
    "user_prompt",
    "model",
    "source_id",
    "agent_env",
    "secrets_to_redact",
    "output_format_json_schema_str",
    "artifacts_dirs",
    "artifacts_dir",
    "artifacts_ignore_content",
    "pre_agent_invocation_commands",
    "post_agent_invocation_commands",
    "pre_agent_downloadables",
    "pre_execution_downloadables",
    "commands",
    "command",
    "cwd",
    "env",
    "download_url",
    "working_dir",
    "filename",
    "filepath",
    "presigned_url",
    "content_type",
    "data",
    "type",
    "text",
    "structured_output",
    "metadata",
    "results",
    "exit_code",
    "stdout",
    "stdout_truncated",
    "error",
    "text_blocks",
    "stream",
    "phase",
    "elapsed_ms",
];

const FIXTURES: &[&str] = &[
    "client_artifact_upload_response",
    "client_cancel",
    "client_command_execution_full",
    "client_command_execution_minimal",
    "client_end_session",
    "client_invocation_full",
    "client_invocation_minimal",
    "server_artifact_upload_request",
    "server_assistant",
    "server_command_execution_result",
    "server_command_output",
    "server_end_session_confirm",
    "server_error",
    "server_heartbeat",
    "server_result_structured",
    "server_result_text",
];

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
        1 => Just("message_type".to_owned()),
        1 => "\\PC{0,12}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::String),
        proptest::sample::select(CLIENT_TYPES).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn message_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => proptest::sample::select(CLIENT_TYPES).prop_map(Value::from),
        3 => proptest::sample::select(SERVER_TYPES).prop_map(Value::from),
        1 => "[a-z_]{0,30}".prop_map(Value::from),
        1 => json(),
    ]
}

/// Objects shaped like messages: a message type and random real or made-up fields.
fn message_like() -> impl Strategy<Value = Value> {
    (
        prop::option::weighted(0.9, message_type()),
        prop::collection::vec((key(), json()), 0..10),
    )
        .prop_map(|(kind, fields)| {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            if let Some(kind) = kind {
                object.insert("message_type".into(), kind);
            }
            Value::Object(object)
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Remove(String),
    Set(String, Value),
    /// Replaces the value at this index of a top-level array field.
    SetInArray(String, usize, Value),
}

/// A golden fixture with fields removed, replaced or added.
fn mutated_fixture() -> impl Strategy<Value = Value> {
    let mutation = prop_oneof![
        key().prop_map(Mutation::Remove),
        (key(), json()).prop_map(|(k, v)| Mutation::Set(k, v)),
        (key(), 0..3usize, json()).prop_map(|(k, i, v)| Mutation::SetInArray(k, i, v)),
    ];
    (
        proptest::sample::select(FIXTURES),
        prop::collection::vec(mutation, 0..5),
    )
        .prop_map(|(name, mutations)| {
            let mut value = fixture(name);
            let Value::Object(object) = &mut value else {
                panic!("{name} is not an object");
            };
            for mutation in mutations {
                match mutation {
                    Mutation::Remove(k) => {
                        object.remove(&k);
                    }
                    Mutation::Set(k, v) => {
                        object.insert(k, v);
                    }
                    Mutation::SetInArray(k, i, v) => {
                        if let Some(Value::Array(items)) = object.get_mut(&k)
                            && let Some(item) = items.get_mut(i)
                        {
                            *item = v;
                        }
                    }
                }
            }
            value
        })
}

/// Text a client might send: anything at all, JSON fragments, truncated fixtures.
fn frame_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        2 => message_like().prop_map(|v| v.to_string()),
        2 => mutated_fixture().prop_map(|v| v.to_string()),
        1 => (mutated_fixture(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let text = v.to_string();
            let chars: Vec<char> = text.chars().collect();
            chars[..cut.index(chars.len() + 1)].iter().collect()
        }),
        1 => (1..20_000usize, prop::bool::ANY).prop_map(|(depth, objects)| {
            if objects {
                "{\"a\":".repeat(depth)
            } else {
                "[".repeat(depth)
            }
        }),
    ]
}

/// What the frame's shape says the parser must answer, by class.
#[derive(Debug, PartialEq)]
enum Class {
    InvalidJson,
    NotAnObject,
    MissingMessageType,
    Unknown(String),
    Known(String),
}

fn expected_class(frame: &str, known: &[&str]) -> Class {
    let Ok(value) = serde_json::from_str::<Value>(frame) else {
        return Class::InvalidJson;
    };
    let Value::Object(object) = value else {
        return Class::NotAnObject;
    };
    match object.get("message_type").and_then(Value::as_str) {
        None => Class::MissingMessageType,
        Some(kind) if known.contains(&kind) => Class::Known(kind.to_owned()),
        Some(kind) => Class::Unknown(kind.to_owned()),
    }
}

fn class_of<M>(
    parsed: &Result<Incoming<M>, ParseError>,
    message_type: fn(&M) -> &'static str,
) -> Class {
    match parsed {
        Err(ParseError::InvalidJson(_)) => Class::InvalidJson,
        Err(ParseError::NotAnObject) => Class::NotAnObject,
        Err(ParseError::MissingMessageType) => Class::MissingMessageType,
        Err(ParseError::InvalidMessage { message_type, .. }) => Class::Known(message_type.clone()),
        Ok(Incoming::Unknown { message_type }) => Class::Unknown(message_type.clone()),
        Ok(Incoming::Message(m)) => Class::Known(message_type(m).to_owned()),
    }
}

fn client_type(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::InvocationMessage(_) => "invocation_message",
        ClientMessage::CommandExecutionMessage(_) => "command_execution_message",
        ClientMessage::ArtifactUploadResponseMessage(_) => "artifact_upload_response_message",
        ClientMessage::CancelMessage => "cancel_message",
        ClientMessage::EndSessionMessage => "end_session_message",
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn client_frames_are_classified_by_shape_and_never_panic(frame in frame_text()) {
        let parsed = parse_client_frame(&frame);
        prop_assert_eq!(class_of(&parsed, client_type), expected_class(&frame, CLIENT_TYPES));
        if let Ok(Incoming::Message(message)) = parsed {
            let again = serde_json::to_string(&message).expect("a parsed message serialises");
            prop_assert_eq!(parse_client_frame(&again), Ok(Incoming::Message(message)));
        }
    }

    #[test]
    fn server_frames_are_classified_by_shape_and_never_panic(frame in frame_text()) {
        let parsed = parse_server_frame(&frame);
        prop_assert_eq!(
            class_of(&parsed, ServerMessage::message_type),
            expected_class(&frame, SERVER_TYPES)
        );
        if let Ok(Incoming::Message(message)) = parsed {
            let again = serde_json::to_string(&message).expect("a parsed message serialises");
            prop_assert_eq!(parse_server_frame(&again), Ok(Incoming::Message(message)));
        }
    }

    #[test]
    fn every_listed_secret_is_found_however_malformed_the_frame(
        frame in mutated_fixture(),
        secrets in prop::collection::vec("\\PC{1,16}", 0..4),
        noise in prop::collection::vec(json(), 0..3),
    ) {
        let mut frame = frame;
        let mut listed: Vec<Value> = secrets.iter().cloned().map(Value::String).collect();
        listed.extend(noise);
        if let Value::Object(object) = &mut frame {
            object.insert("secrets_to_redact".into(), Value::Array(listed));
        }
        let found = secrets_in_frame(&frame.to_string());
        for secret in &secrets {
            prop_assert!(found.contains(secret), "{secret:?} not found in {found:?}");
        }
    }
}
