//! The index: its own SQLite file (`<data>/agent-runtime/retrieval.sqlite`),
//! an FTS5 table of chunks (`porter unicode61`) beside tables of documents
//! and chunk positions. It holds nothing that is not on disk in the
//! workspaces, so a schema of another version, or a file SQLite cannot
//! open, is set aside and the index is built again from the files.
//!
//! One writer (the indexer thread) and a small pool of readers (WAL mode:
//! searches never wait for indexing).

use super::chunk::{self, Parsed};
use super::query::{Part, Query};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The schema's version (`PRAGMA user_version`); any other is rebuilt.
pub const SCHEMA_VERSION: i64 = 3;

/// Column weights for `bm25()`: title (and tags), heading path, body, file path.
pub const WEIGHTS: [f64; 4] = [6.0, 3.0, 1.0, 2.0];

/// How many sections (of all workspaces) bm25 ranks at most for a query
/// whose words are common. bm25 scores every matching section (FTS5 cannot
/// stop at the best few), so a query whose words match more sections than
/// this is *broad*, and is ranked in one of two ways:
/// - some of its words are rarer: the sections with the rarest words, as
///   many words as fit in this many sections together, are ranked by those
///   words, and the common words (in nearly every section, they hardly
///   separate documents anyway) only fill the list if it is short, from
///   their title and heading matches (a common-terms query);
/// - all of its words are common and there are at most
///   [`TIER_MAX_WORDS`]: it is ranked among the sections with a query word
///   in their title, heading path or file path first (a few hundred), and
///   only if those hold fewer than `limit` documents among all its sections.
///
/// This keeps the worst queries near 10 ms on 10,000 files
/// (docs/benchmarks.md, sessions 10 and 11).
pub const BROAD: i64 = 4_000;

/// Broad queries of common words only, of at most this many words (or
/// phrases, or prefixes), are tiered. Longer ones are ranked in full: their
/// words spread over sections, and a title-first tier ranked them worse
/// (recall@1 0.819 against 0.872 on real READMEs at a low threshold).
pub const TIER_MAX_WORDS: usize = 2;

/// Most indexed words a prefix stands for: its commonest. (FTS5's own
/// prefix query merges the lists of every word with the prefix before
/// ranking; `tor*` took half a second on 10,000 files.)
pub const PREFIX_WORDS: usize = 16;

/// The columns of the first tier of a broad query.
const STRONG: &str = "{title headings path}";

/// Chunk row ids are `slot << SLOT_BITS | n`: each workspace's sections
/// are one range of row ids, which FTS5 seeks to and stops at, so a search
/// walks only its own workspace's matches and joins nothing to filter them.
const SLOT_BITS: u32 = 40;

/// The range of chunk row ids of workspace `slot`.
fn slot_range(slot: i64) -> (i64, i64) {
    (slot << SLOT_BITS, ((slot + 1) << SLOT_BITS) - 1)
}

const SCHEMA: &str = "
CREATE TABLE workspaces (
    slot INTEGER PRIMARY KEY CHECK (slot > 0 AND slot < 8388608),
    workspace_id TEXT NOT NULL UNIQUE
);
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT NOT NULL,
    title TEXT NOT NULL,
    tags TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    lossy INTEGER NOT NULL DEFAULT 0,
    skipped TEXT,
    indexed_at INTEGER NOT NULL,
    UNIQUE (workspace_id, path)
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    doc_id INTEGER NOT NULL,
    workspace_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    heading_path TEXT NOT NULL,
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL
);
CREATE INDEX chunks_by_doc ON chunks (doc_id);
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    title, headings, body, path,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
";

