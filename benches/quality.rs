//! `BENCH_ONLY=quality`: how well the built-in markdown search
//! ([`agent_runtime::retrieval`]) finds a known document, against two
//! baselines, on a corpus of real, independently written text.
//!
//! **Corpus and task.** `scripts/retrieval-corpus.py` turns the local cargo
//! registry cache into one workspace of crate READMEs
//! (`workspace/<crate>/README.md`) and a query per crate: its `Cargo.toml`
//! `description`. Each query has exactly one right answer, the README of the
//! same crate (the script drops crates whose README or description is shared
//! with another, so the answer is never ambiguous). The description and the
//! README are written by the same author but separately, with different
//! wording and length, which is what a person searching their notes from
//! memory looks like: a short phrase to find one document among many. The
//! measures are recall@1 (the README ranked first), recall@5 and MRR@10
//! (mean of 1/rank, 0 when not in the top 10), over all queries, plus
//! per-query latency (median and p99) and the time to build each index.
//! Give the corpus with `BENCH_QUALITY_CORPUS=<dir>` (a directory the script
//! wrote); without it the script is run into a temporary directory.
//! `BENCH_QUALITY_EXAMPLES` (default 15) caps the queries listed where a
//! baseline beats ours.
//!
//! **Methods.**
//! - *ours*: [`Retrieval`] as the daemon runs it (FTS5, `porter unicode61`,
//!   one row per heading section, `bm25` weighted title 6, headings 3, body 1,
//!   path 2, best chunk per document), built by one reconcile and searched
//!   through [`Retrieval::search`] (so its times include the hop to the
//!   blocking pool).
//! - *A, FTS5 default, whole files*: one FTS5 row per README (`path
//!   UNINDEXED, body`), default `unicode61` tokenizer (no stemming), default
//!   `bm25` ranking. It gets the very match expressions ours builds
//!   ([`query::parse`]: same stopwords, same quoting, at most the same 32
//!   terms), any word (`OR`) ranked by bm25, as ours. The only differences
//!   from ours are therefore the index design: stemming, chunking along
//!   headings, column weights (title, headings, path).
//! - *B, term overlap (grep-like)*: no index structure beyond a term count
//!   per document. Documents and queries are cut into lowercase
//!   letter-and-digit runs; the query terms are [`query::parse`]'s words
//!   (quotes and a trailing `*` stripped, phrases split into words, repeated
//!   words once). A document's score is how many distinct query terms it
//!   contains; ties go to the larger total count of those terms, then to the
//!   path, so the order is deterministic. This is roughly what `grep -c` over
//!   each word would give, and is the floor an index has to beat.
//!
//! **Fairness notes.** Ours indexes the file path, and here the path holds
//! the crate name, which many descriptions mention; the baselines do not see
//! paths (A's `path` is `UNINDEXED`). The per-kind table below splits the
//! queries on whether the description names the crate, so that advantage is
//! visible. The baselines index the raw file (markup, link targets and HTML
//! tags included); ours indexes the text its chunker keeps (the text inside
//! HTML, without its tags; not link targets): the per-kind table splits on
//! READMEs with HTML lines too. All
//! three see the same bytes (invalid UTF-8 replaced); a query
//! [`query::parse`] refuses (over 1,000 bytes) counts as a miss for all
//! three and is reported. Each method answers one untimed query first (its
//! caches and connections warm), then the queries in file order, one at a
//! time.
//!
//! Reproduce: `python3 scripts/retrieval-corpus.py --out /tmp/corpus &&
//! BENCH_QUALITY_CORPUS=/tmp/corpus BENCH_ONLY=quality cargo bench --bench bench`.

use super::percentile;
use agent_runtime::domain::WorkspaceId;
use agent_runtime::retrieval::{Retrieval, RetrievalConfig, query};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Results asked of every method.
const K: usize = 10;

const REPRODUCE: &str = "python3 scripts/retrieval-corpus.py --out /tmp/corpus && BENCH_QUALITY_CORPUS=/tmp/corpus BENCH_ONLY=quality cargo bench --bench bench";

