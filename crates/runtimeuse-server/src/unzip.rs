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

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Unix file type bits and the symlink type, as stored in `unix_mode()`.
const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;
/// Permission bits kept from the archive (setuid/setgid/sticky are dropped).
const PERMISSION_BITS: u32 = 0o777;

/// Why an archive could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum UnzipError {
    /// The archive could not be read or is not a zip file.
    #[error("invalid zip archive: {0}")]
    Archive(#[from] zip::result::ZipError),
    /// An entry would land outside the destination (`../x`, `/abs/x`, NUL in the name).
    #[error("zip entry {0:?} would be extracted outside the destination; archive refused")]
    UnsafePath(String),
    /// A symlink entry points outside the destination.
    #[error(
        "zip entry {entry:?} is a symlink to {target:?}, outside the destination; archive refused"
    )]
    UnsafeSymlink {
        /// The entry's name in the archive.
        entry: String,
        /// Where it points.
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

/// Extracts `archive` into `dest` (created if missing) and returns the number of entries
/// written (files, directories and symlinks).
///
/// Existing files are overwritten, directories created, unix permission bits kept. If
/// any entry would land outside `dest`, nothing is written and an error is returned.
///
/// # Errors
///
/// [`UnzipError::Archive`] for an unreadable archive, [`UnzipError::UnsafePath`] and
/// [`UnzipError::UnsafeSymlink`] for entries that would escape `dest` (found before
/// anything is written, except symlinks that escape only in combination, which are
/// removed after extraction), [`UnzipError::ThroughSymlink`] when an entry's directory
/// is a symlink already on disk, [`UnzipError::Io`] for file system errors.
///
/// ```no_run
/// use std::path::Path;
/// let n = runtimeuse_server::unzip::extract_zip(Path::new("site.zip"), Path::new("/srv"))?;
/// println!("{n} entries");
/// # Ok::<(), runtimeuse_server::unzip::UnzipError>(())
/// ```
pub fn extract_zip(archive: &Path, dest: &Path) -> Result<usize, UnzipError> {
    let file = fs::File::open(archive).map_err(io_err(archive))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file))?;
    let plan = plan(&mut zip)?;

    fs::create_dir_all(dest).map_err(io_err(dest))?;
    let root = dest.canonicalize().map_err(io_err(dest))?;
    let mut known_dirs = HashSet::new();
    let mut dir_modes = Vec::new();
    let mut links = Vec::new();
    for entry in &plan {
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
                io::copy(&mut data, &mut out).map_err(io_err(&path))?;
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

/// Checks every entry before anything is written.
fn plan<R: io::Read + io::Seek>(zip: &mut zip::ZipArchive<R>) -> Result<Vec<Planned>, UnzipError> {
    let mut plan = Vec::with_capacity(zip.len());
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index)?;
        let name = entry.name().to_owned();
        let rel = entry
            .enclosed_name()
            .and_then(|p| normalize(&p))
            .ok_or_else(|| UnzipError::UnsafePath(name.clone()))?;
        let mode = entry.unix_mode();
        let kind = if mode.is_some_and(|m| m & S_IFMT == S_IFLNK) {
            let mut target = Vec::new();
            io::Read::read_to_end(&mut entry, &mut target)
                .map_err(|e| UnzipError::Archive(e.into()))?;
            let target = PathBuf::from(OsStr::from_bytes(&target));
            if !symlink_stays_inside(&rel, &target) {
                return Err(UnzipError::UnsafeSymlink {
                    entry: name,
                    target: target.display().to_string(),
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
                target: target.display().to_string(),
            });
        }
    }
    escaped.map_or(Ok(()), Err)
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
