//! Which process serves `--handler PROGRAM [ARGS…]`: the program itself, or, for a
//! JavaScript/TypeScript module, `node` running the adapter the runtime carries.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runtimeuse_server::process::{Environment, ProcessError, Spawn};
use tempfile::TempPath;
use tokio::io::AsyncReadExt as _;

/// The Node adapter, written to a temporary file when a JS handler is configured.
const NODE_ADAPTER: &str = include_str!("../../assets/node-adapter.mjs");

/// File extensions run through the Node adapter.
const JS_EXTENSIONS: [&str; 6] = ["js", "mjs", "cjs", "ts", "mts", "cts"];

/// Hang guard for `node --version`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of `node --version` output read.
const PROBE_STDOUT: u64 = 4 * 1024;

/// Bytes of `node --version` stderr kept for the error message.
const PROBE_STDERR: usize = 4 * 1024;

/// Why `--handler` cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The program is neither a path to an existing file nor found on `PATH`.
    #[error("handler program {0:?} not found (neither a file nor on PATH)")]
    ProgramNotFound(String),
    /// The JS/TS module does not exist.
    #[error("handler module {0} not found")]
    ModuleNotFound(PathBuf),
    /// `node` is needed for a JS/TS handler and does not run.
    #[error(
        "a JavaScript handler needs Node.js: `{node} --version` failed ({reason}); install Node.js (https://nodejs.org) so that `node` is on PATH"
    )]
    NodeMissing {
        /// The node program tried.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// The installed node cannot load TypeScript.
    #[error(
        "node {version} cannot load the TypeScript handler {module}: Node.js 22.6 or newer strips types; compile it to .js or upgrade node"
    )]
    TypeScriptUnsupported {
        /// `node --version`.
        version: String,
        /// The module.
        module: PathBuf,
    },
    /// The adapter could not be written to a temporary file.
    #[error("could not write the Node adapter to a temporary file: {0}")]
    Adapter(std::io::Error),
}

/// The resolved program and arguments each invocation starts.
#[derive(Debug, Clone)]
pub struct HandlerProgram {
    /// Absolute path of the executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Keeps the adapter file alive as long as the program may be started.
    _adapter: Option<Arc<TempPath>>,
}

impl HandlerProgram {
    /// Resolves `--handler program args…` against the current directory and `path_var`
    /// (the `PATH` to search). `node` names the Node.js executable used for modules whose
    /// extension is one of `.js .mjs .cjs .ts .mts .cts`.
    ///
    /// # Errors
    ///
    /// A [`HandlerError`] saying what is missing.
    pub async fn resolve(
        program: &str,
        args: &[String],
        node: &str,
        path_var: Option<&str>,
    ) -> Result<Self, HandlerError> {
        let as_path = Path::new(program);
        let is_module = as_path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| JS_EXTENSIONS.contains(&e));
        if is_module {
            return Self::node_module(as_path, args, node, path_var).await;
        }
        let resolved = find_program(program, path_var)
            .ok_or_else(|| HandlerError::ProgramNotFound(program.to_owned()))?;
        Ok(Self {
            program: resolved,
            args: args.iter().map(OsString::from).collect(),
            _adapter: None,
        })
    }

    async fn node_module(
        module: &Path,
        args: &[String],
        node: &str,
        path_var: Option<&str>,
    ) -> Result<Self, HandlerError> {
        let module = std::path::absolute(module)
            .ok()
            .filter(|m| m.is_file())
            .ok_or_else(|| HandlerError::ModuleNotFound(module.to_path_buf()))?;
        let node_path = find_program(node, path_var).ok_or_else(|| HandlerError::NodeMissing {
            node: node.to_owned(),
            reason: "not found on PATH".into(),
        })?;
        let version =
            node_version(&node_path)
                .await
                .map_err(|reason| HandlerError::NodeMissing {
                    node: node.to_owned(),
                    reason,
                })?;
        let mut node_args: Vec<OsString> = Vec::new();
        let typescript = module
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.ends_with("ts"));
        if typescript {
            match parse_version(&version) {
                Some(v) if v >= (23, 6) => {}
                Some(v) if v >= (22, 6) => node_args.push("--experimental-strip-types".into()),
                _ => return Err(HandlerError::TypeScriptUnsupported { version, module }),
            }
        }
        let adapter = write_adapter()?;
        node_args.push(adapter.as_os_str().to_owned());
        node_args.push(module.into_os_string());
        node_args.extend(args.iter().map(OsString::from));
        Ok(Self {
            program: node_path,
            args: node_args,
            _adapter: Some(Arc::new(adapter)),
        })
    }
}

