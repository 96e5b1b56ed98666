//! Chats and message envelopes: what connectors hand the gateway (`Inbound`)
//! and what the outbox hands publishers (`OutboundMessage`).

use super::{ChatKind, ContextId, OutboxId, TaskId, TraceId, WorkspaceId};
use crate::clock::UnixMillis;
use serde::Serialize;
use std::fmt;

/// One chat on one connector: a Telegram chat, a Discord channel, an API session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ChatRef {
    /// Connector name, lower case (`telegram`, `discord`, `email`, `codex`, ...).
    pub connector: String,
    /// The platform's id of the chat.
    pub external_id: String,
}

/// Why a connector name or chat id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatRefError {
    /// → 400: connector names are 1–32 characters of `a-z 0-9 _ -`.
    #[error("connector must be 1-32 characters of a-z, 0-9, '_' or '-' (got {0:?})")]
    BadConnector(String),
    /// → 400: external ids are 1–256 printable characters.
    #[error("external_id must be 1-256 characters without control characters")]
    BadExternalId,
}

impl ChatRef {
    /// Validates and builds a chat reference; the connector is lower-cased.
    pub fn new(connector: &str, external_id: &str) -> Result<Self, ChatRefError> {
        let connector = connector.trim().to_ascii_lowercase();
        let ok = !connector.is_empty()
            && connector.len() <= 32
            && connector.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(ChatRefError::BadConnector(connector));
        }
        let external_id = external_id.trim();
        if external_id.is_empty() || external_id.len() > 256 || external_id.chars().any(char::is_control) {
            return Err(ChatRefError::BadExternalId);
        }
        Ok(Self { connector, external_id: external_id.to_string() })
    }
}

impl fmt::Display for ChatRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.connector, self.external_id)
    }
}

/// A context: the runtime's record of one chat, inside one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Context {
    /// The context id.
    pub id: ContextId,
    /// The workspace the chat belongs to.
    pub workspace_id: WorkspaceId,
    /// The chat.
    pub chat: ChatRef,
    /// Display name of the chat at first contact.
    pub display_name: String,
    /// Per-context system prompt override (empty when unset).
    pub system_prompt: String,
    /// Whether this is an admin context.
    pub is_admin: bool,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// An inbound chat message, validated at the edge.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Where it came from.
    pub chat: ChatRef,
    /// The platform's id of the sender.
    pub from_user_id: String,
    /// The sender's display name.
    pub display_name: String,
    /// The text, trimmed.
    pub text: String,
    /// A direct message or a group.
    pub kind: ChatKind,
    /// In a group: whether the message mentions the bot.
    pub mentioned: bool,
    /// Unique per connector: a second message with the same key is a duplicate.
    pub dedupe_key: String,
    /// Follows this message through tasks and the outbox.
    pub trace_id: TraceId,
}

/// What an outbox row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A direct answer to an inbound message.
    Reply,
    /// A task outcome notice.
    TaskNotice,
    /// An approval's outcome or expiry, told to the requesting chat.
    ApprovalNotice,
}

impl MessageKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reply => "reply",
            Self::TaskNotice => "task_notice",
            Self::ApprovalNotice => "approval_notice",
        }
    }
    /// Parses a stored name (unknown → `TaskNotice`, the conservative reading).
    pub fn parse(s: &str) -> Self {
        match s {
            "reply" => Self::Reply,
            "approval_notice" => Self::ApprovalNotice,
            _ => Self::TaskNotice,
        }
    }
}

/// Delivery status of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Not delivered yet; will be tried at `next_attempt_at`.
    Pending,
    /// Delivered (or handed to the poll mailbox).
    Sent,
    /// Given up; `last_error` says why.
    Failed,
}

impl OutboxStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One outbox row.
#[derive(Debug, Clone, Serialize)]
pub struct OutboundMessage {
    /// Row id (monotonic).
    pub id: OutboxId,
    /// Target chat.
    pub chat: ChatRef,
    /// Reply or notice.
    pub kind: MessageKind,
    /// The text to deliver.
    pub body: String,
    /// Delivery status.
    pub status: OutboxStatus,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Last delivery error, if any.
    pub last_error: Option<String>,
    /// The platform's id of the delivered message.
    pub platform_message_id: Option<String>,
    /// The task this notice is about.
    pub task_id: Option<TaskId>,
    /// Trace id of the message or task that caused it.
    pub trace_id: Option<TraceId>,
    /// When it was written.
    pub created_at: UnixMillis,
}
