//! The OpenAI agent's loop against a fake Responses API on loopback (real HTTP and SSE):
//! messages, the shell tool, web search items, structured output.

mod support;

use runtimeuse_agents::openai::OpenAiAgent;
use runtimeuse_protocol::ResultData;
use serde_json::{Value, json};

use support::fake_openai::{FakeOpenAi, Scripted};
use support::harness::{KEY, config, env_for, final_output, input_of, request, run, run_with};
use support::responses::ResponseBuilder;

#[tokio::test]
async fn plain_answer_sends_one_assistant_message_per_message_item() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .message("Let me think about it.")
            .message("The answer is 42.")
            .usage(12, 8)
            .completed(),
    ));
    let done = run(&fake, "What is 6*7?", None).await;

    assert_eq!(done.text(), "The answer is 42.");
    let messages = done.of_type("assistant_message");
    assert_eq!(messages.len(), 2, "{:?}", done.frames);
    assert_eq!(
        messages[0]["text_blocks"],
        json!(["Let me think about it."])
    );
    assert_eq!(messages[1]["text_blocks"], json!(["The answer is 42."]));

    let metadata = &done.output().metadata;
    assert_eq!(metadata["usage"]["input_tokens"], 12);
    assert_eq!(metadata["usage"]["output_tokens"], 8);
    assert_eq!(metadata["usage"]["total_tokens"], 20);
    assert_eq!(metadata["turns"], 1);
    assert_eq!(metadata["model"], "gpt-test");
    assert_eq!(metadata["response_id"], "resp_1");
    assert!(metadata["duration_ms"].is_u64());

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    let body = &requests[0].body;
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["instructions"], "You are a test.");
    assert_eq!(body["stream"], true);
    assert_eq!(body["input"][0]["role"], "user");
    assert_eq!(body["input"][0]["content"][0]["text"], "What is 6*7?");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["name"], "shell");
    assert_eq!(body["tools"][0]["strict"], true);
    assert_eq!(body["tools"][1], json!({"type": "web_search"}));
    assert!(body.get("previous_response_id").is_none());
    assert!(body.get("text").is_none());
}

#[tokio::test]
async fn shell_tool_runs_the_command_and_gives_its_output_back_to_the_model() {
    let fake = FakeOpenAi::start().await;
    let first = ResponseBuilder::new("resp_1")
        .shell_call("call_1", "echo $((6*7)); echo oops >&2", None)
        .usage(10, 3)
        .completed();
    let call_item = final_output(&first)[0].clone();
    fake.push(Scripted::Stream(first));
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_2")
            .message("It is 42.")
            .usage(30, 4)
            .completed(),
    ));
    let done = run(&fake, "Compute 6*7 with the shell.", None).await;

    assert_eq!(done.text(), "It is 42.");
    let output = done.of_type("command_output_message");
    let stdout: String = output
        .iter()
        .filter(|f| f["stream"] == "stdout")
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(stdout, "42\n");
    assert!(
        output
            .iter()
            .all(|f| f["command"] == "echo $((6*7)); echo oops >&2")
    );
    assert!(
        output
            .iter()
            .any(|f| f["stream"] == "stderr" && f["text"] == "oops\n")
    );

    let input = input_of(&fake, 1);
    assert_eq!(input.len(), 3, "{input:#?}");
    // The call goes back verbatim, then its output.
    assert_eq!(input[0], fake.requests()[0].body["input"][0]);
    assert_eq!(input[1], call_item);
    assert_eq!(input[2]["type"], "function_call_output");
    assert_eq!(input[2]["call_id"], "call_1");
    let text = input[2]["output"].as_str().unwrap();
    assert!(text.contains("exit_code: 0"), "{text}");
    assert!(text.contains("stdout:\n42\n"), "{text}");
    assert!(text.contains("stderr:\noops\n"), "{text}");

    let metadata = &done.output().metadata;
    assert_eq!(metadata["turns"], 2);
    assert_eq!(metadata["usage"]["input_tokens"], 40);
    assert_eq!(metadata["usage"]["total_tokens"], 47);
}

