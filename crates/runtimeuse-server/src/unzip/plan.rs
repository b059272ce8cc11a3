//! Reading and checking an archive's entries before anything is written: safe relative
//! paths, symlink targets that stay inside, and the sizes the headers admit.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::{MAX_SYMLINK_TARGET, MAX_SYMLINK_TARGETS_TOTAL, UnzipError, UnzipLimits, shown_target};

/// Unix file type bits and the symlink type, as stored in `unix_mode()`.
const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

/// What an entry is; a symlink carries its target.
pub(super) enum Kind {
    Dir,
    File,
    Symlink(PathBuf),
}

/// One checked entry: where it goes (relative, `Normal` components only) and what it is.
pub(super) struct Planned {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) rel: PathBuf,
    pub(super) kind: Kind,
    pub(super) mode: Option<u32>,
}

/// Checks every entry before anything is written, including that the sizes the headers
/// admit stay within `limits`.
pub(super) fn check_entries<R: io::Read + io::Seek>(
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
