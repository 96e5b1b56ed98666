use super::*;
use crate::agent::tools::tests::fixture;
use crate::agent::tools::{Policy, ToolClass, ToolOutput, TypedTool};
use crate::agent::{ChatResponse, LlmProvider};
use crate::domain::Role;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// A provider answering from a script, keeping every request.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Result<ChatResponse, LlmError>>>,
    seen: Mutex<Vec<ChatRequest>>,
    stall: bool,
}

impl LlmProvider for Script {
    fn name(&self) -> &'static str {
        "script"
    }
    fn model(&self) -> &str {
        "m"
    }
    fn complete<'a>(&'a self, req: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        self.seen.lock().expect("seen").push(req.clone());
        let next = self.answers.lock().expect("answers").pop_front();
        let stall = self.stall;
        Box::pin(async move {
            if stall {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            next.unwrap_or_else(|| Ok(answer("out of script")))
        })
    }
}

fn answer(text: &str) -> ChatResponse {
    ChatResponse { text: text.into(), model: "m".into(), ..ChatResponse::default() }
}

fn calls(list: &[(&str, &str)]) -> ChatResponse {
    let calls =
        list.iter().enumerate().map(|(i, (n, a))| ToolCall { id: format!("c{i}"), name: (*n).into(), arguments: (*a).into() }).collect();
    ChatResponse { text: String::new(), calls, model: "m".into(), ..ChatResponse::default() }
}

struct Kept(Mutex<Vec<Step>>);

impl StepSink for Kept {
    fn record<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, ()> {
        self.0.lock().expect("kept").push(step.clone());
        Box::pin(async {})
    }
}

struct Rig {
    f: crate::agent::tools::tests::Fixture,
    script: Arc<Script>,
    llm: Llm,
    sink: Kept,
}

async fn rig_with(role: Role, script: Script) -> Rig {
    let f = fixture(role).await;
    let script = Arc::new(script);
    let provider: Arc<dyn LlmProvider> = script.clone();
    let llm = Llm::new(Ok(provider), f.env.store.clone(), f.env.clock.clone());
    Rig { f, script, llm, sink: Kept(Mutex::new(Vec::new())) }
}

async fn rig(role: Role, answers: Vec<Result<ChatResponse, LlmError>>) -> Rig {
    rig_with(role, Script { answers: Mutex::new(answers.into()), ..Script::default() }).await
}

impl Rig {
    async fn turn_with(&self, registry: &Registry, input: &str, limits: Limits, cancel: CancellationToken) -> Outcome {
        let req = TurnRequest {
            system: "sys".into(),
            history: Vec::new(),
            input: Some(input.into()),
            limits,
            env: &self.f.env,
            cancel,
            task: None,
            sink: &self.sink,
        };
        run(&self.llm, registry, req).await
    }
    async fn turn(&self, input: &str, limits: Limits, cancel: CancellationToken) -> Outcome {
        self.turn_with(&Registry::builtin(), input, limits, cancel).await
    }
    fn requests(&self) -> Vec<ChatRequest> {
        self.script.seen.lock().expect("seen").clone()
    }
    fn outcomes(&self) -> Vec<String> {
        self.sink.0.lock().expect("kept").iter().map(|s| format!("{}:{}", s.tool.as_deref().unwrap_or("model"), s.outcome)).collect()
    }
    async fn usage_calls(&self) -> u64 {
        self.f.env.store.usage_totals(0, i64::MAX).await.expect("usage").iter().map(|u| u.calls).sum()
    }
}

