//! Chats and message envelopes: what connectors hand the gateway (`Inbound`)
//! and what the outbox hands publishers (`OutboundMessage`).

use super::{ChatKind, ContextId, OutboxId, TaskId, TraceId, WorkspaceId};
use crate::clock::UnixMillis;
use serde::{Deserialize, Serialize};
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
    /// Platform details the gateway carries but does not interpret.
    pub meta: InboundMeta,
}

/// What a connector knows about a message beyond its text: stored with the
/// inbox row (as JSON), so a message can be processed again after a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InboundMeta {
    /// The bot's own handle on the platform (`/cmd@handle` for another bot is not for us).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot_name: Option<String>,
    /// The platform's id of this message (replies in groups answer it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// A button press: the platform's id of the message that carried the
    /// button. The text is then the button's data (see [`Button`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pressed: Option<String>,
    /// Attachments saved under the chat's workspace (paths relative to it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub saved: Vec<String>,
    /// Attachments that were not saved, each with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Email: whether the receiving server authenticated the sender. Set by
    /// connectors whose platform does not vouch for who sent a message; a
    /// sender who failed, or passed but is not linked to an identity, is
    /// untrusted (see `Gateway::hold_for_review`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_check: Option<SenderVerdict>,
    /// Text that is not a command becomes a task (`/task <text>`) instead of
    /// a chat answer (email: a mail is a request, as in the Go runtime).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub text_is_task: bool,
    /// Email: what the answer needs to join the sender's thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<MailThread>,
    /// The text as it may be copied (event log, chat log, the stored row
    /// once handled) when the real one carries a secret (a pairing token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
}

/// The outcome of checking a sender's authentication (email's
/// `Authentication-Results`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderVerdict {
    /// Whether the sender is who the message says.
    pub passed: bool,
    /// One line on why.
    pub detail: String,
}

/// An email thread: the subject and the `References` chain an answer carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailThread {
    /// The subject of the answer (`Re: <the mail's subject>`).
    pub subject: String,
    /// Message-IDs of the thread, oldest first (without angle brackets).
    pub references: Vec<String>,
}

/// A file that came with a message, downloaded by the connector (within
/// `AGENT_RUNTIME_MAX_ATTACHMENT_BYTES`), saved by the gateway.
#[derive(Debug, Clone)]
pub struct IncomingFile {
    /// The name the sender gave it (sanitised before use).
    pub name: String,
    /// The content.
    pub bytes: Vec<u8>,
}

/// An inline button on an outbound message. Its `data` is all the platform
/// sends back when it is pressed (Telegram allows 64 bytes); the gateway
/// reads it again, with the same permission checks as the typed command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    /// The label.
    pub label: String,
    /// What a press sends back.
    pub data: String,
}

/// What a pressed button asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonPress {
    /// Approve the action request with this id.
    Approve(String),
    /// Deny the action request with this id.
    Deny(String),
}

impl Button {
    /// The buttons of an action request: Approve and Deny, carrying only its id.
    pub fn decide(approval_id: &str) -> Vec<Button> {
        vec![
            Button { label: "Approve".into(), data: format!("approve:{approval_id}") },
            Button { label: "Deny".into(), data: format!("deny:{approval_id}") },
        ]
    }

    /// Reads a button's data back (`None`: not a button of ours).
    pub fn parse(data: &str) -> Option<ButtonPress> {
        // Only a whole request id (`act_` + 32 hex digits): a press never resolves an id prefix.
        let ok = |id: &str| id.len() == 36 && id.starts_with("act_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit());
        match data.split_once(':') {
            Some(("approve", id)) if ok(id) => Some(ButtonPress::Approve(id.to_string())),
            Some(("deny", id)) if ok(id) => Some(ButtonPress::Deny(id.to_string())),
            _ => None,
        }
    }
}

/// How an outbound message is delivered, beyond its text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboundOptions {
    /// Inline buttons (on the last part of a split message).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
    /// Edit this platform message (removing its buttons) instead of sending a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit_of: Option<String>,
    /// The platform message this one answers (threads it, where the platform can).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Email: the thread the answer joins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<MailThread>,
}

impl OutboundOptions {
    /// Whether every option is unset.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
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
    /// Buttons, edit target, reply target.
    pub options: OutboundOptions,
    /// Parts of a split message already delivered (a retry sends the rest).
    pub parts_sent: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ApprovalId;

    #[test]
    fn button_data_round_trips_and_only_whole_request_ids_are_read_back() {
        let id = ApprovalId::random();
        let [approve, deny] = <[Button; 2]>::try_from(Button::decide(id.as_str())).expect("two buttons");
        assert!(approve.data.len() <= 64, "Telegram allows 64 bytes of callback data");
        assert_eq!(Button::parse(&approve.data), Some(ButtonPress::Approve(id.to_string())));
        assert_eq!(Button::parse(&deny.data), Some(ButtonPress::Deny(id.to_string())));
        for bad in [
            "approve:act_",
            "approve:act_0",
            "run:act_0123456789abcdef0123456789abcdef",
            "approve",
            "",
            "deny:act_0123456789abcdef0123456789abcdeg",
        ] {
            assert_eq!(Button::parse(bad), None, "{bad}");
        }
    }
}
