//! `list_files`, `read_file`, `write_file`: the workspace's files, and
//! nothing else.
//!
//! A path is relative to the workspace, without `..`, control characters or
//! backslashes. It is walked one part at a time from the workspace folder
//! with `openat(O_NOFOLLOW)`, so a symbolic link anywhere in it is refused
//! rather than followed — there is no window between a check and an open
//! for a link to be swapped in. Hidden parts (`.git`, `.env`) are out of
//! reach. The runtime's own folders (`logs/`, `tasks/`, `inbox/`), the
//! prompt layers in `context/` and the skills in `skills/` can be read but
//! not written: a document the agent read must not be able to rewrite its
//! instructions. Writes go to a
//! temp file of their own (a fresh random name, created exclusively) renamed
//! into place, mode 0600, at most [`MAX_WRITE_BYTES`]. A read returns no
//! more than fits in one tool result, so the offset it says to read on from
//! is exact.

use super::{MAX_RESULT_BYTES, Policy, ToolClass, ToolEnv, ToolError, ToolOutput, TypedTool, cap};
use crate::BoxFuture;
use crate::domain::Role;
use crate::retrieval::scan::clean;
use crate::workspace::watch::RUNTIME_DIRS;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use schemars::JsonSchema;
use serde::Deserialize;
use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

/// Most bytes one `write_file` call writes.
pub const MAX_WRITE_BYTES: usize = 256 * 1024;

/// Most bytes one `read_file` call returns (default [`DEFAULT_READ_BYTES`]):
/// what fits in one tool result with room for its source line and note, so
/// the result is never cut and the offset it gives to read on is exact.
pub const MAX_READ_BYTES: u64 = (MAX_RESULT_BYTES - 512) as u64;

/// Room a `read_file` result must leave for the file's text, or the path is
/// refused as too long to read through.
const MIN_READ_ROOM: usize = 1024;

/// What `read_file` returns without `max_bytes`.
pub const DEFAULT_READ_BYTES: u64 = 8 * 1024;

/// Most entries `list_files` shows.
pub const MAX_LIST: usize = 200;

/// Folders the agent reads but never writes: the prompt files and the
/// skills (a skill the agent could write would steer every later turn).
const READ_ONLY: [&str; 2] = ["context", "skills"];

/// A checked workspace-relative path, split into parts.
fn parts(rel: &str) -> Result<Vec<String>, ToolError> {
    let cleaned = clean(rel).map_err(|e| ToolError::Refused(e.to_string()))?;
    let parts: Vec<String> = cleaned.split('/').map(str::to_string).collect();
    if let Some(h) = parts.iter().find(|p| p.starts_with('.')) {
        return Err(ToolError::Refused(format!("{cleaned}: hidden names ({h}) are out of reach")));
    }
    Ok(parts)
}

/// Whether the agent may write under this path.
fn writable(parts: &[String]) -> Result<(), ToolError> {
    let first = parts.first().map(String::as_str).unwrap_or_default();
    if RUNTIME_DIRS.contains(&first) || READ_ONLY.contains(&first) {
        return Err(ToolError::Refused(format!(
            "{first}/ is read-only: the runtime's own records and prompt files are not written by tools"
        )));
    }
    Ok(())
}

pub(super) fn io_error(what: &str, e: impl std::fmt::Display) -> ToolError {
    ToolError::Failed(format!("{what}: {e}"))
}

/// Opens the workspace folder (creating it for a write).
pub(super) fn open_root(dir: &Path, create: bool) -> Result<OwnedFd, ToolError> {
    if create {
        std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create the workspace folder", e))?;
    }
    rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
        if e == Errno::NOENT {
            ToolError::Failed("the workspace has no files yet".into())
        } else {
            io_error("cannot open the workspace", e)
        }
    })
}

/// Opens folder `name` in `dir` without following a link (creating it if asked).
pub(super) fn open_dir(dir: &OwnedFd, name: &str, shown: &str, create: bool) -> Result<OwnedFd, ToolError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(e) if e == Errno::NOENT && create => {
            match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io_error(&format!("cannot create {shown}"), e)),
            }
            rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(|e| io_error(&format!("cannot open {shown}"), e))
        }
        Err(e) => Err(refusal(shown, e, "folder")),
    }
}

/// An open error, said plainly: a link is refused, a missing path is not found.
fn refusal(shown: &str, e: Errno, what: &str) -> ToolError {
    match e {
        Errno::LOOP | Errno::MLINK => ToolError::Refused(format!("{shown} is a symbolic link; links are not followed")),
        Errno::NOTDIR => ToolError::Refused(format!("{shown} is not a {what}")),
        Errno::NOENT => ToolError::Failed(format!("{shown} does not exist")),
        other => io_error(&format!("cannot open {shown}"), other),
    }
}

