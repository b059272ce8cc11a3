//! Looking at files on disk: what a file is now ([`Signature`]) and which files a
//! directory holds.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::ignore_rules::Root;

/// What a regular file looks like now; a change of any part means the file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Signature {
    /// Size in bytes.
    pub(super) len: u64,
    mtime: Option<SystemTime>,
    inode: u64,
}

impl Signature {
    fn of(meta: &Metadata) -> Self {
        Self {
            len: meta.len(),
            mtime: meta.modified().ok(),
            inode: inode(meta),
        }
    }
}

#[cfg(unix)]
fn inode(meta: &Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &Metadata) -> u64 {
    0
}

/// The signature of `path` when it is a regular file; symlinks are not followed.
pub(super) fn file_signature(path: &Path) -> Option<Signature> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type().is_file().then(|| Signature::of(&meta))
}

/// Whether `path` is a real directory (not a symlink to one).
pub(super) fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_dir())
}

/// Every non-ignored, non-empty regular file under `dir` (which lies inside `root`),
/// without following symlinks and without entering ignored directories.
pub(super) fn walk_files(root: &Root, dir: &Path) -> Vec<(PathBuf, Signature)> {
    let mut found = Vec::new();
    if root.is_ignored(dir, true) {
        return found;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                if !root.is_ignored(&path, true) {
                    stack.push(path);
                }
            } else if kind.is_file()
                && !root.is_ignored(&path, false)
                && let Ok(meta) = entry.metadata()
                && meta.len() > 0
            {
                found.push((path, Signature::of(&meta)));
            }
        }
    }
    found
}
