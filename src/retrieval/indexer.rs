//! The indexer thread: the one writer of the index. It takes watcher
//! changes (each path looked at again on disk) and comparisons with the
//! disk (size and time, then the content hash; a scoped thread reads and
//! parses while this one writes), and keeps the counts the handle reports.

use super::index::{self, IndexError, Known, Prepared, Writer};
use super::scan::{self, Rules};
use super::{Counts, Summary};
use crate::workspace::{WorkspaceChange, sanitize_segment};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::oneshot;

/// Files written per transaction while (re)building.
pub(super) const TX_FILES: usize = 256;

/// Most bytes of files written per transaction while (re)building (large
/// files make small transactions: memory stays bounded whatever the limit).
const TX_BYTES: u64 = 16 * 1024 * 1024;

/// After a build that wrote this many files, the FTS5 segments are merged.
const OPTIMIZE_AFTER: usize = 1_000;

/// What the indexer thread is asked to do.
pub(super) enum Job {
    /// Look again at these paths.
    Changes(Vec<WorkspaceChange>),
    /// Compare with the disk: these workspaces (all others' documents are
    /// dropped unless `only` is given); `rebuild` reads every file afresh.
    Reconcile { workspaces: Vec<String>, only: Option<String>, rebuild: bool, done: Option<oneshot::Sender<Result<Summary, String>>> },
    /// Answers once every job before it is done.
    Flush(oneshot::Sender<()>),
}

/// State shared with the indexer thread.
pub(super) struct Shared {
    pub(super) root: PathBuf,
    pub(super) rules: Rules,
    pub(super) max_file_bytes: u64,
    pub(super) state: Mutex<State>,
    pub(super) pending: AtomicU64,
    pub(super) alive: AtomicBool,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) counts: HashMap<String, Counts>,
    pub(super) known_workspaces: Vec<String>,
    pub(super) reconciling: bool,
    pub(super) last_reconcile: Option<Summary>,
    pub(super) error: Option<String>,
}

impl Shared {
    pub(super) fn dir(&self, ws: &str) -> PathBuf {
        self.root.join(sanitize_segment(ws))
    }

    pub(super) fn set<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What to do with one file.
enum Action {
    Put(Box<Prepared>),
    Touch { id: i64, size: i64, mtime_ns: i64 },
    Unchanged,
    Unreadable,
}

/// Looks at one file (already known to be a document) against what the index knows.
fn look(shared: &Shared, ws: &str, rel: &str, path: &Path, known: Option<&Known>, rebuild: bool) -> Action {
    // Opened without following a link, checked on the handle, read from it.
    let Ok((file, meta)) = scan::open_regular(path) else { return Action::Unreadable };
    let size = i64::try_from(meta.len()).unwrap_or(i64::MAX);
    let mtime_ns = scan::mtime_ns(&meta);
    // A file skipped as too large, or indexed under an older, larger limit, is looked at again.
    let too_large = meta.len() > shared.max_file_bytes;
    if !rebuild && known.is_some_and(|k| k.size == size && k.mtime_ns == mtime_ns && k.hash.is_empty() == too_large) {
        return Action::Unchanged;
    }
    if too_large {
        tracing::info!(
            workspace = ws,
            path = rel,
            size = meta.len(),
            max = shared.max_file_bytes,
            "not indexed: the file is larger than AGENT_RUNTIME_RETRIEVAL_MAX_FILE_BYTES"
        );
        let why = format!("larger than {} bytes (AGENT_RUNTIME_RETRIEVAL_MAX_FILE_BYTES)", shared.max_file_bytes);
        return Action::Put(Box::new(Prepared::skipped(ws, rel, size, mtime_ns, why)));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    match std::io::Read::read_to_end(&mut std::io::Read::take(file, shared.max_file_bytes + 1), &mut bytes) {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(workspace = ws, path = rel, error = %e, "cannot read a markdown file; not indexed");
            return Action::Unreadable;
        }
    }
    if let Some(k) = known.filter(|k| !rebuild && k.hash == index::hash(&bytes)) {
        return Action::Touch { id: k.id, size, mtime_ns };
    }
    // A file the markdown parser chokes on is recorded as skipped, not the end of indexing.
    let p = match std::panic::catch_unwind(|| index::prepare(ws, rel, size, mtime_ns, &bytes)) {
        Ok(p) => p,
        Err(_) => {
            tracing::error!(workspace = ws, path = rel, "the markdown parser failed on this file; not indexed");
            return Action::Put(Box::new(Prepared::skipped(ws, rel, size, mtime_ns, "the markdown parser failed on it".into())));
        }
    };
    if matches!(&p.content, Ok(parsed) if parsed.lossy) {
        tracing::debug!(workspace = ws, path = rel, "bytes that are not UTF-8 were replaced");
    }
    Action::Put(Box::new(p))
}

/// The indexer thread: takes jobs until every sender is gone.
pub(super) fn run(w: &mut Writer, rx: &std::sync::mpsc::Receiver<Job>, shared: &Shared) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        let mut changes = Vec::new();
        let mut touched = 0;
        let mut flushed = Vec::new();
        for job in jobs {
            match job {
                Job::Flush(done) => {
                    if !changes.is_empty() {
                        touched += apply(w, shared, std::mem::take(&mut changes));
                    }
                    flushed.push(done);
                }
                Job::Changes(c) => changes.extend(c),
                Job::Reconcile { workspaces, only, rebuild, done } => {
                    if !changes.is_empty() {
                        touched += apply(w, shared, std::mem::take(&mut changes));
                    }
                    let r = reconcile(w, shared, &workspaces, only.as_deref(), rebuild);
                    if let Ok(s) = &r {
                        touched += s.indexed + s.removed;
                    }
                    if let Some(done) = done {
                        let _ = done.send(r.map_err(|e| e.to_string()));
                    }
                }
            }
        }
        if !changes.is_empty() {
            touched += apply(w, shared, changes);
        }
        match w.counts() {
            Ok(c) => {
                shared.set(|s| s.counts = c);
            }
            Err(e) => {
                shared.set(|s| s.error = Some(e.to_string()));
            }
        }
        if touched > 0 {
            crate::metrics::metrics().retrieval_indexed(touched as u64);
        }
        for done in flushed {
            let _ = done.send(());
        }
        // Quiet again: give the caches back.
        w.shrink();
        if touched >= 100 {
            crate::memory::trim();
        }
    }
}

