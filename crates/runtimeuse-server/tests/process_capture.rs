//! The command runner's capture is cut after redaction: a result never ends in half a
//! secret, whatever the limit.

use runtimeuse_protocol::Command;
use runtimeuse_server::command::{CommandOptions, run_command};
use runtimeuse_server::outbox::Outbox;
use runtimeuse_server::redact::Redactor;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "sk-capture-cut-0123456789abcdefghijklmnopqrstuv";

async fn captured(limit: usize, prefix: usize) -> (String, bool) {
    let (outbox, mut frames) = Outbox::channel(1024);
    outbox.add_secrets(&Redactor::new([SECRET]));
    // Drain the streamed frames so the command never waits for room.
    let drain = tokio::spawn(async move { while frames.recv().await.is_some() {} });
    let options = CommandOptions {
        capture_limit: limit,
        ..CommandOptions::default()
    };
    let command = Command::new(format!(
        "head -c {prefix} /dev/zero | tr '\\0' a; printf '%s' '{SECRET}'; head -c 2000 /dev/zero | tr '\\0' b; echo tail"
    ));
    let outcome = run_command(&command, &options, &outbox, &CancellationToken::new())
        .await
        .expect("runs");
    drop(outbox);
    let _ = drain.await;
    (outcome.stdout, outcome.stdout_truncated)
}

#[tokio::test]
async fn a_limit_falling_inside_a_secret_leaves_no_part_of_it() {
    // Every cut from just before the secret to inside its last byte.
    for offset in [1, 5, 20, SECRET.len() - 1] {
        let (stdout, truncated) = captured(1000, 1000 - offset).await;
        assert!(truncated, "offset {offset}");
        assert!(
            stdout.len() <= 1000,
            "offset {offset}: {} bytes",
            stdout.len()
        );
        let tail = &stdout[stdout.len().saturating_sub(SECRET.len())..];
        for n in 4..=SECRET.len() {
            assert!(
                !tail.ends_with(&SECRET[..n]),
                "offset {offset}: the capture ends with {n} bytes of the secret: {tail:?}"
            );
        }
        assert!(!stdout.contains("sk-capture"), "offset {offset}");
    }
}

#[tokio::test]
async fn a_secret_within_the_limit_is_redacted_and_the_rest_kept() {
    let (stdout, truncated) = captured(10_000, 10).await;
    assert!(!truncated);
    assert!(!stdout.contains(SECRET));
    assert!(stdout.starts_with("aaaaaaaaaa"), "{stdout:?}");
    assert!(stdout.ends_with("tail\n"), "{stdout:?}");
    assert!(stdout.contains("REDACTED"), "{stdout:?}");
}