/// One known-item query.
struct Item {
    krate: String,
    /// The answer: `<crate>/README.md`, relative to the workspace.
    path: String,
    description: String,
}

/// The corpus on disk and in memory.
struct Corpus {
    /// The workspace root (holds `workspace/`).
    dir: PathBuf,
    items: Vec<Item>,
    /// (workspace-relative path, text), sorted by path.
    docs: Vec<(String, String)>,
    /// Paths of the documents with HTML blocks (see [`has_html_blocks`]).
    html: HashSet<String>,
    bytes: u64,
    /// The generated corpus, removed at the end.
    _tmp: Option<tempfile::TempDir>,
}

/// What one method did over all queries.
struct Outcome {
    name: &'static str,
    /// For the narrow tables.
    short: &'static str,
    /// Rank of the answer (1-based) per query, `None` if not in the top K.
    ranks: Vec<Option<usize>>,
    /// The first three paths returned per query (for the examples).
    tops: Vec<Vec<String>>,
    /// Per-query time, ms.
    times: Vec<f64>,
    /// Queries that failed (counted as misses).
    errors: usize,
    /// Time to build the index, ms.
    build_ms: f64,
}

impl Outcome {
    fn new(name: &'static str, short: &'static str, build_ms: f64, n: usize) -> Self {
        Self { name, short, ranks: Vec::with_capacity(n), tops: Vec::with_capacity(n), times: Vec::with_capacity(n), errors: 0, build_ms }
    }

    /// Records one query's result list (`None`: it failed).
    fn record(&mut self, target: &str, results: Option<Vec<String>>, ms: f64) {
        self.times.push(ms);
        let results = results.unwrap_or_else(|| {
            self.errors += 1;
            Vec::new()
        });
        self.ranks.push(results.iter().take(K).position(|p| p == target).map(|i| i + 1));
        self.tops.push(results.into_iter().take(3).collect());
    }

    /// recall@1, recall@5, MRR@10 over the queries `which` selects.
    fn scores(&self, which: &[bool]) -> (f64, f64, f64, usize) {
        let ranks: Vec<Option<usize>> = self.ranks.iter().zip(which).filter(|(_, w)| **w).map(|(r, _)| *r).collect();
        let n = ranks.len().max(1) as f64;
        let at = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
        let mrr = ranks.iter().map(|r| r.map_or(0.0, |r| 1.0 / r as f64)).sum::<f64>() / n;
        (at(1), at(5), mrr, ranks.len())
    }
}

