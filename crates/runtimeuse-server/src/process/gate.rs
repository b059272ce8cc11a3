//! Holding a child at its start until it is in its cgroup.
//!
//! Safe Rust cannot run code between `fork` and `exec`, so a child joins its cgroup only
//! after it started; whatever it forks before that (a shell's first background job, at
//! once) would be outside. So in cgroup mode the program is started through
//! `/bin/sh -c 'read -r _ || exit 125; exec "$0" "$@"'`: the shell waits for one line on
//! its stdin, which the runtime writes once the shell (same pid as the program after
//! `exec`) is in the cgroup. `read` takes exactly that line from a pipe, so the program's
//! stdin is otherwise untouched; a child that was to get `/dev/null` gets a pipe closed
//! right after the line (end of file either way).

use std::ffi::{OsStr, OsString};
use std::io::{self, PipeWriter, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::io::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::ChildStdin;

const SCRIPT: &str = r#"read -r _ || exit 125; exec "$0" "$@""#;

/// The same, for an environment without `PWD`, which the shell would otherwise add.
/// (A bash as `/bin/sh` still adds `SHLVL`; dash and busybox add nothing.)
const SCRIPT_NO_PWD: &str = r#"read -r _ || exit 125; unset PWD; exec "$0" "$@""#;

/// Shell used as the gate.
pub(super) const SHELL: &str = "/bin/sh";

/// The write end of a gated child's stdin.
#[derive(Debug)]
pub(super) struct Gate {
    writer: PipeWriter,
}

/// The gate's arguments for running `program` (already resolved) with `args`, and the
/// child's stdin; `keep_pwd` when the child's environment has its own `PWD`.
pub(super) fn close(
    program: &Path,
    args: &[OsString],
    keep_pwd: bool,
) -> io::Result<(Vec<OsString>, Stdio, Gate)> {
    let (reader, writer) = io::pipe()?;
    let script = if keep_pwd { SCRIPT } else { SCRIPT_NO_PWD };
    let mut gate_args = vec![OsString::from("-c"), OsString::from(script), program.into()];
    gate_args.extend(args.iter().cloned());
    Ok((gate_args, Stdio::from(reader), Gate { writer }))
}

impl Gate {
    /// Lets the child go on; returns its stdin when it was meant to be piped.
    pub(super) fn open(mut self, piped: bool) -> io::Result<Option<ChildStdin>> {
        // One byte into an empty pipe: never blocks.
        self.writer.write_all(b"\n")?;
        if !piped {
            return Ok(None);
        }
        let fd: OwnedFd = self.writer.into();
        ChildStdin::from_std(std::process::ChildStdin::from(fd)).map(Some)
    }
}

/// Finds `program` the way the standard library's spawn would (on the child's `path`,
/// else the runtime's, from `cwd`), so that a missing or
/// non-executable program is an error of the spawn rather than the gate's exit status.
pub(super) fn resolve(program: &OsStr, path: Option<&OsStr>, cwd: &Path) -> io::Result<PathBuf> {
    let as_path = Path::new(program);
    if program.as_encoded_bytes().contains(&b'/') {
        let full = cwd.join(as_path);
        return executable(&full).map(|()| full);
    }
    // Like the standard library: without a `PATH` of its own, the child's program is
    // looked up on the runtime's.
    let runtime_path = std::env::var_os("PATH");
    let path = path
        .or(runtime_path.as_deref())
        .unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    let mut denied = false;
    for dir in std::env::split_paths(path) {
        let candidate = cwd.join(dir).join(as_path);
        match executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => denied = true,
            Err(_) => {}
        }
    }
    Err(if denied {
        io::Error::from(io::ErrorKind::PermissionDenied)
    } else {
        io::Error::new(io::ErrorKind::NotFound, "not found on PATH")
    })
}

fn executable(path: &Path) -> io::Result<()> {
    let metadata = std::fs::metadata(path)?;
    if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 {
        Ok(())
    } else {
        Err(io::Error::from(io::ErrorKind::PermissionDenied))
    }
}
