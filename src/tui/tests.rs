//! The console without a terminal or a daemon: every key of every view
//! through [`keys::map`] and [`update`], events patching the state, and
//! every view rendered into a `TestBackend` at 80×24 and 160×48, compared
//! with the reviewed snapshots in `tests/snapshots/tui/`.

use super::app::{Act, App, Cmd, Confirm, Link, Loaded, Mode, Msg, Purpose, Resource, View, update};
use super::input::Edit;
use super::keys;
use super::model::*;
use crate::domain::Role;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

/// 2026-12-05 12:00:00 UTC.
const NOW: i64 = 1_796_472_000_000;

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, code: KeyCode) -> Vec<Cmd> {
    match keys::map(app, key(code)) {
        Some(msg) => update(app, msg),
        None => Vec::new(),
    }
}

fn info(role: &str) -> Info {
    Info {
        version: "0.1.0".into(),
        environment: "prod".into(),
        caller: Caller { subject: format!("cert:{role}-console"), role: role.into() },
    }
}

fn task(i: i64, status: &str) -> Task {
    Task {
        id: format!("0193a1b2-c3d4-7e5f-8a9b-4c5d{:08x}", i * 2_654_435_761 % 4_294_967_296),
        kind: if i % 3 == 0 { "objective".into() } else { "general".into() },
        title: format!("Summarise the release notes #{i}"),
        prompt: "summarise the release notes and list breaking changes".into(),
        status: status.into(),
        attempts: 1,
        max_attempts: 3,
        workspace_id: "ws_main".into(),
        source_connector: Some("telegram".into()),
        source_external_id: Some("4242".into()),
        source_user_id: Some("user:ada".into()),
        result_summary: (status == "succeeded").then(|| "3 breaking changes found".into()),
        result_path: (status == "succeeded").then(|| format!("workspaces/ws_main/tasks/{i}.md")),
        error_message: (status == "failed").then(|| "llm: 429 rate limited".into()),
        cancel_requested: false,
        created_at_unix: NOW / 1000 - 600 + i,
        updated_at_unix: NOW / 1000 - 60 + i,
        events: Vec::new(),
    }
}

fn approval(id: &str, status: &str) -> Approval {
    Approval {
        id: id.into(),
        requester: "user:ada".into(),
        action_type: "webhook".into(),
        target: "https://hooks.example.com/deploy".into(),
        summary: "notify the deploy channel".into(),
        payload_json: r##"{"text":"deploy v2","channel":"#ops"}"##.into(),
        payload_hash: "9f2c1e7a4b6d8f0a1c3e5a7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f".into(),
        status: status.into(),
        expires_at: NOW + 45 * 60_000,
        execution_status: if status == "approved" { "succeeded".into() } else { "not_executed".into() },
        created_at: NOW - 120_000,
        ..Approval::default()
    }
}

fn objective(title: &str, active: bool, health: &str) -> Objective {
    Objective {
        id: format!("obj_{}", title.len()),
        title: title.into(),
        prompt: "Check the on-call notes and report anything new".into(),
        trigger_type: "schedule".into(),
        cron_expr: "0 9 * * 1-5".into(),
        timezone: "Europe/Berlin".into(),
        catch_up: "latest".into(),
        active,
        next_run_unix: active.then_some(NOW / 1000 + 3_600),
        next_runs_unix: vec![NOW / 1000 + 3_600, NOW / 1000 + 90_000],
        health_state: health.into(),
        last_outcome: Some("succeeded".into()),
        run_count: 12,
        success_count: 11,
        failure_count: 1,
        ..Objective::default()
    }
}

