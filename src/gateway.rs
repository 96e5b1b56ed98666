//! The gateway: every inbound message is persisted, parsed at the edge into a
//! [`Command`], dispatched, and answered through the outbox.
//!
//! Invariants: the gateway never names a platform (it sees `ChatRef`); a
//! message is in the inbox before anything acts on it; a task created from a
//! message carries the run key `inbox:<id>`, so handling a message twice never
//! creates two tasks.

mod actions;
mod admin;
mod command;
mod dispatch;
mod intake;
mod perm;
mod replies;
mod review;
mod rules;
mod search;
mod switch;

pub use actions::{ActionError, ProposedAction};
pub use admin::{StartedPairing, token_hash};
pub use command::{AgentOp, COMMANDS, Command, CommandSpec, Parsed, PromptOp, parse, usage};
pub use dispatch::Dispatcher;
pub use intake::{Intake, Refusal, Sink, Stopped};
pub use perm::{Denial, Rule, check, rule};
pub use review::UNTRUSTED_TASK;
pub use rules::{RateLimiter, Verdict};
pub use switch::{SwitchError, describe as describe_budget};

use crate::actions::ActionExecutors;
use crate::actions::Requester;
use crate::agent::{Llm, PromptBuilder};
use crate::clock::SharedClock;
use crate::config::GatewayConfig;
use crate::domain::{
    Actor, Button, ButtonPress, ChatKind, Context, Inbound, InboundMeta, IncomingFile, MessageKind, OutboundOptions, OutboxId, User,
};
use crate::orchestrator::OrchestratorHandle;
use crate::retrieval::Retrieval;
use crate::store::{Cursor, Decision, InboundRecord, NewAudit, NewOutbound, Store, StoreError};
use crate::workspace::{Direction, Workspaces};
use search::LastResults;
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

/// A message a connector received, with the files it took in for it.
#[derive(Debug)]
pub struct Arrival {
    /// The message.
    pub msg: Inbound,
    /// Attachments in memory (saved under the chat's workspace at ingest).
    pub files: Vec<IncomingFile>,
    /// Attachments already on disk through an [`Intake`] (put in place at ingest).
    pub staged: Vec<crate::workspace::Staged>,
}

impl Arrival {
    /// A message without attachments.
    pub fn text(msg: Inbound) -> Self {
        Self { msg, files: Vec::new(), staged: Vec::new() }
    }
}

/// A stored message waiting to be processed.
#[derive(Debug, Clone)]
pub struct Ingested {
    record: InboundRecord,
    msg: Inbound,
}

impl Ingested {
    /// The chat it came from.
    pub fn chat(&self) -> &crate::domain::ChatRef {
        &self.msg.chat
    }
}

/// Adds where a message's attachments went (and which were not saved) to its reply.
fn with_files_note(reply: Option<String>, meta: &InboundMeta) -> Option<String> {
    let mut note: Vec<String> = meta.saved.iter().map(|p| format!("Attachment saved: `{p}`")).collect();
    note.extend(meta.skipped.iter().map(|s| format!("Attachment not saved: {s}")));
    match (reply, note.is_empty()) {
        (r, true) => r,
        (None, false) => Some(note.join("\n")),
        (Some(r), false) => Some(format!("{r}\n\n{}", note.join("\n"))),
    }
}

/// The gateway: one shared copy of its parts. Cloning it is a reference
/// count (the admin API clones its state several times per request, and the
/// parts hold maps and strings).
#[derive(Clone)]
pub struct Gateway(Arc<Parts>);

impl std::ops::Deref for Gateway {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// The gateway's parts.
#[derive(Clone)]
pub struct Parts {
    store: Store,
    orchestrator: OrchestratorHandle,
    llm: Llm,
    llm_enabled: bool,
    prompts: PromptBuilder,
    workspaces: Workspaces,
    clock: SharedClock,
    config: GatewayConfig,
    outbox_ready: Arc<Notify>,
    actions: ActionExecutors,
    limiter: Arc<RateLimiter>,
    /// The markdown index (`None`: turned off).
    retrieval: Option<Retrieval>,
    /// Each chat's last `/search` results (paths), for `/open <n>`.
    last_results: Arc<std::sync::Mutex<LastResults>>,
    /// The agent answering free text with tools (`None`: one plain model call).
    agent: Option<crate::agent::Agent>,
    /// Shows a typing indicator in the chat while a turn runs.
    typing: Option<crate::outbox::Publishers>,
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
    /// Executors of approved actions, by type.
    pub actions: ActionExecutors,
}

impl Gateway {
    /// A gateway over these parts.
    pub fn new(p: GatewayParts) -> Self {
        Self(Arc::new(Parts {
            store: p.store,
            orchestrator: p.orchestrator,
            llm: p.llm,
            llm_enabled: p.llm_enabled,
            prompts: p.prompts,
            workspaces: p.workspaces,
            clock: p.clock,
            config: p.config,
            outbox_ready: p.outbox_ready,
            actions: p.actions,
            limiter: Arc::new(RateLimiter::default()),
            retrieval: None,
            last_results: Arc::default(),
            agent: None,
            typing: None,
        }))
    }

