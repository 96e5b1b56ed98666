//! Budgets and the kill switch, checked before every model call
//! (`agent::Llm`): daily token and USD limits (global, from the
//! configuration, and per context, set by an admin), a per-task token
//! limit, and the pause switch that stops every model call at once.
//!
//! Invariants: a call that would start at or over a limit is not made; the
//! check reads the store only when some limit applies (no limit, no read),
//! and then only the day's rollup (`llm_spend_daily`, kept by the write that
//! records each call) and the task's own rows, never a scan of the day;
//! the switch's in-memory flag is set only after its row is committed, so a
//! restart comes back in the state last reported. Days are UTC days.

use crate::clock::{SharedClock, UnixMillis};
use crate::config::{BudgetConfig, ModelPrice, price_for};
use crate::domain::{ContextId, TaskId};
use crate::store::{ContextBudget, ModelTokens, SpendQuery, Store, StoreError, SwitchState};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// One UTC day, in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// The start (UTC midnight) of the day `now` falls in.
pub fn day_start(now: UnixMillis) -> UnixMillis {
    now - now.rem_euclid(DAY_MS)
}

/// `YYYY-MM-DD` of the UTC day `now` falls in.
pub fn day_name(now: UnixMillis) -> String {
    crate::clock::rfc3339(day_start(now)).chars().take(10).collect()
}

/// Tokens (prompt + completion) of these rows.
pub fn tokens(rows: &[ModelTokens]) -> u64 {
    rows.iter().map(|r| r.prompt + r.completion).sum()
}

/// USD of these rows at `prices` (a model without a price costs nothing).
pub fn usd(prices: &[ModelPrice], rows: &[ModelTokens]) -> f64 {
    rows.iter().filter_map(|r| price_for(prices, &r.model).map(|p| p.cost(r.prompt, r.completion))).sum()
}

/// The kill switch: a shared flag every model call reads (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    /// Whether model calls are stopped.
    pub fn is_paused(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, paused: bool) {
        self.0.store(paused, Ordering::Release);
    }
}

/// Daily limits (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Tokens per UTC day.
    pub tokens: Option<u64>,
    /// USD per UTC day.
    pub usd: Option<f64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.tokens.is_some() || self.usd.is_some()
    }
}

/// Whose limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every call of the day.
    Global,
    /// The day's calls of one chat.
    Context(ContextId),
    /// One task's calls, all attempts.
    Task(TaskId),
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Prompt + completion tokens.
    Tokens,
    /// US dollars at `AGENT_RUNTIME_LLM_PRICES`.
    Usd,
}

/// A limit that is reached: the reason a call was not made.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// Whose limit.
    pub scope: Scope,
    /// What it counts.
    pub unit: Unit,
    /// Spent so far.
    pub spent: f64,
    /// The limit.
    pub limit: f64,
    /// When it resets (the next UTC midnight); `None` for a task's limit, which does not.
    pub resets_at: Option<UnixMillis>,
}

impl Exceeded {
    /// The key of the admin notice about it: one per limit and UTC day.
    pub fn notice_key(&self, now: UnixMillis) -> String {
        let unit = match self.unit {
            Unit::Tokens => "tokens",
            Unit::Usd => "usd",
        };
        let scope = match &self.scope {
            Scope::Global => "global".to_string(),
            Scope::Context(c) => format!("context:{c}"),
            // Every task's limit is one limit: one notice a day, not one per task.
            Scope::Task(_) => "task".to_string(),
        };
        format!("budget:{scope}:{unit}:{}", day_name(now))
    }
}

fn amount(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Tokens => format!("{} tokens", v as u64),
        Unit::Usd => format!("${v:.2}"),
    }
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (&self.scope, self.unit) {
            (Scope::Global, Unit::Tokens) => "the daily token budget (AGENT_RUNTIME_LLM_DAILY_TOKENS)".to_string(),
            (Scope::Global, Unit::Usd) => "the daily spending budget (AGENT_RUNTIME_LLM_DAILY_USD)".to_string(),
            (Scope::Context(c), Unit::Tokens) => format!("this chat's daily token budget (context {c})"),
            (Scope::Context(c), Unit::Usd) => format!("this chat's daily spending budget (context {c})"),
            (Scope::Task(t), _) => format!("task {t}'s token budget (AGENT_RUNTIME_LLM_TASK_TOKENS)"),
        };
        let used = format!("{} of {} used", amount(self.unit, self.spent), amount(self.unit, self.limit));
        match self.resets_at {
            Some(at) => {
                let when = crate::clock::rfc3339(at);
                write!(f, "budget reached: {what} is spent ({used} today, UTC); it resets at {when}")
            }
            None => write!(f, "budget reached: {what} is spent ({used}); it does not reset"),
        }
    }
}

