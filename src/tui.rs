//! `agent-runtime tui`: the fullscreen admin console. A client of the admin
//! API only (it never opens the database), over the CLI's mutual-TLS client
//! with the same certificate discovery. Live data comes from the event
//! stream, resumed after a drop with `Last-Event-ID`; lists are fetched once
//! and patched from events.
//!
//! Shape (gitui/atuin): [`app::update`] is the one pure transition (state ×
//! message → state + API calls), [`keys`] maps keys to messages from tables
//! the help overlay also reads, [`render`]/[`views`]/[`panes`] draw the
//! state, and [`net`] turns calls into messages. This file owns the loop:
//! terminal events, API answers and a 250 ms clock in, coalesced frames out
//! (at most one per 16 ms, none when nothing changed).
//!
//! Invariants: the terminal is restored on exit, on error and on panic; a
//! text input with focus receives every printable key (no global shortcut
//! steals `q` or a digit); the console never acts without the daemon's
//! answer — the API enforces roles, the console only shows what it would
//! refuse.

pub mod act;
pub mod app;
pub mod form;
pub mod input;
pub mod keys;
pub mod model;
pub mod net;
pub mod panes;
pub mod patch;
pub mod render;
pub mod select;
pub mod views;

use crate::client::ApiClient;
use app::{App, Cmd, Link, Loaded, Mode, Msg, View, update};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, Event as TermEvent};
use ratatui::crossterm::execute;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// `tui` arguments.
#[derive(Debug, clap::Args)]
pub struct TuiArgs {
    /// Print one rendered frame of a view as plain text and exit (1 if the daemon is unreachable).
    /// Views: overview, approvals, tasks, objectives, pairings, workspaces, activity, chat, audit, usage.
    #[arg(long, value_name = "VIEW", value_parser = parse_view)]
    pub dump: Option<View>,
    /// The size of the --dump frame, COLUMNSxROWS.
    #[arg(long, value_name = "COLSxROWS", default_value = "100x30", value_parser = parse_size)]
    pub size: (u16, u16),
    /// The view to open.
    #[arg(long, value_name = "VIEW", value_parser = parse_view, default_value = "overview")]
    pub view: View,
}

fn parse_view(s: &str) -> Result<View, String> {
    View::parse(s).ok_or_else(|| {
        let names: Vec<&str> = View::ALL.iter().map(|v| v.name()).collect();
        format!("unknown view {s:?}; one of {}", names.join(", "))
    })
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?} is not COLUMNSxROWS (e.g. 100x30)"))?;
    let n = |v: &str| v.trim().parse::<u16>().map_err(|_| format!("{s:?} is not COLUMNSxROWS (e.g. 100x30)"));
    let (w, h) = (n(w)?, n(h)?);
    if !(40..=1000).contains(&w) || !(10..=500).contains(&h) {
        return Err(format!("{s:?}: columns must be 40-1000 and rows 10-500"));
    }
    Ok((w, h))
}

fn now_ms() -> i64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

/// Runs `tui`.
pub async fn run(client: ApiClient, args: TuiArgs) -> anyhow::Result<ExitCode> {
    match args.dump {
        Some(view) => dump(&client, view, args.size).await,
        None => interactive(client, args.view).await,
    }
}