/// A reader's own in-memory tables: the index's vocabulary (prefixes are
/// expanded from it) and a scratch table with the index's tokenizer (it
/// tells which indexed words are their own stem).
const READER_TABLES: &str = "
PRAGMA temp_store = MEMORY;
CREATE VIRTUAL TABLE temp.vocab USING fts5vocab('main', 'chunks_fts', 'row');
CREATE VIRTUAL TABLE temp.stems USING fts5 (w, tokenize = 'porter unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE temp.stems_at USING fts5vocab('temp', 'stems', 'instance');
";

/// An index error (SQLite's, with what was being done).
#[derive(Debug, thiserror::Error)]
#[error("retrieval index: {0}")]
pub struct IndexError(#[from] pub rusqlite::Error);

/// A file as the index last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Row id.
    pub id: i64,
    /// Size in bytes.
    pub size: i64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Content hash (hex).
    pub hash: String,
}

/// A file read and parsed, ready to be written.
#[derive(Debug)]
pub struct Prepared {
    /// Workspace.
    pub workspace_id: String,
    /// Workspace-relative path.
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Content hash (hex); empty for a skipped file.
    pub hash: String,
    /// The content, or why it is not indexed.
    pub content: Result<Parsed, String>,
}

/// One search result (a document's best chunk).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    /// 1-based rank.
    pub rank: usize,
    /// Workspace-relative path.
    pub path: String,
    /// `path#seq`: opens this chunk.
    pub chunk_id: String,
    /// Document title.
    pub title: String,
    /// `Guide > Install > Linux`.
    pub heading_path: String,
    /// First line of the chunk.
    pub line_start: u32,
    /// Last line of the chunk.
    pub line_end: u32,
    /// Body text around the matches, the matches in `**`.
    pub snippet: String,
    /// `bm25()` (lower is better; negative).
    pub score: f64,
}

/// One chunk's stored text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    /// Document title.
    pub title: String,
    /// Heading path.
    pub heading_path: String,
    /// Lines.
    pub line_start: u32,
    /// Lines.
    pub line_end: u32,
    /// Text.
    pub body: String,
}

/// Per-workspace counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Documents indexed (skipped ones included).
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
    /// Files recorded but not indexed (too large).
    pub skipped: u64,
    /// Files with bytes that were not UTF-8.
    pub lossy: u64,
    /// When a file of this workspace was last indexed (ms).
    pub last_indexed_at: Option<i64>,
}

fn configure(c: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.pragma_update(None, "temp_store", "MEMORY")?;
    c.pragma_update(None, "cache_size", -cache_kib)?;
    c.pragma_update(None, "busy_timeout", 5_000)?;
    Ok(())
}

/// Opens (creating or rebuilding) the index file for writing.
pub fn open_writer(path: &Path) -> Result<Connection, IndexError> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match try_open_writer(path) {
        Ok(c) => Ok(c),
        Err(e) => {
            // Derived data: a file SQLite cannot use is set aside, not fatal.
            // Only a file that is not a database, or a damaged one; a busy or
            // unwritable file is an error to report, not a reason to rebuild.
            let damaged = matches!(&e, IndexError(rusqlite::Error::SqliteFailure(f, _))
                if matches!(f.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt));
            if !damaged {
                return Err(e);
            }
            let with = |suffix: &str| {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                PathBuf::from(p)
            };
            let aside = with(".broken");
            tracing::warn!(error = %e, file = %path.display(), aside = %aside.display(), "the retrieval index is damaged; it is moved aside and built again from the workspaces");
            let _ = std::fs::rename(path, &aside);
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(with(suffix));
            }
            Ok(try_open_writer(path)?)
        }
    }
}

fn try_open_writer(path: &Path) -> Result<Connection, IndexError> {
    let c = Connection::open(path)?;
    configure(&c, 4_096)?;
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version != SCHEMA_VERSION {
        if version != 0 {
            tracing::info!(found = version, wanted = SCHEMA_VERSION, "the retrieval index has another schema version; building it again");
        }
        c.execute_batch(
            "DROP TABLE IF EXISTS chunks_fts; DROP TABLE IF EXISTS chunks; DROP TABLE IF EXISTS documents;
             DROP TABLE IF EXISTS workspaces; VACUUM;",
        )?;
        c.execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))?;
    }
    // Catches a file that opens but is not an index (or is damaged).
    c.query_row("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'x'", [], |r| r.get::<_, i64>(0))?;
    Ok(c)
}

/// The write side, owned by the indexer thread.
pub struct Writer {
    conn: Connection,
}

impl Writer {
    /// Wraps an open connection.
    pub fn new(conn: Connection) -> Self {
        Self { conn }
    }

