//! Keys: one table per view and one global table, read both by the key
//! handler and by the help overlay (`?`), so the help can never list a key
//! that does something else. While a text input has focus every printable
//! key goes into it; only Enter, Esc and editing keys act.

use super::app::{Act, App, Mode, Msg, View};
use super::input::Edit;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// A binding: the keys, how the help writes them, what they do, and the help text.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The keys that trigger it.
    pub keys: &'static [KeyCode],
    /// How the help shows the keys.
    pub label: &'static str,
    /// One word for the footer.
    pub short: &'static str,
    /// The action.
    pub act: Act,
    /// What it does.
    pub help: &'static str,
}

const fn b(keys: &'static [KeyCode], label: &'static str, act: Act, short: &'static str, help: &'static str) -> Binding {
    Binding { keys, label, short, act, help }
}

/// Keys every view understands (after its own).
pub const GLOBAL: &[Binding] = &[
    b(&[KeyCode::Char('q')], "q", Act::Quit, "quit", "quit"),
    b(&[KeyCode::Char('?')], "?", Act::Help, "help for this view", "help for this view"),
    b(&[KeyCode::Tab, KeyCode::BackTab], "tab", Act::Focus, "list/details", "focus the details pane (arrows scroll it) or the list"),
    b(&[KeyCode::Char(']')], "]", Act::NextView, "next view", "next view"),
    b(&[KeyCode::Char('[')], "[", Act::PrevView, "previous view", "previous view"),
    b(&[KeyCode::Up, KeyCode::Char('k')], "↑/k", Act::Up, "up", "up"),
    b(&[KeyCode::Down, KeyCode::Char('j')], "↓/j", Act::Down, "down", "down"),
    b(&[KeyCode::PageUp, KeyCode::Char('K')], "pgup/K", Act::PageUp, "ten up", "ten up"),
    b(&[KeyCode::PageDown, KeyCode::Char('J')], "pgdn/J", Act::PageDown, "ten down", "ten down"),
    b(&[KeyCode::Home, KeyCode::Char('g')], "home/g", Act::Top, "first row", "first"),
    b(&[KeyCode::End, KeyCode::Char('G')], "end/G", Act::Bottom, "last row", "last"),
    b(&[KeyCode::Char('/')], "/", Act::Filter, "filter", "filter this list"),
    b(&[KeyCode::Esc], "esc", Act::Back, "back, clear filter", "back: close details, clear the filter"),
    b(&[KeyCode::Char('r')], "r", Act::Refresh, "fetch again", "fetch this view again"),
];

const APPROVALS_KEYS: &[Binding] = &[
    b(&[KeyCode::Char('a')], "a", Act::Approve, "approve", "approve the selected action (asks first; admin)"),
    b(&[KeyCode::Char('d')], "d", Act::Deny, "deny", "deny it, with an optional reason (admin)"),
];
const TASKS_KEYS: &[Binding] = &[
    b(&[KeyCode::Enter], "enter", Act::Open, "details", "details and history, followed live"),
    b(&[KeyCode::Char('s')], "s", Act::CycleStatus, "status", "status filter: all, queued, running, succeeded, failed, canceled"),
    b(&[KeyCode::Char('c')], "c", Act::Cancel, "cancel", "cancel the selected task (operator)"),
    b(&[KeyCode::Char('y')], "y", Act::Retry, "retry", "retry a failed or canceled task (operator)"),
];
const OBJECTIVES_KEYS: &[Binding] = &[
    b(&[KeyCode::Char('p')], "p", Act::TogglePause, "pause/resume", "pause or resume (operator)"),
    b(&[KeyCode::Char('x')], "x", Act::Delete, "delete", "delete, with its runs (asks first; operator)"),
    b(&[KeyCode::Char('n')], "n", Act::RunNow, "run now", "run now (operator)"),
    b(&[KeyCode::Char('c')], "c", Act::Create, "create", "create an objective: a form, the schedule checked as you type (operator)"),
    b(&[KeyCode::Char('e')], "e", Act::Edit, "edit", "edit the selected objective (operator)"),
];
const PAIRINGS_KEYS: &[Binding] = &[
    b(&[KeyCode::Char('t')], "t", Act::Input, "token", "type the token the person was given"),
    b(&[KeyCode::Char('o')], "o", Act::RoleNext, "role", "next role to grant"),
    b(&[KeyCode::Char('a')], "a", Act::Approve, "approve", "approve the looked-up request (admin)"),
    b(&[KeyCode::Char('d')], "d", Act::Deny, "deny", "deny it (admin)"),
];
const WORKSPACES_KEYS: &[Binding] =
    &[b(&[KeyCode::Char('A')], "A", Act::ToggleAdmin, "admin flag", "make the chat an admin channel, or stop (admin)")];
