//! The Discord connector through the real binary against the fake Discord
//! (REST v10 and the gateway): slash commands, mention rules, attachments,
//! approval buttons, splitting, rate limits, permanent errors, a dropped
//! connection (RESUME), a refused RESUME (catch-up), a crash, and a crash
//! between Discord taking an answer and the outbox marking it sent (nonce).

use crate::approvals::receiver;
use crate::support::daemon::Daemon;
use crate::support::discord::{Author, BOT_ID, FakeDiscord, Fault, Sent};
use crate::support::llm::{FakeLlm, Step, llm_env};
use crate::support::wait_until;
use agent_runtime::connectors::discord::{DiscordPublisher, DiscordRest, INTERACTION_PREFIX};
use agent_runtime::domain::{ChatRef, MessageKind, OutboundMessage, OutboundOptions, OutboxId, OutboxStatus};
use agent_runtime::outbox::Publisher;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TOKEN: &str = "MTAwMDAw.TEST-discord-token";
const GUILD: &str = "300000000000000001";

fn env(dc: &FakeDiscord, llm: Option<&FakeLlm>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AGENT_RUNTIME_DISCORD_TOKEN", TOKEN.to_string()),
        ("AGENT_RUNTIME_DISCORD_API_BASE", format!("{}/api/v10", dc.base_url())),
        ("AGENT_RUNTIME_DISCORD_GATEWAY_URL", dc.gateway_url()),
        ("AGENT_RUNTIME_OUTBOX_RETRY_BASE_SECONDS", "1".into()),
    ];
    env.extend(llm_env(llm));
    env
}

fn contents(sent: &[Sent]) -> Vec<&str> {
    sent.iter().map(|s| s.content.as_str()).collect()
}

/// Waits until channel `channel` has received `n` messages from the bot; returns them.
async fn wait_for(dc: &FakeDiscord, channel: &str, n: usize) -> Vec<Sent> {
    wait_until(&format!("{n} message(s) to channel {channel}"), Duration::from_secs(15), || async {
        let s: Vec<Sent> = dc.sent().into_iter().filter(|s| s.channel_id == channel).collect();
        (s.len() >= n).then_some(s)
    })
    .await
}

