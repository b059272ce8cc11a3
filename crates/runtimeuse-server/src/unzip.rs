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

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use tokio_util::sync::CancellationToken;

/// Unix file type bits and the symlink type, as stored in `unix_mode()`.
const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;
/// Permission bits kept from the archive (setuid/setgid/sticky are dropped).
const PERMISSION_BITS: u32 = 0o777;
/// Longest symlink target accepted: what Linux can store (`PATH_MAX`, 4096, counts the
/// terminating NUL).
pub const MAX_SYMLINK_TARGET: usize = 4095;
/// Most bytes all symlink targets together may take: they are held in memory until the
/// archive is written, and compress to almost nothing.
pub const MAX_SYMLINK_TARGETS_TOTAL: usize = 64 * 1024 * 1024;
/// Copy granularity: cancellation and the size cap are checked after every chunk.
const COPY_CHUNK: usize = 256 * 1024;
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

enum Kind {
    Dir,
    File,
    Symlink(PathBuf),
}

/// One checked entry: where it goes (relative, `Normal` components only) and what it is.
struct Planned {
    index: usize,
    name: String,
    rel: PathBuf,
    kind: Kind,
    mode: Option<u32>,
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
    let plan = plan(&mut zip, limits, cancel)?;

    fs::create_dir_all(dest).map_err(io_err(dest))?;
    let root = dest.canonicalize().map_err(io_err(dest))?;
    let mut known_dirs = HashSet::new();
    let mut dir_modes = Vec::new();
    let mut links = Vec::new();
    let mut budget = Budget {
        left: limits.max_total_bytes,
        limit: limits.max_total_bytes,
        cancel,
        buf: vec![0; COPY_CHUNK],
    };
    for entry in &plan {
        budget.check_cancel()?;
        let path = root.join(&entry.rel);
        match &entry.kind {
            Kind::Dir => {
                ensure_dir(&root, &entry.rel, &entry.name, &mut known_dirs)?;
                if let Some(mode) = entry.mode {
                    dir_modes.push((path, mode));
                }
            }
            Kind::File => {
                ensure_parent(&root, entry, &mut known_dirs)?;
                remove_non_dir(&path)?;
                let mut out = fs::File::create(&path).map_err(io_err(&path))?;
                let mut data = zip.by_index(entry.index)?;
                if let Err(e) = budget.copy(&mut data, &mut out, &path) {
                    drop(out);
                    // Never leave a truncated file behind.
                    let _ = fs::remove_file(&path);
                    return Err(e);
                }
                if let Some(mode) = entry.mode {
                    let perms = fs::Permissions::from_mode(mode & PERMISSION_BITS);
                    fs::set_permissions(&path, perms).map_err(io_err(&path))?;
                }
            }
            Kind::Symlink(target) => {
                ensure_parent(&root, entry, &mut known_dirs)?;
                remove_non_dir(&path)?;
                std::os::unix::fs::symlink(target, &path).map_err(io_err(&path))?;
                links.push((path, entry));
            }
        }
    }
    check_links(&root, &links)?;
    // Deepest first, so that a read-only parent is locked only after its children.
    dir_modes.sort_by(|a, b| b.0.cmp(&a.0));
    for (path, mode) in dir_modes {
        let perms = fs::Permissions::from_mode(mode & PERMISSION_BITS);
        fs::set_permissions(&path, perms).map_err(io_err(&path))?;
    }
    Ok(plan.len())
}

/// What the archive may still write, and the token that stops it.
struct Budget<'a> {
    left: u64,
    limit: u64,
    cancel: &'a CancellationToken,
    buf: Vec<u8>,
}

impl Budget<'_> {
    fn check_cancel(&self) -> Result<(), UnzipError> {
        if self.cancel.is_cancelled() {
            return Err(UnzipError::Cancelled);
        }
        Ok(())
    }

    /// Copies `data` to `out` chunk by chunk, counting what is written against the
    /// limit; the entry's header size is not trusted.
    fn copy(
        &mut self,
        data: &mut impl io::Read,
        out: &mut fs::File,
        path: &Path,
    ) -> Result<(), UnzipError> {
        loop {
            self.check_cancel()?;
            let n = match data.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(path)(e)),
            };
            self.left = self
                .left
                .checked_sub(n as u64)
                .ok_or(UnzipError::TooLarge { limit: self.limit })?;
            io::Write::write_all(out, &self.buf[..n]).map_err(io_err(path))?;
        }
    }
}

