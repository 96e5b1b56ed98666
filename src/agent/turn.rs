//! The agent loop: one turn of model calls and tool calls, with native tool
//! calling (no JSON parsed out of prose, except in the documented text mode
//! of a provider that refuses tools).
//!
//! Each step asks the model with the conversation so far and the tools the
//! turn may use; if it answers with tool calls, each call is checked (known
//! tool, role and turn kind, not an exact repeat of a call that failed) and
//! run, its result (or error) goes back to the model, and the next step
//! begins. A turn ends with the model's answer, or at a limit — steps, tool
//! calls, wall time — with a reply that says which and how to go on, or when
//! it is canceled (between steps, or inside a model or tool call). Every
//! step is handed to a [`StepSink`] as it happens.

use super::resume::ResumeState;
use super::tools::{Registry, ToolEnv, ToolError, cap};
use super::{ChatRequest, Llm, LlmError, Message, ToolCall};
use crate::BoxFuture;
use crate::actions::Proposal;
use crate::domain::{ApprovalId, ContextId, TaskId};
use crate::store::Approval;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Limits of one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most model calls.
    pub max_steps: u32,
    /// Most tool calls, all steps together.
    pub max_tool_calls: u32,
    /// Most wall time, model and tools included.
    pub max_duration: Duration,
    /// Longest input accepted (bytes of the user's text).
    pub max_input_bytes: usize,
}

impl Limits {
    /// A chat turn (someone is waiting): the Go runtime's chat agent's limits.
    pub const CHAT: Limits = Limits { max_steps: 6, max_tool_calls: 6, max_duration: Duration::from_secs(120), max_input_bytes: 12_000 };
    /// A task turn (in the background): the Go runtime's task worker's
    /// limits; its input limit is the largest prompt a task can be created
    /// with (the admin API's), so no accepted task fails for its size.
    pub const TASK: Limits =
        Limits { max_steps: 50, max_tool_calls: 100, max_duration: Duration::from_secs(1200), max_input_bytes: 256 * 1024 };
}

/// Which limit ended a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// `max_steps` model calls were made.
    Steps,
    /// `max_tool_calls` tools ran.
    ToolCalls,
    /// `max_duration` passed.
    Time,
    /// The input is too long for one turn.
    Input,
}

/// How a turn ended.
#[derive(Debug, Clone)]
pub enum Stop {
    /// The model answered.
    Answered,
    /// A limit was reached.
    Limit(Limit),
    /// The turn was canceled.
    Canceled,
    /// A model call failed (the turn cannot go on).
    Failed(LlmError),
    /// A sensitive action waits for an admin's decision; a follow-up task
    /// continues the turn once it is decided.
    Awaiting(ApprovalId),
}

impl PartialEq for Stop {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Answered, Self::Answered) | (Self::Canceled, Self::Canceled) => true,
            (Self::Limit(a), Self::Limit(b)) => a == b,
            (Self::Awaiting(a), Self::Awaiting(b)) => a == b,
            (Self::Failed(a), Self::Failed(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

/// One recorded step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// 1-based, in the order they happened.
    pub seq: u32,
    /// `model` or `tool`.
    pub kind: &'static str,
    /// The tool's name (as the model wrote it), for a tool step.
    pub tool: Option<String>,
    /// The arguments, secrets redacted, at most 800 bytes.
    pub arguments: Option<String>,
    /// `ok`, `proposed` (an approval was asked for), `error`, `refused`,
    /// `bad_arguments`, `unknown_tool`, `repeated`, `limit`, `canceled`,
    /// `timeout`; for a model step `tools`
    /// (it asked for tools), `answer`, or its error class.
    pub outcome: String,
    /// The error or refusal, at most 800 bytes.
    pub detail: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// Bytes of the result handed to the model (or of the answer).
    pub output_bytes: u64,
}

/// Where steps go as they happen (the store, the event stream, a test).
pub trait StepSink: Send + Sync {
    /// Records one step.
    fn record<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, ()>;
}

/// A sink that keeps nothing.
pub struct NoSink;

impl StepSink for NoSink {
    fn record<'a>(&'a self, _: &'a Step) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// What a turn produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The reply for the person (the model's answer, or what stopped the turn).
    pub text: String,
    /// Why it ended.
    pub stop: Stop,
    /// The model that answered last.
    pub model: String,
    /// Every step.
    pub steps: Vec<Step>,
    /// The conversation of this turn (the user's message, the model's calls, the results, the answer).
    pub messages: Vec<Message>,
}

