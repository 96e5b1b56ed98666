//! Channel rules for everything that would reach the LLM or write (the Go
//! runtime's safety policy, which it applied to free text only; here to
//! every path): DMs allowed?, mention needed in groups?, allowed roles and
//! contexts, and per-sender sliding-window rate limits — one for free text,
//! one for commands that queue work or write — with one notice per window.
//! Admins are exempt from the limits. A sender with no role at all (an
//! unlinked stranger when the guest role is `none`) gets no model answer.

use super::perm::Cost;
use crate::clock::UnixMillis;
use crate::config::ChannelRules;
use crate::domain::{Actor, ChatKind, Context, Inbound};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// What happens to a free-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it.
    Allow,
    /// Record it, answer nothing (reason for the audit log).
    Silent(&'static str),
    /// Answer with this notice instead (reason for the audit log).
    Notice(&'static str, String),
}

#[derive(Default)]
struct Window {
    hits: VecDeque<UnixMillis>,
    notified_at: Option<UnixMillis>,
}

/// Sliding-window counters per (connector, context, sender).
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

/// Senders tracked at most; the oldest idle windows are dropped beyond it.
const MAX_TRACKED: usize = 100_000;

impl RateLimiter {
    /// Counts one message; `Some(first)` when over the limit (`first`: the
    /// first refusal in this window, which gets a notice).
    fn hit(&self, key: String, now: UnixMillis, per_window: u32, window_ms: i64) -> Option<bool> {
        let mut map = self.windows.lock().ok()?;
        if map.len() >= MAX_TRACKED {
            map.retain(|_, w| w.hits.back().is_some_and(|t| now - t < window_ms));
        }
        let w = map.entry(key).or_default();
        while w.hits.front().is_some_and(|t| now - t >= window_ms) {
            w.hits.pop_front();
        }
        if w.hits.len() < per_window as usize {
            w.hits.push_back(now);
            return None;
        }
        let first = w.notified_at.is_none_or(|t| now - t >= window_ms);
        if first {
            w.notified_at = Some(now);
        }
        Some(first)
    }
}

/// The reply to a sender with no role who asks the model something.
pub const UNLINKED_NOTICE: &str = "I answer linked accounts only. Send `pair` to me in a private chat to link yours, or try /help.";

/// Decides whether a free-text message reaches the LLM.
pub fn decide(rules: &ChannelRules, limiter: &RateLimiter, actor: &Actor, ctx: &Context, msg: &Inbound, now: UnixMillis) -> Verdict {
    if msg.kind == ChatKind::Private && !rules.allow_dm {
        return Verdict::Notice("dm_disabled", "I only answer commands in private chats here; try /help.".into());
    }
    if msg.kind == ChatKind::Group && rules.require_mention_in_groups && !msg.mentioned {
        return Verdict::Silent("mention_required");
    }
    if let Some(v) = scope(rules, actor, ctx) {
        return v;
    }
    if actor.role.is_none() {
        // Counted like an answer, so a stranger's flood gets one notice per window, not one each.
        return match limit(limiter, "text", rules.rate_limit_per_window, rules.rate_limit_window, ctx, msg, now) {
            None => Verdict::Notice("unlinked", UNLINKED_NOTICE.into()),
            Some(_) => Verdict::Silent("rate_limited"),
        };
    }
    if is_admin(actor) {
        return Verdict::Allow;
    }
    limited(limit(limiter, "text", rules.rate_limit_per_window, rules.rate_limit_window, ctx, msg, now))
}

/// Decides whether a command that queues work or writes (`cost`) may run:
/// model work passes the context and role rules, and every such command of
/// a non-admin counts against the task rate limit. A command is addressed
/// to the bot by its form, so the mention and DM rules (about free text)
/// do not apply.
pub fn decide_command(
    rules: &ChannelRules,
    limiter: &RateLimiter,
    actor: &Actor,
    ctx: &Context,
    msg: &Inbound,
    cost: Cost,
    now: UnixMillis,
) -> Verdict {
    if cost == Cost::Read {
        return Verdict::Allow;
    }
    if cost == Cost::Llm
        && let Some(v) = scope(rules, actor, ctx)
    {
        return v;
    }
    if is_admin(actor) {
        return Verdict::Allow;
    }
    limited(limit(limiter, "task", rules.task_rate_limit_per_window, rules.task_rate_limit_window, ctx, msg, now))
}

/// The context and role rules: `Some` refuses.
fn scope(rules: &ChannelRules, actor: &Actor, ctx: &Context) -> Option<Verdict> {
    if !rules.allowed_context_ids.is_empty() && !rules.allowed_context_ids.iter().any(|c| c == ctx.id.as_str()) {
        return Some(Verdict::Silent("context_not_allowed"));
    }
    let linked_role = actor.user.as_ref().map(|u| u.role);
    if !rules.allowed_roles.is_empty() && !linked_role.is_some_and(|r| rules.allowed_roles.contains(&r)) {
        return Some(Verdict::Notice("role_not_allowed", "LLM replies are disabled for your role.".into()));
    }
    None
}

/// Admins are exempt from the limits (a guest role is never admin).
fn is_admin(actor: &Actor) -> bool {
    actor.role.is_some_and(|r| r.is_admin())
}

/// Counts one hit on the `lane` window of this sender in this chat
/// (`None`: under the limit; a limit of 0 is off).
fn limit(
    limiter: &RateLimiter,
    lane: &str,
    per_window: u32,
    window: std::time::Duration,
    ctx: &Context,
    msg: &Inbound,
    now: UnixMillis,
) -> Option<bool> {
    if per_window == 0 {
        return None;
    }
    let key = format!("{lane}\u{1f}{}\u{1f}{}\u{1f}{}", ctx.chat.connector, ctx.id, msg.from_user_id);
    limiter.hit(key, now, per_window, window.as_millis() as i64)
}

fn limited(hit: Option<bool>) -> Verdict {
    match hit {
        None => Verdict::Allow,
        Some(true) => Verdict::Notice("rate_limited", "Rate limit reached for non-admin users. Try again shortly.".into()),
        Some(false) => Verdict::Silent("rate_limited"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_refuses_past_the_window_count_and_notifies_once_per_window() {
        let l = RateLimiter::default();
        let hits: Vec<Option<bool>> = (0..5).map(|i| l.hit("k".into(), 1_000 + i, 3, 60_000)).collect();
        assert_eq!(hits, [None, None, None, Some(true), Some(false)]);
        assert_eq!(l.hit("k".into(), 61_000, 3, 60_000), None, "the window slid past the first hits");
        assert_eq!(l.hit("other".into(), 1_000, 3, 60_000), None, "keys are independent");
    }
}
