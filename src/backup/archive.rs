//! The archive: a gzip-compressed tar of regular files only, the manifest
//! last. Writing streams every file through SHA-256; reading treats the
//! file as untrusted: only the entry names we write are accepted (no `..`,
//! no absolute paths, no links or devices), the manifest is bounded in size,
//! and every byte is checked against it.

use super::BackupError;
use super::manifest::{FileEntry, KIND, MANIFEST_FORMAT, Manifest, hex};
use super::{Options, Sources};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The database's entry.
pub const DB_ENTRY: &str = "db/meta.sqlite";
/// The manifest's entry (always the last).
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// The workspaces tree's prefix.
pub const WORKSPACES: &str = "workspaces";
/// The PKI's prefix.
pub const PKI: &str = "secrets/pki";
/// The `.env` file's entry.
pub const ENV_ENTRY: &str = "secrets/env";
/// A manifest larger than this is not ours.
const MANIFEST_MAX: u64 = 64 * 1024 * 1024;

/// A private (0700) working directory, removed with everything in it when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// Next to `out` (the same filesystem, so the finished archive is renamed, not copied).
    pub fn beside(out: &Path) -> Result<Scratch, BackupError> {
        let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self::at(dir.join(format!(".{name}.partial-{}", unique())))
    }

    /// Under the system temp dir.
    pub fn in_temp() -> Result<Scratch, BackupError> {
        Self::at(std::env::temp_dir().join(format!("agent-runtime-verify-{}", unique())))
    }

    /// At `path`, which must not exist.
    pub fn at(path: PathBuf) -> Result<Scratch, BackupError> {
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(BackupError::io("cannot create", &path))?;
        Ok(Scratch(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// Writes the archive for `manifest` (the snapshot at `db_copy`, then the
/// workspaces and, with secrets, the PKI and `.env`) to `out`, through a
/// temporary file in `work` renamed into place once complete and synced.
pub fn write(
    src: &Sources,
    db_copy: &Path,
    out: &Path,
    opts: &Options,
    manifest: &mut Manifest,
    work: &Scratch,
) -> Result<(), BackupError> {
    let tmp = work.path().join("archive.tar.gz");
    let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(BackupError::io("cannot create", &tmp))?;
    let gz = GzEncoder::new(BufWriter::with_capacity(1 << 20, file), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let w = |e| BackupError::Io { action: "cannot write", path: tmp.clone(), source: e };
    let mtime = (manifest.created_at_ms / 1000).max(0) as u64;

    let size = std::fs::metadata(db_copy).map_err(BackupError::io("cannot read", db_copy))?.len();
    let db = File::open(db_copy).map_err(BackupError::io("cannot read", db_copy))?;
    let mut hashing = Hashing::new(BufReader::with_capacity(1 << 20, db));
    tar.append_data(&mut header(size, mtime), DB_ENTRY, &mut hashing).map_err(w)?;
    manifest.files.push(hashing.entry(DB_ENTRY));

    let mut files = Vec::new();
    walk(&src.workspaces, WORKSPACES, work.path(), &mut files)?;
    if opts.include_secrets {
        walk(&src.pki, PKI, work.path(), &mut files)?;
        if let Some(env) = src.env_file.as_ref().filter(|p| p.is_file()) {
            files.push((ENV_ENTRY.to_string(), env.clone()));
        }
    }
    for (name, path) in files {
        // Read whole, so the size in the header is the size of what is
        // hashed and written even if the file changes meanwhile.
        let bytes = std::fs::read(&path).map_err(BackupError::io("cannot read", &path))?;
        tar.append_data(&mut header(bytes.len() as u64, mtime), &name, bytes.as_slice()).map_err(w)?;
        let sha = hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
        manifest.files.push(FileEntry { path: name, size: bytes.len() as u64, sha256: sha });
    }

    let json = serde_json::to_vec_pretty(manifest).map_err(|e| w(e.into()))?;
    tar.append_data(&mut header(json.len() as u64, mtime), MANIFEST_ENTRY, json.as_slice()).map_err(w)?;
    let buffered = tar.into_inner().map_err(w)?.finish().map_err(w)?;
    let file = buffered.into_inner().map_err(|e| w(e.into_error()))?;
    file.sync_all().map_err(w)?;
    drop(file);
    place(&tmp, out, opts.force)
}

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h
}

/// Renames the finished archive to `out`; without `force`, only if nothing
/// is there (a hard link fails on an existing name, a rename would not).
fn place(tmp: &Path, out: &Path, force: bool) -> Result<(), BackupError> {
    if force {
        std::fs::rename(tmp, out).map_err(BackupError::io("cannot move the archive to", out))?;
    } else {
        std::fs::hard_link(tmp, out).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => BackupError::Exists(out.to_path_buf()),
            _ => BackupError::Io { action: "cannot move the archive to", path: out.to_path_buf(), source: e },
        })?;
    }
    sync_dir(out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")));
    Ok(())
}

/// Makes a rename in `dir` durable (best effort: some filesystems refuse).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Regular files under `root` (absent is empty), as (archive name, path),
/// sorted, but not those in `skip` (the backup's own working directory,
/// should the archive be written inside the tree). Symbolic links and
/// special files are skipped: a workspace never needs them and following
/// one could archive files outside it.
fn walk(root: &Path, prefix: &str, skip: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), BackupError> {
    let mut entries = match std::fs::read_dir(root) {
        Ok(rd) => rd.collect::<Result<Vec<_>, _>>().map_err(BackupError::io("cannot list", root))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackupError::Io { action: "cannot list", path: root.to_path_buf(), source: e }),
    };
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().into_string().map_err(|_| BackupError::Io {
            action: "cannot archive",
            path: path.clone(),
            source: std::io::Error::other("the name is not UTF-8"),
        })?;
        let kind = e.file_type().map_err(BackupError::io("cannot read", &path))?;
        let entry = format!("{prefix}/{name}");
        if Some(e.file_name().as_os_str()) == skip.file_name() {
            continue;
        }
        if kind.is_dir() {
            walk(&path, &entry, skip, out)?;
        } else if kind.is_file() {
            out.push((entry, path));
        } else {
            tracing::warn!(path = %path.display(), "backup: skipping a symbolic link or special file");
        }
    }
    Ok(())
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    ctx: ring::digest::Context,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Self { inner, ctx: ring::digest::Context::new(&ring::digest::SHA256), bytes: 0 }
    }

    fn entry(self, path: &str) -> FileEntry {
        FileEntry { path: path.into(), size: self.bytes, sha256: hex(self.ctx.finish().as_ref()) }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Which files [`unpack`] writes out (all are read and checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The database only (to check it).
    DatabaseOnly,
    /// Everything, under its archive name.
    All,
}

/// Reads the whole archive at `archive`, writing the files `keep` names
/// under `into` (0600 files, 0700 directories), and checks every file
/// against the manifest; returns the manifest.
pub fn unpack(archive: &Path, into: &Path, keep: Keep) -> Result<Manifest, BackupError> {
    let file = File::open(archive).map_err(BackupError::io("cannot open", archive))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(1 << 20, file)));
    let mut seen: Vec<FileEntry> = Vec::new();
    let mut manifest: Option<Manifest> = None;
    let fail = |first: bool, e: std::io::Error| classify(archive, first, e);
    let entries = tar.entries().map_err(|e| fail(true, e))?;
    for entry in entries {
        let first = seen.is_empty() && manifest.is_none();
        let mut entry = entry.map_err(|e| fail(first, e))?;
        let name = entry_name(archive, &entry)?;
        if manifest.is_some() {
            return Err(damaged(archive, format!("entry {name} after the manifest")));
        }
        if name == MANIFEST_ENTRY {
            manifest = Some(read_manifest(archive, &mut entry)?);
            continue;
        }
        if seen.iter().any(|f| f.path == name) {
            return Err(damaged(archive, format!("{name} appears twice")));
        }
        let dest = (keep == Keep::All || name == DB_ENTRY).then(|| into.join(&name));
        let got = copy_out(archive, &mut entry, &name, dest.as_deref())?;
        seen.push(got);
    }
    // The tar reader stops at the end-of-archive blocks; reading on to the
    // end of the gzip stream is what checks its CRC and length.
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(|e| fail(false, e))?;
    let manifest = manifest.ok_or_else(|| match seen.is_empty() {
        true => BackupError::Foreign { path: archive.to_path_buf(), why: "it holds no manifest.json".into() },
        false => BackupError::Truncated { path: archive.to_path_buf(), why: "it ends before its manifest".into() },
    })?;
    compare(archive, &manifest.files, &seen)?;
    Ok(manifest)
}

