//! `agent-runtime approval list|show|propose|approve|deny`.

use super::{at, print_if, print_json, print_list, s};
use crate::client::ApiClient;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Approval subcommands.
#[derive(Debug, Subcommand)]
pub enum ApprovalCmd {
    /// List action requests, oldest first.
    List {
        /// Only this status (pending, approved, denied, expired).
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1-500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one request with its payload and outcome.
    Show {
        /// Approval id or a unique prefix of one.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Propose a sensitive action in your own name (the certificate's); it waits for an admin.
    Propose {
        /// The action type (e.g. webhook, email).
        action_type: String,
        /// What it acts on (a URL, the recipients).
        target: String,
        /// One line for the admins deciding it.
        #[arg(long)]
        summary: String,
        /// The action's payload, a JSON object (e.g. '{"text": "deploy v2"}').
        #[arg(long, default_value = "{}")]
        payload: String,
        /// The chat told about it and its outcome, as connector/external_id (default: the API's mailbox).
        #[arg(long, value_name = "CONNECTOR/ID")]
        chat: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request: its stored payload runs once, now.
    Approve {
        /// Approval id, a unique prefix of one, or `latest`.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deny a pending request; it never runs.
    Deny {
        /// Approval id, a unique prefix of one, or `latest`.
        id: String,
        /// Why (told to the requester).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn chat(v: &Value) -> String {
    format!("{}/{}", s(&v["chat"], "connector"), s(&v["chat"], "external_id"))
}

fn print_approval(a: &Value) {
    outln!("id:        {}", s(a, "id"));
    outln!("status:    {} (execution {})", s(a, "status"), s(a, "execution_status"));
    outln!("action:    {} → {}", s(a, "action_type"), s(a, "target"));
    outln!("summary:   {}", s(a, "summary"));
    outln!("requester: {} in {}", s(a, "requester"), chat(a));
    outln!("payload:   {} (sha256 {})", s(a, "payload_json"), s(a, "payload_hash"));
    outln!("expires:   {}", at(a, "expires_at"));
    print_if("decided:   by ", a, "approver");
    print_if("reason:    ", a, "reason");
    print_if("result:    ", a, "execution_result");
}

/// Runs an approval subcommand.
pub async fn run(client: ApiClient, cmd: ApprovalCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ApprovalCmd::List { status, limit, json } => {
            let mut q = vec![("limit", limit.to_string())];
            q.extend(status.map(|v| ("status", v)));
            let v: Value = client.get("/api/v1/approvals", &q).await?;
            let header = format!("{:<30}  {:<8}  {:<12}  {:<24}  SUMMARY", "ID", "STATUS", "EXECUTION", "CHAT");
            print_list(&v, json, "approvals", &header, "request", |a| {
                format!("{:<30}  {:<8}  {:<12}  {:<24}  {}", s(a, "id"), s(a, "status"), s(a, "execution_status"), chat(a), s(a, "summary"))
            });
        }
        ApprovalCmd::Show { id, json } => {
            let v: Value = client.get(&format!("/api/v1/approvals/{}", super::seg(&id)), &[]).await?;
            if json { print_json(&v) } else { print_approval(&v) }
        }
        ApprovalCmd::Propose { action_type, target, summary, payload, chat, json } => {
            let payload: Value =
                serde_json::from_str(&payload).map_err(|e| anyhow::anyhow!("--payload is not JSON: {e}; nothing proposed"))?;
            if !payload.is_object() {
                anyhow::bail!("--payload must be a JSON object; nothing proposed");
            }
            let mut body = json!({"action_type": action_type, "target": target, "summary": summary, "payload": payload});
            if let Some(c) = chat {
                let (connector, external_id) =
                    c.split_once('/').ok_or_else(|| anyhow::anyhow!("--chat takes connector/external_id, e.g. telegram/42"))?;
                body["connector"] = json!(connector);
                body["external_id"] = json!(external_id);
            }
            let v: Value = client.post("/api/v1/approvals", &body).await?;
            if json {
                print_json(&v);
            } else {
                outln!("Proposed {}: waits for an admin (agent-runtime approval approve {}).", s(&v, "id"), s(&v, "id"));
            }
        }
        ApprovalCmd::Approve { id, json } => {
            let v: Value = client.post(&format!("/api/v1/approvals/{}/approve", super::seg(&id)), &json!({})).await?;
            if json {
                print_json(&v);
            } else {
                let result = v.get("execution_result").and_then(Value::as_str).unwrap_or("");
                outln!("Approved {}: {} {result}", s(&v, "id"), s(&v, "execution_status"));
            }
        }
        ApprovalCmd::Deny { id, reason, json } => {
            let body = match reason {
                Some(r) => json!({"reason": r}),
                None => json!({}),
            };
            let v: Value = client.post(&format!("/api/v1/approvals/{}/deny", super::seg(&id)), &body).await?;
            if json { print_json(&v) } else { outln!("Denied {}: {}", s(&v, "id"), s(&v, "reason")) }
        }
    }
    Ok(ExitCode::SUCCESS)
}
