//! Drawing: the frame (header, view tabs or sidebar, footer), the overlays
//! (help, confirmation, text input) and the helpers the views share. Pure
//! functions of the state; a narrow terminal (under 100 columns) gets a tab
//! line instead of the sidebar, so 80×24 shows everything.

use super::app::{App, Link, Mode, Purpose, View};
use super::keys;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

/// Colours, or none at all under `NO_COLOR`.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    /// Colours allowed.
    pub color: bool,
}

impl Theme {
    /// From the environment (`NO_COLOR` set and not empty: no colour).
    pub fn from_env() -> Self {
        Self { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }

    /// A foreground colour, if colours are allowed.
    pub fn fg(self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }

    /// The selected row: reversed, which needs no colour.
    pub fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    /// Column headers.
    pub fn header(self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    /// Hints and disabled actions.
    pub fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }

    /// The colour of a state word (`healthy`, `failed`, `pending`, …).
    pub fn state(self, s: &str) -> Style {
        let c = match s {
            "healthy" | "succeeded" | "approved" | "live" | "sent" | "allow" => Color::Green,
            "degraded" | "failed" | "denied" | "stale" | "deny" | "auto_paused" | "refused" => Color::Red,
            "pending" | "queued" | "running" | "starting" | "paused" | "expired" | "canceled" => Color::Yellow,
            _ => return Style::default(),
        };
        self.fg(c)
    }
}

/// Draws the whole console.
pub fn draw(f: &mut Frame, app: &App, theme: Theme) {
    let area = f.area();
    let [header, body, footer] = Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)]).areas(area);
    draw_header(f, header, app, theme);
    let main = if area.width >= 100 {
        let [side, main] = Layout::horizontal([Constraint::Length(18), Constraint::Min(1)]).areas(body);
        draw_sidebar(f, side, app, theme);
        main
    } else {
        let [tabs, main] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(body);
        draw_tabs(f, tabs, app, theme);
        main
    };
    super::views::draw(f, main, app, theme);
    draw_footer(f, footer, app, theme);
    match &app.mode {
        Mode::Help => draw_help(f, area, app, theme),
        Mode::Confirm(c) => draw_prompt(f, area, "Confirm", &format!("{}  [y/N]", c.question), theme),
        Mode::Form(form) => super::form::draw(f, area, form, app.now_ms, theme),
        Mode::Input(p, input) if *p != Purpose::Chat => {
            let title = match p {
                Purpose::Filter => "Filter (enter keeps it, esc cancels)",
                Purpose::DenyReason => "Deny: reason, optional (enter denies, esc backs out)",
                _ => "Pairing token (enter looks it up)",
            };
            draw_input(f, area, title, input.text(), input.cursor(), theme);
        }
        _ => {}
    }
}

fn draw_header(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let mut spans = vec![Span::styled(" agent-runtime ", theme.header())];
    if let Some(i) = &app.info {
        spans.push(Span::raw(format!("{} · {} · ", i.version, i.environment)));
        let role = if i.caller.role.is_empty() { String::new() } else { format!(" ({})", i.caller.role) };
        spans.push(Span::raw(format!("{}{role} · ", i.caller.subject)));
    }
    let link = match &app.link {
        Link::Connecting => Span::styled("connecting…", theme.state("pending")),
        Link::Live => Span::styled("● live", theme.state("live")),
        Link::Snapshot => Span::raw(format!("snapshot {} UTC", hms(app.now_ms))),
        Link::Down { error, retry_at } => {
            let secs = ((retry_at - app.now_ms).max(0) + 999) / 1000;
            Span::styled(format!("○ daemon unreachable, retry in {secs}s: {error}"), theme.state("degraded"))
        }
    };
    spans.push(link);
    let line = Line::from(spans);
    let used = u16::try_from(line.width()).unwrap_or(u16::MAX);
    f.render_widget(Paragraph::new(line), area);
    let clock = format!("{} UTC ", hms(app.now_ms));
    let w = u16::try_from(clock.len()).unwrap_or(0);
    if area.width >= used.saturating_add(w + 2) {
        f.render_widget(Paragraph::new(clock), Rect { x: area.x + area.width - w, width: w, ..area });
    }
}

/// A count for the view's name in the sidebar (pending approvals, …).
fn badge(app: &App, v: View) -> Option<usize> {
    let n = match v {
        View::Approvals => app.approvals.items.iter().filter(|a| a.status == "pending").count(),
        View::Pairings => app.pairings.items.iter().filter(|p| p.status == "pending").count(),
        _ => return None,
    };
    (n > 0).then_some(n)
}

fn draw_sidebar(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let lines: Vec<Line> = View::ALL
        .iter()
        .map(|v| {
            let marker = if *v == app.view { '›' } else { ' ' };
            let mut text = format!("{marker}{} {}", v.key(), title(*v));
            if let Some(n) = badge(app, *v) {
                text.push_str(&format!(" ({n})"));
            }
            let style = if *v == app.view { theme.selected() } else { Style::default() };
            Line::styled(text, style)
        })
        .collect();
    f.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::RIGHT)), area);
}

