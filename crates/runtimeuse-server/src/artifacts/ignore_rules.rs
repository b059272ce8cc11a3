//! Which files of a watched directory are never announced.
//!
//! Rules per directory, first that applies: the rules given with the request (fixed for
//! that directory), else `<dir>/.artifactignore` (re-read when it changes), else
//! [`DEFAULT_IGNORES`]. Matching uses ripgrep's gitignore semantics, and a path inside an
//! ignored directory is ignored too.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use tracing::{debug, warn};

/// Name of the per-directory rules file; such files are never uploaded themselves.
pub const IGNORE_FILE: &str = ".artifactignore";

/// Patterns ignored when neither the request nor the directory gives rules.
pub const DEFAULT_IGNORES: &[&str] = &[
    "node_modules/",
    ".venv/",
    ".env/",
    "env/",
    "venv/",
    "dist/",
    "__pycache__/",
    "__pytest_cache__/",
    ".pytest_cache/",
];

/// A rules file larger than this is read only up to here.
const MAX_RULES_FILE: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Request,
    File,
    Default,
}

/// One watched directory (absolute, canonical) and the rules that apply under it.
#[derive(Debug, Clone)]
pub(super) struct Root {
    path: PathBuf,
    source: Source,
    matcher: Arc<Gitignore>,
}

impl Root {
    /// A root ruled by `request_rules` when given, else by its rules file or the defaults.
    pub(super) fn new(path: PathBuf, request_rules: Option<&str>) -> Self {
        let mut root = Self {
            path,
            source: Source::Default,
            matcher: Arc::new(Gitignore::empty()),
        };
        match request_rules {
            Some(content) => root.set_request_rules(content),
            None => root.reload(),
        }
        root
    }

    /// Fixes the rules of this directory to `content` (gitignore syntax).
    pub(super) fn set_request_rules(&mut self, content: &str) {
        self.source = Source::Request;
        self.matcher = Arc::new(build(&self.path, content.lines()));
    }

    /// Re-reads `<dir>/.artifactignore` (or falls back to the defaults), unless the
    /// request fixed the rules.
    fn reload(&mut self) {
        if self.source == Source::Request {
            return;
        }
        let (source, matcher) = match read_rules_file(&self.path.join(IGNORE_FILE)) {
            Some(content) => (Source::File, build(&self.path, content.lines())),
            None => (
                Source::Default,
                build(&self.path, DEFAULT_IGNORES.iter().copied()),
            ),
        };
        debug!(dir = %self.path.display(), ?source, "artifact ignore rules loaded");
        self.source = source;
        self.matcher = Arc::new(matcher);
    }

    /// Whether `path` (a directory when `is_dir`) must not be announced. Paths outside
    /// this root are always ignored.
    pub(super) fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        let Ok(relative) = path.strip_prefix(&self.path) else {
            return true;
        };
        if relative.as_os_str().is_empty() {
            return false;
        }
        if !is_dir && path.file_name().is_some_and(|n| n == IGNORE_FILE) {
            return true;
        }
        // A relative path: the matcher cannot panic on a path outside its root.
        self.matcher
            .matched_path_or_any_parents(relative, is_dir)
            .is_ignore()
    }
}

/// Every watched directory, deepest first so that the innermost root rules its files.
#[derive(Debug, Default)]
pub(super) struct Roots {
    list: Vec<Root>,
}

impl Roots {
    /// The root watching exactly `dir`.
    pub(super) fn get_mut(&mut self, dir: &Path) -> Option<&mut Root> {
        self.list.iter_mut().find(|r| r.path == dir)
    }

    /// Adds a root (replacing one with the same path).
    pub(super) fn insert(&mut self, root: Root) {
        self.remove(&root.path);
        self.list.push(root);
        self.list
            .sort_by_key(|r| std::cmp::Reverse(r.path.components().count()));
    }

    /// Forgets the root watching exactly `dir`.
    pub(super) fn remove(&mut self, dir: &Path) {
        self.list.retain(|r| r.path != dir);
    }

    /// The innermost root containing `path`.
    pub(super) fn owner(&self, path: &Path) -> Option<&Root> {
        self.list.iter().find(|r| path.starts_with(&r.path))
    }

    /// Whether `path` is outside every root or ignored by its root's rules.
    pub(super) fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        self.owner(path).is_none_or(|r| r.is_ignored(path, is_dir))
    }

    /// When `path` is a root's rules file, re-reads that root's rules and returns true.
    pub(super) fn reload_if_rules_file(&mut self, path: &Path) -> bool {
        if path.file_name().is_none_or(|n| n != IGNORE_FILE) {
            return false;
        }
        let Some(parent) = path.parent() else {
            return false;
        };
        match self.get_mut(parent) {
            Some(root) => {
                root.reload();
                true
            }
            None => false,
        }
    }

    /// The watched directories.
    pub(super) fn paths(&self) -> Vec<PathBuf> {
        self.list.iter().map(|r| r.path.clone()).collect()
    }
}

fn read_rules_file(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_RULES_FILE).read_to_end(&mut bytes) {
        warn!(file = %path.display(), error = %e, "could not read artifact ignore file");
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn build<'a>(root: &Path, lines: impl Iterator<Item = &'a str>) -> Gitignore {
    let mut builder = GitignoreBuilder::new(root);
    for line in lines {
        if let Err(e) = builder.add_line(None, line) {
            warn!(dir = %root.display(), error = %e, "invalid artifact ignore rule skipped");
        }
    }
    builder.build().unwrap_or_else(|e| {
        warn!(dir = %root.display(), error = %e, "artifact ignore rules unusable; none applied");
        Gitignore::empty()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_ignore_files_inside_ignored_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path().to_path_buf(), None);
        assert!(root.is_ignored(&dir.path().join("node_modules/x.js"), false));
        assert!(root.is_ignored(&dir.path().join("a/__pycache__/m.pyc"), false));
        assert!(!root.is_ignored(&dir.path().join("a/b.txt"), false));
        assert!(!root.is_ignored(&dir.path().join(".env"), false));
        assert!(root.is_ignored(&dir.path().join(IGNORE_FILE), false));
    }

    #[test]
    fn request_rules_win_over_the_rules_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IGNORE_FILE), "*.txt\n").unwrap();
        let mut roots = Roots::default();
        roots.insert(Root::new(dir.path().to_path_buf(), Some("*.log")));
        assert!(roots.is_ignored(&dir.path().join("sub/a.log"), false));
        assert!(!roots.is_ignored(&dir.path().join("a.txt"), false));
        assert!(roots.reload_if_rules_file(&dir.path().join(IGNORE_FILE)));
        assert!(!roots.is_ignored(&dir.path().join("a.txt"), false));
        assert!(roots.is_ignored(Path::new("/elsewhere/a.txt"), false));
    }
}
