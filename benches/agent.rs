//! `BENCH_ONLY=agent`: the agent loop's numbers (issue 18) against a
//! scripted model that answers at once, so every figure is the runtime's own:
//! - **in-process**: `BENCH_AGENT_TURNS` (500) `Agent::chat_turn`s on a real
//!   store, prompt builder, tools and markdown index over `BENCH_AGENT_FILES`
//!   (300) generated files, each of `BENCH_AGENT_STEPS` (5) tool steps
//!   (`search_workspace`, `open_document` on its first hit, `list_files`,
//!   `read_file`, `write_file`) and an answer, with 6 remembered exchanges;
//!   per step = (turn wall − the model's own time) / model calls. Then apart:
//!   the prompt assembly and its layers, turns calling an unknown tool (the
//!   loop without tools), `turn::run` without prompt or step records, and one
//!   `record_step` write;
//! - **through the release binary** over mutual TLS: `BENCH_AGENT_CONCURRENT`
//!   (200) free-text `POST /api/v1/chat` at once against a scripted
//!   OpenAI-compatible server in this process (telling conversations apart by
//!   their `role: tool` messages), each chat in its own workspace of
//!   `BENCH_AGENT_HTTP_FILES` (20) files, `BENCH_AGENT_ROUNDS` (2) rounds per
//!   daemon: completed, turns/s, latency, CPU, memory before, at peak (10 ms
//!   samples) and after each round, and the recorded step outcomes.
//!
//! `BENCH_AGENT_PART` = `loop` or `http` runs one half.

use super::{Daemon, SETTLE, cpu_secs, env_usize, median, percentile, quiesce, rss_kib, start_daemon, start_daemon_in};
use agent_runtime::BoxFuture;
use agent_runtime::actions::Requester;
use agent_runtime::agent::tools::{Registry, ToolEnv, TurnKind};
use agent_runtime::agent::turn::{self, NoSink, Stop, TurnRequest};
use agent_runtime::agent::{
    Agent, AgentParts, ChatRequest, ChatResponse, ChatTurn, Llm, LlmError, LlmProvider, Message, PromptBuilder, ToolCall,
};
use agent_runtime::clock::{SharedClock, SystemClock};
use agent_runtime::config::{Config, EnvSource};
use agent_runtime::domain::{ChatKind, ChatRef, Context, Inbound, MessageKind, Role, TraceId};
use agent_runtime::retrieval::Retrieval;
use agent_runtime::store::{NewOutbound, NewStep, Store};
use agent_runtime::workspace::Workspaces;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

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
    /// Skewed towards the start of `0..n`, as word frequencies are.
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64 * u * u) as usize).min(n - 1)
    }
}

const SYLLABLES: [&str; 16] = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ber", "dan", "fel", "gor", "hul", "jin", "mar", "tor"];

fn vocabulary() -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 3_000 {
        let k = 2 + rng.below(3);
        seen.insert((0..k).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect::<String>());
    }
    let mut words: Vec<String> = seen.into_iter().collect();
    words.sort();
    words
}

fn words(rng: &mut Rng, vocab: &[String], n: usize) -> String {
    (0..n).map(|_| vocab[rng.skewed(vocab.len())].as_str()).collect::<Vec<_>>().join(" ")
}

