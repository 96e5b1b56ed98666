//! The LLM side: providers behind one small trait (OpenAI-compatible chat
//! completions, Anthropic messages), system prompt composition, usage
//! telemetry, and the executor for `general` tasks.
//!
//! Invariants: every call attempt leaves an `llm_usage` row — a provider
//! call, successful or not, and a call the budget or the kill switch
//! refused before the provider was asked (outcome `budget` or `paused`,
//! zero tokens); no provider is asked while the switch is on or a limit is
//! reached (`crate::budget`).

mod anthropic;
mod general;
mod openai;
mod prompt;
pub mod resume;
mod runner;
mod textmode;
pub mod tools;
pub mod turn;

pub use general::GeneralExecutor;
pub use prompt::PromptBuilder;
pub use resume::ResumeExecutor;
pub use runner::{Agent, AgentLimits, AgentParts, ChatTurn, DEFAULT_CONCURRENT_CHAT_TURNS, LayerSize, PromptView, TASK_ROLE};

use crate::BoxFuture;
use crate::clock::SharedClock;
use crate::config::{LlmConfig, ProviderKind};
use crate::domain::{ContextId, TaskId};
use crate::store::{Store, UsageRecord};
use std::sync::Arc;
use std::time::Instant;

/// One message of a conversation with the model (after the system prompt).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    /// The user's text (or the runtime speaking for the user: a task's prompt).
    User {
        /// The text.
        text: String,
    },
    /// What the model answered earlier: text, tool calls, or both.
    Assistant {
        /// Its text (may be empty when it only called tools).
        text: String,
        /// The tools it asked for, in its order.
        calls: Vec<ToolCall>,
    },
    /// The result of one tool call, sent back to the model.
    Tool {
        /// The [`ToolCall::id`] this answers.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The result (or the error) as text.
        content: String,
        /// Whether the call failed.
        is_error: bool,
    },
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call (`call_…`, `toolu_…`); generated when
    /// the provider gave none.
    pub id: String,
    /// The tool's name, as the model wrote it (it may name no tool).
    pub name: String,
    /// The arguments as the model wrote them: JSON text, possibly malformed.
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: std::borrow::Cow<'static, str>,
    /// What it does, for the model.
    pub description: std::borrow::Cow<'static, str>,
    /// JSON Schema of its arguments (an object schema), shared: made once
    /// per tool, not per turn.
    pub parameters: std::sync::Arc<serde_json::Value>,
}

/// One request: the system prompt, the conversation so far, the tools offered.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The system prompt.
    pub system: String,
    /// The conversation, oldest first; it ends with a user message or tool results.
    pub messages: Vec<Message>,
    /// Tools the model may call (none: a plain completion).
    pub tools: Vec<ToolSpec>,
}

impl ChatRequest {
    /// A single user message, no tools.
    pub fn single(system: impl Into<String>, user: impl Into<String>) -> Self {
        Self { system: system.into(), messages: vec![Message::User { text: user.into() }], tools: Vec::new() }
    }
}

/// The provider's answer.
#[derive(Debug, Clone, Default)]
pub struct ChatResponse {
    /// The answer text (reasoning blocks removed); may be empty when the
    /// model only called tools.
    pub text: String,
    /// The tools the model asked for (empty: this is its final answer).
    pub calls: Vec<ToolCall>,
    /// The model that answered.
    pub model: String,
    /// Prompt tokens, if reported.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens, if reported.
    pub completion_tokens: Option<u64>,
}

