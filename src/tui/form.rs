//! The objective form: create or edit an objective, with the schedule
//! checked as it is typed — the same parser the daemon uses, in the same
//! time zone — and its next five fire times shown before saving. The
//! daemon validates again on save; its error keeps the form open.

use super::app::{Cmd, Mode};
use super::input::{Edit, LineInput};
use super::model::{Context, Objective};
use crate::domain::{Glob, Schedule};
use serde_json::{Value, json};

/// A field of the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Its title.
    Title,
    /// What each run asks.
    Prompt,
    /// The chat it reports to (a choice).
    Context,
    /// `schedule`, `event` or `once` (a choice).
    Trigger,
    /// Cron, descriptor or `@every` (schedule).
    Cron,
    /// IANA zone (schedule).
    Timezone,
    /// Workspace-relative glob (event).
    Filter,
    /// RFC 3339 (once).
    RunAt,
    /// `latest`, `all`, `none` (a choice; schedule).
    CatchUp,
}

const TRIGGERS: [&str; 3] = ["schedule", "event", "once"];
const CATCH_UPS: [&str; 3] = ["latest", "all", "none"];

impl Field {
    /// Its label.
    pub fn label(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Prompt => "prompt",
            Field::Context => "chat",
            Field::Trigger => "trigger",
            Field::Cron => "schedule",
            Field::Timezone => "time zone",
            Field::Filter => "path glob",
            Field::RunAt => "run at",
            Field::CatchUp => "catch-up",
        }
    }

    /// Chosen with ←/→ rather than typed.
    pub fn is_choice(self) -> bool {
        matches!(self, Field::Context | Field::Trigger | Field::CatchUp)
    }
}

/// The form's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    /// The objective being edited (`None`: a new one).
    pub editing: Option<String>,
    /// Text fields.
    pub title: LineInput,
    /// Text fields.
    pub prompt: LineInput,
    /// Text fields.
    pub cron: LineInput,
    /// Text fields.
    pub timezone: LineInput,
    /// Text fields.
    pub filter: LineInput,
    /// Text fields.
    pub run_at: LineInput,
    /// The chats to choose from (id, label) and the chosen one.
    pub contexts: Vec<(String, String)>,
    /// Index into `contexts`.
    pub context: usize,
    /// Index into the triggers.
    pub trigger: usize,
    /// Index into the catch-up policies.
    pub catch_up: usize,
    /// The focused field.
    pub focus: Field,
    /// A save is in flight.
    pub saving: bool,
    /// The daemon's refusal of the last save.
    pub error: Option<String>,
}

/// The chats to choose from: (id, label).
pub fn choices(contexts: &[Context]) -> Vec<(String, String)> {
    contexts
        .iter()
        .map(|c| (c.id.clone(), format!("{}:{} {}", c.connector, c.external_id, c.display_name.clone().unwrap_or_default())))
        .collect()
}

impl Form {
    /// A new objective, reporting to `preferred` (the first chat otherwise).
    pub fn create(contexts: &[Context]) -> Self {
        let contexts = choices(contexts);
        Self {
            editing: None,
            title: LineInput::new("", 200),
            prompt: LineInput::new("", 4_000),
            cron: LineInput::new("0 9 * * 1-5", 100),
            timezone: LineInput::new("UTC", 64),
            filter: LineInput::new("", 200),
            run_at: LineInput::new("", 40),
            contexts,
            context: 0,
            trigger: 0,
            catch_up: 0,
            focus: Field::Title,
            saving: false,
            error: None,
        }
    }

    /// The form for an existing objective.
    pub fn edit(o: &Objective, contexts: &[Context]) -> Self {
        let mut f = Self::create(contexts);
        f.editing = Some(o.id.clone());
        f.title = LineInput::new(&o.title, 200);
        f.prompt = LineInput::new(&o.prompt, 4_000);
        f.cron = LineInput::new(&o.cron_expr, 100);
        f.timezone = LineInput::new(&o.timezone, 64);
        f.filter = LineInput::new(o.event_filter.as_deref().unwrap_or(""), 200);
        f.trigger = TRIGGERS.iter().position(|t| *t == o.trigger_type).unwrap_or(0);
        f.catch_up = CATCH_UPS.iter().position(|c| *c == o.catch_up).unwrap_or(0);
        f.context = f.contexts.iter().position(|(id, _)| *id == o.context_id).unwrap_or(0);
        f
    }

