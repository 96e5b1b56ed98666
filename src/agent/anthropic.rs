//! Anthropic messages (`POST {base}/messages`) with native tool calling
//! (`tool_use` / `tool_result` blocks) or, with `AGENT_RUNTIME_LLM_TOOLS=text`,
//! text mode; and the HTTP send shared by both providers (status
//! classification, 4 MiB response cap).
//!
//! Invariant: the messages sent alternate strictly between user and
//! assistant, as the API requires (same-role neighbours are merged).

use super::{ChatRequest, ChatResponse, LlmError, LlmProvider, Message, ToolCall, strip_reasoning, textmode};
use crate::BoxFuture;
use crate::config::{LlmConfig, Secret, ToolMode};
use serde_json::{Value, json};

const NAME: &str = "anthropic";
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Sends a request and returns the JSON body of a 2xx answer.
pub(super) async fn send(provider: &'static str, req: reqwest::RequestBuilder) -> Result<Value, LlmError> {
    let classify = |e: reqwest::Error| {
        if e.is_timeout() { LlmError::Timeout(provider) } else { LlmError::Transport { provider, message: e.to_string() } }
    };
    let resp = req.send().await.map_err(classify)?;
    let status = resp.status();
    if resp.content_length().is_some_and(|n| n as usize > MAX_RESPONSE_BYTES) {
        return Err(LlmError::BadResponse { provider, message: "response larger than 4 MiB".into() });
    }
    let bytes = resp.bytes().await.map_err(classify)?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(LlmError::BadResponse { provider, message: "response larger than 4 MiB".into() });
    }
    if !status.is_success() {
        let body: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
        return Err(LlmError::Status { provider, status: status.as_u16(), body });
    }
    serde_json::from_slice(&bytes).map_err(|e| LlmError::BadResponse { provider, message: format!("invalid JSON: {e}") })
}

/// The Anthropic client.
pub struct Anthropic {
    client: reqwest::Client,
    url: String,
    key: Option<Secret>,
    model: String,
    /// `AGENT_RUNTIME_LLM_TOOLS=text`: tools are described in the system
    /// prompt (`auto` and `native` are both native here).
    text_mode: bool,
}

impl Anthropic {
    /// A client for `cfg.base_url`.
    pub fn new(client: reqwest::Client, cfg: &LlmConfig) -> Self {
        Self {
            client,
            url: format!("{}/messages", cfg.base_url),
            key: cfg.api_key.clone(),
            model: cfg.model.clone(),
            text_mode: cfg.tools == ToolMode::Text,
        }
    }

    async fn call(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if self.text_mode {
            let (req, decoder) = textmode::encode(req);
            return self.post(&req).await.map(|r| decoder.decode(r));
        }
        self.post(req).await
    }

    async fn post(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let key =
            self.key.as_ref().ok_or_else(|| LlmError::NotConfigured("set AGENT_RUNTIME_LLM_API_KEY for the Anthropic provider".into()))?;
        let http = self
            .client
            .post(&self.url)
            .header("x-api-key", key.expose())
            .header("anthropic-version", "2023-06-01")
            .json(&body(req, &self.model));
        parse(&send(NAME, http).await?, &self.model)
    }
}

/// The request body: user and assistant turns alternating, tool results
/// as `tool_result` blocks of one user message, `tools` when offered.
fn body(req: &ChatRequest, model: &str) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    for m in &req.messages {
        match m {
            Message::User { text } => push(&mut messages, "user", Value::String(text.clone())),
            Message::Assistant { text, calls } => push(&mut messages, "assistant", assistant_blocks(text, calls)),
            Message::Tool { call_id, content, is_error, .. } => {
                let block = json!({"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error});
                push(&mut messages, "user", json!([block]));
            }
        }
    }
    for m in &mut messages {
        if m["content"].as_array().is_some_and(Vec::is_empty) {
            // The API refuses an empty turn (an empty answer kept in the history).
            m["content"] = json!([{"type": "text", "text": "(no answer)"}]);
        }
    }
    let mut body = json!({"model": model, "max_tokens": 4096, "system": req.system, "messages": messages});
    if !req.tools.is_empty() {
        let tools: Vec<Value> =
            req.tools.iter().map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters})).collect();
        body["tools"] = Value::Array(tools);
    }
    body
}

