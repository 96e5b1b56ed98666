//! OpenAI-compatible chat completions (`POST {base}/chat/completions`): OpenAI,
//! z.ai, Ollama, vLLM, llama.cpp and the test suite's scripted server, with
//! native tool calling (`tools`, `tool_calls`, `role: tool` results) or, for
//! servers without it, text mode (`super::textmode`).
//!
//! Invariant: in `auto` mode a server that refuses `tools` is asked in text
//! mode from then on; the refused call is an error of its own
//! ([`LlmError::ToolsRejected`]) so that it is recorded and asked again.

use super::anthropic::send;
use super::{ChatRequest, ChatResponse, LlmError, LlmProvider, Message, ToolCall, strip_reasoning, textmode};
use crate::BoxFuture;
use crate::config::{LlmConfig, Secret, ToolMode};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};

const NAME: &str = "openai";

/// The OpenAI-compatible client.
pub struct OpenAi {
    client: reqwest::Client,
    url: String,
    key: Option<Secret>,
    model: String,
    /// `AGENT_RUNTIME_LLM_TOOLS`.
    mode: ToolMode,
    /// Tools are described in the system prompt rather than sent: the mode
    /// is `text`, or it is `auto` and the server refused `tools` once.
    text_mode: AtomicBool,
}

impl OpenAi {
    /// A client for `cfg.base_url`.
    pub fn new(client: reqwest::Client, cfg: &LlmConfig) -> Self {
        Self {
            client,
            url: format!("{}/chat/completions", cfg.base_url),
            key: cfg.api_key.clone(),
            model: cfg.model.clone(),
            mode: cfg.tools,
            text_mode: AtomicBool::new(cfg.tools == ToolMode::Text),
        }
    }

    async fn call(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if self.text_mode.load(Ordering::Relaxed) {
            let (req, decoder) = textmode::encode(req);
            return self.post(&req).await.map(|r| decoder.decode(r));
        }
        match self.post(req).await {
            // Some local servers (older llama.cpp, Ollama and vLLM builds) refuse `tools`.
            Err(LlmError::Status { status: status @ (400 | 404 | 422), body, .. })
                if self.mode == ToolMode::Auto && !req.tools.is_empty() && about_tools(&body) =>
            {
                if !self.text_mode.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        status,
                        body = %body,
                        setting = "AGENT_RUNTIME_LLM_TOOLS",
                        "the OpenAI-compatible server refused the tools; from now on they are described in the system prompt \
                         (text mode; set AGENT_RUNTIME_LLM_TOOLS=text to start there, or =native to never fall back)"
                    );
                }
                Err(LlmError::ToolsRejected { provider: NAME, status, body })
            }
            other => other,
        }
    }

    async fn post(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let mut http = self.client.post(&self.url).json(&body(req, &self.model));
        if let Some(key) = &self.key {
            http = http.bearer_auth(key.expose());
        }
        parse(&send(NAME, http).await?, &self.model)
    }
}

/// Whether an error body is about tools: a 400 for another reason (the
/// context is too long, say) must not switch the process to text mode.
fn about_tools(body: &str) -> bool {
    let body = body.to_ascii_lowercase();
    body.contains("tool") || body.contains("function")
}

/// The request body: the conversation in OpenAI's shape, `tools` when offered.
fn body(req: &ChatRequest, model: &str) -> Value {
    let mut messages = Vec::new();
    if !req.system.is_empty() {
        messages.push(json!({"role": "system", "content": req.system}));
    }
    for m in &req.messages {
        messages.push(match m {
            Message::User { text } => json!({"role": "user", "content": text}),
            Message::Assistant { text, calls } if calls.is_empty() => json!({"role": "assistant", "content": text}),
            Message::Assistant { text, calls } => {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
                let content = if text.is_empty() { Value::Null } else { Value::String(text.clone()) };
                json!({"role": "assistant", "content": content, "tool_calls": calls})
            }
            Message::Tool { call_id, content, .. } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        });
    }
    let mut body = json!({"model": model, "messages": messages});
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        body["tools"] = Value::Array(tools);
    }
    body
}

fn parse(body: &Value, requested: &str) -> Result<ChatResponse, LlmError> {
    let bad = |message: &str| LlmError::BadResponse { provider: NAME, message: message.to_string() };
    let message = body.pointer("/choices/0/message").ok_or_else(|| bad("no choices[0].message"))?;
    let text = match message.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => strip_reasoning(s),
        Some(_) => return Err(bad("content is not text")),
    };
    let mut calls = Vec::new();
    for (i, c) in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = c.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| bad("a tool call has no function name"))?;
        let arguments = match c.pointer("/function/arguments") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => other.to_string(),
        };
        let id = c.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map_or_else(|| format!("call_{i}"), str::to_string);
        calls.push(ToolCall { id, name: name.to_string(), arguments });
    }
    if text.is_empty() && calls.is_empty() && !message.get("content").is_some_and(Value::is_string) {
        return Err(bad("neither content nor tool_calls"));
    }
    Ok(ChatResponse {
        text,
        calls,
        model: body.get("model").and_then(Value::as_str).unwrap_or(requested).to_string(),
        prompt_tokens: body.pointer("/usage/prompt_tokens").and_then(Value::as_u64),
        completion_tokens: body.pointer("/usage/completion_tokens").and_then(Value::as_u64),
    })
}

impl LlmProvider for OpenAi {
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
    use crate::agent::ToolSpec;

