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
    /// Discord, when `AGENT_RUNTIME_DISCORD_TOKEN` is set.
    pub discord: Option<DiscordConfig>,
    /// Email (IMAP in, SMTP out), only when `AGENT_RUNTIME_EMAIL_ENABLED` is
    /// true and the IMAP host and credentials are set.
    pub email: Option<EmailConfig>,
    /// `AGENT_RUNTIME_SMTP_*`: outgoing mail (email replies and the
    /// `send_email` action), when `AGENT_RUNTIME_SMTP_HOST` is set.
    pub smtp: Option<SmtpConfig>,
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

/// The Discord connector (gateway websocket in, REST out).
#[derive(Debug, Clone)]
pub struct DiscordConfig {
    /// `AGENT_RUNTIME_DISCORD_TOKEN` (secret; the bot token).
    pub token: Secret,
    /// `AGENT_RUNTIME_DISCORD_API_BASE` (default `https://discord.com`; a
    /// trailing `/api/v10` is accepted and dropped).
    pub api_base: String,
    /// `AGENT_RUNTIME_DISCORD_GATEWAY_URL`: the gateway websocket; unset →
    /// asked of the REST API (`GET /gateway`).
    pub gateway_url: Option<String>,
    /// `AGENT_RUNTIME_DISCORD_COMMAND_GUILD_IDS`: slash commands are synced
    /// to these guilds (instant) instead of globally (up to an hour).
    pub command_guild_ids: Vec<u64>,
    /// `AGENT_RUNTIME_DISCORD_CATCHUP_MESSAGES` (default 50, at most 100):
    /// after a reconnect, at most this many missed messages are fetched per
    /// channel the bot serves.
    pub catch_up: u8,
}

/// How a mail connection is protected.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MailTls {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connect, then STARTTLS (required, never optional).
    StartTls,
    /// No TLS: allowed only when the host is a loopback address.
    Plain,
}

// `config check` shows a default through `Debug`: as the operator writes it.
impl std::fmt::Debug for MailTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Implicit => "implicit",
            Self::StartTls => "starttls",
            Self::Plain => "plain",
        })
    }
}

impl MailTls {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "implicit" | "tls" | "ssl" => Ok(Self::Implicit),
            "starttls" => Ok(Self::StartTls),
            "plain" | "none" => Ok(Self::Plain),
            _ => Err("must be implicit, starttls or plain".into()),
        }
    }
}

/// The email connector: a mailbox read over IMAP.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `AGENT_RUNTIME_IMAP_HOST`.
    pub host: String,
    /// `AGENT_RUNTIME_IMAP_PORT` (default 993 for implicit TLS, else 143).
    pub port: u16,
    /// `AGENT_RUNTIME_IMAP_TLS` (default `implicit`).
    pub tls: MailTls,
    /// `AGENT_RUNTIME_IMAP_USERNAME`.
    pub username: String,
    /// `AGENT_RUNTIME_IMAP_PASSWORD` (secret).
    pub password: Secret,
    /// `AGENT_RUNTIME_IMAP_MAILBOX` (default `INBOX`).
    pub mailbox: String,
    /// `AGENT_RUNTIME_IMAP_POLL_SECONDS` (default 60): the polling interval
    /// when the server has no IDLE, and the longest IDLE before re-checking.
    pub poll: Duration,
    /// `AGENT_RUNTIME_EMAIL_AUTHSERV_ID`: the `authserv-id` of the receiving
    /// mail server's `Authentication-Results` headers. Unset → no sender is
    /// ever trusted (everything goes to review).
    pub authserv_id: Option<String>,
    /// `AGENT_RUNTIME_EMAIL_ADDRESS` (default `AGENT_RUNTIME_SMTP_FROM`, else
    /// the IMAP username): the runtime's own address; never replied to.
    pub address: String,
    /// `AGENT_RUNTIME_EMAIL_CA_FILE`: extra PEM root certificates trusted
    /// for IMAP and SMTP (a private mail server's CA).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Outgoing mail.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `AGENT_RUNTIME_SMTP_HOST`.
    pub host: String,
    /// `AGENT_RUNTIME_SMTP_PORT` (default 587; 465 for implicit TLS; 25 plain).
    pub port: u16,
    /// `AGENT_RUNTIME_SMTP_TLS` (default `starttls`).
    pub tls: MailTls,
    /// `AGENT_RUNTIME_SMTP_USERNAME` (login when set).
    pub username: Option<String>,
    /// `AGENT_RUNTIME_SMTP_PASSWORD` (secret).
    pub password: Option<Secret>,
    /// `AGENT_RUNTIME_SMTP_FROM`: the sender address (required).
    pub from: String,
    /// `AGENT_RUNTIME_EMAIL_CA_FILE` (shared with IMAP).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Whether `host` is a loopback name or address (plain mail is allowed only there).
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn guild_ids(raw: &str) -> Result<Vec<u64>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map_err(|_| format!("{s:?} is not a Discord guild id (a number)")))
        .collect()
}

