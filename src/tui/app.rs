//! The console's state and its one pure transition, [`update`]: a message
//! (a key's action, an API answer, an event from the stream, a clock tick)
//! changes the state and returns the API calls to make. Nothing here does
//! I/O, so every key of every view is tested without a terminal or a daemon.

use super::input::{Edit, LineInput};
use super::model::{Approval, AuditRow, ChatMessage, Context, Event, Gauges, Heartbeat, Info, Objective, Pairing, Task, TaskRow, UsageRow};
use crate::domain::Role;
use std::collections::VecDeque;

/// The views, in sidebar order; the number key of each is its position (0 for the tenth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// Health, queue, approvals, connectors, usage today, throughput.
    Overview,
    /// Actions waiting for an admin.
    Approvals,
    /// Every task, filtered and paged.
    Tasks,
    /// Scheduled, one-time and event objectives.
    Objectives,
    /// Pairing requests.
    Pairings,
    /// Workspaces and their chats.
    Workspaces,
    /// The live event stream.
    Activity,
    /// Talk to the agent as the admin.
    Chat,
    /// The audit log.
    Audit,
    /// LLM calls, tokens and cost.
    Usage,
}

impl View {
    /// Every view, in sidebar order.
    pub const ALL: [View; 10] = [
        View::Overview,
        View::Approvals,
        View::Tasks,
        View::Objectives,
        View::Pairings,
        View::Workspaces,
        View::Activity,
        View::Chat,
        View::Audit,
        View::Usage,
    ];

    /// Its name (sidebar, `--dump`).
    pub fn name(self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Approvals => "approvals",
            View::Tasks => "tasks",
            View::Objectives => "objectives",
            View::Pairings => "pairings",
            View::Workspaces => "workspaces",
            View::Activity => "activity",
            View::Chat => "chat",
            View::Audit => "audit",
            View::Usage => "usage",
        }
    }

    /// The view called `name`.
    pub fn parse(name: &str) -> Option<View> {
        View::ALL.into_iter().find(|v| v.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Its number key.
    pub fn key(self) -> char {
        let i = View::ALL.iter().position(|v| *v == self).unwrap_or(0);
        char::from_digit(u32::try_from((i + 1) % 10).unwrap_or(0), 10).unwrap_or('?')
    }

    /// The data it shows.
    pub fn resources(self) -> &'static [Resource] {
        match self {
            View::Overview => &[Resource::Heartbeat, Resource::Gauges, Resource::Usage],
            View::Approvals => &[Resource::Approvals],
            View::Tasks => &[Resource::Tasks],
            View::Objectives => &[Resource::Objectives],
            View::Pairings => &[Resource::Pairings],
            View::Workspaces => &[Resource::Contexts],
            View::Activity => &[],
            View::Chat => &[Resource::ChatMessages],
            View::Audit => &[Resource::Audit],
            View::Usage => &[Resource::Usage],
        }
    }
}

/// What the console fetches from the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `/api/v1/heartbeat`.
    Heartbeat,
    /// `/metrics` (gauges).
    Gauges,
    /// `/api/v1/tasks` (first page, with the status filter).
    Tasks,
    /// `/api/v1/approvals` (pending, then recent).
    Approvals,
    /// `/api/v1/objectives?active_only=false`.
    Objectives,
    /// `/api/v1/pairings`.
    Pairings,
    /// `/api/v1/contexts`.
    Contexts,
    /// `/api/v1/audit`.
    Audit,
    /// `/api/v1/usage`.
    Usage,
    /// `/api/v1/chat/messages` of the console's own chat.
    ChatMessages,
}