fn entry_name<R: Read>(archive: &Path, entry: &tar::Entry<'_, R>) -> Result<String, BackupError> {
    let foreign = |why: String| BackupError::Foreign { path: archive.to_path_buf(), why };
    let path = entry.path().map_err(|e| foreign(format!("an entry name is unreadable: {e}")))?;
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(|| foreign(format!("entry {} is not UTF-8", path.display())))?),
            _ => return Err(foreign(format!("entry {} leaves the archive's directory", path.display()))),
        }
    }
    let name = parts.join("/");
    let known = matches!(name.as_str(), MANIFEST_ENTRY | DB_ENTRY | ENV_ENTRY)
        || (parts.len() >= 2 && parts[0] == WORKSPACES)
        || (parts.len() >= 3 && format!("{}/{}", parts[0], parts[1]) == PKI);
    if !known {
        return Err(foreign(format!("unexpected entry {name}")));
    }
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Err(foreign(format!("entry {name} is not a regular file")));
    }
    Ok(name)
}

fn read_manifest<R: Read>(archive: &Path, entry: &mut tar::Entry<'_, R>) -> Result<Manifest, BackupError> {
    let foreign = |why: String| BackupError::Foreign { path: archive.to_path_buf(), why };
    if entry.header().size().unwrap_or(u64::MAX) > MANIFEST_MAX {
        return Err(foreign("its manifest.json is too large".into()));
    }
    let mut text = Vec::new();
    entry.take(MANIFEST_MAX).read_to_end(&mut text).map_err(|e| classify(archive, false, e))?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| damaged(archive, format!("manifest.json is not JSON: {e}")))?;
    if value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
        return Err(foreign(format!("its manifest.json is not of kind {KIND}")));
    }
    let format = value.get("format").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if format > u64::from(MANIFEST_FORMAT) {
        return Err(foreign(format!(
            "manifest format {format} is newer than this binary's ({MANIFEST_FORMAT}): use a newer agent-runtime"
        )));
    }
    serde_json::from_value(value).map_err(|e| damaged(archive, format!("manifest.json does not parse: {e}")))
}

