//! What a key's action does to the state, view by view (part of the pure
//! [`update`](super::app::update)).

use super::app::{Act, App, Cmd, Confirm, List, Mode, Purpose, Resource, TASK_STATUSES, View, set_filter};
use super::input::LineInput;
use super::select;
use crate::domain::Role;

/// Applies a key's action.
pub fn apply(app: &mut App, act: Act) -> Vec<Cmd> {
    match (&app.mode, act) {
        (Mode::Confirm(c), Act::Yes) => {
            let cmd = c.cmd.clone();
            app.mode = Mode::Normal;
            return gate(app, cmd);
        }
        (Mode::Form(f), Act::NextField | Act::PrevField) => {
            let mut f = f.clone();
            f.move_focus(if act == Act::NextField { 1 } else { -1 });
            app.mode = Mode::Form(f);
            return Vec::new();
        }
        (Mode::Confirm(_) | Mode::Help | Mode::Input(..) | Mode::Form(_), Act::No | Act::Back | Act::Help) => {
            app.mode = Mode::Normal;
            return Vec::new();
        }
        (Mode::Confirm(_) | Mode::Help | Mode::Input(..) | Mode::Form(_), _) => return Vec::new(),
        (Mode::Normal, _) => {}
    }
    match act {
        Act::Quit => {
            app.quit = true;
            Vec::new()
        }
        Act::Help => {
            app.mode = Mode::Help;
            Vec::new()
        }
        Act::Go(view) => go(app, view),
        Act::NextView | Act::PrevView => {
            let i = View::ALL.iter().position(|v| *v == app.view).unwrap_or(0);
            let n = View::ALL.len();
            let next = if act == Act::NextView { (i + 1) % n } else { (i + n - 1) % n };
            go(app, View::ALL[next])
        }
        Act::Focus => {
            if has_details(app) {
                app.details_focus = !app.details_focus;
            } else {
                app.details_focus = false;
                app.status = Some((format!("the {} view has no details pane", app.view.name()), false));
            }
            Vec::new()
        }
        Act::Up | Act::Down | Act::PageUp | Act::PageDown | Act::Top | Act::Bottom if app.details_focus && has_details(app) => {
            let s = &mut app.details_scroll;
            *s = match act {
                Act::Up => s.saturating_sub(1),
                Act::Down => s.saturating_add(1),
                Act::PageUp => s.saturating_sub(10),
                Act::PageDown => s.saturating_add(10),
                Act::Top => 0,
                _ => s.saturating_add(100),
            };
            Vec::new()
        }
        Act::Up | Act::Down | Act::PageUp | Act::PageDown | Act::Top | Act::Bottom => {
            app.details_scroll = 0;
            move_selection(app, act)
        }
        Act::Back => back(app),
        Act::Filter => {
            let text = app.filter(app.view).to_string();
            app.mode = Mode::Input(Purpose::Filter, LineInput::new(&text, 200));
            Vec::new()
        }
        Act::Refresh => {
            app.status = Some((format!("refreshing {}", app.view.name()), false));
            app.open_cmds(app.view)
        }
        _ => view_action(app, act),
    }
}

/// Enter in a focused input.
pub fn submit(app: &mut App) -> Vec<Cmd> {
    if let Mode::Form(form) = &mut app.mode {
        if form.saving {
            return Vec::new();
        }
        if let Err(e) = form.check(app.now_ms) {
            form.error = Some(e);
            return Vec::new();
        }
        form.saving = true;
        let cmd = form.save();
        return vec![cmd];
    }
    let Mode::Input(purpose, input) = std::mem::replace(&mut app.mode, Mode::Normal) else { return Vec::new() };
    let text = input.text().trim().to_string();
    match purpose {
        Purpose::Filter => {
            set_filter(app, text);
            Vec::new()
        }
        Purpose::DenyReason => match select::current_approval(app).filter(|a| a.status == "pending").map(|a| a.id.clone()) {
            Some(id) => gate(app, Cmd::Deny { id, reason: text }),
            None => Vec::new(),
        },
        Purpose::Chat if text.is_empty() => Vec::new(),
        Purpose::Chat => {
            let cmds = gate(app, Cmd::Chat(text.clone()));
            if !cmds.is_empty() {
                app.chat.push((true, text));
            }
            // The input stays open for the next line, as in any chat.
            app.mode = Mode::Input(Purpose::Chat, LineInput::new("", 4_000));
            cmds
        }
        Purpose::Token if text.is_empty() => Vec::new(),
        Purpose::Token => {
            app.pairing_token = text.clone();
            gate(app, Cmd::PairingLookup(text))
        }
    }
}

/// `cmd` if the certificate may make it, else a status line saying why not.
fn gate(app: &mut App, cmd: Cmd) -> Vec<Cmd> {
    match app.refusal(&cmd) {
        Some(why) => {
            app.status = Some((why, true));
            Vec::new()
        }
        None => vec![cmd],
    }
}

/// Whether the view on screen has a details pane to focus.
fn has_details(app: &App) -> bool {
    match app.view {
        View::Approvals | View::Objectives => true,
        View::Tasks => app.task_detail.is_some(),
        _ => false,
    }
}

