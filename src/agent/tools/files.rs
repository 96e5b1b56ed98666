//! `list_files`, `read_file`, `write_file`: the workspace's files, and
//! nothing else.
//!
//! A path is relative to the workspace, without `..`, control characters or
//! backslashes. It is walked one part at a time from the workspace folder
//! with `openat(O_NOFOLLOW)`, so a symbolic link anywhere in it is refused
//! rather than followed — there is no window between a check and an open
//! for a link to be swapped in. Hidden parts (`.git`, `.env`) are out of
//! reach. The runtime's own folders (`logs/`, `tasks/`, `inbox/`) and the
//! prompt layers in `context/` can be read but not written: a document the
//! agent read must not be able to rewrite its instructions. Writes go to a
//! temp file renamed into place, mode 0600, at most [`MAX_WRITE_BYTES`].

use super::{Policy, ToolClass, ToolEnv, ToolError, ToolOutput, TypedTool};
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

/// Most bytes one `read_file` call returns (default [`DEFAULT_READ_BYTES`]).
pub const MAX_READ_BYTES: u64 = 64 * 1024;

/// What `read_file` returns without `max_bytes`.
pub const DEFAULT_READ_BYTES: u64 = 8 * 1024;

/// Most entries `list_files` shows.
pub const MAX_LIST: usize = 200;

/// Folders the agent reads but never writes.
const READ_ONLY: [&str; 1] = ["context"];

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

fn io_error(what: &str, e: impl std::fmt::Display) -> ToolError {
    ToolError::Failed(format!("{what}: {e}"))
}

/// Opens the workspace folder (creating it for a write).
fn open_root(dir: &Path, create: bool) -> Result<OwnedFd, ToolError> {
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
fn open_dir(dir: &OwnedFd, name: &str, shown: &str, create: bool) -> Result<OwnedFd, ToolError> {
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
    /// Most bytes returned (default 8192, at most 65536).
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// `read_file`.
pub struct ReadFile;

impl TypedTool for ReadFile {
    type Args = ReadArgs;
    const NAME: &'static str = "read_file";
    const DESCRIPTION: &'static str =
        "Read a text file of the workspace (a part of it: `offset` and `max_bytes`, up to 64 KiB per call). Links are not followed.";
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
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir, last.as_str(), flags, Mode::empty()).map_err(|e| refusal(&shown, e, "file"))?;
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| io_error(&format!("cannot read {shown}"), e))?;
    if !meta.is_file() {
        return Err(ToolError::Refused(format!("{shown} is not a regular file")));
    }
    let size = meta.len();
    let offset = args.offset.unwrap_or(0).min(size);
    let max = args.max_bytes.unwrap_or(DEFAULT_READ_BYTES).clamp(1, MAX_READ_BYTES);
    file.seek(std::io::SeekFrom::Start(offset)).map_err(|e| io_error(&format!("cannot read {shown}"), e))?;
    let mut buf = Vec::new();
    file.take(max).read_to_end(&mut buf).map_err(|e| io_error(&format!("cannot read {shown}"), e))?;
    if buf.contains(&0) {
        return Err(ToolError::Refused(format!("{shown} is not a text file")));
    }
    let end = offset + buf.len() as u64;
    let text = String::from_utf8_lossy(&buf);
    let note = if end < size { format!("\n[bytes {offset}–{end} of {size}; read on with offset {end}]") } else { String::new() };
    Ok(ToolOutput::content(format!("workspace file {shown}"), format!("{text}{note}")))
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
    const DESCRIPTION: &'static str = "Write a text file in the workspace (replace it, or `append`). Not allowed under logs/, tasks/, inbox/ or context/, nor hidden names; links are not followed.";
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
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, last.as_str(), flags, Mode::from_raw_mode(0o600)).map_err(|e| refusal(&shown, e, "file"))?;
        let mut file = std::fs::File::from(fd);
        let meta = file.metadata().map_err(|e| io_error(&format!("cannot write {shown}"), e))?;
        if !meta.is_file() {
            return Err(ToolError::Refused(format!("{shown} is not a regular file")));
        }
        file.write_all(args.content.as_bytes()).map_err(|e| io_error(&format!("cannot write {shown}"), e))?;
        file.sync_data().map_err(|e| io_error(&format!("cannot write {shown}"), e))?;
        return Ok(ToolOutput::runtime("write_file", format!("Appended {} bytes to {shown}.", args.content.len())));
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
    let tmp = format!(".{last}.{}.tmp", std::process::id());
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
    let fd = rustix::fs::openat(&dir, tmp.as_str(), flags, Mode::from_raw_mode(0o600))
        .map_err(|e| io_error(&format!("cannot write {shown}"), e))?;
    let mut file = std::fs::File::from(fd);
    let written = file.write_all(args.content.as_bytes()).and_then(|()| file.sync_data());
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        return Err(io_error(&format!("cannot write {shown}"), e));
    }
    if let Err(e) = rustix::fs::renameat(&dir, tmp.as_str(), &dir, last.as_str()) {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        return Err(io_error(&format!("cannot write {shown}"), e));
    }
    Ok(ToolOutput::runtime("write_file", format!("Wrote {} bytes to {shown}.", args.content.len())))
}