/// Why a call may not be made.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The kill switch is on.
    Paused,
    /// A limit is reached.
    Over(Exceeded),
}

/// The first limit in `limits` that `spent` reaches (tokens before USD).
pub fn first_over(scope: &Scope, limits: Limits, spent_tokens: u64, spent_usd: f64, resets_at: Option<UnixMillis>) -> Option<Exceeded> {
    let over = |unit, spent: f64, limit: f64| (spent >= limit).then(|| Exceeded { scope: scope.clone(), unit, spent, limit, resets_at });
    limits
        .tokens
        .and_then(|l| over(Unit::Tokens, spent_tokens as f64, l as f64))
        .or_else(|| limits.usd.and_then(|l| over(Unit::Usd, spent_usd, l)))
}

/// One limit and what was spent against it today.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standing {
    /// Tokens spent today.
    pub tokens: u64,
    /// USD spent today (priced models only).
    pub usd: f64,
    /// The limits (`null`: none).
    pub limits: Limits,
}

impl Standing {
    /// `1200 of 1000 tokens, $0.5000 (no limit)`: the spend against each
    /// limit, as the chat, the CLI and the console say it.
    pub fn describe(&self) -> String {
        let tokens = match self.limits.tokens {
            Some(l) => format!("{} of {l} tokens", self.tokens),
            None => format!("{} tokens (no limit)", self.tokens),
        };
        let usd = match self.limits.usd {
            Some(l) => format!("${:.4} of ${l:.2}", self.usd),
            None => format!("${:.4} (no limit)", self.usd),
        };
        format!("{tokens}, {usd}")
    }
}

/// Spend against the limits, for `/api/v1/usage` and `agent-runtime usage`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// The UTC day.
    pub day: String,
    /// Whether the kill switch is on, and who set it last.
    pub paused: bool,
    /// The switch's last change, if it was ever set.
    pub switch: Option<SwitchState>,
    /// Every call of the day against the global limits.
    pub global: Standing,
    /// Each task's token limit (`null`: none).
    pub task_tokens: Option<u64>,
    /// Contexts with limits of their own, each with its spend today.
    pub contexts: Vec<ContextStanding>,
}

/// A context's limits and spend today.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContextStanding {
    /// The context.
    pub context_id: ContextId,
    /// Its spend and limits.
    #[serde(flatten)]
    pub standing: Standing,
}

struct Inner {
    config: BudgetConfig,
    prices: Arc<Vec<ModelPrice>>,
    store: Store,
    clock: SharedClock,
    switch: Switch,
    contexts: Mutex<HashMap<ContextId, Limits>>,
    outbox_ready: Arc<Notify>,
}

/// The budget checker and the switch's owner (cheap to clone).
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