/// Why a provider call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// No provider can be called; the message names the variable to set.
    #[error("{0}")]
    NotConfigured(String),
    /// The provider answered with an error status.
    #[error("{provider} returned HTTP {status}: {body}")]
    Status {
        /// Provider name.
        provider: &'static str,
        /// HTTP status.
        status: u16,
        /// The start of the error body.
        body: String,
    },
    /// No answer within `AGENT_RUNTIME_LLM_TIMEOUT_SECONDS`.
    #[error("{0} request timed out")]
    Timeout(&'static str),
    /// Could not reach the provider.
    #[error("{provider} request failed: {message}")]
    Transport {
        /// Provider name.
        provider: &'static str,
        /// The cause.
        message: String,
    },
    /// The server refused a request because it offered tools (HTTP 400,
    /// 404 or 422 with an error about tools, `AGENT_RUNTIME_LLM_TOOLS=auto`):
    /// the provider is in text mode from now on, and [`Llm::complete`]
    /// asks again at once → usage outcome `tools_rejected`.
    #[error("{provider} refused the request's tools (HTTP {status}): {body}; asking again in text mode")]
    ToolsRejected {
        /// Provider name.
        provider: &'static str,
        /// HTTP status.
        status: u16,
        /// The start of the error body.
        body: String,
    },
    /// The answer could not be understood.
    #[error("{provider} sent an unusable response: {message}")]
    BadResponse {
        /// Provider name.
        provider: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A budget limit is reached; the provider was not asked → usage
    /// outcome `budget`, the task fails (not retried), the chat is told.
    #[error("{0}")]
    Budget(crate::budget::Exceeded),
    /// The kill switch is on (`agent pause`); the provider was not asked →
    /// usage outcome `paused`; a task goes back to the queue, its attempt
    /// not counted, and runs after `agent resume`.
    #[error("the agent is paused by an admin: no model calls until it is resumed")]
    Paused,
}

impl LlmError {
    /// 429, 5xx, 408, timeouts and transport errors may succeed later; other
    /// 4xx, bad responses and missing configuration will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            Self::Timeout(_) | Self::Transport { .. } => true,
            Self::NotConfigured(_) | Self::BadResponse { .. } | Self::ToolsRejected { .. } | Self::Budget(_) | Self::Paused => false,
        }
    }

    fn class(&self) -> &'static str {
        match self {
            Self::NotConfigured(_) => "not_configured",
            Self::Status { .. } => "http_error",
            Self::Timeout(_) => "timeout",
            Self::Transport { .. } => "transport",
            Self::BadResponse { .. } => "bad_response",
            Self::ToolsRejected { .. } => "tools_rejected",
            Self::Budget(_) => "budget",
            Self::Paused => "paused",
        }
    }
}

/// A task's failed model call as the task's outcome: paused → given back to
/// the queue (the attempt not counted); a budget limit → failed for good
/// with the reason; others retried when they may succeed later.
pub(crate) fn exec_error(e: &LlmError) -> crate::orchestrator::ExecError {
    match e {
        LlmError::Paused => crate::orchestrator::ExecError::released(e.to_string()),
        _ => crate::orchestrator::ExecError { retryable: e.is_retryable(), message: e.to_string(), released: false },
    }
}

/// A chat-completion API.
pub trait LlmProvider: Send + Sync + 'static {
    /// The provider name recorded in `llm_usage`.
    fn name(&self) -> &'static str;
    /// The configured model.
    fn model(&self) -> &str;
    /// One completion of the conversation in `req`: text, tool calls, or both.
    fn complete<'a>(&'a self, req: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, LlmError>>;
}

/// Removes `<think>…</think>` blocks and ```` ```think ```` fences some models emit.
pub(crate) fn strip_reasoning(text: &str) -> String {
    let mut out = text.to_string();
    for (open, close) in [("<think>", "</think>"), ("```think", "```")] {
        while let Some(start) = out.find(open) {
            let after = start + open.len();
            let end = out[after..].find(close).map_or(out.len(), |i| after + i + close.len());
            out.replace_range(start..end, "");
        }
    }
    out.trim().to_string()
}

/// Builds the configured provider, or the reason none can be called.
pub fn build_provider(cfg: &LlmConfig) -> Result<Arc<dyn LlmProvider>, String> {
    cfg.readiness()?;
    let client = reqwest::Client::builder().timeout(cfg.timeout).build().map_err(|e| format!("cannot build HTTP client: {e}"))?;
    Ok(match cfg.provider {
        ProviderKind::Anthropic => Arc::new(anthropic::Anthropic::new(client, cfg)),
        _ => Arc::new(openai::OpenAi::new(client, cfg)),
    })
}

/// Model calls in flight at once unless configured
/// (`AGENT_RUNTIME_LLM_MAX_CONCURRENT_CALLS`).
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 16;

/// The provider plus telemetry: every call is recorded in `llm_usage`.
/// At most so many calls are in flight at once (the rest wait, cancelably):
/// each holds a request body, a connection and a response being parsed, so
/// a burst of turns costs memory and provider rate limit in proportion to
/// this, not to the burst.
#[derive(Clone)]
pub struct Llm {
    provider: Result<Arc<dyn LlmProvider>, String>,
    store: Store,
    clock: SharedClock,
    gate: Arc<tokio::sync::Semaphore>,
    budget: Option<crate::budget::Budget>,
}

