//! `agent-runtime pairing list|start|lookup|approve|deny`. Tokens go to the
//! daemon in request bodies only.

use super::{at, print_if, print_json, print_list, s};
use crate::client::ApiClient;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Pairing subcommands.
#[derive(Debug, Subcommand)]
pub enum PairingCmd {
    /// List pairing requests, newest first.
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
    /// Open a pairing request for a platform identity; prints its token once.
    Start {
        /// Connector of the identity (telegram, discord, email, cli, ...).
        #[arg(long)]
        connector: String,
        /// The identity's user id on that connector.
        #[arg(long)]
        user_id: String,
        /// Display name (default: the user id).
        #[arg(long)]
        display_name: Option<String>,
        /// Lifetime in seconds (60-86400; default AGENT_RUNTIME_PAIRING_TTL_SECONDS).
        #[arg(long)]
        expires_in_sec: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the request a token belongs to.
    Lookup {
        /// The pairing token.
        token: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a request: creates the user and links the identity, verified.
    Approve {
        /// The pairing token.
        token: String,
        /// Role of the new user (overlord, admin, operator, member, viewer).
        #[arg(long, default_value = "member")]
        role: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deny a request.
    Deny {
        /// The pairing token.
        token: String,
        /// Why (default "denied by admin").
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn print_pairing(p: &Value) {
    outln!("id:        {}", s(p, "id"));
    outln!("status:    {}", s(p, "status"));
    outln!("identity:  {} user {} ({})", s(p, "connector"), s(p, "connector_user_id"), s(p, "display_name"));
    outln!("token:     {} (hint)", s(p, "token_hint"));
    outln!("expires:   {}", at(p, "expires_at"));
    if let Some(u) = p.get("approved_user_id").and_then(Value::as_str) {
        outln!("user:      {u} as {} (by {})", s(p, "role"), s(p, "approver"));
    }
    print_if("reason:    ", p, "reason");
}

/// Runs a pairing subcommand.
pub async fn run(client: ApiClient, cmd: PairingCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PairingCmd::List { status, limit, json } => {
            let mut q = vec![("limit", limit.to_string())];
            q.extend(status.map(|v| ("status", v)));
            let v: Value = client.get("/api/v1/pairings", &q).await?;
            let header = format!("{:<36}  {:<8}  {:<12}  {:<24}  NAME", "ID", "STATUS", "TOKEN", "IDENTITY");
            print_list(&v, json, "pairings", &header, "request", |p| {
                let who = format!("{}/{}", s(p, "connector"), s(p, "connector_user_id"));
                format!("{:<36}  {:<8}  {:<12}  {:<24}  {}", s(p, "id"), s(p, "status"), s(p, "token_hint"), who, s(p, "display_name"))
            });
        }
        PairingCmd::Start { connector, user_id, display_name, expires_in_sec, json } => {
            let body = json!({"connector": connector, "connector_user_id": user_id, "display_name": display_name, "expires_in_sec": expires_in_sec});
            let v: Value = client.post("/api/v1/pairings/start", &body).await?;
            if json {
                print_json(&v);
            } else {
                outln!("Pairing started: {}", s(&v, "id"));
                outln!("Token:     {} (shown once)", s(&v, "token"));
                print_pairing(&v);
            }
        }
        PairingCmd::Lookup { token, json } => {
            let v: Value = client.post("/api/v1/pairings/lookup", &json!({"token": token})).await?;
            if json { print_json(&v) } else { print_pairing(&v) }
        }
        PairingCmd::Approve { token, role, json } => {
            let v: Value = client.post("/api/v1/pairings/approve", &json!({"token": token, "role": role})).await?;
            if json {
                print_json(&v);
            } else {
                let p = &v["pairing"];
                outln!(
                    "Pairing approved: {} user {} ({}) linked as {} (user {}).",
                    s(p, "connector"),
                    s(p, "connector_user_id"),
                    s(p, "display_name"),
                    s(&v["user"], "role"),
                    s(&v["user"], "id")
                );
            }
        }
        PairingCmd::Deny { token, reason, json } => {
            let v: Value = client.post("/api/v1/pairings/deny", &json!({"token": token, "reason": reason})).await?;
            if json { print_json(&v) } else { outln!("Pairing denied for {} ({}).", s(&v, "display_name"), s(&v, "reason")) }
        }
    }
    Ok(ExitCode::SUCCESS)
}