/// Checks every entry before anything is written, including that the sizes the headers
/// admit stay within `limits`.
fn plan<R: io::Read + io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    limits: &UnzipLimits,
    cancel: &CancellationToken,
) -> Result<Vec<Planned>, UnzipError> {
    let mut plan = Vec::with_capacity(zip.len());
    let mut declared = 0u64;
    let mut link_bytes = 0usize;
    for index in 0..zip.len() {
        if cancel.is_cancelled() {
            return Err(UnzipError::Cancelled);
        }
        let mut entry = zip.by_index(index)?;
        declared = declared.saturating_add(entry.size());
        if declared > limits.max_total_bytes {
            return Err(UnzipError::TooLarge {
                limit: limits.max_total_bytes,
            });
        }
        let name = entry.name().to_owned();
        let rel = entry
            .enclosed_name()
            .and_then(|p| normalize(&p))
            .ok_or_else(|| UnzipError::UnsafePath(name.clone()))?;
        let mode = entry.unix_mode();
        let kind = if mode.is_some_and(|m| m & S_IFMT == S_IFLNK) {
            // One byte more than allowed tells an over-long target apart.
            let mut target = Vec::new();
            io::Read::read_to_end(
                &mut io::Read::take(&mut entry, MAX_SYMLINK_TARGET as u64 + 1),
                &mut target,
            )
            .map_err(|e| UnzipError::Archive(e.into()))?;
            if target.len() > MAX_SYMLINK_TARGET {
                return Err(UnzipError::SymlinkTargetTooLong { entry: name });
            }
            link_bytes += target.len();
            if link_bytes > MAX_SYMLINK_TARGETS_TOTAL {
                return Err(UnzipError::SymlinkTargetsTooLarge);
            }
            let target = PathBuf::from(OsStr::from_bytes(&target));
            if !symlink_stays_inside(&rel, &target) {
                return Err(UnzipError::UnsafeSymlink {
                    entry: name,
                    target: shown_target(&target),
                });
            }
            Kind::Symlink(target)
        } else if entry.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        if rel.as_os_str().is_empty() && !matches!(kind, Kind::Dir) {
            return Err(UnzipError::UnsafePath(name));
        }
        plan.push(Planned {
            index,
            name,
            rel,
            kind,
            mode,
        });
    }
    Ok(plan)
}

/// Resolves `.` and `..` lexically; `None` if the path climbs above its start or is
/// absolute.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether a link at `rel` (relative to the destination) pointing to `target` resolves,
/// lexically, inside the destination.
fn symlink_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.as_os_str().is_empty() || target.as_os_str().as_bytes().contains(&0) {
        return false;
    }
    let base = rel.parent().unwrap_or(Path::new(""));
    normalize(&base.join(target)).is_some()
}

/// Creates `root/rel` one component at a time, refusing to pass through a symlink.
fn ensure_dir(
    root: &Path,
    rel: &Path,
    name: &str,
    known: &mut HashSet<PathBuf>,
) -> Result<(), UnzipError> {
    let mut path = root.to_path_buf();
    for part in rel.components() {
        path.push(part);
        if known.contains(&path) {
            continue;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(UnzipError::ThroughSymlink {
                    entry: name.to_owned(),
                    link: path,
                });
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(UnzipError::Io {
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a file is in the way of a directory",
                    ),
                    path,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
                Err(e) => return Err(io_err(&path)(e)),
            },
            Err(e) => return Err(io_err(&path)(e)),
        }
        known.insert(path.clone());
    }
    Ok(())
}

fn ensure_parent(
    root: &Path,
    entry: &Planned,
    known: &mut HashSet<PathBuf>,
) -> Result<(), UnzipError> {
    let parent = entry.rel.parent().unwrap_or(Path::new(""));
    ensure_dir(root, parent, &entry.name, known)
}

/// Removes a file or symlink at `path` so the entry replaces it instead of writing
/// through it (a link) or failing on it (a read-only or running executable).
fn remove_non_dir(path: &Path) -> Result<(), UnzipError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(UnzipError::Io {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::AlreadyExists, "a directory is in the way"),
        }),
        Ok(_) => fs::remove_file(path).map_err(io_err(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Links can chain (`a -> .`, then `b -> a/..`), which a per-link lexical check cannot
/// see; resolve them on disk once all exist and remove any that escaped.
fn check_links(root: &Path, links: &[(PathBuf, &Planned)]) -> Result<(), UnzipError> {
    let mut escaped = None;
    for (path, entry) in links {
        let Kind::Symlink(target) = &entry.kind else {
            continue;
        };
        if !link_resolves_inside(root, path, target) {
            let _ = fs::remove_file(path);
            escaped.get_or_insert_with(|| UnzipError::UnsafeSymlink {
                entry: entry.name.clone(),
                target: shown_target(target),
            });
        }
    }
    escaped.map_or(Ok(()), Err)
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

/// Whether following the link at `path` (reading it, or creating the file it names)
/// stays under `root`.
fn link_resolves_inside(root: &Path, path: &Path, target: &Path) -> bool {
    if let Ok(resolved) = path.canonicalize() {
        return resolved.starts_with(root);
    }
    // Dangling: a write through it would create the last component in its parent, so
    // that parent must be inside. If the parent does not exist either, nothing can be
    // written through the link.
    let joined = path.parent().unwrap_or(root).join(target);
    match joined.parent().map(Path::canonicalize) {
        Some(Ok(parent)) => parent.starts_with(root),
        _ => true,
    }
}