impl Llm {
    /// Wraps a provider (or the reason there is none), with
    /// [`DEFAULT_MAX_CONCURRENT_CALLS`].
    pub fn new(provider: Result<Arc<dyn LlmProvider>, String>, store: Store, clock: SharedClock) -> Self {
        Self { provider, store, clock, gate: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_CONCURRENT_CALLS)), budget: None }
    }

    /// At most `n` (at least 1) calls in flight at once.
    pub fn with_max_concurrent_calls(mut self, n: usize) -> Self {
        self.gate = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    /// Checks `budget` (limits and the kill switch) before every call.
    pub fn with_budget(mut self, budget: crate::budget::Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The budget and the kill switch, when they are checked.
    pub fn budget(&self) -> Option<&crate::budget::Budget> {
        self.budget.as_ref()
    }

    /// Whether a provider is configured.
    pub fn is_configured(&self) -> bool {
        self.provider.is_ok()
    }

    /// A description for `/status`: provider and model, or why there is none.
    pub fn describe(&self) -> String {
        match &self.provider {
            Ok(p) => format!("{} ({})", p.name(), p.model()),
            Err(why) => why.clone(),
        }
    }

    /// Calls the provider and records the call's usage. A server that
    /// refused the tools ([`LlmError::ToolsRejected`]; the provider has
    /// switched to text mode) is asked once more at once; both calls are
    /// recorded, and the answer is the second call's.
    pub async fn complete(&self, req: &ChatRequest, task: Option<&TaskId>, context: Option<&ContextId>) -> Result<ChatResponse, LlmError> {
        match self.complete_once(req, task, context).await {
            Err(LlmError::ToolsRejected { .. }) => self.complete_once(req, task, context).await,
            other => other,
        }
    }

    /// A usage row for a call to `provider` (its configured model, no
    /// tokens known, no latency): the callers fill in what they know.
    fn usage_row(&self, provider: &dyn LlmProvider, task: Option<&TaskId>, context: Option<&ContextId>, outcome: &str) -> UsageRecord {
        UsageRecord {
            at: self.clock.now_ms(),
            provider: provider.name().to_string(),
            model: provider.model().to_string(),
            task_id: task.cloned(),
            context_id: context.cloned(),
            prompt_tokens: None,
            completion_tokens: None,
            latency_ms: 0,
            outcome: outcome.to_string(),
            error: None,
        }
    }

    /// Counts the call in the metrics and stores its row (a failure to
    /// store is logged: the call has happened either way).
    async fn record(&self, row: UsageRecord) {
        crate::metrics::metrics().llm_call(
            &row.provider,
            &row.model,
            &row.outcome,
            row.prompt_tokens.unwrap_or(0),
            row.completion_tokens.unwrap_or(0),
            std::time::Duration::from_millis(row.latency_ms),
        );
        if let Err(e) = self.store.record_usage(row).await {
            tracing::warn!(error = %e, "could not record LLM usage");
        }
    }

    /// Records a call the turn stopped waiting for (canceled, or out of
    /// the turn's time): the provider may have spent tokens on it, which
    /// are not known.
    pub async fn record_abandoned(&self, task: Option<&TaskId>, context: Option<&ContextId>, waited: std::time::Duration, outcome: &str) {
        let Ok(provider) = &self.provider else { return };
        let mut row = self.usage_row(provider.as_ref(), task, context, outcome);
        row.latency_ms = waited.as_millis() as u64;
        row.error = Some("the turn stopped waiting for this call".into());
        self.record(row).await;
    }

    /// Records a call the budget or the switch refused (no provider call,
    /// zero tokens) and, for a limit, tells the admins once a day.
    async fn refuse(
        &self,
        provider: &dyn LlmProvider,
        budget: &crate::budget::Budget,
        refusal: crate::budget::Refusal,
        task: Option<&TaskId>,
        context: Option<&ContextId>,
    ) -> LlmError {
        let error = match refusal {
            crate::budget::Refusal::Paused => LlmError::Paused,
            crate::budget::Refusal::Over(e) => {
                budget.notify(&e).await;
                LlmError::Budget(e)
            }
        };
        let mut row = self.usage_row(provider, task, context, error.class());
        (row.prompt_tokens, row.completion_tokens, row.error) = (Some(0), Some(0), Some(error.to_string()));
        self.record(row).await;
        error
    }

    async fn complete_once(&self, req: &ChatRequest, task: Option<&TaskId>, context: Option<&ContextId>) -> Result<ChatResponse, LlmError> {
        let provider = self.provider.as_ref().map_err(|why| LlmError::NotConfigured(why.clone()))?;
        // Never closed, so the permit always comes; waiting is not latency.
        // The budget is checked after the wait: a pause or a limit reached
        // meanwhile still stops the call.
        let _permit = self.gate.acquire().await.map_err(|_| LlmError::NotConfigured("the model gate is closed".into()))?;
        if let Some(budget) = &self.budget
            && let Err(refusal) = budget.check(task, context).await
        {
            return Err(self.refuse(provider.as_ref(), budget, refusal, task, context).await);
        }
        let started = Instant::now();
        let result = provider.complete(req).await;
        let outcome = result.as_ref().map_or_else(LlmError::class, |_| "ok");
        let mut row = self.usage_row(provider.as_ref(), task, context, outcome);
        row.latency_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(r) => (row.model, row.prompt_tokens, row.completion_tokens) = (r.model.clone(), r.prompt_tokens, r.completion_tokens),
            Err(e) => row.error = Some(e.to_string()),
        }
        self.record(row).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A provider answering from a script, counting its calls.
    struct Scripted(Mutex<VecDeque<Result<ChatResponse, LlmError>>>);

    impl LlmProvider for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn model(&self) -> &str {
            "m"
        }
        fn complete<'a>(&'a self, _: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
            let next = self.0.lock().expect("script").pop_front().unwrap_or_else(|| Err(LlmError::NotConfigured("out of script".into())));
            Box::pin(async move { next })
        }
    }

    /// The outcomes recorded in `llm_usage`, and the answer, for a script.
    async fn run(script: Vec<Result<ChatResponse, LlmError>>) -> (Vec<String>, Result<ChatResponse, LlmError>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("meta.sqlite")).expect("store");
        let provider: Arc<dyn LlmProvider> = Arc::new(Scripted(Mutex::new(script.into())));
        let llm = Llm::new(Ok(provider), store.clone(), Arc::new(crate::clock::SystemClock));
        let result = llm.complete(&ChatRequest::single("s", "u"), None, None).await;
        (outcomes(&store), result)
    }

    /// The outcomes of the usage rows, oldest first.
    fn outcomes(store: &Store) -> Vec<String> {
        let db = rusqlite::Connection::open(store.path()).expect("db");
        let mut stmt = db.prepare("SELECT outcome FROM llm_usage ORDER BY id").expect("prepare");
        stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
    }

    fn ok(text: &str) -> Result<ChatResponse, LlmError> {
        Ok(ChatResponse { text: text.into(), model: "m".into(), ..ChatResponse::default() })
    }

    #[tokio::test]
    async fn refused_tools_are_asked_again_once_and_both_calls_recorded() {
        let rejected = || Err(LlmError::ToolsRejected { provider: "scripted", status: 400, body: "no tools".into() });
        let (outcomes, result) = run(vec![rejected(), ok("in text mode")]).await;
        assert_eq!(outcomes, ["tools_rejected", "ok"]);
        assert_eq!(result.expect("second call").text, "in text mode");
        let (outcomes, result) = run(vec![rejected(), rejected(), ok("never asked")]).await;
        assert_eq!(outcomes, ["tools_rejected", "tools_rejected"], "asked again once, not in a loop");
        assert!(matches!(result, Err(LlmError::ToolsRejected { .. })));
    }

    #[tokio::test]
    async fn other_errors_are_not_asked_again() {
        let (outcomes, result) =
            run(vec![Err(LlmError::Status { provider: "scripted", status: 400, body: "bad".into() }), ok("never asked")]).await;
        assert_eq!(outcomes, ["http_error"]);
        assert!(matches!(result, Err(LlmError::Status { status: 400, .. })));
    }

    /// A provider that holds each call until released, counting how many
    /// are in flight at once.
    struct Held {
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        release: tokio::sync::Notify,
    }

    impl LlmProvider for Held {
        fn name(&self) -> &'static str {
            "held"
        }
        fn model(&self) -> &str {
            "m"
        }
        fn complete<'a>(&'a self, _: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
            use std::sync::atomic::Ordering::SeqCst;
            Box::pin(async move {
                let n = self.now.fetch_add(1, SeqCst) + 1;
                self.most.fetch_max(n, SeqCst);
                self.release.notified().await;
                self.now.fetch_sub(1, SeqCst);
                ok("done")
            })
        }
    }

    #[tokio::test]
    async fn no_more_calls_are_in_flight_than_allowed_and_the_rest_wait_their_turn() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("meta.sqlite")).expect("store");
        let held = Arc::new(Held { now: 0.into(), most: 0.into(), release: tokio::sync::Notify::new() });
        let provider: Arc<dyn LlmProvider> = held.clone();
        let llm = Llm::new(Ok(provider), store, Arc::new(crate::clock::SystemClock)).with_max_concurrent_calls(2);
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let llm = llm.clone();
                tokio::spawn(async move { llm.complete(&ChatRequest::single("s", "u"), None, None).await })
            })
            .collect();
        // Release one call at a time until all five are done.
        let mut done = 0;
        for _ in 0..1000 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            assert!(held.now.load(SeqCst) <= 2, "at most 2 in flight");
            if held.now.load(SeqCst) > 0 {
                held.release.notify_one();
            }
            done = calls.iter().filter(|c| c.is_finished()).count();
            if done == 5 {
                break;
            }
        }
        assert_eq!(done, 5, "every call got its turn");
        for c in calls {
            assert_eq!(c.await.expect("join").expect("answer").text, "done");
        }
        assert_eq!(held.most.load(SeqCst), 2, "the gate was full at some point, never over");
    }

    /// The Llm with a budget checked, over a provider that counts its calls.
    async fn with_budget(config: crate::config::BudgetConfig, pause: bool) -> (Vec<String>, Result<ChatResponse, LlmError>, usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("meta.sqlite")).expect("store");
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let notify = Arc::new(tokio::sync::Notify::new());
        let budget = crate::budget::Budget::load(store.clone(), clock.clone(), config, Arc::new(Vec::new()), notify).await.expect("budget");
        if pause {
            budget.set_paused(true, None, "test".into()).await.expect("pause");
        }
        let five = |text: &str| {
            Ok(ChatResponse {
                text: text.into(),
                model: "m".into(),
                prompt_tokens: Some(5),
                completion_tokens: Some(0),
                ..ChatResponse::default()
            })
        };
        let script = Arc::new(Scripted(Mutex::new(vec![five("one"), five("two")].into())));
        let llm = Llm::new(Ok(script.clone() as Arc<dyn LlmProvider>), store.clone(), clock).with_budget(budget);
        let first = llm.complete(&ChatRequest::single("s", "u"), None, None).await;
        let result = if first.is_ok() { llm.complete(&ChatRequest::single("s", "u"), None, None).await } else { first };
        let left = script.0.lock().expect("script").len();
        (outcomes(&store), result, left)
    }

    #[tokio::test]
    async fn a_call_over_budget_or_paused_never_reaches_the_provider_and_leaves_a_row() {
        let (outcomes, result, left) = with_budget(crate::config::BudgetConfig::default(), true).await;
        assert_eq!(outcomes, ["paused"]);
        assert!(matches!(result, Err(LlmError::Paused)));
        assert_eq!(left, 2, "the provider was not asked");
        let (outcomes, result, left) = with_budget(crate::config::BudgetConfig::default(), false).await;
        assert_eq!((outcomes.len(), left), (2, 0), "no limit, no refusal");
        assert!(result.is_ok());
        // Each answer reports 5 tokens: the second call would start at the limit of 5.
        let (outcomes, result, left) =
            with_budget(crate::config::BudgetConfig { daily_tokens: Some(5), ..Default::default() }, false).await;
        assert_eq!((outcomes, left), (vec!["ok".to_string(), "budget".to_string()], 1));
        assert!(matches!(result, Err(LlmError::Budget(_))));
        let err = LlmError::Budget(crate::budget::Exceeded {
            scope: crate::budget::Scope::Global,
            unit: crate::budget::Unit::Tokens,
            spent: 1.0,
            limit: 1.0,
            resets_at: None,
        });
        assert!(!err.is_retryable() && err.class() == "budget");
        assert!(!LlmError::Paused.is_retryable() && LlmError::Paused.class() == "paused");
        assert!(exec_error(&LlmError::Paused).released && !exec_error(&err).released && !exec_error(&err).retryable);
    }

    #[test]
    fn reasoning_blocks_are_removed() {
        assert_eq!(strip_reasoning("<think>hmm</think>Answer"), "Answer");
        assert_eq!(strip_reasoning("```think\nx\n```\nA"), "A");
        assert_eq!(strip_reasoning("<think>never closed"), "");
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        let s = |status| LlmError::Status { provider: "openai", status, body: String::new() };
        assert!(s(429).is_retryable() && s(503).is_retryable() && s(500).is_retryable());
        assert!(!s(400).is_retryable() && !s(401).is_retryable() && !s(404).is_retryable());
        assert!(LlmError::Timeout("openai").is_retryable());
        assert!(!LlmError::NotConfigured("x".into()).is_retryable());
        let rejected = LlmError::ToolsRejected { provider: "openai", status: 400, body: String::new() };
        assert!(!rejected.is_retryable() && rejected.class() == "tools_rejected");
    }
}