    /// The gateway showing a typing indicator through `publishers` while an agent turn runs.
    pub fn with_typing(mut self, publishers: crate::outbox::Publishers) -> Self {
        Arc::make_mut(&mut self.0).typing = Some(publishers);
        self
    }

    /// The agent answering free text, if any.
    pub fn agent(&self) -> Option<&crate::agent::Agent> {
        self.agent.as_ref()
    }

    /// The gateway answering free text through `agent` (tools, limits, steps).
    pub fn with_agent(mut self, agent: crate::agent::Agent) -> Self {
        Arc::make_mut(&mut self.0).agent = Some(agent);
        self
    }

    /// The gateway answering `/search` and `/open` from `retrieval`.
    pub fn with_retrieval(mut self, retrieval: Retrieval) -> Self {
        Arc::make_mut(&mut self.0).retrieval = Some(retrieval);
        self
    }

    /// The markdown index, when it runs.
    pub fn retrieval(&self) -> Option<&Retrieval> {
        self.retrieval.as_ref()
    }

    /// The actor behind a sender: their linked user, or a guest.
    pub fn actor(&self, platform_user_id: &str, user: Option<User>) -> Actor {
        let role = user.as_ref().map(|u| u.role).or(self.config.guest_role);
        Actor { platform_user_id: platform_user_id.to_string(), api: false, user, role }
    }

    /// Checks the edge limits on a message's text.
    fn check_text(&self, text: &str) -> Result<(), GatewayError> {
        if text.len() > self.config.max_message_bytes {
            return Err(GatewayError::TooLong { len: text.len(), max: self.config.max_message_bytes });
        }
        Ok(())
    }

    /// Persists, dispatches and answers one inbound message.
    pub async fn handle(&self, msg: Inbound, delivery: Delivery) -> Result<Handled, GatewayError> {
        self.handle_audited(msg, delivery, Vec::new()).await
    }

    /// Like [`Gateway::handle`], committing `audit` (rows about how the
    /// message arrived, e.g. the admin API call) with the reply. A duplicate
    /// message writes nothing, so its rows are not written either
    /// (`Handled::duplicate` tells the caller).
    pub async fn handle_audited(&self, msg: Inbound, delivery: Delivery, audit: Vec<NewAudit>) -> Result<Handled, GatewayError> {
        self.handle_as(msg, delivery, audit, None).await
    }

    /// Like [`Gateway::handle_audited`]; with `caller`, the message is that
    /// actor's own (the admin API's chat, acting as its certificate) instead
    /// of its sender's as linked on the platform.
    pub async fn handle_as(
        &self,
        msg: Inbound,
        delivery: Delivery,
        audit: Vec<NewAudit>,
        caller: Option<Actor>,
    ) -> Result<Handled, GatewayError> {
        self.check_text(&msg.text)?;
        let mut msg = msg;
        msg.meta.redacted = command::redact_secrets(&msg.text);
        let record = self.store.record_inbound(&msg, self.clock.now_ms()).await?;
        if record.duplicate {
            let reply = self.store.reply_to_inbound(record.inbox_id).await?;
            return Ok(Handled { reply, context: record.context, duplicate: true, outbox_id: None });
        }
        self.run(record, msg, delivery, audit, caller).await
    }