/// An API call for the network side to make.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    /// Fetch a resource.
    Load(Resource),
    /// The next page of tasks, older than `before`.
    MoreTasks {
        /// The status filter.
        status: Option<&'static str>,
        /// Keyset cursor.
        before: String,
    },
    /// One task with its history.
    TaskDetail(String),
    /// Approve an action.
    Approve(String),
    /// Deny an action.
    Deny {
        /// The approval.
        id: String,
        /// Why (empty: the daemon's default).
        reason: String,
    },
    /// Cancel a task.
    CancelTask(String),
    /// Retry a task.
    RetryTask(String),
    /// Pause (`false`) or resume an objective.
    SetObjectiveActive {
        /// The objective.
        id: String,
        /// Resume?
        active: bool,
    },
    /// Delete an objective.
    DeleteObjective(String),
    /// Run an objective now.
    RunObjective(String),
    /// Look a pairing token up.
    PairingLookup(String),
    /// Approve a pairing with a role.
    PairingApprove {
        /// The token.
        token: String,
        /// The role to grant.
        role: Role,
    },
    /// Deny a pairing.
    PairingDeny(String),
    /// Make a chat an admin channel (or not).
    SetAdmin {
        /// The context.
        id: String,
        /// The flag.
        admin: bool,
    },
    /// Say something to the agent.
    Chat(String),
    /// Create (`update` false) or update an objective with this body.
    SaveObjective {
        /// `/api/v1/objectives/update` rather than create.
        update: bool,
        /// The request body.
        body: serde_json::Value,
    },
}

/// The least role each API call needs (the daemon enforces it too).
impl Cmd {
    /// The least role, as the API's role table says.
    pub fn needs(&self) -> Role {
        match self {
            Cmd::Load(Resource::Usage | Resource::ChatMessages) => Role::Operator,
            Cmd::Load(Resource::Audit | Resource::Pairings) => Role::Admin,
            Cmd::Load(_) | Cmd::MoreTasks { .. } | Cmd::TaskDetail(_) => Role::Viewer,
            Cmd::CancelTask(_) | Cmd::RetryTask(_) => Role::Operator,
            Cmd::SetObjectiveActive { .. } | Cmd::DeleteObjective(_) | Cmd::RunObjective(_) | Cmd::SaveObjective { .. } => Role::Operator,
            Cmd::Approve(_) | Cmd::Deny { .. } | Cmd::SetAdmin { .. } | Cmd::Chat(_) => Role::Admin,
            Cmd::PairingLookup(_) | Cmd::PairingApprove { .. } | Cmd::PairingDeny(_) => Role::Admin,
        }
    }
}

/// A key's meaning, independent of which key it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Leave the console.
    Quit,
    /// Show or hide the keys of this view.
    Help,
    /// Switch view.
    Go(View),
    /// Move the keys' focus between the list and its details pane.
    Focus,
    /// Next view.
    NextView,
    /// Previous view.
    PrevView,
    /// Selection up.
    Up,
    /// Selection down.
    Down,
    /// Ten up.
    PageUp,
    /// Ten down.
    PageDown,
    /// First row.
    Top,
    /// Last row.
    Bottom,
    /// Open the selected row (details).
    Open,
    /// Back out (close details, clear a filter).
    Back,
    /// Type a filter.
    Filter,
    /// Next status filter.
    CycleStatus,
    /// Fetch this view again.
    Refresh,
    /// Approve the selected item.
    Approve,
    /// Deny the selected item.
    Deny,
    /// Cancel the selected task.
    Cancel,
    /// Retry the selected task.
    Retry,
    /// Pause or resume the selected objective.
    TogglePause,
    /// Delete the selected objective.
    Delete,
    /// Run the selected objective now.
    RunNow,
    /// Toggle the admin flag of the selected chat.
    ToggleAdmin,
    /// Freeze or unfreeze the activity feed.
    Freeze,
    /// Focus the text input of this view.
    Input,
    /// Next role (pairing approval).
    RoleNext,
    /// Open the form for a new objective.
    Create,
    /// Open the form for the selected objective.
    Edit,
    /// The form's next field.
    NextField,
    /// The form's previous field.
    PrevField,
    /// Answer yes to a confirmation.
    Yes,
    /// Answer no.
    No,
}

/// Where the event stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Connecting for the first time.
    Connecting,
    /// Events flowing.
    Live,
    /// A one-frame dump (`--dump`): no stream.
    Snapshot,
    /// The daemon went away; retrying.
    Down {
        /// Why.
        error: String,
        /// Next try, unix ms.
        retry_at: i64,
    },
}