async fn start(dir: &std::path::Path, dc: &FakeDiscord, env: &[(&'static str, String)]) -> Daemon {
    let d = Daemon::start(dir, env).await;
    dc.wait_ready(Duration::from_secs(15)).await;
    d
}

/// Links ann and bob as members: strangers may only pair (issue 14).
async fn link_people(d: &Daemon) {
    d.link("discord", "100000000000000001", "member").await;
    d.link("discord", "100000000000000002", "member").await;
}

fn inbox_count(d: &Daemon) -> i64 {
    d.db().query_row("SELECT COUNT(*) FROM inbox WHERE connector = 'discord'", [], |r| r.get(0)).expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_are_published_and_answered_and_guild_text_follows_the_mention_rules() {
    let dc = FakeDiscord::start(TOKEN).await;
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path(), &dc, &env(&dc, Some(&llm))).await;
    link_people(&d).await;
    assert_eq!(dc.intents(), Some(37377), "GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT");

    let published = wait_until("slash commands published", Duration::from_secs(10), || async { dc.commands().into_iter().next() }).await;
    let (guild, cmds) = published;
    assert_eq!(guild, None, "global when no guild ids are configured");
    let names: Vec<&str> = cmds.iter().filter_map(|c| c["name"].as_str()).collect();
    for n in ["help", "task", "approve-action", "deny-action", "pending-actions"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    assert!(!names.contains(&"pair"), "pairing is a DM word, not a slash command");
    let task = cmds.iter().find(|c| c["name"] == "task").expect("task");
    assert_eq!(task["options"][0]["required"], json!(true), "{task}");

    // A slash command: stored, deferred (type 5) inside Discord's window, then the deferred response edited.
    let ann = Author::user("100000000000000001", "ann");
    dc.push_interaction_command("400", None, ann.clone(), "task", vec![("args".into(), json!("water the plants"))]);
    let edit = wait_until("the deferred response edited", Duration::from_secs(10), || async { dc.edits().into_iter().next() }).await;
    assert_eq!(dc.interaction_responses()[0].kind, 5);
    let content = edit.content.expect("content");
    assert!(content.starts_with("Task queued: `"), "{content}");
    assert!(edit.interaction_token.is_some(), "the interaction's own response was edited");

    // Guild text: only with a mention (or a command) does the bot answer; other bots are ignored.
    let bob = Author::user("100000000000000002", "bob");
    // The queued task asks the model too: once it has, the scripted answer below is the mention's.
    wait_until("the task's model call", Duration::from_secs(10), || async {
        llm.requests().iter().any(|r| r.body.to_string().contains("water the plants")).then_some(())
    })
    .await;
    // (The answer takes a moment: the channel sees "typing" meanwhile.)
    llm.push([Step::Delayed(Duration::from_millis(600), "Hello from the model".into())]);
    dc.push_message("500", Some(GUILD), bob.clone(), "just chatting among ourselves");
    dc.push_message("500", Some(GUILD), Author::bot("100000000000000009", "otherbot"), "<@900000000000000001> hello from a bot");
    let asked = dc.push_message("500", Some(GUILD), bob.clone(), &format!("<@{BOT_ID}> what is up?"));
    dc.push_message("500", Some(GUILD), bob.clone(), "/whoami");
    let sent = wait_for(&dc, "500", 2).await;
    assert_eq!(sent[0].content, "Hello from the model", "{:?}", contents(&sent));
    assert_eq!(sent[0].reference.as_deref(), Some(asked.as_str()), "guild replies answer the message");
    assert!(dc.calls("trigger_typing") >= 1, "a typing indicator while the model answered");
    assert!(sent[1].content.contains("bob") || sent[1].content.to_lowercase().contains("role"), "{:?}", contents(&sent));
    let bodies: Vec<String> = llm.requests().iter().map(|r| r.body.to_string()).collect();
    assert_eq!(bodies.iter().filter(|b| b.contains("what is up?")).count(), 1);
    assert!(!bodies.iter().any(|b| b.contains("<@")), "the mention markup is not sent to the model");
    assert!(!bodies.iter().any(|b| b.contains("among ourselves") || b.contains("from a bot")), "unmentioned and bot text never reach it");

    // DMs work without a mention.
    llm.push([Step::Reply("A private answer".into())]);
    dc.push_message("600", None, bob.clone(), "hi there");
    let dm = wait_for(&dc, "600", 1).await;
    assert_eq!(dm[0].content, "A private answer");
    // A last command in the guild channel: its answer comes after any to the messages before it (one chat, in order).
    dc.push_message("500", Some(GUILD), bob.clone(), "/help");
    let sent = wait_for(&dc, "500", 3).await;
    assert!(sent[2].content.starts_with("Commands:"), "nothing else was answered: {:?}", contents(&sent));
    assert_eq!(sent.len(), 3, "nothing else was answered: {:?}", contents(&sent));
    assert_eq!(inbox_count(&d), 6, "the command, four human guild messages (not the bot's) and the DM");
    assert!(!d.log().contains("TEST-discord-token"), "the token never reaches the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_saved_under_the_workspace_within_the_size_limit() {
    let dc = FakeDiscord::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = env(&dc, None);
    e.push(("AGENT_RUNTIME_ATTACHMENT_MAX_BYTES", "1000".into()));
    let d = start(dir.path(), &dc, &e).await;
    link_people(&d).await;
    let ann = Author::user("100000000000000001", "ann");
    let id = dc.push_message_with_attachment("700", None, ann.clone(), "", "notes.md", "text/markdown", b"# Notes\n- ship it\n");
    let reply = wait_for(&dc, "700", 1).await;
    let text = &reply[0].content;
    let rel = text.strip_prefix("Attachment saved: `").and_then(|r| r.strip_suffix('`')).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(rel, format!("inbox/discord/700/{id}-notes.md"));
    let (_, ctxs) = d.get("/api/v1/contexts?connector=discord").await;
    let ws = ctxs["items"][0]["workspace_id"].as_str().expect("workspace").to_string();
    let saved = std::fs::read(d.data().join("workspaces").join(&ws).join(rel)).expect("saved file");
    assert_eq!(saved, b"# Notes\n- ship it\n");

    dc.push_message_with_attachment("700", None, ann, "/help", "big.bin", "application/octet-stream", &[7u8; 5000]);
    let reply = wait_for(&dc, "700", 2).await;
    let text = &reply[1].content;
    assert!(text.starts_with("Commands:"), "the text is the command: {text}");
    assert!(text.contains("Attachment not saved: big.bin") && text.contains("over the 0.0 MiB limit"), "{text}");
}

/// Issue 14: files were downloaded before any rule was checked. A file in
/// a guild channel that does not mention the bot is never fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_a_guild_channel_is_fetched_only_when_the_bot_is_mentioned() {
    let dc = FakeDiscord::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path(), &dc, &env(&dc, None)).await;
    link_people(&d).await;
    let bob = Author::user("100000000000000002", "bob");
    dc.push_message_with_attachment("710", Some(GUILD), bob.clone(), "look at this", "chatter.md", "text/markdown", b"# chatter");
    let mention = format!("<@{BOT_ID}> keep this");
    let id = dc.push_message_with_attachment("710", Some(GUILD), bob, &mention, "notes.md", "text/markdown", b"# for the bot");
    let reply = wait_for(&dc, "710", 1).await;
    assert!(reply[0].content.contains(&format!("Attachment saved: `inbox/discord/710/{id}-notes.md`")), "{}", reply[0].content);
    wait_until("both messages stored", Duration::from_secs(10), || async { (inbox_count(&d) == 2).then_some(()) }).await;
    assert_eq!(dc.calls("download"), 1, "only the mentioned message's file was fetched");
    // Per chat in order: the unmentioned message was handled before the reply above.
    assert_eq!(dc.sent().iter().filter(|s| s.channel_id == "710").count(), 1, "the unmentioned file got no reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_buttons_run_the_action_once_and_a_second_press_is_refused() {
    let dc = FakeDiscord::start(TOKEN).await;
    let (hook, calls) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path(), &dc, &env(&dc, None)).await;
    let (boss, eve) = (Author::user("100000000000000001", "boss"), Author::user("100000000000000666", "eve"));
    d.link("discord", &boss.id, "admin").await;
    dc.push_message("800", Some(GUILD), boss.clone(), "/admin-channel enable");
    let ok = wait_for(&dc, "800", 1).await;
    assert!(ok[0].content.to_lowercase().contains("admin"), "{:?}", contents(&ok));

    let body = json!({"connector": "discord", "external_id": "555", "action_type": "webhook",
        "target": hook, "summary": "notify the deploy channel", "payload": {"text": "deploy v2"}});
    let (s, a) = d.post("/api/v1/approvals", &body).await;
    assert_eq!(s, 201, "{a}");
    let id = a["id"].as_str().expect("id").to_string();
    let notice = wait_for(&dc, "800", 2).await.pop().expect("notice");
    let row = &notice.components.as_ref().expect("buttons")[0];
    assert_eq!(row["type"], 1);
    assert_eq!(row["components"][0]["custom_id"], json!(format!("approve:{id}")));
    assert_eq!(row["components"][1]["custom_id"], json!(format!("deny:{id}")));

    // A non-admin's press is refused like the command would be, and nothing runs.
    dc.push_interaction_component("800", Some(GUILD), eve.clone(), &notice.message_id, &format!("approve:{id}"));
    let refused = wait_for(&dc, "800", 3).await.pop().expect("refusal");
    assert!(refused.content.starts_with("Access denied"), "{}", refused.content);
    assert!(dc.edits().is_empty(), "a refusal does not replace the request");

    dc.push_interaction_component("800", Some(GUILD), boss.clone(), &notice.message_id, &format!("approve:{id}"));
    let edit = wait_until("the request edited with the outcome", Duration::from_secs(10), || async { dc.edits().into_iter().next() }).await;
    assert_eq!(edit.message_id, notice.message_id);
    assert!(edit.content.as_deref().unwrap_or_default().contains("approved and run"), "{edit:?}");
    assert_eq!(edit.components, Some(json!([])), "the buttons are gone");
    assert!(dc.interaction_responses().iter().all(|r| r.kind == 6), "presses are acknowledged as deferred updates");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    dc.push_interaction_component("800", Some(GUILD), boss.clone(), &notice.message_id, &format!("approve:{id}"));
    let again = wait_for(&dc, "800", 4).await.pop().expect("second press answered");
    assert!(again.content.contains("not pending") || again.content.contains("already"), "{}", again.content);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "executed exactly once");
    let (_, a) = d.get(&format!("/api/v1/approvals/{id}")).await;
    assert_eq!((a["status"].as_str(), a["execution_status"].as_str()), (Some("approved"), Some("succeeded")), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_answers_are_split_at_2000_characters_and_a_429_is_honoured() {
    let dc = FakeDiscord::start(TOKEN).await;
    let llm = FakeLlm::start().await;
    let paragraph = format!("{}.", "All work and no play makes a dull bot ".repeat(12).trim_end());
    let long = [paragraph.as_str(); 8].join("\n\n"); // 3,630 characters: 3 parts of 3 paragraphs at most
    llm.push([Step::Reply(long.clone())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path(), &dc, &env(&dc, Some(&llm))).await;
    link_people(&d).await;
    // The first part goes; the second is refused once with a 429 of 1.5 s.
    dc.fail_next("create_message", 1, Fault::Pass);
    dc.fail_next("create_message", 1, Fault::RateLimited { retry_after_secs: 1.5, global: false });
    let started = Instant::now();
    dc.push_message("900", None, Author::user("100000000000000001", "ann"), "tell me a long story");
    let parts = wait_for(&dc, "900", 2).await;
    assert!(started.elapsed() >= Duration::from_millis(1500), "the 429 wait was honoured");
    assert_eq!(parts.len(), 2, "{:?}", parts.iter().map(|p| p.content.chars().count()).collect::<Vec<_>>());
    for p in &parts {
        assert!(p.content.chars().count() <= 2000);
        assert!(p.content.ends_with('.'), "split at a paragraph");
    }
    let joined: Vec<&str> = parts.iter().flat_map(|p| p.content.split_whitespace()).collect();
    assert!(joined == long.split_whitespace().collect::<Vec<_>>(), "every word once, in order");
    let (status, attempts, parts_sent): (String, i64, i64) = d
        .db()
        .query_row("SELECT status, attempts, parts_sent FROM outbox WHERE connector = 'discord' ORDER BY id DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("row");
    assert_eq!((status.as_str(), attempts, parts_sent), ("sent", 1, 1), "the 429 is not an attempt; the first part was not resent");
    let posts: Vec<u16> =
        dc.requests_log().iter().filter(|(_, m, p, _)| m == "POST" && p.ends_with("/channels/900/messages")).map(|r| r.3).collect();
    assert_eq!(posts, [200, 429, 200], "one retry, after the wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_fail_the_message_with_the_reason() {
    let dc = FakeDiscord::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path(), &dc, &env(&dc, None)).await;
    dc.missing_channel("31");
    dc.push_message("31", None, Author::user("100000000000000001", "ann"), "/help");
    let db = d.db();
    let failed: String = wait_until("the reply marked failed", Duration::from_secs(10), || async {
        db.query_row("SELECT last_error FROM outbox WHERE external_id = '31' AND status = 'failed'", [], |r| r.get(0)).ok()
    })
    .await;
    assert!(failed.contains("Unknown Channel") && failed.contains("10003"), "{failed}");
    let attempts: i64 = db.query_row("SELECT attempts FROM outbox WHERE external_id = '31'", [], |r| r.get(0)).expect("row");
    assert_eq!(attempts, 1, "a permanent error is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_without_losing_or_repeating_a_message() {
    let dc = FakeDiscord::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path(), &dc, &env(&dc, None)).await;
    let ann = Author::user("100000000000000001", "ann");
    dc.push_message("1000", None, ann.clone(), "/help");
    wait_for(&dc, "1000", 1).await;
    dc.drop_connection();
    // Sent while the socket is down: replayed on RESUME.
    dc.push_message("1000", None, ann.clone(), "/whoami");
    dc.push_message("1000", None, ann.clone(), "/status");
    let sent = wait_for(&dc, "1000", 3).await;
    assert_eq!((dc.identifies(), dc.resumes()), (1, 1), "resumed, not re-identified");
    assert!(sent[0].content.starts_with("Commands:"));
    // A last message: answered after any repeat of the three before it would have been.
    dc.push_message("1000", None, ann.clone(), "/help");
    let sent_now = wait_for(&dc, "1000", 4).await;
    assert_eq!(sent_now.len(), 4, "each message answered once: {:?}", contents(&sent_now));
    assert!(sent_now[3].content.starts_with("Commands:"), "{:?}", contents(&sent_now));
    assert_eq!(inbox_count(&d), 4);
}

/// Heartbeats carry the last sequence number; a connection whose heartbeats
/// go unacknowledged is taken for dead and RESUMEd; op 7 RECONNECT too. No
/// message is lost or repeated, and the session is never re-identified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombied_connection_and_a_reconnect_request_are_resumed() {
    let dc = FakeDiscord::start(TOKEN).await;
    dc.set_heartbeat_interval_ms(150);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path(), &dc, &env(&dc, None)).await;
    let ann = Author::user("100000000000000001", "ann");
    dc.push_message("1000", None, ann.clone(), "/help");
    wait_for(&dc, "1000", 1).await;
    // READY is 1, the message 2: a heartbeat after it says 2.
    wait_until("a heartbeat with the sequence number", Duration::from_secs(5), || async {
        dc.gateway_ops().iter().any(|(op, d)| *op == 1 && d.as_u64() == Some(2)).then_some(())
    })
    .await;

    dc.mute_heartbeat_acks(true);
    wait_until("a RESUME after unacknowledged heartbeats", Duration::from_secs(5), || async { (dc.resumes() >= 1).then_some(()) }).await;
    dc.mute_heartbeat_acks(false);
    dc.push_message("1000", None, ann.clone(), "/whoami");
    wait_for(&dc, "1000", 2).await;

    let resumed = dc.resumes();
    dc.send_reconnect();
    dc.push_message("1000", None, ann.clone(), "/status");
    let sent = wait_for(&dc, "1000", 3).await;
    assert_eq!(dc.resumes(), resumed + 1, "op 7: one more RESUME");
    assert_eq!(dc.identifies(), 1, "never a new session");
    assert_eq!(sent.len(), 3, "each message answered once: {:?}", contents(&sent));
    assert_eq!(inbox_count(&d), 3);
}

/// A token Discord refuses (close 4004) cannot be fixed by retrying: the
/// connector says so in health and backs off instead of reconnecting at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_and_retried_only_after_a_backoff() {
    let dc = FakeDiscord::start("a-different-token").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &env(&dc, None)).await;
    let c = wait_until("the Discord connector degraded", Duration::from_secs(15), || async {
        let (_, hb) = d.get("/api/v1/heartbeat").await;
        let c = hb["components"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "discord").cloned())?;
        (c["state"] == "degraded").then_some(c)
    })
    .await;
    let said = format!("{} {}", c["message"], c["error"]);
    assert!(said.contains("rejected the bot token (AGENT_RUNTIME_DISCORD_TOKEN)"), "{c}");
    assert!(said.contains("; reconnecting in "), "with the backoff's wait: {c}");
    // 2 s, then 4 s: at most two tries in the first 3 s (reconnecting at once would be dozens).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let identifies = dc.gateway_ops().iter().filter(|(op, _)| *op == 2).count();
    assert!((1..=2).contains(&identifies), "{identifies} IDENTIFYs in 3 s");
    assert!(!d.log().contains(TOKEN), "the token is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resume_catches_up_from_history_and_a_crash_answers_once() {
    let dc = FakeDiscord::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let e = env(&dc, None);
    let mut d = start(dir.path(), &dc, &e).await;
    link_people(&d).await;
    let ann = Author::user("100000000000000001", "ann");
    dc.push_message("1100", Some(GUILD), ann.clone(), "/help");
    wait_for(&dc, "1100", 1).await;

    // The session is lost: the RESUME is refused (op 9) and the daemon IDENTIFYs again; what was said meanwhile
    // reaches the bot only through history.
    dc.invalidate_session();
    dc.drop_connection();
    dc.push_message("1100", Some(GUILD), ann.clone(), "/whoami");
    let sent = wait_for(&dc, "1100", 2).await;
    assert_eq!(dc.identifies(), 2, "a second IDENTIFY after the refused RESUME");
    assert!(sent[1].content.contains("ann") || sent[1].content.to_lowercase().contains("role"), "{:?}", contents(&sent));
    assert!(dc.calls("get_messages") >= 1, "caught up through REST history");

    // Down hard: what is said while the runtime is gone is answered once after it starts again. (Killed only
    // once the answers so far are marked sent; a kill between Discord taking a message and the outbox marking
    // it sent is the nonce test's case.)
    let db = d.db();
    wait_until("the answers marked sent", Duration::from_secs(10), || async {
        let pending: i64 =
            db.query_row("SELECT COUNT(*) FROM outbox WHERE external_id = '1100' AND status != 'sent'", [], |r| r.get(0)).ok()?;
        (pending == 0).then_some(())
    })
    .await;
    d.kill9();
    dc.push_message("1100", Some(GUILD), ann.clone(), "/status");
    dc.push_message("1100", Some(GUILD), ann.clone(), "ignored: no mention in a guild");
    let d = start(dir.path(), &dc, &e).await;
    let sent = wait_for(&dc, "1100", 3).await;
    assert!(sent[2].content.contains("Workspace") || sent[2].content.contains("workspace"), "{:?}", contents(&sent));
    assert_eq!(inbox_count(&d), 4, "every message stored once");
    // Stopped only once that answer is marked sent, as above.
    let db = d.db();
    wait_until("the answers marked sent", Duration::from_secs(10), || async {
        let pending: i64 =
            db.query_row("SELECT COUNT(*) FROM outbox WHERE external_id = '1100' AND status != 'sent'", [], |r| r.get(0)).ok()?;
        (pending == 0).then_some(())
    })
    .await;
    drop(d);
    let d = start(dir.path(), &dc, &e).await;
    // Answered after the catch-up of this start, so after any repeat it could have caused.
    dc.push_message("1100", Some(GUILD), ann.clone(), "/whoami");
    let sent = wait_for(&dc, "1100", 4).await;
    assert_eq!(sent.len(), 4, "nothing answered twice after another restart: {:?}", contents(&sent));
    assert!(sent[3].content.contains("ann") || sent[3].content.to_lowercase().contains("role"), "{:?}", contents(&sent));
    assert_eq!(inbox_count(&d), 5, "the four before, stored once, and the last");
}

/// Exactly once across a crash: Discord took the answer but the daemon was killed
/// before it heard back (so before the outbox marked it sent). The restarted
/// daemon sends it again with the same nonce and `enforce_nonce`, and Discord
/// answers with the message it already made: the channel shows it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_discord_taking_an_answer_and_the_outbox_marking_it_sent_posts_it_once() {
    let dc = FakeDiscord::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let e = env(&dc, None);
    let mut d = start(dir.path(), &dc, &e).await;
    dc.fail_next("create_message", 1, Fault::TakenNoAnswer);
    dc.push_message("1200", None, Author::user("100000000000000001", "ann"), "/help");
    let taken = wait_for(&dc, "1200", 1).await;
    assert!(taken[0].content.starts_with("Commands:"), "{:?}", contents(&taken));
    let status: String =
        d.db().query_row("SELECT status FROM outbox WHERE external_id = '1200'", [], |r| r.get(0)).expect("the answer's outbox row");
    assert_ne!(status, "sent", "killed before the outbox heard back");
    d.kill9();

    let d = start(dir.path(), &dc, &e).await;
    let db = d.db();
    wait_until("the answer marked sent after the restart", Duration::from_secs(15), || async {
        let s: String = db.query_row("SELECT status FROM outbox WHERE external_id = '1200'", [], |r| r.get(0)).ok()?;
        (s == "sent").then_some(())
    })
    .await;
    let posts = dc.requests_log().iter().filter(|(_, m, p, _)| m == "POST" && p.ends_with("/channels/1200/messages")).count();
    assert_eq!(posts, 2, "sent again after the restart");
    assert_eq!(dc.nonce_hits(), 1, "Discord recognised the resend by its nonce");
    let history = dc.history("1200");
    let answers = history.iter().filter(|m| m["author"]["id"] == BOT_ID).count();
    assert_eq!(answers, 1, "the channel shows the answer once: {history:?}");
    assert_eq!(dc.sent().iter().filter(|s| s.channel_id == "1200").count(), 1);
    let platform_id: String =
        db.query_row("SELECT platform_message_id FROM outbox WHERE external_id = '1200'", [], |r| r.get(0)).expect("platform id");
    assert_eq!(platform_id, taken[0].message_id, "the row points at the one message");
}

