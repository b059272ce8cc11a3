//! `run_command` against real child processes: streaming, exit codes, back-pressure,
//! redaction, UTF-8, cancellation of whole process trees, timeouts.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use runtimeuse_protocol::{Command, CommandOutput, Incoming, OutputStream, ServerMessage};
use runtimeuse_server::command::{
    CommandError, CommandOptions, CommandOutcome, TIMEOUT_EXIT_CODE, run_command,
};
use runtimeuse_server::outbox::{Outbox, OutboxReceiver};
use runtimeuse_server::redact::Redactor;
use tokio_util::sync::CancellationToken;

use support::memory::memory_kib;

fn options(dir: &Path) -> CommandOptions {
    CommandOptions {
        default_cwd: dir.to_path_buf(),
        kill_grace: Duration::from_millis(300),
        drain_after_exit: Duration::from_millis(500),
        ..CommandOptions::default()
    }
}

fn output_of(frame: &str) -> CommandOutput {
    match runtimeuse_protocol::parse_server_frame(frame) {
        Ok(Incoming::Message(ServerMessage::CommandOutputMessage(output))) => output,
        other => panic!("unexpected frame {frame}: {other:?}"),
    }
}

/// Every output frame, read until every outbox clone is gone.
async fn collect(mut rx: OutboxReceiver) -> Vec<CommandOutput> {
    let mut outputs = Vec::new();
    while let Some(frame) = rx.recv().await {
        outputs.push(output_of(&frame));
    }
    outputs
}

fn joined(outputs: &[CommandOutput], stream: OutputStream) -> String {
    outputs
        .iter()
        .filter(|o| o.stream == stream)
        .map(|o| o.text.as_str())
        .collect()
}

/// Runs `command` with a reader draining the outbox; returns the result and every chunk.
async fn run(
    command: Command,
    options: CommandOptions,
    outbox: Outbox,
    rx: OutboxReceiver,
) -> (Result<CommandOutcome, CommandError>, Vec<CommandOutput>) {
    let reader = tokio::spawn(collect(rx));
    let result = run_command(&command, &options, &outbox, &CancellationToken::new()).await;
    drop(outbox);
    (result, reader.await.unwrap())
}

async fn run_simple(command: &str, dir: &Path) -> (CommandOutcome, Vec<CommandOutput>) {
    let (outbox, rx) = Outbox::channel(16);
    let (result, outputs) = run(Command::new(command), options(dir), outbox, rx).await;
    (result.unwrap(), outputs)
}

/// Whether `pid` has exited (gone, or a zombie waiting for whoever adopted it).
fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_until_dead(pid: i32, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    is_dead(pid)
}

async fn read_pid(pidfile: &Path) -> i32 {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(pidfile)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no pid written to {}",
            pidfile.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Spawns `command` on its own task with a cancel token the test controls.
fn spawn_cancellable(
    command: String,
    options: CommandOptions,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<CommandOutcome, CommandError>>,
) {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let (outbox, rx) = Outbox::channel(16);
    tokio::spawn(collect(rx));
    let task = tokio::spawn(async move {
        run_command(&Command::new(command), &options, &outbox, &token).await
    });
    (cancel, task)
}

/// What `seq 1 n` prints.
fn numbered_lines(n: u32) -> String {
    let mut lines = String::new();
    for i in 1..=n {
        writeln!(lines, "{i}").unwrap();
    }
    lines
}

#[tokio::test]
async fn stdout_and_stderr_are_streamed_separately_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, outputs) = run_simple(
        "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; sleep 0.01; done; exit 3",
        dir.path(),
    )
    .await;
    assert_eq!(outcome.exit_code, 3);
    assert_eq!(
        joined(&outputs, OutputStream::Stdout),
        "out1\nout2\nout3\nout4\nout5\n"
    );
    assert_eq!(
        joined(&outputs, OutputStream::Stderr),
        "err1\nerr2\nerr3\nerr4\nerr5\n"
    );
    assert_eq!(outcome.stdout, "out1\nout2\nout3\nout4\nout5\n");
    assert_eq!(outcome.stderr, "err1\nerr2\nerr3\nerr4\nerr5\n");
    assert!(!outcome.stdout_truncated && !outcome.timed_out);
    assert!(outputs.iter().all(|o| !o.text.is_empty()));
    assert!(outputs.iter().all(|o| o.command.starts_with("for i in")));
}

