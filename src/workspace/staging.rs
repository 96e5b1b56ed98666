//! Attachments received straight to disk, never whole in memory: each is
//! written chunk by chunk to a hidden temp file (`.<stem>-<name>.<random>.part`)
//! beside the name it will be kept under, renamed into place when its
//! message is stored ([`Staged::commit`]), and deleted if it is not
//! (refused, failed, or dropped on the way). A chat's quota counts the
//! bytes in its inbox directory, temp files included ([`Workspaces::inbox_usage`]).

use super::Workspaces;
use super::segment::{encode, sanitize_file_name, sanitize_segment};
use crate::domain::{ChatRef, WorkspaceId};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A temp file left this long (a crash mid-download whose message never
/// came again) no longer counts against the quota and is deleted.
const STALE_PART: Duration = Duration::from_secs(24 * 3600);

/// Longest message-id stem in an attachment's file name.
const MAX_STEM: usize = 100;

/// A temp file, deleted when dropped unless it was renamed into place.
#[derive(Debug)]
struct TempPath {
    path: PathBuf,
    kept: bool,
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.kept {
            // One unlink; blocking for a moment is fine here (never SQLite, never a wait).
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An attachment being received (see the module docs).
#[derive(Debug)]
pub struct Staging {
    file: tokio::fs::File,
    temp: TempPath,
    dest: PathBuf,
    rel: String,
    len: u64,
}

/// A received attachment waiting for its message to be stored.
#[derive(Debug)]
pub struct Staged {
    temp: TempPath,
    dest: PathBuf,
    rel: String,
    len: u64,
}

impl Staging {
    /// Appends `chunk`.
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.write_all(chunk).await?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Completes the file (every write reaches it) without keeping it yet.
    pub async fn finish(mut self) -> io::Result<Staged> {
        self.file.flush().await?;
        drop(self.file);
        Ok(Staged { temp: self.temp, dest: self.dest, rel: self.rel, len: self.len })
    }
}

impl Staged {
    /// Its size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where it will be kept, relative to its workspace.
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// Renames it into place, at [`Staged::rel`].
    pub async fn commit(mut self) -> io::Result<()> {
        tokio::fs::rename(&self.temp.path, &self.dest).await?;
        self.temp.kept = true;
        Ok(())
    }
}

/// A chat's attachment directory, relative to its workspace.
pub(super) fn inbox_rel(chat: &ChatRef) -> String {
    format!("inbox/{}/{}", sanitize_segment(&chat.connector), sanitize_segment(&chat.external_id))
}

/// The file name of a message's attachment: `<stem>-<name>`.
pub(super) fn attachment_name(stem: &str, name: &str) -> String {
    format!("{}-{}", encode(stem, MAX_STEM), sanitize_file_name(name))
}

impl Workspaces {
    /// Starts receiving an attachment of `chat` (kept, once committed, as
    /// `<ws>/inbox/<connector>/<chat>/<stem>-<name>`).
    pub async fn stage_attachment(&self, ws: &WorkspaceId, chat: &ChatRef, stem: &str, name: &str) -> io::Result<Staging> {
        let file_name = attachment_name(stem, name);
        let rel = format!("{}/{file_name}", inbox_rel(chat));
        let dest = self.dir(ws).join(&rel);
        let dir = dest.parent().ok_or_else(|| io::Error::other("attachment path has no parent"))?.to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        // A random part: two receptions of one message (a platform's retry) never share a temp file.
        let path = dir.join(format!(".{file_name}.{}.part", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let file = tokio::fs::File::create(&path).await?;
        Ok(Staging { file, temp: TempPath { path, kept: false }, dest, rel, len: 0 })
    }

    /// Bytes in `chat`'s attachment directory (what its quota counts),
    /// deleting temp files older than a day on the way.
    pub async fn inbox_usage(&self, ws: &WorkspaceId, chat: &ChatRef) -> io::Result<u64> {
        let dir = self.dir(ws).join(inbox_rel(chat));
        tokio::task::spawn_blocking(move || usage(&dir)).await.map_err(io::Error::other)?
    }
}

fn usage(dir: &Path) -> io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let temp = entry.file_name().to_str().is_some_and(|n| n.starts_with('.') && n.ends_with(".part"));
        let stale = meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age > STALE_PART);
        if temp && stale {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        total += meta.len();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).map(|r| r.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()).unwrap_or_default();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_staged_file_is_hidden_until_committed_and_counted_all_along() {
        let root = tempfile::tempdir().expect("tempdir");
        let ws = Workspaces::new(root.path().to_path_buf());
        let (id, chat) = (WorkspaceId::from_string("w"), ChatRef::new("telegram", "-100").expect("chat"));
        let mut s = ws.stage_attachment(&id, &chat, "7", "a b.txt").await.expect("stage");
        s.write(b"hello ").await.expect("write");
        s.write(b"world").await.expect("write");
        assert_eq!(s.len(), 11);
        let staged = s.finish().await.expect("finish");
        let dir = root.path().join("w/inbox/telegram/-100");
        let temp = names(&dir);
        assert!(temp.len() == 1 && temp[0].starts_with(".7-a_b.txt.") && temp[0].ends_with(".part"), "{temp:?}");
        assert_eq!(ws.inbox_usage(&id, &chat).await.expect("usage"), 11, "in-flight bytes count");
        assert_eq!(staged.rel(), "inbox/telegram/-100/7-a_b.txt");
        staged.commit().await.expect("commit");
        assert_eq!(names(&dir), vec!["7-a_b.txt"]);
        assert_eq!(std::fs::read(dir.join("7-a_b.txt")).expect("read"), b"hello world");
        assert_eq!(ws.inbox_usage(&id, &chat).await.expect("usage"), 11);
    }

    #[tokio::test]
    async fn a_dropped_file_leaves_nothing_behind() {
        let root = tempfile::tempdir().expect("tempdir");
        let ws = Workspaces::new(root.path().to_path_buf());
        let (id, chat) = (WorkspaceId::from_string("w"), ChatRef::new("discord", "5").expect("chat"));
        let dir = root.path().join("w/inbox/discord/5");
        let mut s = ws.stage_attachment(&id, &chat, "1", "x").await.expect("stage");
        s.write(&[1; 100]).await.expect("write");
        drop(s);
        assert!(names(&dir).is_empty(), "mid-download: {:?}", names(&dir));
        let mut s = ws.stage_attachment(&id, &chat, "2", "y").await.expect("stage");
        s.write(&[1; 100]).await.expect("write");
        drop(s.finish().await.expect("finish"));
        assert!(names(&dir).is_empty(), "received but never stored: {:?}", names(&dir));
        assert_eq!(ws.inbox_usage(&id, &chat).await.expect("usage"), 0);
    }

    #[tokio::test]
    async fn stale_temp_files_stop_counting() {
        let root = tempfile::tempdir().expect("tempdir");
        let ws = Workspaces::new(root.path().to_path_buf());
        let (id, chat) = (WorkspaceId::from_string("w"), ChatRef::new("telegram", "1").expect("chat"));
        let dir = root.path().join("w/inbox/telegram/1");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("3-kept.bin"), [0; 10]).expect("write");
        let old = std::fs::File::create(dir.join(".4-crashed.bin.part")).expect("create");
        old.set_len(1000).expect("len");
        old.set_modified(std::time::SystemTime::now() - STALE_PART - Duration::from_secs(60)).expect("mtime");
        drop(old);
        assert_eq!(ws.inbox_usage(&id, &chat).await.expect("usage"), 10);
        assert_eq!(names(&dir), vec!["3-kept.bin"]);
    }
}
