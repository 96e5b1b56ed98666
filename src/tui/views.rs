//! The views that act on work: approvals, tasks, objectives and pairings
//! (the others are in [`panes`](super::panes)). Each is a list with the
//! selected item's details beside it (wide) or under it (narrow).

use super::act::short_id;
use super::app::{App, Cmd, List, View};
use super::render::{Theme, cut, relative, when};
use super::select;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, HighlightSpacing, Paragraph, Row, Table, TableState, Wrap};

/// Draws the current view into `area`.
pub fn draw(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    match app.view {
        View::Approvals => approvals(f, area, app, theme),
        View::Tasks => tasks(f, area, app, theme),
        View::Objectives => objectives(f, area, app, theme),
        View::Pairings => pairings(f, area, app, theme),
        View::Overview => super::panes::overview(f, area, app, theme),
        View::Workspaces => super::panes::workspaces(f, area, app, theme),
        View::Activity => super::panes::activity(f, area, app, theme),
        View::Chat => super::panes::chat(f, area, app, theme),
        View::Audit => super::panes::audit(f, area, app, theme),
        View::Usage => super::panes::usage(f, area, app, theme),
    }
}

/// Splits `area` into a list of `rows` and a details pane: side by side
/// when wide, else the list on top taking no more than it needs (at most half).
pub fn split(area: Rect, rows: usize) -> (Rect, Rect) {
    if area.width >= 140 {
        let [a, b] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
        (a, b)
    } else {
        let want = u16::try_from(rows + 3).unwrap_or(u16::MAX).max(5).min(area.height / 2);
        let [a, b] = Layout::vertical([Constraint::Length(want), Constraint::Min(3)]).areas(area);
        (a, b)
    }
}

/// The rows of a `len`-row list that a bordered table with a header in
/// `area` shows: the page holding `selected` (pages of the visible height).
pub fn window(len: usize, selected: usize, area: Rect) -> (usize, usize) {
    let height = usize::from(area.height.saturating_sub(3)).max(1);
    let selected = selected.min(len.saturating_sub(1));
    let start = selected - selected % height;
    (start, (start + height).min(len))
}

/// What a list shows when it has no rows: loading, the error, or "none".
pub fn empty_text<T>(list: &List<T>, none: &str) -> String {
    match (&list.error, list.loaded) {
        (Some(e), _) => format!("cannot load: {e}"),
        (None, false) => "loading…".into(),
        (None, true) => none.into(),
    }
}

/// A bordered table with a header and the selected row highlighted.
pub fn table<'a>(
    f: &mut Frame,
    area: Rect,
    title: String,
    (header, widths): (&'a [&'a str], &[Constraint]),
    rows: Vec<Row<'a>>,
    selected: usize,
    theme: Theme,
) {
    let n = rows.len();
    let t = Table::new(rows, widths.to_vec())
        .header(Row::new(header.iter().copied()).style(theme.header()))
        .row_highlight_style(theme.selected())
        // A marker as well as the reversed row: visible without colour and in `--dump`.
        .highlight_symbol("›")
        .highlight_spacing(HighlightSpacing::Always)
        .block(Block::bordered().title(title));
    let mut state = TableState::default().with_selected((n > 0).then_some(selected.min(n.saturating_sub(1))));
    f.render_stateful_widget(t, area, &mut state);
}

/// A paragraph in `area`, or the reason the list is empty.
pub fn note(f: &mut Frame, area: Rect, title: String, text: String, theme: Theme) {
    f.render_widget(Paragraph::new(Line::styled(text, theme.dim())).block(Block::bordered().title(title)), area);
}

/// `key text` lines for a details pane.
pub fn field<'a>(key: &'a str, value: String, theme: Theme) -> Line<'a> {
    Line::from(vec![Span::styled(format!("{key:<10} "), theme.dim()), Span::raw(value)])
}

/// Why an action is disabled for this certificate, for the details pane.
fn disabled(app: &App, cmd: &Cmd, label: &str) -> Option<String> {
    app.refusal(cmd).map(|why| format!("{label}: {why}"))
}

/// A details pane; with the keys' focus (tab) it is scrolled by them and says so.
fn details(f: &mut Frame, area: Rect, title: String, lines: Vec<Line>, app: &App, theme: Theme) {
    let mut block = Block::bordered().title(title);
    if app.details_focus {
        block = block.border_style(theme.fg(ratatui::style::Color::Cyan)).title_bottom(" ↑↓ scroll · tab: back to the list ");
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((app.details_scroll, 0)).block(block), area);
}

