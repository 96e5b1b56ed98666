//! `agent-runtime chat`: one message (`-m` or positional words) or an
//! interactive session; task notices that arrive later are printed as they come.

use crate::client::ApiClient;
use clap::Args;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// `chat` arguments.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The message (or give it as positional words).
    #[arg(short, long)]
    message: Option<String>,
    /// The message as words.
    words: Vec<String>,
    /// Connector name of this chat.
    #[arg(long, default_value = "codex")]
    connector: String,
    /// Chat id.
    #[arg(long, default_value = "codex-cli")]
    external_id: String,
    /// Your user id (default: the chat id).
    #[arg(long)]
    from_user_id: Option<String>,
    /// Your display name.
    #[arg(long, default_value = "Codex CLI")]
    display_name: String,
    /// With a one-shot message: keep printing notices (task outcomes) for up to this many seconds.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    wait: u64,
}

struct Session {
    client: ApiClient,
    args: ChatArgs,
    after: i64,
}

impl Session {
    async fn send(&mut self, text: &str) -> anyhow::Result<String> {
        let body = json!({
            "connector": self.args.connector, "external_id": self.args.external_id,
            "from_user_id": self.args.from_user_id, "display_name": self.args.display_name, "text": text,
        });
        let v: Value = self.client.post("/api/v1/chat", &body).await?;
        if let Some(id) = v.get("outbox_id").and_then(Value::as_i64) {
            self.after = self.after.max(id);
        }
        Ok(v.get("reply").and_then(Value::as_str).unwrap_or_default().to_string())
    }

    /// Prints notices newer than the last seen; returns how many.
    async fn poll(&mut self) -> anyhow::Result<usize> {
        let q =
            [("connector", self.args.connector.clone()), ("external_id", self.args.external_id.clone()), ("after", self.after.to_string())];
        let v: Value = self.client.get("/api/v1/chat/messages", &q).await?;
        let mut shown = 0;
        for m in v["items"].as_array().into_iter().flatten() {
            self.after = self.after.max(m["id"].as_i64().unwrap_or(0));
            if m["kind"] == "task_notice" {
                print_agent(m["body"].as_str().unwrap_or_default());
                shown += 1;
            }
        }
        Ok(shown)
    }

    /// Skips the chat's earlier messages, so only new notices are printed.
    async fn baseline(&mut self) -> anyhow::Result<()> {
        loop {
            let q = [
                ("connector", self.args.connector.clone()),
                ("external_id", self.args.external_id.clone()),
                ("after", self.after.to_string()),
                ("limit", "500".into()),
            ];
            let v: Value = self.client.get("/api/v1/chat/messages", &q).await?;
            self.after = self.after.max(v["next_after"].as_i64().unwrap_or(0));
            if v["count"].as_u64().unwrap_or(0) < 500 {
                return Ok(());
            }
        }
    }
}

fn print_agent(text: &str) {
    let mut lines = text.lines();
    outln!("agent> {}", lines.next().unwrap_or(""));
    for l in lines {
        outln!("       {l}");
    }
}

/// Runs `chat`.
pub async fn run(client: ApiClient, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let one_shot = args.message.clone().or_else(|| (!args.words.is_empty()).then(|| args.words.join(" ")));
    let wait = Duration::from_secs(args.wait);
    let mut s = Session { client, args, after: 0 };
    s.baseline().await?;
    if let Some(text) = one_shot {
        let reply = s.send(&text).await?;
        outln!("{}", if reply.is_empty() { "(no reply)" } else { &reply });
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if s.poll().await? > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        return Ok(ExitCode::SUCCESS);
    }
    outln!("Connected to {} as {} ({}). Type /exit to quit.", s.args.connector, s.args.display_name, s.args.external_id);
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let text = line.trim();
                if text == "/exit" || text == "/quit" { break; }
                if text.is_empty() { continue; }
                match s.send(text).await {
                    Ok(r) if r.is_empty() => outln!("agent> (no reply)"),
                    Ok(r) => print_agent(&r),
                    Err(e) => outln!("chat request failed: {e}"),
                }
            }
            _ = tick.tick() => {
                if let Err(e) = s.poll().await {
                    tracing::debug!(error = %e, "polling notices failed");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
