//! Built-in markdown retrieval: every workspace's `*.md` files, cut into
//! sections along their headings ([`chunk`]), in an FTS5 index of their own
//! ([`index`]) that follows the disk: the workspace watcher's changes are
//! applied as they come, and at start (and every
//! `AGENT_RUNTIME_RETRIEVAL_RECONCILE_SECONDS`) the index is compared with
//! the files by size, modification time and content hash, so only changed
//! files are read again and nothing changed while the daemon was down is
//! missed.
//!
//! One indexer thread writes; searches read in parallel. A search runs in
//! one workspace and can reach no other's documents (every query filters on
//! the workspace, and the chunk it then decorates is checked again). User
//! text never reaches FTS5 as syntax ([`query`]); paths to open are checked
//! to stay inside the workspace ([`scan`]). Chat `/search` and `/open`, the
//! admin API, the CLI and (later) the agent's tools all call this module.

pub mod chunk;
pub mod index;
mod indexer;
pub mod query;
pub mod scan;

pub use index::{Counts, Hit};
pub use query::QueryError;
pub use scan::{PathError, Rules};

use crate::domain::WorkspaceId;
use crate::health::Health;
use crate::store::Store;
use crate::workspace::WorkspaceChange;
use index::{IndexError, Readers, Writer};
use indexer::{Job, Shared, State};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

/// Health component of the index.
pub const COMPONENT: &str = "retrieval";

/// The index beats at least this often.
const BEAT: Duration = Duration::from_secs(30);

/// Searches quiet this long give their readers' memory back.
const IDLE: Duration = Duration::from_secs(10);

/// Most results of one search.
pub const MAX_LIMIT: usize = 50;

/// Most bytes `open` returns.
pub const MAX_OPEN_BYTES: usize = 1024 * 1024;

/// The index's settings.
#[derive(Debug, Clone)]
pub struct RetrievalConfig {
    /// `AGENT_RUNTIME_RETRIEVAL_ENABLED` (default true).
    pub enabled: bool,
    /// `AGENT_RUNTIME_RETRIEVAL_DB_PATH` (default `<data>/agent-runtime/retrieval.sqlite`).
    pub db_path: PathBuf,
    /// `AGENT_RUNTIME_RETRIEVAL_EXCLUDE_GLOBS`: comma-separated workspace-relative globs left out.
    pub exclude: Vec<crate::domain::Glob>,
    /// `AGENT_RUNTIME_RETRIEVAL_MAX_FILE_BYTES` (default 2 MiB): larger files are recorded as skipped.
    pub max_file_bytes: u64,
    /// `AGENT_RUNTIME_RETRIEVAL_RECONCILE_SECONDS` (default 600; 0 = only at start):
    /// how often the index is compared with the disk (catches what a watcher missed).
    pub reconcile_every: Option<Duration>,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    /// The query cannot be searched.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// The path cannot be opened.
    #[error("{0}")]
    Path(#[from] PathError),
    /// The index failed.
    #[error("{0}")]
    Index(#[from] IndexError),
    /// The indexer is gone (it failed to start or stopped).
    #[error("the retrieval index is unavailable: {0}")]
    Unavailable(String),
}

/// The outcome of a comparison with the disk (or a rebuild).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Workspaces looked at.
    pub workspaces: usize,
    /// Files read and written to the index.
    pub indexed: usize,
    /// Files whose content had not changed.
    pub unchanged: usize,
    /// Documents removed (their files are gone).
    pub removed: usize,
    /// Files recorded as skipped (too large) or unreadable.
    pub skipped: usize,
    /// Time taken.
    pub elapsed_ms: u64,
}

/// The index as seen by `GET /api/v1/retrieval/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// Changes and files waiting to be indexed.
    pub pending_changes: u64,
    /// A comparison with the disk is running.
    pub reconciling: bool,
    /// Size of the index files (database and its WAL), bytes.
    pub database_bytes: u64,
    /// When any file was last indexed (ms).
    pub last_indexed_at: Option<i64>,
    /// The last comparison with the disk.
    pub last_reconcile: Option<Summary>,
    /// The indexer's last error, if any.
    pub error: Option<String>,
    /// Per workspace (every workspace of the last comparison, and any with documents).
    pub workspaces: Vec<(String, Counts)>,
}