    /// The trigger chosen.
    pub fn trigger(&self) -> &'static str {
        TRIGGERS[self.trigger % TRIGGERS.len()]
    }

    /// The fields shown for the chosen trigger, in order.
    pub fn fields(&self) -> Vec<Field> {
        let mut v = vec![Field::Title, Field::Prompt];
        // The chat is fixed once the objective exists (the API does not move it).
        if self.editing.is_none() {
            v.push(Field::Context);
        }
        v.push(Field::Trigger);
        match self.trigger() {
            "schedule" => v.extend([Field::Cron, Field::Timezone, Field::CatchUp]),
            "event" => v.push(Field::Filter),
            _ => v.extend([Field::RunAt, Field::Timezone]),
        }
        v
    }

    /// The text input of `field`, if it is typed.
    pub fn input(&self, field: Field) -> Option<&LineInput> {
        Some(match field {
            Field::Title => &self.title,
            Field::Prompt => &self.prompt,
            Field::Cron => &self.cron,
            Field::Timezone => &self.timezone,
            Field::Filter => &self.filter,
            Field::RunAt => &self.run_at,
            Field::Context | Field::Trigger | Field::CatchUp => return None,
        })
    }

    fn input_mut(&mut self, field: Field) -> Option<&mut LineInput> {
        Some(match field {
            Field::Title => &mut self.title,
            Field::Prompt => &mut self.prompt,
            Field::Cron => &mut self.cron,
            Field::Timezone => &mut self.timezone,
            Field::Filter => &mut self.filter,
            Field::RunAt => &mut self.run_at,
            Field::Context | Field::Trigger | Field::CatchUp => return None,
        })
    }

    /// What a choice field shows.
    pub fn choice(&self, field: Field) -> String {
        match field {
            Field::Context => {
                self.contexts.get(self.context).map_or_else(|| "(no chat yet: message the bot first)".into(), |(_, l)| l.clone())
            }
            Field::Trigger => self.trigger().into(),
            Field::CatchUp => CATCH_UPS[self.catch_up % CATCH_UPS.len()].into(),
            _ => String::new(),
        }
    }

    /// Moves the focus by `step` fields (wrapping).
    pub fn move_focus(&mut self, step: isize) {
        let fields = self.fields();
        let i = fields.iter().position(|f| *f == self.focus).unwrap_or(0);
        let n = isize::try_from(fields.len()).unwrap_or(1);
        let next = (isize::try_from(i).unwrap_or(0) + step).rem_euclid(n);
        self.focus = fields[usize::try_from(next).unwrap_or(0)];
    }

    /// An edit: typed into a text field, or ←/→ on a choice.
    pub fn apply(&mut self, edit: Edit) {
        self.error = None;
        let focus = self.focus;
        if let Some(input) = self.input_mut(focus) {
            input.apply(edit);
            return;
        }
        let step: isize = match edit {
            Edit::Left => -1,
            Edit::Right | Edit::Char(' ') => 1,
            _ => return,
        };
        let cycle = |i: &mut usize, n: usize| {
            if n > 0 {
                *i = usize::try_from((isize::try_from(*i).unwrap_or(0) + step).rem_euclid(isize::try_from(n).unwrap_or(1))).unwrap_or(0);
            }
        };
        match focus {
            Field::Context => cycle(&mut self.context, self.contexts.len()),
            Field::Trigger => cycle(&mut self.trigger, TRIGGERS.len()),
            _ => cycle(&mut self.catch_up, CATCH_UPS.len()),
        }
    }

    /// The live check: the next five fire times, or what is wrong.
    pub fn check(&self, now_ms: i64) -> Result<String, String> {
        if self.title.text().trim().is_empty() {
            return Err("title is required".into());
        }
        if self.prompt.text().trim().is_empty() {
            return Err("prompt is required".into());
        }
        match self.trigger() {
            "schedule" => {
                let s = Schedule::parse(self.cron.text(), self.timezone.text().trim())?;
                let next = s.upcoming(now_ms, 5);
                let tz = self.timezone.text().trim();
                Ok(format!("next ({tz}): {}", next.iter().map(|t| local(*t, tz)).collect::<Vec<_>>().join(", ")))
            }
            "event" => match self.filter.text().trim() {
                "" => Ok("fires when any markdown file of the workspace changes".into()),
                g => Glob::parse(g).map(|_| format!("fires when a markdown file matching {g} changes")),
            },
            _ => {
                let at = chrono::DateTime::parse_from_rfc3339(self.run_at.text().trim())
                    .map_err(|e| format!("run at: an RFC 3339 time like 2026-12-24T18:00:00+01:00 ({e})"))?;
                if at.timestamp_millis() <= now_ms {
                    return Err("run at is in the past".into());
                }
                Ok(format!("runs once at {at}"))
            }
        }
    }

    /// The API call that saves it.
    pub fn save(&self) -> Cmd {
        let mut body = json!({"title": self.title.text().trim(), "prompt": self.prompt.text().trim(), "trigger_type": self.trigger()});
        let fields: Vec<(&str, Value)> = match self.trigger() {
            "schedule" => vec![
                ("cron_expr", json!(self.cron.text().trim())),
                ("timezone", json!(self.timezone.text().trim())),
                ("catch_up", json!(CATCH_UPS[self.catch_up % CATCH_UPS.len()])),
            ],
            "event" => {
                let f = self.filter.text().trim();
                vec![("event_key", json!("markdown.updated")), ("event_filter", if f.is_empty() { Value::Null } else { json!(f) })]
            }
            _ => vec![("run_at", json!(self.run_at.text().trim())), ("timezone", json!(self.timezone.text().trim()))],
        };
        if let Some(m) = body.as_object_mut() {
            m.extend(fields.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.to_string(), v)));
            match &self.editing {
                Some(id) => {
                    m.insert("id".into(), json!(id));
                }
                None => {
                    m.insert("context_id".into(), json!(self.contexts.get(self.context).map(|(id, _)| id.as_str()).unwrap_or_default()));
                }
            }
        }
        Cmd::SaveObjective { update: self.editing.is_some(), body }
    }
}