#[tokio::test]
async fn the_key_is_kept_from_commands_and_redacted_from_what_they_print() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, format!("stolen={KEY}\n")).unwrap();
    let read_env = r#"echo "env=[$OPENAI_API_KEY][$OPENAI_ORG_ID][$OPENAI_PROJECT_ID]""#;
    let read_file = format!(
        "cat '{}' && cat '{}' >&2",
        keyfile.display(),
        keyfile.display()
    );
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .shell_call("call_1", read_env, None)
            .shell_call("call_2", &read_file, None)
            .completed(),
    ));
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_2")
            .message(&format!("The key is {KEY}."))
            .completed(),
    ));
    // No `secrets_to_redact`: the agent redacts its key by itself.
    let mut env = env_for(&fake);
    env.insert("OPENAI_ORG_ID".into(), "org-test".into());
    env.insert("OPENAI_PROJECT_ID".into(), "proj-test".into());
    env.insert("OTHER_VAR".into(), "other".into());
    let agent = OpenAiAgent::new(config());
    let done = run_with(&agent, request(env, "Find the key.", None)).await;

    let all = serde_json::to_string(&done.frames).unwrap();
    assert!(!all.contains(KEY), "the key leaked to the client: {all}");
    let of_stream = |stream: &str| -> String {
        done.of_type("command_output_message")
            .iter()
            .filter(|f| f["stream"] == stream)
            .map(|f| f["text"].as_str().unwrap())
            .collect()
    };
    assert_eq!(of_stream("stdout"), "env=[][][]\nstolen=[REDACTED]\n");
    assert_eq!(of_stream("stderr"), "stolen=[REDACTED]\n");
    // (The result is redacted when the session sends it: see `openai_runtime.rs`.)

    // The model does not read it either (a web search could carry it off).
    let input = input_of(&fake, 1);
    let outputs: Vec<&str> = input
        .iter()
        .filter(|item| item["type"] == "function_call_output")
        .map(|item| item["output"].as_str().unwrap())
        .collect();
    assert_eq!(outputs.len(), 2, "{input:#?}");
    assert!(
        outputs[0].contains("stdout:\nenv=[][][]\n"),
        "{}",
        outputs[0]
    );
    assert!(
        outputs[1].contains("stdout:\nstolen=[REDACTED]\n"),
        "{}",
        outputs[1]
    );
    assert!(
        outputs[1].contains("stderr:\nstolen=[REDACTED]\n"),
        "{}",
        outputs[1]
    );
    assert!(!outputs.concat().contains(KEY));
    // The request itself still authenticates with it.
    assert_eq!(
        fake.requests()[1].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
}

#[tokio::test]
async fn web_search_calls_go_back_in_the_history_and_need_no_answer() {
    let fake = FakeOpenAi::start().await;
    let first = ResponseBuilder::new("resp_1")
        .web_search("rust release date")
        .shell_call("call_1", "true", Some(5_000))
        .completed();
    let items = final_output(&first);
    fake.push(Scripted::Stream(first));
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_2")
            .web_search("rust 2024 edition")
            .message("Found it.")
            .completed(),
    ));
    let done = run(&fake, "Search the web.", None).await;

    assert_eq!(done.text(), "Found it.");
    let input = input_of(&fake, 1);
    assert_eq!(input[1], items[0], "the web search item goes back verbatim");
    assert_eq!(input[1]["type"], "web_search_call");
    assert_eq!(input[2], items[1]);
    assert_eq!(input[3]["type"], "function_call_output");
    assert_eq!(
        input.len(),
        4,
        "no output is invented for a web search: {input:#?}"
    );
    // A turn with only a web search and a message is the last one.
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(done.output().metadata["turns"], 2);
}