#[tokio::test]
async fn a_tool_call_result_goes_back_to_the_model_and_its_answer_ends_the_turn() {
    let r =
        rig(Role::Member, vec![Ok(calls(&[("write_file", r#"{"path":"a.md","content":"hello"}"#)])), Ok(answer("Done: wrote a.md"))]).await;
    let out = r.turn("write hello to a.md", Limits::CHAT, CancellationToken::new()).await;
    assert_eq!((out.text.as_str(), &out.stop), ("Done: wrote a.md", &Stop::Answered));
    assert_eq!(std::fs::read_to_string(r.f.root.join("a.md")).expect("file"), "hello");
    let reqs = r.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].tools.iter().any(|t| t.name == "write_file"), "tools offered");
    assert_eq!(reqs[0].messages, [Message::User { text: "write hello to a.md".into() }]);
    let second = &reqs[1].messages;
    assert!(matches!(&second[1], Message::Assistant { calls, .. } if calls[0].name == "write_file"));
    assert!(
        matches!(&second[2], Message::Tool { call_id, content, is_error: false, .. } if call_id == "c0" && content.contains("Wrote 5 bytes to a.md")),
        "{second:?}"
    );
    assert_eq!(r.outcomes(), ["model:tools", "write_file:ok", "model:answer"]);
    assert_eq!(r.usage_calls().await, 2, "one usage row per model call");
}

#[tokio::test]
async fn parallel_calls_unknown_tools_bad_arguments_and_repeats_are_told_to_the_model() {
    let r = rig(
        Role::Member,
        vec![
            Ok(calls(&[
                ("list_files", "{}"),
                ("frobnicate", "{}"),
                ("read_file", r#"{"path":"x.md","bogus":1}"#),
                ("read_file", "{not json"),
            ])),
            Ok(calls(&[("read_file", r#"{"path":"missing.md"}"#)])),
            Ok(calls(&[("read_file", r#"{ "path" : "missing.md" }"#)])),
            Ok(calls(&[("write_file", r#"{"path":"missing.md","content":"now it exists"}"#)])),
            Ok(answer("fixed it")),
        ],
    )
    .await;
    let out = r.turn("go", Limits::CHAT, CancellationToken::new()).await;
    assert_eq!(out.stop, Stop::Answered);
    assert_eq!(
        r.outcomes(),
        [
            "model:tools",
            "list_files:ok",
            "frobnicate:unknown_tool",
            "read_file:bad_arguments",
            "read_file:bad_arguments",
            "model:tools",
            "read_file:error",
            "model:tools",
            "read_file:repeated",
            "model:tools",
            "write_file:ok",
            "model:answer"
        ]
    );
    let second = &r.requests()[1].messages;
    let results: Vec<&str> =
        second.iter().filter_map(|m| if let Message::Tool { content, .. } = m { Some(content.as_str()) } else { None }).collect();
    assert_eq!(results.len(), 4, "every call of the step is answered, in order");
    assert!(results[1].contains("no tool named \"frobnicate\"") && results[1].contains("read_file"), "{}", results[1]);
    assert!(results[2].contains("unknown field `bogus`"), "{}", results[2]);
    let fourth = &r.requests()[3].messages;
    assert!(
        matches!(fourth.last(), Some(Message::Tool { content, is_error: true, .. }) if content.contains("already failed")),
        "{fourth:?}"
    );
}

#[tokio::test]
async fn limits_end_the_turn_with_a_reply_that_says_which() {
    let looping: Vec<_> = (0..10).map(|i| Ok(calls(&[("list_files", &*format!(r#"{{"path":"d{i}"}}"#))]))).collect();
    let r = rig(Role::Member, looping).await;
    let out = r.turn("go", Limits { max_steps: 3, ..Limits::CHAT }, CancellationToken::new()).await;
    assert_eq!(out.stop, Stop::Limit(Limit::Steps));
    assert!(out.text.contains("limit of 3 steps") && out.text.contains("continue"), "{}", out.text);
    assert_eq!(r.requests().len(), 3);

    let three = calls(&[("list_files", "{}"), ("list_files", r#"{"path":"a"}"#), ("list_files", r#"{"path":"b"}"#)]);
    let r = rig(Role::Member, vec![Ok(three)]).await;
    let out = r.turn("go", Limits { max_tool_calls: 2, ..Limits::CHAT }, CancellationToken::new()).await;
    assert_eq!(out.stop, Stop::Limit(Limit::ToolCalls));
    assert_eq!(r.outcomes(), ["model:tools", "list_files:ok", "list_files:error", "list_files:limit"]);
    assert!(out.text.contains("2 tool calls"), "{}", out.text);

    let r = rig(Role::Member, vec![Ok(answer("direct"))]).await;
    let out = r.turn("go", Limits { max_tool_calls: 0, ..Limits::CHAT }, CancellationToken::new()).await;
    assert_eq!((out.text.as_str(), &out.stop), ("direct", &Stop::Answered));
    assert!(r.requests()[0].tools.is_empty(), "no tool calls allowed: no tools offered");

    let r = rig(Role::Member, vec![]).await;
    let out = r.turn(&"x".repeat(13_000), Limits::CHAT, CancellationToken::new()).await;
    assert_eq!(out.stop, Stop::Limit(Limit::Input));
    assert!(r.requests().is_empty(), "no model call for an input over the limit");
}

#[tokio::test]
async fn wall_time_and_cancel_stop_a_turn_inside_a_model_call() {
    let r = rig_with(Role::Member, Script { stall: true, ..Script::default() }).await;
    let out = r.turn("go", Limits { max_duration: Duration::from_secs(1), ..Limits::CHAT }, CancellationToken::new()).await;
    assert_eq!(out.stop, Stop::Limit(Limit::Time));
    assert!(out.text.contains("time limit of 1 s"), "{}", out.text);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c2.cancel();
    });
    let out = r.turn("go", Limits::CHAT, cancel).await;
    assert_eq!(out.stop, Stop::Canceled);
    assert_eq!(r.outcomes().last().map(String::as_str), Some("model:canceled"));
}

/// A tool that waits an hour (to cancel a turn inside a tool).
struct Slow;

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

impl TypedTool for Slow {
    type Args = NoArgs;
    const NAME: &'static str = "slow";
    const DESCRIPTION: &'static str = "waits";
    const CLASS: ToolClass = ToolClass::Workspace;
    const POLICY: Policy = Policy { min_role: Role::Viewer, in_tasks: true, approval: false };
    fn run<'a>(&'a self, _: &'a ToolEnv, _: NoArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(ToolOutput::runtime("slow", "late"))
        })
    }
}

#[tokio::test]
async fn cancel_stops_a_turn_inside_a_tool() {
    let r = rig(Role::Member, vec![Ok(calls(&[("slow", "{}")]))]).await;
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c2.cancel();
    });
    let out = r.turn_with(&Registry::of(vec![Arc::new(Slow)]), "go", Limits::CHAT, cancel).await;
    assert_eq!(out.stop, Stop::Canceled);
    assert_eq!(r.outcomes(), ["model:tools", "slow:canceled"]);
}

#[tokio::test]
async fn a_model_error_fails_the_turn_and_a_role_refusal_is_told_to_the_model() {
    let r =
        rig(Role::Viewer, vec![Ok(calls(&[("write_file", r#"{"path":"a.md","content":"x"}"#)])), Err(LlmError::Timeout("script"))]).await;
    let out = r.turn("go", Limits::CHAT, CancellationToken::new()).await;
    assert!(matches!(out.stop, Stop::Failed(LlmError::Timeout(_))), "{:?}", out.stop);
    assert_eq!(r.outcomes(), ["model:tools", "write_file:refused", "model:timeout"]);
    assert!(!r.f.root.join("a.md").exists());
    assert!(!r.requests()[0].tools.iter().any(|t| t.name == "write_file"), "not offered to a viewer");
}

#[test]
fn secrets_in_arguments_are_redacted_and_long_ones_cut() {
    assert_eq!(
        redact(r#"{"url":"x","headers":{"Authorization":"Bearer abc"},"api_key":"k"}"#),
        r#"{"api_key":"[redacted]","headers":{"Authorization":"[redacted]"},"url":"x"}"#
    );
    assert!(redact(&format!("\"{}\"", "a".repeat(2000))).ends_with('…'));
    assert_eq!(redact(r#"{"token": "sk-123"#), "[unparseable, 17 bytes]", "broken JSON could hold anything");
    assert_eq!(
        redact(r#"{"path":"a.md","content":"private text"}"#),
        r#"{"content":"[12 bytes]","path":"a.md"}"#,
        "file and email text is kept as its size"
    );
    assert_eq!(hide_quoted(r#"invalid type: string "sk-secret", expected u32"#), r#"invalid type: string "…", expected u32"#);
}

/// A rig whose turns may ask for webhooks (the real executor validates).
async fn rig_with_desk(role: Role, answers: Vec<Result<ChatResponse, LlmError>>) -> Rig {
    let mut r = rig(role, answers).await;
    let webhook = crate::actions::WebhookExecutor::new(Duration::from_secs(5)).expect("client");
    let executors = crate::actions::ActionExecutors::default().with("webhook", Arc::new(webhook));
    let desk = crate::actions::Desk::new(
        executors,
        r.f.env.store.clone(),
        r.f.env.clock.clone(),
        Duration::from_secs(600),
        Arc::new(tokio::sync::Notify::new()),
    );
    r.f.env.desk = Some(desk);
    r
}

#[tokio::test]
async fn a_sensitive_call_becomes_one_approval_with_the_turn_saved_and_the_decision_queues_the_continuation() {
    let hook = r#"{"url":"https://hooks.test/deploy","payload":{"v":1},"purpose":"deploy v1"}"#;
    let other = r#"{"url":"https://hooks.test/other","payload":{},"purpose":"another"}"#;
    let r = rig_with_desk(Role::Member, vec![Ok(calls(&[("list_files", "{}"), ("call_webhook", hook), ("call_webhook", other)]))]).await;
    let out = r.turn("deploy v1 please", Limits::CHAT, CancellationToken::new()).await;
    let Stop::Awaiting(id) = &out.stop else { panic!("the turn waits: {:?}", out.stop) };
    assert!(out.text.contains(id.as_str()) && out.text.contains("/approve-action"), "{}", out.text);
    assert_eq!(r.requests().len(), 1, "no model call after the proposal");
    assert_eq!(r.outcomes(), ["model:tools", "list_files:ok", "call_webhook:proposed", "call_webhook:refused"]);
    let store = &r.f.env.store;
    let a = store.get_approval(id).await.expect("stored");
    assert_eq!((a.status.as_str(), a.action_type.as_str(), a.target.as_str()), ("pending", "webhook", "https://hooks.test/deploy"));
    assert_eq!(a.payload_json, r#"{"v":1}"#, "exactly the model's payload is bound");
    assert_eq!(a.requester, "user:u1");
    let state = crate::agent::resume::ResumeState::of(&a).expect("the turn is saved");
    assert_eq!(state.messages.first(), Some(&Message::User { text: "deploy v1 please".into() }));
    assert_eq!((state.call_id.as_str(), state.tool.as_str(), state.role.as_str()), ("c1", "call_webhook", "member"));
    assert!(a.resume_task_id.is_none(), "nothing continues before a decision");
    // A denial queues the continuation, once, in the same write.
    let denied = store.deny_approval(id, "user:boss".into(), None, "not today".into(), None, 5).await.expect("store").expect("pending");
    let task_id = denied.resume_task_id.clone().expect("a follow-up task");
    let task = store.get_task(&task_id).await.expect("task");
    assert_eq!((task.kind, task.run_key.clone()), (crate::domain::TaskKind::AgentResume, Some(format!("resume:{id}"))));
    assert_eq!((task.source_user_id.as_deref(), task.tell_origin), (Some("user:u1"), true));
    assert_eq!(store.approval_resumed_by(&task_id).await.expect("found").id, *id);
    let (text, failed) = crate::agent::resume::decision_text(&denied);
    assert!(failed && text.contains("Denied by user:boss (not today)"), "{text}");
}

#[tokio::test]
async fn a_bad_sensitive_call_is_an_error_for_the_model_and_nothing_is_filed() {
    let bad = r#"{"url":"file:///etc/passwd","payload":{},"purpose":"x"}"#;
    let r = rig_with_desk(Role::Member, vec![Ok(calls(&[("call_webhook", bad)])), Ok(answer("That URL cannot be used."))]).await;
    let out = r.turn("post it", Limits::CHAT, CancellationToken::new()).await;
    assert_eq!(out.stop, Stop::Answered);
    assert_eq!(r.outcomes(), ["model:tools", "call_webhook:bad_arguments", "model:answer"]);
    assert!(r.f.env.store.list_approvals(None, None, 10).await.expect("list").is_empty());
    let seen = &r.requests()[1].messages;
    assert!(matches!(&seen[2], Message::Tool { content, is_error: true, .. } if content.contains("http")), "{seen:?}");
}

#[tokio::test]
async fn a_viewer_or_a_turn_without_approvals_is_not_offered_sensitive_tools() {
    let hook = r#"{"url":"https://hooks.test/x","payload":{},"purpose":"x"}"#;
    let r = rig_with_desk(Role::Viewer, vec![Ok(calls(&[("call_webhook", hook)])), Ok(answer("I cannot."))]).await;
    r.turn("post it", Limits::CHAT, CancellationToken::new()).await;
    assert!(!r.requests()[0].tools.iter().any(|t| t.name == "call_webhook" || t.name == "send_email"));
    assert_eq!(r.outcomes(), ["model:tools", "call_webhook:refused", "model:answer"]);
    let none = rig(Role::Admin, vec![Ok(answer("hi"))]).await;
    none.turn("hi", Limits::CHAT, CancellationToken::new()).await;
    assert!(!none.requests()[0].tools.iter().any(|t| t.name == "call_webhook"), "no desk: no approvals, not offered");
    assert!(r.f.env.store.list_approvals(None, None, 10).await.expect("list").is_empty());
}
