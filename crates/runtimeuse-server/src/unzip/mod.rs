//! Safe extraction of downloaded `.zip` archives (no `unzip` binary).
//!
//! The whole archive is checked before anything is written, so a hostile archive (an
//! entry named `../x` or `/etc/x`, a symlink pointing outside) leaves the destination
//! untouched.
//!
//! Symlinks are kept when they stay inside the destination: the target must be relative
//! and, resolved from the link's own directory, must not climb above `dest`. Because one
//! link can be resolved through another, three more rules close the remaining gaps:
//! nothing is ever written *through* a symlink (an entry whose parent directory is a
//! symlink is refused), an existing file or link at an entry's path is replaced rather
//! than followed, and after extraction every created link is resolved on disk; links
//! that end up outside `dest` are removed and the extraction fails.
//!
//! Against zip bombs, [`UnzipLimits`] caps the number of entries and the bytes actually
//! written (headers can lie about sizes, so the copy itself counts), and a symlink target
//! is read only up to [`MAX_SYMLINK_TARGET`] bytes. Extraction stops between chunks once
//! its cancellation token fires.
//!
//! The work is split in two: `plan` reads and checks every entry (paths, sizes, symlink
//! targets) before anything is written; `extract` writes the checked entries.

mod extract;
mod plan;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

/// Longest symlink target accepted: what Linux can store (`PATH_MAX`, 4096, counts the
/// terminating NUL).
pub const MAX_SYMLINK_TARGET: usize = 4095;
/// Most bytes all symlink targets together may take: they are held in memory until the
/// archive is written, and compress to almost nothing.
pub const MAX_SYMLINK_TARGETS_TOTAL: usize = 64 * 1024 * 1024;
/// How much of a symlink target an error message quotes.
const SHOWN_TARGET_CHARS: usize = 100;

/// Caps on what one archive may write, against zip bombs.
#[derive(Debug, Clone)]
pub struct UnzipLimits {
    /// Most bytes all files together may expand to (counted as written, not as the
    /// headers claim). Default 16 GiB.
    pub max_total_bytes: u64,
    /// Most entries (files, directories, symlinks) an archive may hold. Default 1,000,000.
    pub max_entries: usize,
}

impl Default for UnzipLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: 16 * 1024 * 1024 * 1024,
            max_entries: 1_000_000,
        }
    }
}