/// Opens regular file `name` in `dir` for reading without following a
/// link; the file and its size (`None`: there is no such file).
pub(super) fn open_regular(dir: &OwnedFd, name: &str, shown: &str) -> Result<Option<(std::fs::File, u64)>, ToolError> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(refusal(shown, e, "file")),
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| io_error(&format!("cannot read {shown}"), e))?;
    if !meta.is_file() {
        return Err(ToolError::Refused(format!("{shown} is not a regular file")));
    }
    Ok(Some((file, meta.len())))
}

/// Walks to the folder holding the last part; returns it and the last part.
fn walk_to_parent(root: &Path, parts: &[String], create: bool) -> Result<(OwnedFd, String), ToolError> {
    let mut dir = open_root(root, create)?;
    let (last, folders) = parts.split_last().ok_or_else(|| ToolError::Refused("the path is empty".into()))?;
    for (i, p) in folders.iter().enumerate() {
        dir = open_dir(&dir, p, &parts[..=i].join("/"), create)?;
    }
    Ok((dir, last.clone()))
}

/// Arguments of `list_files`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// A folder relative to the workspace; the workspace itself when absent.
    #[serde(default)]
    pub path: Option<String>,
}

/// `list_files`.
pub struct ListFiles;

impl TypedTool for ListFiles {
    type Args = ListArgs;
    const NAME: &'static str = "list_files";
    const DESCRIPTION: &'static str =
        "List the files and folders in a folder of the workspace (names, `/` after folders, sizes). Hidden names are not shown.";
    const CLASS: ToolClass = ToolClass::Workspace;
    const POLICY: Policy = Policy { min_role: Role::Viewer, in_tasks: true, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: ListArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        let root = env.workspace_dir.clone();
        Box::pin(async move {
            let rel = args.path.unwrap_or_default();
            let rel = rel.trim().trim_end_matches('/').to_string();
            let listing = tokio::task::spawn_blocking(move || list(&root, &rel))
                .await
                .map_err(|e| ToolError::Failed(format!("the listing stopped: {e}")))??;
            Ok(listing)
        })
    }
}

fn list(root: &Path, rel: &str) -> Result<ToolOutput, ToolError> {
    let (fd, shown) = if rel.is_empty() || rel == "." {
        (open_root(root, false)?, ".".to_string())
    } else {
        let parts = parts(rel)?;
        let (parent, last) = walk_to_parent(root, &parts, false)?;
        (open_dir(&parent, &last, rel, false)?, rel.to_string())
    };
    let dir = Dir::read_from(&fd).map_err(|e| io_error(&format!("cannot list {shown}"), e))?;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut more = 0;
    for entry in dir {
        let entry = entry.map_err(|e| io_error(&format!("cannot list {shown}"), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if rows.len() >= MAX_LIST {
            more += 1;
            continue;
        }
        let row = match rustix::fs::statat(&fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => format!("{name}/"),
                FileType::RegularFile => format!("{name} ({} bytes)", st.st_size),
                FileType::Symlink => format!("{name} (link, not followed)"),
                _ => format!("{name} (not a regular file)"),
            },
            Err(_) => format!("{name} (unreadable)"),
        };
        rows.push((name, row));
    }
    rows.sort();
    let mut text = if rows.is_empty() { "(empty)".to_string() } else { rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join("\n") };
    if more > 0 {
        text.push_str(&format!("\n… and {more} more"));
    }
    Ok(ToolOutput::runtime(format!("listing of {shown}"), text))
}

/// Arguments of `read_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// A file relative to the workspace.
    pub path: String,
    /// Start at this byte (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Most bytes returned (default 8192, at most 11776).
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// `read_file`.
pub struct ReadFile;

impl TypedTool for ReadFile {
    type Args = ReadArgs;
    const NAME: &'static str = "read_file";
    const DESCRIPTION: &'static str = "Read a text file of the workspace (a part of it: `offset` and `max_bytes`, up to 11 KiB per call; a longer file says the offset to read on from). Links are not followed.";
    const CLASS: ToolClass = ToolClass::Workspace;
    const POLICY: Policy = Policy { min_role: Role::Viewer, in_tasks: true, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: ReadArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        let root = env.workspace_dir.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read(&root, &args))
                .await
                .map_err(|e| ToolError::Failed(format!("the read stopped: {e}")))?
        })
    }
}