/// `files` markdown files of about 2.5 KB under `dir` (`area-NN/doc-NNNN.md`).
fn generate(dir: &Path, files: usize, vocab: &[String], seed: u64) {
    let mut rng = Rng(seed | 1);
    for i in 0..files {
        let mut text = format!("# {}\n\n{}.\n\n", words(&mut rng, vocab, 3), words(&mut rng, vocab, 30));
        for _ in 0..3 + rng.below(3) {
            let (heading, extra) = (words(&mut rng, vocab, 2), rng.below(40));
            text.push_str(&format!("## {heading}\n\n{}.\n\n", words(&mut rng, vocab, 40 + extra)));
        }
        let path = dir.join(doc_path(i));
        std::fs::create_dir_all(path.parent().expect("a file path has a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write doc");
    }
}

fn doc_path(i: usize) -> String {
    format!("area-{:02}/doc-{i:04}.md", i % 10)
}

/// The `i`th chat message: a question about two common words.
fn message(vocab: &[String], i: usize) -> String {
    let mut rng = Rng(0x5151_0000 + i as u64);
    let (a, b) = (&vocab[rng.skewed(300)], &vocab[rng.skewed(300)]);
    format!("What do my notes say about {a} and {b}? Summarise them into notes for me.")
}

/// The scripted model's next move at step `k` of a turn (`k` tool results
/// so far): `Some((tool, arguments))`, or `None` to answer. The first tool
/// result (the search) names the document it opens and reads, as a model would.
fn next_move(k: usize, steps: usize, message: &str, search: Option<&str>, unknown: bool) -> Option<(String, Value)> {
    if k >= steps {
        return None;
    }
    if unknown {
        return Some(("no_such_tool".into(), json!({"step": k})));
    }
    // The search result's first line: `1. area-03/doc-0042.md#2 — Heading (lines 5–9)`.
    let hit = search
        .and_then(|s| s.lines().find_map(|l| l.trim().strip_prefix("1. ")))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("area-00/doc-0000.md");
    let path = hit.split('#').next().unwrap_or(hit);
    let folder = path.rsplit_once('/').map_or(".", |(d, _)| d);
    let slot = message.len() % 8;
    Some(match k % 5 {
        0 => ("search_workspace".into(), json!({"query": message})),
        1 => ("open_document".into(), json!({"target": hit})),
        2 => ("list_files".into(), json!({"path": folder})),
        3 => ("read_file".into(), json!({"path": path, "max_bytes": 4096})),
        _ => (
            "write_file".into(),
            json!({"path": format!("notes/answer-{slot}.md"), "content": format!("# Notes\n\n{message}\n\nFrom {hit}.\n")}),
        ),
    })
}

const ANSWER: &str = "Done: I searched, read the best document and wrote my notes.";

/// An in-process model answering from [`next_move`] at once; counts its own time.
struct Scripted {
    steps: usize,
    unknown: AtomicBool,
    nanos: AtomicU64,
}

impl LlmProvider for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn model(&self) -> &str {
        "scripted-model"
    }
    fn complete<'a>(&'a self, req: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        let started = Instant::now();
        let k = req.messages.iter().filter(|m| matches!(m, Message::Tool { .. })).count();
        let search = req.messages.iter().find_map(|m| if let Message::Tool { content, .. } = m { Some(content.as_str()) } else { None });
        let user = req.messages.iter().rev().find_map(|m| if let Message::User { text } = m { Some(text.as_str()) } else { None });
        let mv = next_move(k, self.steps, user.unwrap_or(""), search, self.unknown.load(Ordering::Relaxed));
        let (text, calls) = match mv {
            Some((name, args)) => (String::new(), vec![ToolCall { id: format!("call_{k}"), name, arguments: args.to_string() }]),
            None => (ANSWER.to_string(), Vec::new()),
        };
        let r = ChatResponse { text, calls, model: "scripted-model".into(), prompt_tokens: Some(500), completion_tokens: Some(20) };
        self.nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Box::pin(async move { Ok(r) })
    }
}

/// The in-process agent over a generated workspace.
struct Bed {
    _dir: tempfile::TempDir,
    agent: Agent,
    prompts: PromptBuilder,
    retrieval: Retrieval,
    store: Store,
    clock: SharedClock,
    ctx: Context,
    model: Arc<Scripted>,
    wsdir: std::path::PathBuf,
    vocab: Vec<String>,
}

async fn bed(files: usize, steps: usize) -> Bed {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, prompts_dir) = (dir.path().join("data"), dir.path().join("context"));
    std::fs::create_dir_all(&prompts_dir).expect("mkdir");
    // Global prompt files of a realistic size; the workspace and context ones are absent (each still looked for).
    std::fs::write(prompts_dir.join("SYSTEM_PROMPT.md"), "You are the team's assistant. Be brief and precise.\n".repeat(20))
        .expect("write");
    std::fs::write(prompts_dir.join("SOUL.md"), "Calm, factual, kind.\n".repeat(20)).expect("write");
    let path = |p: &Path| p.display().to_string();
    let src = EnvSource::from_pairs([
        ("AGENT_RUNTIME_DATA_DIR", path(&data)),
        ("AGENT_RUNTIME_SYSTEM_PROMPT_GLOBAL_FILE", path(&prompts_dir.join("SYSTEM_PROMPT.md"))),
        ("AGENT_RUNTIME_SOUL_GLOBAL_FILE", path(&prompts_dir.join("SOUL.md"))),
    ]);
    let config = Config::read(&src).config;
    for p in [&config.paths.db_path, &config.retrieval.db_path] {
        std::fs::create_dir_all(p.parent().expect("a file path has a parent")).expect("mkdir");
    }
    let store = Store::open(&config.paths.db_path).expect("store");
    let clock: SharedClock = Arc::new(SystemClock);
    let chat = ChatRef::new("api", "agent-bench").expect("chat");
    let ctx = store.ensure_context(&chat, "Bench", clock.now_ms()).await.expect("context");
    let workspaces = Workspaces::new(config.paths.workspace_root.clone());
    let wsdir = workspaces.dir(&ctx.workspace_id);
    let vocab = vocabulary();
    generate(&wsdir, files, &vocab, 7);
    let retrieval = Retrieval::start(&config.retrieval, &config.paths.workspace_root).expect("retrieval");
    let summary = retrieval.reconcile(vec![ctx.workspace_id.clone()], None, false).await.expect("reconcile");
    assert_eq!(summary.indexed, files, "every generated file is indexed");
    seed_history(&store, &clock, &ctx, &vocab).await;
    let model = Arc::new(Scripted { steps, unknown: AtomicBool::new(false), nanos: AtomicU64::new(0) });
    let provider: Arc<dyn LlmProvider> = model.clone();
    let llm = Llm::new(Ok(provider), store.clone(), clock.clone());
    let prompts = PromptBuilder::new(config.prompts.clone(), &config.llm, workspaces.clone());
    let mut limits = config.agent;
    limits.chat.max_steps = limits.chat.max_steps.max(steps as u32 + 1);
    limits.chat.max_tool_calls = limits.chat.max_tool_calls.max(steps as u32);
    let agent = Agent::new(AgentParts {
        llm,
        prompts: prompts.clone(),
        registry: Registry::builtin(),
        store: store.clone(),
        workspaces,
        retrieval: Some(retrieval.clone()),
        orchestrator: None,
        desk: None,
        clock: clock.clone(),
        limits,
    });
    Bed { _dir: dir, agent, prompts, retrieval, store, clock, ctx, model, wsdir, vocab }
}

