//! The Telegram connector through the real binary against the fake Bot API:
//! commands, mention rules, attachments, approval buttons, splitting, rate
//! limits, permanent errors, a second poller (409) and crashes at each step.

use crate::approvals::receiver;
use crate::support::daemon::Daemon;
use crate::support::llm::{FakeLlm, Step, llm_env};
use crate::support::telegram::{Chat, FakeTelegram, Fault, Sent, User};
use crate::support::wait_until;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TOKEN: &str = "123456:TEST-telegram-token";

fn env(tg: &FakeTelegram, llm: Option<&FakeLlm>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AGENT_RUNTIME_TELEGRAM_TOKEN", TOKEN.to_string()),
        ("AGENT_RUNTIME_TELEGRAM_API_BASE", tg.base_url().to_string()),
        ("AGENT_RUNTIME_TELEGRAM_POLL_SECONDS", "2".into()),
        ("AGENT_RUNTIME_OUTBOX_RETRY_BASE_SECONDS", "1".into()),
    ];
    env.extend(llm_env(llm));
    env
}

fn texts(sent: &[Sent]) -> Vec<&str> {
    sent.iter().map(|s| s.text.as_str()).collect()
}

/// Waits until chat `chat` has received `n` messages; returns them.
async fn wait_for(tg: &FakeTelegram, chat: i64, n: usize) -> Vec<Sent> {
    wait_until(&format!("{n} message(s) to chat {chat}"), Duration::from_secs(15), || async {
        let s = tg.sent_to(chat);
        (s.len() >= n).then_some(s)
    })
    .await
}

