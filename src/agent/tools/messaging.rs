//! `send_email` and `call_webhook`: actions with effects outside the
//! runtime. Neither runs when the model calls it: the call becomes an
//! approval request bound to its exact payload (the existing action types
//! `send_email` and `webhook`, checked by their executors now, not after an
//! admin approved), and the turn waits. Once an admin approves (the action
//! runs once), denies, or the request expires, a follow-up task continues
//! the turn with that outcome and answers the chat.

use super::{Policy, ToolClass, ToolEnv, ToolError, ToolOutput, TypedTool};
use crate::BoxFuture;
use crate::actions::Proposal;
use crate::domain::{Role, title_from};
use schemars::JsonSchema;
use serde::Deserialize;

/// Longest summary line shown to the admins.
const SUMMARY_BYTES: usize = 200;

fn checked(tool: &'static str, env: &ToolEnv, p: Proposal) -> Result<ToolOutput, ToolError> {
    let desk = env.desk.as_ref().ok_or_else(|| ToolError::Refused("approvals cannot be requested here".into()))?;
    desk.validate(&p).map_err(|reason| ToolError::BadArguments { tool, reason })?;
    Ok(ToolOutput::proposal(tool, p))
}

/// `text` on one line, at most [`SUMMARY_BYTES`], "…" when cut.
fn summary(text: String) -> String {
    let line = title_from(&text, usize::MAX);
    let short = title_from(&line, SUMMARY_BYTES);
    if short.len() < line.len() { format!("{short}…") } else { short }
}

/// Arguments of `send_email`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailArgs {
    /// Recipients' addresses.
    pub to: Vec<String>,
    /// Copy recipients' addresses.
    #[serde(default)]
    pub cc: Vec<String>,
    /// One line.
    pub subject: String,
    /// Plain text.
    pub body: String,
}

/// `send_email`.
pub struct SendEmail;

impl TypedTool for SendEmail {
    type Args = EmailArgs;
    const NAME: &'static str = "send_email";
    const DESCRIPTION: &'static str = "Send a plain-text email. It needs an admin's approval: the call asks for it and this turn ends; \
         when an admin decides, you continue with the outcome. Nothing is sent before.";
    const CLASS: ToolClass = ToolClass::Messaging;
    const POLICY: Policy = Policy { min_role: Role::Member, in_tasks: true, approval: true };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: EmailArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let to: Vec<&str> = args.to.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
            let target = to.join(", ");
            let p = Proposal {
                action_type: "send_email".into(),
                summary: summary(format!("Email to {target}: {}", args.subject)),
                target,
                payload: serde_json::json!({"subject": args.subject, "body": args.body, "cc": args.cc}),
            };
            checked(Self::NAME, env, p)
        })
    }
}

/// Arguments of `call_webhook`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookArgs {
    /// The http(s) URL to POST to.
    pub url: String,
    /// The JSON object to send.
    pub payload: serde_json::Map<String, serde_json::Value>,
    /// Why, in one line (the admins read it).
    pub purpose: String,
}

/// `call_webhook`.
pub struct CallWebhook;

impl TypedTool for CallWebhook {
    type Args = WebhookArgs;
    const NAME: &'static str = "call_webhook";
    const DESCRIPTION: &'static str = "POST a JSON object to a URL. It needs an admin's approval: the call asks for it and this turn \
         ends; when an admin decides, you continue with the outcome. Nothing is sent before.";
    const CLASS: ToolClass = ToolClass::Sensitive;
    const POLICY: Policy = Policy { min_role: Role::Member, in_tasks: true, approval: true };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: WebhookArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            if args.purpose.trim().is_empty() {
                return Err(ToolError::BadArguments { tool: Self::NAME, reason: "purpose is empty".into() });
            }
            let url = args.url.trim().to_string();
            let p = Proposal {
                action_type: "webhook".into(),
                summary: summary(format!("POST to {url}: {}", args.purpose)),
                target: url,
                payload: serde_json::Value::Object(args.payload),
            };
            checked(Self::NAME, env, p)
        })
    }
}