/// Six earlier exchanges, so every turn is given the full remembered history.
async fn seed_history(store: &Store, clock: &SharedClock, ctx: &Context, vocab: &[String]) {
    for i in 0..6 {
        let trace = TraceId::random();
        let msg = Inbound {
            chat: ctx.chat.clone(),
            from_user_id: "u1".into(),
            display_name: "Bench".into(),
            text: message(vocab, 10_000 + i),
            kind: ChatKind::Private,
            mentioned: false,
            dedupe_key: format!("seed-{i}"),
            trace_id: trace.clone(),
            meta: Default::default(),
        };
        store.record_inbound(&msg, clock.now_ms()).await.expect("inbound");
        let reply = NewOutbound {
            chat: ctx.chat.clone(),
            kind: MessageKind::Reply,
            body: format!("{ANSWER} {}", "(earlier details) ".repeat(10)),
            task_id: None,
            trace_id: Some(trace),
            options: Default::default(),
            preview: None,
        };
        store.enqueue_outbound(reply, clock.now_ms()).await.expect("reply");
    }
}

#[derive(Default)]
struct Turns {
    /// µs per model call, the model's own time taken out.
    per_step: Vec<f64>,
    /// ms per turn, the same.
    per_turn: Vec<f64>,
    model_calls: usize,
    /// Tool steps by outcome, and stops other than an answer.
    outcomes: BTreeMap<String, usize>,
}

/// `n` turns from message `first`: `Agent::chat_turn` as the gateway calls it, or (`bare`)
/// `turn::run` with the prompt and history made beforehand and no step record.
async fn run_turns(b: &Bed, n: usize, first: usize, bare: bool, unknown: bool) -> Turns {
    b.model.unknown.store(unknown, Ordering::Relaxed);
    let registry = Registry::builtin();
    let mut out = Turns::default();
    for i in first..first + n {
        let text = message(&b.vocab, i);
        let trace = TraceId::random();
        let env = ToolEnv {
            context: b.ctx.clone(),
            workspace_dir: b.wsdir.clone(),
            role: Role::Member,
            actor: "u1".into(),
            requester: Requester { name: "user:u1".into(), user_id: None },
            tell_origin: true,
            desk: None,
            admit_task: None,
            kind: TurnKind::Chat,
            trace_id: trace.clone(),
            store: b.store.clone(),
            retrieval: Some(b.retrieval.clone()),
            orchestrator: None,
            clock: b.clock.clone(),
        };
        let prompt =
            if bare { Some((b.agent.system_prompt(&b.ctx, Some(&text)).await, b.agent.history(&b.ctx, &trace).await)) } else { None };
        let model_before = b.model.nanos.load(Ordering::Relaxed);
        let started = Instant::now();
        let outcome = match prompt {
            None => {
                let requester = Requester { name: "user:u1".into(), user_id: None };
                let t = ChatTurn {
                    ctx: &b.ctx,
                    role: Some(Role::Member),
                    actor: "u1",
                    requester,
                    text: &text,
                    trace: &trace,
                    admit_task: None,
                };
                b.agent.chat_turn(t).await
            }
            Some((system, history)) => {
                let req = TurnRequest {
                    system,
                    history,
                    input: Some(text.clone()),
                    limits: turn::Limits { max_steps: 50, max_tool_calls: 100, ..turn::Limits::CHAT },
                    env: &env,
                    cancel: CancellationToken::new(),
                    task: None,
                    sink: &NoSink,
                };
                turn::run(b.agent.llm(), &registry, req).await
            }
        };
        let wall = started.elapsed().as_secs_f64();
        let model = (b.model.nanos.load(Ordering::Relaxed) - model_before) as f64 / 1e9;
        let calls = outcome.steps.iter().filter(|s| s.kind == "model").count().max(1);
        out.model_calls += calls;
        out.per_turn.push((wall - model) * 1e3);
        out.per_step.push((wall - model) * 1e6 / calls as f64);
        for s in outcome.steps.iter().filter(|s| s.kind == "tool") {
            *out.outcomes.entry(format!("{}:{}", s.tool.as_deref().unwrap_or("?"), s.outcome)).or_default() += 1;
        }
        if outcome.stop != Stop::Answered {
            *out.outcomes.entry(format!("stop:{:?}", outcome.stop)).or_default() += 1;
        }
    }
    out
}