/// Applies watcher changes: each path is looked at again on disk (a folder
/// stands for the documents under it), in transactions of at most
/// [`TX_FILES`] paths, so a folder of 10,000 files copied in never becomes
/// one transaction holding them all in memory.
fn apply(w: &mut Writer, shared: &Shared, changes: Vec<WorkspaceChange>) -> usize {
    let mut seen = HashSet::new();
    let mut paths: Vec<(String, String)> = Vec::new();
    for c in &changes {
        let ws = c.workspace_id.as_str();
        let Ok(rel) = scan::clean(&c.rel_path) else { continue };
        let path = shared.dir(ws).join(&rel);
        let found: Vec<String> = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => scan::walk(&path, &rel, &shared.rules).found.into_iter().map(|f| f.rel).collect(),
            _ => vec![rel],
        };
        for rel in found {
            if seen.insert((ws.to_string(), rel.clone())) {
                paths.push((ws.to_string(), rel));
            }
        }
    }
    let mut touched = 0;
    for part in paths.chunks(TX_FILES) {
        touched += apply_some(w, shared, part);
    }
    let n = changes.len() as u64;
    shared.pending.fetch_sub(n.min(shared.pending.load(Ordering::SeqCst)), Ordering::SeqCst);
    touched
}

/// One transaction of [`apply`].
fn apply_some(w: &mut Writer, shared: &Shared, paths: &[(String, String)]) -> usize {
    let now = now_ms();
    let result = w.batch(|tx| {
        let mut touched = 0;
        for (ws, rel) in paths {
            let path = shared.dir(ws).join(rel);
            match std::fs::symlink_metadata(&path) {
                // Gone (a file, or a folder and everything under it).
                Err(_) => touched += tx.remove(ws, rel)?,
                Ok(m) if m.is_file() && shared.rules.is_document(rel) => touched += put(tx, shared, ws, rel, &path, now)?,
                // A folder that appeared since: its own change follows.
                Ok(m) if m.is_dir() => {}
                // A link, a special file, or a path that is not a document (any more).
                Ok(_) => touched += tx.remove(ws, rel)?,
            }
        }
        Ok(touched)
    });
    match result {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "the retrieval index could not apply workspace changes; the next comparison with the disk retries");
            shared.set(|s| s.error = Some(e.to_string()));
            0
        }
    }
}

/// Indexes one file if it changed; returns 1 if the index changed.
fn put(tx: &index::Tx<'_>, shared: &Shared, ws: &str, rel: &str, path: &Path, now: i64) -> Result<usize, IndexError> {
    let known = tx.known_one(ws, rel)?;
    match look(shared, ws, rel, path, known.as_ref(), false) {
        Action::Put(p) => {
            tx.put(&p, now)?;
            Ok(1)
        }
        Action::Touch { id, size, mtime_ns } => {
            tx.touch(id, size, mtime_ns)?;
            Ok(0)
        }
        Action::Unchanged => Ok(0),
        Action::Unreadable => Ok(tx.remove(ws, rel)?),
    }
}

