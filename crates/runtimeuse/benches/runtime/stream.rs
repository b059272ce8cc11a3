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

/// A way of running the command through the runtime.
struct Path {
    name: &'static str,
    secrets: &'static [&'static str],
    flags: &'static [&'static str],
}

const PATHS: [Path; 3] = [
    Path {
        name: "runtime -> WebSocket client",
        secrets: &[],
        flags: &[],
    },
    Path {
        name: "  same, 1 secret to redact",
        secrets: &[SECRET],
        flags: &[],
    },
    // The result message carries the first 10 MiB of stdout by default; this path shows
    // what streaming alone costs.
    Path {
        name: "  same, --capture-limit 64 KiB",
        secrets: &[],
        flags: &["--capture-limit", "65536"],
    },
];

/// Wall time and CPU time of the runs of one consumer.
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
    fn add(&mut self, elapsed: Duration, client_cpu: Duration) {
        self.elapsed.push(elapsed);
        self.wall += elapsed;
        self.client_cpu += client_cpu;
    }

    fn throughput(&self, bytes: u64) -> f64 {
        mib_per_s(bytes, median(&self.elapsed))
    }

    fn share(&self, cpu: Duration) -> String {
        format!(
            "{:.0}%",
            100.0 * cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
        )
    }
}

/// One runtime process with one connection, used for every run of one path.
struct Streamer {
    path: &'static Path,
    runtime: Runtime,
    ws: Ws,
    runs: Runs,
}

impl Streamer {
    fn start(rt: &tokio::runtime::Runtime, path: &'static Path) -> Result<Self> {
        let (runtime, _) = Runtime::start_with(path.flags)?;
        let ws = rt.block_on(client::connect(runtime.url()))?;
        Ok(Streamer {
            path,
            runtime,
            ws,
            runs: Runs::default(),
        })
    }

    fn run(&mut self, rt: &tokio::runtime::Runtime, command: &str, bytes: u64) -> Result<()> {
        let pid = self.runtime.pid().to_string();
        let runtime_before = process::cpu_time(&pid)?;
        let client_before = process::cpu_time("self")?;
        let seen = rt.block_on(client::stream(
            &mut self.ws,
            command,
            self.path.secrets,
            b'a',
        ));
        let seen = match seen {
            Ok(seen) => seen,
            Err(e) => bail!("{e:#}\nruntime log:\n{}", self.runtime.log_tail()),
        };
        self.runs.runtime_cpu += process::cpu_time(&pid)? - runtime_before;
        self.runs
            .add(seen.elapsed, process::cpu_time("self")? - client_before);
        if seen.bytes != bytes {
            bail!(
                "byte count mismatch: {command:?} streamed {} bytes through the runtime ({}), expected {bytes}",
                seen.bytes,
                self.path.name.trim()
            );
        }
        self.runs.frames += seen.frames;
        self.runs.largest_frame = self.runs.largest_frame.max(seen.largest_frame);
        Ok(())
    }

    fn status_kib(&self, field: &str) -> Result<u64> {
        process::status_kib(self.runtime.pid(), field)
    }
}

/// Peak memory of the runtime for one streamed size: idle, then one per path.
struct Peaks {
    size_mib: u64,
    idle: u64,
    paths: Vec<u64>,
    after: u64,
}

/// Streams `head -c N /dev/zero | tr '\0' a` for N = `stream_mib` / 4 and `stream_mib`,
/// `reps` times per consumer, taking turns so that background load hits them alike.
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
        let mut streamers = PATHS
            .iter()
            .map(|path| Streamer::start(rt, path))
            .collect::<Result<Vec<_>>>()?;
        let idle = streamers[0].status_kib("VmHWM")?;
        let mut raw = Runs::default();
        for _ in 0..reps {
            let client_before = process::cpu_time("self")?;
            let piped = process::read_pipe(&command, b'a')?;
            raw.add(piped.elapsed, process::cpu_time("self")? - client_before);
            if piped.bytes != bytes {
                bail!(
                    "byte count mismatch: {command:?} printed {} bytes to a pipe, expected {bytes}",
                    piped.bytes
                );
            }
            for streamer in &mut streamers {
                streamer.run(rt, &command, bytes)?;
            }
        }
        let label = format!("{size_mib} MiB");
        let raw_rate = raw.throughput(bytes);
        table.row(vec![
            label.clone(),
            "raw pipe, read in-process".to_owned(),
            format!("{:.3} s", median(&raw.elapsed).as_secs_f64()),
            format!("{raw_rate:.0}"),
            ratio(raw_rate, raw_rate),
            "-".to_owned(),
            raw.share(raw.client_cpu),
        ]);
        for streamer in &streamers {
            let runs = &streamer.runs;
            table.row(vec![
                label.clone(),
                streamer.path.name.to_owned(),
                format!("{:.3} s", median(&runs.elapsed).as_secs_f64()),
                format!("{:.0}", runs.throughput(bytes)),
                ratio(runs.throughput(bytes), raw_rate),
                runs.share(runs.runtime_cpu),
                runs.share(runs.client_cpu),
            ]);
        }
        let plain = &streamers[0].runs;
        #[allow(clippy::cast_precision_loss)]
        let mean_frame = (bytes * reps as u64) as f64 / plain.frames.max(1) as f64 / 1024.0;
        frame_note = format!(
            "frames ({size_mib} MiB, plain): {} per run, {mean_frame:.1} KiB of text on average, largest {} bytes",
            plain.frames / reps as u64,
            plain.largest_frame
        );
        peaks.push(Peaks {
            size_mib,
            idle,
            paths: streamers
                .iter()
                .map(|s| s.status_kib("VmHWM"))
                .collect::<Result<_>>()?,
            after: streamers[0].status_kib("VmRSS")?,
        });
        for streamer in streamers {
            streamer.runtime.stop()?;
        }
    }
    table.print();
    println!("  {frame_note}");
    println!("  CPU = CPU time of that process / wall time of its runs (100% = one core busy).");
    print_peaks(&peaks, reps);
    Ok(())
}

fn print_peaks(peaks: &[Peaks], reps: usize) {
    section(&format!(
        "4. Runtime peak memory while streaming (VmHWM after {reps} runs; one runtime per N and per path)"
    ));
    let mut table = Table::new(&[
        "N",
        "idle",
        "plain",
        "1 secret",
        "capture 64 KiB",
        "VmRSS after, plain",
    ]);
    for p in peaks {
        let mut row = vec![format!("{} MiB", p.size_mib), mib(p.idle)];
        row.extend(p.paths.iter().map(|&kib| mib(kib)));
        row.push(mib(p.after));
        table.row(row);
    }
    table.print();
    if let [small, large] = peaks {
        let moved: Vec<String> = PATHS
            .iter()
            .zip(small.paths.iter().zip(&large.paths))
            .map(|(path, (&s, &l))| {
                #[allow(clippy::cast_precision_loss)]
                let growth = (i128::from(l) - i128::from(s)) as f64 / 1024.0;
                format!("{growth:+.1} MiB ({})", path.name.trim())
            })
            .collect();
        println!(
            "  {}x more output moved the peak by {}",
            large.size_mib / small.size_mib.max(1),
            moved.join(", ")
        );
    }
}
