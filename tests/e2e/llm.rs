//! The two LLM providers against the scripted server: request shape,
//! authentication headers, parsing, and error classification.

use crate::support::llm::{FakeLlm, Step};
use agent_runtime::agent::{ChatRequest, LlmError, Message, ToolSpec, build_provider};
use agent_runtime::config::{Config, EnvSource, LlmConfig};
use serde_json::json;

fn config(pairs: &[(&str, &str)]) -> LlmConfig {
    Config::read(&EnvSource::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))).config.llm
}

fn req() -> ChatRequest {
    ChatRequest::single("be brief", "hello")
}

#[tokio::test]
async fn openai_sends_bearer_system_and_user_and_parses_usage() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Reply("<think>hidden</think>hi there".into())]);
    let p = build_provider(&config(&[
        ("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url),
        ("AGENT_RUNTIME_LLM_API_KEY", "sk-test"),
        ("AGENT_RUNTIME_LLM_MODEL", "m"),
    ]))
    .expect("provider");
    let r = p.complete(req()).await.expect("complete");
    assert_eq!((r.text.as_str(), r.prompt_tokens, r.completion_tokens), ("hi there", Some(11), Some(7)));
    let sent = &llm.requests()[0];
    assert_eq!(sent.headers["authorization"], "Bearer sk-test");
    assert_eq!(sent.body["messages"][0]["role"], "system");
    assert_eq!(sent.body["messages"][1]["content"], "hello");
}

#[tokio::test]
async fn anthropic_sends_its_headers_and_parses_text_blocks() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Reply("bonjour".into())]);
    let p = build_provider(&config(&[
        ("AGENT_RUNTIME_LLM_PROVIDER", "anthropic"),
        ("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url),
        ("AGENT_RUNTIME_LLM_API_KEY", "ak"),
    ]))
    .expect("provider");
    let r = p.complete(req()).await.expect("complete");
    assert_eq!(
        (r.text.as_str(), r.model.as_str(), r.prompt_tokens, r.completion_tokens),
        ("bonjour", "claude-3-5-sonnet-latest", Some(13), Some(5))
    );
    let sent = &llm.requests()[0];
    assert_eq!(sent.api, "messages");
    assert_eq!(sent.headers["x-api-key"], "ak");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(sent.body["system"], "be brief");
    assert_eq!(sent.body["max_tokens"], 4096);
}

#[tokio::test]
async fn statuses_timeouts_and_garbage_are_classified() {
    let llm = FakeLlm::start().await;
    llm.push([
        Step::Status(429, "slow down".into()),
        Step::Status(401, "bad key".into()),
        Step::Status(200, "not json".into()),
        Step::Stall,
    ]);
    let p = build_provider(&config(&[("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url), ("AGENT_RUNTIME_LLM_TIMEOUT_SECONDS", "1")]))
        .expect("provider");
    let e = p.complete(req()).await.expect_err("429");
    assert!(matches!(e, LlmError::Status { status: 429, .. }) && e.is_retryable(), "{e}");
    let e = p.complete(req()).await.expect_err("401");
    assert!(matches!(e, LlmError::Status { status: 401, .. }) && !e.is_retryable(), "{e}");
    let e = p.complete(req()).await.expect_err("garbage");
    assert!(matches!(e, LlmError::BadResponse { .. }) && !e.is_retryable(), "{e}");
    let e = p.complete(req()).await.expect_err("stall");
    assert!(matches!(e, LlmError::Timeout(_)) && e.is_retryable(), "{e}");
}

#[test]
fn missing_keys_say_which_variable_to_set() {
    let e = build_provider(&config(&[("AGENT_RUNTIME_LLM_PROVIDER", "anthropic")])).err().expect("no provider");
    assert!(e.contains("AGENT_RUNTIME_LLM_API_KEY"), "{e}");
}

/// Both providers: a tool call comes back as a `ToolCall`, and the call and
/// its result go out again in the provider's own shape.
#[tokio::test]
async fn tool_calls_round_trip_in_each_provider_s_native_shape() {
    for (provider, api) in [("openai", "chat"), ("anthropic", "messages")] {
        let llm = FakeLlm::start().await;
        llm.push([Step::Tools(vec![("read_file".into(), json!({"path": "a.md"}))]), Step::Reply("it says hi".into())]);
        let p = build_provider(&config(&[
            ("AGENT_RUNTIME_LLM_PROVIDER", provider),
            ("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url),
            ("AGENT_RUNTIME_LLM_API_KEY", "k"),
        ]))
        .expect("provider");
        let tools = vec![ToolSpec { name: "read_file".into(), description: "read".into(), parameters: json!({"type": "object"}) }];
        let mut req = ChatRequest { system: "s".into(), messages: vec![Message::User { text: "what is in a.md?".into() }], tools };
        let first = p.complete(req.clone()).await.expect("first");
        assert_eq!(first.calls.len(), 1, "{provider}");
        assert_eq!((first.calls[0].name.as_str(), first.calls[0].arguments.as_str()), ("read_file", r#"{"path":"a.md"}"#), "{provider}");
        req.messages.push(Message::Assistant { text: first.text.clone(), calls: first.calls.clone() });
        req.messages.push(Message::Tool {
            call_id: first.calls[0].id.clone(),
            name: "read_file".into(),
            content: "hi".into(),
            is_error: false,
        });
        let second = p.complete(req).await.expect("second");
        assert_eq!(second.text, "it says hi");
        let sent = &llm.requests()[1];
        assert_eq!(sent.api, api);
        let id = first.calls[0].id.as_str();
        if provider == "openai" {
            assert_eq!(sent.body["tools"][0]["function"]["name"], "read_file");
            assert_eq!(sent.body["messages"][2]["tool_calls"][0]["id"], id);
            assert_eq!(sent.body["messages"][3], json!({"role": "tool", "tool_call_id": id, "content": "hi"}));
        } else {
            assert_eq!(sent.body["tools"][0]["input_schema"], json!({"type": "object"}));
            assert_eq!(
                sent.body["messages"][1]["content"][0],
                json!({"type": "tool_use", "id": id, "name": "read_file", "input": {"path": "a.md"}})
            );
            assert_eq!(
                sent.body["messages"][2]["content"][0],
                json!({"type": "tool_result", "tool_use_id": id, "content": "hi", "is_error": false})
            );
        }
    }
}
