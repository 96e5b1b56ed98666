//! `search_workspace` and `open_document`: the built-in markdown index
//! (`crate::retrieval`), in the turn's workspace only.

use super::{Policy, ToolClass, ToolEnv, ToolError, ToolOutput, TypedTool};
use crate::BoxFuture;
use crate::domain::Role;
use crate::retrieval::{Retrieval, RetrievalError};
use schemars::JsonSchema;
use serde::Deserialize;

/// Most results one search returns (default [`DEFAULT_RESULTS`]).
pub const MAX_RESULTS: usize = 10;

/// Results without `limit`.
pub const DEFAULT_RESULTS: usize = 5;

/// Most bytes one `open_document` returns (default 8 KiB).
pub const MAX_OPEN_BYTES: usize = 32 * 1024;

fn index(env: &ToolEnv) -> Result<&Retrieval, ToolError> {
    env.retrieval.as_ref().ok_or_else(|| ToolError::Failed("search is turned off (AGENT_RUNTIME_RETRIEVAL_ENABLED=false)".into()))
}

fn failed(e: RetrievalError) -> ToolError {
    match e {
        RetrievalError::Query(q) => ToolError::BadArguments { tool: "search_workspace", reason: q.to_string() },
        RetrievalError::Path(p) => ToolError::Refused(p.to_string()),
        other => ToolError::Failed(other.to_string()),
    }
}

/// Arguments of `search_workspace`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// Words to look for; `"an exact phrase"`, `prefix*` and `-word` work.
    pub query: String,
    /// How many documents (1–10, default 5).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `search_workspace`.
pub struct SearchWorkspace;

impl TypedTool for SearchWorkspace {
    type Args = SearchArgs;
    const NAME: &'static str = "search_workspace";
    const DESCRIPTION: &'static str = "Full-text search over the workspace's markdown documents. Returns the best section of each matching document: path, section id (path#n, for open_document), heading path, lines and a snippet.";
    const CLASS: ToolClass = ToolClass::Knowledge;
    const POLICY: Policy = Policy { min_role: Role::Viewer, in_tasks: true, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: SearchArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let limit = args.limit.unwrap_or(DEFAULT_RESULTS).clamp(1, MAX_RESULTS);
            let hits = index(env)?.search(&env.context.workspace_id, &args.query, limit).await.map_err(failed)?;
            let source = format!("workspace search for {:?}", args.query);
            if hits.is_empty() {
                return Ok(ToolOutput::runtime(source, "No documents match."));
            }
            let rows: Vec<String> = hits
                .iter()
                .map(|h| {
                    let heading = if h.heading_path.is_empty() { String::new() } else { format!(" — {}", h.heading_path) };
                    format!("{}. {}{heading} (lines {}–{})\n   {}", h.rank, h.chunk_id, h.line_start, h.line_end, h.snippet)
                })
                .collect();
            Ok(ToolOutput::content(source, rows.join("\n")))
        })
    }
}

/// Arguments of `open_document`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenArgs {
    /// A workspace-relative document path, or a section id `path#n` from search_workspace.
    pub target: String,
    /// Most bytes returned (default 8192, at most 32768).
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

/// `open_document`.
pub struct OpenDocument;

impl TypedTool for OpenDocument {
    type Args = OpenArgs;
    const NAME: &'static str = "open_document";
    const DESCRIPTION: &'static str = "Open a markdown document of the workspace, or one section of it (`path#n` from search_workspace).";
    const CLASS: ToolClass = ToolClass::Knowledge;
    const POLICY: Policy = Policy { min_role: Role::Viewer, in_tasks: true, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: OpenArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let max = args.max_bytes.unwrap_or(8 * 1024).clamp(1, MAX_OPEN_BYTES);
            let o = index(env)?.open(&env.context.workspace_id, &args.target, max).await.map_err(failed)?;
            let what = match (&o.chunk, &o.heading_path) {
                (Some(n), Some(h)) if !h.is_empty() => format!("{}#{n} ({h}, lines {}–{})", o.path, o.line_start, o.line_end),
                (Some(n), _) => format!("{}#{n} (lines {}–{})", o.path, o.line_start, o.line_end),
                _ => o.path.clone(),
            };
            let note = if o.truncated { format!("\n[cut at {max} of {} bytes]", o.size) } else { String::new() };
            Ok(ToolOutput::content(format!("workspace document {what}"), format!("{}{note}", o.content)))
        })
    }
}