/// A console with realistic data in every view.
pub fn sample(role: &str) -> App {
    let mut app = App::new(NOW);
    app.link = Link::Live;
    update(&mut app, Msg::Loaded(Loaded::Info(info(role))));
    let h = Heartbeat {
        overall: "degraded".into(),
        components: vec![
            Component { name: "store".into(), state: "healthy".into(), ..Component::default() },
            Component { name: "orchestrator".into(), state: "healthy".into(), ..Component::default() },
            Component { name: "telegram".into(), state: "healthy".into(), message: Some("polling".into()), ..Component::default() },
            Component {
                name: "email".into(),
                state: "degraded".into(),
                error: Some("imap: connection refused".into()),
                ..Component::default()
            },
        ],
    };
    let loads = vec![
        Loaded::Heartbeat(h),
        Loaded::Gauges(Gauges::parse(
            "agent_runtime_queue_depth 4\nagent_runtime_tasks{status=\"queued\"} 5\nagent_runtime_tasks{status=\"running\"} 2\n\
             agent_runtime_tasks{status=\"succeeded\"} 120\nagent_runtime_tasks{status=\"failed\"} 3\nagent_runtime_outbox_messages{status=\"failed\"} 1\n\
             agent_runtime_approvals_pending 2\nagent_runtime_pairings_pending 1\n",
        )),
        Loaded::Tasks {
            items: (1..=30).map(|i| task(i, ["running", "queued", "succeeded", "failed"][(i % 4) as usize]).into()).collect(),
            next: Some("cursor".into()),
            more: false,
        },
        Loaded::Approvals(vec![approval("act_7f3a9c", "pending"), approval("act_11b0de", "pending"), approval("act_0c4411", "approved")]),
        Loaded::Objectives(vec![objective("Morning on-call digest", true, "healthy"), objective("Weekly report", false, "auto_paused")]),
        Loaded::Pairings(vec![Pairing {
            id: "pair_1".into(),
            token_hint: "K7QF…9XZ2".into(),
            connector: "discord".into(),
            connector_user_id: "81234567".into(),
            display_name: Some("Grace".into()),
            status: "pending".into(),
            expires_at: NOW + 600_000,
            ..Pairing::default()
        }]),
        Loaded::Contexts(vec![
            Context {
                id: "ctx_1".into(),
                workspace_id: "ws_main".into(),
                connector: "telegram".into(),
                external_id: "4242".into(),
                display_name: Some("Ops".into()),
                is_admin: true,
                created_at_unix: NOW / 1000 - 86_400,
            },
            Context {
                id: "ctx_2".into(),
                workspace_id: "ws_main".into(),
                connector: "email".into(),
                external_id: "ada@example.com".into(),
                display_name: None,
                is_admin: false,
                created_at_unix: NOW / 1000 - 3_600,
            },
        ]),
        Loaded::Audit(vec![AuditRow {
            id: 9,
            at: NOW - 5_000,
            actor: "cert:local-admin".into(),
            event: "approval.approved".into(),
            decision: "allow".into(),
            reason: Some("approved".into()),
            subject: Some("act_0c4411".into()),
        }]),
        Loaded::Usage(
            vec![UsageRow {
                day: "2026-12-05".into(),
                provider: "openai".into(),
                model: "gpt-4o-mini".into(),
                calls: 42,
                errors: 1,
                prompt_tokens: 51_200,
                completion_tokens: 8_100,
                cost_usd: Some(0.0125),
            }],
            vec![
                "agent: PAUSED by cert:ops at 2026-12-05T09:00:00Z: cost spike".into(),
                "today (2026-12-05 UTC): 59300 of 100000 tokens, $0.0125 (no limit)".into(),
            ],
        ),
        Loaded::ChatMessages(vec![ChatMessage { id: 3, kind: "reply".into(), body: "Task queued: `0193a1b2`".into(), created_at: NOW }]),
        Loaded::Backlog(
            (1..=5)
                .map(|i| Event {
                    id: i,
                    at: NOW - 1_000 * (6 - i),
                    kind: "task.succeeded".into(),
                    data: json!({"task_id": format!("t{i}"), "status": "succeeded"}),
                })
                .collect(),
        ),
    ];
    for l in loads {
        update(&mut app, Msg::Loaded(l));
    }
    app.chat.insert(0, (true, "/task summarise the release notes".into()));
    app.dirty = false;
    app
}

#[test]
fn every_documented_key_of_every_view_maps_to_its_action() {
    for view in View::ALL {
        let mut app = sample("overlord");
        app.view = view;
        for b in keys::view_bindings(view).iter().chain(keys::GLOBAL) {
            for code in b.keys {
                assert_eq!(keys::map(&app, key(*code)), Some(Msg::Act(b.act)), "{view:?}: {} should {}", b.label, b.help);
            }
        }
        for v in View::ALL {
            assert_eq!(keys::map(&app, key(KeyCode::Char(v.key()))), Some(Msg::Act(Act::Go(v))));
        }
    }
}