    /// Stores a connector's batch of messages and advances its cursor in one
    /// transaction; files are put in place under each chat's workspace first
    /// (so a stored message never points at a missing file). Only after this
    /// returns may the connector acknowledge the batch to its platform.
    /// Returns the messages that were new, to be [processed](Gateway::process).
    pub async fn ingest(&self, arrivals: Vec<Arrival>, cursor: Option<Cursor>) -> Result<Vec<Ingested>, GatewayError> {
        let now = self.clock.now_ms();
        let mut msgs = Vec::with_capacity(arrivals.len());
        for Arrival { mut msg, files, staged } in arrivals {
            for file in staged {
                let rel = file.rel().to_string();
                match file.commit().await {
                    Ok(()) => msg.meta.saved.push(rel),
                    Err(e) => {
                        tracing::warn!(error = %e, chat = %msg.chat, "could not put an attachment in place");
                        msg.meta.skipped.push(format!("{rel} (could not be written: {e})"));
                    }
                }
            }
            if !files.is_empty() {
                let ctx = self.store.ensure_context(&msg.chat, &msg.display_name, now).await?;
                let stem = msg.meta.message_id.clone().unwrap_or_else(|| msg.dedupe_key.clone());
                for (i, f) in files.into_iter().enumerate() {
                    let stem = if i == 0 { stem.clone() } else { format!("{stem}-{i}") };
                    match self.workspaces.save_attachment(&ctx.workspace_id, &msg.chat, &stem, &f.name, f.bytes).await {
                        Ok(rel) => msg.meta.saved.push(rel),
                        Err(e) => {
                            tracing::warn!(error = %e, chat = %msg.chat, "could not save an attachment");
                            msg.meta.skipped.push(format!("{} (could not be written: {e})", f.name));
                        }
                    }
                }
            }
            msg.meta.redacted = command::redact_secrets(&msg.text);
            msgs.push(msg);
        }
        let records = self.store.ingest(msgs, cursor, now).await?;
        Ok(records.into_iter().filter(|(r, _)| !r.duplicate).map(|(record, msg)| Ingested { record, msg }).collect())
    }

    /// Dispatches and answers a stored message (replies go through the outbox).
    #[tracing::instrument(skip_all, fields(chat = %item.msg.chat, trace_id = %item.msg.trace_id))]
    pub async fn process(&self, item: Ingested) -> Result<Handled, GatewayError> {
        self.run(item.record, item.msg, Delivery::Outbox, Vec::new(), None).await
    }

    /// A connector's stored cursor (see [`Cursor`]).
    pub async fn cursor(&self, connector: &str, key: &str) -> Result<Option<String>, GatewayError> {
        Ok(self.store.cursor(connector, key).await?)
    }

    /// Every stored cursor of a connector, as (key, value).
    pub async fn cursors(&self, connector: &str) -> Result<Vec<(String, String)>, GatewayError> {
        Ok(self.store.cursors(connector).await?)
    }

    /// Hands every message that was stored but never answered (the runtime
    /// stopped in between) to `dispatcher`, oldest first; returns how many.
    /// Called at start, before connectors run, so per-chat order holds.
    pub async fn recover_inbox(&self, dispatcher: &Dispatcher) -> Result<usize, GatewayError> {
        let (mut after, mut done) = (0, 0);
        loop {
            let batch = self.store.unhandled_inbound(after, 100).await?;
            let n = batch.len();
            after = batch.last().map_or(after, |(r, _)| r.inbox_id);
            done += n;
            dispatcher.submit(batch.into_iter().map(|(record, msg)| Ingested { record, msg }).collect()).await;
            if n < 100 {
                return Ok(done);
            }
        }
    }

