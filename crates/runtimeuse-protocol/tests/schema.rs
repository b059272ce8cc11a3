//! The checked-in JSON Schemas (`docs/schema/`) match the types, and every golden fixture
//! validates against them, so the documented schema cannot drift from what is on the wire.
//! `UPDATE_SCHEMA=1` rewrites the files instead of comparing.

use std::path::PathBuf;

use runtimeuse_protocol::schema;
use serde_json::{Value, json};

fn docs_schema(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../docs/schema/{name}.schema.json"))
}

fn checked_in(name: &str, generated: &Value) -> Value {
    let path = docs_schema(name);
    let text = serde_json::to_string_pretty(generated).expect("schema serialises") + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let on_disk =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        on_disk,
        text,
        "{} is stale: run UPDATE_SCHEMA=1 cargo test -p runtimeuse-protocol --test schema",
        path.display()
    );
    serde_json::from_str(&on_disk).expect("schema file is JSON")
}

fn fixtures(prefix: &str) -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".json"))
        })
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("fixture");
            (
                path.display().to_string(),
                serde_json::from_str(&text).expect("fixture JSON"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn assert_fixtures_valid(schema: &Value, prefix: &str, at_least: usize) {
    let validator = jsonschema::validator_for(schema).expect("schema compiles");
    let all = fixtures(prefix);
    assert!(
        all.len() >= at_least,
        "expected {at_least}+ {prefix} fixtures, found {}",
        all.len()
    );
    for (name, value) in all {
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name} does not validate: {errors:?}");
    }
}

#[test]
fn client_schema_is_current_and_accepts_every_python_client_fixture() {
    let schema = checked_in("client-message", &schema::client_messages());
    assert_fixtures_valid(&schema, "client_", 7);
}

#[test]
fn server_schema_is_current_and_accepts_every_runtime_fixture() {
    let schema = checked_in("server-message", &schema::server_messages());
    assert_fixtures_valid(&schema, "server_", 9);
}

#[test]
fn resume_schema_is_current_and_accepts_every_extension_fixture() {
    let schema = checked_in("resume-message", &schema::resume_messages());
    assert_fixtures_valid(&schema, "resume_", 3);
    let validator = jsonschema::validator_for(&schema).expect("compiles");
    for bad in [
        json!({"message_type": "resume_ack_message"}),
        json!({"message_type": "session_resumed_message", "session_id": "a"}),
        json!({"message_type": "session_resumable_message", "session_id": "a", "resume_key": "k"}),
    ] {
        assert!(!validator.is_valid(&bad), "accepted {bad}");
    }
}

#[test]
fn schemas_reject_what_the_runtime_rejects() {
    let client = jsonschema::validator_for(&schema::client_messages()).expect("compiles");
    for bad in [
        json!({"message_type": "invocation_message", "system_prompt": "s", "user_prompt": "u"}),
        json!({"message_type": "command_execution_message"}),
        json!({"message_type": "command_execution_message", "commands": [{"cwd": "/"}]}),
        json!({"message_type": "artifact_upload_response_message", "filename": "a"}),
    ] {
        assert!(!client.is_valid(&bad), "accepted {bad}");
    }
    let server = jsonschema::validator_for(&schema::server_messages()).expect("compiles");
    for bad in [
        json!({"message_type": "result_message", "data": {"type": "text"}}),
        json!({"message_type": "command_output_message", "stream": "stdin", "text": "", "command": ""}),
        json!({"message_type": "error_message"}),
    ] {
        assert!(!server.is_valid(&bad), "accepted {bad}");
    }
}