/// One turn's inputs.
pub struct TurnRequest<'a> {
    /// The system prompt.
    pub system: String,
    /// Earlier messages of the conversation (oldest first).
    pub history: Vec<Message>,
    /// The user's text (or the task's prompt); `None` continues the
    /// conversation in `history` (a turn resumed after an approval).
    pub input: Option<String>,
    /// Limits.
    pub limits: Limits,
    /// The tools and who the turn acts for.
    pub env: &'a ToolEnv,
    /// Cancels the turn.
    pub cancel: CancellationToken,
    /// The task, when the turn runs one (usage rows name it).
    pub task: Option<TaskId>,
    /// Where steps go.
    pub sink: &'a dyn StepSink,
}

/// Names of argument fields whose values never reach a log.
const SECRET_KEYS: [&str; 8] = ["password", "passwd", "secret", "token", "api_key", "apikey", "authorization", "cookie"];

/// Fields holding bulk text (a file's or an email's content): the record
/// keeps their size, not the text.
const BULK_KEYS: [&str; 3] = ["content", "body", "text"];

/// The arguments as recorded: secret-looking fields replaced, bulk text
/// fields reduced to their size, unparseable text to its size, capped.
pub fn redact(arguments: &str) -> String {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    let key = k.to_ascii_lowercase();
                    if SECRET_KEYS.iter().any(|s| key.contains(s)) {
                        *val = serde_json::Value::String("[redacted]".into());
                    } else if BULK_KEYS.contains(&key.as_str()) && val.is_string() {
                        let n = val.as_str().map_or(0, str::len);
                        *val = serde_json::Value::String(format!("[{n} bytes]"));
                    } else {
                        walk(val);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let shown = match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(mut v) => {
            walk(&mut v);
            v.to_string()
        }
        // Unparseable text could hold anything, secrets included: only its size is kept.
        Err(_) => format!("[unparseable, {} bytes]", arguments.len()),
    };
    let (s, cut) = cap(&shown, 800);
    if cut { format!("{s}…") } else { s.to_string() }
}

/// `s` with the text inside double quotes replaced by `…` (a parse error
/// quotes the argument it could not take, which may be anything).
fn hide_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut inside = false;
    for c in s.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// What the person is told when a turn waits for an approval.
pub fn awaiting_reply(a: &Approval) -> String {
    format!(
        "I asked an admin to approve this: {} (`{}`). Nothing runs before: an admin approves with the button or /approve-action {}, \
         or denies with /deny-action {}. I will continue here once it is decided.",
        a.summary, a.id, a.id, a.id
    )
}

/// The placeholder result of a call waiting for approval (replaced by the
/// decision when the turn continues).
pub const AWAITING_RESULT: &str = "Waiting for an admin's decision on this action.";

fn short(s: &str) -> String {
    let (s, cut) = cap(s, 800);
    if cut { format!("{s}…") } else { s.to_string() }
}

/// The same call: tool name and arguments with keys in order and no spacing.
fn signature(call: &ToolCall) -> String {
    let args =
        serde_json::from_str::<serde_json::Value>(&call.arguments).map_or_else(|_| call.arguments.trim().to_string(), |v| v.to_string());
    format!("{}\u{0}{args}", call.name)
}

/// What the person is told when a limit ends the turn.
pub fn limit_reply(limit: Limit, limits: &Limits, ran_tools: bool) -> String {
    let what = match limit {
        Limit::Steps => format!("its limit of {} steps", limits.max_steps),
        Limit::ToolCalls => format!("its limit of {} tool calls", limits.max_tool_calls),
        Limit::Time => format!("its time limit of {} s", limits.max_duration.as_secs()),
        Limit::Input => {
            return format!(
                "That message is too long for one turn (at most {} bytes). Please shorten it, or queue it as a task with /task.",
                limits.max_input_bytes
            );
        }
    };
    let progress = if ran_tools { " I had started working on it;" } else { "" };
    format!(
        "I stopped: this turn reached {what}.{progress} Say \"continue\" to go on from here, or queue the work as a task with /task for a longer run."
    )
}