#[tokio::test]
async fn missing_cwd_is_created_and_relative_cwd_resolves_against_default() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    let (outbox, rx) = Outbox::channel(16);
    let command = Command {
        cwd: Some(nested.to_string_lossy().into_owned()),
        ..Command::new("pwd")
    };
    let (result, _) = run(command, options(dir.path()), outbox, rx).await;
    assert_eq!(result.unwrap().stdout.trim(), nested.to_string_lossy());

    let (outbox, rx) = Outbox::channel(16);
    let command = Command {
        cwd: Some("rel/dir".into()),
        ..Command::new("pwd")
    };
    let (result, _) = run(command, options(dir.path()), outbox, rx).await;
    assert_eq!(
        result.unwrap().stdout.trim(),
        dir.path().join("rel/dir").to_string_lossy()
    );

    let (outcome, _) = run_simple("pwd", dir.path()).await;
    assert_eq!(outcome.stdout.trim(), dir.path().to_string_lossy());
}

#[tokio::test]
async fn env_is_merged_over_the_runtime_environment() {
    let dir = tempfile::tempdir().unwrap();
    let env = BTreeMap::from([
        ("RU_TEST_NEW".to_owned(), "new value".to_owned()),
        ("HOME".to_owned(), "/overridden-home".to_owned()),
    ]);
    let command = Command {
        env: Some(env),
        ..Command::new(r#"echo "$RU_TEST_NEW|$HOME|${PATH:+path-inherited}""#)
    };
    let (outbox, rx) = Outbox::channel(16);
    let (result, _) = run(command, options(dir.path()), outbox, rx).await;
    assert_eq!(
        result.unwrap().stdout,
        "new value|/overridden-home|path-inherited\n"
    );
}

#[tokio::test]
async fn env_remove_takes_variables_out_whether_inherited_or_set() {
    let dir = tempfile::tempdir().unwrap();
    // A variable the runtime itself has (cargo sets CARGO_MANIFEST_DIR for tests).
    let inherited = ["HOME", "CARGO_MANIFEST_DIR", "USER"]
        .into_iter()
        .find(|name| std::env::var_os(name).is_some())
        .expect("the test process has none of HOME, CARGO_MANIFEST_DIR, USER");
    let env = BTreeMap::from([
        ("RU_TEST_SET".to_owned(), "set".to_owned()),
        ("RU_TEST_KEPT".to_owned(), "kept".to_owned()),
    ]);
    let command = Command {
        env: Some(env),
        ..Command::new(format!(
            r#"echo "${{{inherited}-unset}}|${{RU_TEST_SET-unset}}|$RU_TEST_KEPT|${{PATH:+path-inherited}}""#
        ))
    };
    let options = CommandOptions {
        env_remove: vec![inherited.to_owned(), "RU_TEST_SET".to_owned()],
        ..options(dir.path())
    };
    let (outbox, rx) = Outbox::channel(16);
    let (result, _) = run(command, options, outbox, rx).await;
    assert_eq!(result.unwrap().stdout, "unset|unset|kept|path-inherited\n");
}

#[tokio::test]
async fn killed_by_signal_reports_128_plus_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, _) = run_simple("kill -TERM $$", dir.path()).await;
    assert_eq!(outcome.exit_code, 143);
    let (outcome, _) = run_simple("kill -9 $$", dir.path()).await;
    assert_eq!(outcome.exit_code, 137);
}

// Two workers: the reader parses frames while the command's output is being encoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_output_streams_every_byte_with_flat_memory_and_capped_capture() {
    const TOTAL: u64 = 300_000_000;
    let dir = tempfile::tempdir().unwrap();
    let rss_before = memory_kib("VmRSS:");
    let (outbox, mut rx) = Outbox::channel(64);
    let reader = tokio::spawn(async move {
        let mut stdout_bytes = 0_u64;
        while let Some(frame) = rx.recv().await {
            let output = output_of(&frame);
            assert_eq!(output.stream, OutputStream::Stdout);
            assert!(output.text.bytes().all(|b| b == b'a'));
            stdout_bytes += output.text.len() as u64;
        }
        stdout_bytes
    });
    let options = CommandOptions {
        capture_limit: 1000,
        ..options(dir.path())
    };
    let start = Instant::now();
    let outcome = run_command(
        &Command::new(format!("head -c {TOTAL} /dev/zero | tr '\\0' a")),
        &options,
        &outbox,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    drop(outbox);
    let streamed = reader.await.unwrap();
    let elapsed = start.elapsed();
    let peak = memory_kib("VmHWM:");

    assert_eq!(outcome.exit_code, 0);
    assert_eq!(streamed, TOTAL);
    assert_eq!(outcome.stdout, "a".repeat(1000));
    assert!(outcome.stdout_truncated);
    assert!(!outcome.stderr_truncated);
    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 100, "memory grew by {growth_mib} MiB");
    eprintln!("streamed {TOTAL} bytes in {elapsed:?}, peak memory growth {growth_mib} MiB");
}