#[test]
fn no_key_is_bound_twice_in_one_view() {
    for view in View::ALL {
        let mut seen = std::collections::HashSet::new();
        for b in keys::view_bindings(view).iter().chain(keys::GLOBAL) {
            for code in b.keys {
                assert!(seen.insert(*code), "{view:?}: {code:?} is bound twice");
                if let KeyCode::Char(c) = code {
                    assert!(!c.is_ascii_digit(), "{view:?}: digits switch views");
                }
            }
        }
    }
}

#[test]
fn a_focused_input_receives_every_character_including_shortcuts() {
    let mut app = sample("overlord");
    app.view = View::Tasks;
    press(&mut app, KeyCode::Char('/'));
    for c in "q1?rjk/ ".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    assert_eq!(
        app.mode,
        Mode::Input(Purpose::Filter, {
            let mut i = super::input::LineInput::new("", 200);
            "q1?rjk/ ".chars().for_each(|c| i.apply(Edit::Char(c)));
            i
        })
    );
    assert_eq!(app.view, View::Tasks, "1 typed, not a view switch");
    assert!(!app.quit, "q typed, not quit");
    // A paste lands in the input too (the Go TUI dropped pastes).
    let msgs = super::terminal_msgs(&app, ratatui::crossterm::event::Event::Paste("pasted".into()));
    assert_eq!(msgs, vec![Msg::Edit(Edit::Paste("pasted".into()))]);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(keys::map(&app, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Msg::Act(Act::Quit)));
}

#[test]
fn the_filter_narrows_the_list_and_the_selection_follows_it() {
    let mut app = sample("overlord");
    app.view = View::Tasks;
    press(&mut app, KeyCode::Char('/'));
    for c in "#12".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.filter(View::Tasks), "#12");
    assert_eq!(super::select::tasks(&app).len(), 1);
    assert_eq!(super::select::current_task(&app).map(|t| &*t.label), Some("Summarise the release notes #12"));
    press(&mut app, KeyCode::Esc);
    assert_eq!(super::select::tasks(&app).len(), 30, "esc clears the filter");
}

#[test]
fn approving_asks_first_and_then_calls_the_api_once() {
    let mut app = sample("admin");
    app.view = View::Approvals;
    assert!(press(&mut app, KeyCode::Char('a')).is_empty(), "nothing before the answer");
    assert!(matches!(&app.mode, Mode::Confirm(Confirm { cmd: Cmd::Approve(id), .. }) if id == "act_7f3a9c"));
    assert_eq!(press(&mut app, KeyCode::Char('y')), vec![Cmd::Approve("act_7f3a9c".into())]);
    assert_eq!(app.mode, Mode::Normal);
    // No: nothing happens.
    press(&mut app, KeyCode::Char('a'));
    assert!(press(&mut app, KeyCode::Char('n')).is_empty());
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn denying_takes_an_optional_reason() {
    let mut app = sample("admin");
    app.view = View::Approvals;
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('d'));
    for c in "not now".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    assert_eq!(press(&mut app, KeyCode::Enter), vec![Cmd::Deny { id: "act_11b0de".into(), reason: "not now".into() }]);
}

#[test]
fn a_viewer_is_told_why_and_nothing_is_sent() {
    let mut app = sample("viewer");
    app.view = View::Approvals;
    assert!(press(&mut app, KeyCode::Char('a')).is_empty());
    assert_eq!(app.mode, Mode::Normal, "no question for an action the certificate cannot take");
    let (text, error) = app.status.clone().unwrap_or_default();
    assert!(error && text.contains("needs the admin role") && text.contains("carries viewer"), "{text}");
    app.view = View::Tasks;
    assert!(press(&mut app, KeyCode::Char('c')).is_empty());
    assert!(app.status.as_ref().is_some_and(|(t, _)| t.contains("needs the operator role")));
    // A viewer's console does not even ask for what it may not read.
    assert!(!app.open_cmds(View::Audit).iter().any(|c| matches!(c, Cmd::Load(Resource::Audit))));
}