/// An assistant turn as blocks: its text (if any), then one `tool_use` per call.
fn assistant_blocks(text: &str, calls: &[ToolCall]) -> Value {
    let mut blocks = into_blocks(Value::String(text.to_string()));
    for c in calls {
        // `input` must be an object: malformed arguments (the model's own
        // mistake, already answered with an error result) become `{}`.
        let input = serde_json::from_str::<Value>(&c.arguments).ok().filter(Value::is_object).unwrap_or_else(|| json!({}));
        blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
    }
    Value::Array(blocks)
}

/// Appends a message, merging it into the last one when that has the same
/// role (consecutive tool results, or a user message after them).
fn push(messages: &mut Vec<Value>, role: &str, content: Value) {
    match messages.last_mut().filter(|last| last["role"] == role) {
        Some(last) => {
            let mut blocks = into_blocks(last["content"].take());
            blocks.extend(into_blocks(content));
            last["content"] = Value::Array(blocks);
        }
        None => messages.push(json!({"role": role, "content": content})),
    }
}

/// Content as a list of blocks (a plain string is one text block; an empty
/// one is none, since the API refuses empty text blocks).
fn into_blocks(content: Value) -> Vec<Value> {
    match content {
        Value::Array(blocks) => blocks,
        Value::String(text) if text.is_empty() => Vec::new(),
        Value::String(text) => vec![json!({"type": "text", "text": text})],
        other => vec![other],
    }
}

fn parse(body: &Value, requested: &str) -> Result<ChatResponse, LlmError> {
    let bad = |message: &str| LlmError::BadResponse { provider: NAME, message: message.to_string() };
    let blocks = body.get("content").and_then(Value::as_array).ok_or_else(|| bad("no content array"))?;
    let mut text: Vec<&str> = Vec::new();
    let mut calls = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.extend(b.get("text").and_then(Value::as_str)),
            Some("tool_use") => {
                let name = b.get("name").and_then(Value::as_str).ok_or_else(|| bad("a tool_use block has no name"))?;
                let id = b.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map_or_else(|| format!("toolu_{i}"), str::to_string);
                let arguments = b.get("input").filter(|v| !v.is_null()).map_or_else(|| "{}".to_string(), Value::to_string);
                calls.push(ToolCall { id, name: name.to_string(), arguments });
            }
            _ => {}
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Err(bad("no text or tool_use block"));
    }
    Ok(ChatResponse {
        text: strip_reasoning(&text.join("\n")),
        calls,
        model: body.get("model").and_then(Value::as_str).unwrap_or(requested).to_string(),
        prompt_tokens: body.pointer("/usage/input_tokens").and_then(Value::as_u64),
        completion_tokens: body.pointer("/usage/output_tokens").and_then(Value::as_u64),
    })
}