/// What a document looks like when opened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Opened {
    /// Workspace-relative path.
    pub path: String,
    /// The chunk opened (`path#n`), if one was asked for.
    pub chunk: Option<u32>,
    /// Heading path of the chunk.
    pub heading_path: Option<String>,
    /// Lines the content covers (the chunk's; for a file, 1 to its last line).
    pub line_start: u32,
    /// Last line.
    pub line_end: u32,
    /// Bytes of the whole file (or chunk text).
    pub size: u64,
    /// The text (at most the limit asked for).
    pub content: String,
    /// Whether `content` was cut at the limit.
    pub truncated: bool,
}

/// The index handle (cheap to clone).
#[derive(Clone)]
pub struct Retrieval {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    readers: Readers,
    /// Searches answered (to notice when they stop, and give memory back).
    queries: AtomicU64,
    /// To the indexer thread (`None` once closed).
    jobs: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    /// The indexer thread, joined by [`Retrieval::close`].
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    db_path: PathBuf,
}

impl std::fmt::Debug for Retrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrieval").field("db", &self.inner.db_path).finish()
    }
}

impl Retrieval {
    /// Opens (creating or rebuilding) the index and starts its indexer
    /// thread. Nothing is indexed until [`Retrieval::run`] (or a reconcile).
    pub fn start(config: &RetrievalConfig, workspace_root: &Path) -> Result<Self, RetrievalError> {
        let conn = index::open_writer(&config.db_path)?;
        let shared = Arc::new(Shared {
            root: workspace_root.to_path_buf(),
            rules: Rules { exclude: config.exclude.clone() },
            max_file_bytes: config.max_file_bytes,
            state: Mutex::new(State::default()),
            pending: AtomicU64::new(0),
            alive: AtomicBool::new(true),
        });
        let mut writer = Writer::new(conn);
        if let Ok(c) = writer.counts() {
            shared.set(|s| s.counts = c);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("retrieval-index".into())
            .spawn(move || {
                // Marks the indexer gone however it ends (a panic included),
                // so health and every later call say so.
                struct Gone(Arc<Shared>);
                impl Drop for Gone {
                    fn drop(&mut self) {
                        self.0.alive.store(false, Ordering::SeqCst);
                        self.0.set(|s| s.error = Some("the indexer thread has stopped".into()));
                    }
                }
                let _gone = Gone(thread_shared.clone());
                indexer::run(&mut writer, &rx, &thread_shared);
            })
            .map_err(|e| RetrievalError::Unavailable(format!("cannot start the indexer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                readers: Readers::new(config.db_path.clone()),
                queries: AtomicU64::new(0),
                jobs: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                db_path: config.db_path.clone(),
            }),
        })
    }