    async fn run(
        &self,
        record: InboundRecord,
        msg: Inbound,
        delivery: Delivery,
        audit: Vec<NewAudit>,
        caller: Option<Actor>,
    ) -> Result<Handled, GatewayError> {
        crate::metrics::metrics().message(&msg.chat.connector, "inbound", "received");
        let ctx = record.context;
        let actor = caller.unwrap_or_else(|| self.actor(&msg.from_user_id, record.user));
        let mut turn = Turn { ctx: &ctx, msg: &msg, actor, inbox_id: record.inbox_id, audit, log_reply: None, decided: false };
        let mut failure = None;
        // A button press carries its button's data, not chat text; nothing else is read from it.
        let parsed = if msg.meta.pressed.is_some() {
            match Button::parse(&msg.text) {
                Some(ButtonPress::Approve(id)) => Ok(Parsed::Command(Command::ApproveAction { id })),
                Some(ButtonPress::Deny(id)) => Ok(Parsed::Command(Command::DenyAction { id, reason: None })),
                None => Err("That button is no longer valid.".to_string()),
            }
        } else if msg.text.len() > self.config.max_message_bytes {
            Err(GatewayError::TooLong { len: msg.text.len(), max: self.config.max_message_bytes }.to_string())
        } else {
            Ok(match parse(&msg.text, msg.meta.bot_name.as_deref()) {
                Parsed::Text(t) if t.eq_ignore_ascii_case("pair") && msg.kind == ChatKind::Private => Parsed::Command(Command::Pair),
                Parsed::Text(t) if msg.meta.text_is_task && !t.trim().is_empty() => Parsed::Command(Command::Task { prompt: t }),
                p => p,
            })
        };
        // Each branch below is boxed: a message's future is as large as its
        // largest branch, and every request in flight holds one (a heap
        // profile of 200 concurrent chat turns: ~13 KiB each, most of it the
        // command and agent branches it was not taking).
        let held = review::untrusted(&msg.meta, turn.actor.user.is_some());
        let held_message = held.is_some();
        let reply = match (held, parsed) {
            // An unauthenticated or unlinked sender's message is held for an admin, whatever it says.
            (Some(reason), _) => {
                failure = Box::pin(self.hold_for_review(&mut turn, &reason)).await.err();
                None
            }
            (None, parsed) => match parsed {
                Err(refusal) => Some(refusal),
                Ok(Parsed::NotForUs) => None,
                Ok(Parsed::Command(cmd)) => {
                    tracing::debug!(cmd = cmd.name(), "command");
                    let (reply, error) = Box::pin(self.command(&mut turn, cmd)).await;
                    failure = error;
                    // An empty reply is a silent refusal (a rate limit already noticed once).
                    (!reply.is_empty()).then_some(reply)
                }
                Ok(Parsed::Usage(name)) => Some(format!("Usage: {}", usage(name))),
                Ok(Parsed::Unknown(name)) => Some(format!("Unknown command /{name}. Try /help.")),
                Ok(Parsed::Text(text)) => Box::pin(self.free_text(&mut turn, &text)).await,
            },
        };
        // A held message's sender hears nothing, not even where the mail was filed.
        let reply = if held_message { None } else { with_files_note(reply, &msg.meta) };
        let (audit, log_reply) = (std::mem::take(&mut turn.audit), turn.log_reply.take());
        // A decision taken with a button edits the message that carried it; anything else answers the message.
        let thread = msg.meta.thread.clone();
        let options = match (&msg.meta.pressed, turn.decided) {
            (Some(pressed), true) => OutboundOptions { edit_of: Some(pressed.clone()), thread, ..Default::default() },
            (pressed, _) => {
                OutboundOptions { reply_to: pressed.clone().or_else(|| msg.meta.message_id.clone()), thread, ..Default::default() }
            }
        };
        let outbound = reply.as_ref().map(|body| NewOutbound {
            chat: msg.chat.clone(),
            kind: MessageKind::Reply,
            body: body.clone(),
            task_id: None,
            trace_id: Some(msg.trace_id.clone()),
            options,
            // The chat log's copy (a `pair` reply's token hidden) is also what the event log shows.
            preview: log_reply.clone(),
        });
        let outbox_id =
            self.store.finish_inbound(record.inbox_id, failure, outbound, delivery == Delivery::Inline, audit, self.clock.now_ms()).await?;
        if delivery == Delivery::Outbox && outbox_id.is_some() {
            self.outbox_ready.notify_one();
        }
        if delivery == Delivery::Inline && outbox_id.is_some() {
            crate::metrics::metrics().message(&msg.chat.connector, "outbound", "sent");
        }
        // Pairing tokens never reach the chat log: `/approve`/`/deny` lines and `pair` replies are logged redacted.
        let logged_in = msg.meta.redacted.clone().unwrap_or_else(|| msg.text.clone());
        let mut log = vec![(Direction::Inbound, msg.from_user_id.clone(), logged_in)];
        if let Some(r) = log_reply.or_else(|| reply.clone()) {
            log.push((Direction::Outbound, "agent-runtime".to_string(), r));
        }
        if let Err(e) = self.workspaces.append_chat_log(&ctx.workspace_id, &msg.chat, &ctx.display_name, log).await {
            tracing::warn!(error = %e, "could not append to the chat log");
        }
        Ok(Handled { reply, context: ctx, duplicate: false, outbox_id })
    }

