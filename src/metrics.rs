//! Process metrics for `GET /metrics` (Prometheus text format 0.0.4).
//!
//! Two kinds of numbers: *counters* of what this process did (HTTP requests,
//! messages in and out per connector, LLM calls, tokens and latency), kept
//! in memory and reset by a restart as Prometheus counters may be; and
//! *gauges* of durable state (tasks by status, queue depth, outbox by status,
//! approvals pending, the database's size), read from the store at scrape
//! time so they are right after a restart too — from counters kept by the
//! writer and SQLite's page counts, never a table scan. The counters live in one process-wide registry
//! ([`metrics`]) so the places that count need no handle threaded to them.

use crate::config::ModelPrice;
use crate::store::StateCounts;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
const HTTP_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
const LLM_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const QUERY_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
const LAG_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 60.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket (not cumulative; summed when rendered).
    buckets: [u64; 10],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64; 10], secs: f64) {
        if let Some(i) = bounds.iter().position(|b| secs <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64; 10]) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, n) in bounds.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        // No labels: no braces (`name_sum 0`, not `name_sum{} 0`).
        let braced = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braced} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braced} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct LlmStats {
    calls: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    latency: Histogram,
}

/// One route's requests.
#[derive(Debug, Default)]
struct RouteStats {
    /// (method, status) → requests.
    counts: BTreeMap<(String, u16), u64>,
    latency: Histogram,
}

/// The process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// route pattern → its requests (one lock per request, and the route is
    /// copied only the first time it is seen).
    http: Mutex<BTreeMap<String, RouteStats>>,
    /// (connector, direction, outcome) → messages.
    messages: Mutex<BTreeMap<(String, &'static str, &'static str), u64>>,
    /// (provider, model, outcome) → calls, tokens, latency.
    llm: Mutex<BTreeMap<(String, String, String), LlmStats>>,
    /// Times the quiet daemon gave memory back (`memory::keep`).
    memory_releases: std::sync::atomic::AtomicU64,
    /// (queue, outcome) → events that found a bounded intake queue full.
    queue_full: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Objective runs fired, skipped, and the scheduled runs' lag.
    objectives: Mutex<ObjectiveStats>,
    /// Retrieval searches answered (their latency) and files indexed.
    retrieval: Mutex<RetrievalStats>,
    /// Admin API TLS handshakes that failed: refused, timed out.
    handshakes_failed: [std::sync::atomic::AtomicU64; 2],
    /// Rows deleted by retention, by kind, and pages given back.
    retention: Mutex<([u64; 5], u64)>,
}

#[derive(Debug, Default)]
struct RetrievalStats {
    queries: Histogram,
    indexed: u64,
}

