//! Drives the fake over raw HTTP and with a real teloxide client.

use super::{BOT_USERNAME, Chat, FakeTelegram, Fault, User};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::requests::Requester;
use teloxide::types::{BotCommand, CallbackQueryId, MessageId, UpdateKind};
use teloxide::{ApiError, RequestError};

const TOKEN: &str = "123456:TEST-token";

async fn post(fake: &FakeTelegram, method: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/bot{TOKEN}/{method}", fake.base_url());
    let resp = reqwest::Client::new().post(url).json(&body).send().await.expect("post");
    (resp.status().as_u16(), resp.json().await.expect("json body"))
}

#[tokio::test]
async fn raw_http_follows_the_bot_api() {
    let fake = FakeTelegram::start(TOKEN).await;
    let http = reqwest::Client::new();
    let (status, me) = post(&fake, "getme", json!({})).await;
    assert_eq!(
        (status, me["result"]["username"].as_str(), me["result"]["has_main_web_app"].as_bool()),
        (200, Some(BOT_USERNAME), Some(false))
    );
    let wrong = http.post(format!("{}/botnope/getMe", fake.base_url())).send().await.expect("post");
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(
        post(&fake, "noSuchMethod", json!({})).await,
        (404, json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"}))
    );

    let ann = User::new(5, "Ann");
    let first = fake.push_message(Chat::private(5), ann.clone(), "/start@agent_test_bot hi 👋 @agent_test_bot");
    fake.push_message(Chat::group(-7, "Team"), ann.clone(), "plain");
    // Form-encoded body, no offset: everything pending.
    let form = http.post(format!("{}/bot{TOKEN}/GetUpdates", fake.base_url())).header("content-type", "application/x-www-form-urlencoded");
    let all: Value = form.body("limit=10").send().await.expect("post").json().await.expect("json");
    let all = all["result"].as_array().expect("updates").clone();
    assert_eq!(all.iter().map(|u| u["update_id"].as_i64()).collect::<Vec<_>>(), [Some(1000), Some(1001)]);
    assert_eq!(first, 1000);
    assert_eq!(
        all[0]["message"]["entities"],
        json!([{"type": "bot_command", "offset": 0, "length": 21}, {"type": "mention", "offset": 28, "length": 15}])
    );
    assert_eq!((all[1]["message"]["message_id"].as_i64(), all[1]["message"]["chat"]["type"].as_str()), (Some(1), Some("group")));
    // Query string: offset 1001 confirms 1000 for good.
    let q: Value =
        http.get(format!("{}/bot{TOKEN}/getUpdates?offset=1001", fake.base_url())).send().await.expect("get").json().await.expect("json");
    assert_eq!(q["result"].as_array().map(Vec::len), Some(1));
    let (_, again) = post(&fake, "getUpdates", json!({"offset": 1000})).await;
    assert_eq!(again["result"][0]["update_id"], json!(1001));
    assert_eq!((fake.confirmed_offset(), fake.pending_updates()), (1001, 1));

    // Long poll: held until an update arrives (two pollers both served), or `timeout` passes.
    let pusher = fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        pusher.push_message(Chat::private(5), User::new(5, "Ann"), "late");
    });
    let t0 = Instant::now();
    let poll = || post(&fake, "getUpdates", json!({"offset": 1002, "timeout": 5}));
    let ((_, late), (_, late2)) = tokio::join!(poll(), poll());
    assert_eq!((&late["result"][0]["message"]["text"], late == late2), (&json!("late"), true));
    assert!(t0.elapsed() >= Duration::from_millis(100) && t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let t0 = Instant::now();
    assert_eq!(post(&fake, "getUpdates", json!({"offset": 1003, "timeout": 1})).await, (200, json!({"ok": true, "result": []})));
    assert!(t0.elapsed() >= Duration::from_millis(950), "{:?}", t0.elapsed());
    let statuses: Vec<_> = fake.get_updates_log().iter().map(|(_, o, s)| (*o, *s)).collect();
    assert_eq!(statuses, [(None, 200), (Some(1001), 200), (Some(1000), 200), (Some(1002), 200), (Some(1002), 200), (Some(1003), 200)]);

    // Limits count UTF-16 code units; failures record nothing.
    let (status, e) = post(&fake, "sendMessage", json!({"chat_id": 5, "text": "😀".repeat(2049)})).await;
    assert_eq!((status, e["description"].as_str()), (400, Some("Bad Request: message is too long")));
    assert_eq!(post(&fake, "sendMessage", json!({"chat_id": 5, "text": " "})).await.0, 400);
    fake.fail_next("SendMessage", 1, Fault::RetryAfter(3));
    fake.fail_next("sendmessage", 1, Fault::Status(502, "Bad Gateway".into()));
    let (status, e) = post(&fake, "sendMessage", json!({"chat_id": 5, "text": "x"})).await;
    assert_eq!(
        (status, &e["parameters"], &e["description"]),
        (429, &json!({"retry_after": 3}), &json!("Too Many Requests: retry after 3"))
    );
    assert_eq!(post(&fake, "sendMessage", json!({"chat_id": 5, "text": "x"})).await.0, 502);
    assert!(fake.sent().is_empty());
    let (status, ok) =
        post(&fake, "sendMessage", json!({"chat_id": "5", "text": "😀".repeat(2048), "reply_parameters": {"message_id": 1}})).await;
    assert_eq!(
        (status, ok["result"]["message_id"].as_i64(), ok["result"]["reply_to_message"]["text"].as_str()),
        (200, Some(3), Some("/start@agent_test_bot hi 👋 @agent_test_bot"))
    );
    assert_eq!((fake.sent_to(5).len(), fake.sent_to(5)[0].reply_to, fake.calls("SENDMESSAGE")), (1, Some(1), 5));

    // Files: getFile, then download by path (plain or with an encoded slash).
    fake.push_document(Chat::private(5), ann.clone(), "a.pdf", "application/pdf", b"%PDF-1".to_vec(), None);
    let (_, ups) = post(&fake, "getUpdates", json!({"offset": 1003})).await;
    let file_id = ups["result"][0]["message"]["document"]["file_id"].clone();
    let (_, file) = post(&fake, "getFile", json!({"file_id": file_id})).await;
    let path = file["result"]["file_path"].as_str().expect("file_path");
    for p in [path.to_string(), path.replace('/', "%2F")] {
        let got = http.get(format!("{}/file/bot{TOKEN}/{p}", fake.base_url())).send().await.expect("download");
        assert_eq!(got.bytes().await.expect("bytes").as_ref(), b"%PDF-1");
    }
    let missing = http.get(format!("{}/file/bot{TOKEN}/documents/nope", fake.base_url())).send().await.expect("download");
    assert_eq!(missing.status().as_u16(), 404);

    // Held sends: recorded, never answered.
    fake.hold_sends(true);
    let held = http.post(format!("{}/bot{TOKEN}/sendMessage", fake.base_url())).json(&json!({"chat_id": 9, "text": "lost"}));
    assert!(held.timeout(Duration::from_millis(200)).send().await.is_err());
    assert_eq!(fake.sent_to(9)[0].text, "lost");
}