/// Why an archive could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum UnzipError {
    /// The archive could not be read or is not a zip file.
    #[error("invalid zip archive: {0}")]
    Archive(#[from] zip::result::ZipError),
    /// An entry would land outside the destination (`../x`, `/abs/x`, NUL in the name).
    #[error("zip entry {0:?} would be extracted outside the destination; archive refused")]
    UnsafePath(String),
    /// The archive expands to more than [`UnzipLimits::max_total_bytes`].
    #[error(
        "zip archive expands to more than {} (the limit); refused as a possible zip bomb",
        bytes(*.limit)
    )]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The archive holds more than [`UnzipLimits::max_entries`] entries.
    #[error(
        "zip archive has {count} entries, more than the limit of {limit}; refused as a \
         possible zip bomb"
    )]
    TooManyEntries {
        /// Entries in the archive.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A symlink entry's target is longer than [`MAX_SYMLINK_TARGET`].
    #[error(
        "zip entry {entry:?} is a symlink with a target longer than {MAX_SYMLINK_TARGET} \
         bytes; archive refused"
    )]
    SymlinkTargetTooLong {
        /// The entry's name in the archive.
        entry: String,
    },
    /// The symlink targets together are longer than [`MAX_SYMLINK_TARGETS_TOTAL`].
    #[error(
        "zip archive's symlink targets add up to more than {}; refused as a possible zip bomb",
        bytes(MAX_SYMLINK_TARGETS_TOTAL as u64)
    )]
    SymlinkTargetsTooLarge,
    /// Extraction was cancelled; the file being written was removed.
    #[error("zip extraction cancelled")]
    Cancelled,
    /// A symlink entry points outside the destination.
    #[error(
        "zip entry {entry:?} is a symlink to {target:?}, outside the destination; archive refused"
    )]
    UnsafeSymlink {
        /// The entry's name in the archive.
        entry: String,
        /// Where it points (its first 100 characters).
        target: String,
    },
    /// An entry would be written through an existing symlink.
    #[error("zip entry {entry:?} would be written through the symlink {link}; refused")]
    ThroughSymlink {
        /// The entry's name in the archive.
        entry: String,
        /// The symlink on the way.
        link: PathBuf,
    },
    /// A file system operation failed.
    #[error("could not extract to {path}: {source}")]
    Io {
        /// The path being written.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UnzipError + '_ {
    move |source| UnzipError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Extracts `archive` into `dest` (created if missing) with the default
/// [`UnzipLimits`] and no cancellation; see [`extract_zip_with`].
///
/// # Errors
///
/// As [`extract_zip_with`].
///
/// ```no_run
/// use std::path::Path;
/// let n = runtimeuse_server::unzip::extract_zip(Path::new("site.zip"), Path::new("/srv"))?;
/// println!("{n} entries");
/// # Ok::<(), runtimeuse_server::unzip::UnzipError>(())
/// ```
pub fn extract_zip(archive: &Path, dest: &Path) -> Result<usize, UnzipError> {
    extract_zip_with(
        archive,
        dest,
        &UnzipLimits::default(),
        &CancellationToken::new(),
    )
}

/// Extracts `archive` into `dest` (created if missing) and returns the number of entries
/// written (files, directories and symlinks).
///
/// Existing files are overwritten, directories created, unix permission bits kept. If
/// any entry would land outside `dest`, nothing is written and an error is returned.
/// Blocking: run it on a blocking thread. It checks `cancel` between entries and after
/// every chunk it writes, so a cancellation stops it within milliseconds.
///
/// # Errors
///
/// [`UnzipError::Archive`] for an unreadable archive, [`UnzipError::UnsafePath`] and
/// [`UnzipError::UnsafeSymlink`] for entries that would escape `dest` (found before
/// anything is written, except symlinks that escape only in combination, which are
/// removed after extraction), [`UnzipError::ThroughSymlink`] when an entry's directory
/// is a symlink already on disk, [`UnzipError::TooManyEntries`],
/// [`UnzipError::SymlinkTargetTooLong`] and [`UnzipError::SymlinkTargetsTooLarge`]
/// (before anything is written),
/// [`UnzipError::TooLarge`] (before anything is written when the headers admit it,
/// otherwise as soon as the written bytes pass the limit), [`UnzipError::Cancelled`],
/// [`UnzipError::Io`] for file system errors. Entries written before a failure stay;
/// the file being written when the limit is passed or the extraction is cancelled is
/// removed.
pub fn extract_zip_with(
    archive: &Path,
    dest: &Path,
    limits: &UnzipLimits,
    cancel: &CancellationToken,
) -> Result<usize, UnzipError> {
    let file = fs::File::open(archive).map_err(io_err(archive))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file))?;
    if zip.len() > limits.max_entries {
        return Err(UnzipError::TooManyEntries {
            count: zip.len(),
            limit: limits.max_entries,
        });
    }
    let plan = plan::check_entries(&mut zip, limits, cancel)?;
    extract::write_plan(&mut zip, &plan, dest, limits, cancel)?;
    Ok(plan.len())
}

/// `n` bytes for a message, in GiB or MiB when it is a whole number of them.
fn bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;
    match n {
        0 => "0 bytes".to_owned(),
        n if n % GIB == 0 => format!("{} GiB", n / GIB),
        n if n % MIB == 0 => format!("{} MiB", n / MIB),
        n => format!("{n} bytes"),
    }
}

/// A symlink target for an error message: its first characters only.
fn shown_target(target: &Path) -> String {
    let text = target.display().to_string();
    match text.char_indices().nth(SHOWN_TARGET_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}