/// p50, p90, p99 and mean of `v`.
fn dist(mut v: Vec<f64>) -> [f64; 4] {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    [percentile(&v, 0.5), percentile(&v, 0.9), percentile(&v, 0.99), mean]
}

/// One in-process run: each figure as [p50, p90, p99, mean].
#[derive(Default)]
struct LoopRun {
    figures: BTreeMap<&'static str, [f64; 4]>,
    outcomes: BTreeMap<String, usize>,
    calls_per_turn: f64,
}

async fn loop_once(files: usize, n: usize, steps: usize) -> LoopRun {
    let b = bed(files, steps).await;
    let mut r = LoopRun::default();
    // Warm up: page cache, index readers, prepared statements.
    run_turns(&b, 30, 1_000_000, false, false).await;
    let full = run_turns(&b, n, 0, false, false).await;
    r.calls_per_turn = full.model_calls as f64 / n as f64;
    r.outcomes = full.outcomes;
    r.figures.insert("step", dist(full.per_step));
    r.figures.insert("turn", dist(full.per_turn));
    let unknown = run_turns(&b, n, 0, false, true).await;
    r.figures.insert("step_unknown", dist(unknown.per_step));
    r.figures.insert("turn_unknown", dist(unknown.per_turn));
    let bare = run_turns(&b, n, 0, true, false).await;
    r.figures.insert("turn_bare", dist(bare.per_turn));
    let bare_unknown = run_turns(&b, n, 0, true, true).await;
    r.figures.insert("turn_bare_unknown", dist(bare_unknown.per_turn));

    let (mut system, mut history, mut both, mut instr, mut search, mut record) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let us = |t: Instant| t.elapsed().as_secs_f64() * 1e6;
    for i in 0..n {
        let text = message(&b.vocab, i);
        let trace = TraceId::random();
        let t = Instant::now();
        let s = b.agent.system_prompt(&b.ctx, Some(&text)).await;
        let mid = us(t);
        let h = b.agent.history(&b.ctx, &trace).await;
        let all = us(t);
        assert!(s.contains("Workspace documents") && h.len() == 12, "the prompt has its retrieval layer and 6 exchanges");
        system.push(mid);
        history.push(all - mid);
        both.push(all);
        let t = Instant::now();
        b.prompts.system_prompt(&b.ctx).await;
        instr.push(us(t));
        let t = Instant::now();
        let _ = b.retrieval.search(&b.ctx.workspace_id, &text, 3).await;
        search.push(us(t));
        let step = NewStep {
            task_id: None,
            context_id: b.ctx.id.clone(),
            trace_id: trace,
            seq: 1,
            kind: "tool".into(),
            tool: Some("read_file".into()),
            arguments: Some(r#"{"path":"area-00/doc-0000.md"}"#.into()),
            outcome: "ok".into(),
            detail: None,
            duration_ms: 0,
            output_bytes: 2000,
        };
        let t = Instant::now();
        b.store.record_step(step, b.clock.now_ms()).await.expect("record step");
        record.push(us(t));
    }
    for (k, v) in
        [("system", system), ("history", history), ("prompt", both), ("instructions", instr), ("search", search), ("record", record)]
    {
        r.figures.insert(k, dist(v));
    }
    b.retrieval.close();
    b.store.close();
    r
}

async fn loop_bench(runs: usize) {
    let (files, n, steps) = (env_usize("BENCH_AGENT_FILES", 300), env_usize("BENCH_AGENT_TURNS", 500), env_usize("BENCH_AGENT_STEPS", 5));
    let mut all = Vec::new();
    for i in 0..runs {
        let r = loop_once(files, n, steps).await;
        let s = r.figures["step"];
        eprintln!("agent loop run {i}: per step p50 {:.0} µs, p99 {:.0} µs; tool outcomes {:?}", s[0], s[2], r.outcomes);
        all.push(r);
    }
    // The median over runs of each run's figure; `ms`: shown in ms (else µs).
    let m = |k: &str, i: usize| median(all.iter().map(|r| r.figures[k][i]).collect());
    let row = |label: &str, k: &str, ms: bool| {
        let (d, unit) = if ms { (2, "ms") } else { (0, "µs") };
        let each: Vec<String> = all.iter().map(|r| format!("{:.d$}", r.figures[k][0])).collect();
        let [p50, p90, p99, mean] = [0, 1, 2, 3].map(|i| m(k, i));
        println!(
            "| {label} | p50 {p50:.d$} {unit}, p90 {p90:.d$}, p99 {p99:.d$}; mean {mean:.d$} (p50 runs: {}) | {runs} |",
            each.join(", ")
        );
    };
    let calls = median(all.iter().map(|r| r.calls_per_turn).collect());
    println!(
        "| in-process workspace | {files} markdown files (~2.5 KB each, indexed); 6 remembered exchanges; {n} turns per set; {calls:.1} model calls per turn | {runs} |"
    );
    let label =
        format!("**loop overhead per step** (`Agent::chat_turn`, {steps} tool steps + answer; turn wall − model time, / model calls)");
    row(&label, "step", false);
    println!("|   → target ≤ 1 ms p50 | {} ({:.2} ms) | {runs} |", super::verdict(m("step", 0) <= 1000.0), m("step", 0) / 1000.0);
    for (label, k, ms) in [
        ("whole chat turn (same turns)", "turn", true),
        ("prompt assembly: `system_prompt(ctx, Some(msg))` + `history` (once per turn)", "prompt", false),
        ("— system prompt (defaults, prompt files, override, skills, time, retrieval)", "system", false),
        ("— — defaults + prompt files + override (`PromptBuilder::system_prompt`: 6 prompt files looked for)", "instructions", false),
        ("— — retrieval layer's search alone (3 hits)", "search", false),
        ("— history (6 exchanges from the store)", "history", false),
        ("loop without tools: same turns, every call to an unknown tool, per step", "step_unknown", false),
        ("— per turn", "turn_unknown", true),
        ("`turn::run` with real tools, no prompt assembly, no step records, per turn", "turn_bare", true),
        ("`turn::run` with unknown tools, no prompt assembly, no step records, per turn", "turn_bare_unknown", true),
        ("one `record_step` write (the store's writer round trip)", "record", false),
    ] {
        row(label, k, ms);
    }
    // Where a turn's time goes, from the means (means add up; percentiles do not).
    let (full, prompt, bare, bare_unknown) = (m("turn", 3), m("prompt", 3) / 1e3, m("turn_bare", 3), m("turn_bare_unknown", 3));
    let records = full - prompt - bare;
    let tools = bare - bare_unknown;
    println!(
        "| where a turn's {full:.2} ms go (means) | prompt assembly {prompt:.2} ms ({:.0}%), step records {records:.2} ms ({:.0}%; {} rows), tools {tools:.2} ms ({:.0}%), loop + usage rows {bare_unknown:.2} ms ({:.0}%) | {runs} |",
        100.0 * prompt / full,
        100.0 * records / full,
        steps * 2 + 1,
        100.0 * tools / full,
        100.0 * bare_unknown / full
    );
    let outcomes: Vec<String> = all[0].outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("| tool outcomes (run 1, {n} turns) | {} | 1 |", outcomes.join(", "));
}

/// The scripted OpenAI-compatible server: per conversation (told apart by
/// its `role: tool` messages) [`next_move`]'s calls, then [`ANSWER`].
/// Returns its base URL and counts: requests, body bytes, the largest body.
async fn fake_openai(steps: usize) -> (String, Arc<[AtomicU64; 3]>) {
    use axum::routing::post;
    let counts: Arc<[AtomicU64; 3]> = Arc::default();
    let counter = counts.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |raw: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                counter[0].fetch_add(1, Ordering::Relaxed);
                counter[1].fetch_add(raw.len() as u64, Ordering::Relaxed);
                counter[2].fetch_max(raw.len() as u64, Ordering::Relaxed);
                let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                let msgs = body["messages"].as_array().cloned().unwrap_or_default();
                let k = msgs.iter().filter(|m| m["role"] == "tool").count();
                let search = msgs.iter().find(|m| m["role"] == "tool").and_then(|m| m["content"].as_str());
                let user = msgs.iter().rev().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or("");
                let message = match next_move(k, steps, user, search, false) {
                    Some((name, args)) => json!({"role": "assistant", "content": null, "tool_calls": [
                        {"id": format!("call_{k}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}),
                    None => json!({"role": "assistant", "content": ANSWER}),
                };
                axum::Json(json!({"id": "chatcmpl-bench", "object": "chat.completion", "model": "scripted-model",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 500, "completion_tokens": 20, "total_tokens": 520}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the scripted LLM");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1"), counts)
}

/// Stops `d` (SIGTERM) and hands back its data dir.
fn stop(mut d: Daemon) -> tempfile::TempDir {
    let _ = std::process::Command::new("kill").args(["-TERM", &d.child.id().to_string()]).status();
    let _ = d.child.wait();
    std::mem::replace(&mut d._dir, tempfile::tempdir().expect("tempdir"))
}

/// The daemon's memory at one moment: VmRSS, RssAnon (heap, stacks), RssFile (mapped files: code, SQLite's mmap) in MiB, and threads.
#[derive(Default, Clone, Copy)]
struct Mem {
    rss: f64,
    anon: f64,
    file: f64,
    threads: f64,
}

impl Mem {
    /// The higher of each figure.
    fn max(self, o: Mem) -> Mem {
        Mem { rss: self.rss.max(o.rss), anon: self.anon.max(o.anon), file: self.file.max(o.file), threads: self.threads.max(o.threads) }
    }
}

fn mem(pid: u32) -> Mem {
    let k = |f| rss_kib(pid, f) as f64 / 1024.0;
    Mem { rss: k("VmRSS:"), anon: k("RssAnon:"), file: k("RssFile:"), threads: rss_kib(pid, "Threads:") as f64 }
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// A command through the daemon's own connection (a store change, so the
/// quiet daemon gives memory back, as it does only after changes), then [`settled`].
async fn poked(d: &Daemon) -> Mem {
    let r = d.http.post(format!("{}/api/v1/chat", d.base)).json(&json!({"text": "/help"})).send().await;
    assert!(r.is_ok_and(|r| r.status() == 200), "/help through the API");
    settled(d.child.id()).await
}

/// Waits until the daemon is quiet and its memory given back, then looks.
async fn settled(pid: u32) -> Mem {
    quiesce(&pid.to_string()).await;
    tokio::time::sleep(SETTLE).await;
    mem(pid)
}

/// One round of `n` concurrent chat turns.
#[derive(Default, Clone)]
struct Round {
    completed: usize,
    failures: BTreeMap<String, usize>,
    wall_s: f64,
    lat_ms: Vec<f64>,
    before: Mem,
    /// The highest of each figure over 10 ms samples.
    peak: Mem,
    after: Mem,
    cpu_s: f64,
}

async fn round(d: &Daemon, http: &reqwest::Client, n: usize, vocab: &[String], seq: usize) -> Round {
    let pid = d.child.id();
    let mut r = Round { before: settled(pid).await, ..Round::default() };
    let cpu0 = cpu_secs(&pid.to_string());
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, before) = (done.clone(), r.before);
        tokio::spawn(async move {
            let mut peak = before;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(mem(pid));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak
        })
    };
    let url = format!("{}/api/v1/chat", d.base);
    let started = Instant::now();
    let joins: Vec<_> = (0..n)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            let body = json!({"external_id": format!("agent-bench-{i}"), "text": message(vocab, seq * n + i)});
            tokio::spawn(async move {
                let t = Instant::now();
                let res = match http.post(&url).json(&body).send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        let v: Value = resp.json().await.unwrap_or(Value::Null);
                        match v["reply"].as_str() {
                            Some(ANSWER) if status == 200 => Ok(()),
                            other => Err(format!("{status}: {}", other.unwrap_or("(no reply)").chars().take(80).collect::<String>())),
                        }
                    }
                    Err(e) => Err(format!("request: {}", chain(&e))),
                };
                (t.elapsed().as_secs_f64() * 1e3, res)
            })
        })
        .collect();
    for j in joins {
        let (ms, res) = j.await.expect("request task");
        r.lat_ms.push(ms);
        match res {
            Ok(()) => r.completed += 1,
            Err(e) => *r.failures.entry(e).or_default() += 1,
        }
    }
    r.wall_s = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    r.peak = sampler.await.expect("sampler");
    r.cpu_s = quiesce(&pid.to_string()).await - cpu0;
    r.after = settled(pid).await;
    r
}

/// One daemon's figures.
struct HttpRun {
    rounds: Vec<Round>,
    /// Of `n` simultaneous new mTLS connections, how many failed.
    burst_failed: usize,
    /// Quiet: once indexed, with the rounds' connections open, once they are closed.
    indexed: Mem,
    connected: Mem,
    closed: Mem,
    steps: BTreeMap<String, u64>,
}

/// One daemon: the chats and their workspaces made, then `rounds` rounds.
async fn http_once(base_url: &str, n: usize, files: usize, rounds: usize, vocab: &[String]) -> HttpRun {
    // First start: each chat's context and workspace exist once it has talked.
    let (d, _) = start_daemon(&[]).await;
    let http = super::tls_client(&d._dir.path().join("data"), true).expect("client");
    let mut ws = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"external_id": format!("agent-bench-{i}"), "text": "/status"});
        let v: Value = http.post(format!("{}/api/v1/chat", d.base)).json(&body).send().await.expect("chat").json().await.expect("json");
        ws.push(v["workspace_id"].as_str().expect("workspace").to_string());
    }
    let dir = stop(d);
    let data = dir.path().join("data");
    for (i, w) in ws.iter().enumerate() {
        generate(&data.join("workspaces").join(w), files, vocab, 1000 + i as u64);
    }
    // Second start with the scripted model: the index reads every workspace.
    let env = [
        ("AGENT_RUNTIME_LLM_PROVIDER", "openai"),
        ("AGENT_RUNTIME_LLM_BASE_URL", base_url),
        ("AGENT_RUNTIME_LLM_MODEL", "scripted-model"),
        ("AGENT_RUNTIME_LLM_RATE_LIMIT_PER_WINDOW", "0"),
    ];
    let (d, _) = start_daemon_in(dir, &env).await;
    let http = super::tls_client(&data, true).expect("client");
    let started = Instant::now();
    loop {
        let st: Value = http.get(format!("{}/api/v1/retrieval/status", d.base)).send().await.expect("status").json().await.expect("json");
        if st["documents"].as_u64() == Some((n * files) as u64) && st["pending_changes"] == 0 && !st["last_reconcile"].is_null() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "indexing did not finish: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healthz = format!("{}/healthz", d.base);
    let concurrent = |client: &reqwest::Client, k: usize| {
        let joins: Vec<_> = (0..k).map(|_| tokio::spawn(client.get(&healthz).send())).collect();
        async move {
            let mut failed = 0;
            for j in joins {
                failed += usize::from(!matches!(j.await, Ok(Ok(r)) if r.status() == 200));
            }
            failed
        }
    };
    let indexed = poked(&d).await;
    // Open the rounds' connections 25 more at a time, so the rounds time
    // turns, not handshakes. Each request holds its connection for a while
    // (its body comes after a pause), so the pool ends with `n` distinct
    // connections; quick requests reused each other's and left the pool
    // short, and round 1 then opened dozens at once (the handshake cap's
    // evictions, seen as failed requests in some runs).
    for k in (25..n + 25).step_by(25) {
        let failed = held(&http, &format!("{}/api/v1/chat", d.base), k.min(n)).await;
        assert_eq!(failed, 0, "opening the rounds' connections");
    }
    let connected = poked(&d).await;
    let mut rs = Vec::new();
    for seq in 0..rounds {
        let r = round(&d, &http, n, vocab, seq).await;
        let (b, p, a) = (r.before, r.peak, r.after);
        eprintln!("agent http round {seq}: {}/{n} in {:.2} s; RSS {:.1} → {:.1} → {:.1} MiB", r.completed, r.wall_s, b.rss, p.rss, a.rss);
        rs.push(r);
    }
    let steps = recorded_steps(&data.join("agent-runtime/meta.sqlite"));
    drop(http);
    let closed = poked(&d).await;
    // `n` clients connecting at the same moment (a finding of its own: the handshake cap).
    let burst_failed = concurrent(&d.fresh, n).await;
    HttpRun { rounds: rs, burst_failed, indexed, connected, closed, steps }
}