/// An API answer, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    /// Who we are.
    Info(Info),
    /// Health.
    Heartbeat(Heartbeat),
    /// `/metrics` gauges.
    Gauges(Gauges),
    /// A page of tasks; `more` when `before` was given (append).
    Tasks {
        /// The tasks.
        items: Vec<TaskRow>,
        /// The next page's cursor.
        next: Option<String>,
        /// An older page (appended) rather than the first.
        more: bool,
    },
    /// One task with events.
    TaskDetail(Box<Task>),
    /// Approvals.
    Approvals(Vec<Approval>),
    /// Objectives.
    Objectives(Vec<Objective>),
    /// Pairing requests.
    Pairings(Vec<Pairing>),
    /// A looked-up pairing token.
    PairingFound(Box<Pairing>),
    /// Contexts.
    Contexts(Vec<Context>),
    /// Audit rows.
    Audit(Vec<AuditRow>),
    /// Usage rows.
    /// Usage rows, and the budget report as lines (`cli::budget_lines`;
    /// empty when the runtime checks no budget).
    Usage(Vec<UsageRow>, Vec<String>),
    /// Messages to the console's chat.
    ChatMessages(Vec<ChatMessage>),
    /// Past events (the activity backlog on connect).
    Backlog(Vec<Event>),
}

/// Everything that can change the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// A key's action.
    Act(Act),
    /// An edit of the focused input.
    Edit(Edit),
    /// Enter in the focused input.
    Submit,
    /// An answer arrived.
    Loaded(Loaded),
    /// A fetch failed (`resource`, why).
    LoadFailed(Option<Resource>, String),
    /// An action finished: the status line's text, or the error.
    Done(Result<String, String>),
    /// One event from the stream.
    Event(Box<Event>),
    /// The stream's state changed.
    Link(Link),
    /// The wall clock (unix ms), four times a second.
    Tick(i64),
}

/// A question before an action that changes something.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    /// What is asked.
    pub question: String,
    /// What `y` does.
    pub cmd: Cmd,
}

/// What a focused text input is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The view's text filter.
    Filter,
    /// The reason of a denial (Enter denies).
    DenyReason,
    /// A message to the agent.
    Chat,
    /// A pairing token to look up.
    Token,
}

/// Who has the keyboard.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The view's keys.
    Normal,
    /// The help overlay.
    Help,
    /// A yes/no question.
    Confirm(Confirm),
    /// A text input: every character goes there.
    Input(Purpose, LineInput),
    /// The objective form.
    Form(Box<super::form::Form>),
}

/// A list with a selection and the state of its loading.
#[derive(Debug, Clone, PartialEq)]
pub struct List<T> {
    /// The rows.
    pub items: Vec<T>,
    /// The selected row.
    pub selected: usize,
    /// Fetched at least once.
    pub loaded: bool,
    /// Why the last fetch failed.
    pub error: Option<String>,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        Self { items: Vec::new(), selected: 0, loaded: false, error: None }
    }
}

impl<T> List<T> {
    /// Replaces the rows, keeping the selection in range.
    pub fn set(&mut self, items: Vec<T>) {
        self.items = items;
        self.loaded = true;
        self.error = None;
        self.clamp();
    }

    fn clamp(&mut self) {
        self.selected = self.selected.min(self.items.len().saturating_sub(1));
    }
}

/// The status filters of the task list, cycled by `s`.
pub const TASK_STATUSES: [Option<&str>; 6] = [None, Some("queued"), Some("running"), Some("succeeded"), Some("failed"), Some("canceled")];

/// How many events the activity feed keeps.
pub const ACTIVITY_CAP: usize = 2_000;

/// The console's chat with the agent (the `codex` mailbox, this external id).
pub const CHAT_ID: &str = "tui";

