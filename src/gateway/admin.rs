//! Identity and per-chat administration: `/whoami`, `pair`, `/approve` and
//! `/deny` of pairings, `/admin-channel`, `/prompt`, `/route`, `/monitor`,
//! `/objectives`. Permission checks happened before these run.

use super::command::PromptOp;
use super::{Gateway, Turn};
use crate::actions::hex;
use crate::domain::{Actor, ChatRef, Role, TASK_TITLE_MAX, User, title_from};
use crate::store::{AuditWho, Decision, NewObjective, NewPairing, Pairing, PairingError, Route, StoreError};
use std::time::Duration;

pub(super) fn whoami(t: &Turn<'_>) -> String {
    let who = match (&t.actor.user, t.actor.role) {
        (Some(u), _) => format!("You are {} (user `{}`), role {}.", u.display_name, u.id, u.role),
        (None, Some(r)) => format!(
            "You are not linked ({} user `{}`); you act as a guest with the {r} role. Send `pair` to me in a private chat to link.",
            t.ctx.chat.connector, t.msg.from_user_id
        ),
        (None, None) => format!(
            "You are not linked ({} user `{}`). Send `pair` to me in a private chat to link.",
            t.ctx.chat.connector, t.msg.from_user_id
        ),
    };
    format!("{who}\nThis chat: context `{}`{}.", t.ctx.id, if t.ctx.is_admin { ", an admin channel" } else { "" })
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut acc, mut bits) = (String::new(), 0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Upper-case, without spaces, dashes or quotes: how tokens are compared.
pub(crate) fn normalize_token(token: &str) -> String {
    token.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// SHA-256 (hex) of a normalised token (upper case, letters and digits
/// only): the only form stored.
pub fn token_hash(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, normalize_token(token).as_bytes()).as_ref())
}

/// A fresh token: 80 bits from the system CSPRNG, 16 base32 characters.
pub(crate) fn new_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 10];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| StoreError::Conflict("the system random generator failed".into()))?;
    Ok(base32(&bytes))
}

/// A started pairing: the stored request and its token, which is shown
/// this once and never stored.
#[derive(Debug, Clone)]
pub struct StartedPairing {
    /// The request.
    pub pairing: Pairing,
    /// The token (16 base32 characters).
    pub token: String,
}

/// The actor and chat as the audit log names them.
pub(super) fn who(actor: &Actor, chat: Option<&ChatRef>) -> AuditWho {
    AuditWho { actor: actor.audit_name(chat), chat: chat.map(|c| (c.connector.clone(), c.external_id.clone())) }
}

impl Gateway {
    /// Opens a pairing request for a platform identity (`ttl` defaults to
    /// `AGENT_RUNTIME_PAIRING_TTL_SECONDS`). `actor` and `chat` name
    /// who asked, for the audit log.
    pub async fn start_pairing(
        &self,
        actor: &Actor,
        chat: Option<&ChatRef>,
        connector: &str,
        connector_user_id: &str,
        display_name: &str,
        ttl: Option<Duration>,
    ) -> Result<Result<StartedPairing, PairingError>, StoreError> {
        let token = new_token()?;
        let new = NewPairing {
            token_hash: token_hash(&token),
            token_hint: format!("{}...{}", &token[..4], &token[token.len() - 4..]),
            connector: connector.to_string(),
            connector_user_id: connector_user_id.to_string(),
            display_name: display_name.to_string(),
            ttl_ms: ttl.unwrap_or(self.config.pairing_ttl).as_millis() as i64,
            max_per_window: self.config.pairing_max_requests,
        };
        let out = self.store.start_pairing(new, who(actor, chat), self.clock.now_ms()).await?;
        Ok(out.map(|pairing| StartedPairing { pairing, token }))
    }

    /// Approves the request behind `token`, creating a user with `role`
    /// (default member, never above the actor's own) and linking the identity.
    pub async fn approve_pairing(
        &self,
        actor: &Actor,
        chat: Option<&ChatRef>,
        token: &str,
        role: Option<Role>,
    ) -> Result<Result<(Pairing, User), PairingError>, StoreError> {
        let own = actor.role.unwrap_or(Role::Viewer);
        let role = role.unwrap_or(Role::Member);
        self.store.approve_pairing(token_hash(token), who(actor, chat), own, role, self.clock.now_ms()).await
    }

    /// Denies the request behind `token` (default reason "denied by admin").
    pub async fn deny_pairing(
        &self,
        actor: &Actor,
        chat: Option<&ChatRef>,
        token: &str,
        reason: Option<String>,
    ) -> Result<Result<Pairing, PairingError>, StoreError> {
        let reason = reason.unwrap_or_else(|| "denied by admin".into());
        self.store.deny_pairing(token_hash(token), who(actor, chat), reason, self.clock.now_ms()).await
    }
}