async fn component(d: &Daemon, name: &str) -> Value {
    let (_, hb) = d.get("/api/v1/heartbeat").await;
    hb["components"].as_array().and_then(|c| c.iter().find(|c| c["name"] == name).cloned()).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_round_trip_with_the_menu_published_and_group_mention_rules() {
    let tg = FakeTelegram::start(TOKEN).await;
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &env(&tg, Some(&llm))).await;
    // Strangers may only pair (issue 14): the people here are linked members.
    d.link("telegram", "4242", "member").await;
    d.link("telegram", "51", "member").await;

    let (dm, ann) = (Chat::private(4242), User::new(4242, "Ann"));
    tg.push_message(dm.clone(), ann.clone(), "/task water the plants");
    let reply = wait_for(&tg, 4242, 1).await;
    assert!(reply[0].text.starts_with("Task queued: `"), "{:?}", texts(&reply));
    assert_eq!(reply[0].parse_mode, None, "plain text: agent output can never fail to parse");
    assert_eq!(reply[0].reply_to, None, "private chats are not threaded");

    let menu = tg.commands().expect("setMyCommands at start");
    let names: Vec<&str> = menu.iter().map(|(n, _)| n.as_str()).collect();
    for n in ["help", "task", "approve_action", "deny_action", "pending_actions"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }

    // Groups: commands addressed to us (or to nobody) are answered, to another bot ignored;
    // free text reaches the LLM only when it mentions the bot.
    let group = Chat::group(-100777, "Ops");
    let bob = User::new(51, "Bob");
    // (The answer takes a moment: the chat sees "typing" meanwhile.)
    llm.push([Step::Delayed(Duration::from_millis(600), "Hello from the model".into())]);
    let typing_before = tg.calls("sendChatAction");
    tg.push_message(group.clone(), bob.clone(), "/help@other_bot");
    tg.push_message(group.clone(), bob.clone(), "just chatting among ourselves");
    let mention = tg.push_message(group.clone(), bob.clone(), "@agent_test_bot what is up?");
    tg.push_message(group.clone(), bob.clone(), "/whoami@agent_test_bot");
    let sent = wait_for(&tg, -100777, 2).await;
    assert_eq!(sent[0].text, "Hello from the model", "{:?}", texts(&sent));
    assert!(sent[0].reply_to.is_some(), "group replies answer the message");
    assert!(tg.calls("sendChatAction") > typing_before, "a typing indicator while the model answered");
    assert!(sent[1].text.contains("Bob") || sent[1].text.to_lowercase().contains("role"), "{:?}", texts(&sent));
    // (The DM's task asks the model too; free text in the group only with the mention.)
    let asked: Vec<String> = llm.requests().iter().map(|r| r.body.to_string()).collect();
    assert_eq!(asked.iter().filter(|b| b.contains("what is up?")).count(), 1);
    assert!(!asked.iter().any(|b| b.contains("among ourselves")), "unmentioned group text never reaches the LLM");
    assert!(mention > 0);
    // The chat's updates were all confirmed (acknowledged only after they were stored).
    wait_until("updates confirmed", Duration::from_secs(10), || async { (tg.pending_updates() == 0).then_some(()) }).await;
    assert_eq!(tg.sent_to(-100777).len(), 2, "nothing else was answered");
    let db = d.db();
    let stored: i64 = db.query_row("SELECT COUNT(*) FROM inbox WHERE connector = 'telegram'", [], |r| r.get(0)).expect("count");
    assert_eq!(stored, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_saved_under_the_workspace_within_the_size_limit() {
    let tg = FakeTelegram::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = env(&tg, None);
    e.push(("AGENT_RUNTIME_ATTACHMENT_MAX_BYTES", "1000".into()));
    let d = Daemon::start(dir.path(), &e).await;
    let (chat, ann) = (Chat::private(77), User::new(77, "Ann"));
    d.link("telegram", "77", "member").await;

    tg.push_document(chat.clone(), ann.clone(), "../../Meeting notes.md", "text/markdown", b"# Notes\n- ship it\n".to_vec(), None);
    let reply = wait_for(&tg, 77, 1).await;
    let text = &reply[0].text;
    let rel = text.strip_prefix("Attachment saved: `").and_then(|r| r.strip_suffix('`')).unwrap_or_else(|| panic!("{text}"));
    assert!(rel.starts_with("inbox/telegram/77/") && rel.ends_with("-Meeting_notes.md"), "{rel}");
    let (_, ctxs) = d.get("/api/v1/contexts?connector=telegram").await;
    let ws = ctxs["items"][0]["workspace_id"].as_str().expect("workspace").to_string();
    let saved = std::fs::read(d.data().join("workspaces").join(&ws).join(rel)).expect("saved file");
    assert_eq!(saved, b"# Notes\n- ship it\n");

    tg.push_photo(chat.clone(), ann.clone(), vec![7u8; 5000], Some("/help"));
    let reply = wait_for(&tg, 77, 2).await;
    let text = &reply[1].text;
    assert!(text.starts_with("Commands:"), "the caption is the command: {text}");
    assert!(text.contains("Attachment not saved: photo-") && text.contains("over the 0.0 MiB limit"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_buttons_run_the_action_once_and_a_second_press_is_refused() {
    let tg = FakeTelegram::start(TOKEN).await;
    let (hook, calls) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &env(&tg, None)).await;
    let (admins, boss, eve) = (Chat::group(-1001, "Admins"), User::new(1, "Boss"), User::new(666, "Eve"));
    d.link("telegram", "1", "admin").await;
    tg.push_message(admins.clone(), boss.clone(), "/admin-channel enable");
    let ok = wait_for(&tg, -1001, 1).await;
    assert!(ok[0].text.to_lowercase().contains("admin"), "{:?}", texts(&ok));

    let body = json!({"connector": "telegram", "external_id": "555", "action_type": "webhook",
        "target": hook, "summary": "notify the deploy channel", "payload": {"text": "deploy v2"}});
    let (s, a) = d.post("/api/v1/approvals", &body).await;
    assert_eq!(s, 201, "{a}");
    let id = a["id"].as_str().expect("id").to_string();
    let notice = wait_for(&tg, -1001, 2).await.pop().expect("notice");
    let buttons = &notice.reply_markup.as_ref().expect("inline keyboard")["inline_keyboard"][0];
    assert_eq!(buttons[0], json!({"text": "Approve", "callback_data": format!("approve:{id}")}));
    assert_eq!(buttons[1], json!({"text": "Deny", "callback_data": format!("deny:{id}")}));
    let requester = wait_for(&tg, 555, 1).await;
    assert!(requester[0].reply_markup.is_none(), "the requester's chat is not an admin chat: no buttons");

    // A non-admin pressing is refused like the command would be, and nothing runs.
    tg.push_callback(admins.clone(), eve.clone(), notice.message_id, &format!("approve:{id}"));
    let refused = wait_for(&tg, -1001, 3).await.pop().expect("refusal");
    assert!(refused.text.starts_with("Access denied"), "{}", refused.text);
    assert!(tg.edits().is_empty(), "a refusal does not replace the request");

    let (_, cb) = tg.push_callback(admins.clone(), boss.clone(), notice.message_id, &format!("approve:{id}"));
    let edit = wait_until("the request edited with the outcome", Duration::from_secs(10), || async { tg.edits().into_iter().next() }).await;
    assert_eq!((edit.chat_id, edit.message_id), (-1001, notice.message_id));
    assert!(edit.text.contains("approved and run"), "{}", edit.text);
    assert!(edit.reply_markup.is_none(), "the buttons are gone");
    assert!(tg.callback_answers().iter().any(|(q, _)| *q == cb), "the press was acknowledged");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A second press (another admin chat's copy, or a stale client) runs nothing.
    tg.push_callback(admins.clone(), boss.clone(), notice.message_id, &format!("approve:{id}"));
    let again = wait_for(&tg, -1001, 4).await.pop().expect("second press answered");
    assert!(again.text.contains("not pending") || again.text.contains("already"), "{}", again.text);
    tg.push_callback(admins.clone(), boss.clone(), notice.message_id, "approve:act_$(rm -rf)");
    let junk = wait_for(&tg, -1001, 5).await.pop().expect("junk press answered");
    assert_eq!(junk.text, "That button is no longer valid.");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "executed exactly once");
    let (_, a) = d.get(&format!("/api/v1/approvals/{id}")).await;
    assert_eq!((a["status"].as_str(), a["execution_status"].as_str()), (Some("approved"), Some("succeeded")), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_replies_are_split_at_the_limit_and_rate_limits_are_honoured() {
    let tg = FakeTelegram::start(TOKEN).await;
    let llm = FakeLlm::start().await;
    let paragraph = format!("{}.", "All work and no play makes a dull bot ".repeat(30).trim_end());
    let long = [paragraph.as_str(); 10].join("\n\n"); // 11,420 characters: 4 parts of 3 paragraphs at most
    llm.push([Step::Reply(long.clone())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &env(&tg, Some(&llm))).await;
    d.link("telegram", "9", "member").await;
    // The second part is refused once with 429 retry_after=1: the rest waits, nothing is sent twice.
    tg.fail_nth("sendMessage", 2, Fault::RetryAfter(1));
    let started = Instant::now();
    tg.push_message(Chat::private(9), User::new(9, "Ann"), "tell me a long story");
    let first = wait_for(&tg, 9, 1).await;
    let parts = wait_for(&tg, 9, 4).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "the 429 wait was honoured");
    assert_eq!(first[0], parts[0]);
    assert_eq!(parts.len(), 4, "{:?}", parts.iter().map(|p| p.text.len()).collect::<Vec<_>>());
    for p in &parts {
        assert!(p.text.encode_utf16().count() <= 4096);
        assert!(p.text.ends_with('.'), "split at a paragraph: {:?}", &p.text[p.text.len() - 20..]);
    }
    let joined: Vec<&str> = parts.iter().flat_map(|p| p.text.split_whitespace()).collect();
    assert!(joined == long.split_whitespace().collect::<Vec<_>>(), "every word once, in order");
    // The fake has all four parts; the outbox records the delivery right after.
    let (status, attempts, parts_sent): (String, i64, i64) = wait_until("the reply recorded as sent", Duration::from_secs(10), || async {
        let row: (String, i64, i64) = d
            .db()
            .query_row("SELECT status, attempts, parts_sent FROM outbox WHERE connector = 'telegram' ORDER BY id DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("row");
        (row.0 != "pending").then_some(row)
    })
    .await;
    assert_eq!((status.as_str(), attempts, parts_sent), ("sent", 1, 1), "the 429 is not an attempt; the first part was not resent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_fail_the_message_with_the_reason() {
    let tg = FakeTelegram::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &env(&tg, None)).await;
    tg.fail_next("sendMessage", 1, Fault::Blocked);
    tg.push_message(Chat::private(31), User::new(31, "Gone"), "/help");
    let db = d.db();
    let failed: String = wait_until("the reply marked failed", Duration::from_secs(10), || async {
        db.query_row("SELECT last_error FROM outbox WHERE external_id = '31' AND status = 'failed'", [], |r| r.get(0)).ok()
    })
    .await;
    assert!(failed.contains("bot was blocked by the user"), "{failed}");
    assert!(tg.sent_to(31).is_empty());
    let attempts: i64 = db.query_row("SELECT attempts FROM outbox WHERE external_id = '31'", [], |r| r.get(0)).expect("row");
    assert_eq!(attempts, 1, "a permanent error is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_poller_is_reported_and_backed_off_not_looped() {
    let tg = FakeTelegram::start(TOKEN).await;
    tg.set_conflict(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &env(&tg, None)).await;
    let c = wait_until("telegram degraded", Duration::from_secs(10), || async {
        let c = component(&d, "telegram").await;
        (c["state"] == "degraded").then_some(c)
    })
    .await;
    assert!(c["error"].as_str().expect("error").contains("409 Conflict"), "{c}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let polls = tg.get_updates_log().iter().filter(|(_, _, status)| *status == 409).count();
    assert!((2..=3).contains(&polls), "backoff 5 s then 10 s: {polls} polls in about 6 s");
    tg.set_conflict(false);
    tg.push_message(Chat::private(5), User::new(5, "Ann"), "/help");
    wait_for(&tg, 5, 1).await;
    assert_eq!(component(&d, "telegram").await["state"], "healthy");
    assert!(d.log().contains("another client is polling this bot token"), "reported in the log");
    assert!(!d.log().contains("TEST-telegram-token"), "the token never reaches the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_storing_and_answering_answers_once_after_restart() {
    let tg = FakeTelegram::start(TOKEN).await;
    let llm = FakeLlm::start().await;
    llm.push([Step::Stall, Step::Reply("answered after the crash".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let e = env(&tg, Some(&llm));
    let mut d = Daemon::start(dir.path(), &e).await;
    d.link("telegram", "8", "member").await;
    let update = tg.push_message(Chat::private(8), User::new(8, "Ann"), "what happened?");
    llm.wait_for_requests(1, Duration::from_secs(10)).await;
    // Stored (and so confirmed to Telegram), not answered yet.
    wait_until("update confirmed", Duration::from_secs(10), || async { (tg.confirmed_offset() > update).then_some(()) }).await;
    d.kill9();
    let d = Daemon::start(dir.path(), &e).await;
    let sent = wait_for(&tg, 8, 1).await;
    assert_eq!(texts(&sent), vec!["answered after the crash"]);
    tg.push_message(Chat::private(8), User::new(8, "Ann"), "/help");
    let sent = wait_for(&tg, 8, 2).await;
    assert_eq!(sent.len(), 2, "the recovered message was answered once: {:?}", texts(&sent));
    assert!(d.log().contains("answering them now"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_answering_but_before_telegram_confirms_answers_once() {
    let tg = FakeTelegram::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let e = env(&tg, None);
    let mut d = Daemon::start(dir.path(), &e).await;
    // Every poll after the first batch fails, so Telegram never hears the batch was taken.
    let update = tg.push_message(Chat::private(12), User::new(12, "Ann"), "/help");
    tg.fail_next("getUpdates", 1000, Fault::RetryAfter(60));
    wait_for(&tg, 12, 1).await;
    assert!(tg.confirmed_offset() <= update, "not acknowledged to Telegram yet");
    assert_eq!(tg.pending_updates(), 1);
    d.kill9();
    tg.clear_faults();
    let _d = Daemon::start(dir.path(), &e).await;
    tg.push_message(Chat::private(12), User::new(12, "Ann"), "/whoami");
    let sent = wait_for(&tg, 12, 2).await;
    wait_until("all confirmed", Duration::from_secs(10), || async { (tg.pending_updates() == 0).then_some(()) }).await;
    assert_eq!(sent.len(), 2, "the first message was not answered again: {:?}", texts(&sent));
    assert!(sent[0].text.starts_with("Commands:"));
}

/// The files in chat `chat`'s attachment directory (hidden temp files included).
fn inbox_files(d: &Daemon, ws: &str, chat: i64) -> Vec<String> {
    let dir = d.data().join("workspaces").join(ws).join(format!("inbox/telegram/{chat}"));
    let mut names: Vec<String> =
        std::fs::read_dir(dir).map(|r| r.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()).unwrap_or_default();
    names.sort();
    names
}

async fn workspace_of(d: &Daemon, chat: i64) -> String {
    let (_, ctxs) = d.get("/api/v1/contexts?connector=telegram").await;
    let items = ctxs["items"].as_array().cloned().unwrap_or_default();
    let id = chat.to_string();
    let ctx = items.iter().find(|c| c["external_id"] == id.as_str()).unwrap_or_else(|| panic!("no context for {chat}: {ctxs}"));
    ctx["workspace_id"].as_str().expect("workspace").to_string()
}

/// Issue 14: attachments were downloaded whole into memory, with no quota.
/// A 50 MiB file against a 10 MiB chat quota is refused on its declared
/// size without a download, and, declared small, is cut off at the quota:
/// the daemon's peak memory does not take the file in, and nothing partial
/// stays on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_past_the_chat_quota_is_refused_without_taking_memory_or_disk() {
    let tg = FakeTelegram::start(TOKEN).await;
    tg.serve_big_files(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = env(&tg, None);
    e.push(("AGENT_RUNTIME_ATTACHMENT_MAX_BYTES", (100u64 << 20).to_string()));
    e.push(("AGENT_RUNTIME_ATTACHMENT_CHAT_QUOTA_BYTES", (10u64 << 20).to_string()));
    let d = Daemon::start(dir.path(), &e).await;
    let (chat, ann) = (Chat::private(91), User::new(91, "Ann"));
    d.link("telegram", "91", "member").await;

    // A small file first, so the download path has run once before the peak is read.
    tg.push_document(chat.clone(), ann.clone(), "small.txt", "text/plain", vec![b'a'; 1024], None);
    let first = wait_for(&tg, 91, 1).await;
    assert!(first[0].text.starts_with("Attachment saved: `inbox/telegram/91/"), "{}", first[0].text);
    let peak_before = d.status_kib("VmHWM:");
    let downloads = tg.downloads();

    let big = vec![7u8; 50 << 20];
    tg.push_document(chat.clone(), ann.clone(), "big.bin", "application/octet-stream", big.clone(), None);
    let text = wait_for(&tg, 91, 2).await[1].text.clone();
    assert!(
        text.contains("Attachment not saved: big.bin (50.0 MiB is over the chat's attachment quota: 10.0 MiB of 10.0 MiB left)"),
        "{text}"
    );
    assert_eq!(tg.downloads(), downloads, "refused on its declared size: never fetched");

    tg.push_document_declaring(chat.clone(), ann.clone(), "liar.bin", "application/octet-stream", big, 1024, None);
    let text = wait_for(&tg, 91, 3).await[2].text.clone();
    assert!(text.contains("Attachment not saved: liar.bin (it is over the chat's attachment quota"), "{text}");
    assert_eq!(tg.downloads(), downloads + 1, "declared small, so fetched, and stopped at the quota");

    let grew_mib = d.status_kib("VmHWM:").saturating_sub(peak_before) / 1024;
    assert!(grew_mib < 30, "peak memory grew by {grew_mib} MiB for a 50 MiB file: it was held in memory");
    let ws = workspace_of(&d, 91).await;
    let files = inbox_files(&d, &ws, 91);
    assert_eq!(files.len(), 1, "only small.txt, nothing partial: {files:?}");
    assert!(files[0].ends_with("-small.txt"), "{files:?}");
}

/// Issue 14: files were downloaded before any rule was checked. A file in a
/// group that does not mention the bot, or from a sender with no role, is
/// never fetched; a mentioned one from a member is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_fetched_only_for_messages_the_rules_let_through() {
    let tg = FakeTelegram::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = env(&tg, None);
    e.push(("AGENT_RUNTIME_GATEWAY_GUEST_ROLE", "none".into()));
    let d = Daemon::start(dir.path(), &e).await;
    d.link("telegram", "51", "member").await;
    let (group, bob) = (Chat::group(-100555, "Team"), User::new(51, "Bob"));

    tg.push_document(group.clone(), bob.clone(), "chatter.pdf", "application/pdf", b"%PDF-1 chatter".to_vec(), None);
    tg.push_document(
        group.clone(),
        bob.clone(),
        "for-you.pdf",
        "application/pdf",
        b"%PDF-1 for you".to_vec(),
        Some("@agent_test_bot keep this"),
    );
    let replies = wait_for(&tg, -100555, 1).await;
    assert!(replies[0].text.contains("Attachment saved: `inbox/telegram/-100555/"), "{}", replies[0].text);
    assert!(replies[0].text.contains("-for-you.pdf`"), "{}", replies[0].text);

    let stranger = User::new(66, "Eve");
    tg.push_document(Chat::private(66), stranger, "secret.pdf", "application/pdf", b"%PDF-1 secret".to_vec(), None);
    let refused = wait_for(&tg, 66, 1).await;
    assert!(refused[0].text.starts_with("Attachment not saved: secret.pdf (files are kept only for linked users"), "{}", refused[0].text);

    wait_until("updates confirmed", Duration::from_secs(10), || async { (tg.pending_updates() == 0).then_some(()) }).await;
    assert_eq!((tg.calls("getFile"), tg.downloads()), (1, 1), "only the mentioned member's file was fetched");
    assert_eq!(tg.sent_to(-100555).len(), 1, "the unmentioned file got no reply");
    let ws = workspace_of(&d, -100555).await;
    let files = inbox_files(&d, &ws, -100555);
    assert!(files.len() == 1 && files[0].ends_with("-for-you.pdf"), "{files:?}");
}