/// The console's state.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// The view on screen.
    pub view: View,
    /// Who has the keyboard.
    pub mode: Mode,
    /// The daemon's answer to `/api/v1/info`.
    pub info: Option<Info>,
    /// The event stream.
    pub link: Link,
    /// The wall clock, unix ms.
    pub now_ms: i64,
    /// The last line of feedback, and whether it is an error.
    pub status: Option<(String, bool)>,
    /// Health.
    pub heartbeat: Option<Heartbeat>,
    /// Gauges.
    pub gauges: Option<Gauges>,
    /// Tasks (newest first).
    pub tasks: List<TaskRow>,
    /// The keyset cursor of the next older page.
    pub tasks_next: Option<String>,
    /// Index into [`TASK_STATUSES`].
    pub task_status: usize,
    /// The task whose details are open (followed live).
    pub task_detail: Option<Task>,
    /// An event touched the open task: fetch its details again.
    pub detail_stale: bool,
    /// Approvals, pending first.
    pub approvals: List<Approval>,
    /// Objectives.
    pub objectives: List<Objective>,
    /// Pairing requests.
    pub pairings: List<Pairing>,
    /// The last token typed in the pairings view.
    pub pairing_token: String,
    /// The pairing looked up by token, and the role to grant.
    pub pairing_found: Option<(Pairing, String, Role)>,
    /// Contexts, by workspace.
    pub contexts: List<Context>,
    /// Audit rows, newest first.
    pub audit: List<AuditRow>,
    /// Usage rows, newest day first.
    pub usage: List<UsageRow>,
    /// The kill switch and today's spend against the limits, a fact a
    /// line (`agent: running`, `today (… UTC): …`); empty: no budget.
    pub budget: Vec<String>,
    /// The console's chat: what was said (`true`: by us) and answered.
    pub chat: Vec<(bool, String)>,
    /// The newest chat message seen.
    pub chat_after: i64,
    /// The activity feed, newest last.
    pub activity: VecDeque<Event>,
    /// Frozen: new events wait in `held`.
    pub frozen: bool,
    /// Events that arrived while frozen.
    pub held: VecDeque<Event>,
    /// Scroll offset of the activity feed (rows from the newest).
    pub activity_scroll: usize,
    /// Text filter per view.
    pub filters: Vec<(View, String)>,
    /// Finished tasks per minute, newest last (the overview sparkline).
    pub throughput: VecDeque<u64>,
    /// The minute the last throughput bucket counts.
    pub throughput_minute: i64,
    /// Resources to fetch again (patched from events, coalesced).
    pub stale: Vec<Resource>,
    /// When each view's resources were last asked for, to coalesce refetches.
    pub last_fetch: Vec<(Resource, i64)>,
    /// The arrow keys scroll the details pane rather than the list.
    pub details_focus: bool,
    /// Lines the details pane is scrolled by.
    pub details_scroll: u16,
    /// When to give freed heap back to the system (after pages were parsed).
    pub trim_after: Option<i64>,
    /// Something changed since the last frame.
    pub dirty: bool,
    /// The user asked to leave.
    pub quit: bool,
    /// How long each frame took to draw, in microseconds (the first
    /// [`FRAME_SAMPLES`]; `AGENT_RUNTIME_TUI_STATS` writes their summary on exit).
    pub frame_us: Vec<u32>,
}

/// How many frame times are kept for the exit summary.
pub const FRAME_SAMPLES: usize = 100_000;

impl App {
    /// A console that has not heard from the daemon yet.
    pub fn new(now_ms: i64) -> Self {
        Self {
            view: View::Overview,
            mode: Mode::Normal,
            info: None,
            link: Link::Connecting,
            now_ms,
            status: None,
            heartbeat: None,
            gauges: None,
            tasks: List::default(),
            tasks_next: None,
            task_status: 0,
            task_detail: None,
            detail_stale: false,
            approvals: List::default(),
            objectives: List::default(),
            pairings: List::default(),
            pairing_token: String::new(),
            pairing_found: None,
            contexts: List::default(),
            audit: List::default(),
            usage: List::default(),
            budget: Vec::new(),
            chat: Vec::new(),
            chat_after: 0,
            activity: VecDeque::new(),
            frozen: false,
            held: VecDeque::new(),
            activity_scroll: 0,
            filters: Vec::new(),
            throughput: VecDeque::from(vec![0; 60]),
            throughput_minute: now_ms / 60_000,
            stale: Vec::new(),
            last_fetch: Vec::new(),
            details_focus: false,
            details_scroll: 0,
            trim_after: None,
            dirty: true,
            quit: false,
            frame_us: Vec::new(),
        }
    }