#[tokio::test]
async fn structured_output_is_requested_strict_and_validated_against_the_callers_schema() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .message(r#"{"answer": 42, "note": null, "steps": [{"op": "mul", "detail": null}]}"#)
            .completed(),
    ));
    let schema = json!({
        "type": "object",
        "properties": {
            "answer": {"type": "integer"},
            "note": {"type": "string"},
            "steps": {"type": "array", "items": {
                "type": "object",
                "properties": {"op": {"type": "string"}, "detail": {"type": "string"}},
                "required": ["op"]
            }}
        },
        "required": ["answer", "steps"]
    });
    let done = run(&fake, "Answer in JSON.", Some(schema.clone())).await;

    let structured = match &done.output().data {
        runtimeuse_protocol::ResultData::StructuredOutput { structured_output } => {
            structured_output
        }
        other => panic!("not structured: {other:?}"),
    };
    // The nulls standing for "absent" are gone; the answer fits the caller's schema.
    assert_eq!(structured, &json!({"answer": 42, "steps": [{"op": "mul"}]}));

    let format = &fake.requests()[0].body["text"]["format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["name"], "output");
    assert_eq!(format["strict"], true);
    let strict = &format["schema"];
    assert_eq!(strict["additionalProperties"], false);
    assert_eq!(sorted(&strict["required"]), ["answer", "note", "steps"]);
    assert_eq!(
        strict["properties"]["note"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(strict["properties"]["answer"]["type"], "integer");
    let step = &strict["properties"]["steps"]["items"];
    assert_eq!(step["additionalProperties"], false);
    assert_eq!(sorted(&step["required"]), ["detail", "op"]);
    assert_eq!(
        step["properties"]["detail"]["type"],
        json!(["string", "null"])
    );
}

fn sorted(names: &Value) -> Vec<String> {
    let mut names: Vec<String> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_schema_with_open_objects_is_sent_unchanged_without_strict_mode() {
    // A map from names to counts: strict mode would close it, leaving only `{}`.
    let schema = json!({
        "type": "object",
        "properties": {
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "total": {"type": "integer"}
        },
        "required": ["counts", "total"]
    });
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .message(r#"{"counts": {"apples": 2, "pears": 3}, "total": 5}"#)
            .completed(),
    ));
    let done = run(&fake, "Count the fruit.", Some(schema.clone())).await;

    assert_eq!(
        done.output().data,
        ResultData::StructuredOutput {
            structured_output: json!({"counts": {"apples": 2, "pears": 3}, "total": 5})
        }
    );
    let format = &fake.requests()[0].body["text"]["format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["strict"], false);
    assert_eq!(
        format["schema"], schema,
        "the schema goes as the caller wrote it"
    );

    // The answer is still validated against it.
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_2")
            .message(r#"{"counts": {"apples": "two"}, "total": 2}"#)
            .completed(),
    ));
    let done = run(&fake, "Count the fruit.", Some(schema)).await;
    assert_eq!(
        done.error().metadata["error_name"],
        "StructuredOutputInvalid"
    );
}

#[tokio::test]
async fn structured_output_that_does_not_match_the_schema_is_an_error() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .message(r#"{"answer": "forty-two"}"#)
            .completed(),
    ));
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]});
    let done = run(&fake, "Answer in JSON.", Some(schema)).await;

    let error = done.error();
    assert_eq!(error.metadata["error_name"], "StructuredOutputInvalid");
    assert!(error.message.contains("/answer"), "{}", error.message);
    assert_eq!(error.metadata["turns"], 1);
    assert!(error.metadata["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn structured_output_that_is_not_json_is_an_error() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .message("Sure! It's 42.")
            .completed(),
    ));
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}}});
    let done = run(&fake, "Answer in JSON.", Some(schema)).await;
    assert_eq!(
        done.error().metadata["error_name"],
        "StructuredOutputInvalid"
    );
    assert!(
        done.error().message.contains("not JSON"),
        "{}",
        done.error().message
    );
}

