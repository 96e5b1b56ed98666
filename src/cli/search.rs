//! `agent-runtime search`, `open` and `index status|rebuild`: the built-in
//! markdown index through the admin API. Without `--workspace` the only
//! workspace is used; with several, the command names them and stops.

use super::{print_json, s};
use crate::client::ApiClient;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

/// `search` arguments.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query: words, "an exact phrase", prefix*, -excluded.
    #[arg(required = true, num_args = 1..)]
    pub query: Vec<String>,
    /// The workspace (default: the only one).
    #[arg(long, short)]
    pub workspace: Option<String>,
    /// At most this many results (1-50).
    #[arg(long, default_value_t = 10)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `open` arguments.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// A workspace-relative path (notes/a.md) or a result's chunk id (notes/a.md#3).
    pub target: String,
    /// The workspace (default: the only one).
    #[arg(long, short)]
    pub workspace: Option<String>,
    /// At most this many bytes of text (1-1048576).
    #[arg(long, default_value_t = 65_536)]
    pub max_bytes: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `index` subcommands.
#[derive(Debug, Subcommand)]
pub enum IndexCmd {
    /// Documents and sections per workspace, changes waiting, index size.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop the index and build it again from the files (one workspace, or all); waits until done.
    Rebuild {
        /// Only this workspace.
        #[arg(long, short)]
        workspace: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The workspace to use: the one given, else the only one there is.
async fn pick(client: &ApiClient, given: Option<String>) -> anyhow::Result<String> {
    if let Some(w) = given {
        return Ok(w);
    }
    let v: Value = client.get("/api/v1/workspaces", &[("limit", "11".to_string())]).await?;
    let ids: Vec<String> = v["items"].as_array().map(Vec::as_slice).unwrap_or_default().iter().map(|w| s(w, "id").to_string()).collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("there are no workspaces yet (a workspace is made when a chat first talks to the runtime)"),
        many => {
            let shown = many.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
            let more = if many.len() > 10 { ", …" } else { "" };
            anyhow::bail!(
                "there are several workspaces; pick one with --workspace ({shown}{more}; `agent-runtime workspace list` shows all)"
            )
        }
    }
}

/// Runs `search`.
pub async fn search(client: ApiClient, a: SearchArgs) -> anyhow::Result<ExitCode> {
    let ws = pick(&client, a.workspace).await?;
    let q = a.query.join(" ");
    let v: Value = client.get("/api/v1/search", &[("workspace_id", ws.clone()), ("q", q.clone()), ("limit", a.limit.to_string())]).await?;
    if a.json {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let hits = v["results"].as_array().map(Vec::as_slice).unwrap_or_default();
    for h in hits {
        let place = s(h, "heading_path");
        let place = if place.is_empty() { String::new() } else { format!("  {place}") };
        outln!("{:>2}. {}{place}  (lines {}-{})", h["rank"], s(h, "path"), h["line_start"], h["line_end"]);
        let snip = s(h, "snippet");
        if !snip.is_empty() {
            outln!("    {snip}");
        }
        // Quoted for a POSIX shell, whatever the file is called.
        let id = s(h, "chunk_id").replace('\'', "'\\''");
        outln!("    open: agent-runtime open --workspace {ws} '{id}'");
    }
    outln!("{} result(s) for {q:?} in workspace {ws}", hits.len());
    if let Some(n) = v["pending_changes"].as_u64().filter(|n| *n > 0) {
        outln!("(the index is catching up: {n} changes waiting)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `open`.
pub async fn open(client: ApiClient, a: OpenArgs) -> anyhow::Result<ExitCode> {
    let ws = pick(&client, a.workspace).await?;
    let v: Value =
        client.get("/api/v1/documents", &[("workspace_id", ws), ("path", a.target), ("max_bytes", a.max_bytes.to_string())]).await?;
    if a.json {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    out!("{}", s(&v, "content"));
    if !s(&v, "content").ends_with('\n') {
        outln!();
    }
    if v["truncated"].as_bool() == Some(true) {
        eprintln!("(cut at {} bytes of {}; raise --max-bytes for more)", a.max_bytes, v["size"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an `index` subcommand.
pub async fn index(client: ApiClient, cmd: IndexCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        IndexCmd::Status { json } => {
            let v: Value = client.get("/api/v1/retrieval/status", &[]).await?;
            if json {
                print_json(&v);
                return Ok(ExitCode::SUCCESS);
            }
            if v["enabled"].as_bool() != Some(true) {
                outln!("retrieval is off (AGENT_RUNTIME_RETRIEVAL_ENABLED=false, or the index could not open: see `agent-runtime health`)");
                return Ok(ExitCode::from(1));
            }
            outln!("{:<36}  {:>9}  {:>9}  {:>7}  LAST INDEXED", "WORKSPACE", "DOCUMENTS", "SECTIONS", "SKIPPED");
            for w in v["workspaces"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let last = w["last_indexed_at"].as_i64().map_or_else(|| "-".to_string(), crate::clock::rfc3339);
                let n = |k: &str| w[k].as_u64().unwrap_or(0);
                outln!("{:<36}  {:>9}  {:>9}  {:>7}  {last}", s(w, "workspace_id"), n("documents"), n("chunks"), n("skipped"));
            }
            let mib = v["database_bytes"].as_u64().unwrap_or(0) as f64 / 1_048_576.0;
            outln!(
                "{} documents, {} sections, {} changes waiting{}; index {mib:.1} MiB",
                v["documents"],
                v["chunks"],
                v["pending_changes"],
                if v["reconciling"].as_bool() == Some(true) { ", comparing with the disk now" } else { "" }
            );
            if let Some(e) = v["error"].as_str() {
                outln!("last error: {e}");
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        IndexCmd::Rebuild { workspace, json } => {
            let body = match &workspace {
                Some(w) => json!({ "workspace_id": w }),
                None => json!({}),
            };
            let v: Value = client.post("/api/v1/retrieval/rebuild", &body).await?;
            if json {
                print_json(&v);
            } else {
                outln!(
                    "rebuilt {}: {} files indexed, {} skipped, in {} ms",
                    workspace.map_or_else(|| format!("{} workspace(s)", v["workspaces"]), |w| format!("workspace {w}")),
                    v["indexed"],
                    v["skipped"],
                    v["elapsed_ms"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