    #[test]
    fn parses_content_usage_and_model() {
        let body = json!({"model": "m1", "choices": [{"message": {"content": "<think>x</think> hi"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 4}});
        let r = parse(&body, "req").expect("parse");
        assert_eq!((r.text.as_str(), r.model.as_str(), r.prompt_tokens, r.completion_tokens), ("hi", "m1", Some(3), Some(4)));
        assert!(parse(&json!({"choices": []}), "m").is_err());
        assert!(parse(&json!({"choices": [{"message": {"content": null}}]}), "m").is_err(), "neither text nor calls");
    }

    #[test]
    fn tool_calls_are_parsed_and_sent_back_in_the_native_shape() {
        let answer = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a.md\"}"}},
            {"type": "function", "function": {"name": "list_files", "arguments": {"path": "x"}}},
            {"id": "call_c", "type": "function", "function": {"name": "write_file", "arguments": "{broken"}}
        ]}}]});
        let r = parse(&answer, "m").expect("parse");
        assert_eq!(r.text, "");
        assert_eq!(r.calls[0], ToolCall { id: "call_a".into(), name: "read_file".into(), arguments: "{\"path\":\"a.md\"}".into() });
        assert_eq!(
            (r.calls[1].id.as_str(), r.calls[1].arguments.as_str()),
            ("call_1", "{\"path\":\"x\"}"),
            "missing id made, object arguments kept as text"
        );
        assert_eq!(r.calls[2].arguments, "{broken", "malformed arguments kept verbatim");
        let req = ChatRequest {
            system: "s".into(),
            messages: vec![
                Message::User { text: "u".into() },
                Message::Assistant { text: String::new(), calls: r.calls.clone() },
                Message::Tool { call_id: "call_a".into(), name: "read_file".into(), content: "[source: x]\nhi".into(), is_error: false },
            ],
            tools: vec![ToolSpec { name: "read_file".into(), description: "d".into(), parameters: json!({"type": "object"}).into() }],
        };
        let b = body(&req, "m");
        assert_eq!(b["messages"][0], json!({"role": "system", "content": "s"}));
        assert_eq!(b["messages"][2]["content"], Value::Null);
        assert_eq!(b["messages"][2]["tool_calls"][2]["function"]["arguments"], "{broken");
        assert_eq!(b["messages"][3], json!({"role": "tool", "tool_call_id": "call_a", "content": "[source: x]\nhi"}));
        assert_eq!(
            b["tools"][0],
            json!({"type": "function", "function": {"name": "read_file", "description": "d", "parameters": {"type": "object"}}})
        );
        assert!(body(&ChatRequest::single("", "x"), "m").get("tools").is_none(), "no tools field without tools");
    }

    #[test]
    fn assistant_text_goes_as_content_and_tool_calls_only_when_there_are_some() {
        let call = ToolCall { id: "call_1".into(), name: "a".into(), arguments: "{}".into() };
        let req = ChatRequest {
            system: String::new(),
            messages: vec![
                Message::User { text: "u".into() },
                Message::Assistant { text: "let me look".into(), calls: vec![call] },
                Message::Tool { call_id: "call_1".into(), name: "a".into(), content: "failed".into(), is_error: true },
                Message::Assistant { text: "done".into(), calls: Vec::new() },
            ],
            tools: Vec::new(),
        };
        let b = body(&req, "m");
        assert_eq!(b["messages"][0], json!({"role": "user", "content": "u"}), "no system message when it is empty");
        assert_eq!(
            b["messages"][1],
            json!({"role": "assistant", "content": "let me look", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]})
        );
        assert_eq!(b["messages"][2], json!({"role": "tool", "tool_call_id": "call_1", "content": "failed"}));
        assert_eq!(b["messages"][3], json!({"role": "assistant", "content": "done"}));
    }

    #[test]
    fn content_absent_with_calls_is_empty_text_and_both_text_and_calls_are_kept() {
        let r = parse(&json!({"choices": [{"message": {"tool_calls": [{"function": {"name": "a"}}]}}]}), "m").expect("parse");
        assert_eq!((r.text.as_str(), r.calls[0].id.as_str(), r.calls[0].arguments.as_str()), ("", "call_0", ""));
        let r = parse(
            &json!({"choices": [{"message": {"content": "<think>plan</think>Looking.", "tool_calls": [{"id": "x", "function": {"name": "a", "arguments": "{}"}}]}}]}),
            "m",
        )
        .expect("parse");
        assert_eq!((r.text.as_str(), r.calls.len()), ("Looking.", 1));
        assert!(matches!(parse(&json!({"choices": [{"message": {}}]}), "m"), Err(LlmError::BadResponse { .. })));
        assert!(parse(&json!({"choices": [{"message": {"tool_calls": [{"function": {}}]}}]}), "m").is_err(), "a call needs a name");
    }

    /// A 400 for another reason (OpenAI's own answer to a conversation over
    /// the context window) must not switch the process to text mode.
    #[test]
    fn only_an_error_about_tools_counts_as_refusing_tools() {
        assert!(about_tools(r#"{"error":{"message":"this model does not support tools"}}"#));
        assert!(about_tools(r#"{"detail":[{"loc":["body","tools"],"msg":"extra fields not permitted"}]}"#));
        assert!(about_tools("Function calling is not enabled for this model"));
        assert!(!about_tools(
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens","code":"context_length_exceeded"}}"#
        ));
        assert!(!about_tools("404 page not found"));
    }
}