fn go(app: &mut App, view: View) -> Vec<Cmd> {
    app.view = view;
    app.details_focus = false;
    app.details_scroll = 0;
    // A view is fetched the first time it is shown; afterwards events keep it current.
    let unloaded: Vec<Resource> = view.resources().iter().copied().filter(|r| !super::patch::is_loaded(app, *r)).collect();
    unloaded.into_iter().map(Cmd::Load).filter(|c| app.refusal(c).is_none()).collect()
}

fn back(app: &mut App) -> Vec<Cmd> {
    if app.details_focus {
        app.details_focus = false;
    } else if app.view == View::Tasks && app.task_detail.is_some() {
        app.task_detail = None;
        app.details_scroll = 0;
    } else if app.view == View::Pairings && app.pairing_found.is_some() {
        app.pairing_found = None;
    } else if !app.filter(app.view).is_empty() {
        set_filter(app, String::new());
    } else {
        app.status = None;
    }
    Vec::new()
}

fn move_selection(app: &mut App, act: Act) -> Vec<Cmd> {
    let len = select::visible_len(app);
    if app.view == View::Activity {
        // The feed scrolls from its newest row: up goes back in time.
        let s = &mut app.activity_scroll;
        *s = match act {
            Act::Up => (*s + 1).min(len.saturating_sub(1)),
            Act::Down => s.saturating_sub(1),
            Act::PageUp => (*s + 10).min(len.saturating_sub(1)),
            Act::PageDown => s.saturating_sub(10),
            Act::Top => len.saturating_sub(1),
            _ => 0,
        };
        return Vec::new();
    }
    let Some(sel) = select::selection(app) else { return Vec::new() };
    *sel = match act {
        Act::Up => sel.saturating_sub(1),
        Act::Down => (*sel + 1).min(len.saturating_sub(1)),
        Act::PageUp => sel.saturating_sub(10),
        Act::PageDown => (*sel + 10).min(len.saturating_sub(1)),
        Act::Top => 0,
        _ => len.saturating_sub(1),
    };
    let at_end = *sel + 1 >= len;
    // Keyset paging: reaching the last loaded task asks for the next page.
    match (&app.tasks_next, app.view, at_end) {
        (Some(before), View::Tasks, true) if app.task_detail.is_none() => {
            vec![Cmd::MoreTasks { status: app.task_status(), before: before.clone() }]
        }
        _ => Vec::new(),
    }
}

