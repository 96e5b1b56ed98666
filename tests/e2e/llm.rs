//! The two LLM providers against the scripted server: request shape,
//! authentication headers, parsing, and error classification.

use crate::support::llm::{FakeLlm, Step};
use agent_runtime::agent::{ChatRequest, LlmError, build_provider};
use agent_runtime::config::{Config, EnvSource, LlmConfig};

fn config(pairs: &[(&str, &str)]) -> LlmConfig {
    Config::read(&EnvSource::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))).config.llm
}

fn req() -> ChatRequest {
    ChatRequest { system: "be brief".into(), user: "hello".into() }
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