    /// Checks the actor may run `cmd` here, then runs it; returns the reply
    /// and, when the command failed on our side, the error recorded on the
    /// inbox row.
    async fn command(&self, t: &mut Turn<'_>, cmd: Command) -> (String, Option<String>) {
        if let Err(denial) = check(&t.actor, t.ctx, t.msg.kind, &cmd) {
            t.note("permission.denied", Decision::Deny, Some(format!("/{}: {}", cmd.name(), denial.reason())), None);
            return (denial.reply(), None);
        }
        // Commands that spend or write pass the channel rules and the task rate limit too.
        let cost = perm::rule(cmd.name()).cost;
        match rules::decide_command(&self.config.rules, &self.limiter, &t.actor, t.ctx, t.msg, cost, self.clock.now_ms()) {
            Verdict::Allow => {}
            Verdict::Silent(reason) => {
                t.note(rule_event(reason), Decision::Deny, Some(format!("/{}: {reason}", cmd.name())), None);
                return (String::new(), None);
            }
            Verdict::Notice(reason, notice) => {
                t.note(rule_event(reason), Decision::Deny, Some(format!("/{}: {reason}", cmd.name())), None);
                return (notice, None);
            }
        }
        let result = match cmd {
            Command::Help => Ok(replies::help(t)),
            Command::Whoami => Ok(admin::whoami(t)),
            Command::Pair => admin::pair(self, t).await,
            Command::Task { prompt } => replies::task(self, t.ctx, t.msg, t.inbox_id, prompt).await,
            Command::Tasks => replies::tasks(self, t.ctx).await,
            Command::Status => replies::status(self, t.ctx).await,
            Command::Cancel { id } => replies::cancel(self, t, &id).await,
            Command::Search { query } => Ok(search::search(self, t, &query).await),
            Command::Open { target } => Ok(search::open(self, t, &target).await),
            Command::Monitor { goal } => admin::monitor(self, t, &goal).await,
            Command::Objectives => admin::objectives(self, t).await,
            Command::AdminChannel { enable } => admin::admin_channel(self, t, enable).await,
            Command::Prompt(op) => admin::prompt(self, t, op).await,
            Command::Approve { token, role } => admin::approve_pairing(self, t, &token, role).await,
            Command::Deny { token, reason } => admin::deny_pairing(self, t, &token, reason).await,
            Command::Route { task, class, rest } => admin::route(self, t, &task, &class, &rest).await,
            Command::PendingActions => actions::pending(self, t).await,
            Command::ApproveAction { id } => actions::approve_command(self, t, &id).await,
            Command::DenyAction { id, reason } => actions::deny_command(self, t, &id, reason).await,
            Command::Agent(op) => Ok(switch::command(self, t, op).await),
        };
        match result {
            Ok(reply) => (reply, None),
            Err(e) => {
                tracing::error!(error = %e, "command failed");
                ("Sorry, something went wrong on our side (the store is unavailable). Please try again.".to_string(), Some(e.to_string()))
            }
        }
    }