const ACTIVITY_KEYS: &[Binding] = &[b(&[KeyCode::Char(' ')], "space", Act::Freeze, "freeze", "freeze or follow the feed")];
const CHAT_KEYS: &[Binding] = &[b(&[KeyCode::Enter, KeyCode::Char('i')], "enter/i", Act::Input, "write", "write to the agent (admin)")];

/// The keys of `view` (before the global ones).
pub fn view_bindings(view: View) -> &'static [Binding] {
    match view {
        View::Overview | View::Audit | View::Usage => &[],
        View::Approvals => APPROVALS_KEYS,
        View::Tasks => TASKS_KEYS,
        View::Objectives => OBJECTIVES_KEYS,
        View::Pairings => PAIRINGS_KEYS,
        View::Workspaces => WORKSPACES_KEYS,
        View::Activity => ACTIVITY_KEYS,
        View::Chat => CHAT_KEYS,
    }
}

/// What a key means in the current state (`None`: nothing).
pub fn map(app: &App, key: KeyEvent) -> Option<Msg> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return Some(Msg::Act(Act::Quit));
    }
    match &app.mode {
        Mode::Input(..) => input(key, ctrl),
        Mode::Form(_) => match key.code {
            KeyCode::Tab | KeyCode::Down => Some(Msg::Act(Act::NextField)),
            KeyCode::BackTab | KeyCode::Up => Some(Msg::Act(Act::PrevField)),
            _ => input(key, ctrl),
        },
        Mode::Confirm(_) => match key.code {
            KeyCode::Char('y' | 'Y') => Some(Msg::Act(Act::Yes)),
            KeyCode::Char('n' | 'N') | KeyCode::Esc | KeyCode::Enter => Some(Msg::Act(Act::No)),
            _ => None,
        },
        Mode::Help => matches!(key.code, KeyCode::Esc | KeyCode::Char('?' | 'q') | KeyCode::Enter).then_some(Msg::Act(Act::Back)),
        Mode::Normal => normal(app.view, key.code),
    }
}

fn normal(view: View, code: KeyCode) -> Option<Msg> {
    if let KeyCode::Char(c) = code
        && let Some(v) = View::ALL.into_iter().find(|v| v.key() == c)
    {
        return Some(Msg::Act(Act::Go(v)));
    }
    view_bindings(view).iter().chain(GLOBAL).find(|b| b.keys.contains(&code)).map(|b| Msg::Act(b.act))
}

fn input(key: KeyEvent, ctrl: bool) -> Option<Msg> {
    let edit = match key.code {
        KeyCode::Enter => return Some(Msg::Submit),
        KeyCode::Esc => return Some(Msg::Act(Act::Back)),
        KeyCode::Char('u') if ctrl => Edit::Clear,
        KeyCode::Char('w') if ctrl => Edit::DeleteWord,
        KeyCode::Char('a') if ctrl => Edit::Home,
        KeyCode::Char('e') if ctrl => Edit::End,
        KeyCode::Char(_) if ctrl => return None,
        KeyCode::Char(c) => Edit::Char(c),
        KeyCode::Backspace => Edit::Backspace,
        KeyCode::Delete => Edit::Delete,
        KeyCode::Left => Edit::Left,
        KeyCode::Right => Edit::Right,
        KeyCode::Home => Edit::Home,
        KeyCode::End => Edit::End,
        _ => return None,
    };
    Some(Msg::Edit(edit))
}
