//! `BENCH_ONLY=retrieval`: the markdown index's numbers (issue 17), on the
//! release binary over mutual TLS, each run on a fresh daemon:
//! - a generated workspace of `BENCH_RET_FILES` (10,000) markdown files of
//!   about 5 KB each (~50 MB: front matter on a third, a title, three to six
//!   sections with sub-sections, paragraphs, lists and code; words by
//!   Zipf's law, see [`vocabulary`]), written while the daemon is stopped; the
//!   daemon is then started and the full index timed (start → every file
//!   indexed, as `GET /api/v1/retrieval/status` reports, and the indexer's
//!   own figure), with its RSS sampled every 50 ms meanwhile;
//! - RSS once quiet (5 s after the index settled);
//! - `BENCH_RET_QUERIES` (1,000) varied queries: single words (half drawn by
//!   their frequency in the text, half uniformly from the vocabulary), two
//!   and three words, exact phrases taken from the files, prefixes, words
//!   found nowhere — timed as a client sees them
//!   (`GET /api/v1/search` over a kept-alive mTLS connection) and, after
//!   the daemon stops, in-process on the same index file (the search alone);
//! - one edited file searchable: a new word written into a file, then
//!   `/api/v1/search` polled every 10 ms; reported after the watcher's
//!   debounce (500 ms by default), `BENCH_RET_EDITS` (20) edits.

use super::{Daemon, env_usize, median, percentile, rss_kib, start_daemon, start_daemon_in};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ber", "dan", "fel", "gor", "hul", "jin", "kor", "lum", "mar", "nix", "pel", "quo",
    "ras", "sol", "tor", "vex",
];

const FILLER: [&str; 24] = [
    "the", "and", "of", "to", "in", "is", "for", "with", "on", "that", "this", "by", "from", "as", "be", "are", "it", "an", "or", "at",
    "which", "when", "into", "then",
];

/// The content words and how often each is drawn.
struct Vocab {
    words: Vec<String>,
    /// Cumulative weights (Zipf), or empty for the skewed draw.
    cum: Vec<f64>,
}

impl std::ops::Deref for Vocab {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.words
    }
}

/// The vocabulary of `BENCH_RET_CORPUS`:
/// - `zipf` (default): 50,000 made-up content words drawn by Zipf's law
///   (frequency ∝ 1/rank) from rank 100 on — ranks 1–99 are the function
///   words, here the `FILLER` words, a third of all words — as in English
///   text, where the commonest content word is about 0.1 % of the words;
/// - `skewed`: 6,000 words drawn as `rank = n · u^2.5`, far more concentrated
///   than natural text (its commonest words are in nearly every section):
///   the first version of this benchmark, kept as a stress case.
fn vocabulary() -> Vocab {
    let skewed = std::env::var("BENCH_RET_CORPUS").is_ok_and(|v| v == "skewed");
    let n = if skewed { 6_000 } else { 50_000 };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::with_capacity(n);
    while words.len() < n {
        let k = 2 + rng.below(if skewed { 3 } else { 4 });
        let w: String = (0..k).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect();
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    let cum = if skewed {
        Vec::new()
    } else {
        let mut acc = 0.0;
        (0..n)
            .map(|r| {
                acc += 1.0 / (r + 100) as f64;
                acc
            })
            .collect()
    };
    Vocab { words, cum }
}

/// A content word drawn by its frequency.
fn zipf<'a>(rng: &mut Rng, vocab: &'a Vocab) -> &'a str {
    let r = match vocab.cum.last() {
        Some(total) => vocab.cum.partition_point(|c| *c < rng.unit() * total),
        None => (vocab.len() as f64 * rng.unit().powf(2.5)) as usize,
    };
    &vocab[r.min(vocab.len() - 1)]
}

/// `base` words and up to `extra - 1` more.
fn sentence(rng: &mut Rng, vocab: &Vocab, base: usize, extra: usize) -> String {
    let words = base + if extra > 0 { rng.below(extra) } else { 0 };
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        if rng.below(3) == 0 {
            s.push_str(FILLER[rng.below(FILLER.len())]);
        } else {
            s.push_str(zipf(rng, vocab));
        }
    }
    s
}

