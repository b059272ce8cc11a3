//! Sections 3 and 4: streamed command output through the runtime against the same command
//! read straight from a pipe, and the runtime's peak memory while it streams.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::client::{self, Ws};
use crate::process::{self, Runtime};
use crate::report::{Table, median, mib, mib_per_s, ratio, section};

/// The secret of the redacting runs; it never occurs in the output, so the figure is the
/// cost of scanning for it.
const SECRET: &str = "not-present-secret";

/// Wall time and CPU time of the runs of one path.
#[derive(Default)]
struct Runs {
    elapsed: Vec<Duration>,
    wall: Duration,
    runtime_cpu: Duration,
    client_cpu: Duration,
    frames: u64,
    largest_frame: usize,
}

impl Runs {
    fn throughput(&self, bytes: u64) -> f64 {
        mib_per_s(bytes, median(&self.elapsed))
    }

    fn cpu_share(cpu: Duration, wall: Duration) -> String {
        format!(
            "{:.0}%",
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
        )
    }
}

/// One runtime process with one connection, used for every run of one path.
struct Streamer {
    runtime: Runtime,
    ws: Ws,
    secrets: &'static [&'static str],
}

impl Streamer {
    fn start(rt: &tokio::runtime::Runtime, secrets: &'static [&'static str]) -> Result<Self> {
        let (runtime, _) = Runtime::start()?;
        let ws = rt.block_on(client::connect(runtime.url()))?;
        Ok(Streamer {
            runtime,
            ws,
            secrets,
        })
    }

    fn run(
        &mut self,
        rt: &tokio::runtime::Runtime,
        command: &str,
        bytes: u64,
        runs: &mut Runs,
    ) -> Result<()> {
        let pid = self.runtime.pid().to_string();
        let (runtime_before, client_before) =
            (process::cpu_time(&pid)?, process::cpu_time("self")?);
        let seen = rt.block_on(client::stream(&mut self.ws, command, self.secrets, b'a'));
        let seen = match seen {
            Ok(seen) => seen,
            Err(e) => bail!("{e:#}\nruntime log:\n{}", self.runtime.log_tail()),
        };
        runs.runtime_cpu += process::cpu_time(&pid)? - runtime_before;
        runs.client_cpu += process::cpu_time("self")? - client_before;
        if seen.bytes != bytes {
            bail!(
                "byte count mismatch: {command:?} streamed {} bytes through the runtime, expected {bytes}",
                seen.bytes
            );
        }
        runs.elapsed.push(seen.elapsed);
        runs.wall += seen.elapsed;
        runs.frames += seen.frames;
        runs.largest_frame = runs.largest_frame.max(seen.largest_frame);
        Ok(())
    }

    fn peak_kib(&self) -> Result<u64> {
        process::status_kib(self.runtime.pid(), "VmHWM")
    }
}

/// Peak memory of the runtime for one streamed size.
struct Peaks {
    size_mib: u64,
    idle: u64,
    plain: u64,
    redacting: u64,
    after: u64,
}

/// Streams `head -c N /dev/zero | tr '\0' a` for N = `stream_mib` / 4 and `stream_mib`,
/// `reps` times per path, alternating the paths so that background load hits them alike.
pub fn run(rt: &tokio::runtime::Runtime, stream_mib: u64, reps: usize) -> Result<()> {
    section(&format!(
        "3. Streamed command output: head -c N /dev/zero | tr '\\0' a  (median of {reps} runs)"
    ));
    let mut table = Table::new(&[
        "N",
        "consumer",
        "median time",
        "MiB/s",
        "vs raw pipe",
        "runtime CPU",
        "client CPU",
    ])
    .left_aligned(2);
    let mut peaks = Vec::new();
    let mut frame_note = String::new();
    let mut sizes = vec![(stream_mib / 4).max(1), stream_mib];
    sizes.dedup();
    for size_mib in sizes {
        let bytes = size_mib * 1024 * 1024;
        let command = format!("head -c {bytes} /dev/zero | tr '\\0' a");
        let mut plain = Streamer::start(rt, &[])?;
        let mut redacting = Streamer::start(rt, &[SECRET])?;
        let idle = plain.peak_kib()?;
        let (mut raw, mut through, mut redacted) =
            (Runs::default(), Runs::default(), Runs::default());
        for _ in 0..reps {
            let client_before = process::cpu_time("self")?;
            let piped = process::read_pipe(&command, b'a')?;
            raw.client_cpu += process::cpu_time("self")? - client_before;
            if piped.bytes != bytes {
                bail!(
                    "byte count mismatch: {command:?} printed {} bytes to a pipe, expected {bytes}",
                    piped.bytes
                );
            }
            raw.elapsed.push(piped.elapsed);
            raw.wall += piped.elapsed;
            plain.run(rt, &command, bytes, &mut through)?;
            redacting.run(rt, &command, bytes, &mut redacted)?;
        }
        let raw_rate = raw.throughput(bytes);
        let label = format!("{size_mib} MiB");
        let rows = [
            ("raw pipe, read in-process", &raw, false),
            ("runtime -> WebSocket client", &through, true),
            ("  same, 1 secret to redact", &redacted, true),
        ];
        for (name, runs, is_runtime) in rows {
            table.row(vec![
                label.clone(),
                name.to_owned(),
                format!("{:.3} s", median(&runs.elapsed).as_secs_f64()),
                format!("{:.0}", runs.throughput(bytes)),
                ratio(runs.throughput(bytes), raw_rate),
                if is_runtime {
                    Runs::cpu_share(runs.runtime_cpu, runs.wall)
                } else {
                    "-".to_owned()
                },
                Runs::cpu_share(runs.client_cpu, runs.wall),
            ]);
        }
        #[allow(clippy::cast_precision_loss)]
        let mean_frame = bytes as f64 * reps as f64 / through.frames.max(1) as f64 / 1024.0;
        frame_note = format!(
            "frames: {} per run, {mean_frame:.1} KiB of text on average, largest {} bytes",
            through.frames / reps as u64,
            through.largest_frame
        );
        peaks.push(Peaks {
            size_mib,
            idle,
            plain: plain.peak_kib()?,
            redacting: redacting.peak_kib()?,
            after: process::status_kib(plain.runtime.pid(), "VmRSS")?,
        });
        plain.runtime.stop()?;
        redacting.runtime.stop()?;
    }
    table.print();
    println!("  {frame_note}");
    println!("  CPU = CPU time of that process / wall time of the runs (100% = one core busy).");
    print_peaks(&peaks);
    Ok(())
}

fn print_peaks(peaks: &[Peaks]) {
    section("4. Runtime peak memory while streaming (VmHWM; a fresh runtime per N and per path)");
    let mut table = Table::new(&[
        "N",
        "idle peak",
        "peak, plain",
        "peak, redacting",
        "VmRSS after",
    ]);
    for p in peaks {
        table.row(vec![
            format!("{} MiB", p.size_mib),
            mib(p.idle),
            mib(p.plain),
            mib(p.redacting),
            mib(p.after),
        ]);
    }
    table.print();
    if let [small, large] = peaks {
        let growth = i128::from(large.plain.max(large.redacting))
            - i128::from(small.plain.max(small.redacting));
        #[allow(clippy::cast_precision_loss)]
        let growth_mib = growth as f64 / 1024.0;
        println!(
            "  streaming {}x more output moved the peak by {growth_mib:+.1} MiB",
            large.size_mib / small.size_mib.max(1)
        );
    }
}