fn approvals(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let shown = select::approvals(app);
    let pending = shown.iter().filter(|a| a.status == "pending").count();
    let title = format!(" Approvals: {pending} pending{} ", filter_note(app));
    if shown.is_empty() {
        return note(f, area, title, empty_text(&app.approvals, "no approvals"), theme);
    }
    let (top, bottom) = split(area, shown.len());
    let rows: Vec<Row> = shown
        .iter()
        .map(|a| {
            let expiry = if a.status == "pending" { relative(app.now_ms, a.expires_at) } else { a.execution_status.clone() };
            Row::new(vec![short_id(&a.id), a.status.clone(), a.action_type.clone(), cut(&a.target, 40), cut(&a.requester, 24), expiry])
                .style(theme.state(&a.status))
        })
        .collect();
    let widths = [
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Length(12),
    ];
    table(f, top, title, (&["ID", "STATUS", "TYPE", "TARGET", "REQUESTER", "EXPIRES"], &widths), rows, app.approvals.selected, theme);
    let Some(a) = select::current_approval(app) else { return };
    let payload = serde_json::from_str::<serde_json::Value>(&a.payload_json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| a.payload_json.clone());
    let mut lines = vec![
        field("summary", a.summary.clone(), theme),
        field("action", format!("{} → {}", a.action_type, a.target), theme),
        field("requester", a.requester.clone(), theme),
        field("hash", a.payload_hash.clone(), theme),
        field("expires", format!("{} ({})", when(a.expires_at), relative(app.now_ms, a.expires_at)), theme),
    ];
    if let Some(who) = &a.approver {
        lines.push(field("decided", format!("{who}: {}", a.reason.clone().unwrap_or_default()), theme));
    }
    if let Some(why) = disabled(app, &Cmd::Approve(a.id.clone()), "approve/deny disabled") {
        lines.push(Line::styled(why, theme.dim()));
    }
    lines.push(Line::styled("payload (exactly what is hashed and will run):", theme.dim()));
    lines.extend(payload.lines().map(|l| Line::raw(l.to_string())));
    details(f, bottom, format!(" {} ", a.id), lines, app, theme);
}

fn filter_note(app: &App) -> String {
    let f = app.filter(app.view);
    if f.is_empty() { String::new() } else { format!(" · filter \"{f}\"") }
}

fn tasks(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    if let Some(t) = &app.task_detail {
        return task_detail(f, area, app, t, theme);
    }
    let shown = select::tasks(app);
    let more = if app.tasks_next.is_some() { ", more below" } else { "" };
    let title = format!(" Tasks: {} · {} loaded{more}{} ", app.task_status().unwrap_or("all"), app.tasks.items.len(), filter_note(app));
    if shown.is_empty() {
        return note(f, area, title, empty_text(&app.tasks, "no tasks"), theme);
    }
    // Rows are built for the page on screen only: 10,000 listed tasks cost
    // a screenful of cells per frame, not 10,000 rows.
    let (start, end) = window(shown.len(), app.tasks.selected, area);
    let rows: Vec<Row> = shown[start..end]
        .iter()
        .map(|t| {
            Row::new(vec![
                short_id(&t.id),
                t.status.to_string(),
                t.kind.to_string(),
                cut(&t.label, 60),
                format!("{}/{}", t.attempts, t.max_attempts),
                relative(app.now_ms, t.updated_at_unix * 1000),
            ])
            .style(theme.state(&t.status))
        })
        .collect();
    let widths = [
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Fill(1),
        Constraint::Length(5),
        Constraint::Length(10),
    ];
    table(f, area, title, (&["ID", "STATUS", "KIND", "TITLE", "TRY", "UPDATED"], &widths), rows, app.tasks.selected - start, theme);
}