#[tokio::test]
async fn a_slow_command_is_killed_at_the_timeout_the_model_asked_for() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .shell_call("call_1", "echo started; sleep 30; echo never", Some(300))
            .completed(),
    ));
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_2")
            .message("It timed out.")
            .completed(),
    ));
    let started = std::time::Instant::now();
    let done = run(&fake, "Run something slow.", None).await;

    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(done.text(), "It timed out.");
    let output = input_of(&fake, 1)[2]["output"].as_str().unwrap().to_owned();
    assert!(output.starts_with("timed out after 300 ms"), "{output}");
    assert!(output.contains("exit_code: 124"), "{output}");
    assert!(output.contains("started"), "{output}");
    assert!(!output.contains("never"), "{output}");
}

#[tokio::test]
async fn long_command_output_is_shortened_for_the_model_but_streamed_whole() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .shell_call("call_1", "seq 1 20000", None)
            .completed(),
    ));
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_2")
            .message("Lots of numbers.")
            .completed(),
    ));
    let mut config = support::harness::config();
    config.tool_output_max_chars = 1_000;
    let agent = runtimeuse_agents::OpenAiAgent::new(config);
    let request = support::harness::request(support::harness::env_for(&fake), "Count.", None);
    let done = support::harness::run_with(&agent, request).await;

    assert_eq!(done.text(), "Lots of numbers.");
    let streamed: String = done
        .of_type("command_output_message")
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed.lines().count(), 20_000);
    let output = input_of(&fake, 1)[2]["output"].as_str().unwrap().to_owned();
    assert!(output.chars().count() < 1_100, "{}", output.len());
    assert!(output.contains("characters omitted"), "{output}");
    assert!(
        output.contains("\n19999\n20000\nstderr: (empty)\n"),
        "the tail is kept: {output}"
    );
}

#[tokio::test]
async fn an_unknown_tool_or_bad_arguments_are_reported_to_the_model() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .function_call_raw("fc_0", "call_a", "python", r#"{"code": "print(1)"}"#)
            .function_call_raw("fc_1", "call_b", "shell", r#"{"cmd": "ls"}"#)
            .completed(),
    ));
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_2").message("Sorry.").completed(),
    ));
    let done = run(&fake, "Do something odd.", None).await;

    assert_eq!(done.text(), "Sorry.");
    let input = input_of(&fake, 1);
    assert_eq!(input[3]["call_id"], "call_a");
    assert!(
        input[3]["output"]
            .as_str()
            .unwrap()
            .contains("no tool named `python`")
    );
    assert_eq!(input[4]["call_id"], "call_b");
    assert!(
        input[4]["output"]
            .as_str()
            .unwrap()
            .contains("arguments are not valid")
    );
    assert!(done.of_type("command_output_message").is_empty());
}

#[tokio::test]
async fn native_shell_calls_are_answered_with_one_entry_per_command() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .native_shell_call(
                "call_sh",
                &["echo one", "printf 'x%.0s' $(seq 1 100); exit 3"],
                40,
            )
            .completed(),
    ));
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_2")
            .message("Ran both.")
            .completed(),
    ));
    let done = run(&fake, "Use the shell.", None).await;

    assert_eq!(done.text(), "Ran both.");
    let answer = &input_of(&fake, 1)[2];
    assert_eq!(answer["type"], "shell_call_output");
    assert_eq!(answer["call_id"], "call_sh");
    assert_eq!(answer["max_output_length"], 40);
    let entries = answer["output"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["stdout"], "one\n");
    assert_eq!(
        entries[0]["outcome"],
        json!({"type": "exit", "exit_code": 0})
    );
    assert_eq!(
        entries[1]["outcome"],
        json!({"type": "exit", "exit_code": 3})
    );
    assert!(
        entries[1]["stdout"]
            .as_str()
            .unwrap()
            .contains("characters omitted")
    );
}
