//! The on-disk workspace tree (`<root>/<workspace-id>/...`): directories on
//! first contact, append-only markdown chat logs, and task result files
//! (written to a temp file and renamed, so a crash never leaves half a file).
//! Every id becomes a path segment through [`sanitize_segment`], which is
//! injective: two chats never share a directory or a log.

mod segment;
mod staging;
pub mod watch;

use segment::legacy_segment;
pub use segment::{MAX_SEGMENT, sanitize_file_name, sanitize_segment};
pub use staging::{Staged, Staging};
pub use watch::{ChangeKind, WatchChannel, WorkspaceChange};

use crate::clock::{UnixMillis, rfc3339};
use crate::domain::{ChatRef, Task, WorkspaceId};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temp file and a rename, creating the directories.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Direction of a chat-log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the user.
    Inbound,
    /// From the runtime.
    Outbound,
}

/// The data of a finished `general` task's result file.
pub struct TaskResult<'a> {
    /// The task.
    pub task: &'a Task,
    /// The model that answered.
    pub model: &'a str,
    /// The answer.
    pub output: &'a str,
    /// Completion time (picks the `YYYY/MM/DD` directory, UTC).
    pub completed_at: UnixMillis,
}

/// Where the log thread reports an append's outcome.
type Done = tokio::sync::oneshot::Sender<std::io::Result<()>>;

/// One chat-log append waiting for the log thread.
struct LogJob {
    path: PathBuf,
    /// Where the log was before issue 14's names, when that differs.
    legacy: Option<PathBuf>,
    /// The header's first lines, naming the chat (`header` starts with them).
    ident: String,
    header: String,
    text: String,
    done: Done,
}

/// Most appends the log thread takes in one round.
const LOG_BATCH: usize = 1024;

/// The chat-log thread: takes every append that is waiting, groups them by
/// file (in arrival order) and writes each file once. Being the only writer
/// in the process, two first messages of a new chat cannot both write the
/// header, and entries never interleave. Ends when every sender is gone.
fn log_thread(rx: &std::sync::mpsc::Receiver<LogJob>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < LOG_BATCH
            && let Ok(job) = rx.try_recv()
        {
            batch.push(job);
        }
        // One entry per file: its first job, with later jobs' text appended.
        let mut files: Vec<(LogJob, Vec<Done>)> = Vec::new();
        for job in batch {
            match files.iter_mut().find(|(f, _)| f.path == job.path) {
                Some((f, waiting)) => {
                    f.text.push_str(&job.text);
                    waiting.push(job.done);
                }
                None => files.push((job, Vec::new())),
            }
        }
        for (LogJob { path, legacy, ident, header, text, done }, mut waiting) in files {
            waiting.push(done);
            if let Some(old) = legacy {
                adopt_legacy_log(&old, &path, &ident);
            }
            let result = append(&path, &header, &text);
            for done in waiting {
                let _ = done.send(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::new(e.kind(), e.to_string())));
            }
        }
    }
}

/// Moves a chat log from its pre-issue-14 name to `path` when `path` does
/// not exist yet and the old file's header names this very chat (the old
/// names could be shared by two chats).
fn adopt_legacy_log(old: &Path, path: &Path, ident: &str) {
    if path.exists() {
        return;
    }
    let mut head = vec![0; ident.len()];
    let same_chat =
        std::fs::File::open(old).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)).is_ok() && head == ident.as_bytes();
    if same_chat {
        match std::fs::rename(old, path) {
            Ok(()) => tracing::info!(from = %old.display(), to = %path.display(), "chat log moved to its new name"),
            Err(e) => tracing::warn!(error = %e, from = %old.display(), "could not move a chat log to its new name; a new log starts"),
        }
    }
}

fn append(path: &Path, header: &str, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let fresh = f.metadata()?.len() == 0;
    // One write per file per round.
    if fresh { f.write_all(format!("{header}{text}").as_bytes()) } else { f.write_all(text.as_bytes()) }
}

/// The workspace tree under one root.
#[derive(Debug, Clone)]
pub struct Workspaces {
    root: PathBuf,
    /// To the chat-log thread (started with the first `Workspaces`, ends with
    /// the last clone).
    log: std::sync::mpsc::Sender<LogJob>,
}