/// Runs one turn.
pub async fn run(llm: &Llm, registry: &Registry, req: TurnRequest<'_>) -> Outcome {
    let deadline = tokio::time::Instant::now() + req.limits.max_duration;
    let context: ContextId = req.env.context.id.clone();
    let mut steps: Vec<Step> = Vec::new();
    let mut model = String::new();
    let mut tool_calls = 0u32;
    let mut failed: HashMap<String, String> = HashMap::new();
    // No tool calls allowed: none are offered (the model answers directly).
    let specs = if req.limits.max_tool_calls == 0 { Vec::new() } else { registry.specs(req.env) };
    // One request for the whole turn: the history, then the turn's own
    // messages (`request.messages[start..]`) as they come. Each step sends it
    // as it stands; nothing is copied per step (200 turns waiting for the
    // model held three copies of their conversations each).
    let mut request = ChatRequest { system: req.system.clone(), messages: req.history.clone(), tools: specs };
    let start = request.messages.len();
    request.messages.extend(req.input.iter().map(|text| Message::User { text: text.clone() }));
    let finish = |text: String, stop: Stop, model: String, steps: Vec<Step>, turn: Vec<Message>| Outcome {
        text,
        stop,
        model,
        steps,
        messages: turn,
    };

    if req.input.as_ref().is_some_and(|i| i.len() > req.limits.max_input_bytes) {
        return finish(
            limit_reply(Limit::Input, &req.limits, false),
            Stop::Limit(Limit::Input),
            model,
            steps,
            request.messages.split_off(start),
        );
    }
    for _ in 0..req.limits.max_steps {
        if req.cancel.is_cancelled() {
            return finish("Canceled.".into(), Stop::Canceled, model, steps, request.messages.split_off(start));
        }
        let at = Instant::now();
        let answer = tokio::select! {
            r = llm.complete(&request, req.task.as_ref(), Some(&context)) => r,
            _ = req.cancel.cancelled() => {
                llm.record_abandoned(req.task.as_ref(), Some(&context), at.elapsed(), "canceled").await;
                let step = Step { seq: steps.len() as u32 + 1, kind: "model", tool: None, arguments: None, outcome: "canceled".into(), detail: None, duration_ms: at.elapsed().as_millis() as u64, output_bytes: 0 };
                req.sink.record(&step).await;
                steps.push(step);
                return finish("Canceled.".into(), Stop::Canceled, model, steps, request.messages.split_off(start));
            }
            _ = tokio::time::sleep_until(deadline) => {
                llm.record_abandoned(req.task.as_ref(), Some(&context), at.elapsed(), "turn_timeout").await;
                let step = Step { seq: steps.len() as u32 + 1, kind: "model", tool: None, arguments: None, outcome: "timeout".into(), detail: None, duration_ms: at.elapsed().as_millis() as u64, output_bytes: 0 };
                req.sink.record(&step).await;
                steps.push(step);
                let ran = tool_calls > 0;
                return finish(limit_reply(Limit::Time, &req.limits, ran), Stop::Limit(Limit::Time), model, steps, request.messages.split_off(start));
            }
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let step = Step {
                    seq: steps.len() as u32 + 1,
                    kind: "model",
                    tool: None,
                    arguments: None,
                    outcome: e.class().to_string(),
                    detail: Some(short(&e.to_string())),
                    duration_ms: at.elapsed().as_millis() as u64,
                    output_bytes: 0,
                };
                req.sink.record(&step).await;
                steps.push(step);
                return finish(String::new(), Stop::Failed(e), model, steps, request.messages.split_off(start));
            }
        };
        model = answer.model.clone();
        let step = Step {
            seq: steps.len() as u32 + 1,
            kind: "model",
            tool: None,
            arguments: None,
            outcome: if answer.calls.is_empty() { "answer" } else { "tools" }.into(),
            detail: None,
            duration_ms: at.elapsed().as_millis() as u64,
            output_bytes: answer.text.len() as u64,
        };
        req.sink.record(&step).await;
        steps.push(step);
        if answer.calls.is_empty() {
            let text = if answer.text.trim().is_empty() { "(the model returned an empty answer)".to_string() } else { answer.text.clone() };
            request.messages.push(Message::Assistant { text: answer.text, calls: Vec::new() });
            return finish(text, Stop::Answered, model, steps, request.messages.split_off(start));
        }
        request.messages.push(Message::Assistant { text: answer.text.clone(), calls: answer.calls.clone() });
        let mut limited = None;
        // The one action of this step to ask an admin for: (call, tool, proposal).
        let mut proposed: Option<(String, String, Proposal)> = None;
        for call in &answer.calls {
            let at = Instant::now();
            let mut step = Step {
                seq: steps.len() as u32 + 1,
                kind: "tool",
                tool: Some(short(&call.name)),
                arguments: Some(redact(&call.arguments)),
                outcome: String::new(),
                detail: None,
                duration_ms: 0,
                output_bytes: 0,
            };
            let (content, is_error) = if limited.is_some() || tool_calls >= req.limits.max_tool_calls {
                limited = Some(Limit::ToolCalls);
                step.outcome = "limit".into();
                (format!("Not run: this turn reached its limit of {} tool calls.", req.limits.max_tool_calls), true)
            } else if let Some(tool) = registry.get(&call.name) {
                let sig = signature(call);
                if let Err(why) = Registry::allowed(tool.as_ref(), req.env) {
                    step.outcome = "refused".into();
                    step.detail = Some(short(&why));
                    (format!("Refused: {why}."), true)
                } else if let Some(err) = failed.get(&sig) {
                    step.outcome = "repeated".into();
                    (
                        format!(
                            "Not run: this exact call already failed in this turn ({err}). Change the arguments or try another approach."
                        ),
                        true,
                    )
                } else {
                    tool_calls += 1;
                    let result = tokio::select! {
                        r = tool.call(req.env, &call.arguments) => Some(r),
                        _ = req.cancel.cancelled() => None,
                        _ = tokio::time::sleep_until(deadline) => Some(Err(ToolError::Failed("the turn's time ran out during this call".into()))),
                    };
                    match result {
                        None => {
                            step.outcome = "canceled".into();
                            step.duration_ms = at.elapsed().as_millis() as u64;
                            req.sink.record(&step).await;
                            steps.push(step);
                            return finish("Canceled.".into(), Stop::Canceled, model, steps, request.messages.split_off(start));
                        }
                        Some(Ok(out)) => match out.proposal.clone() {
                            Some(_) if proposed.is_some() => {
                                step.outcome = "refused".into();
                                ("Not proposed: another action of this step already waits for approval; propose this one after it is decided.".to_string(), true)
                            }
                            Some(p) => {
                                step.outcome = "proposed".into();
                                proposed = Some((call.id.clone(), call.name.clone(), p));
                                (AWAITING_RESULT.to_string(), false)
                            }
                            None => {
                                step.outcome = "ok".into();
                                (out.render(), false)
                            }
                        },
                        Some(Err(e)) => {
                            step.outcome = match &e {
                                ToolError::BadArguments { .. } => "bad_arguments",
                                ToolError::Refused(_) => "refused",
                                ToolError::Failed(_) => "error",
                            }
                            .into();
                            let text = e.to_string();
                            step.detail = Some(short(&hide_quoted(&text)));
                            failed.insert(sig, short(&text));
                            (text, true)
                        }
                    }
                }
            } else {
                step.outcome = "unknown_tool".into();
                let names: Vec<&str> = request.tools.iter().map(|s| s.name.as_ref()).collect();
                (format!("There is no tool named {:?}. The tools are: {}.", short(&call.name), names.join(", ")), true)
            };
            step.duration_ms = at.elapsed().as_millis() as u64;
            step.output_bytes = content.len() as u64;
            req.sink.record(&step).await;
            steps.push(step);
            request.messages.push(Message::Tool { call_id: call.id.clone(), name: call.name.clone(), content, is_error });
        }
        if let Some((call_id, tool, p)) = proposed {
            match propose(&req, &request.messages[start..], call_id.clone(), tool, p).await {
                Ok(a) => return finish(awaiting_reply(&a), Stop::Awaiting(a.id), model, steps, request.messages.split_off(start)),
                // Not filed (the store refused it): the model hears why.
                Err(why) => {
                    if let Some(Message::Tool { content, is_error, .. }) = request.messages[start..]
                        .iter_mut()
                        .rev()
                        .find(|m| matches!(m, Message::Tool { call_id: id, .. } if *id == call_id))
                    {
                        *content = format!("Not proposed: {why}");
                        *is_error = true;
                    }
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            limited = Some(Limit::Time);
        }
        if let Some(limit) = limited {
            return finish(limit_reply(limit, &req.limits, true), Stop::Limit(limit), model, steps, request.messages.split_off(start));
        }
    }
    finish(
        limit_reply(Limit::Steps, &req.limits, tool_calls > 0),
        Stop::Limit(Limit::Steps),
        model,
        steps,
        request.messages.split_off(start),
    )
}

/// Files `p` for approval with the turn's state (the conversation so far,
/// whose result for `call_id` the decision will replace).
async fn propose(req: &TurnRequest<'_>, turn: &[Message], call_id: String, tool: String, p: Proposal) -> Result<Approval, String> {
    let env = req.env;
    let desk = env.desk.as_ref().ok_or("approvals cannot be requested here")?;
    let mut messages = req.history.clone();
    messages.extend(turn.iter().cloned());
    let state = ResumeState::new(env, messages, call_id, tool);
    desk.propose(&env.context, &env.requester, p, state.to_resume(env)?).await
}

#[cfg(test)]
mod tests;
