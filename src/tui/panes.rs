//! The views that watch: overview, workspaces, activity, chat, audit and usage.

use super::app::{App, Cmd, Mode, Purpose};
use super::render::{Theme, cut, hms, when};
use super::select;
use super::views::{empty_text, field, note, table};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Sparkline, Wrap};

/// Today (UTC) as the usage API writes days.
fn today(now_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms).map_or_else(String::new, |t| t.format("%Y-%m-%d").to_string())
}

/// Health, queue, approvals, outbox, connectors, today's usage, throughput.
pub fn overview(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let [top, spark] = Layout::vertical([Constraint::Min(6), Constraint::Length(5)]).areas(area);
    let [left, right] = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(top);
    let mut health = Vec::new();
    match &app.heartbeat {
        Some(h) => {
            health.push(Line::from(vec![Span::raw("overall "), Span::styled(h.overall.clone(), theme.state(&h.overall))]));
            for c in &h.components {
                let why = c.error.as_deref().or(c.message.as_deref()).unwrap_or("");
                health.push(Line::from(vec![
                    Span::raw(format!("{:<13}", cut(&c.name, 12))),
                    Span::styled(format!("{:<9}", c.state), theme.state(&c.state)),
                    Span::styled(cut(why, 40), theme.dim()),
                ]));
            }
        }
        None => health.push(Line::styled("loading…", theme.dim())),
    }
    f.render_widget(Paragraph::new(health).block(Block::bordered().title(" Health ")), left);
    let mut work = Vec::new();
    let plain = ratatui::style::Style::default();
    let count = |label: &'static str, text: String, alert: bool, state: &str| {
        Line::from(vec![
            Span::styled(format!("{label:<10} "), theme.dim()),
            Span::styled(text, if alert { theme.state(state) } else { plain }),
        ])
    };
    if let Some(g) = &app.gauges {
        work.push(field("queue", format!("{} due, {} queued, {} running", g.queue_depth, g.tasks("queued"), g.tasks("running")), theme));
        work.push(field(
            "finished",
            format!("{} ok, {} failed, {} canceled", g.tasks("succeeded"), g.tasks("failed"), g.tasks("canceled")),
            theme,
        ));
        work.push(count("approvals", format!("{} pending", g.approvals_pending), g.approvals_pending > 0, "pending"));
        work.push(count("pairings", format!("{} pending", g.pairings_pending), g.pairings_pending > 0, "pending"));
        work.push(count("outbox", format!("{} failed, {} waiting", g.outbox_failed, g.outbox_pending), g.outbox_failed > 0, "failed"));
    } else {
        work.push(Line::styled("loading…", theme.dim()));
    }
    let connectors: Vec<String> = app
        .heartbeat
        .iter()
        .flat_map(|h| &h.components)
        .filter(|c| matches!(c.name.as_str(), "telegram" | "discord" | "email"))
        .map(|c| format!("{} {}", c.name, c.state))
        .collect();
    work.push(field("channels", if connectors.is_empty() { "none enabled".into() } else { connectors.join(", ") }, theme));
    let day = today(app.now_ms);
    let rows: Vec<_> = app.usage.items.iter().filter(|u| u.day == day).collect();
    let (calls, tin, tout) = rows.iter().fold((0, 0, 0), |(a, b, c), u| (a + u.calls, b + u.prompt_tokens, c + u.completion_tokens));
    // `+ 0.0`: an empty f64 sum is -0.0, which prints as "$-0.0000".
    let cost: f64 = rows.iter().filter_map(|u| u.cost_usd).sum::<f64>() + 0.0;
    match &app.usage.error {
        Some(e) => work.push(field("today", cut(e, 60), theme)),
        None => {
            work.push(field("today", format!("{calls} LLM calls, ${cost:.4}"), theme));
            work.push(field("tokens", format!("{tin} in, {tout} out"), theme));
            // The switch, and the day's spend against the global limits.
            for line in app.budget.iter().take(2) {
                if let Some(state) = line.strip_prefix("agent: ") {
                    let style = theme.state(if state.starts_with("PAUSED") { "stale" } else { "healthy" });
                    work.push(Line::from(vec![
                        Span::styled(format!("{:<10} ", "agent"), theme.dim()),
                        Span::styled(state.to_string(), style),
                    ]));
                } else if let Some((_, spend)) = line.split_once("): ") {
                    work.push(field("budget", spend.to_string(), theme));
                }
            }
        }
    }
    f.render_widget(Paragraph::new(work).wrap(Wrap { trim: true }).block(Block::bordered().title(" Work ")), right);
    let data: Vec<u64> = app.throughput.iter().copied().collect();
    let total: u64 = data.iter().sum();
    let last = data.last().copied().unwrap_or(0);
    let title = format!(" Tasks finished per minute, last hour: {total} (this minute {last}) ");
    f.render_widget(
        Sparkline::default().data(&data).style(theme.fg(ratatui::style::Color::Cyan)).block(Block::bordered().title(title)),
        spark,
    );
}

