//! Restore: check the whole archive in a staging directory inside the data
//! directory, then move what is there aside (only with `--force`) and rename
//! the staged files into place, all while holding the data directory's
//! `serve` lock so no daemon can start (or be running) meanwhile.

use super::archive::{self, DB_ENTRY, ENV_ENTRY, Keep, PKI, Scratch, WORKSPACES};
use super::manifest::Manifest;
use super::{BackupError, snapshot};
use crate::runtime::{DataLock, LOCK_FILE, LockError};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Where a restore puts things.
#[derive(Debug, Clone)]
pub struct Target {
    /// The data directory (its `serve` lock is taken; the PKI goes to `pki/`, the `.env` to `.env`).
    pub data_dir: PathBuf,
    /// Where the database goes.
    pub db_path: PathBuf,
    /// Where the workspaces tree goes.
    pub workspace_root: PathBuf,
}

impl Target {
    /// The default layout under `data_dir`, as `serve` would use it with only
    /// `AGENT_RUNTIME_DATA_DIR` set.
    pub fn under(data_dir: &Path) -> Target {
        Target {
            data_dir: data_dir.to_path_buf(),
            db_path: data_dir.join("agent-runtime").join("meta.sqlite"),
            workspace_root: data_dir.join("workspaces"),
        }
    }
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Where what was in the way went (with `--force` on a non-empty directory).
    pub moved_aside: Option<PathBuf>,
    /// The restored `.env`, if the archive had one.
    pub env_file: Option<PathBuf>,
}

const STAGING: &str = ".restore-";

/// Restores the archive at `archive` into `target`. Refused while a daemon
/// holds the data directory, and (without `force`) unless it is empty.
/// Nothing is written outside the staging directory until the archive has
/// passed every check [`super::verify`] makes. Blocking.
pub fn restore(archive: &Path, target: &Target, force: bool) -> Result<Restored, BackupError> {
    let meta_dir = target.data_dir.join("agent-runtime");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&meta_dir).map_err(BackupError::io("cannot create", &meta_dir))?;
    let _lock = DataLock::acquire(&target.data_dir, &target.db_path).map_err(|e| match e {
        e @ LockError::Held { .. } => BackupError::DaemonRunning(e),
        LockError::Io { path, source } => BackupError::Io { action: "cannot lock", path, source },
    })?;
    let present = occupied(target)?;
    if !present.is_empty() && !force {
        let found = present.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(BackupError::NotEmpty { dir: target.data_dir.clone(), found });
    }
    let staging = Scratch::at(target.data_dir.join(format!("{STAGING}{}", std::process::id())))?;
    let manifest = archive::unpack(archive, staging.path(), Keep::All)?;
    snapshot::check(archive, &staging.path().join(DB_ENTRY), &manifest)?;
    let moved_aside = if present.is_empty() { None } else { Some(move_aside(target, &present)?) };
    let env_file = install(staging.path(), target)?;
    archive::sync_dir(&target.data_dir);
    Ok(Restored { manifest, moved_aside, env_file })
}

/// What is in the way: every entry of the data directory but empty
/// directories, the lock file and staging directories, and the database and
/// workspaces when they live elsewhere.
fn occupied(target: &Target) -> Result<Vec<PathBuf>, BackupError> {
    let mut found = Vec::new();
    let list = |dir: &Path| -> Result<Vec<PathBuf>, BackupError> {
        match std::fs::read_dir(dir) {
            Ok(rd) => {
                let mut v: Vec<PathBuf> =
                    rd.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(BackupError::io("cannot list", dir))?;
                v.sort();
                Ok(v)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(BackupError::Io { action: "cannot list", path: dir.to_path_buf(), source: e }),
        }
    };
    let empty_dir = |p: &Path| p.is_dir() && !p.is_symlink() && std::fs::read_dir(p).map(|mut r| r.next().is_none()).unwrap_or(false);
    let meta_dir = target.data_dir.join("agent-runtime");
    for p in list(&target.data_dir)? {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with(STAGING) || empty_dir(&p) {
            continue;
        }
        if p == meta_dir {
            found.extend(list(&meta_dir)?.into_iter().filter(|q| q.file_name().is_none_or(|n| n != LOCK_FILE)));
        } else {
            found.push(p);
        }
    }
    for outside in [&target.db_path, &target.workspace_root] {
        if !outside.starts_with(&target.data_dir) && outside.exists() && !empty_dir(outside) {
            found.push(outside.clone());
        }
    }
    if !target.db_path.starts_with(&target.data_dir) {
        for suffix in ["-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", target.db_path.display()));
            if p.exists() {
                found.push(p);
            }
        }
    }
    Ok(found)
}

/// Moves `present` into a new sibling of the data directory,
/// `<data>.pre-restore-<UTC time>`, keeping paths relative to the data
/// directory (things from elsewhere go to its `outside/`).
fn move_aside(target: &Target, present: &[PathBuf]) -> Result<PathBuf, BackupError> {
    let name = target.data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let aside = target.data_dir.with_file_name(format!("{name}.pre-restore-{stamp}-{}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&aside).map_err(BackupError::io("cannot create", &aside))?;
    for p in present {
        let to = match p.strip_prefix(&target.data_dir) {
            Ok(rel) => aside.join(rel),
            Err(_) => aside.join("outside").join(p.file_name().unwrap_or_default()),
        };
        if let Some(dir) = to.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(BackupError::io("cannot create", dir))?;
        }
        std::fs::rename(p, &to).map_err(|e| BackupError::Io {
            action: "cannot move aside (to the same filesystem only)",
            path: p.clone(),
            source: std::io::Error::new(e.kind(), format!("{e}; what was moved so far is in {}", aside.display())),
        })?;
    }
    Ok(aside)
}

/// Renames the staged files into place; returns the `.env`'s new path.
fn install(staging: &Path, target: &Target) -> Result<Option<PathBuf>, BackupError> {
    let mkdir =
        |dir: &Path| std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(BackupError::io("cannot create", dir));
    let mv = |from: &Path, to: &Path| std::fs::rename(from, to).map_err(BackupError::io("cannot move a restored file to", to));
    if let Some(dir) = target.db_path.parent() {
        mkdir(dir)?;
    }
    mv(&staging.join(DB_ENTRY), &target.db_path)?;
    let staged_ws = staging.join(WORKSPACES);
    if staged_ws.is_dir() {
        if let Some(dir) = target.workspace_root.parent() {
            mkdir(dir)?;
        }
        // An empty directory in the way (not moved aside) is replaced by the rename.
        mv(&staged_ws, &target.workspace_root)?;
    }
    let staged_pki = staging.join(PKI);
    if staged_pki.is_dir() {
        mv(&staged_pki, &target.data_dir.join("pki"))?;
    }
    let staged_env = staging.join(ENV_ENTRY);
    if staged_env.is_file() {
        let to = target.data_dir.join(".env");
        mv(&staged_env, &to)?;
        return Ok(Some(to));
    }
    Ok(None)
}
