//! OpenAI-compatible chat completions (`POST {base}/chat/completions`): OpenAI,
//! z.ai, Ollama, vLLM, llama.cpp and the test suite's scripted server, with
//! native tool calling (`tools`, `tool_calls`, `role: tool` results).

use super::{ChatRequest, ChatResponse, LlmError, LlmProvider, Message, ToolCall, strip_reasoning};
use crate::BoxFuture;
use crate::config::{LlmConfig, Secret};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};

const NAME: &str = "openai";

/// The OpenAI-compatible client.
pub struct OpenAi {
    client: reqwest::Client,
    url: String,
    key: Option<Secret>,
    model: String,
    /// The server refused `tools` once: none are sent any more.
    no_tools: AtomicBool,
}

impl OpenAi {
    /// A client for `cfg.base_url`.
    pub fn new(client: reqwest::Client, cfg: &LlmConfig) -> Self {
        Self {
            client,
            url: format!("{}/chat/completions", cfg.base_url),
            key: cfg.api_key.clone(),
            model: cfg.model.clone(),
            no_tools: AtomicBool::new(false),
        }
    }

    async fn call(&self, mut req: ChatRequest) -> Result<ChatResponse, LlmError> {
        if self.no_tools.load(Ordering::Relaxed) {
            req.tools.clear();
        }
        let mut http = self.client.post(&self.url).json(&body(&req, &self.model));
        if let Some(key) = &self.key {
            http = http.bearer_auth(key.expose());
        }
        let body = match super::anthropic::send(NAME, http).await {
            // Some local servers (older llama.cpp, Ollama and vLLM builds) refuse `tools`:
            // from now on the model is asked without them and answers in text.
            Err(LlmError::Status { status: status @ (400 | 404 | 422), body, .. }) if !req.tools.is_empty() => {
                if !self.no_tools.swap(true, Ordering::Relaxed) {
                    tracing::warn!(status, body = %body, "the OpenAI-compatible server refused the tools; the agent answers without tools from now on");
                }
                return Err(LlmError::ToolsRejected { provider: NAME, status, body });
            }
            other => other?,
        };
        parse(&body, &self.model)
    }
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
    fn complete(&self, req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>> {
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
            tools: vec![ToolSpec { name: "read_file".into(), description: "d".into(), parameters: json!({"type": "object"}) }],
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
}