/// Chats by workspace; admin channels marked.
pub fn workspaces(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let shown = select::contexts(app);
    let workspaces = {
        let mut ids: Vec<&str> = shown.iter().map(|c| c.workspace_id.as_str()).collect();
        ids.dedup();
        ids.len()
    };
    let title = format!(" Workspaces: {workspaces} · chats: {} ", shown.len());
    if shown.is_empty() {
        return note(f, area, title, empty_text(&app.contexts, "no chats yet"), theme);
    }
    let rows: Vec<Row> = shown
        .iter()
        .map(|c| {
            Row::new(vec![
                cut(&c.workspace_id, 14),
                c.connector.clone(),
                cut(&c.external_id, 24),
                cut(c.display_name.as_deref().unwrap_or("-"), 24),
                if c.is_admin { "admin".into() } else { String::new() },
                when(c.created_at_unix * 1000),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(14),
        Constraint::Length(9),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(6),
        Constraint::Length(11),
    ];
    let [list, hint] = Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(area);
    table(f, list, title, (&["WORKSPACE", "CHANNEL", "CHAT", "NAME", "ADMIN", "SINCE"], &widths), rows, app.contexts.selected, theme);
    if let Some(why) = select::current_context(app).and_then(|c| app.refusal(&Cmd::SetAdmin { id: c.id.clone(), admin: true })) {
        f.render_widget(Paragraph::new(Line::styled(format!(" A (admin channel) disabled: {why}"), theme.dim())), hint);
    }
}

/// The live event stream, newest at the bottom.
pub fn activity(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let shown = select::activity(app);
    let state =
        if app.frozen { format!("frozen, {} new waiting (space follows)", app.held.len()) } else { "following (space freezes)".into() };
    let filter = app.filter(super::app::View::Activity);
    let filter = if filter.is_empty() { String::new() } else { format!(" · type contains \"{filter}\"") };
    let title = format!(" Activity: {} events · {state}{filter} ", shown.len());
    let height = usize::from(area.height.saturating_sub(2));
    let end = shown.len().saturating_sub(app.activity_scroll);
    let start = end.saturating_sub(height);
    let width = usize::from(area.width.saturating_sub(2));
    let lines: Vec<Line> = shown[start..end]
        .iter()
        .map(|e| {
            let mut data = e.data.clone();
            if let Some(m) = data.as_object_mut() {
                m.retain(|_, v| !v.is_null());
            }
            let head = format!("{:>7} {} ", e.id, hms(e.at));
            let rest = cut(&data.to_string(), width.saturating_sub(head.len() + 24));
            Line::from(vec![
                Span::styled(head, theme.dim()),
                Span::styled(format!("{:<23} ", e.kind), theme.state(kind_state(&e.kind))),
                Span::raw(rest),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), area);
}

fn kind_state(kind: &str) -> &str {
    kind.rsplit('.').next().unwrap_or(kind)
}

/// The console's own chat with the agent.
pub fn chat(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let [log, input] = Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(area);
    let mut lines = Vec::new();
    let width = usize::from(log.width.saturating_sub(8)).max(10);
    for (mine, text) in &app.chat {
        let (who, style) = if *mine { ("you", theme.header()) } else { ("agent", theme.fg(ratatui::style::Color::Cyan)) };
        for (i, l) in wrap(text, width).into_iter().enumerate() {
            let label = if i == 0 { format!("{who:>5} ") } else { "      ".into() };
            lines.push(Line::from(vec![Span::styled(label, style), Span::raw(l)]));
        }
    }
    if lines.is_empty() {
        lines.push(Line::styled("Say something to the agent (enter or i). Replies and task notices arrive here live.", theme.dim()));
    }
    let height = usize::from(log.height.saturating_sub(2));
    let skip = lines.len().saturating_sub(height);
    let shown: Vec<Line> = lines.into_iter().skip(skip).collect();
    f.render_widget(Paragraph::new(shown).block(Block::bordered().title(" Chat (codex:tui) ")), log);
    let (text, cursor, focused) = match &app.mode {
        Mode::Input(Purpose::Chat, i) => (i.text().to_string(), i.cursor(), true),
        _ => (String::new(), 0, false),
    };
    let refusal = app.refusal(&Cmd::Chat(String::new()));
    let placeholder = match (&refusal, focused) {
        (Some(why), _) => format!("chat disabled: {why}"),
        (None, false) => "press enter to write".into(),
        (None, true) => String::new(),
    };
    let inner = usize::from(input.width.saturating_sub(2));
    let skip = cursor.saturating_sub(inner.saturating_sub(1));
    let body =
        if text.is_empty() { Line::styled(placeholder, theme.dim()) } else { Line::raw(text.chars().skip(skip).collect::<String>()) };
    f.render_widget(Paragraph::new(body).block(Block::bordered().title(" message ")), input);
    if focused {
        let x = input.x + 1 + u16::try_from(cursor - skip).unwrap_or(0);
        f.set_cursor_position((x, input.y + 1));
    }
}

/// The audit log, newest first.
pub fn audit(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let shown = select::audit(app);
    let title = format!(" Audit: {} rows ", shown.len());
    if shown.is_empty() {
        return note(f, area, title, empty_text(&app.audit, "no audit rows"), theme);
    }
    let rows: Vec<Row> = shown
        .iter()
        .map(|r| {
            Row::new(vec![
                when(r.at),
                cut(&r.actor, 22),
                r.event.clone(),
                r.decision.clone(),
                cut(&format!("{} {}", r.reason.clone().unwrap_or_default(), r.subject.clone().unwrap_or_default()), 80),
            ])
            .style(theme.state(&r.decision))
        })
        .collect();
    let widths = [Constraint::Length(11), Constraint::Length(22), Constraint::Length(24), Constraint::Length(6), Constraint::Fill(1)];
    table(f, area, title, (&["AT", "ACTOR", "EVENT", "DEC", "REASON / SUBJECT"], &widths), rows, app.audit.selected, theme);
}

/// LLM usage per day and model.
pub fn usage(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let items = &app.usage.items;
    let calls: i64 = items.iter().map(|u| u.calls).sum();
    let cost: f64 = items.iter().filter_map(|u| u.cost_usd).sum::<f64>() + 0.0;
    let paused = app.budget.first().is_some_and(|l| l.starts_with("agent: PAUSED"));
    let title = format!(" Usage, last 30 days: {calls} calls · ${cost:.4}{} ", if paused { " · agent PAUSED" } else { "" });
    if items.is_empty() {
        return note(f, area, title, empty_text(&app.usage, "no LLM calls in the last 30 days"), theme);
    }
    let rows: Vec<Row> = items
        .iter()
        .map(|u| {
            Row::new(vec![
                u.day.clone(),
                cut(&format!("{}/{}", u.provider, u.model), 36),
                u.calls.to_string(),
                u.errors.to_string(),
                u.prompt_tokens.to_string(),
                u.completion_tokens.to_string(),
                u.cost_usd.map_or_else(|| "-".into(), |c| format!("${c:.4}")),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(10),
        Constraint::Fill(1),
        Constraint::Length(6),
        Constraint::Length(4),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    table(f, area, title, (&["DAY", "MODEL", "CALLS", "ERR", "IN", "OUT", "COST"], &widths), rows, app.usage.selected, theme);
}

/// `text` broken into lines of at most `width` characters (at spaces where
/// possible), so the chat scrolls by what is on screen.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest: Vec<char> = line.chars().collect();
        while rest.len() > width {
            let cut =
                if rest[width] == ' ' { width } else { rest[..width].iter().rposition(|c| *c == ' ').filter(|i| *i > 0).unwrap_or(width) };
            out.push(rest[..cut].iter().collect::<String>().trim_end().to_string());
            rest = rest[cut..].iter().copied().skip_while(|c| *c == ' ').collect();
        }
        out.push(rest.into_iter().collect());
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}