/// Renders `app` into a `w`×`h` text frame (trailing spaces trimmed).
pub fn render_text(app: &App, w: u16, h: u16, theme: render::Theme) -> String {
    let Ok(mut terminal) = Terminal::new(TestBackend::new(w, h));
    let _ = terminal.draw(|f| render::draw(f, app, theme));
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `--dump`: fetch what the view shows, draw one frame, print it.
async fn dump(client: &ApiClient, view: View, (w, h): (u16, u16)) -> anyhow::Result<ExitCode> {
    let mut app = App::new(now_ms());
    app.view = view;
    app.link = Link::Snapshot;
    let info = match client.get::<serde_json::Value>("/api/v1/info", &[]).await {
        Ok(v) => net::decode(v).unwrap_or_default(),
        Err(e) => {
            eprintln!("agent-runtime tui: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut pending = update(&mut app, Msg::Loaded(Loaded::Info(info)));
    if view == View::Activity {
        let page: serde_json::Value = client.get("/api/v1/events/log", &[("limit", "1".into())]).await?;
        let after = (page["head"].as_i64().unwrap_or(0) - 200).max(0);
        let page: serde_json::Value = client.get("/api/v1/events/log", &[("after", after.to_string()), ("limit", "200".into())]).await?;
        let events = net::items(page, "items");
        update(&mut app, Msg::Loaded(Loaded::Backlog(events)));
    }
    // Loads only; a dump never acts.
    while let Some(cmd) = pending.pop() {
        if !matches!(cmd, Cmd::Load(_) | Cmd::MoreTasks { .. } | Cmd::TaskDetail(_)) {
            continue;
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        net::run(client.clone(), cmd, app.task_status(), tx).await;
        while let Ok(msg) = rx.try_recv() {
            pending.extend(update(&mut app, msg));
        }
    }
    app.status = None;
    crate::cli::out::text(format_args!("{}", render_text(&app, w, h, render::Theme { color: false })));
    Ok(ExitCode::SUCCESS)
}

/// Restores the terminal when dropped: on return, on `?` and on unwinding.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = execute!(std::io::stdout(), DisableBracketedPaste);
        ratatui::restore();
    }
}

/// The fullscreen console on the real terminal.
async fn interactive(client: ApiClient, view: View) -> anyhow::Result<ExitCode> {
    let mut app = App::new(now_ms());
    app.view = view;
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = execute!(std::io::stdout(), DisableBracketedPaste);
        ratatui::restore();
        hook(info);
    }));
    execute!(std::io::stdout(), EnableBracketedPaste)?;
    let events = ratatui::crossterm::event::EventStream::new();
    let theme = render::Theme::from_env();
    let app = run_loop(&mut terminal, client, app, events, theme, None).await?;
    drop(terminal);
    if let Some(path) = std::env::var_os("AGENT_RUNTIME_TUI_STATS") {
        std::fs::write(&path, app.frame_stats().to_string())
            .map_err(|e| anyhow::anyhow!("AGENT_RUNTIME_TUI_STATS {}: {e}", path.to_string_lossy()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The console's loop over any backend and source of terminal events: the
/// real terminal, or a test's script on a `TestBackend`. Runs until `q` (or
/// the events end) and returns the final state. With `frames`, every drawn
/// frame is also published as text (tests wait on what the screen shows).
pub async fn run_loop<B, S>(
    terminal: &mut Terminal<B>,
    client: ApiClient,
    mut app: App,
    mut term_events: S,
    theme: render::Theme,
    frames: Option<tokio::sync::watch::Sender<String>>,
) -> anyhow::Result<App>
where
    B: ratatui::backend::Backend,
    B::Error: Send + Sync + 'static,
    S: futures_util::Stream<Item = std::io::Result<TermEvent>> + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    // Every task of the console (the stream, each API call) belongs to this
    // set: finished ones are reaped each turn, the rest aborted on return.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(net::follow(client.clone(), tx.clone(), 200));
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_draw: Option<Instant> = None;
    loop {
        let frame_due = last_draw.map_or(Instant::now(), |t| t + Duration::from_millis(16));
        let mut batch: Vec<Msg> = tokio::select! {
            ev = term_events.next() => match ev {
                Some(Ok(ev)) => terminal_msgs(&app, ev),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            m = rx.recv() => m.into_iter().collect(),
            _ = tick.tick() => vec![Msg::Tick(now_ms())],
            () = tokio::time::sleep_until(frame_due.into()), if app.dirty => Vec::new(),
        };
        // Take what else is waiting (a burst of events) before drawing once.
        while batch.len() < 4_096 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        for msg in batch {
            for cmd in update(&mut app, msg) {
                tasks.spawn(net::run(client.clone(), cmd, app.task_status(), tx.clone()));
            }
        }
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                app.status = Some((format!("an API call panicked: {e}"), true));
            }
        }
        if app.quit {
            break;
        }
        if app.dirty && last_draw.is_none_or(|t| t.elapsed() >= Duration::from_millis(16)) {
            let started = Instant::now();
            let frame = terminal.draw(|f| render::draw(f, &app, theme)).map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
            let area = frame.area;
            app.record_frame(started.elapsed());
            app.dirty = false;
            last_draw = Some(Instant::now());
            if let Some(frames) = &frames {
                frames.send_replace(render_text(&app, area.width, area.height, render::Theme { color: false }));
            }
        }
    }
    Ok(app)
}

/// A terminal event as a message: keys through the key tables, pastes into
/// the focused input, a resize as a redraw.
pub fn terminal_msgs(app: &App, ev: TermEvent) -> Vec<Msg> {
    match ev {
        TermEvent::Key(k) => keys::map(app, k).into_iter().collect(),
        TermEvent::Paste(text) => match &app.mode {
            Mode::Input(..) => vec![Msg::Edit(input::Edit::Paste(text))],
            // A paste into the chat view opens its input with the text.
            Mode::Normal if app.view == View::Chat => vec![Msg::Act(app::Act::Input), Msg::Edit(input::Edit::Paste(text))],
            _ => Vec::new(),
        },
        TermEvent::Resize(..) => vec![Msg::Tick(now_ms())],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
