//! Processes under measurement: the real `runtimeuse` binary started the way a sandbox
//! starts it, the baselines (`/bin/true`, `sleep`, a raw pipe), and what /proc says about
//! their memory and CPU.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The release binary built by `cargo bench`.
const BUILT_BINARY: &str = env!("CARGO_BIN_EXE_runtimeuse");

/// The binary under test: `BENCH_RUNTIMEUSE_BIN` if set (e.g. an unstripped build to
/// profile), else the one cargo built.
pub fn binary() -> String {
    std::env::var("BENCH_RUNTIMEUSE_BIN").unwrap_or_else(|_| BUILT_BINARY.to_owned())
}

/// Whether every byte of `bytes` is `expected`. Folds without stopping early so that it
/// vectorises: the check must cost the consumers next to nothing.
pub fn all_equal(bytes: &[u8], expected: u8) -> bool {
    bytes.iter().fold(0, |diff, &b| diff | (b ^ expected)) == 0
}

/// What the binary prints on stdout, before the URL, once it accepts connections.
const READY_PREFIX: &str = "runtimeuse listening on ";

/// A running `runtimeuse --agent echo --host 127.0.0.1 --port 0 ...`; stopped on drop.
pub struct Runtime {
    child: Child,
    // Kept open after the ready line so that the runtime never writes to a closed pipe.
    stdout: BufReader<ChildStdout>,
    url: String,
    stderr: tempfile::NamedTempFile,
}

impl Runtime {
    /// Starts the runtime and waits for its ready line; also returns the time from just
    /// before the spawn to that line.
    pub fn start() -> Result<(Self, Duration)> {
        Self::start_with(&[])
    }

    /// [`Runtime::start`] with more flags.
    pub fn start_with(flags: &[&str]) -> Result<(Self, Duration)> {
        let stderr =
            tempfile::NamedTempFile::new().context("creating a file for the runtime's log")?;
        let started = Instant::now();
        let binary = binary();
        let mut child = Command::new(&binary)
            .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
            .args(flags)
            .env_remove("RUNTIMEUSE_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().context("opening the runtime's log")?)
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let stdout = child
            .stdout
            .take()
            .context("the runtime's stdout is not piped")?;
        let mut runtime = Runtime {
            child,
            stdout: BufReader::new(stdout),
            url: String::new(),
            stderr,
        };
        let mut line = String::new();
        runtime
            .stdout
            .read_line(&mut line)
            .context("reading the runtime's ready line")?;
        let ready = started.elapsed();
        match line.trim_end().strip_prefix(READY_PREFIX) {
            Some(url) if url.starts_with("ws://127.0.0.1:") => url.clone_into(&mut runtime.url),
            _ => bail!(
                "expected `{READY_PREFIX}ws://127.0.0.1:PORT` on stdout, got {line:?}; log:\n{}",
                runtime.log_tail()
            ),
        }
        Ok((runtime, ready))
    }

    /// The WebSocket URL it listens on.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `/health` URL on the same port.
    pub fn health_url(&self) -> String {
        format!("{}/health", self.url.replacen("ws://", "http://", 1))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.stderr.path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then SIGKILL if it has not exited within five seconds; reaps it.
    pub fn stop(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        kill(pid, Signal::SIGTERM).context("sending SIGTERM to the runtime")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("the runtime did not exit within 5 s of SIGTERM");
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Err(e) = self.terminate() {
            eprintln!("stopping the runtime: {e:#}");
        }
    }
}

/// Spawns `/bin/true` and waits for it: the floor for starting any process.
pub fn spawn_true() -> Result<Duration> {
    let started = Instant::now();
    let status = Command::new("/bin/true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running /bin/true")?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("/bin/true failed: {status}");
    }
    Ok(elapsed)
}

/// Runs `/bin/sh -c <command>` and waits for it, as the runtime does for a command.
pub fn run_shell(command: &str) -> Result<Duration> {
    let started = Instant::now();
    let status = Command::new("/bin/sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running /bin/sh")?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("/bin/sh -c {command:?} failed: {status}");
    }
    Ok(elapsed)
}

/// Resident memory (KiB) of a `sleep` process: the smallest a process can be, for scale.
pub fn sleep_rss_kib() -> Result<u64> {
    let mut child = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .context("starting sleep")?;
    // Let the loader finish mapping libc before looking.
    std::thread::sleep(Duration::from_millis(100));
    let rss = status_kib(child.id(), "VmRSS");
    child.kill()?;
    child.wait()?;
    rss
}

/// What a consumer reading a pipe directly sees of a command's stdout.
pub struct Piped {
    /// Bytes read.
    pub bytes: u64,
    /// From spawn to end of file and exit.
    pub elapsed: Duration,
}

/// Runs `/bin/sh -c <command>` with stdout piped to this process and reads it to the end
/// in 64 KiB reads (the runtime's read size), checking every byte is `expected`.
pub fn read_pipe(command: &str, expected: u8) -> Result<Piped> {
    let started = Instant::now();
    let mut child = Command::new("/bin/sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("running /bin/sh")?;
    let mut stdout = child.stdout.take().context("stdout is not piped")?;
    let mut buf = vec![0_u8; 64 * 1024];
    let mut bytes = 0_u64;
    let mut wrong = false;
    loop {
        let n = stdout.read(&mut buf).context("reading the pipe")?;
        if n == 0 {
            break;
        }
        wrong |= !all_equal(&buf[..n], expected);
        bytes += n as u64;
    }
    let status = child.wait()?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    if wrong {
        bail!(
            "{command:?} printed a byte other than {:?}",
            char::from(expected)
        );
    }
    Ok(Piped { bytes, elapsed })
}

/// A `VmRSS`/`VmHWM`/... field of /proc/PID/status, in KiB.
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix(field)?.strip_prefix(':')?;
            value.trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .with_context(|| format!("no {field} in {path}"))
}

/// User plus system CPU time of a process (`"self"` or a pid) so far.
pub fn cpu_time(pid: &str) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name may hold spaces; the fields after it are numbers. utime and stime
    // are fields 14 and 15 of proc(5), in USER_HZ ticks, which Linux fixes at 100 a second.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("unexpected {path}: {stat}"))
    };
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}
