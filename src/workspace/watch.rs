//! The workspace watcher: one recursive, debounced watch over the workspace
//! root (`notify` with `notify-debouncer-full`), turned into typed
//! [`WorkspaceChange`]s on a broadcast channel that the scheduler (event
//! objectives) and, later, the retrieval index subscribe to.
//!
//! What is *not* reported, because the runtime writes it itself or it is
//! not a document: anything under a workspace's `logs/` (chat logs),
//! `tasks/` (task results) and `inbox/` (attachments), any file or
//! directory whose name starts with `.`, and temp files (`*.tmp`, `*.part`,
//! `*.swp`, `*~`). Symbolic links are not followed, so nothing outside the
//! workspace tree is ever watched; paths are reported relative to their
//! workspace, never absolute. A workspace created later is under the root,
//! so it is watched too; the files already in a directory when its creation
//! is seen are reported as created (inotify watches a new directory only
//! from then on).

use super::sanitize_segment;
use crate::domain::WorkspaceId;
use crate::health::Health;
use crate::store::Store;
use notify_debouncer_full::notify::event::{ModifyKind, RenameMode};
use notify_debouncer_full::notify::{self, EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, DebouncedEvent, new_debouncer_opt};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Health component of the watcher.
pub const COMPONENT: &str = "watcher";

/// Top-level directories of a workspace that the runtime writes itself.
pub const RUNTIME_DIRS: [&str; 3] = ["logs", "tasks", "inbox"];

/// Changes buffered for slow subscribers.
const CHANNEL: usize = 1024;

/// The watcher beats at least this often.
const BEAT: Duration = Duration::from_secs(30);

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A file or directory appeared.
    Created,
    /// Its content changed.
    Modified,
    /// It was removed (or renamed away).
    Removed,
    /// It appeared under this name by a rename.
    Renamed,
}

/// One change in a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceChange {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The path relative to the workspace, with `/` separators.
    pub rel_path: String,
    /// What happened.
    pub kind: ChangeKind,
}

/// Whether a workspace-relative path is one the watcher reports (see the module docs).
pub fn is_watched(rel: &str) -> bool {
    let mut parts = rel.split('/').filter(|p| !p.is_empty()).peekable();
    let Some(first) = parts.peek() else { return false };
    if RUNTIME_DIRS.contains(first) {
        return false;
    }
    rel.split('/')
        .filter(|p| !p.is_empty())
        .all(|p| !(p.starts_with('.') || p.ends_with(".tmp") || p.ends_with(".part") || p.ends_with(".swp") || p.ends_with('~')))
}

/// The watcher's channel; subscribe before starting it to miss nothing.
#[derive(Debug, Clone)]
pub struct WatchChannel(broadcast::Sender<WorkspaceChange>);

impl Default for WatchChannel {
    fn default() -> Self {
        Self(broadcast::channel(CHANNEL).0)
    }
}

impl WatchChannel {
    /// A new subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<WorkspaceChange> {
        self.0.subscribe()
    }
}

/// Maps workspace directory names back to workspace ids.
struct Names {
    store: Store,
    by_dir: HashMap<String, WorkspaceId>,
}

impl Names {
    async fn lookup(&mut self, dir: &str) -> Option<WorkspaceId> {
        if let Some(id) = self.by_dir.get(dir) {
            return Some(id.clone());
        }
        // A workspace created since the last look: read them again.
        match self.store.workspace_ids().await {
            Ok(ids) => self.by_dir = ids.into_iter().map(|id| (sanitize_segment(id.as_str()), id)).collect(),
            Err(e) => tracing::warn!(error = %e, "watcher: cannot read the workspace list"),
        }
        self.by_dir.get(dir).cloned()
    }
}

/// Splits a path under `root` into (workspace directory, workspace-relative path).
fn split(root: &Path, path: &Path) -> Option<(String, String)> {
    let rest = path.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for c in rest.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            _ => return None,
        }
    }
    if parts.len() < 2 {
        return None;
    }
    let dir = parts.remove(0);
    Some((dir, parts.join("/")))
}

/// Most files reported from one new directory.
const NEW_DIR_FILES: usize = 10_000;

/// The regular files under `dir` (not following links), at most [`NEW_DIR_FILES`].
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
                if out.len() >= NEW_DIR_FILES {
                    return out;
                }
            }
        }
    }
    out
}

