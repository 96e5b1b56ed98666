//! The two LLM providers against the scripted server: request shape,
//! authentication headers, parsing, error classification, native tool
//! calls, and text mode (`AGENT_RUNTIME_LLM_TOOLS`) with the fallback to it.

use crate::support::llm::{FakeLlm, Step};
use agent_runtime::agent::{ChatRequest, ChatResponse, Llm, LlmError, Message, ToolSpec, build_provider};
use agent_runtime::config::{Config, EnvSource, LlmConfig};
use agent_runtime::store::Store;
use serde_json::{Value, json};
use std::sync::Arc;

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
    let r = p.complete(&req()).await.expect("complete");
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
    let r = p.complete(&req()).await.expect("complete");
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
    let e = p.complete(&req()).await.expect_err("429");
    assert!(matches!(e, LlmError::Status { status: 429, .. }) && e.is_retryable(), "{e}");
    let e = p.complete(&req()).await.expect_err("401");
    assert!(matches!(e, LlmError::Status { status: 401, .. }) && !e.is_retryable(), "{e}");
    let e = p.complete(&req()).await.expect_err("garbage");
    assert!(matches!(e, LlmError::BadResponse { .. }) && !e.is_retryable(), "{e}");
    let e = p.complete(&req()).await.expect_err("stall");
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
        let tools = vec![ToolSpec { name: "read_file".into(), description: "read".into(), parameters: json!({"type": "object"}).into() }];
        let mut req = ChatRequest { system: "s".into(), messages: vec![Message::User { text: "what is in a.md?".into() }], tools };
        let first = p.complete(&req).await.expect("first");
        assert_eq!(first.calls.len(), 1, "{provider}");
        assert_eq!((first.calls[0].name.as_str(), first.calls[0].arguments.as_str()), ("read_file", r#"{"path":"a.md"}"#), "{provider}");
        req.messages.push(Message::Assistant { text: first.text.clone(), calls: first.calls.clone() });
        req.messages.push(Message::Tool {
            call_id: first.calls[0].id.clone(),
            name: "read_file".into(),
            content: "hi".into(),
            is_error: false,
        });
        let second = p.complete(&req).await.expect("second");
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

fn read_file_spec() -> Vec<ToolSpec> {
    vec![ToolSpec {
        name: "read_file".into(),
        description: "Read a text file of the workspace.".into(),
        parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}).into(),
    }]
}

fn with_tools(text: &str) -> ChatRequest {
    ChatRequest { system: "be brief".into(), messages: vec![Message::User { text: text.into() }], tools: read_file_spec() }
}

/// The request after `first` asked for tools: its calls, and "hi" as each one's result.
fn follow_up(mut req: ChatRequest, first: &ChatResponse) -> ChatRequest {
    req.messages.push(Message::Assistant { text: first.text.clone(), calls: first.calls.clone() });
    for c in &first.calls {
        req.messages.push(Message::Tool { call_id: c.id.clone(), name: c.name.clone(), content: "hi".into(), is_error: false });
    }
    req
}

/// The provider wrapped in telemetry, with its own store.
struct Metered {
    llm: Llm,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Metered {
    fn new(cfg: &LlmConfig) -> Metered {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("meta.sqlite")).expect("store");
        let llm = Llm::new(build_provider(cfg), store.clone(), Arc::new(agent_runtime::clock::SystemClock));
        Metered { llm, store, _dir: dir }
    }

    async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, LlmError> {
        self.llm.complete(&req, None, None).await
    }

    /// Every `llm_usage` row's outcome, in order.
    fn outcomes(&self) -> Vec<String> {
        let db = rusqlite::Connection::open(self.store.path()).expect("db");
        let mut stmt = db.prepare("SELECT outcome FROM llm_usage ORDER BY id").expect("prepare");
        stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
    }
}

fn offered(llm: &FakeLlm) -> Vec<bool> {
    llm.requests().iter().map(|r| r.body.get("tools").is_some()).collect()
}