/// One generated markdown file of about 5 KB.
fn document(rng: &mut Rng, vocab: &Vocab, i: usize) -> String {
    let mut out = String::with_capacity(6_000);
    let title = sentence(rng, vocab, 2, 3);
    if i.is_multiple_of(3) {
        out.push_str(&format!("---\ntitle: {title}\ntags: [{}, {}]\n---\n", zipf(rng, vocab), zipf(rng, vocab)));
    }
    out.push_str(&format!("# {title}\n\n{}.\n\n", sentence(rng, vocab, 30, 0)));
    for _ in 0..3 + rng.below(4) {
        out.push_str(&format!("## {}\n\n", sentence(rng, vocab, 1, 3)));
        for _ in 0..1 + rng.below(3) {
            out.push_str(&format!("{}.\n\n", sentence(rng, vocab, 40, 80)));
        }
        match rng.below(4) {
            0 => {
                for _ in 0..3 {
                    out.push_str(&format!("- {}\n", sentence(rng, vocab, 4, 8)));
                }
                out.push('\n');
            }
            1 => {
                out.push_str(&format!("```sh\n# {}\nrun {} --{}\n```\n\n", sentence(rng, vocab, 4, 0), zipf(rng, vocab), zipf(rng, vocab)))
            }
            2 => out.push_str(&format!("### {}\n\n{}.\n\n", sentence(rng, vocab, 2, 0), sentence(rng, vocab, 30, 40))),
            _ => {}
        }
    }
    out
}

/// Writes `n` files under `dir` (100 folders); returns their total size.
fn generate(dir: &Path, n: usize, vocab: &Vocab) -> u64 {
    let mut rng = Rng(42);
    let mut total = 0;
    for i in 0..n {
        let p = dir.join(format!("area-{:02}/doc-{i:05}.md", i % 100));
        if i < 100 {
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        }
        let text = document(&mut rng, vocab, i);
        total += text.len() as u64;
        std::fs::write(p, text).expect("write");
    }
    total
}

/// The 1,000 varied queries: words drawn by their frequency in the text for
/// even queries, uniformly from the vocabulary for odd ones (a person looks
/// for words that tell documents apart, as often rare as common).
fn queries(n: usize, vocab: &Vocab, dir: &Path) -> Vec<(&'static str, String)> {
    let mut rng = Rng(7);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let w = |rng: &mut Rng| if i % 2 == 0 { zipf(rng, vocab).to_string() } else { vocab[rng.below(vocab.len())].clone() };
        let q = match i % 20 {
            0..=7 => ("one word", w(&mut rng)),
            8..=13 => ("two words", format!("{} {}", w(&mut rng), w(&mut rng))),
            14..=15 => ("three words", format!("{} {} {}", w(&mut rng), w(&mut rng), w(&mut rng))),
            16..=17 => {
                // Two neighbouring words of a real file, as a phrase.
                let f = rng.below(1000);
                let text = std::fs::read_to_string(dir.join(format!("area-{:02}/doc-{f:05}.md", f % 100))).unwrap_or_default();
                let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 3).collect();
                let at = rng.below(words.len().saturating_sub(1).max(1));
                ("phrase", format!("\"{} {}\"", words.get(at).unwrap_or(&"x"), words.get(at + 1).unwrap_or(&"y")))
            }
            18 => {
                let w = w(&mut rng);
                ("prefix", format!("{}*", &w[..w.len().min(4)]))
            }
            _ => ("no match", format!("zz{}qq", rng.next() % 1_000_000)),
        };
        out.push(q);
    }
    out
}

async fn get(d: &Daemon, path: &str) -> Value {
    let r = d.http.get(format!("{}{path}", d.base)).send().await.expect("request");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid, "VmRSS:") as f64 / 1024.0
}