#[tokio::test]
async fn teloxide_round_trips() {
    let fake = FakeTelegram::start(TOKEN).await;
    let bot = Bot::new(TOKEN).set_api_url(fake.base_url().parse().expect("url"));
    let me = bot.get_me().await.expect("getMe");
    assert_eq!((me.username(), me.id), (BOT_USERNAME, UserId(777000)));
    let m = bot.send_message(ChatId(5), "hi").await.expect("sendMessage");
    assert_eq!((m.text(), m.id, m.from.as_ref().map(|u| u.is_bot)), (Some("hi"), MessageId(1), Some(true)));
    assert_eq!(fake.wait_sent(1, Duration::from_secs(2)).await[0].chat_id, 5);

    let ann = User::new(5, "Ann");
    let first = fake.push_message(Chat::group(-100, "Team"), ann.clone(), "/help");
    fake.push_document(Chat::private(5), ann.clone(), "notes.txt", "text/plain", b"hello file".to_vec(), Some("see"));
    fake.push_photo(Chat::private(5), ann.clone(), vec![7u8; 100], None);
    let (_, query_id) = fake.push_callback(Chat::private(5), ann.clone(), 1, "approve:1");
    let raw = fake.push_raw(json!({"brand_new_kind": {"x": 1}}));
    let ups = bot.get_updates().offset(first as i32).timeout(1).await.expect("getUpdates");
    assert_eq!(ups.len(), 5);
    let msg = |i: usize| match &ups[i].kind {
        UpdateKind::Message(m) => m.clone(),
        other => panic!("update {i} is not a message: {other:?}"),
    };
    assert_eq!((msg(0).text(), msg(0).chat.title()), (Some("/help"), Some("Team")));
    let doc = msg(1).document().expect("document").clone();
    assert_eq!((doc.file_name.as_deref(), msg(1).caption()), (Some("notes.txt"), Some("see")));
    let photo = msg(2).photo().expect("photo").to_vec();
    assert_eq!((photo.len(), photo[1].file.size), (2, 100));
    match &ups[3].kind {
        UpdateKind::CallbackQuery(q) => {
            assert_eq!((q.data.as_deref(), q.regular_message().and_then(|m| m.text())), (Some("approve:1"), Some("hi")))
        }
        other => panic!("not a callback query: {other:?}"),
    }
    assert!(matches!(&ups[4].kind, UpdateKind::Error(_)) && ups[4].id.0 as i64 == raw);

    let file = bot.get_file(doc.file.id).await.expect("getFile");
    let mut bytes = Vec::new();
    bot.download_file(&file.path, &mut bytes).await.expect("download");
    assert_eq!(bytes, b"hello file");

    let edited = bot.edit_message_text(ChatId(5), m.id, "hi, edited").await.expect("edit");
    assert_eq!((edited.text(), fake.edits().len()), (Some("hi, edited"), 1));
    let same = bot.edit_message_text(ChatId(5), m.id, "hi, edited").await;
    assert!(matches!(same, Err(RequestError::Api(ApiError::MessageNotModified))), "{same:?}");
    bot.answer_callback_query(CallbackQueryId(query_id.clone())).text("ok").await.expect("answer");
    assert!(bot.answer_callback_query(CallbackQueryId(query_id.clone())).await.is_err(), "a query is answered once");
    assert_eq!(fake.callback_answers(), [(query_id, Some("ok".to_string()))]);
    bot.set_my_commands([BotCommand::new("help", "Show help")]).await.expect("setMyCommands");
    assert!(bot.set_my_commands([BotCommand::new("Bad-Name", "x")]).await.is_err());
    assert_eq!(fake.commands(), Some(vec![("help".to_string(), "Show help".to_string())]));

    fake.fail_nth("sendMessage", 2, Fault::Blocked);
    fake.fail_nth("sendMessage", 1, Fault::RetryAfter(2));
    let r = bot.send_message(ChatId(5), "x").await;
    assert!(matches!(r, Err(RequestError::RetryAfter(s)) if s.seconds() == 2), "{r:?}");
    let r = bot.send_message(ChatId(5), "x").await;
    assert!(matches!(r, Err(RequestError::Api(ApiError::BotBlocked))), "{r:?}");
    fake.fail_nth("sendMessage", 2, Fault::ChatNotFound);
    fake.clear_faults();
    for _ in 0..2 {
        bot.send_message(ChatId(5), "after").await.expect("no fault left");
    }
    fake.set_conflict(true);
    let r = bot.get_updates().await;
    assert!(matches!(r, Err(RequestError::Api(ApiError::TerminatedByOtherGetUpdates))), "{r:?}");
    fake.set_conflict(false);
    let rest = bot.get_updates().offset(raw as i32 + 1).timeout(0).await.expect("getUpdates");
    assert!(rest.is_empty());
    assert_eq!((fake.confirmed_offset(), fake.pending_updates(), fake.sent().len()), (raw + 1, 0, 3));
}