impl LlmProvider for Anthropic {
    fn name(&self) -> &'static str {
        NAME
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn complete<'a>(&'a self, req: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(self.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_blocks_tool_uses_and_usage() {
        let body = json!({"model": "c", "content": [{"type": "text", "text": "a"}, {"type": "tool_use", "id": "toolu_x", "name": "read_file", "input": {"path": "a.md"}}, {"type": "text", "text": "b"}], "usage": {"input_tokens": 5, "output_tokens": 6}});
        let r = parse(&body, "x").expect("parse");
        assert_eq!((r.text.as_str(), r.prompt_tokens, r.completion_tokens), ("a\nb", Some(5), Some(6)));
        assert_eq!(r.calls, [ToolCall { id: "toolu_x".into(), name: "read_file".into(), arguments: r#"{"path":"a.md"}"#.into() }]);
        assert!(parse(&json!({"content": []}), "x").is_err());
    }

    #[test]
    fn consecutive_tool_results_share_one_user_message() {
        let calls = vec![
            ToolCall { id: "t1".into(), name: "a".into(), arguments: "{}".into() },
            ToolCall { id: "t2".into(), name: "b".into(), arguments: "{broken".into() },
        ];
        let req = ChatRequest {
            system: "s".into(),
            messages: vec![
                Message::User { text: "u".into() },
                Message::Assistant { text: "thinking".into(), calls },
                Message::Tool { call_id: "t1".into(), name: "a".into(), content: "one".into(), is_error: false },
                Message::Tool { call_id: "t2".into(), name: "b".into(), content: "bad".into(), is_error: true },
            ],
            tools: vec![crate::agent::ToolSpec { name: "a".into(), description: "d".into(), parameters: json!({"type": "object"}).into() }],
        };
        let b = body(&req, "m");
        let msgs = b["messages"].as_array().expect("messages");
        assert_eq!(msgs.len(), 3, "{b}");
        assert_eq!(msgs[1]["content"][1], json!({"type": "tool_use", "id": "t1", "name": "a", "input": {}}));
        assert_eq!(msgs[1]["content"][2]["input"], json!({}), "malformed arguments become an empty input");
        assert_eq!(msgs[2]["role"], "user");
        assert_eq!(msgs[2]["content"][1], json!({"type": "tool_result", "tool_use_id": "t2", "content": "bad", "is_error": true}));
        assert_eq!(b["tools"][0], json!({"name": "a", "description": "d", "input_schema": {"type": "object"}}));
        assert_eq!(b["system"], "s");
    }

    #[test]
    fn a_tool_use_without_an_id_gets_one_and_neither_text_nor_calls_is_an_error() {
        let r = parse(&json!({"content": [{"type": "tool_use", "name": "list_files", "input": null}]}), "x").expect("parse");
        assert_eq!(r.calls, [ToolCall { id: "toolu_0".into(), name: "list_files".into(), arguments: "{}".into() }]);
        assert_eq!(r.text, "");
        for body in [json!({"content": [{"type": "thinking", "thinking": "hmm"}]}), json!({"content": "text"}), json!({})] {
            assert!(matches!(parse(&body, "x"), Err(LlmError::BadResponse { .. })), "{body}");
        }
    }

    /// Anthropic requires user and assistant turns to alternate: whatever
    /// the conversation holds, same-role neighbours become one message.
    #[test]
    fn roles_alternate_whatever_the_conversation_holds() {
        let call = ToolCall { id: "t1".into(), name: "a".into(), arguments: "{}".into() };
        let req = ChatRequest {
            system: String::new(),
            messages: vec![
                Message::User { text: "first".into() },
                Message::User { text: "second".into() },
                Message::Assistant { text: String::new(), calls: vec![call] },
                Message::Tool { call_id: "t1".into(), name: "a".into(), content: "r".into(), is_error: false },
                Message::User { text: "and then?".into() },
                Message::Assistant { text: "x".into(), calls: Vec::new() },
                Message::Assistant { text: String::new(), calls: Vec::new() },
            ],
            tools: Vec::new(),
        };
        let b = body(&req, "m");
        let roles: Vec<&str> = b["messages"].as_array().expect("messages").iter().filter_map(|m| m["role"].as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant"], "{b}");
        assert_eq!(b["messages"][0]["content"], json!([{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]));
        assert_eq!(b["messages"][1]["content"], json!([{"type": "tool_use", "id": "t1", "name": "a", "input": {}}]), "no empty text block");
        assert_eq!(
            b["messages"][2]["content"],
            json!([{"type": "tool_result", "tool_use_id": "t1", "content": "r", "is_error": false}, {"type": "text", "text": "and then?"}]),
            "the results first, then the user's text"
        );
        assert_eq!(b["messages"][3]["content"], json!([{"type": "text", "text": "x"}]), "an empty answer adds nothing");
        let empty = ChatRequest { messages: vec![Message::Assistant { text: String::new(), calls: Vec::new() }], ..ChatRequest::default() };
        assert_eq!(body(&empty, "m")["messages"][0]["content"], json!([{"type": "text", "text": "(no answer)"}]), "never an empty turn");
        assert!(b.get("tools").is_none(), "no tools field without tools");
        let single = body(&ChatRequest::single("s", "hello"), "m");
        assert_eq!(single["messages"], json!([{"role": "user", "content": "hello"}]), "a lone user message stays plain text");
    }
}