/// Percent-encodes a query string value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Stops `d` (SIGTERM) and hands back its data dir.
fn stop(mut d: Daemon) -> tempfile::TempDir {
    let _ = std::process::Command::new("kill").args(["-TERM", &d.child.id().to_string()]).status();
    let _ = d.child.wait();
    std::mem::replace(&mut d._dir, tempfile::tempdir().expect("tempdir"))
}

struct Run {
    files: usize,
    mb: f64,
    index_s: f64,
    indexer_ms: f64,
    rss_peak: f64,
    rss_quiet: f64,
    rss_after_queries: f64,
    api_ms: Vec<f64>,
    lib_ms: Vec<f64>,
    by_kind: Vec<(&'static str, f64, f64, f64)>,
    edit_ms: Vec<f64>,
    db_mb: f64,
}

async fn run_once(files: usize, nq: usize, edits: usize) -> Run {
    // First start: the workspace exists once a chat has talked.
    let (d, _) = start_daemon(&[]).await;
    let r = d.http.post(format!("{}/api/v1/chat", d.base)).json(&json!({"text": "/help"})).send().await.expect("chat");
    let v: Value = r.json().await.expect("json");
    let ws = v["workspace_id"].as_str().expect("workspace").to_string();
    let dir = stop(d);
    let data = dir.path().join("data");
    let wsdir = data.join("workspaces").join(&ws);
    let vocab = vocabulary();
    let bytes = generate(&wsdir, files, &vocab);

    // Second start: the index compares itself with the disk and reads every file.
    let started = Instant::now();
    let (d, _) = start_daemon_in(dir, &[]).await;
    let pid = d.child.id();
    let mut peak: f64 = 0.0;
    let status = loop {
        peak = peak.max(rss_mib(pid));
        let st = get(&d, "/api/v1/retrieval/status").await;
        if st["documents"].as_u64() == Some(files as u64) && st["pending_changes"] == 0 && !st["last_reconcile"].is_null() {
            break st;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "indexing did not finish: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let index_s = started.elapsed().as_secs_f64();
    peak = peak.max(rss_kib(pid, "VmHWM:") as f64 / 1024.0);
    let indexer_ms = status["last_reconcile"]["elapsed_ms"].as_f64().unwrap_or(f64::NAN);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_quiet = rss_mib(pid);
    let db_mb = get(&d, "/api/v1/retrieval/status").await["database_bytes"].as_f64().unwrap_or(0.0) / 1_048_576.0;

    let qs = queries(nq, &vocab, &wsdir);
    let mut api_ms = Vec::with_capacity(nq);
    let mut kinds: std::collections::BTreeMap<&str, (Vec<f64>, usize)> = Default::default();
    for (kind, q) in &qs {
        let t = Instant::now();
        let v = get(&d, &format!("/api/v1/search?workspace_id={ws}&limit=10&q={}", enc(q))).await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        api_ms.push(ms);
        let e = kinds.entry(kind).or_default();
        e.0.push(ms);
        e.1 += v["count"].as_u64().unwrap_or(0) as usize;
    }

    let mut edit_ms = Vec::with_capacity(edits);
    for e in 0..edits {
        let word = format!("editmark{e}x{}", std::process::id());
        let f = e * 37 % files;
        let p = wsdir.join(format!("area-{:02}/doc-{f:05}.md", f % 100));
        let mut text = std::fs::read_to_string(&p).expect("read");
        text.push_str(&format!("\n## Edited\n\nNow with {word}.\n"));
        let t = Instant::now();
        std::fs::write(&p, text).expect("write");
        loop {
            let v = get(&d, &format!("/api/v1/search?workspace_id={ws}&q={word}")).await;
            if v["count"].as_u64() == Some(1) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "edit {e} never became searchable");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        edit_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    tokio::time::sleep(Duration::from_secs(25)).await;
    let rss_after_queries = rss_mib(pid);

    // The search alone: the same index file, in-process, after the daemon stops.
    let dir = stop(d);
    let data = dir.path().join("data");
    let config = agent_runtime::retrieval::RetrievalConfig {
        enabled: true,
        db_path: data.join("agent-runtime/retrieval.sqlite"),
        exclude: Vec::new(),
        max_file_bytes: 2 * 1024 * 1024,
        reconcile_every: None,
    };
    // `BENCH_RET_KEEP=<dir>`: the index file and the queries (kind, tab,
    // query per line) are copied there, for `BENCH_RET_INDEX` and experiments.
    if let Ok(keep) = std::env::var("BENCH_RET_KEEP") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).expect("keep dir");
        std::fs::copy(&config.db_path, keep.join("retrieval.sqlite")).expect("copy index");
        // What the daemon left in the WAL is part of the index too.
        let wal = config.db_path.with_extension("sqlite-wal");
        if wal.exists() {
            std::fs::copy(&wal, keep.join("retrieval.sqlite-wal")).expect("copy the index's WAL");
        }
        let lines: String = qs.iter().map(|(k, q)| format!("{k}\t{q}\n")).collect();
        std::fs::write(keep.join("queries.tsv"), format!("{ws}\n{lines}")).expect("write queries");
    }
    let r = agent_runtime::retrieval::Retrieval::start(&config, &data.join("workspaces")).expect("open index");
    // `BENCH_RET_BROAD`: the in-process figure with another broad-query threshold.
    if let Some(n) = std::env::var("BENCH_RET_BROAD").ok().and_then(|v| v.parse().ok()) {
        r.set_broad(n);
    }
    let wid = agent_runtime::domain::WorkspaceId::from_string(ws.clone());
    let mut lib_ms = Vec::with_capacity(nq);
    for (_, q) in &qs {
        let t = Instant::now();
        let _ = r.search(&wid, q, 10).await.expect("search");
        lib_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let by_kind = kinds
        .into_iter()
        .map(|(k, (mut v, hits))| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            (k, percentile(&v, 0.5), percentile(&v, 0.99), hits as f64 / n as f64)
        })
        .collect();
    drop(r);
    drop(dir);
    Run {
        files,
        mb: bytes as f64 / 1e6,
        index_s,
        indexer_ms,
        rss_peak: peak,
        rss_quiet,
        rss_after_queries,
        api_ms,
        lib_ms,
        by_kind,
        edit_ms,
        db_mb,
    }
}

/// `BENCH_RET_INDEX=<dir>` (kept by `BENCH_RET_KEEP`): the in-process
/// query figures alone, on that index file, `runs` passes, by kind.
async fn queries_only(dir: &Path, runs: usize) {
    let text = std::fs::read_to_string(dir.join("queries.tsv")).expect("queries.tsv");
    let mut lines = text.lines();
    let ws = lines.next().expect("workspace line").to_string();
    let qs: Vec<(String, String)> = lines.filter_map(|l| l.split_once('\t')).map(|(k, q)| (k.to_string(), q.to_string())).collect();
    let empty = tempfile::tempdir().expect("tempdir");
    let config = agent_runtime::retrieval::RetrievalConfig {
        enabled: true,
        db_path: dir.join("retrieval.sqlite"),
        exclude: Vec::new(),
        max_file_bytes: 2 * 1024 * 1024,
        reconcile_every: None,
    };
    let r = agent_runtime::retrieval::Retrieval::start(&config, empty.path()).expect("open index");
    // `BENCH_RET_CACHE_KIB`: each reader's page cache (the default's A/B).
    if let Some(kib) = std::env::var("BENCH_RET_CACHE_KIB").ok().and_then(|v| v.parse().ok()) {
        r.set_reader_cache_kib(kib);
    }
    let wid = agent_runtime::domain::WorkspaceId::from_string(ws);
    let mut all: Vec<f64> = Vec::new();
    let mut kinds: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut hits = 0;
    for _ in 0..runs {
        for (k, q) in &qs {
            let t = Instant::now();
            hits += r.search(&wid, q, 10).await.expect("search").len();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            all.push(ms);
            kinds.entry(k.clone()).or_default().push(ms);
        }
    }
    let show = |label: &str, v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        println!(
            "| {label} | p50 {:.2} ms, p90 {:.2}, p99 {:.2}, max {:.2} | {} |",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99),
            percentile(v, 1.0),
            v.len()
        );
    };
    show("all queries, in-process", &mut all);
    for (k, v) in &mut kinds {
        show(k, v);
    }
    println!("results per query: {:.2}", hits as f64 / (qs.len() * runs) as f64);
}

