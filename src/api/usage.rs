//! `GET /api/v1/usage?since=&until=`: LLM calls, errors, tokens, latency and
//! cost per UTC day, provider and model, from `llm_usage`; and today's
//! spend against the budget limits with the kill switch's state.

use super::ApiState;
use super::error::{ApiError, ApiQuery};
use crate::store::UsageTotals;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    since: Option<i64>,
    until: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct UsageRow {
    #[serde(flatten)]
    totals: UsageTotals,
    /// USD, when the model has a price in `AGENT_RUNTIME_LLM_PRICES`.
    cost_usd: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Sum {
    calls: u64,
    errors: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Sum of the priced rows' costs; `priced_calls` says how many calls that covers.
    cost_usd: f64,
    priced_calls: u64,
}

#[derive(Debug, Serialize)]
pub struct UsageOut {
    since: i64,
    until: i64,
    items: Vec<UsageRow>,
    totals: Sum,
    /// Today's spend against the limits, and the kill switch (`null` when
    /// this runtime checks no budget).
    budget: Option<crate::budget::Report>,
}

/// Rounded to a millionth of a dollar (no float noise in the JSON).
fn micro_usd(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// 30 days.
const DEFAULT_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

pub async fn usage(State(s): State<ApiState>, ApiQuery(q): ApiQuery<UsageQuery>) -> Result<Json<UsageOut>, ApiError> {
    let until = q.until.unwrap_or_else(|| s.clock.now_ms().saturating_add(1));
    let since = q.since.unwrap_or(until.saturating_sub(DEFAULT_WINDOW_MS));
    if since >= until {
        return Err(ApiError::bad_request("since must be before until (both unix ms)"));
    }
    let rows = s.store.usage_totals(since, until).await?;
    let mut totals = Sum::default();
    let items = rows
        .into_iter()
        .map(|t| {
            let price = crate::config::price_for(&s.prices, &t.model);
            let cost = price.map(|p| micro_usd(p.cost(t.prompt_tokens, t.completion_tokens)));
            totals.calls += t.calls;
            totals.errors += t.errors;
            totals.prompt_tokens += t.prompt_tokens;
            totals.completion_tokens += t.completion_tokens;
            if let Some(c) = cost {
                totals.cost_usd += c;
                totals.priced_calls += t.calls;
            }
            UsageRow { totals: t, cost_usd: cost }
        })
        .collect();
    totals.cost_usd = micro_usd(totals.cost_usd);
    let budget = match s.gateway.budget_report().await {
        Ok(r) => Some(r),
        Err(crate::gateway::SwitchError::Unavailable) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Json(UsageOut { since, until, items, totals, budget }))
}