    /// Runs `f` in one transaction.
    pub fn batch<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, IndexError>) -> Result<T, IndexError> {
        let tx = self.conn.transaction()?;
        let mut t = Tx { tx };
        let out = f(&mut t)?;
        t.tx.commit()?;
        Ok(out)
    }

    /// What the index knows of `workspace`'s files, by path.
    pub fn known(&self, workspace: &str) -> Result<HashMap<String, Known>, IndexError> {
        let mut stmt = self.conn.prepare_cached("SELECT id, size, mtime_ns, hash, path FROM documents WHERE workspace_id = ?1")?;
        let rows = stmt.query_map([workspace], |r| Ok((r.get::<_, String>(4)?, known(r)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Workspaces with documents in the index.
    pub fn workspaces(&self) -> Result<Vec<String>, IndexError> {
        let mut stmt = self.conn.prepare_cached("SELECT DISTINCT workspace_id FROM documents")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counts per workspace.
    pub fn counts(&self) -> Result<HashMap<String, Counts>, IndexError> {
        counts(&self.conn)
    }

    /// Merges the FTS5 segments into one (faster queries after a big build).
    pub fn optimize(&self) -> Result<(), IndexError> {
        self.conn.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('optimize')", [])?;
        Ok(())
    }

    /// Frees the connection's caches.
    pub fn shrink(&self) {
        let _ = self.conn.execute_batch("PRAGMA shrink_memory");
        self.conn.flush_prepared_statement_cache();
    }
}

/// A [`Known`] from the columns `id, size, mtime_ns, hash` (first four).
fn known(r: &rusqlite::Row<'_>) -> rusqlite::Result<Known> {
    Ok(Known { id: r.get(0)?, size: r.get(1)?, mtime_ns: r.get(2)?, hash: r.get(3)? })
}

fn counts(c: &Connection) -> Result<HashMap<String, Counts>, IndexError> {
    let mut stmt = c.prepare_cached(
        "SELECT workspace_id, count(*), sum(chunks), sum(skipped IS NOT NULL), sum(lossy), max(indexed_at) FROM documents GROUP BY workspace_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Counts {
                documents: r.get::<_, i64>(1)?.max(0) as u64,
                chunks: r.get::<_, i64>(2)?.max(0) as u64,
                skipped: r.get::<_, i64>(3)?.max(0) as u64,
                lossy: r.get::<_, i64>(4)?.max(0) as u64,
                last_indexed_at: r.get(5)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One write transaction.
pub struct Tx<'c> {
    tx: rusqlite::Transaction<'c>,
}

impl Tx<'_> {
    fn drop_chunks(&self, doc_id: i64) -> Result<(), IndexError> {
        self.tx.prepare_cached("DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE doc_id = ?1)")?.execute([doc_id])?;
        self.tx.prepare_cached("DELETE FROM chunks WHERE doc_id = ?1")?.execute([doc_id])?;
        Ok(())
    }

    /// Writes a file's document and chunks, replacing what was there.
    pub fn put(&self, p: &Prepared, now_ms: i64) -> Result<(), IndexError> {
        let old: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM documents WHERE workspace_id = ?1 AND path = ?2")?
            .query_row(params![p.workspace_id, p.path], |r| r.get(0))
            .optional()?;
        if let Some(id) = old {
            self.drop_chunks(id)?;
        }
        let (title, tags, chunks, lossy, skipped) = match &p.content {
            Ok(parsed) => (parsed.title.clone(), parsed.tags.join(", "), parsed.chunks.as_slice(), parsed.lossy, None),
            Err(why) => (String::new(), String::new(), &[][..], false, Some(why.clone())),
        };
        let doc_id: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO documents (workspace_id, path, size, mtime_ns, hash, title, tags, chunks, lossy, skipped, indexed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (workspace_id, path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
                   hash = excluded.hash, title = excluded.title, tags = excluded.tags, chunks = excluded.chunks,
                   lossy = excluded.lossy, skipped = excluded.skipped, indexed_at = excluded.indexed_at
                 RETURNING id",
            )?
            .query_row(
                params![p.workspace_id, p.path, p.size, p.mtime_ns, p.hash, title, tags, chunks.len() as i64, lossy, skipped, now_ms],
                |r| r.get(0),
            )?;
        if chunks.is_empty() {
            return Ok(());
        }
        let title_col = if tags.is_empty() { title.clone() } else { format!("{title} {tags}") };
        let (first, last) = slot_range(self.slot(&p.workspace_id)?);
        let start: i64 = self
            .tx
            .prepare_cached("SELECT id FROM chunks WHERE id <= ?1 ORDER BY id DESC LIMIT 1")?
            .query_row([last], |r| r.get::<_, i64>(0))
            .optional()?
            .filter(|id| *id >= first)
            .map_or(first + 1, |id| id + 1);
        if start.saturating_add(chunks.len() as i64) > last {
            // 2^40 sections written into one workspace since its last
            // rebuild; `index rebuild` starts its numbers again.
            return Err(IndexError(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some(format!("workspace {}: no section numbers left; run `agent-runtime index rebuild`", p.workspace_id)),
            )));
        }
        let mut pos = self.tx.prepare_cached(
            "INSERT INTO chunks (id, doc_id, workspace_id, seq, heading_path, line_start, line_end) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut fts = self.tx.prepare_cached("INSERT INTO chunks_fts (rowid, title, headings, body, path) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for (id, c) in (start..).zip(chunks) {
            let hp = c.heading_path();
            pos.execute(params![id, doc_id, p.workspace_id, c.seq, hp, c.line_start, c.line_end])?;
            fts.execute(params![id, title_col, hp, c.body, p.path])?;
        }
        Ok(())
    }

    /// The workspace's slot (its range of chunk row ids), given on first use.
    fn slot(&self, workspace: &str) -> Result<i64, IndexError> {
        let known: Option<i64> = self
            .tx
            .prepare_cached("SELECT slot FROM workspaces WHERE workspace_id = ?1")?
            .query_row([workspace], |r| r.get(0))
            .optional()?;
        if let Some(slot) = known {
            return Ok(slot);
        }
        let next: i64 = self.tx.query_row("SELECT coalesce(max(slot), 0) + 1 FROM workspaces", [], |r| r.get(0))?;
        self.tx.execute("INSERT INTO workspaces (slot, workspace_id) VALUES (?1, ?2)", params![next, workspace])?;
        Ok(next)
    }

    /// What the index knows of one file.
    pub fn known_one(&self, workspace: &str, path: &str) -> Result<Option<Known>, IndexError> {
        let mut stmt = self.tx.prepare_cached("SELECT id, size, mtime_ns, hash FROM documents WHERE workspace_id = ?1 AND path = ?2")?;
        Ok(stmt.query_row(params![workspace, path], known).optional()?)
    }

    /// Records a file whose content did not change (same hash) under its new size and time.
    pub fn touch(&self, id: i64, size: i64, mtime_ns: i64) -> Result<(), IndexError> {
        self.tx.prepare_cached("UPDATE documents SET size = ?2, mtime_ns = ?3 WHERE id = ?1")?.execute(params![id, size, mtime_ns])?;
        Ok(())
    }

    /// Removes `path` and, if it was a directory, everything under it; returns how many documents went.
    pub fn remove(&self, workspace: &str, path: &str) -> Result<usize, IndexError> {
        let ids: Vec<i64> = {
            let mut stmt = self.tx.prepare_cached(
                "SELECT id FROM documents WHERE workspace_id = ?1 AND (path = ?2 OR (path >= ?2 || '/' AND path < ?2 || '0'))",
            )?;
            let rows = stmt.query_map(params![workspace, path], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for id in &ids {
            self.remove_id(*id)?;
        }
        Ok(ids.len())
    }

    /// Removes one document.
    pub fn remove_id(&self, id: i64) -> Result<(), IndexError> {
        self.drop_chunks(id)?;
        self.tx.prepare_cached("DELETE FROM documents WHERE id = ?1")?.execute([id])?;
        Ok(())
    }

    /// Removes every document of `workspace`.
    pub fn clear(&self, workspace: &str) -> Result<usize, IndexError> {
        self.tx
            .prepare_cached("DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE workspace_id = ?1)")?
            .execute([workspace])?;
        self.tx.prepare_cached("DELETE FROM chunks WHERE workspace_id = ?1")?.execute([workspace])?;
        Ok(self.tx.prepare_cached("DELETE FROM documents WHERE workspace_id = ?1")?.execute([workspace])?)
    }
}

/// Most idle reader connections kept.
const READERS: usize = 4;

/// Each reader's page cache, KiB. Searches run on as many readers as there
/// are blocking threads, and each reader's cache filled with its own copy
/// of the same hot pages: at SQLite's 2 MiB default, 200 concurrent agent
/// turns held ~10 MiB of index pages on the heap at their peak (heap
/// profile, docs/benchmarks.md, session 14). The file's pages stay in the
/// kernel's page cache, so a small cache costs a `pread`, not a disk read.
const READER_CACHE_KIB: i64 = 256;

/// The read side: searches, chunk lookups, counts.
#[derive(Debug)]
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// [`BROAD`] (lowered by tests).
    broad: std::sync::atomic::AtomicI64,
    /// [`READER_CACHE_KIB`] (changed by benchmarks).
    cache_kib: std::sync::atomic::AtomicI64,
}

impl Readers {
    /// Readers of the index at `path` (opened on first use).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            broad: std::sync::atomic::AtomicI64::new(BROAD),
            cache_kib: std::sync::atomic::AtomicI64::new(READER_CACHE_KIB),
        }
    }

    /// Sets the breadth above which a query is ranked in tiers (tests and benchmarks).
    pub fn set_broad(&self, n: i64) {
        self.broad.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets the page cache of readers opened from now on, KiB (benchmarks:
    /// the A/B behind [`READER_CACHE_KIB`]); closes the idle ones.
    pub fn set_cache_kib(&self, kib: i64) {
        self.cache_kib.store(kib, std::sync::atomic::Ordering::Relaxed);
        self.release();
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, IndexError>) -> Result<T, IndexError> {
        let taken = self.idle.lock().ok().and_then(|mut v| v.pop());
        let conn = match taken {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.pragma_update(None, "cache_size", -self.cache_kib.load(std::sync::atomic::Ordering::Relaxed))?;
                c.pragma_update(None, "busy_timeout", 5_000)?;
                c.execute_batch(READER_TABLES)?;
                c
            }
        };
        let out = f(&conn);
        if let Ok(mut v) = self.idle.lock()
            && v.len() < READERS
        {
            v.push(conn);
        }
        out
    }

    /// Closes the idle readers (their caches go with them).
    pub fn release(&self) {
        if let Ok(mut v) = self.idle.lock() {
            v.clear();
        }
    }

    /// The best chunk of each of the best `limit` documents of `workspace` for `q`.
    pub fn search(&self, workspace: &str, q: &Query, limit: usize) -> Result<Vec<Hit>, IndexError> {
        if q.parts.is_empty() {
            return Ok(Vec::new());
        }
        let not = q.not.as_deref().map(|n| format!(" NOT {n}")).unwrap_or_default();
        self.with(|c| {
            let threshold = self.broad.load(std::sync::atomic::Ordering::Relaxed);
            let slot: Option<i64> =
                c.prepare_cached("SELECT slot FROM workspaces WHERE workspace_id = ?1")?.query_row([workspace], |r| r.get(0)).optional()?;
            let Some(slot) = slot else { return Ok(Vec::new()) };
            let range = slot_range(slot);
            let parts = weigh(c, &q.parts, range, threshold)?;
            let total: i64 = parts.iter().map(|p| p.sections).sum();
            if total == 0 {
                return Ok(Vec::new());
            }
            let all = any_of(parts.iter());
            let strong = format!("({STRONG} : {all}){not}");
            let mut best = Vec::new();
            let mut complete = false;
            if total > threshold {
                let rare: Vec<&Weighed> = parts.iter().filter(|p| p.sections <= threshold).collect();
                if rare.is_empty() {
                    if q.parts.len() <= TIER_MAX_WORDS {
                        best = ranked(c, &strong, range, limit)?;
                    }
                } else if rare.len() < parts.len() {
                    // Every part in the ranking (bm25 counts the rare ones twice).
                    let expr = format!("{} AND {all}{not}", any_of(rare.into_iter()));
                    best = ranked(c, &expr, range, limit)?;
                    if best.len() < limit {
                        for hit in ranked(c, &strong, range, limit)? {
                            if best.len() < limit && !best.iter().any(|b| b.doc == hit.doc) {
                                best.push(hit);
                            }
                        }
                    }
                    complete = true;
                }
            }
            if !complete && best.len() < limit {
                best = ranked(c, &format!("{all}{not}"), range, limit)?;
            }
            // Snippets only for the chunks shown (in the ranking query,
            // SQLite would make one for every match before sorting).
            let highlight = all;
            let mut stmt = c.prepare_cached(
                "SELECT d.path, c.seq, d.title, c.heading_path, c.line_start, c.line_end,
                        snippet(chunks_fts, 2, '**', '**', '…', 24)
                 FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.doc_id
                 WHERE chunks_fts MATCH ?1 AND chunks_fts.rowid = ?2 AND c.workspace_id = ?3",
            )?;
            let mut hits = Vec::with_capacity(best.len());
            for Ranked { rowid, score, .. } in best {
                let hit = stmt
                    .query_row(params![highlight, rowid, workspace], |r| {
                        let path: String = r.get(0)?;
                        let seq: i64 = r.get(1)?;
                        Ok(Hit {
                            rank: hits.len() + 1,
                            chunk_id: format!("{path}#{seq}"),
                            path,
                            title: r.get(2)?,
                            heading_path: r.get(3)?,
                            line_start: r.get(4)?,
                            line_end: r.get(5)?,
                            snippet: r.get::<_, String>(6)?.split_whitespace().collect::<Vec<_>>().join(" "),
                            score,
                        })
                    })
                    .optional()?;
                // The workspace, checked again on the row itself (invariant 17).
                if let Some(h) = hit {
                    hits.push(h);
                }
            }
            Ok(hits)
        })
    }

    /// Chunk `seq` of `path` in `workspace`.
    pub fn chunk(&self, workspace: &str, path: &str, seq: u32) -> Result<Option<StoredChunk>, IndexError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT d.title, c.heading_path, c.line_start, c.line_end, f.body
                 FROM documents d JOIN chunks c ON c.doc_id = d.id JOIN chunks_fts f ON f.rowid = c.id
                 WHERE d.workspace_id = ?1 AND d.path = ?2 AND c.seq = ?3",
            )?;
            Ok(stmt
                .query_row(params![workspace, path, seq], |r| {
                    Ok(StoredChunk {
                        title: r.get(0)?,
                        heading_path: r.get(1)?,
                        line_start: r.get(2)?,
                        line_end: r.get(3)?,
                        body: r.get(4)?,
                    })
                })
                .optional()?)
        })
    }

    /// Counts per workspace.
    pub fn counts(&self) -> Result<HashMap<String, Counts>, IndexError> {
        self.with(counts)
    }
}

/// Most sections read to find `limit` distinct documents.
const MAX_CANDIDATES: i64 = 20_000;

/// A part of a query as FTS5 is asked for it, with how many sections
/// (of all workspaces) match it: counted up to the breadth threshold for a
/// word or phrase, the sum of its words' sections for a prefix.
#[derive(Debug)]
struct Weighed {
    fts: String,
    sections: i64,
}

/// `(a OR b OR …)`.
fn any_of<'a>(parts: impl Iterator<Item = &'a Weighed>) -> String {
    format!("({})", parts.map(|p| p.fts.as_str()).collect::<Vec<_>>().join(" OR "))
}

