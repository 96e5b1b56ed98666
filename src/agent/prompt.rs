//! The system prompt: a role baseline (admin or public context), then the
//! system-prompt files (global → workspace → context), the context's own
//! override (`/prompt set`), and the SOUL files, each file capped.

use crate::config::{LlmConfig, PromptFiles};
use crate::domain::Context;
use crate::workspace::{Workspaces, sanitize_segment};
use std::path::PathBuf;

const FILE_MAX_BYTES: usize = 2400;
const PROMPT_MAX_BYTES: usize = 12_000;

/// Composes system prompts from config and files.
#[derive(Debug, Clone)]
pub struct PromptBuilder {
    files: PromptFiles,
    admin_baseline: String,
    public_baseline: String,
    workspaces: Workspaces,
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

async fn read_capped(path: PathBuf) -> Option<String> {
    let text = tokio::fs::read_to_string(&path).await.ok()?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(if text.len() > FILE_MAX_BYTES { format!("{}...", cut(text, FILE_MAX_BYTES)) } else { text.to_string() })
}

impl PromptBuilder {
    /// A builder over the configured files.
    pub fn new(files: PromptFiles, llm: &LlmConfig, workspaces: Workspaces) -> Self {
        Self { files, admin_baseline: llm.admin_system_prompt.clone(), public_baseline: llm.public_system_prompt.clone(), workspaces }
    }

    async fn layered(&self, ctx: &Context, global: &std::path::Path, ws_rel: &str, ctx_rel: &str, labels: [&str; 3]) -> Vec<String> {
        let dir = self.workspaces.dir(&ctx.workspace_id);
        let ctx_rel = ctx_rel.replace("{context_id}", &sanitize_segment(ctx.id.as_str()));
        let mut out = Vec::new();
        for (label, path) in labels.into_iter().zip([global.to_path_buf(), dir.join(ws_rel), dir.join(ctx_rel)]) {
            if let Some(text) = read_capped(path).await {
                out.push(format!("{label}:\n{text}"));
            }
        }
        out
    }

    /// The system prompt for a call made on behalf of `ctx`.
    pub async fn system_prompt(&self, ctx: &Context) -> String {
        let f = &self.files;
        let mut sections = vec![if ctx.is_admin { self.admin_baseline.clone() } else { self.public_baseline.clone() }];
        let system = self
            .layered(
                ctx,
                &f.system_global,
                &f.system_workspace_rel,
                &f.system_context_rel,
                ["Global prompt", "Workspace prompt override", "Context prompt override"],
            )
            .await;
        if !system.is_empty() {
            sections.push(format!("System prompt directives:\n{}", system.join("\n\n")));
        }
        if !ctx.system_prompt.trim().is_empty() {
            sections.push(format!("Context policy override:\n{}", ctx.system_prompt.trim()));
        }
        let soul = self
            .layered(
                ctx,
                &f.soul_global,
                &f.soul_workspace_rel,
                &f.soul_context_rel,
                ["Global SOUL", "Workspace SOUL override", "Agent SOUL override"],
            )
            .await;
        if !soul.is_empty() {
            sections.push(format!("SOUL behavior directives:\n{}", soul.join("\n\n")));
        }
        cut(&sections.join("\n\n"), PROMPT_MAX_BYTES).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChatRef, ContextId, WorkspaceId};

    #[tokio::test]
    async fn layers_files_and_the_context_override_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspaces::new(dir.path().join("ws"));
        let ctx = Context {
            id: ContextId::from_string("c1"),
            workspace_id: WorkspaceId::from_string("w1"),
            chat: ChatRef::new("codex", "x").expect("chat"),
            display_name: "x".into(),
            system_prompt: "Be terse".into(),
            is_admin: false,
            created_at: 0,
        };
        let global = dir.path().join("SYSTEM.md");
        std::fs::write(&global, "global rules").expect("write");
        let ctx_file = ws.dir(&ctx.workspace_id).join("context/agents/c1/SYSTEM_PROMPT.md");
        std::fs::create_dir_all(ctx_file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&ctx_file, "context rules").expect("write");
        let files = PromptFiles {
            system_global: global,
            system_workspace_rel: "context/SYSTEM_PROMPT.md".into(),
            system_context_rel: "context/agents/{context_id}/SYSTEM_PROMPT.md".into(),
            soul_global: dir.path().join("missing.md"),
            soul_workspace_rel: "context/SOUL.md".into(),
            soul_context_rel: "context/agents/{context_id}/SOUL.md".into(),
        };
        let llm = crate::config::Config::read(&crate::config::EnvSource::default()).config.llm;
        let p = PromptBuilder::new(files, &llm, ws).system_prompt(&ctx).await;
        let order = [
            "community members",
            "Global prompt:\nglobal rules",
            "Context prompt override:\ncontext rules",
            "Context policy override:\nBe terse",
        ];
        let positions: Vec<usize> = order.iter().map(|s| p.find(s).unwrap_or_else(|| panic!("{s:?} missing in {p}"))).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{p}");
        assert!(!p.contains("SOUL"));
    }
}
