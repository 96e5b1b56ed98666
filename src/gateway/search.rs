//! `/search <query>` and `/open <path | chunk id | result number>`: the
//! chat's own workspace only (the context's `workspace_id`; nothing a user
//! types can name another), answered from the retrieval index. A result
//! number refers to this chat's last `/search` (kept in memory, bounded).

use super::{Gateway, Turn};
use crate::retrieval::{PathError, RetrievalError};
use std::collections::{HashMap, VecDeque};

/// Results shown by `/search`.
const SHOWN: usize = 5;

/// Most characters of a document `/open` shows in a chat.
const OPEN_CHARS: usize = 3_000;

/// Chats whose last results are remembered.
const REMEMBERED: usize = 1_000;

/// Each chat's last `/search` results (chunk ids), oldest chat first out.
#[derive(Debug, Default)]
pub(crate) struct LastResults {
    by_context: HashMap<String, Vec<String>>,
    order: VecDeque<String>,
}

impl LastResults {
    fn put(&mut self, context: &str, ids: Vec<String>) {
        if self.by_context.insert(context.to_string(), ids).is_none() {
            self.order.push_back(context.to_string());
            while self.order.len() > REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.by_context.remove(&old);
                }
            }
        }
    }

    fn get(&self, context: &str, n: usize) -> Option<Option<String>> {
        self.by_context.get(context).map(|ids| ids.get(n.checked_sub(1)?).cloned())
    }
}

fn off() -> String {
    "Search is turned off on this runtime (AGENT_RUNTIME_RETRIEVAL_ENABLED=false).".into()
}

fn failed(e: &RetrievalError) -> String {
    match e {
        RetrievalError::Query(q) => format!("Cannot search that: {q}. Try /search <words>, \"an exact phrase\", instal* or -word."),
        RetrievalError::Path(p) => format!("Cannot open that: {p}."),
        RetrievalError::Index(_) | RetrievalError::Unavailable(_) => {
            tracing::error!(error = %e, "retrieval failed");
            "Sorry, search is unavailable right now (the index failed on our side). Please try again.".into()
        }
    }
}

pub(super) async fn search(g: &Gateway, t: &mut Turn<'_>, query: &str) -> String {
    let Some(r) = &g.retrieval else { return off() };
    let ws = &t.ctx.workspace_id;
    let hits = match r.search(ws, query, SHOWN).await {
        Ok(h) => h,
        Err(e) => return failed(&e),
    };
    let pending = r.pending_changes();
    let note = if pending > 0 { format!("\n(The index is catching up: {pending} changes waiting.)") } else { String::new() };
    if let Ok(mut last) = g.last_results.lock() {
        last.put(t.ctx.id.as_str(), hits.iter().map(|h| h.chunk_id.clone()).collect());
    }
    if hits.is_empty() {
        return format!("No matches for \"{}\" in this workspace's markdown.{note}", query.trim());
    }
    let mut out = format!("Results for \"{}\":\n", query.trim());
    for h in &hits {
        let place = if h.heading_path.is_empty() { String::new() } else { format!(" — {}", h.heading_path) };
        out.push_str(&format!("{}. `{}`{place} (lines {}–{})\n", h.rank, h.path, h.line_start, h.line_end));
        if !h.snippet.is_empty() {
            out.push_str(&format!("   {}\n", h.snippet));
        }
    }
    out.push_str("Open one with /open <number> or /open <path>.");
    out.push_str(&note);
    out
}

pub(super) async fn open(g: &Gateway, t: &mut Turn<'_>, target: &str) -> String {
    let Some(r) = &g.retrieval else { return off() };
    let target = target.trim();
    let resolved = match target.parse::<usize>() {
        Ok(n) => match g.last_results.lock().ok().and_then(|l| l.get(t.ctx.id.as_str(), n)) {
            Some(Some(id)) => id,
            Some(None) => return format!("There is no result {n} in this chat's last search."),
            None => return "No search in this chat yet: /search <words> first, then /open <number>.".into(),
        },
        Err(_) => target.to_string(),
    };
    match r.open(&t.ctx.workspace_id, &resolved, OPEN_CHARS).await {
        Ok(o) => {
            let what = match (&o.chunk, o.heading_path.as_deref()) {
                (Some(_), Some(h)) if !h.is_empty() => format!("`{}` — {} (lines {}–{})", o.path, h, o.line_start, o.line_end),
                (Some(_), _) => format!("`{}` (lines {}–{})", o.path, o.line_start, o.line_end),
                (None, _) => format!("`{}`", o.path),
            };
            let more = if o.truncated {
                format!("\n… (cut at {OPEN_CHARS} bytes of {}; the admin API returns more)", o.size)
            } else {
                String::new()
            };
            format!("{what}\n\n{}{more}", o.content.trim_end())
        }
        Err(RetrievalError::Path(e @ (PathError::Refused(_) | PathError::NotDocument(_)))) => {
            t.note("retrieval.open_refused", crate::store::Decision::Deny, Some(e.to_string()), Some(resolved.clone()));
            failed(&RetrievalError::Path(e))
        }
        Err(e) => failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_results_are_per_chat_and_bounded() {
        let mut l = LastResults::default();
        l.put("c1", vec!["a.md#1".into(), "b.md#2".into()]);
        assert_eq!(l.get("c1", 2), Some(Some("b.md#2".into())));
        assert_eq!(l.get("c1", 3), Some(None));
        assert_eq!(l.get("c1", 0), Some(None));
        assert_eq!(l.get("c2", 1), None);
        for i in 0..REMEMBERED + 5 {
            l.put(&format!("x{i}"), Vec::new());
        }
        assert_eq!(l.get("c1", 1), None, "the oldest chat is forgotten");
        assert_eq!(l.by_context.len(), REMEMBERED);
    }
}