fn task_detail(f: &mut Frame, area: Rect, app: &App, t: &super::model::Task, theme: Theme) {
    let mut lines = vec![
        field("status", format!("{}{}", t.status, if t.cancel_requested { " (cancel requested)" } else { "" }), theme),
        field("kind", format!("{} · attempt {}/{}", t.kind, t.attempts, t.max_attempts), theme),
        field("title", t.title.clone(), theme),
        field("from", format!("{}:{} {}", opt(&t.source_connector), opt(&t.source_external_id), opt(&t.source_user_id)), theme),
        field("created", when(t.created_at_unix * 1000), theme),
        field("result", opt(&t.result_summary), theme),
        field("file", opt(&t.result_path), theme),
    ];
    if let Some(e) = &t.error_message {
        lines.push(Line::styled(format!("error      {e}"), theme.state("failed")));
    }
    lines.push(field("prompt", cut(&t.prompt, 400), theme));
    lines.push(Line::styled("history (live):", theme.dim()));
    for e in &t.events {
        lines.push(Line::raw(format!("  {}  {:<18} #{} {}", when(e.at), e.event, e.attempt, e.detail.clone().unwrap_or_default())));
    }
    lines.push(Line::styled("esc back · tab scrolls this · c cancel · y retry", theme.dim()));
    details(f, area, format!(" Task {} ", t.id), lines, app, theme);
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

fn objectives(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let shown = select::objectives(app);
    let title = format!(" Objectives: {}{} ", shown.len(), filter_note(app));
    if shown.is_empty() {
        return note(
            f,
            area,
            title,
            empty_text(&app.objectives, "no objectives (create one with `agent-runtime objective create` or /monitor)"),
            theme,
        );
    }
    let (top, bottom) = split(area, shown.len());
    let rows: Vec<Row> = shown
        .iter()
        .map(|o| {
            let trigger = match o.trigger_type.as_str() {
                "schedule" => o.cron_expr.clone(),
                "event" => format!("on {}", o.event_filter.clone().unwrap_or_else(|| "*.md".into())),
                other => other.to_string(),
            };
            let next = o.next_run_unix.map_or_else(|| "-".into(), |t| relative(app.now_ms, t * 1000));
            Row::new(vec![
                cut(&o.title, 30),
                o.health_state.clone(),
                cut(&trigger, 18),
                next,
                o.last_outcome.clone().unwrap_or_else(|| "-".into()),
                format!("{}/{}", o.success_count, o.failure_count),
            ])
            .style(theme.state(&o.health_state))
        })
        .collect();
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(11),
        Constraint::Length(18),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(7),
    ];
    table(f, top, title, (&["TITLE", "HEALTH", "TRIGGER", "NEXT", "LAST", "OK/FAIL"], &widths), rows, app.objectives.selected, theme);
    let Some(o) = select::current_objective(app) else { return };
    let mut lines = vec![
        field("id", o.id.clone(), theme),
        field("trigger", format!("{} {} {} (catch-up {})", o.trigger_type, o.cron_expr, o.timezone, o.catch_up), theme),
        field("prompt", cut(&o.prompt, 300), theme),
        field("runs", format!("{} ended: {} ok, {} failed", o.run_count, o.success_count, o.failure_count), theme),
        field("next", o.next_runs_unix.iter().map(|t| when(t * 1000)).collect::<Vec<_>>().join(", "), theme),
    ];
    if let Some(r) = &o.auto_paused_reason {
        lines.push(Line::styled(format!("paused     {r}"), theme.state("failed")));
    }
    if let Some(e) = &o.last_error {
        lines.push(Line::styled(format!("last error {}", cut(e, 300)), theme.state("failed")));
    }
    if let Some(why) = disabled(app, &Cmd::RunObjective(o.id.clone()), "pause/delete/run disabled") {
        lines.push(Line::styled(why, theme.dim()));
    }
    details(f, bottom, format!(" {} ", o.title), lines, app, theme);
}

fn pairings(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let [top, list] = Layout::vertical([Constraint::Length(5), Constraint::Min(3)]).areas(area);
    let mut lines = Vec::new();
    match &app.pairing_found {
        Some((p, _, role)) => {
            let who = format!("{}:{} {}", p.connector, p.connector_user_id, p.display_name.clone().unwrap_or_default());
            lines.push(field("request", format!("{who} · {} · expires {}", p.status, relative(app.now_ms, p.expires_at)), theme));
            lines.push(field("grant", format!("{} (o: next role)", role.as_str()), theme));
            lines.push(Line::styled("a approve · d deny · esc forget", theme.dim()));
        }
        None => lines.push(Line::styled("t: type the token the person was given, to look it up and approve or deny", theme.dim())),
    }
    if let Some(why) = disabled(app, &Cmd::PairingLookup(String::new()), "disabled") {
        lines.push(Line::styled(why, theme.dim()));
    }
    details(f, top, " Pairing by token ".into(), lines, app, theme);
    let shown = select::pairings(app);
    let title = format!(" Requests: {} pending{} ", shown.iter().filter(|p| p.status == "pending").count(), filter_note(app));
    if shown.is_empty() {
        return note(f, list, title, empty_text(&app.pairings, "no pairing requests"), theme);
    }
    let rows: Vec<Row> = shown
        .iter()
        .map(|p| {
            Row::new(vec![
                p.status.clone(),
                p.connector.clone(),
                cut(&p.connector_user_id, 20),
                cut(p.display_name.as_deref().unwrap_or("-"), 20),
                p.token_hint.clone(),
                p.role.clone().or_else(|| (p.status == "pending").then(|| relative(app.now_ms, p.expires_at))).unwrap_or_default(),
            ])
            .style(theme.state(&p.status))
        })
        .collect();
    let widths = [
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(12),
        Constraint::Length(10),
    ];
    table(f, list, title, (&["STATUS", "CHANNEL", "USER", "NAME", "TOKEN", "ROLE/EXP"], &widths), rows, app.pairings.selected, theme);
}
