use super::*;
use crate::clock::{Clock, ManualClock};
use crate::store::UsageRecord;

/// 2026-03-01T23:00:00Z.
const LATE: UnixMillis = 1_772_406_000_000;

fn price(model: &str, prompt: f64, completion: f64) -> ModelPrice {
    ModelPrice { model: model.into(), prompt, completion }
}

fn row(model: &str, prompt: u64, completion: u64) -> ModelTokens {
    ModelTokens { model: model.into(), prompt, completion }
}

#[test]
fn days_are_utc_days() {
    assert_eq!(day_name(LATE), "2026-03-01");
    assert_eq!(day_start(LATE) + DAY_MS, LATE + 3_600_000, "the next midnight is an hour away");
    assert_eq!(day_name(day_start(LATE) + DAY_MS), "2026-03-02");
    assert_eq!(day_name(day_start(LATE) + DAY_MS - 1), "2026-03-01");
}

#[test]
fn cost_uses_each_models_price_and_unpriced_models_cost_nothing() {
    let prices = [price("gpt-4o", 2.5, 10.0), price("gpt-4o-mini", 0.15, 0.6)];
    let rows = [row("gpt-4o-2024-08-06", 1_000_000, 100_000), row("gpt-4o-mini", 1_000_000, 0), row("local", 5_000_000, 5_000_000)];
    assert!((usd(&prices, &rows) - (2.5 + 1.0 + 0.15)).abs() < 1e-9, "{}", usd(&prices, &rows));
    assert_eq!(tokens(&rows), 12_100_000);
}

#[test]
fn a_limit_is_reached_at_its_value_not_only_past_it() {
    let limits = Limits { tokens: Some(100), usd: Some(1.0) };
    assert_eq!(first_over(&Scope::Global, limits, 99, 0.99, None), None);
    let at = first_over(&Scope::Global, limits, 100, 0.0, None).expect("at the limit");
    assert_eq!((at.unit, at.spent, at.limit), (Unit::Tokens, 100.0, 100.0));
    let usd = first_over(&Scope::Global, limits, 0, 1.0, None).expect("at the USD limit");
    assert_eq!(usd.unit, Unit::Usd);
    assert_eq!(first_over(&Scope::Global, Limits::default(), u64::MAX, f64::MAX, None), None, "no limits");
}

#[test]
fn the_reason_names_the_limit_the_spend_and_the_reset() {
    let e = Exceeded { scope: Scope::Global, unit: Unit::Tokens, spent: 1200.0, limit: 1000.0, resets_at: Some(day_start(LATE) + DAY_MS) };
    let text = e.to_string();
    assert!(text.contains("AGENT_RUNTIME_LLM_DAILY_TOKENS"), "{text}");
    assert!(text.contains("1200 tokens of 1000 tokens used"), "{text}");
    assert!(text.contains("2026-03-02T00:00:00Z"), "{text}");
    let usd = Exceeded { unit: Unit::Usd, spent: 5.129, limit: 5.0, ..e.clone() };
    assert!(usd.to_string().contains("$5.13 of $5.00"), "{usd}");
    assert_eq!(e.notice_key(LATE), "budget:global:tokens:2026-03-01");
    let task = Exceeded { scope: Scope::Task(TaskId::from_string("t1")), resets_at: None, ..e };
    assert!(task.to_string().contains("does not reset"));
    assert_eq!(task.notice_key(LATE), "budget:task:tokens:2026-03-01", "one notice for every task's limit");
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    clock: ManualClock,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("m.sqlite")).expect("store");
    Fixture { _dir: dir, store, clock: ManualClock::new(LATE) }
}

impl Fixture {
    async fn budget(&self, config: BudgetConfig) -> Budget {
        let prices = Arc::new(vec![price("m", 1_000_000.0, 1_000_000.0)]);
        Budget::load(self.store.clone(), Arc::new(self.clock.clone()), config, prices, Arc::new(Notify::new())).await.expect("load")
    }

    async fn used(&self, ctx: Option<&ContextId>, task: Option<&TaskId>, tokens: u64) {
        let u = UsageRecord {
            at: self.clock.now_ms(),
            provider: "p".into(),
            model: "m".into(),
            task_id: None,
            context_id: ctx.cloned(),
            prompt_tokens: Some(tokens),
            completion_tokens: Some(0),
            latency_ms: 1,
            outcome: "ok".into(),
            error: None,
        };
        self.store.record_usage(u).await.expect("usage");
        // The task's rows are found by task id (its column has a foreign key, so set it by hand here).
        if let Some(t) = task {
            let db = rusqlite::Connection::open(self.store.path()).expect("db");
            db.execute_batch("PRAGMA foreign_keys = OFF").expect("fk");
            db.execute("UPDATE llm_usage SET task_id = ?1 WHERE id = (SELECT MAX(id) FROM llm_usage)", [t.as_str()]).expect("task");
        }
    }
}

