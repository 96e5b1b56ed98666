//! The on-disk workspace tree (`<root>/<workspace-id>/...`): directories on
//! first contact, append-only markdown chat logs, and task result files
//! (written to a temp file and renamed, so a crash never leaves half a file).

use crate::clock::{UnixMillis, rfc3339};
use crate::domain::{ChatRef, Task, WorkspaceId};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Path-safe form of an id: `[a-zA-Z0-9._-]` kept, the rest `-`, trimmed of
/// `-` and `.`, lower case; never empty.
pub fn sanitize_segment(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let trimmed = mapped.trim_matches(['-', '.']);
    if trimmed.is_empty() { "_".to_string() } else { trimmed.to_string() }
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

/// The workspace tree under one root.
#[derive(Debug, Clone)]
pub struct Workspaces {
    root: PathBuf,
    /// Serialises chat-log appends in this process, so two first messages of
    /// a new chat cannot both write the file's header.
    log_lock: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Workspaces {
    /// The tree under `root` (`AGENT_RUNTIME_WORKSPACE_ROOT`).
    pub fn new(root: PathBuf) -> Self {
        Self { root, log_lock: Default::default() }
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
        let header = format!(
            "# Chat Log\n\n- connector: `{}`\n- external_id: `{}`\n- display_name: `{}`\n\n",
            chat.connector, chat.external_id, display_name
        );
        let now = rfc3339(chrono::Utc::now().timestamp_millis());
        let mut text = String::new();
        for (dir, actor, body) in entries.into_iter().filter(|(_, _, b)| !b.trim().is_empty()) {
            let (label, word) = match dir {
                Direction::Inbound => ("INBOUND", "inbound"),
                Direction::Outbound => ("OUTBOUND", "outbound"),
            };
            text.push_str(&format!("## {now} `{label}`\n- direction: `{word}`\n- actor: `{actor}`\n\n{}\n\n", body.trim()));
        }
        let lock = self.log_lock.clone();
        tokio::task::spawn_blocking(move || {
            // Held only inside this blocking closure, never across an await.
            let _guard = lock.lock().map_err(|_| std::io::Error::other("chat-log lock poisoned"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            let fresh = f.metadata()?.len() == 0;
            // One write per call, under the lock: entries never interleave.
            let all = if fresh { header + &text } else { text };
            f.write_all(all.as_bytes())
        })
        .await
        .map_err(std::io::Error::other)?
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
        tokio::task::spawn_blocking(move || {
            let dir = path.parent().ok_or_else(|| std::io::Error::other("result path has no parent"))?;
            std::fs::create_dir_all(dir)?;
            let tmp = path.with_extension("md.tmp");
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_escape_the_tree() {
        assert_eq!(sanitize_segment("../../etc"), "etc");
        assert_eq!(sanitize_segment("A b/C"), "a-b-c");
        assert_eq!(sanitize_segment(".."), "_");
    }

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
        let text = std::fs::read_to_string(dir.path().join("w/logs/chats/codex/s-1.md")).expect("read");
        assert_eq!(text.matches("# Chat Log").count(), 1);
        assert!(text.find("hi 0").expect("0") < text.find("yo 1").expect("1"));
        assert_eq!(text.matches("`OUTBOUND`").count(), 2);
    }
}
