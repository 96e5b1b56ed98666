//! The gateway: every inbound message is persisted, parsed at the edge into a
//! [`Command`], dispatched, and answered through the outbox.
//!
//! Invariants: the gateway never names a platform (it sees `ChatRef`); a
//! message is in the inbox before anything acts on it; a task created from a
//! message carries the run key `inbox:<id>`, so handling a message twice never
//! creates two tasks.

mod command;
mod replies;

pub use command::{COMMANDS, Command, CommandSpec, Parsed, parse, usage};

use crate::agent::{Llm, PromptBuilder};
use crate::clock::SharedClock;
use crate::config::GatewayConfig;
use crate::domain::{Context, Inbound, MessageKind, OutboxId};
use crate::orchestrator::OrchestratorHandle;
use crate::store::{NewOutbound, Store, StoreError};
use crate::workspace::{Direction, Workspaces};
use std::sync::Arc;
use tokio::sync::Notify;

/// Why a message could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// → 413 / a chat notice: the text is longer than `AGENT_RUNTIME_MAX_MESSAGE_BYTES`.
    #[error("message is too long ({len} bytes; the limit is {max})")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// → 500/503: the store failed; nothing was half-written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the reply reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Returned in the response of the call that brought the message (API
    /// chat); stored as already sent.
    Inline,
    /// Sent by the outbox worker through the connector's publisher.
    Outbox,
}

/// The result of handling one message.
#[derive(Debug, Clone)]
pub struct Handled {
    /// The reply, if the message gets one.
    pub reply: Option<String>,
    /// The chat's context.
    pub context: Context,
    /// The message was a duplicate and was not handled again; `reply` is
    /// then the reply given the first time (if it has been written yet).
    pub duplicate: bool,
    /// The reply's outbox row.
    pub outbox_id: Option<OutboxId>,
}

/// The gateway's parts.
#[derive(Clone)]
pub struct Gateway {
    store: Store,
    orchestrator: OrchestratorHandle,
    llm: Llm,
    llm_enabled: bool,
    prompts: PromptBuilder,
    workspaces: Workspaces,
    clock: SharedClock,
    config: GatewayConfig,
    outbox_ready: Arc<Notify>,
}

/// The gateway's dependencies.
pub struct GatewayParts {
    /// The store.
    pub store: Store,
    /// Task submission.
    pub orchestrator: OrchestratorHandle,
    /// The LLM for free-text replies.
    pub llm: Llm,
    /// `AGENT_RUNTIME_LLM_ENABLED`.
    pub llm_enabled: bool,
    /// System prompts.
    pub prompts: PromptBuilder,
    /// Workspace tree.
    pub workspaces: Workspaces,
    /// Time.
    pub clock: SharedClock,
    /// Limits.
    pub config: GatewayConfig,
    /// Poked when a reply waits in the outbox.
    pub outbox_ready: Arc<Notify>,
}

impl Gateway {
    /// A gateway over these parts.
    pub fn new(p: GatewayParts) -> Self {
        Self {
            store: p.store,
            orchestrator: p.orchestrator,
            llm: p.llm,
            llm_enabled: p.llm_enabled,
            prompts: p.prompts,
            workspaces: p.workspaces,
            clock: p.clock,
            config: p.config,
            outbox_ready: p.outbox_ready,
        }
    }

    /// Checks the edge limits on a message's text.
    fn check_text(&self, text: &str) -> Result<(), GatewayError> {
        if text.len() > self.config.max_message_bytes {
            return Err(GatewayError::TooLong { len: text.len(), max: self.config.max_message_bytes });
        }
        Ok(())
    }

    /// Persists, dispatches and answers one inbound message.
    #[tracing::instrument(skip_all, fields(chat = %msg.chat, trace_id = %msg.trace_id))]
    pub async fn handle(&self, msg: Inbound, delivery: Delivery) -> Result<Handled, GatewayError> {
        self.check_text(&msg.text)?;
        let record = self.store.record_inbound(&msg, self.clock.now_ms()).await?;
        if record.duplicate {
            let reply = self.store.reply_to_inbound(record.inbox_id).await?;
            return Ok(Handled { reply, context: record.context, duplicate: true, outbox_id: None });
        }
        let ctx = record.context;
        let mut failure = None;
        let reply = match parse(&msg.text, None) {
            Parsed::NotForUs => None,
            Parsed::Command(cmd) => {
                tracing::debug!(cmd = cmd.name(), "command");
                let (reply, error) = self.command(&ctx, &msg, record.inbox_id, cmd).await;
                failure = error;
                Some(reply)
            }
            Parsed::Usage(name) => Some(format!("Usage: {}", usage(name))),
            Parsed::Unknown(name) => Some(format!("Unknown command /{name}. Try /help.")),
            Parsed::Text(text) => self.free_text(&ctx, &text).await,
        };
        let outbound = reply.as_ref().map(|body| NewOutbound {
            chat: msg.chat.clone(),
            kind: MessageKind::Reply,
            body: body.clone(),
            task_id: None,
            trace_id: Some(msg.trace_id.clone()),
        });
        let outbox_id =
            self.store.finish_inbound(record.inbox_id, failure, outbound, delivery == Delivery::Inline, self.clock.now_ms()).await?;
        if delivery == Delivery::Outbox && outbox_id.is_some() {
            self.outbox_ready.notify_one();
        }
        let mut log = vec![(Direction::Inbound, msg.from_user_id.clone(), msg.text.clone())];
        if let Some(r) = &reply {
            log.push((Direction::Outbound, "agent-runtime".to_string(), r.clone()));
        }
        if let Err(e) = self.workspaces.append_chat_log(&ctx.workspace_id, &msg.chat, &ctx.display_name, log).await {
            tracing::warn!(error = %e, "could not append to the chat log");
        }
        Ok(Handled { reply, context: ctx, duplicate: false, outbox_id })
    }

    /// Runs a command; returns the reply and, when the command failed on our
    /// side, the error recorded on the inbox row.
    async fn command(&self, ctx: &Context, msg: &Inbound, inbox_id: i64, cmd: Command) -> (String, Option<String>) {
        let result = match cmd {
            Command::Help => Ok(replies::help()),
            Command::Task { prompt } => replies::task(self, ctx, msg, inbox_id, prompt).await,
            Command::Tasks => replies::tasks(self, ctx).await,
            Command::Status => replies::status(self, ctx).await,
            Command::Cancel { id } => replies::cancel(self, ctx, &id).await,
        };
        match result {
            Ok(reply) => (reply, None),
            Err(e) => {
                tracing::error!(error = %e, "command failed");
                ("Sorry, something went wrong on our side (the store is unavailable). Please try again.".to_string(), Some(e.to_string()))
            }
        }
    }

    async fn free_text(&self, ctx: &Context, text: &str) -> Option<String> {
        if text.is_empty() {
            return None;
        }
        if !self.llm_enabled || !self.llm.is_configured() {
            return Some(
                "I answer commands here; try /help. (Free-text answers need a language model, and none is configured.)".to_string(),
            );
        }
        let system = self.prompts.system_prompt(ctx).await;
        let req = crate::agent::ChatRequest { system, user: text.to_string() };
        Some(match self.llm.complete(req, None, Some(&ctx.id)).await {
            Ok(answer) if !answer.text.is_empty() => answer.text,
            Ok(_) => "(the model returned an empty answer)".to_string(),
            Err(e) => {
                tracing::warn!(error = %e, "free-text LLM reply failed");
                "I could not reach the language model just now. Please try again in a moment, or use /task to queue the request."
                    .to_string()
            }
        })
    }
}