fn discord_base(raw: &str) -> Result<String, String> {
    let url = validate::base_url(raw)?;
    Ok(url.trim_end_matches("/api/v10").trim_end_matches("/api").to_string())
}

fn ws_url(raw: &str) -> Result<String, String> {
    match reqwest::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "ws" | "wss") && u.host().is_some() => Ok(raw.to_string()),
        _ => Err("must be a ws:// or wss:// URL".to_string()),
    }
}

fn read_discord(r: &mut Reader<'_>) -> Option<DiscordConfig> {
    let token = r.secret("AGENT_RUNTIME_DISCORD_TOKEN");
    let api_base = r.parsed("AGENT_RUNTIME_DISCORD_API_BASE", "https://discord.com".to_string(), discord_base);
    let gateway_url = r.parsed("AGENT_RUNTIME_DISCORD_GATEWAY_URL", None, |raw| ws_url(raw).map(Some));
    let command_guild_ids = r.parsed("AGENT_RUNTIME_DISCORD_COMMAND_GUILD_IDS", Vec::new(), guild_ids);
    let catch_up = r.int("AGENT_RUNTIME_DISCORD_CATCHUP_MESSAGES", 50, 0, 100) as u8;
    let token = token.filter(|t| !t.expose().trim().is_empty())?;
    Some(DiscordConfig { token, api_base, gateway_url, command_guild_ids, catch_up })
}

fn read_email(r: &mut Reader<'_>, smtp_from: Option<&str>) -> Option<EmailConfig> {
    let enabled = r.bool("AGENT_RUNTIME_EMAIL_ENABLED", false);
    let host = r.opt_string("AGENT_RUNTIME_IMAP_HOST");
    let tls = r.parsed("AGENT_RUNTIME_IMAP_TLS", MailTls::Implicit, MailTls::parse);
    let port = r.int("AGENT_RUNTIME_IMAP_PORT", if tls == MailTls::Implicit { 993 } else { 143 }, 1, 65535) as u16;
    let username = r.opt_string("AGENT_RUNTIME_IMAP_USERNAME");
    let password = r.secret("AGENT_RUNTIME_IMAP_PASSWORD");
    let mailbox = r.string("AGENT_RUNTIME_IMAP_MAILBOX", "INBOX");
    let poll = r.seconds("AGENT_RUNTIME_IMAP_POLL_SECONDS", 60, 1, 3600);
    let authserv_id = r.opt_string("AGENT_RUNTIME_EMAIL_AUTHSERV_ID");
    let address = r.opt_string("AGENT_RUNTIME_EMAIL_ADDRESS");
    let ca_file = r.opt_string("AGENT_RUNTIME_EMAIL_CA_FILE").map(std::path::PathBuf::from);
    if !enabled {
        if host.is_some() {
            r.problem(
                super::Severity::Warning,
                "AGENT_RUNTIME_EMAIL_ENABLED",
                "AGENT_RUNTIME_IMAP_HOST is set but email is off; set AGENT_RUNTIME_EMAIL_ENABLED=true to read the mailbox",
            );
        }
        return None;
    }
    let (Some(host), Some(username), Some(password)) = (host, username, password) else {
        r.problem(
            super::Severity::Error,
            "AGENT_RUNTIME_EMAIL_ENABLED",
            "email is enabled but AGENT_RUNTIME_IMAP_HOST, AGENT_RUNTIME_IMAP_USERNAME and AGENT_RUNTIME_IMAP_PASSWORD are not all set",
        );
        return None;
    };
    if tls == MailTls::Plain && !is_loopback_host(&host) {
        r.problem(
            super::Severity::Error,
            "AGENT_RUNTIME_IMAP_TLS",
            "plain IMAP is allowed only to a loopback host; use implicit or starttls",
        );
        return None;
    }
    if authserv_id.is_none() {
        r.problem(
            super::Severity::Warning,
            "AGENT_RUNTIME_EMAIL_AUTHSERV_ID",
            "unset: no sender can be authenticated, so every email goes to an admin for review",
        );
    }
    let address = address.or(smtp_from.map(str::to_string)).unwrap_or_else(|| username.clone()).to_ascii_lowercase();
    Some(EmailConfig { host, port, tls, username, password, mailbox, poll, authserv_id, address, ca_file })
}