    fn send(&self, job: Job) -> Result<(), RetrievalError> {
        let gone = || RetrievalError::Unavailable("the indexer thread has stopped".into());
        if !self.inner.shared.alive.load(Ordering::SeqCst) {
            return Err(gone());
        }
        let jobs = self.inner.jobs.lock().map_err(|_| gone())?;
        jobs.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())
    }

    /// Stops the indexer once the jobs already handed over are done, and
    /// waits for it (blocking); every later call answers `Unavailable`.
    pub fn close(&self) {
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            jobs.take();
        }
        let thread = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// Changes and files waiting to be indexed (cheap: for every search reply).
    pub fn pending_changes(&self) -> u64 {
        self.inner.shared.pending.load(Ordering::SeqCst)
    }

    /// Hands watcher changes to the indexer.
    pub fn changed(&self, changes: Vec<WorkspaceChange>) -> Result<(), RetrievalError> {
        if changes.is_empty() {
            return Ok(());
        }
        let n = changes.len() as u64;
        self.inner.shared.pending.fetch_add(n, Ordering::SeqCst);
        let sent = self.send(Job::Changes(changes));
        if sent.is_err() {
            // Nothing will apply them: not waiting either.
            self.inner.shared.pending.fetch_sub(n, Ordering::SeqCst);
        }
        sent
    }

    /// Compares the index with the disk for `workspaces` (the documents of
    /// any other workspace are dropped), or only for `only`; with `rebuild`
    /// every file is read again. Waits until it is done.
    pub async fn reconcile(
        &self,
        workspaces: Vec<WorkspaceId>,
        only: Option<&WorkspaceId>,
        rebuild: bool,
    ) -> Result<Summary, RetrievalError> {
        let (done, wait) = oneshot::channel();
        let workspaces = workspaces.iter().map(|w| w.as_str().to_string()).collect();
        self.send(Job::Reconcile { workspaces, only: only.map(|w| w.as_str().to_string()), rebuild, done: Some(done) })?;
        match wait.await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(RetrievalError::Unavailable(e)),
            Err(_) => Err(RetrievalError::Unavailable("the indexer thread stopped during the comparison".into())),
        }
    }

    /// Waits until every change handed over before this call is applied.
    pub async fn flush(&self) -> Result<(), RetrievalError> {
        let (done, wait) = oneshot::channel();
        self.send(Job::Flush(done))?;
        wait.await.map_err(|_| RetrievalError::Unavailable("the indexer thread stopped".into()))
    }

    /// The best `limit` documents of `ws` for `text` (each as its best chunk).
    pub async fn search(&self, ws: &WorkspaceId, text: &str, limit: usize) -> Result<Vec<Hit>, RetrievalError> {
        let q = query::parse(text)?;
        let (this, ws) = (self.clone(), ws.as_str().to_string());
        let limit = limit.clamp(1, MAX_LIMIT);
        let started = Instant::now();
        let hits = tokio::task::spawn_blocking(move || this.inner.readers.search(&ws, &q, limit))
            .await
            .map_err(|e| RetrievalError::Unavailable(e.to_string()))??;
        crate::metrics::metrics().retrieval_query(started.elapsed());
        self.inner.queries.fetch_add(1, Ordering::Relaxed);
        Ok(hits)
    }

    /// Opens `target` in `ws`: a workspace-relative path, or `path#n` for
    /// one chunk of it; at most `max_bytes` of text (capped at [`MAX_OPEN_BYTES`]).
    pub async fn open(&self, ws: &WorkspaceId, target: &str, max_bytes: usize) -> Result<Opened, RetrievalError> {
        let (path, chunk) = match target.trim().rsplit_once('#') {
            Some((p, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                (p, Some(n.parse::<u32>().map_err(|_| PathError::NotFound(target.to_string()))?))
            }
            _ => (target.trim(), None),
        };
        let rel = scan::clean(path)?;
        let max = max_bytes.clamp(1, MAX_OPEN_BYTES);
        let (this, ws) = (self.clone(), ws.as_str().to_string());
        tokio::task::spawn_blocking(move || this.open_blocking(&ws, &rel, chunk, max))
            .await
            .map_err(|e| RetrievalError::Unavailable(e.to_string()))?
    }

    fn open_blocking(&self, ws: &str, rel: &str, chunk: Option<u32>, max: usize) -> Result<Opened, RetrievalError> {
        let shared = &self.inner.shared;
        // The file must be a document inside the workspace even to show its indexed chunk.
        let real = scan::resolve(&shared.dir(ws), rel, &shared.rules)?;
        if let Some(seq) = chunk {
            let c = self.inner.readers.chunk(ws, rel, seq)?.ok_or_else(|| PathError::NotFound(format!("{rel}#{seq}")))?;
            let (content, truncated) = cut(&c.body, max);
            return Ok(Opened {
                path: rel.to_string(),
                chunk: Some(seq),
                heading_path: Some(c.heading_path),
                line_start: c.line_start,
                line_end: c.line_end,
                size: c.body.len() as u64,
                content,
                truncated,
            });
        }
        // Opened without following a link (the check above resolved them), as a regular file.
        let (f, meta) = scan::open_regular(&real).map_err(|_| PathError::NotFound(rel.to_string()))?;
        let size = meta.len();
        let mut bytes = Vec::with_capacity(max.min(size as usize) + 1);
        std::io::Read::read_to_end(&mut std::io::Read::take(f, max as u64 + 1), &mut bytes)
            .map_err(|_| PathError::NotFound(rel.to_string()))?;
        let more = bytes.len() > max;
        let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
        let (content, cut_here) = cut(&text, max);
        let truncated = more || cut_here;
        let line_end = u32::try_from(content.lines().count().max(1)).unwrap_or(u32::MAX);
        Ok(Opened { path: rel.to_string(), chunk: None, heading_path: None, line_start: 1, line_end, size, content, truncated })
    }

    /// Counts, progress and the index size.
    pub fn status(&self) -> Status {
        let shared = &self.inner.shared;
        let mut st = Status { pending_changes: shared.pending.load(Ordering::SeqCst), ..Status::default() };
        shared.set(|s| {
            st.reconciling = s.reconciling;
            st.last_reconcile = s.last_reconcile.clone();
            st.error = s.error.clone();
            let mut names: Vec<String> = s.known_workspaces.clone();
            names.extend(s.counts.keys().cloned());
            names.sort();
            names.dedup();
            st.workspaces = names.into_iter().map(|n| (n.clone(), s.counts.get(&n).cloned().unwrap_or_default())).collect();
        });
        if !shared.alive.load(Ordering::SeqCst) {
            st.error = Some("the indexer thread has stopped".into());
        }
        st.last_indexed_at = st.workspaces.iter().filter_map(|(_, c)| c.last_indexed_at).max();
        let db = self.inner.db_path.as_os_str().to_owned();
        st.database_bytes = ["", "-wal"]
            .iter()
            .filter_map(|ext| {
                let mut p = db.clone();
                p.push(ext);
                std::fs::metadata(p).ok()
            })
            .map(|m| m.len())
            .sum();
        st
    }

    /// Sets the number of matching sections above which a query is ranked
    /// in tiers ([`index::BROAD`] by default; for tests and benchmarks).
    pub fn set_broad(&self, n: i64) {
        self.inner.readers.set_broad(n);
    }

    /// Sets the page cache of each index reader, KiB (benchmarks; see
    /// `index::READER_CACHE_KIB`).
    pub fn set_reader_cache_kib(&self, kib: i64) {
        self.inner.readers.set_cache_kib(kib);
    }

    /// Closes idle readers (their caches go with them).
    pub fn release_memory(&self) {
        self.inner.readers.release();
    }

    /// Compares the index with the disk at start, then follows the watcher's
    /// `changes` (if the watcher runs) and compares again every `every`.
    /// A watcher that lost changes (a lagging subscription) triggers a full
    /// comparison, so nothing is missed for long.
    pub async fn run(
        self,
        store: Store,
        mut changes: Option<broadcast::Receiver<WorkspaceChange>>,
        health: Health,
        every: Option<Duration>,
        stop: CancellationToken,
    ) {
        health.register_periodic(COMPONENT, BEAT);
        let mut beat = tokio::time::interval(BEAT);
        let mut again = tokio::time::interval(every.unwrap_or(Duration::from_secs(86_400 * 365)));
        again.tick().await;
        // Searches stopped for a while: the readers' caches go back.
        let mut idle = tokio::time::interval(IDLE);
        let (mut seen, mut dirty) = (0, false);
        self.reconcile_all(&store, &health, &stop).await;
        loop {
            let recv = async {
                match changes.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = beat.tick() => self.beat(&health),
                _ = idle.tick() => {
                    let now = self.inner.queries.load(Ordering::Relaxed);
                    if now != seen {
                        (seen, dirty) = (now, true);
                    } else if dirty {
                        dirty = false;
                        self.release_memory();
                        let _ = tokio::task::spawn_blocking(crate::memory::trim).await;
                    }
                }
                _ = again.tick(), if every.is_some() => self.reconcile_all(&store, &health, &stop).await,
                r = recv => match r {
                    Ok(first) => {
                        let mut batch = vec![first];
                        if let Some(rx) = changes.as_mut() {
                            while let Ok(c) = rx.try_recv() {
                                batch.push(c);
                            }
                        }
                        if let Err(e) = self.changed(batch) {
                            health.degrade(COMPONENT, e.to_string());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "the retrieval index fell behind the workspace watcher; comparing with the disk");
                        self.reconcile_all(&store, &health, &stop).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => changes = None,
                },
            }
        }
    }

    fn beat(&self, health: &Health) {
        if self.inner.shared.alive.load(Ordering::SeqCst) {
            health.beat(COMPONENT);
        } else {
            health.degrade(COMPONENT, "the indexer thread has stopped; search answers from what was indexed");
        }
    }

    async fn reconcile_all(&self, store: &Store, health: &Health, stop: &CancellationToken) {
        let ids = match store.workspace_ids().await {
            Ok(ids) => ids,
            Err(e) => {
                health.degrade(COMPONENT, format!("cannot read the workspace list: {e}"));
                return;
            }
        };
        let work = self.reconcile(ids, None, false);
        tokio::pin!(work);
        let mut beat = tokio::time::interval(BEAT);
        let outcome = loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = beat.tick() => self.beat(health),
                r = &mut work => break r,
            }
        };
        match outcome {
            Ok(s) => {
                let docs: u64 = self.status().workspaces.iter().map(|(_, c)| c.documents).sum();
                if s.indexed + s.removed > 0 {
                    tracing::info!(
                        indexed = s.indexed,
                        removed = s.removed,
                        unchanged = s.unchanged,
                        skipped = s.skipped,
                        elapsed_ms = s.elapsed_ms,
                        "retrieval index compared with the workspaces"
                    );
                }
                health.healthy(COMPONENT, format!("{docs} documents in {} workspaces", s.workspaces));
            }
            Err(e) => health.degrade(COMPONENT, e.to_string()),
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s.to_string(), false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_string(), true)
}

#[cfg(test)]
mod tests;
