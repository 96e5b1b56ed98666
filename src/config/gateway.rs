//! The gateway's slice of the configuration: input limits, who unlinked
//! senders are, channel rules for LLM replies, pairing and approvals, and
//! how much a chat may store.

use super::reader::Reader;
use crate::domain::Role;
use std::time::Duration;

/// Chat input limits, channel rules, pairing and approval settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `AGENT_RUNTIME_MAX_MESSAGE_BYTES` (default 32768): longer chat text is refused.
    pub max_message_bytes: usize,
    /// `AGENT_RUNTIME_GATEWAY_GUEST_ROLE` (default `none`): the role unlinked
    /// senders act with (`member`, `viewer` or `none`). With `none` a
    /// stranger may only pair and ask for help.
    pub guest_role: Option<Role>,
    /// Rules for free text that would reach the LLM.
    pub rules: ChannelRules,
    /// `AGENT_RUNTIME_PAIRING_TTL_SECONDS` (default 600).
    pub pairing_ttl: Duration,
    /// `AGENT_RUNTIME_PAIRING_MAX_REQUESTS` (default 3): pairing requests one
    /// sender may open within one TTL.
    pub pairing_max_requests: u32,
    /// `AGENT_RUNTIME_AGENT_SENSITIVE_APPROVAL_TTL_SECONDS` (default 600):
    /// how long an action request waits for a decision.
    pub approval_ttl: Duration,
    /// `AGENT_RUNTIME_ACTION_WEBHOOK_TIMEOUT_SECONDS` (default 10).
    pub webhook_timeout: Duration,
    /// `AGENT_RUNTIME_ATTACHMENT_CHAT_QUOTA_BYTES` (default 100 MiB): the most
    /// attachment bytes one chat's inbox directory may hold; a file that
    /// would go past it is not kept (0: no attachments are kept).
    pub attachment_chat_quota_bytes: u64,
}

/// Channel rules (the Go runtime's safety policy), applied to every
/// non-command message that would reach the LLM.
#[derive(Debug, Clone)]
pub struct ChannelRules {
    /// `AGENT_RUNTIME_LLM_ALLOW_DM` (default true).
    pub allow_dm: bool,
    /// `AGENT_RUNTIME_LLM_REQUIRE_MENTION_IN_GROUPS` (default true).
    pub require_mention_in_groups: bool,
    /// `AGENT_RUNTIME_LLM_ALLOWED_ROLES` (CSV; empty: every role and unlinked senders).
    pub allowed_roles: Vec<Role>,
    /// `AGENT_RUNTIME_LLM_ALLOWED_CONTEXT_IDS` (CSV; empty: every context).
    pub allowed_context_ids: Vec<String>,
    /// `AGENT_RUNTIME_LLM_RATE_LIMIT_PER_WINDOW` (default 8; 0 disables).
    pub rate_limit_per_window: u32,
    /// `AGENT_RUNTIME_LLM_RATE_LIMIT_WINDOW_SECONDS` (default 60).
    pub rate_limit_window: Duration,
    /// `AGENT_RUNTIME_TASK_RATE_LIMIT_PER_WINDOW` (default 10; 0 disables):
    /// commands that queue work or write (`/task`, `/monitor`, `/cancel`)
    /// per non-admin sender and chat per window.
    pub task_rate_limit_per_window: u32,
    /// `AGENT_RUNTIME_TASK_RATE_LIMIT_WINDOW_SECONDS` (default 600).
    pub task_rate_limit_window: Duration,
}

impl Default for ChannelRules {
    fn default() -> Self {
        Self {
            allow_dm: true,
            require_mention_in_groups: true,
            allowed_roles: Vec::new(),
            allowed_context_ids: Vec::new(),
            rate_limit_per_window: 8,
            rate_limit_window: Duration::from_secs(60),
            task_rate_limit_per_window: 10,
            task_rate_limit_window: Duration::from_secs(600),
        }
    }
}

fn csv(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_string).collect()
}

fn roles(s: &str) -> Result<Vec<Role>, String> {
    csv(s)
        .iter()
        .map(|v| Role::parse(v).ok_or_else(|| format!("unknown role {v:?} (use viewer, member, operator, admin, overlord)")))
        .collect()
}

fn guest(s: &str) -> Result<Option<Role>, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "none" => Ok(None),
        "viewer" => Ok(Some(Role::Viewer)),
        "member" => Ok(Some(Role::Member)),
        other => Err(format!("must be member, viewer or none (unlinked senders never get {other:?})")),
    }
}

pub(super) fn read(r: &mut Reader<'_>) -> GatewayConfig {
    let rules = ChannelRules {
        allow_dm: r.bool("AGENT_RUNTIME_LLM_ALLOW_DM", true),
        require_mention_in_groups: r.bool("AGENT_RUNTIME_LLM_REQUIRE_MENTION_IN_GROUPS", true),
        allowed_roles: r.parsed("AGENT_RUNTIME_LLM_ALLOWED_ROLES", Vec::new(), roles),
        allowed_context_ids: r.parsed("AGENT_RUNTIME_LLM_ALLOWED_CONTEXT_IDS", Vec::new(), |s| Ok(csv(s))),
        rate_limit_per_window: r.int("AGENT_RUNTIME_LLM_RATE_LIMIT_PER_WINDOW", 8, 0, 100_000) as u32,
        rate_limit_window: r.seconds("AGENT_RUNTIME_LLM_RATE_LIMIT_WINDOW_SECONDS", 60, 1, 86_400),
        task_rate_limit_per_window: r.int("AGENT_RUNTIME_TASK_RATE_LIMIT_PER_WINDOW", 10, 0, 100_000) as u32,
        task_rate_limit_window: r.seconds("AGENT_RUNTIME_TASK_RATE_LIMIT_WINDOW_SECONDS", 600, 1, 86_400),
    };
    GatewayConfig {
        max_message_bytes: r.int("AGENT_RUNTIME_MAX_MESSAGE_BYTES", 32_768, 256, 1 << 20) as usize,
        guest_role: r.parsed_as("AGENT_RUNTIME_GATEWAY_GUEST_ROLE", None, "none", guest),
        rules,
        pairing_ttl: r.seconds("AGENT_RUNTIME_PAIRING_TTL_SECONDS", 600, 10, 86_400),
        pairing_max_requests: r.int("AGENT_RUNTIME_PAIRING_MAX_REQUESTS", 3, 1, 100) as u32,
        approval_ttl: r.seconds("AGENT_RUNTIME_AGENT_SENSITIVE_APPROVAL_TTL_SECONDS", 600, 1, 7 * 86_400),
        webhook_timeout: r.seconds("AGENT_RUNTIME_ACTION_WEBHOOK_TIMEOUT_SECONDS", 10, 1, 600),
        attachment_chat_quota_bytes: r.int("AGENT_RUNTIME_ATTACHMENT_CHAT_QUOTA_BYTES", 100 << 20, 0, 1 << 40),
    }
}