fn over(r: Result<(), Refusal>) -> Exceeded {
    match r {
        Err(Refusal::Over(e)) => e,
        other => panic!("expected a budget refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_daily_token_limit_refuses_once_reached_and_resets_at_utc_midnight() {
    let f = fixture();
    let b = f.budget(BudgetConfig { daily_tokens: Some(100), ..BudgetConfig::default() }).await;
    assert_eq!(b.check(None, None).await, Ok(()));
    f.used(None, None, 60).await;
    assert_eq!(b.check(None, None).await, Ok(()), "60 of 100: the call may start");
    f.used(None, None, 60).await;
    let e = over(b.check(None, None).await);
    assert_eq!((e.scope, e.spent, e.limit), (Scope::Global, 120.0, 100.0));
    f.clock.set(day_start(LATE) + DAY_MS);
    assert_eq!(b.check(None, None).await, Ok(()), "a new UTC day");
}

#[tokio::test]
async fn the_usd_limit_counts_priced_calls() {
    let f = fixture();
    // "m" costs $1 per token here.
    let b = f.budget(BudgetConfig { daily_usd: Some(3.0), ..BudgetConfig::default() }).await;
    f.used(None, None, 2).await;
    assert_eq!(b.check(None, None).await, Ok(()));
    f.used(None, None, 1).await;
    assert_eq!(over(b.check(None, None).await).unit, Unit::Usd);
}

#[tokio::test]
async fn a_context_limit_stops_only_that_context() {
    let f = fixture();
    let chat = f.store.ensure_context(&crate::domain::ChatRef::new("codex", "c1").expect("chat"), "c1", 1).await.expect("ctx");
    let other = ContextId::from_string("other");
    let b = f.budget(BudgetConfig::default()).await;
    b.set_context_limits(&chat.id, Limits { tokens: Some(10), usd: None }, "cert:admin".into()).await.expect("set");
    f.used(Some(&chat.id), None, 10).await;
    assert_eq!(over(b.check(None, Some(&chat.id)).await).scope, Scope::Context(chat.id.clone()));
    assert_eq!(b.check(None, Some(&other)).await, Ok(()));
    let again = f.budget(BudgetConfig::default()).await;
    assert_eq!(again.context_limits(&chat.id), Some(Limits { tokens: Some(10), usd: None }), "limits survive a restart");
    b.set_context_limits(&chat.id, Limits::default(), "cert:admin".into()).await.expect("clear");
    assert_eq!(b.check(None, Some(&chat.id)).await, Ok(()));
}

#[tokio::test]
async fn a_task_limit_counts_that_tasks_calls_of_every_day() {
    let f = fixture();
    let b = f.budget(BudgetConfig { task_tokens: Some(50), ..BudgetConfig::default() }).await;
    let (t1, t2) = (TaskId::from_string("t1"), TaskId::from_string("t2"));
    f.used(None, Some(&t1), 30).await;
    f.clock.set(day_start(LATE) + DAY_MS);
    f.used(None, Some(&t1), 30).await;
    let e = over(b.check(Some(&t1), None).await);
    assert_eq!((e.scope, e.spent, e.resets_at), (Scope::Task(t1), 60.0, None));
    assert_eq!(b.check(Some(&t2), None).await, Ok(()));
    assert_eq!(b.check(None, None).await, Ok(()), "a chat turn has no task limit");
}

#[tokio::test]
async fn the_switch_refuses_every_call_and_survives_a_restart() {
    let f = fixture();
    let b = f.budget(BudgetConfig::default()).await;
    b.set_paused(true, None, "cert:admin".into()).await.expect("pause");
    assert_eq!(b.check(None, None).await, Err(Refusal::Paused));
    let again = f.budget(BudgetConfig::default()).await;
    assert!(again.switch().is_paused(), "paused after a restart");
    again.set_paused(false, None, "cert:admin".into()).await.expect("resume");
    assert_eq!(again.check(None, None).await, Ok(()));
    let r = again.report().await.expect("report");
    assert!(!r.paused && r.switch.is_some_and(|s| s.set_by == "cert:admin"));
}
