//! `agent-runtime objective list|show|create|update|pause|resume|delete|runs|run`.

use super::{print_json, print_list, s};
use crate::client::ApiClient;
use clap::Subcommand;
use serde_json::{Map, Value, json};
use std::process::ExitCode;

/// Objective subcommands.
#[derive(Debug, Subcommand)]
pub enum ObjectiveCmd {
    /// List objectives, oldest first (paused ones too unless --active-only).
    List {
        /// Only this workspace.
        #[arg(long)]
        workspace_id: Option<String>,
        /// Only this context.
        #[arg(long)]
        context_id: Option<String>,
        /// Only active objectives.
        #[arg(long)]
        active_only: bool,
        /// At most this many (1-500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one objective with its next runs.
    Show {
        /// Objective id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create an objective for a context (see `workspace contexts` for ids).
    Create {
        /// The context it reports to.
        #[arg(long)]
        context_id: String,
        /// Title.
        #[arg(long)]
        title: String,
        /// What the agent is asked each time.
        #[arg(long)]
        prompt: String,
        /// 5-field cron (`30 7 * * 1-5`), @hourly/@daily/@weekly/@monthly/@yearly, or `@every 2h`.
        #[arg(long, conflicts_with_all = ["event", "at"])]
        cron: Option<String>,
        /// An event trigger instead of a schedule: markdown.updated (a markdown file in the workspace changed).
        #[arg(long, conflicts_with = "at")]
        event: Option<String>,
        /// With --event: only paths matching this workspace-relative glob (e.g. `notes/**/*.md`).
        #[arg(long, requires = "event")]
        filter: Option<String>,
        /// Fire once, at this RFC 3339 time (e.g. 2026-12-24T18:00:00+01:00), then deactivate.
        #[arg(long)]
        at: Option<String>,
        /// After downtime: fire the most recent missed time (latest), every missed time (all), or none.
        #[arg(long, value_parser = ["latest", "all", "none"])]
        catch_up: Option<String>,
        /// IANA time zone of the schedule.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change an objective (only the given fields).
    Update {
        /// Objective id.
        id: String,
        /// New title.
        #[arg(long)]
        title: Option<String>,
        /// New prompt.
        #[arg(long)]
        prompt: Option<String>,
        /// New schedule (makes it a schedule objective).
        #[arg(long, conflicts_with_all = ["event", "at"])]
        cron: Option<String>,
        /// New event key (makes it an event objective).
        #[arg(long, conflicts_with = "at")]
        event: Option<String>,
        /// New path glob of an event objective (`""` for every markdown file).
        #[arg(long)]
        filter: Option<String>,
        /// New one-time fire time, RFC 3339 (makes it a once objective).
        #[arg(long)]
        at: Option<String>,
        /// New catch-up policy.
        #[arg(long, value_parser = ["latest", "all", "none"])]
        catch_up: Option<String>,
        /// New time zone.
        #[arg(long)]
        timezone: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause an objective (it stops firing).
    Pause {
        /// Objective id.
        id: String,
    },
    /// Resume a paused objective.
    Resume {
        /// Objective id.
        id: String,
    },
    /// Delete an objective (its runs go with it; its tasks stay).
    Delete {
        /// Objective id.
        id: String,
    },
    /// An objective's runs, newest first: every scheduled time (skipped ones with the reason), event and manual run, with its real outcome.
    Runs {
        /// Objective id.
        id: String,
        /// At most this many (1-500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only runs older than this run id (from a previous page).
        #[arg(long)]
        before: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fire an objective now (a manual run; the schedule does not move).
    Run {
        /// Objective id.
        id: String,
    },
}

fn when(v: &Value, key: &str) -> String {
    v[key].as_i64().map_or_else(|| "-".to_string(), |t| crate::clock::rfc3339(t * 1000))
}

fn trigger(o: &Value) -> String {
    match s(o, "trigger_type") {
        "event" if !matches!(s(o, "event_filter"), "" | "-") => format!("on {} {}", s(o, "event_key"), s(o, "event_filter")),
        "event" => format!("on {}", s(o, "event_key")),
        "once" => format!("once at {}", when(o, "run_at_unix")),
        _ => format!("{} ({})", s(o, "cron_expr"), s(o, "timezone")),
    }
}

fn print_objective(o: &Value) {
    outln!("id:        {}", s(o, "id"));
    outln!("title:     {}", s(o, "title"));
    outln!("state:     {}", s(o, "health_state"));
    outln!("trigger:   {}", trigger(o));
    outln!("context:   {} (workspace {})", s(o, "context_id"), s(o, "workspace_id"));
    outln!("next run:  {}", when(o, "next_run_unix"));
    let runs: Vec<String> =
        o["next_runs_unix"].as_array().into_iter().flatten().filter_map(Value::as_i64).map(|t| crate::clock::rfc3339(t * 1000)).collect();
    if runs.len() > 1 {
        outln!("then:      {}", runs[1..].join(", "));
    }
    outln!("last run:  {} ({})", when(o, "last_run_unix"), o["last_outcome"].as_str().unwrap_or("never ran"));
    outln!("catch-up:  {}", s(o, "catch_up"));
    outln!(
        "runs:      {} ended: {} succeeded, {} failed; streak {} ok / {} failed; average {} ms",
        o["run_count"].as_i64().unwrap_or(0),
        o["success_count"].as_i64().unwrap_or(0),
        o["failure_count"].as_i64().unwrap_or(0),
        o["success_streak"].as_i64().unwrap_or(0),
        o["failure_streak"].as_i64().unwrap_or(0),
        o["avg_run_duration_ms"].as_i64().unwrap_or(0)
    );
    if !matches!(s(o, "auto_paused_reason"), "" | "-") {
        outln!("paused:    {}", s(o, "auto_paused_reason"));
    }
    if !s(o, "last_error").is_empty() && s(o, "last_error") != "-" {
        outln!("error:     {}", s(o, "last_error"));
    }
    outln!("prompt:    {}", s(o, "prompt"));
}

fn done(json: bool, v: &Value, what: &str) {
    if json {
        print_json(v);
    } else {
        outln!("{what}");
        print_objective(v);
    }
}

/// Runs an objective subcommand.
pub async fn run(client: ApiClient, cmd: ObjectiveCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ObjectiveCmd::List { workspace_id, context_id, active_only, limit, json } => {
            let mut q = vec![("limit", limit.to_string()), ("active_only", active_only.to_string())];
            q.extend(workspace_id.map(|v| ("workspace_id", v)));
            q.extend(context_id.map(|v| ("context_id", v)));
            let v: Value = client.get("/api/v1/objectives", &q).await?;
            let header = format!("{:<40}  {:<8}  {:<20}  {:<28}  TITLE", "ID", "STATE", "NEXT RUN", "TRIGGER");
            print_list(&v, json, "items", &header, "objective", |o| {
                format!(
                    "{:<40}  {:<8}  {:<20}  {:<28}  {}",
                    s(o, "id"),
                    s(o, "health_state"),
                    when(o, "next_run_unix"),
                    trigger(o),
                    s(o, "title")
                )
            });
        }
        ObjectiveCmd::Show { id, json } => {
            let v: Value = client.get(&format!("/api/v1/objectives/{}", super::seg(&id)), &[]).await?;
            if json { print_json(&v) } else { print_objective(&v) }
        }
        ObjectiveCmd::Create { context_id, title, prompt, cron, event, filter, at, catch_up, timezone, paused, json } => {
            let mut body = json!({"context_id": context_id, "title": title, "prompt": prompt, "timezone": timezone, "active": !paused});
            match (cron, event, at) {
                (_, Some(e), _) => {
                    body["trigger_type"] = json!("event");
                    body["event_key"] = json!(e);
                    if let Some(f) = filter {
                        body["event_filter"] = json!(f);
                    }
                }
                (_, None, Some(at)) => {
                    body["trigger_type"] = json!("once");
                    body["run_at"] = json!(at);
                }
                (c, None, None) => {
                    body["trigger_type"] = json!("schedule");
                    body["cron_expr"] = json!(c);
                }
            }
            if let Some(c) = catch_up {
                body["catch_up"] = json!(c);
            }
            let v: Value = client.post("/api/v1/objectives", &body).await?;
            done(json, &v, "Objective created.");
        }
        ObjectiveCmd::Update { id, title, prompt, cron, event, filter, at, catch_up, timezone, json } => {
            let mut body = Map::new();
            body.insert("id".into(), json!(id));
            for (k, v) in [
                ("title", title),
                ("prompt", prompt),
                ("cron_expr", cron.clone()),
                ("event_key", event.clone()),
                ("event_filter", filter),
                ("run_at", at.clone()),
                ("catch_up", catch_up),
                ("timezone", timezone),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), json!(v));
                }
            }
            if cron.is_some() {
                body.insert("trigger_type".into(), json!("schedule"));
            } else if event.is_some() {
                body.insert("trigger_type".into(), json!("event"));
            } else if at.is_some() {
                body.insert("trigger_type".into(), json!("once"));
            }
            let v: Value = client.post("/api/v1/objectives/update", &Value::Object(body)).await?;
            done(json, &v, "Objective updated.");
        }
        ObjectiveCmd::Pause { id } => {
            let v: Value = client.post("/api/v1/objectives/active", &json!({"id": id, "active": false})).await?;
            outln!("Objective {} paused.", s(&v, "id"));
        }
        ObjectiveCmd::Resume { id } => {
            let v: Value = client.post("/api/v1/objectives/active", &json!({"id": id, "active": true})).await?;
            outln!("Objective {} resumed; next run {}.", s(&v, "id"), when(&v, "next_run_unix"));
        }
        ObjectiveCmd::Delete { id } => {
            let _: Value = client.post("/api/v1/objectives/delete", &json!({"id": id})).await?;
            outln!("Objective {id} deleted.");
        }
        ObjectiveCmd::Runs { id, limit, before, json } => {
            let mut q = vec![("limit", limit.to_string())];
            q.extend(before.map(|b| ("before", b.to_string())));
            let v: Value = client.get(&format!("/api/v1/objectives/{}/runs", super::seg(&id)), &q).await?;
            let header = format!(
                "{:<8}  {:<20}  {:<9}  {:<10}  {:>9}  {:<40}  ERROR / PATH",
                "RUN", "SCHEDULED", "TRIGGER", "OUTCOME", "MS", "TASK"
            );
            print_list(&v, json, "items", &header, "run", |r| {
                let note = r["error"].as_str().or(r["path"].as_str()).unwrap_or("");
                format!(
                    "{:<8}  {:<20}  {:<9}  {:<10}  {:>9}  {:<40}  {note}",
                    r["id"].as_i64().unwrap_or(0),
                    when(r, "scheduled_at_unix"),
                    s(r, "trigger"),
                    s(r, "outcome"),
                    r["duration_ms"].as_i64().map_or_else(|| "-".to_string(), |d| d.to_string()),
                    s(r, "task_id"),
                )
            });
        }
        ObjectiveCmd::Run { id } => {
            let v: Value = client.post(&format!("/api/v1/objectives/{}/run", super::seg(&id)), &json!({})).await?;
            outln!("Objective {} fired now: task {}.", s(&v, "objective_id"), s(&v, "task_id"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