#[tokio::test]
async fn slow_reader_with_capacity_one_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, mut rx) = Outbox::channel(1);
    let reader = tokio::spawn(async move {
        let mut outputs = Vec::new();
        while let Some(frame) = rx.recv().await {
            tokio::time::sleep(Duration::from_millis(2)).await;
            outputs.push(output_of(&frame));
        }
        outputs
    });
    let outcome = run_command(
        &Command::new("seq 1 200000; seq 1 1000 >&2"),
        &options(dir.path()),
        &outbox,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    drop(outbox);
    let outputs = reader.await.unwrap();
    let expected = numbered_lines(200_000);
    let expected_err = numbered_lines(1000);
    assert_eq!(joined(&outputs, OutputStream::Stdout), expected);
    assert_eq!(joined(&outputs, OutputStream::Stderr), expected_err);
    assert_eq!(outcome.stdout, expected);
}

#[tokio::test]
async fn secret_split_across_writes_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, rx) = Outbox::channel(16);
    outbox.add_secrets(&Redactor::new(["SECRET"]));
    let (result, outputs) = run(
        Command::new("printf 'SEC'; sleep 0.2; printf 'RET done'"),
        options(dir.path()),
        outbox,
        rx,
    )
    .await;
    assert_eq!(result.unwrap().exit_code, 0);
    assert_eq!(joined(&outputs, OutputStream::Stdout), "[REDACTED] done");
    assert!(outputs.iter().all(|o| !o.text.contains("SEC")));
}

#[tokio::test]
async fn utf8_char_split_across_writes_survives() {
    let dir = tempfile::tempdir().unwrap();
    // U+20AC EURO SIGN is E2 82 AC.
    let (outcome, outputs) = run_simple(
        r"printf '\342\202'; sleep 0.2; printf '\254 euro'",
        dir.path(),
    )
    .await;
    assert_eq!(joined(&outputs, OutputStream::Stdout), "\u{20AC} euro");
    assert!(outputs.iter().all(|o| !o.text.contains('\u{FFFD}')));
    assert_eq!(outcome.stdout, "\u{20AC} euro");
}

#[tokio::test]
async fn invalid_utf8_becomes_replacement_characters() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, outputs) = run_simple(r"printf 'a\377b'; printf '\342\202'", dir.path()).await;
    assert_eq!(joined(&outputs, OutputStream::Stdout), "a\u{FFFD}b\u{FFFD}");
    assert_eq!(outcome.stdout, "a\u{FFFD}b\u{FFFD}");
}