/// `k` `POST /api/v1/chat` (`/help` in one warm-up chat) at once, each
/// body sent 300 ms after its request starts, so each holds its own
/// connection; how many failed.
async fn held(client: &reqwest::Client, url: &str, k: usize) -> usize {
    let joins: Vec<_> = (0..k)
        .map(|_| {
            let body = json!({"external_id": "agent-bench-warmup", "text": "/help"}).to_string();
            let slow = futures_util::stream::once(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, std::io::Error>(body)
            });
            let req = client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(reqwest::Body::wrap_stream(slow));
            tokio::spawn(async move { req.send().await.is_ok_and(|r| r.status() == 200) })
        })
        .collect();
    let mut failed = 0;
    for j in joins {
        failed += usize::from(!j.await.unwrap_or(false));
    }
    failed
}

/// The daemon's `agent_steps` by kind, tool and outcome, and its `llm_usage` rows by outcome.
fn recorded_steps(db: &Path) -> BTreeMap<String, u64> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open the daemon's store");
    let mut out = BTreeMap::new();
    for sql in [
        "SELECT kind || ':' || COALESCE(tool, '') || ':' || outcome, COUNT(*) FROM agent_steps GROUP BY 1",
        "SELECT 'llm_usage:' || outcome, COUNT(*) FROM llm_usage GROUP BY 1",
    ] {
        let mut stmt = c.prepare(sql).expect("prepare");
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).expect("query");
        out.extend(rows.flatten().map(|(k, v)| (k, v as u64)));
    }
    out
}