#[test]
fn task_keys_cancel_retry_filter_by_status_and_page() {
    let mut app = sample("operator");
    app.view = View::Tasks;
    // Row 0 is task 1, queued: cancel asks, then cancels.
    let first = super::select::current_task(&app).map(|t| (t.id.to_string(), t.status.to_string()));
    assert_eq!(first.as_ref().map(|f| f.1.as_str()), Some("queued"));
    press(&mut app, KeyCode::Char('c'));
    assert_eq!(press(&mut app, KeyCode::Char('y')), vec![Cmd::CancelTask(first.map(|f| f.0).unwrap_or_default())]);
    // Retry refuses a queued task without asking.
    assert!(press(&mut app, KeyCode::Char('y')).is_empty());
    assert!(app.status.as_ref().is_some_and(|(t, _)| t.contains("only failed or canceled")));
    // Row 2 is task 3 (failed): retry.
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('y'));
    assert!(matches!(press(&mut app, KeyCode::Char('y')).as_slice(), [Cmd::RetryTask(_)]));
    // The end of the loaded page asks for the next one (keyset paging).
    assert_eq!(press(&mut app, KeyCode::Char('G')), vec![Cmd::MoreTasks { status: None, before: "cursor".into() }]);
    // Enter opens the details and fetches the history.
    assert!(matches!(press(&mut app, KeyCode::Enter).as_slice(), [Cmd::TaskDetail(_)]));
    assert!(app.task_detail.is_some());
    press(&mut app, KeyCode::Esc);
    assert!(app.task_detail.is_none());
    // s cycles the status filter and fetches from the start.
    assert_eq!(press(&mut app, KeyCode::Char('s')), vec![Cmd::Load(Resource::Tasks)]);
    assert_eq!(app.task_status(), Some("queued"));
    assert!(!app.tasks.loaded);
}

#[test]
fn objective_keys_pause_resume_delete_and_run() {
    let mut app = sample("operator");
    app.view = View::Objectives;
    press(&mut app, KeyCode::Char('p'));
    assert_eq!(press(&mut app, KeyCode::Char('y')), vec![Cmd::SetObjectiveActive { id: "obj_22".into(), active: false }]);
    press(&mut app, KeyCode::Char('x'));
    assert!(matches!(&app.mode, Mode::Confirm(c) if c.question.contains("Delete")));
    assert_eq!(press(&mut app, KeyCode::Char('y')), vec![Cmd::DeleteObjective("obj_22".into())]);
    press(&mut app, KeyCode::Char('n'));
    assert_eq!(press(&mut app, KeyCode::Char('y')), vec![Cmd::RunObjective("obj_22".into())]);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('p'));
    assert_eq!(press(&mut app, KeyCode::Char('y')), vec![Cmd::SetObjectiveActive { id: "obj_13".into(), active: true }]);
}

#[test]
fn pairing_by_token_with_a_role_picker() {
    let mut app = sample("admin");
    app.view = View::Pairings;
    assert!(press(&mut app, KeyCode::Char('a')).is_empty(), "nothing to approve before a token");
    press(&mut app, KeyCode::Char('t'));
    for c in "K7QF-AB12-9XZ2".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    assert_eq!(press(&mut app, KeyCode::Enter), vec![Cmd::PairingLookup("K7QF-AB12-9XZ2".into())]);
    let found = app.pairings.items[0].clone();
    update(&mut app, Msg::Loaded(Loaded::PairingFound(Box::new(found))));
    press(&mut app, KeyCode::Char('o'));
    press(&mut app, KeyCode::Char('a'));
    assert_eq!(press(&mut app, KeyCode::Char('y')), vec![Cmd::PairingApprove { token: "K7QF-AB12-9XZ2".into(), role: Role::Operator }]);
    press(&mut app, KeyCode::Char('d'));
    assert_eq!(press(&mut app, KeyCode::Char('y')), vec![Cmd::PairingDeny("K7QF-AB12-9XZ2".into())]);
}

#[test]
fn workspace_admin_flag_and_chat_input() {
    let mut app = sample("admin");
    app.view = View::Workspaces;
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('A'));
    assert_eq!(press(&mut app, KeyCode::Char('y')), vec![Cmd::SetAdmin { id: "ctx_2".into(), admin: true }]);
    app.view = View::Chat;
    press(&mut app, KeyCode::Enter);
    for c in "hi q".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    assert_eq!(press(&mut app, KeyCode::Enter), vec![Cmd::Chat("hi q".into())]);
    assert!(matches!(app.mode, Mode::Input(Purpose::Chat, _)), "the input stays open for the next line");
    assert_eq!(app.chat.last(), Some(&(true, "hi q".to_string())));
}

