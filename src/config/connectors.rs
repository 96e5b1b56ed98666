//! Chat connectors: each is enabled by its credentials and points at its
//! platform through a base URL taken from here (so tests use local peers).

use super::reader::{Reader, Secret};
use super::validate;
use std::time::Duration;

/// Settings shared by the connectors, and each connector's own.
#[derive(Debug, Clone)]
pub struct ConnectorsConfig {
    /// Telegram, when `AGENT_RUNTIME_TELEGRAM_TOKEN` is set.
    pub telegram: Option<TelegramConfig>,
    /// `AGENT_RUNTIME_COMMAND_SYNC_ENABLED` (default true): publish the
    /// command menu to each platform at start.
    pub command_sync: bool,
    /// `AGENT_RUNTIME_ATTACHMENT_MAX_BYTES` (default 20 MiB, Telegram's
    /// download limit): larger attachments are not downloaded; the sender is told.
    pub attachment_max_bytes: u64,
}

/// The Telegram Bot API connector.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    /// `AGENT_RUNTIME_TELEGRAM_TOKEN` (secret).
    pub token: Secret,
    /// `AGENT_RUNTIME_TELEGRAM_API_BASE` (default `https://api.telegram.org`).
    pub api_base: String,
    /// `AGENT_RUNTIME_TELEGRAM_POLL_SECONDS` (default 25, at most 50): how long
    /// one `getUpdates` long poll waits for news.
    pub poll: Duration,
}

pub(super) fn read(r: &mut Reader<'_>) -> ConnectorsConfig {
    let token = r.secret("AGENT_RUNTIME_TELEGRAM_TOKEN");
    let api_base = r.parsed("AGENT_RUNTIME_TELEGRAM_API_BASE", "https://api.telegram.org".to_string(), validate::base_url);
    let poll = r.seconds("AGENT_RUNTIME_TELEGRAM_POLL_SECONDS", 25, 0, 50);
    ConnectorsConfig {
        telegram: token.filter(|t| !t.expose().trim().is_empty()).map(|token| TelegramConfig { token, api_base, poll }),
        command_sync: r.bool("AGENT_RUNTIME_COMMAND_SYNC_ENABLED", true),
        attachment_max_bytes: r.int("AGENT_RUNTIME_ATTACHMENT_MAX_BYTES", 20 << 20, 0, 2 << 30),
    }
}
