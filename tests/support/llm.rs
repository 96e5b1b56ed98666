//! A scripted OpenAI-compatible (and Anthropic-compatible) LLM server on
//! 127.0.0.1:0. Each request takes the next scripted step (or the default
//! reply); every request body and its headers are recorded. It can play a
//! server without tool calling ([`FakeLlm::reject_tools`]).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer with this text (usage: 11 prompt, 7 completion tokens).
    Reply(String),
    /// Answer with this HTTP status and body.
    Status(u16, String),
    /// Never answer (until the client gives up or the process dies).
    Stall,
    /// Answer with this text after a delay.
    Delayed(Duration, String),
    /// Answer with tool calls (name, arguments object), in each API's
    /// native shape: OpenAI `tool_calls` with ids `call_<k>`, Anthropic
    /// `tool_use` blocks with ids `toolu_<k>`.
    Tools(Vec<(String, Value)>),
    /// Answer with one tool call whose arguments are this text (OpenAI:
    /// sent verbatim, so it may be malformed JSON; Anthropic: `input: {}`).
    RawToolCall(String, String),
    /// Hold the request until the gate is opened ([`Notify::notify_one`]),
    /// then play the inner step: a test acts while a model call is in flight.
    Held(Arc<Notify>, Box<Step>),
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `chat` or `messages`.
    pub api: &'static str,
    /// The JSON body.
    pub body: Value,
    /// The request headers.
    pub headers: HeaderMap,
}

#[derive(Default)]
struct Inner {
    script: Mutex<VecDeque<Step>>,
    requests: Mutex<Vec<Recorded>>,
    arrived: Notify,
    /// Refuse every request that offers tools (see [`FakeLlm::reject_tools`]).
    reject_tools: AtomicBool,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeLlm {
    inner: Arc<Inner>,
    /// `http://127.0.0.1:PORT/v1`
    pub base_url: String,
}

/// The daemon variables that use `llm`, or turn the model off without one.
pub fn llm_env(llm: Option<&FakeLlm>) -> Vec<(&'static str, String)> {
    match llm {
        Some(l) => vec![("AGENT_RUNTIME_LLM_BASE_URL", l.base_url.clone()), ("AGENT_RUNTIME_LLM_MODEL", "test-model".into())],
        None => vec![("AGENT_RUNTIME_LLM_PROVIDER", "none".into())],
    }
}

impl FakeLlm {
    /// Starts the server on 127.0.0.1:0 in the current runtime.
    pub async fn start() -> FakeLlm {
        let inner = Arc::new(Inner::default());
        let app = Router::new().route("/v1/chat/completions", post(chat)).route("/v1/messages", post(messages)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake llm");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLlm { inner, base_url: format!("http://{addr}/v1") }
    }

    /// Appends steps to the script.
    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.inner.script.lock().expect("script").extend(steps);
    }

    /// While `on`, a request whose body has a `tools` field is answered
    /// HTTP 400 `{"error":{"message":"this model does not support tools"}}`
    /// (it is recorded, and takes no script step), like a server without
    /// tool calling.
    pub fn reject_tools(&self, on: bool) {
        self.inner.reject_tools.store(on, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().expect("requests").clone()
    }

    /// Waits until at least `n` requests arrived (panics after `timeout`).
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.arrived.notified();
            if self.requests().len() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("fake LLM: waited {timeout:?} for {n} request(s), got {}", self.requests().len());
            }
        }
    }
}

/// What to do with a request: the next step, or (rejecting tools) a 400.
async fn next_step(inner: &Inner, api: &'static str, headers: HeaderMap, body: Value) -> Step {
    let refused = inner.reject_tools.load(Ordering::SeqCst) && body.get("tools").is_some();
    // The step is taken before the request is recorded: a test that waits
    // for a request and then scripts the next answer never hands that
    // answer to the request it waited for.
    let step = if refused {
        Step::Status(400, json!({"error": {"message": "this model does not support tools"}}).to_string())
    } else {
        inner.script.lock().expect("script").pop_front().unwrap_or(Step::Reply("default fake answer".into()))
    };
    inner.requests.lock().expect("requests").push(Recorded { api, body, headers });
    inner.arrived.notify_waiters();
    step
}

/// How one API answers text and tool calls (name, arguments in that API's form).
struct Shape {
    text: fn(&str, String) -> Value,
    tools: fn(&str, Vec<(String, Value)>) -> Value,
    /// The arguments of a [`Step::RawToolCall`], in that API's form.
    raw_arguments: fn(String) -> Value,
}

async fn play(step: Step, model: &str, shape: Shape) -> Response {
    let step = match step {
        Step::Held(gate, inner) => {
            gate.notified().await;
            *inner
        }
        other => other,
    };
    match step {
        Step::Reply(text) => Json((shape.text)(model, text)).into_response(),
        Step::Tools(calls) => Json((shape.tools)(model, calls)).into_response(),
        Step::RawToolCall(name, arguments) => Json((shape.tools)(model, vec![(name, (shape.raw_arguments)(arguments))])).into_response(),
        Step::Delayed(d, text) => {
            tokio::time::sleep(d).await;
            Json((shape.text)(model, text)).into_response()
        }
        Step::Status(code, body) => (StatusCode::from_u16(code).expect("status"), body).into_response(),
        Step::Stall => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Step::Held(..) => (StatusCode::INTERNAL_SERVER_ERROR, "a held step inside a held step").into_response(),
    }
}

async fn chat(State(inner): State<Arc<Inner>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("fake").to_string();
    let step = next_step(&inner, "chat", headers, body).await;
    let shape = Shape {
        text: |model, text| {
            json!({"id": "chatcmpl-1", "object": "chat.completion", "model": format!("{model}-fake"),
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})
        },
        tools: |model, calls| {
            let calls: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(k, (name, args))| {
                    // Arguments are a string of JSON text; a raw call's string is sent as it is.
                    let args = if let Value::String(raw) = args { raw } else { args.to_string() };
                    json!({"id": format!("call_{k}"), "type": "function", "function": {"name": name, "arguments": args}})
                })
                .collect();
            json!({"id": "chatcmpl-1", "object": "chat.completion", "model": format!("{model}-fake"),
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}],
                   "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})
        },
        raw_arguments: Value::String,
    };
    play(step, &model, shape).await
}

async fn messages(State(inner): State<Arc<Inner>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("fake").to_string();
    let step = next_step(&inner, "messages", headers, body).await;
    let shape = Shape {
        text: |model, text| {
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": text}], "usage": {"input_tokens": 13, "output_tokens": 5}})
        },
        tools: |model, calls| {
            let blocks: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(k, (name, args))| json!({"type": "tool_use", "id": format!("toolu_{k}"), "name": name, "input": args}))
                .collect();
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model, "stop_reason": "tool_use",
                   "content": blocks, "usage": {"input_tokens": 13, "output_tokens": 5}})
        },
        // `input` must be an object: a raw call's text cannot be sent as it is.
        raw_arguments: |_| json!({}),
    };
    play(step, &model, shape).await
}