fn read(root: &Path, args: &ReadArgs) -> Result<ToolOutput, ToolError> {
    let parts = parts(&args.path)?;
    let shown = parts.join("/");
    let (dir, last) = walk_to_parent(root, &parts, false)?;
    let (mut file, size) = open_regular(&dir, &last, &shown)?.ok_or_else(|| ToolError::Failed(format!("{shown} does not exist")))?;
    let source = format!("workspace file {shown}");
    let room = text_room(&source, size);
    if room < MIN_READ_ROOM {
        return Err(ToolError::Refused(format!("the path of {shown} is too long to read through")));
    }
    let offset = args.offset.unwrap_or(0).min(size);
    let max = args.max_bytes.unwrap_or(DEFAULT_READ_BYTES).clamp(1, MAX_READ_BYTES).min(room as u64);
    file.seek(std::io::SeekFrom::Start(offset)).map_err(|e| io_error(&format!("cannot read {shown}"), e))?;
    let mut buf = Vec::new();
    file.take(max).read_to_end(&mut buf).map_err(|e| io_error(&format!("cannot read {shown}"), e))?;
    if buf.contains(&0) {
        return Err(ToolError::Refused(format!("{shown} is not a text file")));
    }
    let at_end = offset + buf.len() as u64 >= size;
    let (used, text) = fit(&buf, room, at_end);
    let end = offset + used as u64;
    let note = if end < size { note(offset, end, size) } else { String::new() };
    Ok(ToolOutput::content(source, format!("{text}{note}")))
}

/// The note after a part of a file: which bytes, and where to read on.
fn note(offset: u64, end: u64, size: u64) -> String {
    format!("\n[bytes {offset}–{end} of {size}; read on with offset {end}]")
}

/// Bytes of file text a result from `source` can hold: the result cap, less
/// its source line and the longest note a file of `size` bytes can get.
fn text_room(source: &str, size: u64) -> usize {
    let overhead = ToolOutput::content(source, "").render().len() + note(size, size, size).len();
    MAX_RESULT_BYTES.saturating_sub(overhead)
}

/// The longest start of `buf` whose text fits in `room` bytes (a byte that
/// is not UTF-8 shows as U+FFFD), and that text. A character cut off by the
/// end of `buf` is left for the next read, so parts read one after another
/// join up exactly — unless the file ends there, or it is all there is.
fn fit(buf: &[u8], room: usize, at_end: bool) -> (usize, String) {
    let (mut used, mut text) = (0, String::new());
    for chunk in buf.utf8_chunks() {
        let valid = chunk.valid();
        if text.len() + valid.len() > room {
            let cut = valid.floor_char_boundary(room - text.len());
            text.push_str(&valid[..cut]);
            return (used + cut, text);
        }
        text.push_str(valid);
        used += valid.len();
        let bad = chunk.invalid();
        if bad.is_empty() {
            continue;
        }
        let unfinished = used + bad.len() == buf.len() && std::str::from_utf8(bad).is_err_and(|e| e.error_len().is_none());
        if (unfinished && !at_end && used > 0) || text.len() + char::REPLACEMENT_CHARACTER.len_utf8() > room {
            break;
        }
        text.push(char::REPLACEMENT_CHARACTER);
        used += bad.len();
    }
    (used, text)
}

/// Attempts at a fresh temp name before giving up (a name that exists is
/// someone else's, and is left alone).
const TEMP_ATTEMPTS: usize = 4;

/// Most bytes of the target's name kept in its temp file's name (a name
/// holds at most 255 bytes, and the random suffix needs room).
const TEMP_STEM_BYTES: usize = 160;

/// Creates a new temp file next to `last` in `dir`: a hidden name with a
/// random suffix, made with `O_EXCL | O_NOFOLLOW` (never an existing file,
/// never through a link), mode 0600. Two writers, in this process or
/// another, never share one.
fn create_temp(dir: &OwnedFd, last: &str) -> Result<(String, OwnedFd), Errno> {
    let (stem, _) = cap(last, TEMP_STEM_BYTES);
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for _ in 0..TEMP_ATTEMPTS {
        let tmp = format!(".{stem}.{}.tmp", uuid::Uuid::new_v4().simple());
        match rustix::fs::openat(dir, tmp.as_str(), flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => return Ok((tmp, fd)),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EXIST)
}

/// Arguments of `write_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// A file relative to the workspace (folders are created).
    pub path: String,
    /// The text to write (at most 256 KiB).
    pub content: String,
    /// Add to the end of the file instead of replacing it.
    #[serde(default)]
    pub append: bool,
}

/// `write_file`.
pub struct WriteFile;