pub(super) async fn pair(g: &Gateway, t: &mut Turn<'_>) -> Result<String, StoreError> {
    let chat = t.ctx.chat.clone();
    match g.start_pairing(&t.actor, Some(&chat), &chat.connector, &t.msg.from_user_id, &t.msg.display_name, None).await? {
        Ok(StartedPairing { pairing, token }) => {
            let minutes = g.config.pairing_ttl.as_secs().div_ceil(60);
            t.log_reply = Some(format!("Pairing requested (token {}, hidden in this log).", pairing.token_hint));
            Ok(format!(
                "Pairing requested. Your token: `{token}` (valid {minutes} min). Give it to an admin, who approves it with /approve <token>."
            ))
        }
        Err(e) => Ok(e.to_string()),
    }
}

pub(super) async fn approve_pairing(g: &Gateway, t: &mut Turn<'_>, token: &str, role: Option<Role>) -> Result<String, StoreError> {
    Ok(match g.approve_pairing(&t.actor, Some(&t.ctx.chat), token, role).await? {
        Ok((p, user)) => format!(
            "Pairing approved for {} ({} user `{}`): linked as {} (user `{}`).",
            p.display_name, p.connector, p.connector_user_id, user.role, user.id
        ),
        Err(e) => e.to_string(),
    })
}

pub(super) async fn deny_pairing(g: &Gateway, t: &mut Turn<'_>, token: &str, reason: Option<String>) -> Result<String, StoreError> {
    Ok(match g.deny_pairing(&t.actor, Some(&t.ctx.chat), token, reason).await? {
        Ok(p) => format!("Pairing denied for {}.", p.display_name),
        Err(e) => e.to_string(),
    })
}

pub(super) async fn admin_channel(g: &Gateway, t: &mut Turn<'_>, enable: bool) -> Result<String, StoreError> {
    // The audit row is noted on the turn and commits with the reply.
    let ctx = g.store.set_context_admin(&t.ctx.id, enable, Vec::new(), g.clock.now_ms()).await?;
    let event = if enable { "admin_channel.enabled" } else { "admin_channel.disabled" };
    t.note(event, Decision::Info, None, Some(ctx.id.to_string()));
    Ok(if enable {
        format!("Admin channel enabled for context `{}`.", ctx.id)
    } else {
        format!("Admin channel disabled for context `{}`.", ctx.id)
    })
}

pub(super) async fn prompt(g: &Gateway, t: &mut Turn<'_>, op: PromptOp) -> Result<String, StoreError> {
    match op {
        PromptOp::Show => {
            let current = g.store.get_context(&t.ctx.id).await?.system_prompt;
            Ok(format!("Current context prompt:\n{}", if current.is_empty() { "(empty)" } else { &current }))
        }
        PromptOp::Set(text) => {
            g.store.set_context_prompt(&t.ctx.id, text).await?;
            t.note("prompt.set", Decision::Info, None, Some(t.ctx.id.to_string()));
            Ok(format!("Context prompt updated for `{}`.", t.ctx.id))
        }
        PromptOp::Clear => {
            g.store.set_context_prompt(&t.ctx.id, String::new()).await?;
            t.note("prompt.cleared", Decision::Info, None, Some(t.ctx.id.to_string()));
            Ok("Context prompt cleared.".into())
        }
    }
}

/// The Go runtime's routing defaults: (priority, due window in hours, lane).
fn class_defaults(class: &str) -> Option<(&'static str, Option<i64>, &'static str)> {
    Some(match class {
        "moderation" => ("p1", Some(2), "moderation"),
        "issue" => ("p2", Some(8), "operations"),
        "question" => ("p3", Some(48), "support"),
        "task" => ("p2", Some(24), "operations"),
        "noise" => ("p3", None, "backlog"),
        _ => return None,
    })
}

fn priority(word: &str) -> Option<&'static str> {
    match word {
        "p1" | "high" | "urgent" => Some("p1"),
        "p2" | "medium" | "normal" => Some("p2"),
        "p3" | "low" => Some("p3"),
        _ => None,
    }
}