/// The query's parts with their breadth; a prefix becomes its
/// [`PREFIX_WORDS`] commonest indexed words (nothing if none).
fn weigh(c: &Connection, parts: &[Part], (first, last): (i64, i64), threshold: i64) -> Result<Vec<Weighed>, IndexError> {
    let mut count =
        c.prepare_cached("SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3 LIMIT ?4)")?;
    let mut out = Vec::new();
    for part in parts {
        match part {
            Part::Exact(fts) => {
                let sections = count.query_row(params![fts, first, last, threshold + 1], |r| r.get(0))?;
                out.push(Weighed { fts: fts.clone(), sections });
            }
            Part::Prefix(prefix) => {
                let words = expand(c, prefix)?;
                if !words.is_empty() {
                    // Its words are alternatives: one part, as broad as all of them.
                    out.push(Weighed { fts: any_of(words.iter()), sections: words.iter().map(|w| w.sections).sum() });
                }
            }
        }
    }
    Ok(out)
}

/// The commonest indexed words beginning with `prefix`, as exact words.
///
/// The index holds stems (`instal` for `installing`), and FTS5 stems the
/// words of a query again, which changes a few stems (`choos` for `choose`
/// would be looked up as `choo`). Each word is stemmed here by the index's
/// own tokenizer: a word that is its own stem is asked for exactly, the
/// others as a prefix of themselves (still within `prefix`).
fn expand(c: &Connection, prefix: &str) -> Result<Vec<Weighed>, IndexError> {
    let mut words: Vec<(String, i64)> = c
        .prepare_cached("SELECT term, doc FROM temp.vocab WHERE term >= ?1 AND term <= ?2")?
        .query_map(params![prefix, format!("{prefix}\u{10FFFF}")], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    // Letters and digits only (as the tokenizer makes them), so quoting is safe.
    words.retain(|(w, _)| w.starts_with(prefix) && w.chars().all(char::is_alphanumeric));
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    words.truncate(PREFIX_WORDS);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let joined = words.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>().join(" ");
    c.prepare_cached("INSERT INTO temp.stems (rowid, w) VALUES (1, ?1)")?.execute([&joined])?;
    let stems: HashMap<i64, String> = c
        .prepare_cached("SELECT offset, term FROM temp.stems_at")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    c.prepare_cached("DELETE FROM temp.stems")?.execute([])?;
    Ok(words
        .into_iter()
        .enumerate()
        .map(|(i, (w, sections))| {
            let own_stem = stems.get(&(i as i64)).is_some_and(|s| *s == w);
            Weighed { fts: if own_stem { format!("\"{w}\"") } else { format!("\"{w}\"*") }, sections }
        })
        .collect())
}

/// A ranked section.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    rowid: i64,
    doc: i64,
    score: f64,
}