/// The changes one notify event stands for.
fn kinds(e: &DebouncedEvent) -> Vec<(PathBuf, ChangeKind)> {
    let one = |k: ChangeKind| e.paths.iter().map(|p| (p.clone(), k)).collect();
    match e.kind {
        EventKind::Create(_) => one(ChangeKind::Created),
        EventKind::Remove(_) => one(ChangeKind::Removed),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if e.paths.len() == 2 => {
            vec![(e.paths[0].clone(), ChangeKind::Removed), (e.paths[1].clone(), ChangeKind::Renamed)]
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => one(ChangeKind::Removed),
        EventKind::Modify(ModifyKind::Name(_)) => one(ChangeKind::Renamed),
        EventKind::Modify(ModifyKind::Metadata(_)) | EventKind::Access(_) => Vec::new(),
        EventKind::Modify(_) | EventKind::Any | EventKind::Other => one(ChangeKind::Modified),
    }
}

/// Watches `root` until `stop` fires, publishing on `channel`. Creates the
/// root if it is missing. A watch that cannot start, or reports errors,
/// degrades the `watcher` component; the daemon goes on without it.
pub async fn run(root: PathBuf, store: Store, channel: WatchChannel, debounce: Duration, health: Health, stop: CancellationToken) {
    health.register_periodic(COMPONENT, BEAT);
    let (tx, mut rx) = mpsc::unbounded_channel::<DebounceEventResult>();
    // Watched by its canonical path, so every reported path starts with it
    // (the default root, `./data/workspaces`, is relative).
    let started = std::fs::create_dir_all(&root).and_then(|()| root.canonicalize()).map_err(notify::Error::io).and_then(|root| {
        let config = notify::Config::default().with_follow_symlinks(false);
        let handler = move |r: DebounceEventResult| {
            let _ = tx.send(r);
        };
        let mut d = new_debouncer_opt::<_, notify::RecommendedWatcher, _>(
            debounce,
            None,
            handler,
            notify_debouncer_full::RecommendedCache::new(),
            config,
        )?;
        d.watch(&root, RecursiveMode::Recursive)?;
        Ok((d, root))
    });
    let (_debouncer, root) = match started {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(root = %root.display(), error = %e, "cannot watch the workspace tree; event objectives will not fire");
            health.degrade(COMPONENT, format!("cannot watch {}: {e}", root.display()));
            stop.cancelled().await;
            return;
        }
    };
    health.healthy(COMPONENT, format!("watching {}", root.display()));
    let mut names = Names { store, by_dir: HashMap::new() };
    let mut beat = tokio::time::interval(BEAT);
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            _ = beat.tick() => {
                health.beat(COMPONENT);
                continue;
            }
            b = rx.recv() => b,
        };
        let Some(batch) = batch else { return };
        let events = match batch {
            Ok(events) => events,
            Err(errors) => {
                let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                tracing::warn!(errors = %text, "workspace watcher error");
                health.degrade(COMPONENT, format!("watch errors: {text}"));
                continue;
            }
        };
        for e in &events {
            if e.need_rescan() {
                tracing::warn!("the workspace watcher lost events (kernel queue overflow); changes in this period may fire nothing");
            }
            let mut changes = kinds(e);
            // A new directory's watch is added only once its creation is seen, so
            // files written into it at once would be missed: report what it holds.
            let new_dirs: Vec<PathBuf> = changes
                .iter()
                .filter(|(p, k)| matches!(k, ChangeKind::Created | ChangeKind::Renamed) && p.is_dir() && !p.is_symlink())
                .map(|(p, _)| p.clone())
                .collect();
            for d in new_dirs {
                changes.extend(files_under(&d).into_iter().map(|f| (f, ChangeKind::Created)));
            }
            for (path, kind) in changes {
                let Some((dir, rel)) = split(&root, &path) else { continue };
                if !is_watched(&rel) {
                    continue;
                }
                let Some(workspace_id) = names.lookup(&dir).await else { continue };
                // No receiver is fine: nothing listens yet.
                let _ = channel.0.send(WorkspaceChange { workspace_id, rel_path: rel, kind });
            }
        }
        health.beat(COMPONENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtimes_own_files_are_not_reported() {
        for yes in ["notes/x.md", "README.md", "context/SYSTEM_PROMPT.md", "a/b/c.markdown"] {
            assert!(is_watched(yes), "{yes}");
        }
        for no in [
            "logs/chats/telegram/1.md",
            "tasks/2026/12/05/t.md",
            "inbox/telegram/1/a.md",
            ".git/HEAD",
            "notes/.x.md.swp",
            "notes/x.md.tmp",
            "notes/.hidden/x.md",
            "notes/x.md~",
            "",
        ] {
            assert!(!is_watched(no), "{no}");
        }
    }

    #[test]
    fn paths_split_into_workspace_and_relative_path() {
        let root = Path::new("/data/workspaces");
        assert_eq!(split(root, Path::new("/data/workspaces/ws1/notes/x.md")), Some(("ws1".into(), "notes/x.md".into())));
        assert_eq!(split(root, Path::new("/data/workspaces/ws1")), None, "the workspace directory itself");
        assert_eq!(split(root, Path::new("/elsewhere/ws1/x.md")), None);
    }
}