/// `2h`, `90m`, `1d` → milliseconds (positive only).
fn due_window(word: &str) -> Option<i64> {
    let (num, unit) = word.split_at(word.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

pub(super) async fn route(g: &Gateway, t: &mut Turn<'_>, task: &str, class: &str, rest: &[String]) -> Result<String, StoreError> {
    let Some((default_priority, default_due, lane)) = class_defaults(class) else {
        return Ok("Invalid route class. Use: question, issue, task, moderation, noise.".into());
    };
    let (mut prio, mut due) = (default_priority, default_due.map(|h| h * 3_600_000));
    for (i, word) in rest.iter().enumerate() {
        match (i, priority(word)) {
            (0, Some(p)) => prio = p,
            _ => match due_window(word) {
                Some(ms) => due = Some(ms),
                None => return Ok("Invalid due window. Examples: `2h`, `8h`, `1d`, `2d`.".into()),
            },
        }
    }
    if class == "noise" {
        (prio, due) = ("p3", None);
    }
    let found = g.store.find_tasks_by_prefix(&t.ctx.workspace_id, task, 2).await?;
    let target = match found.as_slice() {
        [one] => one.id.clone(),
        [] => return Ok(format!("Task `{task}` not found in this workspace.")),
        _ => return Ok(format!("`{task}` matches more than one task; give more of the id.")),
    };
    let now = g.clock.now_ms();
    let route = Route { class: class.into(), priority: prio.into(), lane: lane.into(), due_at: due.map(|ms| now + ms) };
    g.store.route_task(&target, route.clone(), now).await?;
    t.note("task.routed", Decision::Info, Some(format!("{class} {prio} {lane}")), Some(target.to_string()));
    let due_text = route.due_at.map_or("(none)".to_string(), crate::clock::rfc3339);
    Ok(format!("Routing updated for `{target}`:\n- class: `{class}`\n- priority: `{prio}`\n- lane: `{lane}`\n- due: `{due_text}`"))
}

/// `/monitor` objectives fire every six hours.
const MONITOR_CRON: &str = "0 */6 * * *";

pub(super) async fn monitor(g: &Gateway, t: &mut Turn<'_>, goal: &str) -> Result<String, StoreError> {
    let compact = goal.split_whitespace().collect::<Vec<_>>().join(" ");
    let next_run_at = crate::domain::Schedule::parse(MONITOR_CRON, "UTC").ok().and_then(|s| s.next_after(g.clock.now_ms()));
    let new = NewObjective {
        workspace_id: t.ctx.workspace_id.clone(),
        context_id: t.ctx.id.clone(),
        title: title_from(&format!("Monitor: {compact}"), TASK_TITLE_MAX),
        prompt: format!("Monitor this target for updates and report only concrete changes:\n{goal}"),
        trigger_type: "schedule".into(),
        event_key: None,
        event_filter: None,
        cron_expr: Some(MONITOR_CRON.into()),
        timezone: "UTC".into(),
        run_at: None,
        catch_up: crate::domain::CatchUp::Latest,
        active: true,
        next_run_at,
        created_by: t.actor.audit_name(Some(&t.ctx.chat)),
    };
    // The `objective.created` row is noted on the turn and commits with the reply.
    let o = g.store.create_objective(new, Vec::new(), g.clock.now_ms()).await?;
    t.note("objective.created", Decision::Info, Some(o.title.clone()), Some(o.id.to_string()));
    let next = next_run_at.map_or_else(|| "-".to_string(), crate::clock::rfc3339);
    Ok(format!(
        "Monitoring objective created (`{}`): every 6 hours (cron `0 */6 * * *`, UTC); first run {next}. Results come to this chat; /objectives lists it.",
        o.id
    ))
}

pub(super) async fn objectives(g: &Gateway, t: &Turn<'_>) -> Result<String, StoreError> {
    let list = g.store.list_objectives(&t.ctx.id, 20).await?;
    if list.is_empty() {
        return Ok("No objectives in this chat. Create one with /monitor <what to track>.".into());
    }
    let outcomes = g.store.last_outcomes(list.iter().map(|o| o.id.clone()).collect()).await?;
    let mut out = format!("Objectives ({}):\n", list.len());
    for (o, last) in list.into_iter().zip(outcomes) {
        let state = match (o.active, &o.paused_reason) {
            (true, _) => "active",
            (false, Some(_)) => "auto-paused",
            (false, None) => "paused",
        };
        let trigger = match o.trigger_type.as_str() {
            "event" => format!("on {}", o.event_filter.as_deref().unwrap_or("any markdown change")),
            "once" => format!("once at {}", o.run_at.map_or_else(|| "-".into(), crate::clock::rfc3339)),
            _ => format!("`{}` {}", o.cron_expr.as_deref().unwrap_or_default(), o.timezone),
        };
        let next = o.next_run_at.map_or_else(|| "-".into(), crate::clock::rfc3339);
        let last = last.map_or("never ran", |l| l.as_str());
        out.push_str(&format!("- `{}` {} ({state}, {trigger}; next {next}; last {last})\n", o.id, o.title));
    }
    Ok(out.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_80_bit_base32_and_compare_loosely() {
        let t = new_token().expect("token");
        assert_eq!(t.len(), 16);
        assert!(t.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        assert_ne!(t, new_token().expect("second"));
        assert_eq!(token_hash(&t.to_lowercase()), token_hash(&format!("`{}-{}`", &t[..8], &t[8..])));
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn route_words_parse() {
        assert_eq!(due_window("2h"), Some(7_200_000));
        assert_eq!(due_window("1d"), Some(86_400_000));
        assert_eq!(due_window("0h"), None);
        assert_eq!(due_window("h"), None);
        assert_eq!(priority("urgent"), Some("p1"));
        assert_eq!(class_defaults("noise"), Some(("p3", None, "backlog")));
    }
}
