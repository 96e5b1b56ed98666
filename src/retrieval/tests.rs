use super::*;
use crate::workspace::ChangeKind;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: PathBuf,
    r: Retrieval,
}

fn config(db: &Path) -> RetrievalConfig {
    RetrievalConfig { enabled: true, db_path: db.to_path_buf(), exclude: Vec::new(), max_file_bytes: 4096, reconcile_every: None }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("workspaces");
    let db = dir.path().join("retrieval.sqlite");
    std::fs::create_dir_all(&root).expect("mkdir");
    let r = Retrieval::start(&config(&db), &root).expect("open");
    Fixture { _dir: dir, root, db, r }
}

fn ws(name: &str) -> WorkspaceId {
    WorkspaceId::from_string(name)
}

impl Fixture {
    fn write(&self, w: &str, rel: &str, text: &str) {
        let p = self.root.join(w).join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    async fn sync(&self, names: &[&str]) -> Summary {
        self.r.reconcile(names.iter().map(|n| ws(n)).collect(), None, false).await.expect("reconcile")
    }

    async fn paths(&self, w: &str, q: &str) -> Vec<String> {
        self.r.search(&ws(w), q, 10).await.expect("search").into_iter().map(|h| h.path).collect()
    }

    async fn change(&self, w: &str, rel: &str, kind: ChangeKind) {
        self.r.changed(vec![WorkspaceChange { workspace_id: ws(w), rel_path: rel.into(), kind }]).expect("send");
        self.r.flush().await.expect("flush");
    }
}

#[tokio::test]
async fn a_heading_match_outranks_a_passing_mention() {
    let f = fixture();
    f.write(
        "w",
        "passing.md",
        "# Notes\n\nToday I thought briefly about kubernetes among many other things: lunch, weather, trains, books.\n",
    );
    f.write("w", "guide.md", "# Operations\n\n## Kubernetes\n\nDeploy the service with a manifest and watch the rollout.\n");
    f.write("w", "titled.md", "---\ntitle: Kubernetes handbook\n---\nSome text about clusters.\n");
    f.sync(&["w"]).await;
    let hits = f.r.search(&ws("w"), "kubernetes", 10).await.expect("search");
    let order: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(order.len(), 3);
    assert_eq!(order.last(), Some(&"passing.md"), "the passing mention ranks last: {hits:#?}");
    let guide = hits.iter().find(|h| h.path == "guide.md").expect("guide");
    assert_eq!(guide.heading_path, "Operations > Kubernetes");
    assert_eq!(guide.chunk_id, "guide.md#2");
    assert_eq!((guide.line_start, guide.line_end), (3, 5));
    let passing = hits.iter().find(|h| h.path == "passing.md").expect("passing");
    assert!(passing.snippet.contains("**kubernetes**"), "{}", passing.snippet);
    assert_eq!(hits.iter().map(|h| h.rank).collect::<Vec<_>>(), [1, 2, 3]);
}

#[tokio::test]
async fn phrases_stemming_prefixes_and_exclusions() {
    let f = fixture();
    f.write("w", "a.md", "# A\n\nInstalling the runtime on Debian is quick.\n");
    f.write("w", "b.md", "# B\n\nThe quick runtime instance, on Debian too.\n");
    f.write("w", "c.md", "# C\n\nA draft about installation.\n");
    f.sync(&["w"]).await;
    let mut stem = f.paths("w", "install").await;
    stem.sort();
    assert_eq!(stem, ["a.md", "c.md"], "install finds installing and installation (porter), not instance");
    assert_eq!(f.paths("w", "\"runtime on Debian\"").await, ["a.md"], "a phrase is exact");
    let mut prefix = f.paths("w", "inst*").await;
    prefix.sort();
    assert_eq!(prefix, ["a.md", "b.md", "c.md"]);
    let mut not = f.paths("w", "inst* -draft").await;
    not.sort();
    assert_eq!(not, ["a.md", "b.md"]);
    // Every word first, then any: the document with both words leads.
    assert_eq!(f.paths("w", "quick instance").await.first().map(String::as_str), Some("b.md"));
    assert_eq!(f.paths("w", "quick instance").await.len(), 2, "any-word matches follow");
}

#[tokio::test]
async fn fts5_syntax_in_queries_never_errors() {
    let f = fixture();
    f.write("w", "a.md", "# Title\n\nnear and or not body text with title words\n");
    f.sync(&["w"]).await;
    for q in [
        "\"",
        "\"\"",
        "'",
        "*",
        "-",
        "--",
        "-title",
        "NEAR(a b)",
        "title:",
        "title:body",
        "body:*",
        "a OR",
        "AND",
        "NOT near",
        "(",
        ")",
        "{title body}: x",
        "^title",
        "+body",
        "\"unterminated",
        "a\"b\"c",
        "NEAR/2",
        "\u{0}",
        "🙂",
        "ü*",
        "text*",
        "x AND (y OR",
        "rowid = 1",
        "chunks_fts",
        "; DROP TABLE documents",
    ] {
        let r = f.r.search(&ws("w"), q, 10).await;
        assert!(r.is_ok(), "{q:?}: {r:?}");
    }
    assert_eq!(f.paths("w", "title:body").await, ["a.md"], "a column filter is two plain words");
    assert_eq!(f.paths("w", "NEAR(body text)").await, ["a.md"]);
    assert!(matches!(f.r.search(&ws("w"), " ", 10).await, Err(RetrievalError::Query(QueryError::Empty))));
}

#[tokio::test]
async fn random_text_is_never_a_syntax_error() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, TestRunner};
    let f = fixture();
    f.write("w", "a.md", "# Alpha\n\nbeta gamma \"delta\" (epsilon) *zeta*\n");
    f.sync(&["w"]).await;
    let mut runner = TestRunner::new(Config { cases: 300, ..Config::default() });
    let strategy = proptest::string::string_regex("[ -~äß\"*()^:+-]{1,40}").expect("regex");
    for _ in 0..300 {
        let q = strategy.new_tree(&mut runner).expect("value").current();
        match f.r.search(&ws("w"), &q, 5).await {
            Ok(_) | Err(RetrievalError::Query(_)) => {}
            Err(e) => panic!("{q:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn workspaces_never_see_each_others_documents() {
    let f = fixture();
    f.write("one", "notes/x.md", "# Secret plan\n\nalpha launch codes\n");
    f.write("two", "notes/x.md", "# Public plan\n\nbeta picnic list\n");
    f.sync(&["one", "two"]).await;
    assert_eq!(f.paths("one", "plan").await, ["notes/x.md"]);
    assert!(f.paths("one", "picnic").await.is_empty());
    assert!(f.paths("two", "launch codes").await.is_empty());
    assert!(f.paths("three", "plan").await.is_empty(), "an unknown workspace has nothing");
    let opened = f.r.open(&ws("two"), "notes/x.md#1", 1000).await.expect("open chunk");
    assert!(opened.content.contains("picnic") && !opened.content.contains("launch"));
    let st = f.r.status();
    let names: Vec<&str> = st.workspaces.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
}

#[tokio::test]
async fn reconcile_reads_only_what_changed_and_drops_what_is_gone() {
    let f = fixture();
    f.write("w", "a.md", "# A\n\nfirst apple\n");
    f.write("w", "b.md", "# B\n\nbanana\n");
    f.write("w", "logs/chats/t/1.md", "# chat log\n\napple\n");
    f.write("w", ".hidden/x.md", "apple\n");
    f.write("w", "notes.txt", "apple\n");
    let s = f.sync(&["w"]).await;
    assert_eq!((s.indexed, s.unchanged, s.removed), (2, 0, 0));
    assert_eq!(f.paths("w", "apple").await, ["a.md"], "only documents: no chat logs, hidden or non-markdown files");

    let s = f.sync(&["w"]).await;
    assert_eq!((s.indexed, s.unchanged), (0, 2), "nothing read again");

    // Same content, new time: hashed, not reindexed.
    let a = f.root.join("w/a.md");
    let t = std::fs::metadata(&a).expect("meta").modified().expect("mtime") + Duration::from_secs(5);
    std::fs::File::options().write(true).open(&a).expect("open").set_modified(t).expect("touch");
    let s = f.sync(&["w"]).await;
    assert_eq!((s.indexed, s.unchanged), (0, 2));

    f.write("w", "a.md", "# A\n\nsecond cherry\n");
    std::fs::remove_file(f.root.join("w/b.md")).expect("rm");
    let s = f.sync(&["w"]).await;
    assert_eq!((s.indexed, s.removed), (1, 1));
    assert!(f.paths("w", "apple").await.is_empty(), "the old text no longer matches");
    assert_eq!(f.paths("w", "cherry").await, ["a.md"]);
    assert!(f.paths("w", "banana").await.is_empty());

    // A workspace that is gone loses its documents.
    f.write("v", "z.md", "cherry\n");
    f.sync(&["w", "v"]).await;
    assert_eq!(f.paths("v", "cherry").await, ["z.md"]);
    f.sync(&["w"]).await;
    assert!(f.paths("v", "cherry").await.is_empty());

    let r = f.r.reconcile(vec![ws("w")], None, true).await.expect("rebuild");
    assert_eq!(r.indexed, 1, "a rebuild reads every file: {r:?}");
    assert_eq!(f.paths("w", "cherry").await, ["a.md"]);
}

#[tokio::test]
async fn watcher_changes_index_edit_and_remove_files_and_folders() {
    let f = fixture();
    f.sync(&["w"]).await;
    f.write("w", "n/a.md", "# A\n\nmango\n");
    f.change("w", "n/a.md", ChangeKind::Created).await;
    assert_eq!(f.paths("w", "mango").await, ["n/a.md"]);
    f.write("w", "n/a.md", "# A\n\npapaya\n");
    f.change("w", "n/a.md", ChangeKind::Modified).await;
    assert!(f.paths("w", "mango").await.is_empty());
    assert_eq!(f.paths("w", "papaya").await, ["n/a.md"]);
    // A folder arriving by rename: its files are indexed.
    f.write("w", "m/b.md", "papaya too\n");
    f.write("w", "m/deep/c.md", "papaya three\n");
    f.change("w", "m", ChangeKind::Renamed).await;
    assert_eq!(f.paths("w", "papaya").await.len(), 3);
    // A folder removed: everything under it goes (and nothing with the same prefix).
    f.write("w", "mm.md", "papaya four\n");
    f.change("w", "mm.md", ChangeKind::Created).await;
    std::fs::remove_dir_all(f.root.join("w/m")).expect("rm");
    f.change("w", "m", ChangeKind::Removed).await;
    let mut left = f.paths("w", "papaya").await;
    left.sort();
    assert_eq!(left, ["mm.md", "n/a.md"]);
    // Renamed away and in.
    std::fs::rename(f.root.join("w/n/a.md"), f.root.join("w/n/b.md")).expect("mv");
    f.r.changed(vec![
        WorkspaceChange { workspace_id: ws("w"), rel_path: "n/a.md".into(), kind: ChangeKind::Removed },
        WorkspaceChange { workspace_id: ws("w"), rel_path: "n/b.md".into(), kind: ChangeKind::Renamed },
    ])
    .expect("send");
    f.r.flush().await.expect("flush");
    let mut left = f.paths("w", "papaya").await;
    left.sort();
    assert_eq!(left, ["mm.md", "n/b.md"]);
    assert_eq!(f.r.status().pending_changes, 0);
}

#[tokio::test]
async fn large_files_are_skipped_with_a_reason_and_bad_bytes_are_indexed() {
    let f = fixture();
    f.write("w", "big.md", &format!("# Big\n\n{}", "kiwi ".repeat(2000)));
    let mut bytes = b"# Bytes\n\nlime \xff\xfe here\n".to_vec();
    bytes.extend_from_slice(b"\xc3\x28 more lime\n");
    std::fs::write(f.root.join("w/bad.md"), bytes).expect("write");
    let s = f.sync(&["w"]).await;
    assert_eq!((s.indexed, s.skipped), (1, 1), "{s:?}");
    assert!(f.paths("w", "kiwi").await.is_empty());
    assert_eq!(f.paths("w", "lime").await, ["bad.md"]);
    let st = f.r.status();
    let c = &st.workspaces[0].1;
    assert_eq!((c.documents, c.skipped, c.lossy), (2, 1, 1));
}

#[tokio::test]
async fn open_checks_paths_and_caps_what_it_returns() {
    let f = fixture();
    f.write("w", "doc.md", &format!("# Doc\n\n{}\n\n## Part\n\ntail words\n", "é".repeat(100)));
    f.write("other", "x.md", "# other secret\n");
    f.sync(&["w", "other"]).await;
    let whole = f.r.open(&ws("w"), "doc.md", 1000).await.expect("open");
    assert!(!whole.truncated && whole.content.ends_with("tail words\n"));
    let cut = f.r.open(&ws("w"), "./doc.md", 11).await.expect("open");
    assert!(cut.truncated);
    assert_eq!(cut.content, "# Doc\n\néé", "cut at a character boundary");
    let part = f.r.open(&ws("w"), "doc.md#2", 1000).await.expect("chunk");
    assert_eq!((part.heading_path.as_deref(), part.content.as_str()), (Some("Doc > Part"), "tail words"));
    for bad in ["../other/x.md", "/etc/passwd", "doc.md/../../other/x.md"] {
        assert!(matches!(f.r.open(&ws("w"), bad, 100).await, Err(RetrievalError::Path(PathError::Refused(_)))), "{bad}");
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc/passwd", f.root.join("w/passwd.md")).expect("link");
        let r = f.r.open(&ws("w"), "passwd.md", 100).await;
        assert!(matches!(r, Err(RetrievalError::Path(PathError::Refused(_)))), "{r:?}");
    }
    assert!(matches!(f.r.open(&ws("w"), "doc.md#9", 100).await, Err(RetrievalError::Path(PathError::NotFound(_)))));
    assert!(matches!(f.r.open(&ws("w"), "logs/chats/x.md", 100).await, Err(RetrievalError::Path(PathError::NotDocument(_)))));
}

#[tokio::test]
async fn an_index_of_another_version_or_a_broken_file_is_rebuilt() {
    let f = fixture();
    f.write("w", "a.md", "# A\n\nolive\n");
    f.sync(&["w"]).await;
    let (root, db) = (f.root.clone(), f.db.clone());
    f.r.close();
    let gone = f.r.changed(vec![WorkspaceChange { workspace_id: ws("w"), rel_path: "a.md".into(), kind: ChangeKind::Modified }]);
    assert!(matches!(gone, Err(RetrievalError::Unavailable(_))), "a closed index says so");
    assert_eq!(f.r.pending_changes(), 0, "refused changes are not counted as waiting");
    let c = rusqlite::Connection::open(&db).expect("open");
    c.pragma_update(None, "user_version", 99).expect("bump");
    drop(c);
    let r = Retrieval::start(&config(&db), &root).expect("reopen");
    assert!(r.status().workspaces.is_empty(), "emptied for a rebuild");
    r.reconcile(vec![ws("w")], None, false).await.expect("reconcile");
    assert_eq!(r.search(&ws("w"), "olive", 5).await.expect("search").len(), 1);
    r.close();
    for ext in ["sqlite-wal", "sqlite-shm"] {
        let _ = std::fs::remove_file(db.with_extension(ext));
    }
    std::fs::write(&db, b"this is not a database, it is garbage of some length".repeat(100)).expect("garbage");
    let r = Retrieval::start(&config(&db), &root).expect("reopen over garbage");
    r.reconcile(vec![ws("w")], None, false).await.expect("reconcile");
    assert_eq!(r.search(&ws("w"), "olive", 5).await.expect("search").len(), 1);
    assert!(db.with_extension("sqlite.broken").exists(), "the broken file is kept aside");
}

#[tokio::test]
async fn a_large_folder_moved_in_is_indexed_in_several_transactions() {
    let f = fixture();
    f.sync(&["w"]).await;
    let n = indexer::TX_FILES * 2 + 7;
    for i in 0..n {
        f.write("w", &format!("big/d{i}/f.md"), &format!("# File {i}\n\nheron number{i}\n"));
    }
    f.change("w", "big", ChangeKind::Renamed).await;
    let st = f.r.status();
    assert_eq!(st.workspaces[0].1.documents, n as u64);
    assert_eq!(st.pending_changes, 0);
    assert_eq!(f.paths("w", &format!("number{}", n - 1)).await, [format!("big/d{}/f.md", n - 1)]);
}

#[tokio::test]
async fn a_broad_query_is_ranked_among_title_and_heading_matches_first() {
    let f = fixture();
    for i in 0..6 {
        f.write("w", &format!("body{i}.md"), &format!("# Note {i}\n\nkiwi kiwi kiwi in the body {i}\n"));
    }
    f.write("w", "h1.md", "# Fruit\n\n## Kiwi\n\nabout the fruit\n");
    f.write("w", "h2.md", "---\ntitle: Kiwi notes\n---\nplain text\n");
    f.write("other", "h3.md", "# Kiwi elsewhere\n");
    f.sync(&["w", "other"]).await;
    f.r.set_broad(3);
    let two: Vec<String> = f.r.search(&ws("w"), "kiwi", 2).await.expect("search").into_iter().map(|h| h.path).collect();
    let mut sorted = two.clone();
    sorted.sort();
    assert_eq!(sorted, ["h1.md", "h2.md"], "broad: the title and heading matches, ranked");
    // Too few documents in the first tier: every section is ranked.
    let all = f.r.search(&ws("w"), "kiwi", 10).await.expect("search");
    assert_eq!(all.len(), 8, "{all:#?}");
    assert!(all.iter().all(|h| h.path != "h3.md"), "never another workspace's");
}

#[tokio::test]
async fn a_document_with_many_matching_sections_does_not_crowd_out_others() {
    let f = fixture();
    let many: String = (0..40).map(|i| format!("## Fig part {i}\n\nfig fig fig\n\n")).collect();
    f.write("w", "big.md", &format!("# Fig\n\n{many}"));
    for i in 0..3 {
        f.write("w", &format!("small{i}.md"), &format!("# Note {i}\n\none fig here among many other words\n"));
    }
    f.sync(&["w"]).await;
    let hits = f.r.search(&ws("w"), "fig", 3).await.expect("search");
    assert_eq!(hits.len(), 3, "three documents, not one: {hits:#?}");
    assert_eq!(hits[0].path, "big.md");
}

#[tokio::test]
async fn open_says_truncated_when_line_ends_shrank_the_text() {
    let f = fixture();
    f.write("w", "crlf.md", "# A\r\n\r\nline one\r\nline two\r\nline three\r\n");
    f.sync(&["w"]).await;
    let o = f.r.open(&ws("w"), "crlf.md", 20).await.expect("open");
    assert!(o.truncated, "{o:?}");
    assert!(!o.content.contains('\r'));
}

#[tokio::test]
async fn a_raised_size_limit_indexes_files_skipped_before() {
    let f = fixture();
    f.write("w", "big.md", &format!("# Big\n\n{}", "plum ".repeat(1000)));
    let s = f.sync(&["w"]).await;
    assert_eq!(s.skipped, 1);
    f.r.close();
    let mut cfg = config(&f.db);
    cfg.max_file_bytes = 1 << 20;
    let r = Retrieval::start(&cfg, &f.root).expect("reopen");
    let s = r.reconcile(vec![ws("w")], None, false).await.expect("reconcile");
    assert_eq!((s.indexed, s.skipped), (1, 0), "{s:?}");
    assert_eq!(r.search(&ws("w"), "plum", 5).await.expect("search").len(), 1);
}

#[tokio::test]
async fn a_prefix_stands_for_its_commonest_words_even_those_stemmed_twice() {
    let f = fixture();
    // `choose` is indexed as `choos`, which FTS5 would stem again to `choo`
    // if it were asked for as a word; `agreed` → `agre` → `agr`.
    f.write("w", "a.md", "# A\n\nChoose the runtime.\n");
    f.write("w", "b.md", "# B\n\nWe agreed on it.\n");
    f.write("w", "c.md", "# C\n\nchoosing nothing\n");
    // More words with one prefix than a prefix stands for: the rare one is left out.
    let many: String = (0..index::PREFIX_WORDS).map(|i| format!("zeta{i:02} ")).collect();
    for i in 0..3 {
        f.write("w", &format!("common{i}.md"), &format!("# Common {i}\n\n{many}\n"));
    }
    f.write("w", "rare.md", "# Rare\n\nzetarare\n");
    f.write("other", "a.md", "# Other\n\nChoose elsewhere.\n");
    f.sync(&["w", "other"]).await;
    let mut choos = f.paths("w", "choos*").await;
    choos.sort();
    assert_eq!(choos, ["a.md", "c.md"]);
    assert_eq!(f.paths("w", "agre*").await, ["b.md"]);
    let mut zeta = f.paths("w", "zeta*").await;
    zeta.sort();
    assert_eq!(zeta, ["common0.md", "common1.md", "common2.md"], "the {} commonest completions", index::PREFIX_WORDS);
    assert_eq!(f.paths("w", "zetara*").await, ["rare.md"], "a longer prefix reaches it");
    assert!(f.paths("w", "zzzq*").await.is_empty(), "no word with the prefix: no results, no error");
    // The highlight is made from the expanded words.
    let hits = f.r.search(&ws("w"), "choos*", 5).await.expect("search");
    assert!(hits.iter().any(|h| h.snippet.contains("**Choose**")), "{hits:#?}");
}

#[tokio::test]
async fn broad_words_only_fill_the_list_after_the_rarer_words_ranked_it() {
    let f = fixture();
    // `kiwi` in every file (broad at a threshold of 3), `quince` in two bodies.
    for i in 0..5 {
        f.write("w", &format!("body{i}.md"), &format!("# Note {i}\n\nkiwi kiwi kiwi kiwi in the body {i}\n"));
    }
    f.write("w", "title.md", "# Kiwi\n\nkiwi and more\n");
    f.write("w", "q1.md", "# Plain\n\nOne kiwi, one quince.\n");
    f.write("w", "q2.md", "# Plainer\n\nquince alone here\n");
    f.write("other", "q3.md", "# Quince kiwi elsewhere\n\nquince quince kiwi\n");
    f.sync(&["w", "other"]).await;
    f.r.set_broad(3);
    let hits = f.paths("w", "kiwi quince").await;
    assert_eq!(hits.len(), 3, "the rare word's two documents, then the broad word's title match: {hits:?}");
    let mut first = hits[..2].to_vec();
    first.sort();
    assert_eq!(first, ["q1.md", "q2.md"]);
    assert_eq!(hits[2], "title.md");
    // With the default threshold the same query ranks every section.
    f.r.set_broad(index::BROAD);
    let all = f.paths("w", "kiwi quince").await;
    assert_eq!(all.len(), 8, "{all:?}");
    let mut top = all[..2].to_vec();
    top.sort();
    assert_eq!(top, ["q1.md", "q2.md"], "the rarer word weighs most in bm25 too");
    assert!(all.iter().all(|p| p != "q3.md"), "never another workspace's");
}

#[tokio::test]
async fn breadth_is_judged_within_the_searched_workspace() {
    let f = fixture();
    // `kiwi` is in many sections of `big`, in two of `small`.
    for i in 0..8 {
        f.write("big", &format!("n{i}.md"), &format!("# Kiwi {i}\n\nkiwi\n"));
    }
    let filler = "other words ".repeat(100);
    f.write("small", "title.md", &format!("# Kiwi\n\n{filler}\n"));
    f.write("small", "title2.md", &format!("# Kiwi too\n\n{filler}\n"));
    f.write("small", "body.md", "# Plain\n\nkiwi kiwi kiwi kiwi kiwi kiwi kiwi kiwi\n");
    f.sync(&["big", "small"]).await;
    f.r.set_broad(3);
    // Not broad in `small` (3 sections), though it is in the index (11):
    // every section is ranked, and the short one full of the word leads (a
    // tier of title matches would have left it out).
    let top: Vec<String> = f.r.search(&ws("small"), "kiwi", 2).await.expect("search").into_iter().map(|h| h.path).collect();
    assert_eq!(top[0], "body.md", "{top:?}");
    let mut small = f.paths("small", "kiwi").await;
    small.sort();
    assert_eq!(small, ["body.md", "title.md", "title2.md"]);
    // Each workspace's sections are their own range of row ids: edits and
    // removals in one never move another's.
    f.write("small", "body.md", "# Plain\n\nno fruit now\n");
    f.change("small", "body.md", ChangeKind::Modified).await;
    assert_eq!(f.paths("small", "kiwi").await.len(), 2);
    assert_eq!(f.paths("big", "kiwi").await.len(), 8);
    assert!(f.paths("nobody", "kiwi").await.is_empty(), "a workspace the index never saw");
}