#[derive(Debug, Default)]
struct ObjectiveStats {
    /// trigger → tasks queued.
    fired: BTreeMap<&'static str, u64>,
    /// reason → runs not fired.
    skipped: BTreeMap<&'static str, u64>,
    /// Scheduled time → task queued, for on-time (`schedule`) runs.
    lag: Histogram,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process-wide registry.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// An admin API TLS handshake failed: refused (no client certificate,
    /// one the CA did not sign, not TLS at all) or timed out.
    pub fn handshake_failed(&self, timed_out: bool) {
        self.handshakes_failed[usize::from(timed_out)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// One HTTP request answered.
    pub fn http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let Ok(mut m) = self.http.lock() else { return };
        if !m.contains_key(route) {
            m.insert(route.to_string(), RouteStats::default());
        }
        if let Some(r) = m.get_mut(route) {
            match r.counts.iter_mut().find(|((m, s), _)| m == method && *s == status) {
                Some((_, n)) => *n += 1,
                None => {
                    r.counts.insert((method.to_string(), status), 1);
                }
            }
            r.latency.observe(&HTTP_BUCKETS, elapsed.as_secs_f64());
        }
    }

    /// One message received (`inbound`) or delivered/failed (`outbound`).
    pub fn message(&self, connector: &str, direction: &'static str, outcome: &'static str) {
        if let Ok(mut m) = self.messages.lock() {
            *m.entry((connector.to_string(), direction, outcome)).or_default() += 1;
        }
    }

    /// One LLM call.
    pub fn llm_call(&self, provider: &str, model: &str, outcome: &str, prompt: u64, completion: u64, elapsed: Duration) {
        if let Ok(mut m) = self.llm.lock() {
            let s = m.entry((provider.to_string(), model.to_string(), outcome.to_string())).or_default();
            s.calls += 1;
            s.prompt_tokens += prompt;
            s.completion_tokens += completion;
            s.latency.observe(&LLM_BUCKETS, elapsed.as_secs_f64());
        }
    }

    /// An event found the bounded queue `queue` full; `outcome`: `waited`
    /// (queued once there was room) or `dropped`.
    pub fn queue_full(&self, queue: &'static str, outcome: &'static str) {
        if let Ok(mut m) = self.queue_full.lock() {
            *m.entry((queue, outcome)).or_default() += 1;
        }
    }

    /// The quiet daemon gave memory back once.
    pub fn memory_release(&self) {
        self.memory_releases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// An objective run fired (`trigger` as stored); `lag_ms` after its time.
    pub fn objective_fired(&self, trigger: &'static str, lag_ms: i64) {
        if let Ok(mut o) = self.objectives.lock() {
            *o.fired.entry(trigger).or_default() += 1;
            if trigger == "schedule" {
                o.lag.observe(&LAG_BUCKETS, lag_ms.max(0) as f64 / 1000.0);
            }
        }
    }

    /// `n` objective runs not fired, by reason (`missed`, `event_dedupe`, `event_lagged`).
    pub fn objective_skipped(&self, reason: &'static str, n: u64) {
        if let Ok(mut o) = self.objectives.lock() {
            *o.skipped.entry(reason).or_default() += n;
        }
    }

    /// A retention pass deleted these rows and gave these pages back.
    pub fn retention_pruned(&self, p: &crate::store::Pruned) {
        if let Ok(mut r) = self.retention.lock() {
            for (a, b) in r.0.iter_mut().zip(p.rows) {
                *a += b;
            }
            r.1 += p.pages_freed;
        }
    }

    fn render_retention(&self, out: &mut String) {
        let Ok(r) = self.retention.lock() else { return };
        header(
            out,
            "agent_runtime_retention_deleted_rows_total",
            "counter",
            "Rows deleted by retention, by kind (AGENT_RUNTIME_RETENTION_DAYS).",
        );
        for (kind, n) in crate::store::retention::Kind::ALL.iter().zip(r.0) {
            let _ = writeln!(out, "agent_runtime_retention_deleted_rows_total{{kind=\"{}\"}} {n}", kind.name());
        }
        header(
            out,
            "agent_runtime_retention_vacuumed_pages_total",
            "counter",
            "Database pages given back to the file system after retention.",
        );
        let _ = writeln!(out, "agent_runtime_retention_vacuumed_pages_total {}", r.1);
    }

    /// One retrieval search answered.
    pub fn retrieval_query(&self, elapsed: Duration) {
        if let Ok(mut r) = self.retrieval.lock() {
            r.queries.observe(&QUERY_BUCKETS, elapsed.as_secs_f64());
        }
    }

    /// `n` documents written to or removed from the retrieval index.
    pub fn retrieval_indexed(&self, n: u64) {
        if let Ok(mut r) = self.retrieval.lock() {
            r.indexed += n;
        }
    }

    fn render_retrieval(&self, out: &mut String) {
        let Ok(r) = self.retrieval.lock() else { return };
        header(
            out,
            "agent_runtime_retrieval_query_duration_seconds",
            "histogram",
            "Time to answer a workspace search (index lookup and snippets).",
        );
        r.queries.render(out, "agent_runtime_retrieval_query_duration_seconds", "", &QUERY_BUCKETS);
        header(
            out,
            "agent_runtime_retrieval_documents_indexed_total",
            "counter",
            "Markdown files written to or removed from the retrieval index.",
        );
        let _ = writeln!(out, "agent_runtime_retrieval_documents_indexed_total {}", r.indexed);
    }

    fn render_objectives(&self, out: &mut String) {
        let Ok(o) = self.objectives.lock() else { return };
        header(out, "agent_runtime_objective_runs_fired_total", "counter", "Objective runs whose task was queued, by trigger.");
        for (trigger, n) in &o.fired {
            let _ = writeln!(out, "agent_runtime_objective_runs_fired_total{{trigger=\"{trigger}\"}} {n}");
        }
        header(
            out,
            "agent_runtime_objective_runs_skipped_total",
            "counter",
            "Objective runs not fired: missed times skipped by the catch-up policy (recorded as runs), event runs deduplicated or lost to a lagging watcher.",
        );
        for (reason, n) in &o.skipped {
            let _ = writeln!(out, "agent_runtime_objective_runs_skipped_total{{reason=\"{reason}\"}} {n}");
        }
        header(
            out,
            "agent_runtime_objective_fire_lag_seconds",
            "histogram",
            "From an objective's scheduled time to its task being queued (on-time scheduled runs).",
        );
        o.lag.render(out, "agent_runtime_objective_fire_lag_seconds", "", &LAG_BUCKETS);
    }

    /// The counters and `gauges` in Prometheus text format.
    pub fn render(&self, gauges: &Gauges, prices: &[ModelPrice]) -> String {
        let mut out = String::with_capacity(4096);
        gauges.render(&mut out);

        header(&mut out, "agent_runtime_http_requests_total", "counter", "HTTP requests answered, by route, method and status.");
        let http = self.http.lock();
        let routes = http.as_ref().map(|m| m.iter().collect::<Vec<_>>()).unwrap_or_default();
        for (route, r) in &routes {
            for ((method, status), n) in &r.counts {
                let _ = writeln!(
                    out,
                    "agent_runtime_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                    esc(route),
                    esc(method)
                );
            }
        }
        header(&mut out, "agent_runtime_http_request_duration_seconds", "histogram", "Time to answer HTTP requests, by route.");
        for (route, r) in &routes {
            r.latency.render(&mut out, "agent_runtime_http_request_duration_seconds", &format!("route=\"{}\"", esc(route)), &HTTP_BUCKETS);
        }
        drop(routes);
        drop(http);
        header(
            &mut out,
            "agent_runtime_messages_total",
            "counter",
            "Chat messages received (inbound) and delivered or failed (outbound), by connector.",
        );
        if let Ok(m) = self.messages.lock() {
            for ((connector, direction, outcome), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "agent_runtime_messages_total{{connector=\"{}\",direction=\"{direction}\",outcome=\"{outcome}\"}} {n}",
                    esc(connector)
                );
            }
        }
        self.render_llm(&mut out, prices);
        self.render_objectives(&mut out);
        self.render_retrieval(&mut out);
        self.render_retention(&mut out);
        header(
            &mut out,
            "agent_runtime_memory_releases_total",
            "counter",
            "Times the daemon, quiet after work, dropped SQLite's caches and returned freed heap pages to the system.",
        );
        let releases = self.memory_releases.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(out, "agent_runtime_memory_releases_total {releases}");
        header(
            &mut out,
            "agent_runtime_queue_full_total",
            "counter",
            "Events from outside that found a bounded queue full, by queue and outcome (waited for room, or dropped).",
        );
        if let Ok(m) = self.queue_full.lock() {
            for ((queue, outcome), n) in m.iter() {
                let _ = writeln!(out, "agent_runtime_queue_full_total{{queue=\"{queue}\",outcome=\"{outcome}\"}} {n}");
            }
        }
        header(
            &mut out,
            "agent_runtime_admin_tls_handshakes_failed_total",
            "counter",
            "Admin API TLS handshakes that failed, by reason (refused: no client certificate, an untrusted one, or not TLS; timed_out).",
        );
        for (i, reason) in ["refused", "timed_out"].into_iter().enumerate() {
            let n = self.handshakes_failed[i].load(std::sync::atomic::Ordering::Relaxed);
            let _ = writeln!(out, "agent_runtime_admin_tls_handshakes_failed_total{{reason=\"{reason}\"}} {n}");
        }
        if let Some(kib) = crate::memory::status_kib("VmRSS:") {
            header(&mut out, "process_resident_memory_bytes", "gauge", "Resident memory of the process (VmRSS), in bytes.");
            let _ = writeln!(out, "process_resident_memory_bytes {}", kib * 1024);
        }
        out
    }

    fn render_llm(&self, out: &mut String, prices: &[ModelPrice]) {
        let Ok(m) = self.llm.lock() else { return };
        header(out, "agent_runtime_llm_calls_total", "counter", "LLM calls, by provider, model and outcome.");
        for ((p, model, outcome), s) in m.iter() {
            let _ = writeln!(
                out,
                "agent_runtime_llm_calls_total{{provider=\"{}\",model=\"{}\",outcome=\"{}\"}} {}",
                esc(p),
                esc(model),
                esc(outcome),
                s.calls
            );
        }
        header(out, "agent_runtime_llm_tokens_total", "counter", "LLM tokens, by provider, model and kind (prompt or completion).");
        let mut by_model: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
        for ((p, model, _), s) in m.iter() {
            let e = by_model.entry((p, model)).or_default();
            e.0 += s.prompt_tokens;
            e.1 += s.completion_tokens;
        }
        for ((p, model), (prompt, completion)) in &by_model {
            let labels = format!("provider=\"{}\",model=\"{}\"", esc(p), esc(model));
            let _ = writeln!(out, "agent_runtime_llm_tokens_total{{{labels},kind=\"prompt\"}} {prompt}");
            let _ = writeln!(out, "agent_runtime_llm_tokens_total{{{labels},kind=\"completion\"}} {completion}");
        }
        header(
            out,
            "agent_runtime_llm_cost_usd_total",
            "counter",
            "Estimated LLM cost in USD from AGENT_RUNTIME_LLM_PRICES (models without a price are left out).",
        );
        for ((p, model), (prompt, completion)) in &by_model {
            if let Some(price) = crate::config::price_for(prices, model) {
                let cost = price.cost(*prompt, *completion);
                let _ = writeln!(out, "agent_runtime_llm_cost_usd_total{{provider=\"{}\",model=\"{}\"}} {cost}", esc(p), esc(model));
            }
        }
        header(out, "agent_runtime_llm_call_duration_seconds", "histogram", "LLM call latency, by provider and model.");
        let mut latency: BTreeMap<(&str, &str), Histogram> = BTreeMap::new();
        for ((p, model, _), s) in m.iter() {
            let h = latency.entry((p, model)).or_default();
            for (a, b) in h.buckets.iter_mut().zip(s.latency.buckets) {
                *a += b;
            }
            h.count += s.latency.count;
            h.sum += s.latency.sum;
        }
        for ((p, model), h) in &latency {
            let labels = format!("provider=\"{}\",model=\"{}\"", esc(p), esc(model));
            h.render(out, "agent_runtime_llm_call_duration_seconds", &labels, &LLM_BUCKETS);
        }
    }
}

/// Durable-state gauges, read from the store per scrape.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Tasks, outbox rows, approvals and pairings by state.
    pub counts: StateCounts,
    /// Components by health state (from the heartbeat).
    pub health: Vec<(String, String)>,
    /// Seconds since the process started.
    pub uptime_seconds: f64,
    /// The retrieval index, when it runs.
    pub retrieval: Option<RetrievalGauges>,
    /// The database's size.
    pub database: crate::store::DbSize,
}