/// The corpus of `BENCH_QUALITY_CORPUS`, or one the script writes now.
fn corpus() -> Corpus {
    let (dir, tmp) = match std::env::var_os("BENCH_QUALITY_CORPUS") {
        Some(d) => (PathBuf::from(d), None),
        None => {
            let tmp = tempfile::tempdir().expect("tempdir");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/retrieval-corpus.py");
            eprintln!("BENCH_QUALITY_CORPUS is not set: building the corpus with {}", script.display());
            let status = std::process::Command::new("python3")
                .arg(&script)
                .arg("--out")
                .arg(tmp.path())
                .status()
                .expect("run python3 scripts/retrieval-corpus.py");
            assert!(status.success(), "scripts/retrieval-corpus.py failed: {status}");
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let tsv = std::fs::read_to_string(dir.join("queries.tsv")).expect("read <corpus>/queries.tsv (run scripts/retrieval-corpus.py)");
    let mut lines = tsv.lines();
    assert_eq!(lines.next(), Some("crate\tpath\tdescription"), "queries.tsv header");
    let items: Vec<Item> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let (krate, path, description) = (f.next(), f.next(), f.next());
            let (Some(krate), Some(path), Some(description)) = (krate, path, description) else {
                panic!("queries.tsv: not three tab-separated fields: {l:?}");
            };
            Item { krate: krate.to_string(), path: path.to_string(), description: description.to_string() }
        })
        .collect();
    assert!(!items.is_empty(), "queries.tsv has no queries");

    // Every `<crate>/README.md` of the workspace: what ours indexes too.
    let ws = dir.join("workspace");
    let mut docs = Vec::new();
    let mut bytes = 0;
    for e in std::fs::read_dir(&ws).expect("read <corpus>/workspace").flatten() {
        let (Ok(name), true) = (e.file_name().into_string(), e.path().is_dir()) else { continue };
        let Ok(raw) = std::fs::read(e.path().join("README.md")) else { continue };
        bytes += raw.len() as u64;
        docs.push((format!("{name}/README.md"), String::from_utf8_lossy(&raw).into_owned()));
    }
    docs.sort();
    let known: HashSet<&str> = docs.iter().map(|(p, _)| p.as_str()).collect();
    for it in &items {
        assert!(known.contains(it.path.as_str()), "queries.tsv names {} but the workspace does not hold it", it.path);
    }
    let html = docs.iter().filter(|(_, body)| has_html_blocks(body)).map(|(p, _)| p.clone()).collect();
    Corpus { dir, items, docs, html, bytes, _tmp: tmp }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Ours, as the daemon runs it.
async fn ours(c: &Corpus) -> (Outcome, String) {
    let db = tempfile::tempdir().expect("tempdir");
    let config = RetrievalConfig {
        enabled: true,
        db_path: db.path().join("retrieval.sqlite"),
        exclude: vec![],
        max_file_bytes: 8 * 1024 * 1024,
        reconcile_every: None,
    };
    let r = Retrieval::start(&config, &c.dir).expect("start the retrieval index");
    if let Some(n) = std::env::var("BENCH_QUALITY_BROAD").ok().and_then(|v| v.parse().ok()) {
        eprintln!("broad-query threshold: {n} sections");
        r.set_broad(n);
    }
    let ws = WorkspaceId::from_string("workspace");
    let started = Instant::now();
    let summary = r.reconcile(vec![ws.clone()], None, false).await.expect("reconcile");
    let mut out = Outcome::new("ours (FTS5 porter, chunks, weighted bm25)", "ours", ms(started), c.items.len());
    let status = r.status();
    let counts = status.workspaces.iter().find(|(w, _)| w == "workspace").map(|(_, n)| n.clone()).unwrap_or_default();
    let note = format!(
        "{} files indexed ({} skipped) into {} chunks, index file {:.1} MB",
        summary.indexed,
        summary.skipped,
        counts.chunks,
        status.database_bytes as f64 / 1e6
    );
    if summary.indexed != c.docs.len() {
        eprintln!("warning: ours indexed {} files, the corpus has {} documents", summary.indexed, c.docs.len());
    }
    let _ = r.search(&ws, "warm up", K).await;
    for it in &c.items {
        let t = Instant::now();
        let res = r.search(&ws, &it.description, K).await.ok().map(|hits| hits.into_iter().map(|h| h.path).collect());
        out.record(&it.path, res, ms(t));
    }
    (out, note)
}

/// A: the same match expressions on one default FTS5 row per file.
fn fts_default(c: &Corpus) -> Outcome {
    let conn = rusqlite::Connection::open_in_memory().expect("sqlite");
    let started = Instant::now();
    conn.execute_batch("CREATE VIRTUAL TABLE docs USING fts5(path UNINDEXED, body)").expect("create fts5 table");
    {
        let tx = conn.unchecked_transaction().expect("begin");
        let mut ins = tx.prepare("INSERT INTO docs (path, body) VALUES (?1, ?2)").expect("prepare insert");
        for (path, body) in &c.docs {
            ins.execute((path, body)).expect("insert");
        }
        drop(ins);
        tx.commit().expect("commit");
    }
    let mut out = Outcome::new("A: FTS5 default, whole files", "A", ms(started), c.items.len());
    let search = |text: &str| -> Option<Vec<String>> {
        let q = query::parse(text).ok()?;
        let mut found: Vec<String> = Vec::new();
        let Some(expr) = q.expr.as_deref() else { return Some(found) };
        let mut stmt = conn.prepare_cached("SELECT path FROM docs WHERE docs MATCH ?1 ORDER BY rank LIMIT ?2").ok()?;
        let rows = stmt.query_map((expr, K as i64), |r| r.get::<_, String>(0)).ok()?;
        for p in rows {
            found.push(p.ok()?);
        }
        Some(found)
    };
    time_queries(c, &mut out, search);
    out
}

/// Times `search` over every query (after one untimed warm-up) into `out`.
fn time_queries(c: &Corpus, out: &mut Outcome, search: impl Fn(&str) -> Option<Vec<String>>) {
    let _ = search("warm up");
    for it in &c.items {
        let t = Instant::now();
        let res = search(&it.description);
        out.record(&it.path, res, ms(t));
    }
}

/// Lowercase letter-and-digit runs.
fn tokens(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

/// B's query terms: the parsed words, operators stripped, phrases split, once each.
fn overlap_terms(text: &str) -> Option<Vec<String>> {
    let q = query::parse(text).ok()?;
    let mut terms: Vec<String> = Vec::new();
    for w in &q.words {
        for t in w.replace('"', " ").split_whitespace() {
            let t = t.trim_end_matches('*').to_string();
            if !t.is_empty() && !terms.contains(&t) {
                terms.push(t);
            }
        }
    }
    Some(terms)
}

/// B: distinct query terms present, then their total count, then the path.
fn term_overlap(c: &Corpus) -> Outcome {
    let started = Instant::now();
    let index: Vec<(&str, HashMap<String, u32>)> = c
        .docs
        .iter()
        .map(|(path, body)| {
            let mut tf: HashMap<String, u32> = HashMap::new();
            for t in tokens(body) {
                *tf.entry(t).or_default() += 1;
            }
            (path.as_str(), tf)
        })
        .collect();
    let mut out = Outcome::new("B: term overlap (grep-like)", "B", ms(started), c.items.len());
    let search = |text: &str| -> Option<Vec<String>> {
        let terms = overlap_terms(text)?;
        let mut scored: Vec<(usize, u64, &str)> = index
            .iter()
            .filter_map(|(path, tf)| {
                let counts: Vec<u32> = terms.iter().filter_map(|t| tf.get(t).copied()).collect();
                (!counts.is_empty()).then(|| (counts.len(), counts.iter().map(|&n| u64::from(n)).sum(), *path))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
        Some(scored.into_iter().take(K).map(|(_, _, p)| p.to_string()).collect())
    };
    time_queries(c, &mut out, search);
    out
}

/// Whether some line of `body` starts with an HTML tag (`<div align=…>`,
/// `<h1>`, `<p>`: the centred banners many READMEs open with). A rough test
/// (a line of a code block counts too), to split the queries by it.
fn has_html_blocks(body: &str) -> bool {
    body.lines().any(|l| {
        let mut cs = l.trim_start().chars();
        cs.next() == Some('<') && cs.next().is_some_and(|c| c.is_ascii_alphabetic())
    })
}

/// Whether the description names the crate (its name's words, in order, as words).
fn names_crate(it: &Item) -> bool {
    let name: Vec<String> = tokens(&it.krate).collect();
    let desc: Vec<String> = tokens(&it.description).collect();
    !name.is_empty() && desc.windows(name.len()).any(|w| w == name.as_slice())
}

fn rank_str(r: Option<usize>) -> String {
    r.map_or_else(|| "-".to_string(), |r| r.to_string())
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}…", s.chars().take(max - 1).collect::<String>()) }
}

/// Runs the three methods on the corpus and prints the tables.
pub async fn run() {
    let c = corpus();
    let n = c.items.len();
    let (o, note) = ours(&c).await;
    let methods = [o, fts_default(&c), term_overlap(&c)];

    println!();
    println!("## Retrieval quality: known-item search, crate READMEs by their Cargo.toml description");
    println!();
    println!("Corpus: {} documents, {:.2} MB, {n} queries ({}). Ours: {note}.", c.docs.len(), c.bytes as f64 / 1e6, c.dir.display());
    println!("Reproduce: `{REPRODUCE}`");
    if cfg!(debug_assertions) {
        println!("(A debug build: the rankings are the same as a release build's, the times are not release figures.)");
    }
    println!();
    println!("| method | recall@1 | recall@5 | MRR@10 | query median | query p99 | failed queries | index build |");
    println!("|---|---|---|---|---|---|---|---|");
    let everyone = vec![true; n];
    for m in &methods {
        let (r1, r5, mrr, _) = m.scores(&everyone);
        let mut t = m.times.clone();
        t.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} ms | {:.3} ms | {} | {:.0} ms |",
            m.name,
            r1,
            r5,
            mrr,
            percentile(&t, 0.5),
            percentile(&t, 0.99),
            m.errors,
            m.build_ms
        );
    }

    // Per kind of query: length (searched words) and whether the crate is named.
    let words: Vec<usize> = c.items.iter().map(|it| query::parse(&it.description).map_or(0, |q| q.words.len())).collect();
    let named: Vec<bool> = c.items.iter().map(names_crate).collect();
    let html: Vec<bool> = c.items.iter().map(|it| c.html.contains(&it.path)).collect();
    let kinds: [(&str, Vec<bool>); 7] = [
        ("1-3 words searched", words.iter().map(|&w| w <= 3).collect()),
        ("4-6 words searched", words.iter().map(|&w| (4..=6).contains(&w)).collect()),
        ("7+ words searched", words.iter().map(|&w| w >= 7).collect()),
        ("description names the crate", named.clone()),
        ("description does not name the crate", named.iter().map(|b| !b).collect()),
        ("README has lines starting with an HTML tag", html.clone()),
        ("README has no such line", html.iter().map(|b| !b).collect()),
    ];
    println!();
    println!("| queries | n | {} |", methods.iter().map(|m| format!("{} r@1 / MRR", m.short)).collect::<Vec<_>>().join(" | "));
    println!("|---|---|{}", "---|".repeat(methods.len()));
    for (label, which) in &kinds {
        let cells: Vec<String> = methods
            .iter()
            .map(|m| {
                let (r1, _, mrr, _) = m.scores(which);
                format!("{r1:.3} / {mrr:.3}")
            })
            .collect();
        println!("| {label} | {} | {} |", which.iter().filter(|w| **w).count(), cells.join(" | "));
    }

    // Head to head: per query, whose rank is better (a miss ranks below any hit).
    let key = |r: Option<usize>| r.unwrap_or(usize::MAX);
    println!();
    for b in &methods[1..] {
        let (mut win, mut lose) = (0, 0);
        for i in 0..n {
            match key(methods[0].ranks[i]).cmp(&key(b.ranks[i])) {
                std::cmp::Ordering::Less => win += 1,
                std::cmp::Ordering::Greater => lose += 1,
                std::cmp::Ordering::Equal => {}
            }
        }
        println!("- ours vs {}: ours ranks the answer higher on {win} queries, lower on {lose}, equal on {}.", b.name, n - win - lose);
    }

    // Where a baseline ranks the answer first and ours does not.
    let max = std::env::var("BENCH_QUALITY_EXAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let lost: Vec<usize> =
        (0..n).filter(|&i| methods[0].ranks[i] != Some(1) && methods[1..].iter().any(|m| m.ranks[i] == Some(1))).collect();
    println!();
    println!("Queries a baseline ranks first and ours does not: {} (first {}):", lost.len(), lost.len().min(max));
    println!();
    println!("| crate | description | ours | A | B | ours' top 3 |");
    println!("|---|---|---|---|---|---|");
    for &i in lost.iter().take(max) {
        let it = &c.items[i];
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            it.krate,
            shorten(&it.description, 90).replace('|', "\\|"),
            rank_str(methods[0].ranks[i]),
            rank_str(methods[1].ranks[i]),
            rank_str(methods[2].ranks[i]),
            methods[0].tops[i].iter().map(|p| p.trim_end_matches("/README.md")).collect::<Vec<_>>().join(", ")
        );
    }
}