/// Runs the retrieval figures `runs` times and prints the medians.
pub async fn bench(runs: usize) {
    if let Ok(dir) = std::env::var("BENCH_RET_INDEX") {
        return queries_only(Path::new(&dir), runs).await;
    }
    let files = env_usize("BENCH_RET_FILES", 10_000);
    let nq = env_usize("BENCH_RET_QUERIES", 1_000);
    let edits = env_usize("BENCH_RET_EDITS", 20);
    let mut all = Vec::new();
    for i in 0..runs {
        let r = run_once(files, nq, edits).await;
        eprintln!(
            "run {i}: index {:.2} s (indexer {:.0} ms), peak {:.1} MiB, quiet {:.1}, after queries {:.1}",
            r.index_s, r.indexer_ms, r.rss_peak, r.rss_quiet, r.rss_after_queries
        );
        all.push(r);
    }
    let m = |f: &dyn Fn(&Run) -> f64| median(all.iter().map(f).collect());
    let each = |f: &dyn Fn(&Run) -> f64| all.iter().map(f).map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(", ");
    let pct = |f: &dyn Fn(&Run) -> &Vec<f64>, p: f64| {
        median(
            all.iter()
                .map(|r| {
                    let mut v = f(r).clone();
                    v.sort_by(f64::total_cmp);
                    percentile(&v, p)
                })
                .collect(),
        )
    };
    let r0 = &all[0];
    println!("| workspace | {} files, {:.1} MB of markdown; index file {:.1} MiB | {runs} |", r0.files, r0.mb, m(&|r| r.db_mb));
    println!(
        "| full index at start (start → all indexed, status polled) | {:.2} s (runs: {}); the indexer's own time {:.0} ms | {runs} |",
        m(&|r| r.index_s),
        each(&|r| r.index_s),
        m(&|r| r.indexer_ms)
    );
    println!(
        "| RSS while indexing (peak of 50 ms samples and VmHWM) | {:.1} MiB (runs: {}) | {runs} |",
        m(&|r| r.rss_peak),
        each(&|r| r.rss_peak)
    );
    println!("| RSS quiet, 5 s after the index settled | {:.1} MiB (runs: {}) | {runs} |", m(&|r| r.rss_quiet), each(&|r| r.rss_quiet));
    println!(
        "| RSS quiet, 25 s after the queries and edits | {:.1} MiB (runs: {}) | {runs} |",
        m(&|r| r.rss_after_queries),
        each(&|r| r.rss_after_queries)
    );
    let latency = |label: String, f: &dyn Fn(&Run) -> &Vec<f64>| {
        let [p50, p90, p99, max] = [0.5, 0.9, 0.99, 1.0].map(|p| pct(f, p));
        println!("| {label} | p50 {p50:.2} ms, p90 {p90:.2}, p99 {p99:.2}, max {max:.2} | {runs} |");
    };
    latency(format!("query, in-process on the index file ({nq} varied queries)"), &|r| &r.lib_ms);
    latency("query through GET /api/v1/search (mTLS, kept alive)".into(), &|r| &r.api_ms);
    for (k, p50, p99, hits) in &r0.by_kind {
        println!("| — {k} (run 1, API) | p50 {p50:.2} ms, p99 {p99:.2}; {hits:.1} results on average | 1 |");
    }
    let edit = |p: f64| pct(&|r| &r.edit_ms, p);
    println!(
        "| edited file searchable: write → found ({edits} edits; the 500 ms debounce included) | p50 {:.0} ms, p99 {:.0} → after the debounce p50 {:.0} ms, p99 {:.0} | {runs} |",
        edit(0.5),
        edit(0.99),
        edit(0.5) - 500.0,
        edit(0.99) - 500.0
    );
}