/// The retrieval index's size and backlog.
#[derive(Debug, Clone, Default)]
pub struct RetrievalGauges {
    /// Documents (all workspaces).
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
    /// Files recorded but not indexed (too large).
    pub skipped: u64,
    /// Changes and files waiting.
    pub pending: u64,
    /// Bytes of the index files.
    pub bytes: u64,
}

impl RetrievalGauges {
    /// From the index's status.
    pub fn of(st: &crate::retrieval::Status) -> Self {
        let sum = |f: fn(&crate::retrieval::Counts) -> u64| st.workspaces.iter().map(|(_, c)| f(c)).sum();
        Self {
            documents: sum(|c| c.documents),
            chunks: sum(|c| c.chunks),
            skipped: sum(|c| c.skipped),
            pending: st.pending_changes,
            bytes: st.database_bytes,
        }
    }

    fn render(&self, out: &mut String) {
        for (name, help, v) in [
            ("agent_runtime_retrieval_documents", "Markdown documents in the retrieval index (skipped ones included).", self.documents),
            ("agent_runtime_retrieval_chunks", "Sections (chunks) in the retrieval index.", self.chunks),
            ("agent_runtime_retrieval_skipped_documents", "Files recorded but not indexed (larger than the limit).", self.skipped),
            ("agent_runtime_retrieval_pending_changes", "Workspace changes and files waiting to be indexed.", self.pending),
            ("agent_runtime_retrieval_index_bytes", "Size of the retrieval index files (database and WAL).", self.bytes),
        ] {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
    }
}

impl Gauges {
    fn render(&self, out: &mut String) {
        header(out, "agent_runtime_up", "gauge", "1 while the runtime answers.");
        let _ = writeln!(out, "agent_runtime_up 1");
        header(out, "agent_runtime_uptime_seconds", "gauge", "Seconds since the runtime started.");
        let _ = writeln!(out, "agent_runtime_uptime_seconds {}", self.uptime_seconds);
        header(out, "agent_runtime_tasks", "gauge", "Tasks in the store, by status.");
        for status in ["queued", "running", "succeeded", "failed", "canceled"] {
            let n = self.counts.tasks.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "agent_runtime_tasks{{status=\"{status}\"}} {n}");
        }
        header(out, "agent_runtime_queue_depth", "gauge", "Queued tasks that are due now (claimable).");
        let _ = writeln!(out, "agent_runtime_queue_depth {}", self.counts.queue_depth);
        header(out, "agent_runtime_outbox_messages", "gauge", "Outbox messages, by delivery status.");
        for status in ["pending", "sent", "failed"] {
            let n = self.counts.outbox.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "agent_runtime_outbox_messages{{status=\"{status}\"}} {n}");
        }
        if let Some(r) = &self.retrieval {
            r.render(out);
        }
        for (name, help, v) in [
            ("agent_runtime_database_bytes", "Size of the database file (page_count * page_size).", self.database.file_bytes),
            (
                "agent_runtime_database_free_bytes",
                "Unused pages inside the database file (freelist_count * page_size); retention gives them back.",
                self.database.free_bytes,
            ),
            ("agent_runtime_database_wal_bytes", "Size of the database's write-ahead log file.", self.database.wal_bytes),
        ] {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
        header(out, "agent_runtime_approvals_pending", "gauge", "Action approvals waiting for a decision.");
        let _ = writeln!(out, "agent_runtime_approvals_pending {}", self.counts.approvals_pending);
        header(out, "agent_runtime_pairings_pending", "gauge", "Pairing requests waiting for a decision.");
        let _ = writeln!(out, "agent_runtime_pairings_pending {}", self.counts.pairings_pending);
        header(out, "agent_runtime_component_healthy", "gauge", "1 when a component is healthy, 0 otherwise (state label says which).");
        for (name, state) in &self.health {
            let ok = u8::from(state == "healthy");
            let _ = writeln!(out, "agent_runtime_component_healthy{{component=\"{}\",state=\"{state}\"}} {ok}", esc(name));
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.http("/api/v1/tasks", "GET", 200, Duration::from_micros(500));
        m.http("/api/v1/tasks", "GET", 200, Duration::from_millis(30));
        m.http("/api/v1/tasks", "POST", 400, Duration::from_millis(2));
        m.message("tele\"gram", "inbound", "received");
        let text = m.render(&Gauges::default(), &[]);
        assert!(text.contains("agent_runtime_http_requests_total{route=\"/api/v1/tasks\",method=\"GET\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("agent_runtime_http_request_duration_seconds_bucket{route=\"/api/v1/tasks\",le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("agent_runtime_http_request_duration_seconds_bucket{route=\"/api/v1/tasks\",le=\"0.05\"} 3"), "{text}");
        assert!(text.contains("agent_runtime_http_request_duration_seconds_count{route=\"/api/v1/tasks\"} 3"), "{text}");
        assert!(text.contains("connector=\"tele\\\"gram\""), "{text}");
        assert!(text.contains("agent_runtime_tasks{status=\"canceled\"} 0"), "every status is present: {text}");
        // A histogram without labels has no braces at all.
        assert!(text.contains("\nagent_runtime_objective_fire_lag_seconds_sum 0\n"), "{text}");
        assert!(text.contains("\nagent_runtime_objective_fire_lag_seconds_count 0\n"), "{text}");
        assert!(!text.contains("{}"), "no empty label set: {text}");
    }
}