fn draw_tabs(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let mut spans = Vec::new();
    // The current view by its whole name in brackets (visible without colour), the others abbreviated.
    for v in View::ALL {
        let name = title(v);
        let span = if v == app.view {
            Span::styled(format!("[{} {name}]", v.key()), theme.selected())
        } else {
            Span::raw(format!("{}{}", v.key(), name.get(..4).unwrap_or(name)))
        };
        spans.push(span);
        spans.push(Span::raw(" "));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_footer(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let line = match (&app.status, &app.mode) {
        (_, Mode::Input(Purpose::Chat, _)) => Line::styled(" enter sends · esc leaves the input", theme.dim()),
        (Some((text, true)), _) => Line::styled(format!(" ✗ {text}"), theme.state("failed")),
        (Some((text, false)), _) => Line::raw(format!(" {text}")),
        (None, _) => {
            let hints: Vec<String> = keys::view_bindings(app.view).iter().map(|b| format!("{} {}", b.label, b.short)).collect();
            let mut text = hints.join(" · ");
            if !text.is_empty() {
                text.push_str(" · ");
            }
            Line::styled(format!(" {text}/ filter · ? help · q quit"), theme.dim())
        }
    };
    f.render_widget(Paragraph::new(line), area);
}

/// The view's display title.
pub fn title(v: View) -> &'static str {
    match v {
        View::Overview => "Overview",
        View::Approvals => "Approvals",
        View::Tasks => "Tasks",
        View::Objectives => "Objectives",
        View::Pairings => "Pairings",
        View::Workspaces => "Workspaces",
        View::Activity => "Activity",
        View::Chat => "Chat",
        View::Audit => "Audit",
        View::Usage => "Usage",
    }
}

/// A centred rectangle of at most `w`×`h` inside `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

fn draw_help(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let mut lines = vec![Line::styled(format!("{} — keys", title(app.view)), theme.header())];
    let role = app.role();
    for b in keys::view_bindings(app.view) {
        lines.push(Line::raw(format!("  {:<10} {}", b.label, b.help)));
    }
    if role.is_some() && !keys::view_bindings(app.view).is_empty() {
        lines.push(Line::styled("  (the role in parentheses is the least the API accepts)", theme.dim()));
    }
    lines.push(Line::raw(""));
    // The global keys in two columns, so every view's help fits in 24 rows.
    let mut global: Vec<String> = vec![format!("{:<10} {}", "1-9, 0", "switch view")];
    global.extend(keys::GLOBAL.iter().map(|b| format!("{:<10} {}", b.label, b.short)));
    global.push(format!("{:<10} {}", "ctrl+c", "quit"));
    for pair in global.chunks(2) {
        lines.push(Line::raw(format!("  {:<32} {}", pair[0], pair.get(1).map_or("", String::as_str))));
    }
    lines.push(Line::styled("  In a text input every key types; enter submits, esc backs out.", theme.dim()));
    let h = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let rect = centered(area, 72, h);
    f.render_widget(Clear, rect);
    f.render_widget(Paragraph::new(lines).block(Block::bordered().title(" help (esc closes) ")), rect);
}

fn draw_prompt(f: &mut Frame, area: Rect, title: &str, text: &str, theme: Theme) {
    let rect = centered(area, 70, 5);
    f.render_widget(Clear, rect);
    let p = Paragraph::new(text.to_string())
        .wrap(Wrap { trim: true })
        .block(Block::bordered().title(format!(" {title} ")).border_style(theme.fg(Color::Yellow)));
    f.render_widget(p, rect);
}

fn draw_input(f: &mut Frame, area: Rect, title: &str, text: &str, cursor: usize, theme: Theme) {
    let rect = centered(area, 70, 3);
    f.render_widget(Clear, rect);
    let inner_w = usize::from(rect.width.saturating_sub(2));
    // Scroll so the cursor stays visible in a long text.
    let skip = cursor.saturating_sub(inner_w.saturating_sub(1));
    let shown: String = text.chars().skip(skip).take(inner_w).collect();
    f.render_widget(Paragraph::new(shown).block(Block::bordered().title(format!(" {title} ")).border_style(theme.fg(Color::Cyan))), rect);
    let x = rect.x + 1 + u16::try_from(cursor - skip).unwrap_or(0);
    f.set_cursor_position((x.min(rect.x + rect.width.saturating_sub(2)), rect.y + 1));
}

/// `HH:MM:SS` of a unix-ms time (UTC).
pub fn hms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| "--:--:--".into(), |t| t.format("%H:%M:%S").to_string())
}

/// `MM-DD HH:MM` of a unix-ms time (UTC).
pub fn when(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| "-".into(), |t| t.format("%m-%d %H:%M").to_string())
}

/// A duration from now: `in 4m`, `3h ago`.
pub fn relative(now_ms: i64, ms: i64) -> String {
    let d = (ms - now_ms) / 1000;
    let a = d.abs();
    let text = match a {
        0..60 => format!("{a}s"),
        60..3_600 => format!("{}m", a / 60),
        3_600..86_400 => format!("{}h{:02}m", a / 3_600, a % 3_600 / 60),
        _ => format!("{}d", a / 86_400),
    };
    if d >= 0 { format!("in {text}") } else { format!("{text} ago") }
}

/// Cuts `s` to `n` characters, marking the cut with `…`.
pub fn cut(s: &str, n: usize) -> String {
    let one_line = s.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= n {
        return one_line;
    }
    let mut out: String = one_line.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}