/// Compares the index with the disk (see [`Job::Reconcile`]).
fn reconcile(w: &mut Writer, shared: &Shared, workspaces: &[String], only: Option<&str>, rebuild: bool) -> Result<Summary, IndexError> {
    let started = Instant::now();
    shared.set(|s| {
        s.reconciling = true;
        if only.is_none() {
            s.known_workspaces = workspaces.to_vec();
        }
    });
    let result = reconcile_inner(w, shared, workspaces, only, rebuild, started);
    shared.set(|s| {
        s.reconciling = false;
        match &result {
            Ok(sum) => {
                s.last_reconcile = Some(sum.clone());
                s.error = None;
            }
            Err(e) => s.error = Some(e.to_string()),
        }
    });
    result
}

fn reconcile_inner(
    w: &mut Writer,
    shared: &Shared,
    workspaces: &[String],
    only: Option<&str>,
    rebuild: bool,
    started: Instant,
) -> Result<Summary, IndexError> {
    let mut sum = Summary::default();
    let targets: Vec<String> = match only {
        Some(ws) => vec![ws.to_string()],
        None => {
            // Workspaces that are gone lose their documents.
            let gone: Vec<String> = w.workspaces()?.into_iter().filter(|ws| !workspaces.contains(ws)).collect();
            for ws in gone {
                sum.removed += w.batch(|tx| tx.clear(&ws))?;
            }
            workspaces.to_vec()
        }
    };
    for ws in &targets {
        sum.workspaces += 1;
        // A rebuild reads every file again and replaces its rows; the index
        // is not emptied first, so searches keep answering meanwhile.
        let known = w.known(ws)?;
        let dir = shared.dir(ws);
        let walked = scan::walk(&dir, "", &shared.rules);
        let on_disk: HashSet<&str> = walked.found.iter().map(|f| f.rel.as_str()).collect();
        // Gone: not on disk, and not under a folder that could not be read.
        let gone: Vec<i64> = known.iter().filter(|(p, _)| !on_disk.contains(p.as_str()) && !walked.hidden(p)).map(|(_, k)| k.id).collect();
        if !gone.is_empty() {
            sum.removed += gone.len();
            w.batch(|tx| gone.iter().try_for_each(|id| tx.remove_id(*id)))?;
        }
        let too_large = |size: i64| size as u64 > shared.max_file_bytes;
        let todo: Vec<(String, Option<Known>)> = walked
            .found
            .into_iter()
            .filter_map(|f| {
                let k = known.get(&f.rel).cloned();
                if !rebuild
                    && k.as_ref().is_some_and(|k| k.size == f.size && k.mtime_ns == f.mtime_ns && k.hash.is_empty() == too_large(f.size))
                {
                    sum.unchanged += 1;
                    None
                } else {
                    Some((f.rel, k))
                }
            })
            .collect();
        shared.pending.fetch_add(todo.len() as u64, Ordering::SeqCst);
        let n = todo.len();
        // Reading and parsing on one thread, writing on this one.
        let (tx_prep, rx_prep) = std::sync::mpsc::sync_channel::<(Action, Option<i64>)>(32);
        let result = std::thread::scope(|scope| {
            let dir = &dir;
            scope.spawn(move || {
                for (rel, known) in todo {
                    let action = look(shared, ws, &rel, &dir.join(&rel), known.as_ref(), rebuild);
                    let old = known.map(|k| k.id);
                    if tx_prep.send((action, old)).is_err() {
                        return;
                    }
                }
            });
            let mut rx = rx_prep.into_iter().peekable();
            let now = now_ms();
            while rx.peek().is_some() {
                // At most TX_FILES files or TX_BYTES of text per transaction.
                let mut taken: Vec<(Action, Option<i64>)> = Vec::new();
                let mut bytes = 0;
                while taken.len() < TX_FILES && bytes < TX_BYTES {
                    let Some(next) = rx.next() else { break };
                    if let (Action::Put(p), _) = &next {
                        bytes += p.size.max(0) as u64;
                    }
                    taken.push(next);
                }
                let k = taken.len() as u64;
                w.batch(|tx| {
                    for (action, old) in &taken {
                        match action {
                            Action::Put(p) => {
                                tx.put(p, now)?;
                                if p.content.is_err() {
                                    sum.skipped += 1;
                                } else {
                                    sum.indexed += 1;
                                }
                            }
                            Action::Touch { id, size, mtime_ns } => {
                                tx.touch(*id, *size, *mtime_ns)?;
                                sum.unchanged += 1;
                            }
                            Action::Unchanged => sum.unchanged += 1,
                            Action::Unreadable => {
                                sum.skipped += 1;
                                if let Some(id) = old {
                                    tx.remove_id(*id)?;
                                }
                            }
                        }
                    }
                    Ok(())
                })?;
                shared.pending.fetch_sub(k.min(shared.pending.load(Ordering::SeqCst)), Ordering::SeqCst);
                if let Ok(c) = w.counts() {
                    shared.set(|s| s.counts = c);
                }
            }
            Ok::<_, IndexError>(())
        });
        if result.is_err() {
            shared.pending.store(0, Ordering::SeqCst);
        }
        result?;
        if n >= OPTIMIZE_AFTER {
            w.optimize()?;
        }
    }
    sum.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(sum)
}
