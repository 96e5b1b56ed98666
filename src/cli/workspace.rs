//! `agent-runtime workspace list|show|contexts|admin` and `context show`.

use super::{print_json, print_list, s};
use crate::client::ApiClient;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Workspace subcommands.
#[derive(Debug, Subcommand)]
pub enum WorkspaceCmd {
    /// List workspaces (one per chat today).
    List {
        /// At most this many (1-500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The next page: workspaces after this id (printed at the end of a full page).
        #[arg(long)]
        after: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a workspace and its contexts.
    Show {
        /// Workspace id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List contexts (chats), optionally of one workspace or connector, or only admin channels.
    Contexts {
        /// Only this workspace.
        #[arg(long)]
        workspace_id: Option<String>,
        /// Only this connector (telegram, discord, email, codex, ...).
        #[arg(long)]
        connector: Option<String>,
        /// Only admin channels.
        #[arg(long)]
        admin: bool,
        /// At most this many (1-500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a context an admin channel (`on`) or not (`off`).
    Admin {
        /// Context id.
        context_id: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

fn print_contexts(items: &[Value]) {
    outln!("{:<36}  {:<5}  {:<28}  NAME", "CONTEXT", "ADMIN", "CHAT");
    for c in items {
        let admin = if c["is_admin"].as_bool() == Some(true) { "yes" } else { "" };
        outln!(
            "{:<36}  {:<5}  {:<28}  {}",
            s(c, "id"),
            admin,
            format!("{}/{}", s(c, "connector"), s(c, "external_id")),
            s(c, "display_name")
        );
    }
}

/// Runs a workspace subcommand.
pub async fn run(client: ApiClient, cmd: WorkspaceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        WorkspaceCmd::List { limit, after, json } => {
            let mut q = vec![("limit", limit.to_string())];
            q.extend(after.map(|a| ("after", a)));
            let v: Value = client.get("/api/v1/workspaces", &q).await?;
            let header = format!("{:<36}  {:>8}  {:>5}  NAME", "WORKSPACE", "CONTEXTS", "ADMIN");
            print_list(&v, json, "items", &header, "workspace", |w| {
                format!("{:<36}  {:>8}  {:>5}  {}", s(w, "id"), w["contexts"], w["admin_contexts"], s(w, "name"))
            });
        }
        WorkspaceCmd::Show { id, json } => {
            let v: Value = client.get(&format!("/api/v1/workspaces/{}", super::seg(&id)), &[]).await?;
            if json {
                print_json(&v);
            } else {
                outln!("id:        {}", s(&v, "id"));
                outln!("name:      {}", s(&v, "name"));
                outln!("slug:      {}", s(&v, "slug"));
                outln!("created:   {}", super::at(&v, "created_at"));
                print_contexts(v["context_list"].as_array().map_or(&[][..], Vec::as_slice));
            }
        }
        WorkspaceCmd::Contexts { workspace_id, connector, admin, limit, json } => {
            let mut q = vec![("limit", limit.to_string())];
            q.extend(workspace_id.map(|v| ("workspace_id", v)));
            q.extend(connector.map(|v| ("connector", v)));
            if admin {
                q.push(("admin", "true".into()));
            }
            let v: Value = client.get("/api/v1/contexts", &q).await?;
            if json {
                print_json(&v);
            } else {
                let items = v["items"].as_array().cloned().unwrap_or_default();
                print_contexts(&items);
                outln!("{} context(s)", items.len());
            }
        }
        WorkspaceCmd::Admin { context_id, state } => {
            let v: Value =
                client.post(&format!("/api/v1/contexts/{}/admin", super::seg(&context_id)), &json!({"admin": state == "on"})).await?;
            let now = if v["is_admin"].as_bool() == Some(true) { "is now an admin channel" } else { "is no longer an admin channel" };
            outln!("Context {} ({}/{}) {now}.", s(&v, "id"), s(&v, "connector"), s(&v, "external_id"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Context subcommands.
#[derive(Debug, Subcommand)]
pub enum ContextCmd {
    /// Show exactly what a chat turn would send the model: the system prompt
    /// with each layer's size, the remembered conversation, the tools offered.
    Show {
        /// Context id.
        context_id: String,
        /// The message to show the turn for (the retrieval layer depends on it).
        #[arg(long, default_value = "")]
        message: String,
        /// The sender's role (which tools are offered).
        #[arg(long, default_value = "member", value_parser = ["viewer", "member", "operator", "admin", "overlord"])]
        role: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a chat's daily budget (admin): model calls for it stop at the
    /// limit until the next UTC day. 0 or leaving a flag out: no such limit.
    Budget {
        /// Context id.
        context_id: String,
        /// Tokens per UTC day.
        #[arg(long)]
        daily_tokens: Option<u64>,
        /// USD per UTC day (at AGENT_RUNTIME_LLM_PRICES).
        #[arg(long)]
        daily_usd: Option<f64>,
    },
}

/// Runs a context subcommand.
pub async fn run_context(client: ApiClient, cmd: ContextCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ContextCmd::Budget { context_id, daily_tokens, daily_usd } => {
            return super::agent::set_context_budget(client, &context_id, daily_tokens, daily_usd).await;
        }
        ContextCmd::Show { context_id, message, role, json } => {
            let q = vec![("message", message), ("role", role)];
            let v: Value = client.get(&format!("/api/v1/contexts/{}/prompt", super::seg(&context_id)), &q).await?;
            if json {
                print_json(&v);
                return Ok(ExitCode::SUCCESS);
            }
            outln!("layers:");
            for l in v["layers"].as_array().into_iter().flatten() {
                outln!("  {:<14} {:>7} bytes", s(l, "name"), l["bytes"]);
            }
            let tools: Vec<&str> = v["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
            outln!("tools: {}", if tools.is_empty() { "(none)".to_string() } else { tools.join(", ") });
            outln!("\n--- system prompt ---\n{}", s(&v, "system"));
            outln!("\n--- conversation ---");
            for m in v["messages"].as_array().into_iter().flatten() {
                outln!("[{}] {}", s(m, "role"), m["text"].as_str().or_else(|| m["content"].as_str()).unwrap_or(""));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
