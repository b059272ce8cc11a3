//! A minimal init for when `runtimeuse` is PID 1 (a container started without `--init`).
//!
//! Commands often leave orphans (background jobs, grandchildren of a killed process
//! group); the kernel hands them to PID 1, which must reap them or they stay zombies
//! forever. So when started as PID 1, `runtimeuse` re-executes itself as its only child,
//! forwards SIGTERM/SIGINT to it, reaps every process that ends, and exits with the
//! child's status.

use std::process::{Command, ExitCode};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

/// Set in the child's environment so that it serves instead of becoming init again.
const CHILD_MARKER: &str = "RUNTIMEUSE_UNDER_INIT";

/// Whether this process should act as init: it is PID 1 and not already the child.
pub fn should_run() -> bool {
    std::process::id() == 1 && std::env::var_os(CHILD_MARKER).is_none()
}

/// Runs the real `runtimeuse` as a child and reaps until it exits.
pub fn run() -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("runtimeuse (init): cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let child = match Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_MARKER, "1")
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("runtimeuse (init): cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(raw) = i32::try_from(child.id()) else {
        return ExitCode::FAILURE;
    };
    let runtime = Pid::from_raw(raw);
    forward_signals(runtime);
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == runtime => {
                return ExitCode::from(u8::try_from(code).unwrap_or(1));
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == runtime => {
                return ExitCode::from(128u8.saturating_add(signal as u8));
            }
            // An orphan reaped, or a stop/continue notification.
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("runtimeuse (init): waiting for children failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// PID 1 ignores signals it has no handler for, so install handlers that pass SIGTERM and
/// SIGINT on to the runtime (which then shuts down gracefully).
fn forward_signals(runtime: Pid) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            eprintln!("runtimeuse (init): cannot forward signals");
            return;
        };
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                eprintln!("runtimeuse (init): cannot install signal handlers");
                return;
            };
            loop {
                let forwarded = tokio::select! {
                    _ = term.recv() => Signal::SIGTERM,
                    _ = int.recv() => Signal::SIGINT,
                };
                let _ = kill(runtime, forwarded);
            }
        });
    });
}