impl TypedTool for WriteFile {
    type Args = WriteArgs;
    const NAME: &'static str = "write_file";
    const DESCRIPTION: &'static str = "Write a text file in the workspace (replace it, or `append`). Not allowed under logs/, tasks/, inbox/, context/ or skills/, nor hidden names; links are not followed.";
    const CLASS: ToolClass = ToolClass::Workspace;
    const POLICY: Policy = Policy { min_role: Role::Member, in_tasks: true, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: WriteArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        let root = env.workspace_dir.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || write(&root, &args))
                .await
                .map_err(|e| ToolError::Failed(format!("the write stopped: {e}")))?
        })
    }
}

fn write(root: &Path, args: &WriteArgs) -> Result<ToolOutput, ToolError> {
    if args.content.len() > MAX_WRITE_BYTES {
        return Err(ToolError::Refused(format!("{} bytes; one write holds at most {MAX_WRITE_BYTES}", args.content.len())));
    }
    let parts = parts(&args.path)?;
    writable(&parts)?;
    let shown = parts.join("/");
    let (dir, last) = walk_to_parent(root, &parts, true)?;
    if args.append {
        return append(&dir, &last, &shown, &args.content);
    }
    // Refuse to replace what is not a regular file (a folder, a link: the
    // rename would replace the link itself, but say so plainly instead).
    match rustix::fs::statat(&dir, last.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => return Err(ToolError::Refused(format!("{shown} is a symbolic link; links are not followed"))),
            _ => return Err(ToolError::Refused(format!("{shown} is not a regular file"))),
        },
        Err(Errno::NOENT) => {}
        Err(e) => return Err(io_error(&format!("cannot write {shown}"), e)),
    }
    let (tmp, fd) = create_temp(&dir, &last).map_err(|e| io_error(&format!("cannot write {shown}"), e))?;
    let mut file = std::fs::File::from(fd);
    let placed = file
        .write_all(args.content.as_bytes())
        .and_then(|()| file.sync_data())
        .and_then(|()| rustix::fs::renameat(&dir, tmp.as_str(), &dir, last.as_str()).map_err(std::io::Error::from));
    if let Err(e) = placed {
        // Created exclusively above, so the name is ours: removing it cannot touch another writer's file.
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        return Err(io_error(&format!("cannot write {shown}"), e));
    }
    Ok(ToolOutput::runtime("write_file", format!("Wrote {} bytes to {shown}.", args.content.len())))
}

/// Adds `content` to the end of file `last` in `dir` (created if missing).
fn append(dir: &OwnedFd, last: &str, shown: &str, content: &str) -> Result<ToolOutput, ToolError> {
    let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, last, flags, Mode::from_raw_mode(0o600)).map_err(|e| refusal(shown, e, "file"))?;
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| io_error(&format!("cannot write {shown}"), e))?;
    if !meta.is_file() {
        return Err(ToolError::Refused(format!("{shown} is not a regular file")));
    }
    file.write_all(content.as_bytes()).map_err(|e| io_error(&format!("cannot write {shown}"), e))?;
    file.sync_data().map_err(|e| io_error(&format!("cannot write {shown}"), e))?;
    Ok(ToolOutput::runtime("write_file", format!("Appended {} bytes to {shown}.", content.len())))
}

#[cfg(test)]
mod tests {
    use super::super::Tool;
    use super::super::tests::{Fixture, fixture};
    use super::*;

    async fn read_part(f: &Fixture, path: &str, offset: u64) -> ToolOutput {
        let args = serde_json::json!({"path": path, "offset": offset, "max_bytes": 1 << 20}).to_string();
        ReadFile.call(&f.env, &args).await.expect("read")
    }

    /// The offset a part says to read on from (`None`: the file ended), and the part's text.
    fn split_note(text: &str) -> (Option<u64>, &str) {
        match text.rfind("\n[bytes ") {
            Some(at) => {
                let note = &text[at..];
                let offset = note.split("read on with offset ").nth(1).and_then(|s| s.strip_suffix(']')).expect("note");
                (Some(offset.parse().expect("offset")), &text[..at])
            }
            None => (None, text),
        }
    }