fn view_action(app: &mut App, act: Act) -> Vec<Cmd> {
    match app.view {
        View::Tasks => tasks(app, act),
        View::Approvals => approvals(app, act),
        View::Objectives => objectives(app, act),
        View::Pairings => pairings(app, act),
        View::Workspaces => workspaces(app, act),
        View::Activity if act == Act::Freeze => {
            app.frozen = !app.frozen;
            if !app.frozen {
                let held: Vec<_> = app.held.drain(..).collect();
                held.into_iter().for_each(|e| super::patch::push_activity(app, e));
            }
            Vec::new()
        }
        View::Chat if act == Act::Input => {
            app.mode = Mode::Input(Purpose::Chat, LineInput::new("", 4_000));
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn confirm(app: &mut App, question: String, cmd: Cmd) -> Vec<Cmd> {
    // Refused before asking: a viewer is told at once, not after saying yes.
    if let Some(why) = app.refusal(&cmd) {
        app.status = Some((why, true));
        return Vec::new();
    }
    app.mode = Mode::Confirm(Confirm { question, cmd });
    Vec::new()
}

fn tasks(app: &mut App, act: Act) -> Vec<Cmd> {
    if act == Act::CycleStatus {
        app.task_status = (app.task_status + 1) % TASK_STATUSES.len();
        app.tasks = List::default();
        app.tasks_next = None;
        return vec![Cmd::Load(Resource::Tasks)];
    }
    let Some(task) = select::current_task(app).cloned() else { return Vec::new() };
    let short = short_id(&task.id);
    let id = task.id.to_string();
    match act {
        Act::Open => {
            // What the row knows, until the whole task arrives.
            let shown = super::model::Task {
                id: id.clone(),
                status: task.status.to_string(),
                kind: task.kind.to_string(),
                title: task.label.to_string(),
                attempts: i64::from(task.attempts),
                max_attempts: i64::from(task.max_attempts),
                ..Default::default()
            };
            app.task_detail = Some(shown);
            vec![Cmd::TaskDetail(id)]
        }
        Act::Cancel if matches!(&*task.status, "queued" | "running") => {
            confirm(app, format!("Cancel task {short} ({})?", task.status), Cmd::CancelTask(id))
        }
        Act::Cancel => status(app, format!("task {short} is {}; only queued or running tasks can be canceled", task.status)),
        Act::Retry if matches!(&*task.status, "failed" | "canceled") => {
            confirm(app, format!("Retry task {short} ({})?", task.status), Cmd::RetryTask(id))
        }
        Act::Retry => status(app, format!("task {short} is {}; only failed or canceled tasks can be retried", task.status)),
        _ => Vec::new(),
    }
}

fn approvals(app: &mut App, act: Act) -> Vec<Cmd> {
    let Some(a) = select::current_approval(app).cloned() else { return Vec::new() };
    match act {
        Act::Approve | Act::Deny if a.status != "pending" => status(app, format!("{} is {} already", a.id, a.status)),
        Act::Approve => {
            let question =
                format!("Approve {} ({} → {}) with hash {}…?", a.id, a.action_type, a.target, a.payload_hash.get(..12).unwrap_or(""));
            confirm(app, question, Cmd::Approve(a.id))
        }
        Act::Deny => {
            if let Some(why) = app.refusal(&Cmd::Deny { id: a.id.clone(), reason: String::new() }) {
                return status_err(app, why);
            }
            app.mode = Mode::Input(Purpose::DenyReason, LineInput::new("", 500));
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn objectives(app: &mut App, act: Act) -> Vec<Cmd> {
    if act == Act::Create || act == Act::Edit {
        return form(app, act);
    }
    let Some(o) = select::current_objective(app).cloned() else { return Vec::new() };
    match act {
        Act::TogglePause if o.active => {
            confirm(app, format!("Pause \"{}\"?", o.title), Cmd::SetObjectiveActive { id: o.id, active: false })
        }
        Act::TogglePause => confirm(app, format!("Resume \"{}\"?", o.title), Cmd::SetObjectiveActive { id: o.id, active: true }),
        Act::Delete => confirm(app, format!("Delete \"{}\" and its run history?", o.title), Cmd::DeleteObjective(o.id)),
        Act::RunNow => confirm(app, format!("Run \"{}\" now?", o.title), Cmd::RunObjective(o.id)),
        _ => Vec::new(),
    }
}

/// Opens the objective form (new, or the selected objective); fetches the chats to choose from.
fn form(app: &mut App, act: Act) -> Vec<Cmd> {
    let probe = Cmd::SaveObjective { update: false, body: serde_json::Value::Null };
    if let Some(why) = app.refusal(&probe) {
        return status_err(app, why);
    }
    let form = match (act, select::current_objective(app)) {
        (Act::Edit, Some(o)) => super::form::Form::edit(o, &app.contexts.items),
        (Act::Edit, None) => return status(app, "no objective selected".into()),
        _ => super::form::Form::create(&app.contexts.items),
    };
    app.mode = Mode::Form(Box::new(form));
    if app.contexts.loaded { Vec::new() } else { vec![Cmd::Load(Resource::Contexts)] }
}

fn pairings(app: &mut App, act: Act) -> Vec<Cmd> {
    match act {
        Act::Input => {
            app.pairing_found = None;
            app.mode = Mode::Input(Purpose::Token, LineInput::new("", 128));
            Vec::new()
        }
        Act::RoleNext => {
            if let Some((_, _, role)) = &mut app.pairing_found {
                // Member first: the role most pairings grant; overlord last.
                let i = Role::ALL.iter().position(|r| r == role).unwrap_or(0);
                *role = Role::ALL[(i + 1) % Role::ALL.len()];
            }
            Vec::new()
        }
        Act::Approve | Act::Deny => {
            let Some((p, token, role)) = app.pairing_found.clone() else {
                return status(app, "press t and type the token the person was given, then a to approve or d to deny".into());
            };
            let who = format!("{}:{} ({})", p.connector, p.connector_user_id, p.display_name.unwrap_or_default());
            if act == Act::Approve {
                confirm(app, format!("Link {who} as {}?", role.as_str()), Cmd::PairingApprove { token, role })
            } else {
                confirm(app, format!("Deny the pairing of {who}?"), Cmd::PairingDeny(token))
            }
        }
        _ => Vec::new(),
    }
}

fn workspaces(app: &mut App, act: Act) -> Vec<Cmd> {
    let Some(c) = select::current_context(app).cloned() else { return Vec::new() };
    match act {
        Act::ToggleAdmin => {
            let (verb, admin) = if c.is_admin { ("Stop making", false) } else { ("Make", true) };
            let question = format!("{verb} {}:{} an admin channel?", c.connector, c.external_id);
            confirm(app, question, Cmd::SetAdmin { id: c.id, admin })
        }
        _ => Vec::new(),
    }
}

fn status(app: &mut App, text: String) -> Vec<Cmd> {
    app.status = Some((text, false));
    Vec::new()
}

fn status_err(app: &mut App, text: String) -> Vec<Cmd> {
    app.status = Some((text, true));
    Vec::new()
}

/// An id short enough for a table. Our ids are time-ordered (UUIDv7), so
/// ids made together share their first characters: the table shows the
/// last 8 (after the kind prefix, `act_…1f3a5c7e`); details show them whole.
pub fn short_id(id: &str) -> String {
    let tail = |n: usize| id.get(id.len().saturating_sub(n)..).unwrap_or(id);
    if id.len() == 36 && id.as_bytes().get(8) == Some(&b'-') {
        return tail(8).to_string();
    }
    match id.split_once('_') {
        Some((kind, rest)) if rest.len() > 10 => format!("{kind}_…{}", tail(8)),
        _ => id.to_string(),
    }
}
