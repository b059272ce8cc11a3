//! Writing checked entries: files (copied in chunks against the size budget), directories
//! and symlinks, never through an existing link; then the links' on-disk check and the
//! directories' modes.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::plan::{Kind, Planned};
use super::{UnzipError, UnzipLimits, io_err, shown_target};

/// Permission bits kept from the archive (setuid/setgid/sticky are dropped).
const PERMISSION_BITS: u32 = 0o777;
/// Copy granularity: cancellation and the size cap are checked after every chunk.
const COPY_CHUNK: usize = 256 * 1024;

/// Writes the checked `plan` from `zip` into `dest` (created if missing).
pub(super) fn write_plan<R: io::Read + io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    plan: &[Planned],
    dest: &Path,
    limits: &UnzipLimits,
    cancel: &CancellationToken,
) -> Result<(), UnzipError> {
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
    for entry in plan {
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
    Ok(())
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
