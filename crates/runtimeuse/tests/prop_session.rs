//! Property test of the session state machine: random sequences of client frames
//! (requests, out-of-order cancels, end_session, upload responses real and bogus,
//! malformed and unknown frames, pauses) sent to a real session with the real echo agent,
//! real shell commands and a real artifacts directory, answered by a client that answers
//! every upload request. Invariants: no panic, every frame sent is valid protocol, one
//! terminal per request, one confirm per end_session and nothing after it.
//!
//! Bounded for the normal test run (`PROPTEST_CASES` raises the number of cases).

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config;
use runtimeuse_agents::EchoAgent;
use runtimeuse_protocol::{Incoming, ServerMessage, parse_server_frame};
use runtimeuse_server::artifacts::ArtifactOptions;
use runtimeuse_server::outbox::Outbox;
use runtimeuse_server::session::{Session, SessionConfig, SessionEnd};
use runtimeuse_testkit::BlobServer;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Hang guard for one whole sequence (each one takes well under a second).
const GUARD: Duration = Duration::from_secs(60);

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// One thing the client does.
#[derive(Debug, Clone)]
enum Step {
    /// An invocation with this echo prompt; optionally watching the artifacts dir.
    Invoke(Prompt, bool),
    /// A command execution of these shell commands.
    Execute(Vec<&'static str>, bool),
    Cancel,
    EndSession,
    /// An upload response for a file that was never announced.
    BogusUploadResponse,
    /// A frame that is not a valid message.
    Malformed(&'static str),
    /// A message of a type the runtime does not know.
    Unknown,
    /// Waits this many milliseconds before the next step.
    Pause(u64),
}

#[derive(Debug, Clone)]
enum Prompt {
    Echo,
    Slow(u64),
    Stream(u8),
    Error,
    Structured,
    WriteFile(u8),
}

impl Step {
    /// Whether the runtime owes this frame one terminal message.
    fn owes_terminal(&self) -> bool {
        matches!(
            self,
            Step::Invoke(..) | Step::Execute(..) | Step::Malformed(_)
        )
    }
}

fn step() -> impl Strategy<Value = Step> {
    let prompt = prop_oneof![
        Just(Prompt::Echo),
        prop_oneof![0..30u64, Just(60_000u64)].prop_map(Prompt::Slow),
        (0..4u8).prop_map(Prompt::Stream),
        Just(Prompt::Error),
        Just(Prompt::Structured),
        (0..3u8).prop_map(Prompt::WriteFile),
    ];
    let commands = prop::collection::vec(
        prop::sample::select(
            &[
                "echo out",
                "echo err >&2",
                "exit 3",
                "sleep 0.05",
                "sleep 60",
            ][..],
        ),
        1..3,
    );
    let malformed = prop::sample::select(
        &[
            "not json",
            "[]",
            "{}",
            r#"{"message_type":"invocation_message"}"#,
            r#"{"message_type":"command_execution_message","commands":"ls"}"#,
            r#"{"message_type":"artifact_upload_response_message","filename":1}"#,
        ][..],
    );
    prop_oneof![
        4 => (prompt, any::<bool>()).prop_map(|(p, w)| Step::Invoke(p, w)),
        3 => (commands, any::<bool>()).prop_map(|(c, w)| Step::Execute(c, w)),
        3 => Just(Step::Cancel),
        1 => Just(Step::EndSession),
        1 => Just(Step::BogusUploadResponse),
        1 => malformed.prop_map(Step::Malformed),
        1 => Just(Step::Unknown),
        3 => (0..40u64).prop_map(Step::Pause),
    ]
}

struct Run {
    frames: Vec<ServerMessage>,
    end: SessionEnd,
}

fn frame_for(step: &Step, dir: &str) -> Option<String> {
    let artifacts = |watch: bool| if watch { json!([dir]) } else { json!(null) };
    let frame = match step {
        Step::Invoke(prompt, watch) => {
            let prompt = match prompt {
                Prompt::Echo => "ECHO:hello".to_owned(),
                Prompt::Slow(ms) => format!("SLOW:{ms}"),
                Prompt::Stream(n) => format!("STREAM:{n}"),
                Prompt::Error => "ERROR:boom".to_owned(),
                Prompt::Structured => r#"STRUCTURED:{"a":1}"#.to_owned(),
                Prompt::WriteFile(n) => format!("WRITE_FILE:{dir}/f{n}.txt content {n}"),
            };
            json!({
                "message_type": "invocation_message",
                "system_prompt": "s", "user_prompt": prompt, "model": "m",
                "secrets_to_redact": ["hunter2"],
                "artifacts_dirs": artifacts(*watch || matches!(prompt.as_str(), p if p.starts_with("WRITE_FILE"))),
            })
        }
        Step::Execute(commands, watch) => json!({
            "message_type": "command_execution_message",
            "commands": commands.iter().map(|c| json!({"command": c})).collect::<Vec<_>>(),
            "artifacts_dirs": artifacts(*watch),
        }),
        Step::Cancel => json!({"message_type": "cancel_message"}),
        Step::EndSession => json!({"message_type": "end_session_message"}),
        Step::BogusUploadResponse => json!({
            "message_type": "artifact_upload_response_message",
            "filename": "nope.txt", "filepath": "/nowhere/nope.txt",
            "presigned_url": "http://127.0.0.1:9/x", "content_type": "text/plain",
        }),
        Step::Malformed(text) => return Some((*text).to_owned()),
        Step::Unknown => json!({"message_type": "future_message", "x": 1}),
        Step::Pause(_) => return None,
    };
    Some(frame.to_string())
}

/// Plays `steps` against a fresh session; the client side answers every upload request
/// (with a URL of the loopback blob server) until the session ends. Without an
/// end_session in the steps, the client leaves at the end.
async fn play(steps: &[Step]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_name = dir.path().display().to_string();
    let blobs = BlobServer::start().await;
    let mut config = SessionConfig::new(Arc::new(EchoAgent));
    config.artifacts = ArtifactOptions {
        late_event_grace: Duration::from_millis(50),
        handshake_timeout: Duration::from_secs(5),
        upload_timeout: Duration::from_secs(5),
        ..ArtifactOptions::default()
    };
    config.agent_cancel_grace = Duration::from_secs(2);
    let (outbox, mut outgoing) = Outbox::channel(64);
    let (client, inbound) = mpsc::channel::<String>(64);
    let session =
        tokio::spawn(Session::new(Arc::new(config), outbox).run(inbound, CancellationToken::new()));

    // The reading side: records every frame, answers upload requests.
    // Weak, so that dropping `client` is the client leaving.
    let answers = client.downgrade();
    let url = blobs.url("artifact");
    let reader = tokio::spawn(async move {
        let mut frames = Vec::new();
        while let Some(text) = outgoing.recv().await {
            let message = match parse_server_frame(&text) {
                Ok(Incoming::Message(message)) => message,
                other => panic!("runtime sent an invalid frame {text}: {other:?}"),
            };
            if let ServerMessage::ArtifactUploadRequestMessage(request) = &message {
                let answer = json!({
                    "message_type": "artifact_upload_response_message",
                    "filename": request.filename, "filepath": request.filepath,
                    "presigned_url": url, "content_type": "text/plain",
                });
                if let Some(answers) = answers.upgrade() {
                    let _ = answers.send(answer.to_string()).await;
                }
            }
            frames.push(message);
        }
        frames
    });

    for step in steps {
        if let Step::Pause(ms) = step {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
        } else if let Some(frame) = frame_for(step, &dir_name) {
            // The session may have ended (after an end_session): the rest is unheard.
            let _ = client.send(frame).await;
        }
    }
    drop(client);
    let end = session.await.expect("the session task does not panic");
    let frames = reader.await.expect("the reader does not panic");
    drop(blobs);
    Run { frames, end }
}

fn is_terminal(message: &ServerMessage) -> bool {
    matches!(
        message,
        ServerMessage::ResultMessage(_)
            | ServerMessage::CommandExecutionResultMessage(_)
            | ServerMessage::ErrorMessage(_)
    )
}

fn check(steps: &[Step], run: &Run) -> Result<(), TestCaseError> {
    let end_at = steps.iter().position(|s| matches!(s, Step::EndSession));
    let before = &steps[..end_at.unwrap_or(steps.len())];
    let owed_before = before.iter().filter(|s| s.owes_terminal()).count();
    let terminals = run.frames.iter().filter(|m| is_terminal(m)).count();
    let confirms = run
        .frames
        .iter()
        .filter(|m| matches!(m, ServerMessage::EndSessionConfirmMessage))
        .count();
    for message in &run.frames {
        if let ServerMessage::ErrorMessage(e) = message {
            prop_assert!(!e.error.contains("internal error"), "{}", e.error);
        }
        let text = serde_json::to_string(message).expect("serialises");
        prop_assert!(!text.contains("hunter2"), "secret leaked: {text}");
    }
    match end_at {
        Some(_) => {
            prop_assert_eq!(run.end, SessionEnd::EndSession);
            prop_assert_eq!(confirms, 1, "one confirm per end_session");
            prop_assert!(
                matches!(
                    run.frames.last(),
                    Some(ServerMessage::EndSessionConfirmMessage)
                ),
                "the confirm is the last frame"
            );
            // Frames after end_session are answered only while the session drains.
            let owed_after = steps[end_at.unwrap_or(0)..]
                .iter()
                .filter(|s| matches!(s, Step::Invoke(..) | Step::Execute(..)))
                .count();
            prop_assert!(
                terminals >= owed_before && terminals <= owed_before + owed_after,
                "{terminals} terminals for {owed_before} requests (+ up to {owed_after} after end_session)"
            );
        }
        None => {
            prop_assert_eq!(run.end, SessionEnd::ClientGone);
            prop_assert_eq!(confirms, 0);
            // A request still running when the client leaves gets no terminal: nobody
            // is there to read it.
            prop_assert!(
                terminals == owed_before || terminals + 1 == owed_before,
                "{terminals} terminals for {owed_before} requests"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_client_sequences_keep_the_session_invariants(
        steps in prop::collection::vec(step(), 1..14)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let run = runtime
            .block_on(async { tokio::time::timeout(GUARD, play(&steps)).await })
            .expect("the sequence ends within the guard: no hang");
        check(&steps, &run)?;
    }
}