fn copy_out<R: Read>(archive: &Path, entry: &mut R, name: &str, dest: Option<&Path>) -> Result<FileEntry, BackupError> {
    let mut out = match dest {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(BackupError::io("cannot create", dir))?;
            }
            let file =
                OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(BackupError::io("cannot create", path))?;
            Some((BufWriter::with_capacity(1 << 20, file), path))
        }
        None => None,
    };
    let mut hashing = Hashing::new(entry);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = hashing.read(&mut buf).map_err(|e| classify(archive, false, e))?;
        if n == 0 {
            break;
        }
        if let Some((o, path)) = out.as_mut() {
            o.write_all(&buf[..n]).map_err(BackupError::io("cannot write", path))?;
        }
    }
    if let Some((o, path)) = out {
        o.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()).map_err(BackupError::io("cannot write", path))?;
    }
    Ok(hashing.entry(name))
}

fn compare(archive: &Path, listed: &[FileEntry], seen: &[FileEntry]) -> Result<(), BackupError> {
    for f in listed {
        match seen.iter().find(|s| s.path == f.path) {
            None => return Err(damaged(archive, format!("{} is listed in the manifest but missing", f.path))),
            Some(s) if s.size != f.size => {
                return Err(damaged(archive, format!("{} has {} bytes, the manifest says {}", f.path, s.size, f.size)));
            }
            Some(s) if s.sha256 != f.sha256 => {
                return Err(damaged(archive, format!("{}: SHA-256 {} does not match the manifest's {}", f.path, s.sha256, f.sha256)));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = seen.iter().find(|s| !listed.iter().any(|f| f.path == s.path)) {
        return Err(damaged(archive, format!("{} is not listed in the manifest", extra.path)));
    }
    if !listed.iter().any(|f| f.path == DB_ENTRY) {
        return Err(damaged(archive, "it holds no database".into()));
    }
    Ok(())
}

fn damaged(archive: &Path, why: String) -> BackupError {
    BackupError::Damaged { path: archive.to_path_buf(), why }
}

/// An I/O error while reading: an early end is a truncation; garbage before
/// the first entry means another kind of file; anything later is damage.
fn classify(archive: &Path, first: bool, e: std::io::Error) -> BackupError {
    let path = archive.to_path_buf();
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        BackupError::Truncated { path, why: format!("it ends early ({e})") }
    } else if first {
        BackupError::Foreign { path, why: format!("it is not a gzip-compressed tar archive ({e})") }
    } else {
        BackupError::Damaged { path, why: e.to_string() }
    }
}