/// Malformed arguments come back as written (OpenAI) and go out again as
/// written; Anthropic's `input` is always an object.
#[tokio::test]
async fn malformed_arguments_are_kept_verbatim() {
    for provider in ["openai", "anthropic"] {
        let llm = FakeLlm::start().await;
        llm.push([Step::RawToolCall("read_file".into(), r#"{"path": "a.md""#.into()), Step::Reply("ok".into())]);
        let p = build_provider(&config(&[
            ("AGENT_RUNTIME_LLM_PROVIDER", provider),
            ("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url),
            ("AGENT_RUNTIME_LLM_API_KEY", "k"),
        ]))
        .expect("provider");
        let req = with_tools("read a.md");
        let first = p.complete(&req).await.expect("first");
        let sent_back = if provider == "openai" {
            assert_eq!((first.calls[0].id.as_str(), first.calls[0].arguments.as_str()), ("call_0", r#"{"path": "a.md""#));
            p.complete(&follow_up(req, &first)).await.expect("second");
            llm.requests()[1].body["messages"][2]["tool_calls"][0]["function"]["arguments"].clone()
        } else {
            assert_eq!((first.calls[0].id.as_str(), first.calls[0].arguments.as_str()), ("toolu_0", "{}"));
            p.complete(&follow_up(req, &first)).await.expect("second");
            llm.requests()[1].body["messages"][1]["content"][0]["input"].clone()
        };
        let expected = if provider == "openai" { json!(r#"{"path": "a.md""#) } else { json!({}) };
        assert_eq!(sent_back, expected, "{provider}");
    }
}

/// `auto`: a server that refuses `tools` is asked again at once in text
/// mode (two usage rows), and later calls go straight to text mode.
#[tokio::test]
async fn a_server_refusing_tools_is_asked_again_in_text_mode_from_then_on() {
    let llm = FakeLlm::start().await;
    llm.reject_tools(true);
    llm.push([
        Step::Reply("```json\n{\"tool_calls\": [{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.md\"}}]}\n```".into()),
        Step::Reply("It says hi.".into()),
    ]);
    let m = Metered::new(&config(&[("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url), ("AGENT_RUNTIME_LLM_MODEL", "m")]));
    let req = with_tools("what is in a.md?");
    let first = m.complete(req.clone()).await.expect("answered in text mode");
    assert_eq!(first.text, "");
    assert_eq!((first.calls[0].name.as_str(), first.calls[0].arguments.as_str()), ("read_file", r#"{"path":"a.md"}"#));
    assert_eq!(m.outcomes(), ["tools_rejected", "ok"], "the refused call is a usage row too");
    let retry = &llm.requests()[1].body;
    let system = retry["messages"][0]["content"].as_str().expect("system prompt");
    assert!(system.starts_with("be brief\n\n# Tools") && system.contains("## read_file\nRead a text file"), "{system}");
    assert!(system.contains(r#"{"tool_calls":[{"name":"<tool name>","arguments":{<arguments>}}]}"#), "{system}");

    let second = m.complete(follow_up(req, &first)).await.expect("second");
    assert_eq!((second.text.as_str(), second.calls.len()), ("It says hi.", 0));
    assert_eq!(offered(&llm), [true, false, false], "no tools are offered once refused");
    assert_eq!(m.outcomes(), ["tools_rejected", "ok", "ok"]);
    let sent = &llm.requests()[2].body["messages"];
    assert_eq!(sent[2], json!({"role": "assistant", "content": r#"{"tool_calls":[{"name":"read_file","arguments":{"path":"a.md"}}]}"#}));
    assert_eq!(sent[3], json!({"role": "user", "content": format!("Tool result for read_file ({}):\nhi", first.calls[0].id)}));
}

/// `native` never falls back, and in `auto` a 400 that is not about tools
/// (an over-long conversation, say) is an ordinary error.
#[tokio::test]
async fn native_mode_and_other_client_errors_do_not_fall_back() {
    let llm = FakeLlm::start().await;
    llm.reject_tools(true);
    let m = Metered::new(&config(&[("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url), ("AGENT_RUNTIME_LLM_TOOLS", "native")]));
    for _ in 0..2 {
        let e = m.complete(with_tools("hi")).await.expect_err("refused");
        assert!(matches!(e, LlmError::Status { status: 400, .. }) && !e.is_retryable(), "{e}");
    }
    assert_eq!(offered(&llm), [true, true]);
    assert_eq!(m.outcomes(), ["http_error", "http_error"], "asked once each time");

    let llm = FakeLlm::start().await;
    llm.push([Step::Status(400, r#"{"error":{"code":"context_length_exceeded"}}"#.into())]);
    let m = Metered::new(&config(&[("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url)]));
    let e = m.complete(with_tools("hi")).await.expect_err("too long");
    assert!(matches!(e, LlmError::Status { status: 400, .. }), "{e}");
    m.complete(with_tools("hi")).await.expect("next call");
    assert_eq!(offered(&llm), [true, true], "still native");
    assert_eq!(m.outcomes(), ["http_error", "ok"]);
}

/// `text`: neither provider ever sends `tools`; calls are read from the text.
#[tokio::test]
async fn text_mode_never_sends_tools_on_either_provider() {
    for (provider, system_at) in [("openai", "/messages/0/content"), ("anthropic", "/system")] {
        let llm = FakeLlm::start().await;
        llm.push([Step::Reply(r#"{"tool": "read_file", "arguments": {"path": "a.md"}}"#.into()), Step::Reply("It says hi.".into())]);
        let p = build_provider(&config(&[
            ("AGENT_RUNTIME_LLM_PROVIDER", provider),
            ("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url),
            ("AGENT_RUNTIME_LLM_API_KEY", "k"),
            ("AGENT_RUNTIME_LLM_TOOLS", "text"),
        ]))
        .expect("provider");
        let req = with_tools("what is in a.md?");
        let first = p.complete(&req).await.expect("first");
        assert_eq!((first.calls.len(), first.calls[0].name.as_str()), (1, "read_file"), "{provider}");
        let second = p.complete(&follow_up(req, &first)).await.expect("second");
        assert_eq!(second.text, "It says hi.");
        assert_eq!(offered(&llm), [false, false], "{provider}");
        let sent = &llm.requests()[1].body;
        let system = sent.pointer(system_at).and_then(Value::as_str).expect("system prompt");
        assert!(system.contains("## read_file"), "{provider}: {system}");
        let text = sent.to_string();
        assert!(!text.contains("tool_use") && !text.contains("tool_call_id"), "{provider}: no native shapes: {text}");
        assert!(text.contains("Tool result for read_file"), "{provider}: {text}");
    }
}