/// The best chunk of each of the best `limit` documents matching `expr`,
/// best first.
fn ranked(c: &Connection, expr: &str, (first, last): (i64, i64), limit: usize) -> Result<Vec<Ranked>, IndexError> {
    // The workspace is the row id range (FTS5 seeks to it); the document of
    // each candidate is looked up after ranking, not for every match.
    let mut stmt = c.prepare_cached(
        "SELECT f.rowid, c.doc_id, f.score
         FROM (SELECT rowid, bm25(chunks_fts, ?5, ?6, ?7, ?8) AS score FROM chunks_fts
               WHERE chunks_fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3 ORDER BY score LIMIT ?4) f
         JOIN chunks c ON c.id = f.rowid
         ORDER BY f.score",
    )?;
    let [w0, w1, w2, w3] = WEIGHTS;
    // Sections of one document can fill the first candidates: ask for more
    // until `limit` distinct documents are among them or nothing more matches.
    let mut candidates = (limit * 10) as i64;
    loop {
        let rows = stmt.query_map(params![expr, first, last, candidates, w0, w1, w2, w3], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?))
        })?;
        let mut best: Vec<Ranked> = Vec::new();
        let mut seen = 0;
        for row in rows {
            let (rowid, doc, score) = row?;
            seen += 1;
            if best.len() < limit && !best.iter().any(|b| b.doc == doc) {
                best.push(Ranked { rowid, doc, score });
            }
        }
        if best.len() >= limit || seen < candidates || candidates >= MAX_CANDIDATES {
            return Ok(best);
        }
        candidates *= 8;
    }
}

impl Prepared {
    /// A file recorded without its content, with the reason (an empty hash
    /// marks it: the next look reads it again if the reason may be gone).
    pub fn skipped(workspace_id: &str, path: &str, size: i64, mtime_ns: i64, why: String) -> Self {
        Self { workspace_id: workspace_id.into(), path: path.into(), size, mtime_ns, hash: String::new(), content: Err(why) }
    }
}

/// Parses `bytes` into what [`Tx::put`] writes.
pub fn prepare(workspace_id: &str, path: &str, size: i64, mtime_ns: i64, bytes: &[u8]) -> Prepared {
    Prepared {
        workspace_id: workspace_id.to_string(),
        path: path.to_string(),
        size,
        mtime_ns,
        hash: hash(bytes),
        content: Ok(chunk::parse(bytes)),
    }
}

/// The content hash: SHA-256, hex.
pub fn hash(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
