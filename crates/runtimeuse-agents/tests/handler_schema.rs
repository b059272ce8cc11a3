//! docs/handler-protocol.schema.json agrees with the code: every line the runtime writes
//! validates, every line the handler parser accepts validates and every line it refuses
//! does not, and the lines the Python example handler really prints validate.

mod handler_support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use runtimeuse_agents::handler::protocol::{
    CommandResult, Invocation, PROTOCOL_VERSION, ToHandler, decode, encode,
};
use serde_json::{Value, json};

fn schema() -> Value {
    let path = handler_support::repo().join("docs/handler-protocol.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A validator for one of the schema's `$defs` (`runtime_line` or `handler_line`).
fn validator(def: &str) -> jsonschema::Validator {
    let mut schema = schema();
    schema
        .as_object_mut()
        .unwrap()
        .remove("oneOf")
        .expect("the schema has a top-level oneOf");
    schema["$ref"] = json!(format!("#/$defs/{def}"));
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

fn invocation() -> ToHandler {
    ToHandler::Invocation(Invocation {
        protocol_version: PROTOCOL_VERSION,
        system_prompt: "sys".into(),
        user_prompt: "STREAM:2".into(),
        model: "m".into(),
        output_schema: Some(json!({"type": "object"})),
        env: [("A".to_owned(), "b".to_owned())].into(),
        secrets: vec!["s".into()],
        source_id: None,
        cwd: "/tmp".into(),
    })
}

#[test]
fn every_line_the_runtime_writes_validates() {
    let runtime = validator("runtime_line");
    let handler = validator("handler_line");
    let ran = CommandResult {
        id: "1".into(),
        exit_code: Some(0),
        stdout: "out".into(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        timed_out: false,
        error: None,
    };
    let failed = CommandResult {
        exit_code: None,
        error: Some("could not start command".into()),
        ..ran.clone()
    };
    for line in [
        invocation(),
        ToHandler::CommandResult(ran),
        ToHandler::CommandResult(failed),
        ToHandler::Cancel,
    ] {
        let value: Value = serde_json::from_str(&encode(&line).unwrap()).unwrap();
        assert!(runtime.is_valid(&value), "runtime line refused: {value}");
        assert!(
            !handler.is_valid(&value),
            "runtime line taken as a handler's: {value}"
        );
    }
}

#[test]
fn the_schema_accepts_what_the_parser_accepts_and_refuses_what_it_refuses() {
    let handler = validator("handler_line");
    let accepted = [
        json!({"type": "assistant_message", "text_blocks": ["a", "b"]}),
        json!({"type": "command", "id": "1", "command": "ls"}),
        json!({"type": "command", "id": "2", "command": "ls", "cwd": "sub", "env": {"X": "1"}, "timeout_ms": 500}),
        json!({"type": "command", "id": "3", "command": "ls", "cwd": null, "env": null}),
        json!({"type": "result", "data": {"type": "text", "text": "hi"}}),
        json!({"type": "result", "data": {"type": "text", "text": "hi"}, "metadata": {"usage": 1}}),
        json!({"type": "result", "data": {"type": "structured_output", "structured_output": {"n": 1}}, "metadata": null}),
        json!({"type": "error", "error": "boom"}),
        json!({"type": "error", "error": "boom", "metadata": {"source": "x"}}),
    ];
    for line in &accepted {
        assert!(decode(&line.to_string()).is_ok(), "parser refused {line}");
        assert!(handler.is_valid(line), "schema refused {line}");
    }
    let refused = [
        json!({"type": "shout"}),
        json!({"text_blocks": ["no type"]}),
        json!({"type": "assistant_message", "text_blocks": "not a list"}),
        json!({"type": "command", "id": "1"}),
        json!({"type": "command", "id": 1, "command": "ls"}),
        json!({"type": "result", "data": {"type": "text"}}),
        json!({"type": "result", "data": {"type": "html", "html": "<p>"}}),
        json!({"type": "error"}),
        json!(["not", "an", "object"]),
    ];
    for line in &refused {
        assert!(decode(&line.to_string()).is_err(), "parser accepted {line}");
        assert!(!handler.is_valid(line), "schema accepted {line}");
    }
}

/// Runs the Python example directly on one invocation and returns what it prints.
fn python_lines(prompt: &str) -> Vec<Value> {
    let script = handler_support::repo().join("examples/handlers/python/handler.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let ToHandler::Invocation(mut invocation) = invocation() else {
        unreachable!()
    };
    invocation.user_prompt = prompt.into();
    let line = encode(&ToHandler::Invocation(invocation)).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(line.as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_lines_the_python_example_prints_validate() {
    let handler = validator("handler_line");
    let mut seen = 0;
    for prompt in ["STREAM:2", r#"STRUCTURED:{"n": 1}"#, "ERROR:nope", "ECHO:x"] {
        for line in python_lines(prompt) {
            assert!(handler.is_valid(&line), "{prompt}: {line}");
            assert!(decode(&line.to_string()).is_ok(), "{prompt}: {line}");
            seen += 1;
        }
    }
    assert_eq!(seen, 3 + 1 + 1 + 1);
}