fn outbound(channel: &str, body: &str, reply_to: Option<String>, parts_sent: u32) -> OutboundMessage {
    OutboundMessage {
        id: OutboxId(1),
        chat: ChatRef { connector: "discord".into(), external_id: channel.into() },
        kind: MessageKind::Reply,
        body: body.into(),
        status: OutboxStatus::Pending,
        attempts: 0,
        last_error: None,
        platform_message_id: None,
        task_id: None,
        trace_id: None,
        created_at: 0,
        options: OutboundOptions { reply_to, ..Default::default() },
        parts_sent,
    }
}

/// The publisher alone, against the fake: a long answer to a slash command edits the
/// deferred response, continues in followups, resumes after a 429 without repeating a
/// part, and falls back to a channel message once the interaction token is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_answer_to_a_slash_command_continues_in_followups_and_survives_an_expired_token() {
    let dc = FakeDiscord::start(TOKEN).await;
    let rest = DiscordRest::new(&dc.base_url(), TOKEN).expect("client");
    let publisher = DiscordPublisher::new(rest.clone());
    let (id, token) = dc.push_interaction_command("950", None, Author::user("100000000000000001", "ann"), "help", vec![]);
    rest.call(reqwest::Method::POST, &format!("interactions/{id}/{token}/callback"), json!({"type": 5}), false).await.expect("deferred");
    let paragraph = format!("{}.", "All work and no play makes a dull bot ".repeat(12).trim_end());
    let long = [paragraph.as_str(); 8].join("\n\n");
    let marker = format!("{INTERACTION_PREFIX}{}:{token}", crate::support::discord::APP_ID);

    dc.fail_next("create_followup", 1, Fault::RateLimited { retry_after_secs: 2.0, global: false });
    let err = publisher.publish(&outbound("950", &long, Some(marker.clone()), 0)).await.expect_err("429 on the followup");
    assert_eq!((err.parts_sent, err.retry_after), (1, Some(Duration::from_secs(2))), "{err:?}");
    assert_eq!(dc.edits().len(), 1, "part one edited the deferred response");
    assert!(dc.edits()[0].content.as_deref().is_some_and(|c| c.chars().count() <= 2000 && c.ends_with('.')));
    publisher.publish(&outbound("950", &long, Some(marker.clone()), err.parts_sent)).await.expect("the rest");
    assert_eq!((dc.calls("edit_original"), dc.sent().len()), (1, 1), "part one was not sent again; part two is a followup");
    assert!(dc.sent()[0].interaction_token.is_some());

    // A token Discord no longer knows (expired after 15 minutes): a plain message instead.
    let stale = format!("{INTERACTION_PREFIX}{}:not-a-live-token", crate::support::discord::APP_ID);
    publisher.publish(&outbound("950", "late answer", Some(stale), 0)).await.expect("fallback");
    let last = dc.sent().pop().expect("sent");
    assert_eq!((last.content.as_str(), last.interaction_token.is_none()), ("late answer", true));
    // Not a channel id at all: refused for good, nothing sent.
    let bad = publisher.publish(&outbound("../etc", "x", None, 0)).await.expect_err("refused");
    assert!(!bad.retryable && bad.message.contains("not a Discord channel id"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_go_to_each_configured_guild_and_a_bad_guild_list_is_refused() {
    let dc = FakeDiscord::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = env(&dc, None);
    e.push(("AGENT_RUNTIME_DISCORD_COMMAND_GUILD_IDS", format!("{GUILD}, 300000000000000002")));
    let _d = start(dir.path(), &dc, &e).await;
    let synced = wait_until("commands in both guilds", Duration::from_secs(10), || async {
        let c = dc.commands();
        (c.len() >= 2).then_some(c)
    })
    .await;
    let guilds: Vec<Option<&str>> = synced.iter().map(|(g, _)| g.as_deref()).collect();
    assert_eq!(guilds, [Some(GUILD), Some("300000000000000002")], "per guild, never global");

    let other = tempfile::tempdir().expect("tempdir");
    let bad = crate::support::daemon::command(other.path(), &[("AGENT_RUNTIME_DISCORD_COMMAND_GUILD_IDS", "12,abc".into())])
        .args(["config", "check"])
        .output()
        .expect("run agent-runtime");
    let out = format!("{}{}", String::from_utf8_lossy(&bad.stdout), String::from_utf8_lossy(&bad.stderr));
    assert!(!bad.status.success(), "{out}");
    assert!(out.contains("\"abc\" is not a Discord guild id"), "{out}");
}