    async fn free_text(&self, t: &mut Turn<'_>, text: &str) -> Option<String> {
        if text.is_empty() {
            return None;
        }
        let ctx = t.ctx;
        // The channel rules first: group chatter not addressed to the bot gets silence, with or without a model.
        match rules::decide(&self.config.rules, &self.limiter, &t.actor, ctx, t.msg, self.clock.now_ms()) {
            Verdict::Allow => {}
            Verdict::Silent(reason) => {
                t.note(rule_event(reason), Decision::Deny, Some(reason.to_string()), None);
                return None;
            }
            Verdict::Notice(reason, notice) => {
                t.note(rule_event(reason), Decision::Deny, Some(reason.to_string()), None);
                return Some(notice);
            }
        }
        if !self.llm_enabled || !self.llm.is_configured() {
            return Some(
                "I answer commands here; try /help. (Free-text answers need a language model, and none is configured.)".to_string(),
            );
        }
        // The kill switch: answered without building a prompt or asking the model.
        if self.is_paused() {
            return Some(switch::PAUSED_REPLY.to_string());
        }
        let unreachable = || {
            "I could not reach the language model just now. Please try again in a moment, or use /task to queue the request.".to_string()
        };
        if let Some(agent) = &self.agent {
            let turn = agent.chat_turn(crate::agent::ChatTurn {
                ctx,
                role: t.actor.role,
                actor: &t.msg.from_user_id,
                requester: Requester {
                    name: t.actor.audit_name(Some(&ctx.chat)),
                    user_id: t.actor.user.as_ref().map(|u| u.id.to_string()),
                },
                text,
                trace: &t.msg.trace_id,
                admit_task: Some(self.task_gate(t)),
            });
            let out = match &self.typing {
                Some(publishers) => {
                    // Telegram shows "typing" for 5 s and Discord for 10 s: renewed every 4 s until the turn ends.
                    let chat = &t.msg.chat;
                    let keep_typing = async {
                        loop {
                            publishers.typing(chat).await;
                            tokio::time::sleep(TYPING_EVERY).await;
                        }
                    };
                    tokio::select! {
                        out = turn => out,
                        () = keep_typing => unreachable!("the typing loop never ends"),
                    }
                }
                None => turn.await,
            };
            return Some(match out.stop {
                crate::agent::turn::Stop::Failed(e) => refused(&e).unwrap_or_else(|| {
                    tracing::warn!(error = %e, "free-text agent turn failed");
                    unreachable()
                }),
                _ => out.text,
            });
        }
        let system = self.prompts.system_prompt(ctx).await;
        let req = crate::agent::ChatRequest::single(system, text);
        Some(match self.llm.complete(&req, None, Some(&ctx.id)).await {
            Ok(answer) if !answer.text.is_empty() => answer.text,
            Ok(_) => "(the model returned an empty answer)".to_string(),
            Err(e) => refused(&e).unwrap_or_else(|| {
                tracing::warn!(error = %e, "free-text LLM reply failed");
                unreachable()
            }),
        })
    }
}

impl Gateway {
    /// The `/task` rules for the tasks an agent turn queues for this
    /// message's sender: the channel rules and the task rate limit (as if
    /// they typed `/task`), and at most [`TASKS_PER_TURN`] per turn.
    fn task_gate(&self, t: &Turn<'_>) -> crate::agent::tools::TaskGate {
        let (rules, limiter, clock) = (self.config.rules.clone(), self.limiter.clone(), self.clock.clone());
        let (actor, ctx, msg) = (t.actor.clone(), t.ctx.clone(), t.msg.clone());
        let queued = std::sync::atomic::AtomicU32::new(0);
        std::sync::Arc::new(move || {
            if queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= TASKS_PER_TURN {
                return Err(format!("at most {TASKS_PER_TURN} tasks may be queued in one turn"));
            }
            match rules::decide_command(&rules, &limiter, &actor, &ctx, &msg, perm::rule("task").cost, clock.now_ms()) {
                Verdict::Allow => Ok(()),
                Verdict::Silent(reason) => Err(format!("the chat's rules refuse new tasks from this person now ({reason})")),
                Verdict::Notice(_, notice) => Err(notice),
            }
        })
    }
}

/// The reply when the budget or the kill switch refused the model call
/// (the person is told why, not that the model is unreachable).
fn refused(e: &crate::agent::LlmError) -> Option<String> {
    match e {
        crate::agent::LlmError::Budget(b) => Some(format!("I cannot answer now: {b}. An admin has been told.")),
        crate::agent::LlmError::Paused => Some(switch::PAUSED_REPLY.to_string()),
        _ => None,
    }
}

/// Most tasks one agent turn may queue.
pub const TASKS_PER_TURN: u32 = 3;

/// How often the typing indicator is renewed while an agent turn runs.
const TYPING_EVERY: std::time::Duration = std::time::Duration::from_secs(4);

fn rule_event(reason: &str) -> &'static str {
    if reason == "rate_limited" { "rate_limit.denied" } else { "channel_rule.denied" }
}

/// One message being handled: who, where, and the audit rows its handling
/// produced (written with the reply, in one transaction).
pub(crate) struct Turn<'a> {
    ctx: &'a Context,
    msg: &'a Inbound,
    actor: Actor,
    inbox_id: i64,
    audit: Vec<NewAudit>,
    /// What the chat log shows instead of the reply (secrets redacted).
    log_reply: Option<String>,
    /// An action request was approved or denied by this message.
    decided: bool,
}

impl Turn<'_> {
    /// Adds an audit row about this message's chat and actor.
    fn note(&mut self, event: &'static str, decision: Decision, reason: Option<String>, subject: Option<String>) {
        self.audit.push(admin::who(&self.actor, Some(&self.ctx.chat)).row(event, decision, reason, subject));
    }
}