impl Budget {
    /// Loads the switch and the contexts' limits from the store.
    pub async fn load(
        store: Store,
        clock: SharedClock,
        config: BudgetConfig,
        prices: Arc<Vec<ModelPrice>>,
        outbox_ready: Arc<Notify>,
    ) -> Result<Self, StoreError> {
        let switch = Switch::default();
        switch.set(store.switch_state().await?.is_some_and(|s| s.paused));
        let contexts = store.context_budgets().await?.into_iter().map(|b| (b.context_id.clone(), Limits::from(&b))).collect();
        let inner = Inner { config, prices, store, clock, switch, contexts: Mutex::new(contexts), outbox_ready };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The kill switch.
    pub fn switch(&self) -> &Switch {
        &self.inner.switch
    }

    /// Whether a call for `task` in `context` may be made now: `Err` when
    /// the switch is on or a limit is reached. Reads the store only when a
    /// limit applies.
    pub async fn check(&self, task: Option<&TaskId>, context: Option<&ContextId>) -> Result<(), Refusal> {
        let p = &self.inner;
        if p.switch.is_paused() {
            return Err(Refusal::Paused);
        }
        let global = Limits { tokens: p.config.daily_tokens, usd: p.config.daily_usd };
        let ctx_limits = context.and_then(|c| self.context_limits(c)).filter(Limits::any);
        let task_limit = p.config.task_tokens.filter(|_| task.is_some());
        if !global.any() && ctx_limits.is_none() && task_limit.is_none() {
            return Ok(());
        }
        let now = p.clock.now_ms();
        let q = SpendQuery {
            since: day_start(now),
            global: global.any(),
            context: ctx_limits.and(context.cloned()),
            task: task_limit.and(task.cloned()),
        };
        let spend = match p.store.spend(q).await {
            Ok(s) => s,
            Err(e) => {
                // Failing open: a store that cannot be read also cannot record the call's usage; the limits
                // catch up at the next read. Failing closed would stop every chat on a transient error.
                tracing::warn!(error = %e, "cannot read the model's spend; the call is made unchecked");
                return Ok(());
            }
        };
        let resets = Some(day_start(now) + DAY_MS);
        let mut over = first_over(&Scope::Global, global, tokens(&spend.global), usd(&p.prices, &spend.global), resets);
        if let (None, Some(limits), Some(c)) = (&over, ctx_limits, context) {
            over = first_over(&Scope::Context(c.clone()), limits, tokens(&spend.context), usd(&p.prices, &spend.context), resets);
        }
        if let (None, Some(limit), Some(t)) = (&over, task_limit, task) {
            let limits = Limits { tokens: Some(limit), usd: None };
            over = first_over(&Scope::Task(t.clone()), limits, tokens(&spend.task), 0.0, None);
        }
        over.map_or(Ok(()), |e| Err(Refusal::Over(e)))
    }

    /// Tells the admin chats about `e`, once per limit and UTC day (the
    /// key is in the store, so a restart does not repeat it).
    pub async fn notify(&self, e: &Exceeded) {
        let p = &self.inner;
        let now = p.clock.now_ms();
        let body = format!(
            "Model calls stopped: {e}. Calls that would go over it are refused; the tasks fail and the chats are told. \
             Raise the limit, or wait for it to reset. (One notice per limit per day.)"
        );
        match p.store.notify_admins_once(e.notice_key(now), body, now).await {
            Ok(true) => p.outbox_ready.notify_one(),
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "could not notify the admins of a budget limit"),
        }
    }

    /// Turns the switch on or off (recorded and audited under `by` first).
    pub async fn set_paused(&self, paused: bool, reason: Option<String>, by: String) -> Result<SwitchState, StoreError> {
        let p = &self.inner;
        let state = p.store.set_switch(paused, reason, by, p.clock.now_ms()).await?;
        p.switch.set(paused);
        Ok(state)
    }

    /// A context's limits, if it has any.
    pub fn context_limits(&self, context: &ContextId) -> Option<Limits> {
        self.inner.contexts.lock().ok().and_then(|m| m.get(context).copied())
    }

    /// Sets a context's daily limits (none: removes them), audited under `by`.
    pub async fn set_context_limits(&self, context: &ContextId, limits: Limits, by: String) -> Result<(), StoreError> {
        let p = &self.inner;
        p.store.set_context_budget(context.clone(), limits.tokens, limits.usd, by, p.clock.now_ms()).await?;
        if let Ok(mut m) = p.contexts.lock() {
            if limits.any() {
                m.insert(context.clone(), limits);
            } else {
                m.remove(context);
            }
        }
        Ok(())
    }

    /// Today's spend against every limit, and the switch.
    pub async fn report(&self) -> Result<Report, StoreError> {
        let p = &self.inner;
        let now = p.clock.now_ms();
        let since = day_start(now);
        let global = p.store.spend(SpendQuery { since, global: true, ..SpendQuery::default() }).await?.global;
        let with_limits: Vec<(ContextId, Limits)> =
            p.contexts.lock().map(|m| m.iter().map(|(c, l)| (c.clone(), *l)).collect()).unwrap_or_default();
        let mut contexts = Vec::with_capacity(with_limits.len());
        for (id, limits) in with_limits {
            let rows = p.store.spend(SpendQuery { since, context: Some(id.clone()), ..SpendQuery::default() }).await?.context;
            contexts
                .push(ContextStanding { context_id: id, standing: Standing { tokens: tokens(&rows), usd: usd(&p.prices, &rows), limits } });
        }
        contexts.sort_by(|a, b| a.context_id.cmp(&b.context_id));
        Ok(Report {
            day: day_name(now),
            paused: p.switch.is_paused(),
            switch: p.store.switch_state().await?,
            global: Standing {
                tokens: tokens(&global),
                usd: usd(&p.prices, &global),
                limits: Limits { tokens: p.config.daily_tokens, usd: p.config.daily_usd },
            },
            task_tokens: p.config.task_tokens,
            contexts,
        })
    }
}

/// A context's limits as the store keeps them.
impl From<&ContextBudget> for Limits {
    fn from(b: &ContextBudget) -> Self {
        Self { tokens: b.daily_tokens, usd: b.daily_usd }
    }
}

#[cfg(test)]
mod tests;