#[tokio::test]
async fn cancel_kills_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let (cancel, task) = spawn_cancellable(
        format!("sleep 1000 & echo $! > '{}'; wait", pidfile.display()),
        options(dir.path()),
    );
    let grandchild = read_pid(&pidfile).await;
    assert!(!is_dead(grandchild));
    let start = Instant::now();
    cancel.cancel();
    let result = task.await.unwrap();
    assert!(matches!(result, Err(CommandError::Cancelled)), "{result:?}");
    // Against `sleep 1000`: a bound a busy machine keeps.
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert!(wait_until_dead(grandchild, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn cancel_kills_grandchildren_that_ignore_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let (cancel, task) = spawn_cancellable(
        format!(
            "(trap '' TERM; exec sleep 1000) & echo $! > '{}'; wait",
            pidfile.display()
        ),
        options(dir.path()),
    );
    let grandchild = read_pid(&pidfile).await;
    cancel.cancel();
    let result = task.await.unwrap();
    assert!(matches!(result, Err(CommandError::Cancelled)), "{result:?}");
    assert!(wait_until_dead(grandchild, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn cancel_escalates_to_sigkill_when_the_shell_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let (cancel, task) = spawn_cancellable(
        format!(
            "trap '' TERM; sleep 1000 & echo $! > '{}'; wait",
            pidfile.display()
        ),
        options(dir.path()),
    );
    let grandchild = read_pid(&pidfile).await;
    let start = Instant::now();
    cancel.cancel();
    let result = task.await.unwrap();
    let elapsed = start.elapsed();
    assert!(matches!(result, Err(CommandError::Cancelled)), "{result:?}");
    // The 300 ms grace period passed before SIGKILL.
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(wait_until_dead(grandchild, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn dropping_the_command_future_kills_the_process_tree() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let (_cancel, task) = spawn_cancellable(
        format!("sleep 1000 & echo $! > '{}'; wait", pidfile.display()),
        options(dir.path()),
    );
    let grandchild = read_pid(&pidfile).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(wait_until_dead(grandchild, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn command_is_not_started_when_already_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, _rx) = Outbox::channel(16);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let result = run_command(
        &Command::new("touch started"),
        &options(dir.path()),
        &outbox,
        &cancel,
    )
    .await;
    assert!(matches!(result, Err(CommandError::Cancelled)), "{result:?}");
    assert!(!dir.path().join("started").exists());
}

#[tokio::test]
async fn background_child_holding_the_pipe_does_not_hang_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let start = Instant::now();
    let (outcome, _) = run_simple(
        &format!("sleep 30 & echo $! > '{}'; echo started", pidfile.display()),
        dir.path(),
    )
    .await;
    let elapsed = start.elapsed();
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(outcome.stdout, "started\n");
    // Against `sleep 30` holding the pipe.
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    // Left running: the command ended normally.
    let background = read_pid(&pidfile).await;
    assert!(!is_dead(background));
    kill(Pid::from_raw(background), Signal::SIGKILL).unwrap();
}

#[tokio::test]
async fn late_background_output_within_the_drain_window_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, rx) = Outbox::channel(16);
    let options = CommandOptions {
        drain_after_exit: Duration::from_secs(30),
        ..options(dir.path())
    };
    let start = Instant::now();
    let (result, outputs) = run(
        Command::new("(sleep 0.3; echo late) & echo early"),
        options,
        outbox,
        rx,
    )
    .await;
    let outcome = result.unwrap();
    assert_eq!(outcome.stdout, "early\nlate\n");
    assert_eq!(joined(&outputs, OutputStream::Stdout), "early\nlate\n");
    // Ended at EOF, not at the end of the drain window.
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn timeout_kills_the_process_tree_and_reports_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let (outbox, rx) = Outbox::channel(16);
    let options = CommandOptions {
        timeout: Some(Duration::from_millis(500)),
        ..options(dir.path())
    };
    let start = Instant::now();
    let (result, outputs) = run(
        Command::new(format!(
            "echo before; sleep 1000 & echo $! > '{}'; wait",
            pidfile.display()
        )),
        options,
        outbox,
        rx,
    )
    .await;
    let outcome = result.unwrap();
    assert!(outcome.timed_out);
    assert_eq!(outcome.exit_code, TIMEOUT_EXIT_CODE);
    assert_eq!(outcome.stdout, "before\n");
    assert_eq!(joined(&outputs, OutputStream::Stdout), "before\n");
    // Against `sleep 1000`.
    assert!(start.elapsed() < Duration::from_secs(15));
    let grandchild = read_pid(&pidfile).await;
    assert!(wait_until_dead(grandchild, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn output_is_read_and_dropped_once_the_client_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, rx) = Outbox::channel(1);
    drop(rx);
    let result = run_command(
        &Command::new("head -c 5000000 /dev/zero | tr '\\0' b; echo err >&2"),
        &CommandOptions {
            capture_limit: 10,
            ..options(dir.path())
        },
        &outbox,
        &CancellationToken::new(),
    )
    .await;
    let outcome = result.unwrap();
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(outcome.stdout, "bbbbbbbbbb");
    assert!(outcome.stdout_truncated);
    assert_eq!(outcome.stderr, "err\n");
}

#[tokio::test]
async fn cwd_that_cannot_be_created_is_a_cwd_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("regular-file");
    std::fs::write(&file, "x").unwrap();
    let (outbox, _rx) = Outbox::channel(16);
    let command = Command {
        cwd: Some(file.join("sub").to_string_lossy().into_owned()),
        ..Command::new("true")
    };
    let result = run_command(
        &command,
        &options(dir.path()),
        &outbox,
        &CancellationToken::new(),
    )
    .await;
    match result {
        Err(CommandError::Cwd { path, .. }) => assert_eq!(path, file.join("sub")),
        other => panic!("expected a cwd error, got {other:?}"),
    }
}

#[test]
fn run_command_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (outbox, _rx) = Outbox::channel(1);
    let command = Command::new("true");
    let options = CommandOptions::default();
    let cancel = CancellationToken::new();
    let future = run_command(&command, &options, &outbox, &cancel);
    assert_send(&future);
}
