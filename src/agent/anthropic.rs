//! Anthropic messages (`POST {base}/messages`), and the HTTP send shared by
//! both providers (status classification, 4 MiB response cap).

use super::{ChatRequest, ChatResponse, LlmError, LlmProvider, strip_reasoning};
use crate::BoxFuture;
use crate::config::{LlmConfig, Secret};
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
}

impl Anthropic {
    /// A client for `cfg.base_url`.
    pub fn new(client: reqwest::Client, cfg: &LlmConfig) -> Self {
        Self { client, url: format!("{}/messages", cfg.base_url), key: cfg.api_key.clone(), model: cfg.model.clone() }
    }

    async fn call(&self, req: ChatRequest) -> Result<ChatResponse, LlmError> {
        let key =
            self.key.as_ref().ok_or_else(|| LlmError::NotConfigured("set AGENT_RUNTIME_LLM_API_KEY for the Anthropic provider".into()))?;
        let body = json!({
            "model": self.model,
            "max_tokens": 4096,
            "system": req.system,
            "messages": [{"role": "user", "content": req.user}],
        });
        let http = self.client.post(&self.url).header("x-api-key", key.expose()).header("anthropic-version", "2023-06-01").json(&body);
        parse(&send(NAME, http).await?, &self.model)
    }
}

fn parse(body: &Value, requested: &str) -> Result<ChatResponse, LlmError> {
    let blocks = body
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| LlmError::BadResponse { provider: NAME, message: "no content array".into() })?;
    let text: Vec<&str> =
        blocks.iter().filter(|b| b.get("type").and_then(Value::as_str) == Some("text")).filter_map(|b| b.get("text")?.as_str()).collect();
    if text.is_empty() {
        return Err(LlmError::BadResponse { provider: NAME, message: "no text block".into() });
    }
    Ok(ChatResponse {
        text: strip_reasoning(&text.join("\n")),
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
    fn complete(&self, req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>> {
        Box::pin(self.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_blocks_and_usage() {
        let body = json!({"model": "c", "content": [{"type": "text", "text": "a"}, {"type": "tool_use"}, {"type": "text", "text": "b"}], "usage": {"input_tokens": 5, "output_tokens": 6}});
        let r = parse(&body, "x").expect("parse");
        assert_eq!((r.text.as_str(), r.prompt_tokens, r.completion_tokens), ("a\nb", Some(5), Some(6)));
        assert!(parse(&json!({"content": []}), "x").is_err());
    }
}