/// Writes the adapter where node can load it as an ES module.
fn write_adapter() -> Result<TempPath, HandlerError> {
    let mut file = tempfile::Builder::new()
        .prefix("runtimeuse-node-adapter-")
        .suffix(".mjs")
        .tempfile()
        .map_err(HandlerError::Adapter)?;
    std::io::Write::write_all(&mut file, NODE_ADAPTER.as_bytes()).map_err(HandlerError::Adapter)?;
    Ok(file.into_temp_path())
}

/// `node --version`, run once at start-up, through the same process primitive as
/// everything else the runtime starts (so node gets the filtered environment, its own
/// process group, and is killed if it hangs).
/// How long a failed probe waits for the rest of node's stderr.
const PROBE_TAIL_WAIT: Duration = Duration::from_secs(5);

async fn node_version(node: &Path) -> Result<String, String> {
    let mut process = Spawn::new(node)
        .arg("--version")
        .env(Environment::inherited())
        .stderr_tail(PROBE_STDERR)
        .spawn()
        .map_err(|error| {
            let ProcessError::Spawn { source, .. } = error;
            source.to_string()
        })?;
    let mut stdout = process.take_stdout();
    let run = async {
        let mut out = String::new();
        if let Some(stdout) = stdout.as_mut() {
            // A version is a few bytes; the cap keeps a strange `node` from filling memory.
            let _ = stdout.take(PROBE_STDOUT).read_to_string(&mut out).await;
        }
        (process.wait().await, out)
    };
    let (status, out) = tokio::time::timeout(PROBE_TIMEOUT, run)
        .await
        .map_err(|_| format!("it did not finish in {} s", PROBE_TIMEOUT.as_secs()))?;
    // Dropping the process (on every return) kills whatever node left behind.
    let status = status.map_err(|e| e.to_string())?;
    if !status.success() {
        let tail = match process.stderr_tail() {
            Some(tail) => tail.final_text(PROBE_TAIL_WAIT).await,
            None => String::new(),
        };
        let tail = tail.trim();
        return Err(if tail.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {tail}")
        });
    }
    Ok(out.trim().to_owned())
}

/// `v22.6.1` → `(22, 6)`.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A name with a slash is a path (made absolute); a bare name is searched on `path_var`.
fn find_program(program: &str, path_var: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        return std::path::absolute(program)
            .ok()
            .filter(|p| is_executable(p));
    }
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("v22.6.1"), Some((22, 6)));
        assert_eq!(parse_version("v20.20.2\n"), Some((20, 20)));
        assert_eq!(parse_version("nonsense"), None);
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let error =
            HandlerProgram::resolve("no-such-handler-xyz", &[], "node", Some("/nonexistent"))
                .await
                .unwrap_err();
        assert!(error.to_string().contains("no-such-handler-xyz"), "{error}");
    }

    #[tokio::test]
    async fn a_missing_node_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("handler.mjs");
        std::fs::write(&module, "export default { async run() {} }").unwrap();
        let error = HandlerProgram::resolve(
            module.to_str().unwrap(),
            &[],
            "node",
            Some(dir.path().to_str().unwrap()),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, HandlerError::NodeMissing { .. }), "{error}");
        assert!(error.to_string().contains("install Node.js"), "{error}");
    }

    /// A fake `node` (a shell script) in a fresh directory, answering `--version` with
    /// `body`.
    fn fake_node(body: &str) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node");
        std::fs::write(&node, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_node_that_fails_its_version_probe_is_reported_with_its_stderr() {
        let dir = fake_node("echo 'node: broken install' >&2; exit 7");
        let module = dir.path().join("handler.mjs");
        std::fs::write(&module, "export default {}").unwrap();
        let error = HandlerProgram::resolve(
            module.to_str().unwrap(),
            &[],
            "node",
            Some(dir.path().to_str().unwrap()),
        )
        .await
        .unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, HandlerError::NodeMissing { .. }), "{text}");
        assert!(text.contains("exit status: 7"), "{text}");
        assert!(text.contains("node: broken install"), "{text}");
    }

    #[tokio::test]
    async fn the_probed_node_version_decides_how_typescript_is_loaded() {
        let dir = fake_node("echo v22.7.0");
        let module = dir.path().join("handler.ts");
        std::fs::write(&module, "export default {}").unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let program = HandlerProgram::resolve(
            module.to_str().unwrap(),
            &["--flag".to_owned()],
            "node",
            Some(&path),
        )
        .await
        .unwrap();
        assert_eq!(program.program, dir.path().join("node"));
        assert_eq!(program.args[0], "--experimental-strip-types");
        assert_eq!(program.args.last().unwrap(), "--flag");

        let old = fake_node("echo v20.1.0");
        let error = HandlerProgram::resolve(
            module.to_str().unwrap(),
            &[],
            "node",
            Some(old.path().to_str().unwrap()),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, HandlerError::TypeScriptUnsupported { .. }),
            "{error}"
        );
    }
}