impl std::fmt::Debug for LogJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogJob").field("path", &self.path).finish()
    }
}

impl Workspaces {
    /// The tree under `root` (`AGENT_RUNTIME_WORKSPACE_ROOT`); starts its
    /// chat-log thread.
    pub fn new(root: PathBuf) -> Self {
        let (log, rx) = std::sync::mpsc::channel();
        // If the thread cannot start, appends report the error; nothing else depends on it.
        let _ = std::thread::Builder::new().name("chat-log".into()).spawn(move || log_thread(&rx));
        Self { root, log }
    }

    /// A workspace's directory.
    pub fn dir(&self, id: &WorkspaceId) -> PathBuf {
        self.root.join(sanitize_segment(id.as_str()))
    }

    /// The chat log of `chat` in workspace `ws`, relative to the workspace.
    pub fn chat_log_rel(chat: &ChatRef) -> PathBuf {
        Path::new("logs/chats").join(sanitize_segment(&chat.connector)).join(format!("{}.md", sanitize_segment(&chat.external_id)))
    }

    /// Appends one entry to the chat's markdown log (creating the file with
    /// its header, and the workspace directories, on first use).
    pub async fn append_chat_log(
        &self,
        ws: &WorkspaceId,
        chat: &ChatRef,
        display_name: &str,
        entries: Vec<(Direction, String, String)>,
    ) -> std::io::Result<()> {
        let path = self.dir(ws).join(Self::chat_log_rel(chat));
        let old = Path::new("logs/chats").join(legacy_segment(&chat.connector)).join(format!("{}.md", legacy_segment(&chat.external_id)));
        let legacy = (old != Self::chat_log_rel(chat)).then(|| self.dir(ws).join(old));
        let ident = format!("# Chat Log\n\n- connector: `{}`\n- external_id: `{}`\n", chat.connector, chat.external_id);
        let header = format!("{ident}- display_name: `{display_name}`\n\n");
        let now = rfc3339(chrono::Utc::now().timestamp_millis());
        let mut text = String::new();
        for (dir, actor, body) in entries.into_iter().filter(|(_, _, b)| !b.trim().is_empty()) {
            let (label, word) = match dir {
                Direction::Inbound => ("INBOUND", "inbound"),
                Direction::Outbound => ("OUTBOUND", "outbound"),
            };
            text.push_str(&format!("## {now} `{label}`\n- direction: `{word}`\n- actor: `{actor}`\n\n{}\n\n", body.trim()));
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        let gone = || std::io::Error::other("the chat-log writer has stopped");
        self.log.send(LogJob { path, legacy, ident, header, text, done }).map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }

    /// Saves a chat attachment as `<ws>/inbox/<connector>/<chat>/<stem>-<name>`
    /// (written to a temp file and renamed); returns the workspace-relative path.
    pub async fn save_attachment(
        &self,
        ws: &WorkspaceId,
        chat: &ChatRef,
        stem: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> std::io::Result<String> {
        let rel = format!("{}/{}", staging::inbox_rel(chat), staging::attachment_name(stem, name));
        let path = self.dir(ws).join(&rel);
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await.map_err(std::io::Error::other)??;
        Ok(rel)
    }

    /// Writes `<ws>/tasks/YYYY/MM/DD/<task-id>.md`; returns the workspace-relative path.
    pub async fn write_task_result(&self, r: &TaskResult<'_>) -> std::io::Result<String> {
        let t = r.task;
        let date = chrono::DateTime::from_timestamp_millis(r.completed_at).unwrap_or_default().format("%Y/%m/%d").to_string();
        let rel = format!("tasks/{date}/{}.md", sanitize_segment(t.id.as_str()));
        let body = format!(
            "# Task Result\n\n- ID: `{}`\n- Kind: `{}`\n- Workspace: `{}`\n- Context: `{}`\n- Title: {}\n- Model: `{}`\n- Attempt: {}\n- Completed At (UTC): {}\n\n## Prompt\n\n{}\n\n## Final Output\n\n{}\n",
            t.id,
            t.kind,
            t.workspace_id,
            t.context_id,
            t.title,
            r.model,
            t.attempts,
            rfc3339(r.completed_at),
            t.prompt.trim(),
            r.output.trim()
        );
        let path = self.dir(&t.workspace_id).join(&rel);
        tokio::task::spawn_blocking(move || write_atomically(&path, body.as_bytes())).await.map_err(std::io::Error::other)??;
        Ok(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chat_log_has_one_header_and_entries_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspaces::new(dir.path().to_path_buf());
        let id = WorkspaceId::from_string("w");
        let chat = ChatRef::new("codex", "s/1").expect("chat");
        for i in 0..2 {
            let e =
                vec![(Direction::Inbound, "u".into(), format!("hi {i}")), (Direction::Outbound, "agent-runtime".into(), format!("yo {i}"))];
            ws.append_chat_log(&id, &chat, "S", e).await.expect("append");
        }
        let text = std::fs::read_to_string(dir.path().join("w/logs/chats/codex/s%2F1.md")).expect("read");
        assert_eq!(text.matches("# Chat Log").count(), 1);
        assert!(text.find("hi 0").expect("0") < text.find("yo 1").expect("1"));
        assert_eq!(text.matches("`OUTBOUND`").count(), 2);
    }

    /// Issue 14: the old names merged chats (`a@b-c` and `a-b@c` were both
    /// `a-b-c`), so a log under its old name moves only if its header names this chat.
    #[tokio::test]
    async fn a_log_under_its_old_name_is_moved_once_and_only_for_its_own_chat() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspaces::new(dir.path().to_path_buf());
        let id = WorkspaceId::from_string("w");
        let logs = dir.path().join("w/logs/chats/email");
        std::fs::create_dir_all(&logs).expect("mkdir");
        let old = "# Chat Log\n\n- connector: `email`\n- external_id: `a@b-c`\n- display_name: `A`\n\nearlier entry\n";
        std::fs::write(logs.join("a-b-c.md"), old).expect("old log");
        let entry = |t: &str| vec![(Direction::Inbound, "u".to_string(), t.to_string())];

        let other = ChatRef::new("email", "a-b@c").expect("chat");
        ws.append_chat_log(&id, &other, "B", entry("from b")).await.expect("append");
        assert_eq!(std::fs::read_to_string(logs.join("a-b-c.md")).expect("old"), old, "another chat's file is not taken");
        assert!(std::fs::read_to_string(logs.join("a-b@c.md")).expect("new").contains("from b"));

        let own = ChatRef::new("email", "a@b-c").expect("chat");
        ws.append_chat_log(&id, &own, "A", entry("new entry")).await.expect("append");
        ws.append_chat_log(&id, &own, "A", entry("newer entry")).await.expect("append");
        assert!(!logs.join("a-b-c.md").exists(), "moved");
        let text = std::fs::read_to_string(logs.join("a@b-c.md")).expect("read");
        assert_eq!(text.matches("# Chat Log").count(), 1);
        let (a, b, c) = (text.find("earlier entry"), text.find("new entry"), text.find("newer entry"));
        assert!(a.is_some() && a < b && b < c, "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_appends_write_one_header_and_every_entry_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspaces::new(dir.path().to_path_buf());
        let id = WorkspaceId::from_string("w");
        let mut joins = Vec::new();
        for i in 0..64 {
            let ws = ws.clone();
            let id = id.clone();
            joins.push(tokio::spawn(async move {
                // Two chats share the batches; each file gets its own header.
                let chat = ChatRef::new("codex", &format!("c{}", i % 2)).expect("chat");
                let body = format!("line {i}\n{}", "x".repeat(2000));
                ws.append_chat_log(&id, &chat, "S", vec![(Direction::Inbound, "u".into(), body)]).await.expect("append");
            }));
        }
        for j in joins {
            j.await.expect("join");
        }
        for c in 0..2 {
            let text = std::fs::read_to_string(dir.path().join(format!("w/logs/chats/codex/c{c}.md"))).expect("read");
            assert!(text.starts_with("# Chat Log"), "the header comes first");
            assert_eq!(text.matches("# Chat Log").count(), 1);
            assert_eq!(text.matches("`INBOUND`").count(), 32);
            for i in (c..64).step_by(2) {
                let at = text.find(&format!("line {i}\n")).unwrap_or_else(|| panic!("line {i} missing"));
                assert!(text[at..].starts_with(&format!("line {i}\n{}", "x".repeat(2000))), "entry {i} is whole");
            }
        }
    }
}
