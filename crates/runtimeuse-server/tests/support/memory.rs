//! This process's memory, from `/proc/self/status`: one reading, or the peak growth
//! sampled on a thread while a test runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A `/proc/self/status` field in KiB (`field` with its colon, e.g. `"VmHWM:"`).
pub fn memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Resident memory of this process, from `/proc/self/status`.
pub fn rss() -> u64 {
    memory_kib("VmRSS:") * 1024
}

/// Samples RSS every few milliseconds on a thread and reports the peak growth.
pub struct RssWatch {
    base: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl RssWatch {
    pub fn start() -> Self {
        let base = rss();
        let peak = Arc::new(AtomicU64::new(base));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Self {
            base,
            peak,
            stop,
            thread,
        }
    }

    pub fn growth(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak
            .load(Ordering::Relaxed)
            .max(rss())
            .saturating_sub(self.base)
    }
}