fn read_smtp(r: &mut Reader<'_>) -> Option<SmtpConfig> {
    let host = r.opt_string("AGENT_RUNTIME_SMTP_HOST");
    let tls = r.parsed("AGENT_RUNTIME_SMTP_TLS", MailTls::StartTls, MailTls::parse);
    let default_port = match tls {
        MailTls::Implicit => 465,
        MailTls::StartTls => 587,
        MailTls::Plain => 25,
    };
    let port = r.int("AGENT_RUNTIME_SMTP_PORT", default_port, 1, 65535) as u16;
    let username = r.opt_string("AGENT_RUNTIME_SMTP_USERNAME");
    let password = r.secret("AGENT_RUNTIME_SMTP_PASSWORD");
    let from = r.opt_string("AGENT_RUNTIME_SMTP_FROM");
    let ca_file = r.opt_string("AGENT_RUNTIME_EMAIL_CA_FILE").map(std::path::PathBuf::from);
    let host = host?;
    let Some(from) = from.filter(|f| f.contains('@')) else {
        r.problem(super::Severity::Error, "AGENT_RUNTIME_SMTP_FROM", "AGENT_RUNTIME_SMTP_HOST is set, so a sender address is required");
        return None;
    };
    if tls == MailTls::Plain && !is_loopback_host(&host) {
        r.problem(
            super::Severity::Error,
            "AGENT_RUNTIME_SMTP_TLS",
            "plain SMTP is allowed only to a loopback host; use starttls or implicit",
        );
        return None;
    }
    if username.is_some() != password.is_some() {
        r.problem(
            super::Severity::Error,
            "AGENT_RUNTIME_SMTP_USERNAME",
            "set both AGENT_RUNTIME_SMTP_USERNAME and AGENT_RUNTIME_SMTP_PASSWORD, or neither",
        );
        return None;
    }
    Some(SmtpConfig { host, port, tls, username, password, from: from.to_ascii_lowercase(), ca_file })
}

pub(super) fn read(r: &mut Reader<'_>) -> ConnectorsConfig {
    let token = r.secret("AGENT_RUNTIME_TELEGRAM_TOKEN");
    let api_base = r.parsed("AGENT_RUNTIME_TELEGRAM_API_BASE", "https://api.telegram.org".to_string(), validate::base_url);
    let poll = r.seconds("AGENT_RUNTIME_TELEGRAM_POLL_SECONDS", 25, 0, 50);
    let discord = read_discord(r);
    let smtp = read_smtp(r);
    let email = read_email(r, smtp.as_ref().map(|s| s.from.as_str()));
    if email.is_some() && smtp.is_none() {
        r.problem(
            super::Severity::Warning,
            "AGENT_RUNTIME_SMTP_HOST",
            "email is enabled but SMTP is not configured: mail is read and held or queued, but no answer can be sent",
        );
    }
    ConnectorsConfig {
        telegram: token.filter(|t| !t.expose().trim().is_empty()).map(|token| TelegramConfig { token, api_base, poll }),
        discord,
        email,
        smtp,
        command_sync: r.bool("AGENT_RUNTIME_COMMAND_SYNC_ENABLED", true),
        attachment_max_bytes: r.int("AGENT_RUNTIME_ATTACHMENT_MAX_BYTES", 20 << 20, 0, 2 << 30),
    }
}