/// `MM-DD HH:MM` of a unix-ms time in `tz` (UTC if unknown).
fn local(ms: i64, tz: &str) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else { return "-".into() };
    match tz.parse::<chrono_tz::Tz>() {
        Ok(z) => t.with_timezone(&z).format("%a %m-%d %H:%M").to_string(),
        Err(_) => t.format("%a %m-%d %H:%M").to_string(),
    }
}

/// The form, if it is open.
pub fn open(mode: &Mode) -> Option<&Form> {
    match mode {
        Mode::Form(f) => Some(f),
        _ => None,
    }
}

/// Draws the form over the view.
pub fn draw(f: &mut ratatui::Frame, area: ratatui::layout::Rect, form: &Form, now_ms: i64, theme: super::render::Theme) {
    use ratatui::text::{Line, Span};
    use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
    let fields = form.fields();
    let rect = super::render::centered(area, 78, u16::try_from(fields.len() + 7).unwrap_or(20));
    let inner_w = usize::from(rect.width.saturating_sub(15));
    let mut lines = Vec::new();
    let mut cursor = None;
    for (row, field) in fields.iter().enumerate() {
        let focused = *field == form.focus;
        let label = Span::styled(format!("{}{:<11} ", if focused { '›' } else { ' ' }, field.label()), theme.dim());
        let value = match form.input(*field) {
            Some(input) => {
                let skip = input.cursor().saturating_sub(inner_w.saturating_sub(1));
                if focused {
                    cursor = Some((u16::try_from(input.cursor() - skip).unwrap_or(0), u16::try_from(row).unwrap_or(0)));
                }
                input.text().chars().skip(skip).take(inner_w).collect::<String>()
            }
            None if focused => format!("‹ {} ›", form.choice(*field)),
            None => form.choice(*field),
        };
        let style = if focused { theme.selected() } else { ratatui::style::Style::default() };
        lines.push(Line::from(vec![label, Span::styled(value, style)]));
    }
    lines.push(Line::raw(""));
    let check = match (&form.error, form.check(now_ms)) {
        (Some(e), _) => Line::styled(format!("✗ {e}"), theme.state("failed")),
        (None, Ok(text)) => Line::styled(format!("✓ {text}"), theme.state("healthy")),
        (None, Err(e)) => Line::styled(format!("✗ {e}"), theme.state("failed")),
    };
    lines.push(check);
    let hint = if form.saving { "saving…" } else { "tab/↑↓ field · ←/→ choose · enter saves · esc cancels" };
    lines.push(Line::styled(hint, theme.dim()));
    let title = if form.editing.is_some() { " Edit objective " } else { " New objective " };
    f.render_widget(Clear, rect);
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(Block::bordered().title(title)), rect);
    if let Some((x, y)) = cursor {
        f.set_cursor_position((rect.x + 14 + x, rect.y + 1 + y));
    }
}