#[test]
fn help_overlay_opens_and_closes_and_views_switch() {
    let mut app = sample("overlord");
    press(&mut app, KeyCode::Char('?'));
    assert_eq!(app.mode, Mode::Help);
    press(&mut app, KeyCode::Char('?'));
    assert_eq!(app.mode, Mode::Normal);
    press(&mut app, KeyCode::Char('4'));
    assert_eq!(app.view, View::Objectives);
    press(&mut app, KeyCode::Char(']'));
    assert_eq!(app.view, View::Pairings);
    press(&mut app, KeyCode::Char('['));
    assert_eq!(app.view, View::Objectives);
    // Tab moves the arrows to the details pane, which they then scroll; esc gives them back.
    press(&mut app, KeyCode::Tab);
    assert!(app.details_focus);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    assert_eq!((app.details_scroll, app.objectives.selected), (2, 0));
    press(&mut app, KeyCode::Esc);
    assert!(!app.details_focus);
    press(&mut app, KeyCode::Down);
    assert_eq!((app.details_scroll, app.objectives.selected), (0, 1));
    press(&mut app, KeyCode::Char('0'));
    assert_eq!(app.view, View::Usage);
    press(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
}

fn event(id: i64, kind: &str, data: serde_json::Value) -> Msg {
    Msg::Event(Box::new(Event { id, at: NOW, kind: kind.into(), data }))
}

#[test]
fn events_patch_lists_and_a_burst_costs_one_refetch_per_second() {
    let mut app = sample("overlord");
    app.view = View::Tasks;
    let id = app.tasks.items[1].id.clone();
    update(&mut app, event(100, "task.succeeded", json!({"task_id": id, "status": "succeeded"})));
    assert_eq!(&*app.tasks.items[1].status, "succeeded", "patched in place, no fetch");
    for i in 0..1_000 {
        update(&mut app, event(101 + i, "task.created", json!({"task_id": format!("new{i}"), "status": "queued"})));
    }
    let cmds = update(&mut app, Msg::Tick(NOW + 1_000));
    assert_eq!(cmds, vec![Cmd::Load(Resource::Tasks)], "one refetch for a thousand events");
    update(&mut app, event(2_000, "task.created", json!({})));
    assert!(update(&mut app, Msg::Tick(NOW + 1_500)).is_empty(), "not again within a second");
    assert_eq!(update(&mut app, Msg::Tick(NOW + 2_000)), vec![Cmd::Load(Resource::Tasks)]);
    // A refetched first page puts new tasks on top and keeps the rest.
    let before = app.tasks.items.len();
    update(
        &mut app,
        Msg::Loaded(Loaded::Tasks { items: vec![task(99, "queued").into(), task(30, "failed").into()], next: None, more: false }),
    );
    assert_eq!(app.tasks.items.len(), before + 1);
    assert_eq!(&*app.tasks.items[0].label, "Summarise the release notes #99");
}

#[test]
fn the_switch_s_events_refetch_the_usage_report_and_a_resume_clears_paused() {
    let mut app = sample("overlord");
    app.view = View::Overview;
    assert!(app.budget[0].starts_with("agent: PAUSED"));
    update(&mut app, event(300, "agent.resumed", json!({"by": "cert:ops"})));
    assert_eq!(update(&mut app, Msg::Tick(NOW + 1_000)), vec![Cmd::Load(Resource::Usage)], "the report is fetched again");
    update(&mut app, Msg::Loaded(Loaded::Usage(Vec::new(), vec!["agent: running".into()])));
    assert_eq!(app.budget, ["agent: running"]);
    let text = super::render_text(&app, 80, 24, super::render::Theme { color: false });
    assert!(text.contains("agent      running") && !text.contains("PAUSED"), "{text}");
}

#[test]
fn the_activity_feed_never_shows_an_event_twice_and_freezes() {
    let mut app = sample("overlord");
    let n = app.activity.len();
    update(&mut app, event(6, "task.created", json!({})));
    update(&mut app, event(6, "task.created", json!({})));
    update(&mut app, event(3, "task.created", json!({})));
    assert_eq!(app.activity.len(), n + 1, "a replay after resume is dropped");
    app.view = View::Activity;
    press(&mut app, KeyCode::Char(' '));
    update(&mut app, event(7, "approval.requested", json!({})));
    assert_eq!((app.activity.len(), app.held.len()), (n + 1, 1));
    press(&mut app, KeyCode::Char(' '));
    assert_eq!((app.activity.len(), app.held.len()), (n + 2, 0));
    for i in 0..3_000 {
        update(&mut app, event(100 + i, "message.inbound", json!({})));
    }
    assert_eq!(app.activity.len(), super::app::ACTIVITY_CAP);
}

#[test]
fn a_reconnect_refetches_and_says_so() {
    let mut app = sample("overlord");
    update(&mut app, Msg::Link(Link::Down { error: "connection refused".into(), retry_at: NOW + 2_000 }));
    assert!(update(&mut app, Msg::Tick(NOW + 5_000)).is_empty(), "nothing is fetched while the daemon is away");
    update(&mut app, Msg::Link(Link::Live));
    assert!(app.status.as_ref().is_some_and(|(t, _)| t.contains("reconnected")));
    let cmds = update(&mut app, Msg::Tick(NOW + 10_000));
    assert!(cmds.contains(&Cmd::Load(Resource::Heartbeat)) && cmds.contains(&Cmd::Load(Resource::Gauges)), "{cmds:?}");
}

#[test]
fn the_gauges_parser_reads_the_metrics_the_overview_shows() {
    let g = Gauges::parse("# HELP x\nagent_runtime_tasks{status=\"failed\"} 7\nagent_runtime_queue_depth 3\ngarbage\n");
    assert_eq!((g.tasks("failed"), g.queue_depth, g.tasks("queued")), (7, 3, 0));
}

#[test]
fn sse_frames_parse_and_gaps_and_comments_are_not_events() {
    let frame = "id: 5\nevent: task.created\ndata: {\"id\":5,\"at\":1,\"type\":\"task.created\",\"data\":{}}\n\n";
    assert_eq!(super::net::parse_frame(frame).map(|e| e.id), Some(5));
    assert!(super::net::parse_frame(": keep-alive\n\n").is_none());
    assert!(super::net::parse_frame("event: gap\ndata: {\"requested_after\":1,\"first_available\":9}\n\n").is_none());
}

/// Compares a rendered frame with its reviewed snapshot. With
/// `UPDATE_SNAPSHOTS=1` a missing or changed file is written instead — for a
/// person to review in the diff before committing.
fn snapshot(name: &str, text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/tui").join(format!("{name}.txt"));
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    match std::fs::read_to_string(&path) {
        Ok(want) if want == text => {}
        _ if update => {
            std::fs::create_dir_all(path.parent().unwrap_or(&path)).ok();
            std::fs::write(&path, text).ok();
        }
        Ok(want) => panic!("{name} changed; review, then UPDATE_SNAPSHOTS=1\n--- want\n{want}\n--- got\n{text}"),
        Err(e) => panic!("{}: {e}; create it with UPDATE_SNAPSHOTS=1 and review it\n{text}", path.display()),
    }
}

#[test]
fn every_view_renders_at_80x24_and_160x48() {
    let theme = super::render::Theme { color: false };
    for view in View::ALL {
        let mut app = sample("overlord");
        app.view = view;
        for (w, h) in [(80, 24), (160, 48)] {
            let text = super::render_text(&app, w, h, theme);
            assert_eq!(text.lines().count(), usize::from(h));
            snapshot(&format!("{}-{w}x{h}", view.name()), &text);
        }
    }
}

#[test]
fn overlays_render_and_a_viewer_sees_disabled_actions() {
    let theme = super::render::Theme { color: false };
    let mut app = sample("admin");
    app.view = View::Approvals;
    press(&mut app, KeyCode::Char('a'));
    snapshot("approvals-confirm-80x24", &super::render_text(&app, 80, 24, theme));
    app.mode = Mode::Help;
    snapshot("approvals-help-80x24", &super::render_text(&app, 80, 24, theme));
    let mut viewer = sample("viewer");
    viewer.view = View::Approvals;
    let text = super::render_text(&viewer, 100, 30, theme);
    assert!(text.contains("approve/deny disabled: needs the admin role"), "{text}");
    let mut down = sample("admin");
    update(&mut down, Msg::Link(Link::Down { error: "connection refused".into(), retry_at: NOW + 3_000 }));
    let text = super::render_text(&down, 100, 30, theme);
    assert!(text.contains("daemon unreachable, retry in 3s") && text.contains("ws_main") == (down.view == View::Workspaces), "{text}");
    assert!(text.contains("Health"), "the last data stays on screen");
}

#[test]
fn chat_text_wraps_at_spaces_and_breaks_long_words() {
    assert_eq!(super::panes::wrap("one two three", 7), vec!["one two", "three"]);
    assert_eq!(super::panes::wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    assert_eq!(super::panes::wrap("a\n\nb", 5), vec!["a", "", "b"]);
}

#[test]
fn escape_sequences_from_untrusted_text_never_reach_the_terminal() {
    // A task title and a chat reply from a stranger, carrying a terminal
    // retitle (OSC), a colour change and a cursor move.
    let mut app = sample("overlord");
    // Drawn as given (the renderer's filter), and as the list stores it (its own).
    let hostile = "pwn\u{1b}]0;owned\u{7}\u{1b}[31mred\u{1b}[2Jgone";
    app.tasks.items[0].label = hostile.into();
    let stored = super::model::TaskRow::from(Task { title: hostile.into(), ..Task::default() });
    assert!(!stored.label.contains(['\u{1b}', '\u{7}']), "{:?}", stored.label);
    app.chat.push((false, "hi\u{1b}[1A\u{1b}[2K".into()));
    for view in [View::Tasks, View::Chat] {
        app.view = view;
        let text = super::render_text(&app, 120, 30, super::render::Theme { color: false });
        assert!(!text.contains(['\u{1b}', '\u{7}']), "{view:?}:\n{text}");
    }
}

fn type_into(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn clear(app: &mut App) {
    update(app, Msg::Edit(Edit::Clear));
}

#[test]
fn the_objective_form_checks_the_schedule_as_it_is_typed_and_saves() {
    let mut app = sample("operator");
    app.view = View::Objectives;
    assert!(press(&mut app, KeyCode::Char('c')).is_empty(), "the chats are loaded already");
    let form = |app: &App| super::form::open(&app.mode).cloned().expect("the form is open");
    // Every key types into the focused field, `q` and digits included.
    type_into(&mut app, "q1 digest");
    press(&mut app, KeyCode::Tab);
    type_into(&mut app, "Summarise the on-call notes");
    press(&mut app, KeyCode::Tab); // chat
    assert_eq!(form(&app).choice(super::form::Field::Context), "telegram:4242 Ops");
    press(&mut app, KeyCode::Right);
    assert!(form(&app).choice(super::form::Field::Context).starts_with("email:ada@example.com"));
    press(&mut app, KeyCode::Tab); // trigger
    press(&mut app, KeyCode::Tab); // schedule
    clear(&mut app);
    type_into(&mut app, "61 9 * * *");
    let err = form(&app).check(NOW).expect_err("minute 61");
    assert!(err.contains("minute field \"61\""), "{err}");
    clear(&mut app);
    // Day of month OR day of week (Vixie cron): the 1st, and every Monday.
    type_into(&mut app, "0 9 1 * 1");
    let ok = form(&app).check(NOW).expect("a valid schedule");
    assert_eq!(ok, "next (UTC): Mon 12-07 09:00, Mon 12-14 09:00, Mon 12-21 09:00, Mon 12-28 09:00, Fri 01-01 09:00");
    let screen = super::render_text(&app, 80, 24, super::render::Theme { color: false });
    assert!(screen.contains("✓ next (UTC): Mon 12-07 09:00"), "{screen}");
    snapshot("objectives-form-80x24", &screen);
    let cmds = press(&mut app, KeyCode::Enter);
    let [Cmd::SaveObjective { update: false, body }] = cmds.as_slice() else { panic!("{cmds:?}") };
    assert_eq!(
        body,
        &json!({"title": "q1 digest", "prompt": "Summarise the on-call notes", "trigger_type": "schedule", "cron_expr": "0 9 1 * 1",
                "timezone": "UTC", "catch_up": "latest", "context_id": "ctx_2"})
    );
    // The daemon's refusal keeps the form open with the reason; success closes it.
    update(&mut app, Msg::Done(Err("title is taken (HTTP 400)".into())));
    assert_eq!(form(&app).error.as_deref(), Some("title is taken (HTTP 400)"));
    press(&mut app, KeyCode::Enter);
    update(&mut app, Msg::Done(Ok("objective \"q1 digest\" created".into())));
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn the_form_edits_an_objective_and_checks_once_and_event_triggers() {
    let mut app = sample("operator");
    app.view = View::Objectives;
    press(&mut app, KeyCode::Char('e'));
    let f = super::form::open(&app.mode).cloned().expect("form");
    assert_eq!(
        (f.editing.as_deref(), f.title.text(), f.cron.text(), f.timezone.text()),
        (Some("obj_22"), "Morning on-call digest", "0 9 * * 1-5", "Europe/Berlin")
    );
    assert!(!f.fields().contains(&super::form::Field::Context), "an objective keeps its chat");
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Tab); // trigger
    press(&mut app, KeyCode::Right); // event
    press(&mut app, KeyCode::Tab);
    type_into(&mut app, "../secrets/*.md");
    assert!(super::form::open(&app.mode).expect("form").check(NOW).is_err(), "a glob leaving the workspace is refused before saving");
    clear(&mut app);
    type_into(&mut app, "notes/**/*.md");
    let cmds = press(&mut app, KeyCode::Enter);
    let [Cmd::SaveObjective { update: true, body }] = cmds.as_slice() else { panic!("{cmds:?}") };
    assert_eq!(
        (body["id"].as_str(), body["trigger_type"].as_str(), body["event_filter"].as_str()),
        (Some("obj_22"), Some("event"), Some("notes/**/*.md"))
    );
    // Once: a past time is refused, a future one accepted.
    let mut app = sample("operator");
    app.view = View::Objectives;
    press(&mut app, KeyCode::Char('c'));
    type_into(&mut app, "t");
    press(&mut app, KeyCode::Tab);
    type_into(&mut app, "p");
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Left); // once
    press(&mut app, KeyCode::Tab);
    type_into(&mut app, "2020-01-01T00:00:00Z");
    assert_eq!(super::form::open(&app.mode).expect("form").check(NOW), Err("run at is in the past".into()));
    assert!(press(&mut app, KeyCode::Enter).is_empty(), "nothing is sent while the check fails");
    clear(&mut app);
    type_into(&mut app, "2026-12-24T18:00:00+01:00");
    assert!(super::form::open(&app.mode).expect("form").check(NOW).is_ok());
    // A viewer gets no form at all.
    let mut viewer = sample("viewer");
    viewer.view = View::Objectives;
    press(&mut viewer, KeyCode::Char('c'));
    assert_eq!(viewer.mode, Mode::Normal);
    assert!(viewer.status.as_ref().is_some_and(|(t, _)| t.contains("needs the operator role")));
}

#[test]
fn a_list_row_keeps_a_bounded_label_and_the_page_on_screen_is_all_that_is_drawn() {
    let long = Task { id: "x".into(), prompt: "word ".repeat(10_000), ..Task::default() };
    let row = super::model::TaskRow::from(long);
    assert_eq!(row.label.chars().count(), super::model::LABEL_CHARS, "the prompt's start, not all 50,000 characters");
    let area = ratatui::layout::Rect::new(0, 0, 80, 23);
    assert_eq!(super::views::window(10_000, 0, area), (0, 20));
    assert_eq!(super::views::window(10_000, 45, area), (40, 60));
    assert_eq!(super::views::window(10_000, 9_999, area), (9_980, 10_000));
    assert_eq!(super::views::window(3, 7, area), (0, 3));
    // Paging down the list keeps the selection on screen.
    let mut app = sample("overlord");
    app.view = View::Tasks;
    for _ in 0..25 {
        press(&mut app, KeyCode::Down);
    }
    let screen = super::render_text(&app, 80, 24, super::render::Theme { color: false });
    assert!(screen.lines().any(|l| l.contains("│›") && l.contains("#26")), "{screen}");
}