    /// Regression: a read returned up to 64 KiB, the result was cut at
    /// 12 KiB, and the offset to read on from skipped what was cut.
    #[tokio::test]
    async fn a_long_file_read_part_by_part_joins_up_exactly_and_no_result_is_cut() {
        let f = fixture(Role::Viewer).await;
        // Multi-byte characters, so parts end inside characters; a long path, so the source line is long.
        let mut content = String::new();
        for i in 0.. {
            if content.len() >= 40 * 1024 {
                break;
            }
            content.push_str(&format!("line {i}: héllo wörld 😀 {}\n", "x".repeat(i % 7)));
        }
        let folder = "d".repeat(200);
        let path = format!("{folder}/{folder}/long.md");
        std::fs::create_dir_all(f.root.join(format!("{folder}/{folder}"))).expect("mkdir");
        std::fs::write(f.root.join(&path), &content).expect("write");
        let (mut joined, mut offset, mut parts) = (String::new(), 0, 0);
        loop {
            assert!(parts < 20, "no end after {parts} parts");
            let out = read_part(&f, &path, offset).await;
            let rendered = out.render();
            assert!(rendered.len() <= MAX_RESULT_BYTES, "{} bytes", rendered.len());
            assert!(!rendered.contains("[cut:"), "cut at offset {offset}");
            let (next, text) = split_note(&out.text);
            joined.push_str(text);
            parts += 1;
            match next {
                Some(next) => {
                    assert_eq!(next, offset + text.len() as u64, "the offset to read on from follows the text");
                    offset = next;
                }
                None => break,
            }
        }
        assert!(parts >= 4, "{parts} parts");
        assert_eq!(joined, content);
    }

    #[tokio::test]
    async fn a_file_that_is_not_utf8_is_read_to_its_end_within_the_cap() {
        let f = fixture(Role::Viewer).await;
        // Latin-1: every byte shows as a three-byte U+FFFD.
        std::fs::write(f.root.join("latin1.txt"), vec![0xE9u8; 20 * 1024]).expect("write");
        let (mut offset, mut shown) = (0, 0);
        for _ in 0..40 {
            let out = read_part(&f, "latin1.txt", offset).await;
            assert!(out.render().len() <= MAX_RESULT_BYTES && !out.render().contains("[cut:"));
            let (next, text) = split_note(&out.text);
            shown += text.chars().filter(|c| *c == char::REPLACEMENT_CHARACTER).count();
            match next {
                Some(next) => offset = next,
                None => break,
            }
        }
        assert_eq!(shown, 20 * 1024, "every byte shown once");
    }

    #[test]
    fn a_character_cut_by_the_end_of_a_read_is_left_for_the_next() {
        let text = "aé😀".as_bytes();
        assert_eq!(fit(&text[..4], 100, false), (3, "aé".to_string()), "half of 😀 waits for the next read");
        assert_eq!(fit(&text[..4], 100, true), (4, "aé\u{FFFD}".to_string()), "at the end of the file it is shown");
        assert_eq!(fit(&text[..2], 100, false), (1, "a".to_string()), "half of é waits too");
        assert_eq!(fit(b"a\xFF", 100, false), (2, "a\u{FFFD}".to_string()), "a byte that starts no character is shown");
        assert_eq!(fit(&text[3..5], 100, false), (2, "\u{FFFD}".to_string()), "nothing but a part: shown, so reading goes on");
        assert_eq!(fit("ééé".as_bytes(), 5, false), (4, "éé".to_string()), "the room is never exceeded");
    }

    /// Regression: the temp name was `.{name}.{pid}.tmp`, removed before
    /// use, so two writes at once in one process took each other's file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_to_one_file_leave_one_whole_content_and_no_temp_files() {
        let f = fixture(Role::Member).await;
        std::fs::create_dir_all(f.root.join("notes")).expect("mkdir");
        // The old temp name: someone else's file now, and left alone.
        let planted = format!(".plan.md.{}.tmp", std::process::id());
        std::fs::write(f.root.join("notes").join(&planted), "not ours").expect("plant");
        let contents: Vec<String> = (0..16).map(|i| format!("writer {i}\n").repeat(2000 + 300 * i)).collect();
        let mut writers = tokio::task::JoinSet::new();
        for content in contents.clone() {
            let env = f.env.clone();
            writers.spawn(async move {
                let args = serde_json::json!({"path": "notes/plan.md", "content": content}).to_string();
                WriteFile.call(&env, &args).await
            });
        }
        let results = tokio::time::timeout(std::time::Duration::from_secs(30), writers.join_all()).await.expect("writes finish");
        for r in &results {
            assert!(r.as_ref().is_ok_and(|o| o.text.starts_with("Wrote ")), "{r:?}");
        }
        let written = std::fs::read_to_string(f.root.join("notes/plan.md")).expect("read");
        assert!(contents.contains(&written), "the file holds exactly one writer's content ({} bytes)", written.len());
        let mut names: Vec<String> = std::fs::read_dir(f.root.join("notes"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [planted.clone(), "plan.md".to_string()]);
        assert_eq!(std::fs::read_to_string(f.root.join("notes").join(&planted)).expect("planted"), "not ours");
    }
}
