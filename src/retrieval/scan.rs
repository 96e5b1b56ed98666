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

/// Opens `path` for reading only if its last component is not a link and
/// it is a regular file (checked on the open handle, so a file swapped for
/// a link or a FIFO after a check is refused, not followed or waited on);
/// returns the file and its metadata.
pub fn open_regular(path: &Path) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let f = o.open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((f, meta))
}

/// What a walk found: the documents, and the folders it could not read
/// (workspace-relative; what the index holds under them is not "gone").
#[derive(Debug, Default)]
pub struct Walk {
    /// The documents.
    pub found: Vec<Found>,
    /// Folders that could not be listed.
    pub unreadable: Vec<String>,
}

impl Walk {
    /// Whether `rel` is under a folder that could not be read.
    pub fn hidden(&self, rel: &str) -> bool {
        self.unreadable.iter().any(|d| d.is_empty() || rel.strip_prefix(d.as_str()).is_some_and(|r| r.starts_with('/')))
    }
}

/// Every document under `dir`, the workspace's folder `prefix` (empty for
/// the workspace itself: the rules see workspace-relative paths), not
/// following links.
pub fn walk(dir: &Path, prefix: &str, rules: &Rules) -> Walk {
    let mut out = Walk::default();
    let mut stack = vec![(dir.to_path_buf(), prefix.to_string())];
    while let Some((d, prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            // Gone: nothing under it is kept.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "cannot list a workspace folder; its documents are kept as they were");
                out.unreadable.push(prefix);
                continue;
            }
        };
        for e in entries.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
            // Names a user could not type to open are left out (and so stay consistent with the watcher's paths).
            if clean(&name).ok().as_deref() != Some(name.as_str()) {
                continue;
            }
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                if rules.may_hold(&rel) {
                    stack.push((e.path(), rel));
                }
            } else if t.is_file() && rules.is_document(&rel) {
                let Ok(meta) = e.metadata() else { continue };
                out.found.push(Found { rel, size: i64::try_from(meta.len()).unwrap_or(i64::MAX), mtime_ns: mtime_ns(&meta) });
                if out.found.len() >= MAX_FILES {
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
        let found: Vec<String> = walk(&ws, "", &rules).found.into_iter().map(|f| f.rel).collect();
        assert_eq!(found, ["notes/real.md"]);
        // Rules see workspace-relative paths when a subfolder is walked.
        std::fs::create_dir_all(ws.join("notes/logs")).expect("mkdir");
        std::fs::write(ws.join("notes/logs/x.md"), "x").expect("write");
        let sub: Vec<String> = walk(&ws.join("notes"), "notes", &rules).found.into_iter().map(|f| f.rel).collect();
        assert_eq!(sub.len(), 2, "notes/logs is not the runtime's logs/: {sub:?}");
        // A folder that cannot be listed is reported, not taken as empty; a missing one is empty.
        let w = walk(&ws.join("notes/real.md"), "odd", &rules);
        assert!(w.found.is_empty() && w.hidden("odd/a.md") && !w.hidden("oddx/a.md"));
        let w = walk(&ws.join("missing"), "missing", &rules);
        assert!(w.found.is_empty() && !w.hidden("missing/a.md"));
        // A link or a FIFO is not opened as a file.
        assert!(open_regular(&ws.join("passwd.md")).is_err());
        assert!(open_regular(&ws.join("notes/real.md")).is_ok());
    }
}
