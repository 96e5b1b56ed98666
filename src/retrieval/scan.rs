//! Which files are documents, finding them on disk, and resolving a path a
//! user asked to open without ever leaving the workspace.
//!
//! A document is a regular file named `*.md` or `*.markdown` under a
//! workspace that the watcher reports (not under `logs/`, `tasks/` or
//! `inbox/`, no `.hidden` part, no temp names) and that no
//! `AGENT_RUNTIME_RETRIEVAL_EXCLUDE_GLOBS` pattern matches. Symbolic links
//! are not followed when walking, so nothing outside the workspace is ever
//! indexed; `open` follows a link only when it ends inside the workspace.

use crate::domain::Glob;
use crate::workspace::watch::is_watched;
use std::path::{Component, Path, PathBuf};

/// What is indexed.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Paths left out.
    pub exclude: Vec<Glob>,
}

impl Rules {
    /// Whether the workspace-relative `rel` is a document.
    pub fn is_document(&self, rel: &str) -> bool {
        let lower = rel.to_ascii_lowercase();
        (lower.ends_with(".md") || lower.ends_with(".markdown")) && is_watched(rel) && !self.exclude.iter().any(|g| g.matches(rel))
    }

    /// Whether a directory `rel` may hold documents (walking skips the rest).
    fn may_hold(&self, rel: &str) -> bool {
        is_watched(rel) && !self.exclude.iter().any(|g| g.matches(rel))
    }
}

/// A file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Workspace-relative path (`/` separators).
    pub rel: String,
    /// Size in bytes.
    pub size: i64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
}

/// Modification time in ns since the epoch (0 if unknown).
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Most files looked at in one workspace (a guard against a runaway tree).
pub const MAX_FILES: usize = 200_000;

/// Every document under `dir` (the workspace directory), not following links.
pub fn walk(dir: &Path, rules: &Rules) -> Vec<Found> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                if rules.may_hold(&rel) {
                    stack.push((e.path(), rel));
                }
            } else if t.is_file() && rules.is_document(&rel) {
                let Ok(meta) = e.metadata() else { continue };
                out.push(Found { rel, size: i64::try_from(meta.len()).unwrap_or(i64::MAX), mtime_ns: mtime_ns(&meta) });
                if out.len() >= MAX_FILES {
                    tracing::warn!(dir = %dir.display(), max = MAX_FILES, "a workspace holds more markdown files than the index takes; the rest are left out");
                    return out;
                }
            }
        }
    }
    out
}

/// Why a path cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Outside the workspace or not a plain relative path.
    #[error("refused: {0}")]
    Refused(String),
    /// Not a document (wrong kind of file, or a runtime/hidden/excluded path).
    #[error(
        "{0} is not a workspace document (only *.md and *.markdown files outside logs/, tasks/, inbox/ and hidden folders can be opened)"
    )]
    NotDocument(String),
    /// Not there.
    #[error("{0} was not found in this workspace")]
    NotFound(String),
}

/// Checks a path typed by a user: relative, no `..`, no control characters.
/// Returns it with `./` parts and duplicate slashes removed.
pub fn clean(rel: &str) -> Result<String, PathError> {
    let raw = rel.trim();
    if raw.is_empty() {
        return Err(PathError::Refused("the path is empty".into()));
    }
    if raw.chars().any(char::is_control) || raw.contains('\\') {
        return Err(PathError::Refused(format!("{raw:?} contains a control character or a backslash")));
    }
    if raw.starts_with('/') || raw.starts_with('~') {
        return Err(PathError::Refused(format!("{raw} is absolute; give a path relative to the workspace")));
    }
    let mut parts = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().unwrap_or_default().to_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(PathError::Refused(format!("{raw} leaves the workspace ('..')"))),
            Component::RootDir | Component::Prefix(_) => return Err(PathError::Refused(format!("{raw} is absolute"))),
        }
    }
    if parts.is_empty() {
        return Err(PathError::Refused("the path names the workspace itself".into()));
    }
    Ok(parts.join("/"))
}

/// Resolves `rel` (already [`clean`]ed) in the workspace `dir` to a real
/// file inside it: a link is followed only when it ends inside the
/// workspace, and the target must be a document too.
pub fn resolve(dir: &Path, rel: &str, rules: &Rules) -> Result<PathBuf, PathError> {
    if !rules.is_document(rel) {
        return Err(PathError::NotDocument(rel.to_string()));
    }
    let base = dir.canonicalize().map_err(|_| PathError::NotFound(rel.to_string()))?;
    let real = base.join(rel).canonicalize().map_err(|_| PathError::NotFound(rel.to_string()))?;
    let inside = real.strip_prefix(&base).map_err(|_| PathError::Refused(format!("{rel} leads outside the workspace")))?;
    let inside = inside.to_str().ok_or_else(|| PathError::Refused(format!("{rel} leads to a path that is not UTF-8")))?;
    if !rules.is_document(inside) {
        return Err(PathError::Refused(format!("{rel} leads to {inside}, which is not a workspace document")));
    }
    if !real.is_file() {
        return Err(PathError::NotFound(rel.to_string()));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_markdown_outside_runtime_hidden_and_excluded_paths() {
        let rules = Rules { exclude: vec![Glob::parse("drafts/**").expect("glob")] };
        for yes in ["a.md", "notes/b.markdown", "Deep/X.MD"] {
            assert!(rules.is_document(yes), "{yes}");
        }
        for no in ["a.txt", "logs/chats/t/1.md", "tasks/2026/x.md", ".git/x.md", "n/.h.md", "drafts/x.md", "drafts/a/b.md", "x.md.tmp"] {
            assert!(!rules.is_document(no), "{no}");
        }
    }

    #[test]
    fn user_paths_are_cleaned_or_refused() {
        assert_eq!(clean("./notes//a.md"), Ok("notes/a.md".into()));
        for bad in ["", "/etc/passwd", "../other/x.md", "a/../../x.md", "a\\b.md", "~/x.md", "a\0.md", "."] {
            assert!(matches!(clean(bad), Err(PathError::Refused(_))), "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_resolve_only_inside_the_workspace() {
        let root = tempfile::tempdir().expect("tempdir");
        let ws = root.path().join("w");
        let other = root.path().join("other");
        std::fs::create_dir_all(ws.join("notes")).expect("mkdir");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::fs::write(ws.join("notes/real.md"), "# real").expect("write");
        std::fs::write(other.join("x.md"), "# secret").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", ws.join("passwd.md")).expect("link");
        std::os::unix::fs::symlink(other.join("x.md"), ws.join("escape.md")).expect("link");
        std::os::unix::fs::symlink(&other, ws.join("dirlink")).expect("link");
        std::os::unix::fs::symlink(ws.join("notes/real.md"), ws.join("alias.md")).expect("link");
        let rules = Rules::default();
        assert!(resolve(&ws, "notes/real.md", &rules).is_ok());
        assert!(resolve(&ws, "alias.md", &rules).is_ok(), "a link inside the workspace is fine");
        for bad in ["passwd.md", "escape.md", "dirlink/x.md"] {
            assert!(matches!(resolve(&ws, bad, &rules), Err(PathError::Refused(_))), "{bad}");
        }
        assert!(matches!(resolve(&ws, "missing.md", &rules), Err(PathError::NotFound(_))));
        assert!(matches!(resolve(&ws, "notes", &rules), Err(PathError::NotDocument(_))));
        // Walking never follows the links.
        let found: Vec<String> = walk(&ws, &rules).into_iter().map(|f| f.rel).collect();
        assert_eq!(found, ["notes/real.md"]);
    }
}
