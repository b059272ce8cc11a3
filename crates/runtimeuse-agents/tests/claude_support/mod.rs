//! Support for the Claude tests: a fake `claude` placed on the runtime's PATH (a Python
//! script speaking stream-json, see fake_claude.py), the whole runtime serving
//! `--agent claude`, and what the fake recorded.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runtimeuse_agents::claude::{ClaudeAgent, ClaudeConfig};
use runtimeuse_server::server::{Server, ServerConfig, ServerHandle};
use runtimeuse_server::session::SessionConfig;
use serde_json::{Value, json};

/// A directory holding a fake `claude` and the files it writes.
pub struct FakeCli {
    dir: tempfile::TempDir,
}

impl FakeCli {
    /// Copies the fake in as `<dir>/bin/claude`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let source =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/claude_support/fake_claude.py");
        let target = bin.join("claude");
        std::fs::copy(source, &target).unwrap();
        Self { dir }
    }

    /// The directory to put first on PATH.
    pub fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// Where the fake records what it got.
    pub fn record_path(&self) -> PathBuf {
        self.dir.path().join("record.jsonl")
    }

    /// Where the SLOW scenario writes its pids.
    pub fn pids_path(&self) -> PathBuf {
        self.dir.path().join("pids")
    }

    /// `agent_env` that puts the fake first on PATH and tells it where to record.
    pub fn agent_env(&self) -> Value {
        let path = format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        json!({
            "PATH": path,
            "FAKE_CLAUDE_RECORD": self.record_path(),
            "FAKE_CLAUDE_PIDS": self.pids_path(),
        })
    }

    /// Every line the fake recorded.
    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.record_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The argv the fake got.
    pub fn argv(&self) -> Vec<String> {
        let records = self.records();
        let first = records.iter().find(|r| r.get("argv").is_some()).unwrap();
        serde_json::from_value(first["argv"].clone()).unwrap()
    }

    /// The environment the fake got.
    pub fn env(&self) -> BTreeMap<String, String> {
        let records = self.records();
        let first = records.iter().find(|r| r.get("env").is_some()).unwrap();
        serde_json::from_value(first["env"].clone()).unwrap()
    }

    /// The stdin lines the fake read, parsed.
    pub fn stdin_lines(&self) -> Vec<Value> {
        self.records()
            .iter()
            .filter_map(|r| {
                r["stdin"]
                    .as_str()
                    .map(|s| serde_json::from_str(s).unwrap())
            })
            .collect()
    }

    /// Whether the fake saw its stdin closed.
    pub fn saw_stdin_closed(&self) -> bool {
        self.records().iter().any(|r| r["stdin_closed"] == true)
    }
}

/// The runtime serving `--agent claude` with the CLI `program` (a bare name is looked up
/// on the child's PATH, which the tests set through `agent_env`).
pub async fn serve(program: &Path, tune: impl FnOnce(&mut ClaudeConfig)) -> ServerHandle {
    let mut config = ClaudeConfig::new(program);
    config.max_turns = Some(7);
    tune(&mut config);
    let mut session = SessionConfig::new(Arc::new(ClaudeAgent::new(config)));
    session.agent_cancel_grace = Duration::from_secs(10);
    let server = ServerConfig::new("127.0.0.1:0".parse().unwrap(), session);
    Server::bind(server).await.unwrap().spawn()
}