async fn http_bench(runs: usize) {
    let n = env_usize("BENCH_AGENT_CONCURRENT", 200);
    let (files, rounds, steps) =
        (env_usize("BENCH_AGENT_HTTP_FILES", 20), env_usize("BENCH_AGENT_ROUNDS", 2).max(1), env_usize("BENCH_AGENT_STEPS", 5));
    let (base_url, counts) = fake_openai(steps).await;
    let vocab = vocabulary();
    let mut all = Vec::new();
    for _ in 0..runs {
        all.push(http_once(&base_url, n, files, rounds, &vocab).await);
    }
    // "median (runs: a, b, c)" of a figure of each run.
    let fig = |f: &dyn Fn(&HttpRun) -> f64, digits: usize| {
        let each: Vec<String> = all.iter().map(|r| format!("{:.digits$}", f(r))).collect();
        format!("{:.digits$} (runs: {})", median(all.iter().map(f).collect()), each.join(", "))
    };
    let pct = |r: &Round, p: f64| {
        let mut v = r.lat_ms.clone();
        v.sort_by(f64::total_cmp);
        percentile(&v, p)
    };
    let model_steps = (steps + 1) as f64;
    println!(
        "| concurrent chat turns through the binary | {n} `POST /api/v1/chat` at once over mTLS (connections opened beforehand), {steps} tool steps + answer each, scripted OpenAI-compatible server on loopback; each chat its own workspace of {files} files; {rounds} rounds per daemon | {runs} |"
    );
    let [requests, bytes, largest] = counts.as_ref().each_ref().map(|c| c.load(Ordering::Relaxed));
    println!(
        "| LLM requests the daemon sent (all runs): the whole conversation and tool list each step | {requests}; body mean {:.1} KB, largest {:.1} KB | {runs} |",
        bytes as f64 / requests.max(1) as f64 / 1e3,
        largest as f64 / 1e3
    );
    for k in 0..rounds {
        let failures: BTreeMap<&String, usize> = all.iter().flat_map(|r| r.rounds[k].failures.iter()).map(|(e, c)| (e, *c)).collect();
        let failed: usize = failures.values().sum();
        let row = |what: &str, text: String| println!("| round {} — {what} | {text} | {runs} |", k + 1);
        let of = |f: &dyn Fn(&Round) -> f64, d: usize| fig(&|r| f(&r.rounds[k]), d);
        let per_turn = |r: &Round| r.cpu_s * 1e3 / n as f64;
        row("completed", format!("{} of {n}; failures in all runs: {failed} {failures:?}", of(&|r| r.completed as f64, 0)));
        row("wall time", format!("{} s", of(&|r| r.wall_s, 2)));
        let rate = |r: &Round| r.completed as f64 / r.wall_s;
        row("throughput", format!("{} turns/s = {} model steps/s", of(&rate, 0), of(&|r| rate(r) * model_steps, 0)));
        row("latency of a turn p50 / p99", format!("{} ms / {} ms", of(&|r| pct(r, 0.5), 0), of(&|r| pct(r, 0.99), 0)));
        row("daemon CPU per turn (per model step)", format!("{} ms ({} ms)", of(&per_turn, 1), of(&|r| per_turn(r) / model_steps, 2)));
        let rss = (|m: &Mem| m.rss) as fn(&Mem) -> f64;
        let figures = [("RSS MiB", rss), ("RssAnon MiB", |m| m.anon), ("RssFile MiB", |m| m.file), ("threads", |m| m.threads)];
        for (what, f) in figures {
            let text = format!("{} → {} → {}", of(&|r| f(&r.before), 1), of(&|r| f(&r.peak), 1), of(&|r| f(&r.after), 1));
            row(&format!("daemon {what} before → peak → after (quiet)"), text);
        }
        let growth = median(all.iter().map(|r| r.rounds[k].peak.rss - r.rounds[k].before.rss).collect());
        let verdicts = format!("{}, {} ({growth:.1} MiB)", super::verdict(failed == 0), super::verdict(growth <= 20.0));
        row("targets: all complete, RSS growth to peak ≤ 20 MiB", verdicts);
    }
    let quiet = |what: String, f: &dyn Fn(&HttpRun) -> Mem| {
        println!("| daemon RSS (anon) quiet: {what} | {} MiB ({} MiB) | {runs} |", fig(&|r| f(r).rss, 1), fig(&|r| f(r).anon, 1));
    };
    quiet("indexed, before any connection".into(), &|r| r.indexed);
    quiet(format!("with the {n} kept-alive client connections open (before round 1)"), &|r| r.connected);
    quiet("after the rounds, client connections closed".into(), &|r| r.closed);
    println!(
        "| {n} new mTLS connections at the same moment (`GET /healthz`, after the rounds): failed | {} | {runs} |",
        fig(&|r| r.burst_failed as f64, 0)
    );
    let shown: Vec<String> = all[all.len() - 1].steps.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("| recorded steps and usage rows (last run's daemon, all rounds) | {} | 1 |", shown.join(", "));
}

/// Runs the agent figures `runs` times each and prints the medians.
pub async fn bench(runs: usize) {
    let part = std::env::var("BENCH_AGENT_PART").unwrap_or_default();
    if part != "http" {
        loop_bench(runs).await;
    }
    if part != "loop" {
        http_bench(runs).await;
    }
}
