//! Which rows a view shows (its text filter applied) and which one is
//! selected: the selection indexes the visible rows, so a filter never
//! leaves the cursor on a hidden row.

use super::app::{App, View};
use super::model::{Approval, AuditRow, Context, Event, Objective, Pairing, TaskRow};

/// A case-insensitive test of a row's fields against `filter`, lowercased once per list.
fn matcher(filter: &str) -> impl Fn(&[&str]) -> bool {
    let f = filter.to_lowercase();
    move |fields| f.is_empty() || fields.iter().any(|x| x.to_lowercase().contains(&f))
}

/// The tasks shown.
pub fn tasks(app: &App) -> Vec<&TaskRow> {
    let matches = matcher(app.filter(View::Tasks));
    app.tasks.items.iter().filter(|t| matches(&[&t.id, &t.label, &t.kind, &t.status, &t.who])).collect()
}

/// The approvals shown.
pub fn approvals(app: &App) -> Vec<&Approval> {
    let matches = matcher(app.filter(View::Approvals));
    app.approvals.items.iter().filter(|a| matches(&[&a.id, &a.action_type, &a.target, &a.summary, &a.requester])).collect()
}

/// The objectives shown.
pub fn objectives(app: &App) -> Vec<&Objective> {
    let matches = matcher(app.filter(View::Objectives));
    app.objectives.items.iter().filter(|o| matches(&[&o.id, &o.title, &o.cron_expr, &o.trigger_type, &o.health_state])).collect()
}

/// The pairing requests shown.
pub fn pairings(app: &App) -> Vec<&Pairing> {
    let matches = matcher(app.filter(View::Pairings));
    app.pairings
        .items
        .iter()
        .filter(|p| matches(&[&p.connector, &p.connector_user_id, p.display_name.as_deref().unwrap_or(""), &p.status]))
        .collect()
}

/// The contexts shown.
pub fn contexts(app: &App) -> Vec<&Context> {
    let matches = matcher(app.filter(View::Workspaces));
    app.contexts
        .items
        .iter()
        .filter(|c| matches(&[&c.workspace_id, &c.connector, &c.external_id, c.display_name.as_deref().unwrap_or("")]))
        .collect()
}

/// The audit rows shown.
pub fn audit(app: &App) -> Vec<&AuditRow> {
    let matches = matcher(app.filter(View::Audit));
    app.audit
        .items
        .iter()
        .filter(|r| matches(&[&r.actor, &r.event, &r.decision, r.reason.as_deref().unwrap_or(""), r.subject.as_deref().unwrap_or("")]))
        .collect()
}

/// The activity rows shown (oldest first), filtered by event type.
pub fn activity(app: &App) -> Vec<&Event> {
    let matches = matcher(app.filter(View::Activity));
    app.activity.iter().filter(|e| matches(&[&e.kind])).collect()
}

/// How many rows the current view shows.
pub fn visible_len(app: &App) -> usize {
    match app.view {
        View::Tasks => tasks(app).len(),
        View::Approvals => approvals(app).len(),
        View::Objectives => objectives(app).len(),
        View::Pairings => pairings(app).len(),
        View::Workspaces => contexts(app).len(),
        View::Audit => audit(app).len(),
        View::Activity => activity(app).len(),
        View::Usage => app.usage.items.len(),
        View::Overview | View::Chat => 0,
    }
}

/// The current view's selection, if it has a list.
pub fn selection(app: &mut App) -> Option<&mut usize> {
    Some(match app.view {
        View::Tasks => &mut app.tasks.selected,
        View::Approvals => &mut app.approvals.selected,
        View::Objectives => &mut app.objectives.selected,
        View::Pairings => &mut app.pairings.selected,
        View::Workspaces => &mut app.contexts.selected,
        View::Audit => &mut app.audit.selected,
        View::Usage => &mut app.usage.selected,
        View::Overview | View::Activity | View::Chat => return None,
    })
}

/// The selected task.
pub fn current_task(app: &App) -> Option<&TaskRow> {
    tasks(app).get(app.tasks.selected).copied()
}

/// The selected approval.
pub fn current_approval(app: &App) -> Option<&Approval> {
    approvals(app).get(app.approvals.selected).copied()
}

/// The selected objective.
pub fn current_objective(app: &App) -> Option<&Objective> {
    objectives(app).get(app.objectives.selected).copied()
}

/// The selected context.
pub fn current_context(app: &App) -> Option<&Context> {
    contexts(app).get(app.contexts.selected).copied()
}