    /// Records one frame's drawing time.
    pub fn record_frame(&mut self, took: std::time::Duration) {
        if self.frame_us.len() < FRAME_SAMPLES {
            self.frame_us.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
    }

    /// `{"frames", "p50_ms", "p99_ms", "max_ms"}` of the frames drawn so far.
    pub fn frame_stats(&self) -> serde_json::Value {
        let mut v = self.frame_us.clone();
        v.sort_unstable();
        let at = |q: f64| {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "an index into the samples"
            )]
            let i = ((v.len().saturating_sub(1)) as f64 * q).round() as usize;
            v.get(i).map_or(0.0, |us| f64::from(*us) / 1000.0)
        };
        serde_json::json!({"frames": v.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)})
    }

    /// The role of the console's certificate, when the daemon said it.
    pub fn role(&self) -> Option<Role> {
        self.info.as_ref().and_then(|i| Role::parse(&i.caller.role))
    }

    /// Why `cmd` would be refused for this certificate, if it would.
    pub fn refusal(&self, cmd: &Cmd) -> Option<String> {
        let role = self.role()?;
        let need = cmd.needs();
        (role < need).then(|| {
            let who = self.info.as_ref().map_or("", |i| i.caller.subject.as_str());
            format!("needs the {} role; this certificate ({who}) carries {}", need.as_str(), role.as_str())
        })
    }

    /// The text filter of `view`.
    pub fn filter(&self, view: View) -> &str {
        self.filters.iter().find(|(v, _)| *v == view).map_or("", |(_, f)| f.as_str())
    }

    /// The status filter of the task list.
    pub fn task_status(&self) -> Option<&'static str> {
        TASK_STATUSES[self.task_status % TASK_STATUSES.len()]
    }

    /// What to fetch on showing `view` (the first time, or after a reconnect).
    pub fn open_cmds(&mut self, view: View) -> Vec<Cmd> {
        view.resources().iter().map(|r| Cmd::Load(*r)).filter(|c| self.refusal(c).is_none()).collect()
    }
}

/// The one transition: applies `msg`, returns the API calls to make.
pub fn update(app: &mut App, msg: Msg) -> Vec<Cmd> {
    app.dirty = true;
    match msg {
        Msg::Act(act) => super::act::apply(app, act),
        Msg::Edit(edit) => {
            if let Mode::Form(form) = &mut app.mode {
                form.apply(edit);
                return Vec::new();
            }
            if let Mode::Input(purpose, input) = &mut app.mode {
                input.apply(edit);
                if *purpose == Purpose::Filter {
                    let text = input.text().to_string();
                    set_filter(app, text);
                }
            }
            Vec::new()
        }
        Msg::Submit => super::act::submit(app),
        Msg::Loaded(data) => super::patch::loaded(app, data),
        Msg::LoadFailed(resource, error) => {
            super::patch::failed(app, resource, error);
            Vec::new()
        }
        Msg::Done(result) => {
            // A save from the form closes it; a refusal keeps it open with the reason.
            if let Mode::Form(form) = &mut app.mode
                && form.saving
            {
                form.saving = false;
                match &result {
                    Ok(_) => app.mode = Mode::Normal,
                    Err(e) => form.error = Some(e.clone()),
                }
            }
            app.status = Some(match result {
                Ok(text) => (text, false),
                Err(text) => (text, true),
            });
            Vec::new()
        }
        Msg::Event(event) => super::patch::event(app, *event),
        Msg::Link(link) => super::patch::link(app, link),
        Msg::Tick(now) => super::patch::tick(app, now),
    }
}

/// Sets the text filter of the current view (the selection goes to the top).
pub fn set_filter(app: &mut App, text: String) {
    let view = app.view;
    app.filters.retain(|(v, _)| *v != view);
    if !text.is_empty() {
        app.filters.push((view, text));
    }
    match view {
        View::Tasks => app.tasks.selected = 0,
        View::Approvals => app.approvals.selected = 0,
        View::Objectives => app.objectives.selected = 0,
        View::Audit => app.audit.selected = 0,
        View::Activity => app.activity_scroll = 0,
        _ => {}
    }
}
