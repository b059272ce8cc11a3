//! What scripts written for other tools rely on: the readiness lines (ours and upstream's),
//! `--version` with the commit, and `exec`'s argv semantics (`docker exec` style).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use common::start_runtime;

/// The real binary, killed on drop so that a failing test leaves nothing running.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
            .args(&args)
            .output()
            .expect("run runtimeuse")
    })
    .await
    .expect("join")
}

fn exec_args(url: String, words: &[&str]) -> Vec<String> {
    let mut args = vec!["exec".to_owned(), url, "--".to_owned()];
    args.extend(words.iter().map(|w| (*w).to_owned()));
    args
}

#[test]
fn upstream_readiness_line_follows_ours_with_the_same_port() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
        .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn runtimeuse");
    let stdout = child.stdout.take().expect("stdout");
    let served = Served(child);
    let mut lines = BufReader::new(stdout).lines();
    let ours = lines.next().expect("first line").expect("read");
    let upstream = lines.next().expect("second line").expect("read");
    let port: u16 = ours
        .strip_prefix("runtimeuse listening on ws://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected first line {ours:?}"))
        .parse()
        .expect("port");
    assert_ne!(port, 0);
    assert_eq!(
        upstream,
        format!("RuntimeUse server listening on port {port}")
    );
    // The port printed is the one served.
    let stream = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(stream.is_ok(), "nothing listens on the printed port {port}");
    drop(served);
}

#[test]
fn version_prints_the_crate_version_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
        .arg("--version")
        .output()
        .expect("run runtimeuse --version");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let prefix = format!("runtimeuse {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = text
        .trim_end()
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version output {text:?}"));
    let in_git = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git && std::env::var_os("RUNTIMEUSE_COMMIT").is_none() {
        assert_eq!(commit.len(), 12, "short commit expected, got {commit:?}");
        assert!(commit.chars().all(|c| c.is_ascii_hexdigit()), "{commit:?}");
        // HEAD may have moved since the build; the commit must still be an object here.
        let known = Command::new("git")
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("git cat-file");
        assert!(
            known.success(),
            "{commit} is not a commit of this repository"
        );
    } else {
        assert!(!commit.is_empty());
    }
}

#[tokio::test]
async fn exec_with_several_words_runs_them_as_one_argv() {
    let runtime = start_runtime(|_| {}).await;
    let out = run(exec_args(runtime.ws_url(), &["sh", "-c", "exit 3"])).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

#[tokio::test]
async fn exec_words_reach_the_program_exactly_as_given() {
    let runtime = start_runtime(|_| {}).await;
    let words = ["printf", "[%s]", "a b", "c'd", "$HOME", "", "*", "x\"y;z|w"];
    let out = run(exec_args(runtime.ws_url(), &words)).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[a b][c'd][$HOME][][*][x\"y;z|w]"
    );
}

#[tokio::test]
async fn exec_with_one_word_runs_it_as_a_shell_line() {
    let runtime = start_runtime(|_| {}).await;
    let out = run(exec_args(runtime.ws_url(), &["echo one | tr o 0; exit 4"])).await;
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0ne\n");
}

#[tokio::test]
async fn exec_passes_control_characters_and_newlines_quoted() {
    let runtime = start_runtime(|_| {}).await;
    let out = run(exec_args(runtime.ws_url(), &["echo", "a\u{1}b\nc"])).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\u{1}b\nc\n");
}
