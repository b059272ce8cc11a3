//! Helpers shared by the integration tests: paths and downloads, retry policies, zip
//! builders, memory sampling and the lock that runs heavy tests one at a time.

#![allow(dead_code)]

pub mod memory;
pub mod zips;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use runtimeuse_protocol::Downloadable;
use runtimeuse_server::upload::RetryPolicy;

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;
/// The size of the large transfers.
pub const LARGE: u64 = 512 * MIB;
/// How much a large transfer may grow resident memory.
pub const RSS_BUDGET: u64 = 64 * MIB;

/// Tests that move hundreds of MiB or measure memory run one at a time.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A download of `url` into `dir`.
pub fn item(url: String, dir: &Path) -> Downloadable {
    Downloadable {
        download_url: url,
        working_dir: dir.display().to_string(),
    }
}

/// The names in `dir`, sorted; none if it does not exist.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A port on 127.0.0.1 with nothing listening.
pub fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `attempts` tries with a 20 ms first backoff.
pub fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_backoff: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A file of `len` zero bytes that takes no disk space.
pub fn sparse_file(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}
