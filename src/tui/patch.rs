//! How answers, events, the link and the clock change the state (part of
//! the pure [`update`](super::app::update)). Lists are fetched once and then
//! kept current from the event stream: a task's status is patched in place;
//! what an event cannot carry whole (a new task, a changed objective) marks
//! its resource stale, and the tick refetches a stale resource of the view
//! on screen at most once a second, however many events arrive.

use super::app::{ACTIVITY_CAP, App, CHAT_ID, Cmd, Link, Loaded, Resource, View};
use super::model::{Event, TaskRow};

/// A refetch of the same resource waits at least this long after the last.
const REFETCH_MS: i64 = 1_000;

/// Whether `resource` holds current data.
pub fn is_loaded(app: &App, resource: Resource) -> bool {
    let loaded = match resource {
        Resource::Heartbeat => app.heartbeat.is_some(),
        Resource::Gauges => app.gauges.is_some(),
        Resource::Tasks => app.tasks.loaded,
        Resource::Approvals => app.approvals.loaded,
        Resource::Objectives => app.objectives.loaded,
        Resource::Pairings => app.pairings.loaded,
        Resource::Contexts => app.contexts.loaded,
        Resource::Audit => app.audit.loaded,
        Resource::Usage => app.usage.loaded,
        Resource::ChatMessages => app.chat_after > 0 || !app.chat.is_empty(),
    };
    loaded && !app.stale.contains(&resource)
}

/// Stores an answer; the first `info` (who we are) starts the view's fetches.
pub fn loaded(app: &mut App, data: Loaded) -> Vec<Cmd> {
    match data {
        Loaded::Info(info) => {
            let first = app.info.is_none();
            app.info = Some(info);
            if first {
                let view = app.view;
                return app.open_cmds(view);
            }
        }
        Loaded::Heartbeat(h) => app.heartbeat = Some(h),
        Loaded::Gauges(g) => app.gauges = Some(g),
        Loaded::Tasks { items, next, more } => {
            tasks(app, items, next, more);
            app.trim_after = Some(app.now_ms + 2_000);
        }
        Loaded::TaskDetail(task) => {
            if app.task_detail.as_ref().is_some_and(|t| t.id == task.id) {
                patch_task(app, &task.id, &task.status);
                app.task_detail = Some(*task);
            }
        }
        Loaded::Approvals(items) => app.approvals.set(items),
        Loaded::Objectives(items) => app.objectives.set(items),
        Loaded::Pairings(items) => app.pairings.set(items),
        Loaded::PairingFound(p) => app.pairing_found = Some((*p, app.pairing_token.clone(), crate::domain::Role::Member)),
        Loaded::Contexts(items) => {
            if let super::app::Mode::Form(form) = &mut app.mode
                && form.contexts.is_empty()
                && form.editing.is_none()
            {
                form.contexts = super::form::choices(&items);
            }
            app.contexts.set(items);
        }
        Loaded::Audit(items) => app.audit.set(items),
        Loaded::Usage(items, budget) => {
            app.usage.set(items);
            app.budget = budget;
        }
        Loaded::ChatMessages(items) => {
            for m in items {
                if m.id > app.chat_after {
                    app.chat_after = m.id;
                    app.chat.push((false, m.body));
                }
            }
        }
        Loaded::Backlog(events) => events.into_iter().for_each(|e| push_activity(app, e)),
    }
    Vec::new()
}

fn tasks(app: &mut App, items: Vec<TaskRow>, next: Option<String>, more: bool) {
    let list = &mut app.tasks;
    if more {
        // Keyset pages do not overlap; a row already listed (a race with a
        // refetched first page) is skipped.
        let listed: std::collections::HashSet<&str> = list.items.iter().map(|t| &*t.id).collect();
        let fresh: Vec<TaskRow> = items.into_iter().filter(|t| !listed.contains(&*t.id)).collect();
        list.items.extend(fresh);
        if next.is_none() {
            // The whole list is here: drop the growth room (up to half the rows).
            list.items.shrink_to_fit();
        }
        app.tasks_next = next;
    } else if !list.loaded {
        list.set(items);
        app.tasks_next = next;
    } else {
        // A refetched first page: new tasks go on top, known ones are replaced.
        let mut fresh = Vec::new();
        for t in items {
            match list.items.iter_mut().find(|x| x.id == t.id) {
                Some(x) => *x = t,
                None => fresh.push(t),
            }
        }
        if list.selected > 0 {
            list.selected += fresh.len();
        }
        fresh.append(&mut list.items);
        list.items = fresh;
    }
    app.tasks.loaded = true;
    app.tasks.error = None;
}

