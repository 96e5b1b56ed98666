//! OpenAI-compatible chat completions (`POST {base}/chat/completions`): OpenAI,
//! z.ai, Ollama, vLLM, llama.cpp and the test suite's scripted server.

use super::{ChatRequest, ChatResponse, LlmError, LlmProvider, strip_reasoning};
use crate::BoxFuture;
use crate::config::{LlmConfig, Secret};
use serde_json::{Value, json};

const NAME: &str = "openai";

/// The OpenAI-compatible client.
pub struct OpenAi {
    client: reqwest::Client,
    url: String,
    key: Option<Secret>,
    model: String,
}

impl OpenAi {
    /// A client for `cfg.base_url`.
    pub fn new(client: reqwest::Client, cfg: &LlmConfig) -> Self {
        Self { client, url: format!("{}/chat/completions", cfg.base_url), key: cfg.api_key.clone(), model: cfg.model.clone() }
    }

    async fn call(&self, req: ChatRequest) -> Result<ChatResponse, LlmError> {
        let mut messages = Vec::new();
        if !req.system.is_empty() {
            messages.push(json!({"role": "system", "content": req.system}));
        }
        messages.push(json!({"role": "user", "content": req.user}));
        let mut http = self.client.post(&self.url).json(&json!({"model": self.model, "messages": messages}));
        if let Some(key) = &self.key {
            http = http.bearer_auth(key.expose());
        }
        let body = super::anthropic::send(NAME, http).await?;
        parse(&body, &self.model)
    }
}

fn parse(body: &Value, requested: &str) -> Result<ChatResponse, LlmError> {
    let bad = |message: &str| LlmError::BadResponse { provider: NAME, message: message.to_string() };
    let content = body.pointer("/choices/0/message/content").ok_or_else(|| bad("no choices[0].message.content"))?;
    let text = content.as_str().ok_or_else(|| bad("content is not text"))?;
    Ok(ChatResponse {
        text: strip_reasoning(text),
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

    #[test]
    fn parses_content_usage_and_model() {
        let body = json!({"model": "m1", "choices": [{"message": {"content": "<think>x</think> hi"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 4}});
        let r = parse(&body, "req").expect("parse");
        assert_eq!((r.text.as_str(), r.model.as_str(), r.prompt_tokens, r.completion_tokens), ("hi", "m1", Some(3), Some(4)));
        assert!(parse(&json!({"choices": []}), "m").is_err());
    }
}