/// A fetch failed: the view says why; what it showed stays.
pub fn failed(app: &mut App, resource: Option<Resource>, error: String) {
    let slot = match resource {
        Some(Resource::Tasks) => &mut app.tasks.error,
        Some(Resource::Approvals) => &mut app.approvals.error,
        Some(Resource::Objectives) => &mut app.objectives.error,
        Some(Resource::Pairings) => &mut app.pairings.error,
        Some(Resource::Contexts) => &mut app.contexts.error,
        Some(Resource::Audit) => &mut app.audit.error,
        Some(Resource::Usage) => &mut app.usage.error,
        _ => {
            app.status = Some((error, true));
            return;
        }
    };
    *slot = Some(error);
}

/// Appends an event to the feed (or holds it while the feed is frozen).
pub fn push_activity(app: &mut App, event: Event) {
    let q = if app.frozen { &mut app.held } else { &mut app.activity };
    if q.back().is_some_and(|last| last.id >= event.id) {
        return; // a replay after a resume: never shown twice
    }
    q.push_back(event);
    while q.len() > ACTIVITY_CAP {
        q.pop_front();
    }
}

fn stale(app: &mut App, resource: Resource) {
    if !app.stale.contains(&resource) {
        app.stale.push(resource);
    }
}

fn patch_task(app: &mut App, id: &str, status: &str) {
    if let Some(t) = app.tasks.items.iter_mut().find(|t| &*t.id == id) {
        t.status = super::model::intern(status.to_string());
    }
}

/// One event from the stream.
pub fn event(app: &mut App, e: Event) -> Vec<Cmd> {
    let kind = e.kind.clone();
    let data = e.data.clone();
    push_activity(app, e);
    let family = kind.split('.').next().unwrap_or_default();
    match family {
        "task" => {
            let id = data["task_id"].as_str().unwrap_or_default();
            if let Some(status) = data["status"].as_str() {
                patch_task(app, id, status);
            }
            if kind == "task.created" {
                stale(app, Resource::Tasks);
            }
            if matches!(kind.as_str(), "task.succeeded" | "task.failed" | "task.canceled") {
                if let Some(last) = app.throughput.back_mut() {
                    *last += 1;
                }
                stale(app, Resource::Usage);
            }
            if app.task_detail.as_ref().is_some_and(|t| t.id == id) {
                app.detail_stale = true;
            }
            stale(app, Resource::Gauges);
        }
        "approval" => {
            stale(app, Resource::Approvals);
            stale(app, Resource::Gauges);
        }
        "objective" => stale(app, Resource::Objectives),
        "pairing" => {
            stale(app, Resource::Pairings);
            stale(app, Resource::Gauges);
        }
        "health" => stale(app, Resource::Heartbeat),
        // `agent.paused` / `agent.resumed`: the switch is in the usage report.
        "agent" => stale(app, Resource::Usage),
        "message" => {
            if data["connector"] == "codex" && data["external_id"] == CHAT_ID {
                stale(app, Resource::ChatMessages);
            }
            stale(app, Resource::Gauges);
        }
        _ => {}
    }
    Vec::new()
}

/// The event stream connected, dropped or is retrying.
pub fn link(app: &mut App, link: Link) -> Vec<Cmd> {
    let was_down = matches!(app.link, Link::Down { .. });
    app.link = link;
    if was_down && app.link == Link::Live {
        // Events missed while away are replayed by the resume, but the lists
        // were patched only from events: fetch what is shown again.
        for r in [Resource::Heartbeat, Resource::Gauges, Resource::Tasks, Resource::Approvals, Resource::Objectives, Resource::Pairings] {
            stale(app, r);
        }
        app.status = Some(("reconnected; resumed the event stream where it stopped".into(), false));
    }
    Vec::new()
}

/// The clock: rolls the throughput minute and refetches stale data on screen.
pub fn tick(app: &mut App, now: i64) -> Vec<Cmd> {
    app.now_ms = now;
    // Parsing pages leaves freed heap behind; give it back once quiet.
    if app.trim_after.is_some_and(|t| now >= t) {
        app.trim_after = None;
        crate::memory::trim();
    }
    let minute = now / 60_000;
    while app.throughput_minute < minute {
        app.throughput_minute += 1;
        app.throughput.push_back(0);
        if app.throughput.len() > 60 {
            app.throughput.pop_front();
        }
    }
    if app.link != Link::Live {
        return Vec::new();
    }
    let mut cmds = Vec::new();
    let shown: Vec<Resource> = app.view.resources().to_vec();
    for r in shown {
        let last = app.last_fetch.iter().find(|(x, _)| *x == r).map_or(0, |(_, t)| *t);
        if app.stale.contains(&r) && now - last >= REFETCH_MS {
            app.stale.retain(|x| *x != r);
            app.last_fetch.retain(|(x, _)| *x != r);
            app.last_fetch.push((r, now));
            let cmd = Cmd::Load(r);
            if app.refusal(&cmd).is_none() {
                cmds.push(cmd);
            }
        }
    }
    if app.detail_stale
        && app.view == View::Tasks
        && let Some(t) = &app.task_detail
    {
        app.detail_stale = false;
        cmds.push(Cmd::TaskDetail(t.id.clone()));
    }
    cmds
}
