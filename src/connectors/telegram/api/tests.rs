//! The client against real Bot API answers (samples shaped as Telegram
//! sends them, with fields we do not read), its errors, and the
//! connector's reading of them.

use super::super::{addressed, classify, display_name};
use super::*;

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

fn me() -> Me {
    Me { id: 777000, username: "agent_test_bot".into() }
}

fn err(status: u16, body: &str) -> Error {
    match decode::<IgnoredAny>(status, body) {
        Ok(_) => panic!("{body} decoded as a success"),
        Err(e) => e,
    }
}

fn updates(body: &str) -> Vec<Update> {
    let values: Vec<Value> = decode(200, body).expect("a getUpdates answer");
    parse_updates(values)
}

fn message(u: &Update) -> &Message {
    match &u.kind {
        UpdateKind::Message(m) => m,
        other => panic!("update {} is not a message: {other:?}", u.id),
    }
}

fn press(u: &Update) -> &CallbackQuery {
    match &u.kind {
        UpdateKind::CallbackQuery(q) => q,
        other => panic!("update {} is not a button press: {other:?}", u.id),
    }
}

/// A batch as Telegram sends it today, fields we never read included.
const BATCH: &str = r#"{"ok":true,"result":[
 {"update_id":851793506,"message":{"message_id":1365,"from":{"id":1111,"is_bot":false,"first_name":"Ann","last_name":"Lee","username":"ann","language_code":"en","is_premium":true},
  "chat":{"id":-1001234567890,"title":"Ops","username":"ops_team","type":"supergroup","is_forum":false},
  "date":1717000000,"message_thread_id":7,"text":"@Agent_Test_Bot deploy please","entities":[{"offset":0,"length":15,"type":"mention"}],
  "link_preview_options":{"is_disabled":true},"brand_new_field":{"x":[1,2]}}},
 {"update_id":851793507,"message":{"message_id":1366,"from":{"id":2222,"is_bot":false,"first_name":"Bob"},"chat":{"id":2222,"first_name":"Bob","type":"private"},
  "date":1717000001,"document":{"file_name":"notes.pdf","mime_type":"application/pdf","thumbnail":{"file_id":"AAMC","file_unique_id":"AQAD","file_size":900,"width":90,"height":90},
  "file_id":"BQACAgIAAxkBAAIBY2","file_unique_id":"AgADxQ","file_size":48213},"caption":"for the archive"}},
 {"update_id":851793508,"message":{"message_id":1367,"from":{"id":2222,"is_bot":false,"first_name":"Bob"},"chat":{"id":2222,"first_name":"Bob","type":"private"},
  "date":1717000002,"photo":[{"file_id":"AgAC-s","file_unique_id":"AQADs","file_size":1500,"width":90,"height":67},
  {"file_id":"AgAC-l","file_unique_id":"AQADl","file_size":81234,"width":1280,"height":960},{"file_id":"AgAC-m","file_unique_id":"AQADm","file_size":20000,"width":320,"height":240}],
  "has_media_spoiler":false}},
 {"update_id":851793509,"callback_query":{"id":"4382bfdwdsb323b2d9","from":{"id":1111,"is_bot":false,"first_name":"Ann"},
  "message":{"message_id":1300,"from":{"id":777000,"is_bot":true,"first_name":"Agent","username":"agent_test_bot"},"chat":{"id":-1001234567890,"title":"Ops","type":"supergroup"},
  "date":1716999000,"text":"Approve?","reply_markup":{"inline_keyboard":[[{"text":"Approve","callback_data":"approve:act_1"}]]}},
  "chat_instance":"-5313718417227213913","data":"approve:act_1"}},
 {"update_id":851793510,"callback_query":{"id":"4382bfdwdsb323b2da","from":{"id":1111,"is_bot":false,"first_name":"Ann"},
  "message":{"message_id":900,"chat":{"id":1111,"first_name":"Ann","type":"private"},"date":0},"chat_instance":"1","data":"deny:act_2"}},
 {"update_id":851793511,"message_reaction":{"chat":{"id":1,"type":"private"},"message_id":5,"date":1,"old_reaction":[],"new_reaction":[]}}
]}"#;

#[test]
fn a_real_batch_parses_with_the_fields_we_read_and_ignores_the_rest() {
    let ups = updates(BATCH);
    assert_eq!(ups.iter().map(|u| u.id).collect::<Vec<_>>(), (851793506..=851793511).collect::<Vec<_>>());

    let text = message(&ups[0]);
    let from = text.from.as_ref().expect("from");
    assert_eq!((text.message_id, text.chat.id, text.chat.title(), text.chat.is_private()), (1365, -1001234567890, Some("Ops"), false));
    assert_eq!((from.id, from.is_bot, from.full_name()), (1111, false, "Ann Lee".to_string()));
    assert_eq!(display_name(&text.chat, from), "Ops", "a group's title names the chat");
    assert!(addressed(&me(), text), "the @mention is matched whatever its case");

    let doc = message(&ups[1]);
    let d = doc.document.as_ref().expect("document");
    assert_eq!((d.file.file_id.as_str(), d.file_name.as_deref(), d.file.file_size), ("BQACAgIAAxkBAAIBY2", Some("notes.pdf"), 48213));
    assert_eq!((doc.text.as_deref(), doc.caption.as_deref()), (None, Some("for the archive")));
    assert_eq!(display_name(&doc.chat, doc.from.as_ref().expect("from")), "Bob", "a private chat is named by its user");
    assert!(doc.chat.is_private() && doc.chat.title().is_none());

    let photo = message(&ups[2]);
    let largest = photo.photo.iter().max_by_key(|p| p.file_size).expect("sizes");
    assert_eq!((largest.file_id.as_str(), largest.file_unique_id.as_str()), ("AgAC-l", "AQADl"));

    let q = press(&ups[3]);
    let carried = q.message.as_ref().expect("message");
    assert_eq!(
        (q.id.as_str(), q.data.as_deref(), carried.message_id, carried.chat.id),
        ("4382bfdwdsb323b2d9", Some("approve:act_1"), 1300, -1001234567890)
    );
    let gone = press(&ups[4]);
    let carried = gone.message.as_ref().expect("an inaccessible message still names its chat and id");
    assert_eq!((carried.message_id, carried.chat.id, carried.chat.is_private()), (900, 1111, true));

    assert!(matches!(&ups[5].kind, UpdateKind::Other(k) if k == "message_reaction"), "{:?}", ups[5].kind);
}

/// An update of a shape we do not expect must not wedge the loop: it is
/// skipped, the others are read, and its id still moves the offset on.
#[test]
fn an_update_that_does_not_parse_is_skipped_and_its_id_kept() {
    let ups = updates(
        r#"{"ok":true,"result":[
        {"update_id":10,"message":{"message_id":1,"chat":{"id":5,"type":"private"},"date":1,"text":"hi","from":{"id":5,"is_bot":false,"first_name":"A"}}},
        {"update_id":11,"message":{"some fields are missing":true}},
        {"update_id":12,"callback_query":{"id":7}},
        {"no_update_id":{"x":1}},
        {"update_id":13,"brand_new_kind":{"x":1}},
        {"update_id":14,"message":{"message_id":2,"chat":{"id":5,"type":"private"},"date":2,"text":"still here"}}
    ]}"#,
    );
    assert_eq!(ups.iter().map(|u| u.id).collect::<Vec<_>>(), [10, 11, 12, 13, 14]);
    assert_eq!(message(&ups[0]).text.as_deref(), Some("hi"));
    assert!(matches!(&ups[1].kind, UpdateKind::Other(k) if k == "message"));
    assert!(matches!(&ups[2].kind, UpdateKind::Other(k) if k == "callback_query"));
    assert!(matches!(&ups[3].kind, UpdateKind::Other(k) if k == "brand_new_kind"));
    assert_eq!(message(&ups[4]).text.as_deref(), Some("still here"));
    assert_eq!(ups.iter().map(|u| u.id + 1).max(), Some(15), "the next offset passes the bad one");
}

#[test]
fn a_429_waits_its_retry_after() {
    let e = err(429, r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#);
    assert!(matches!(e, Error::RetryAfter(d) if d == Duration::from_secs(7)), "{e:?}");
    let p = classify(&e);
    assert_eq!(
        (p.message.as_str(), p.retryable, p.retry_after),
        ("telegram: 429 Too Many Requests (retry after 7s)", true, Some(Duration::from_secs(7)))
    );
}

#[test]
fn a_second_poller_and_a_wrong_token_are_told_apart() {
    let e = err(
        409,
        r#"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}"#,
    );
    assert!(matches!(e, Error::Conflict(_)), "{e:?}");
    assert!(e.to_string().starts_with("telegram: 409 Conflict: terminated by other getUpdates request"), "{e}");
    let webhook = err(
        409,
        r#"{"ok":false,"error_code":409,"description":"Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"}"#,
    );
    assert!(matches!(webhook, Error::Api(_)), "another conflict is an ordinary refusal: {webhook:?}");
    let e = err(401, r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#);
    assert!(matches!(e, Error::InvalidToken(_)), "{e:?}");
    assert_eq!(e.to_string(), "telegram: 401 Unauthorized");
    assert!(!classify(&e).retryable);
    assert!(matches!(err(404, r#"{"ok":false,"error_code":404,"description":"Not Found"}"#), Error::InvalidToken(_)));
}

#[test]
fn a_migrated_group_is_permanent_and_names_the_supergroup() {
    let e = err(
        400,
        r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001999}}"#,
    );
    let p = classify(&e);
    assert_eq!((p.message.as_str(), p.retryable), ("telegram: the group became a supergroup with chat id -1001999", false));
}

#[test]
fn refusals_are_permanent_unless_the_server_failed() {
    let chat = classify(&err(400, r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#));
    assert_eq!((chat.message.as_str(), chat.retryable, chat.retry_after), ("telegram: 400 Bad Request: chat not found", false, None));
    let blocked = classify(&err(403, r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#));
    assert_eq!((blocked.message.as_str(), blocked.retryable), ("telegram: 403 Forbidden: bot was blocked by the user", false));
    for (code, d) in [(500, "Internal Server Error"), (502, "Bad Gateway"), (429, "Too Many Requests: retry later")] {
        let p = classify(&err(code, &format!(r#"{{"ok":false,"error_code":{code},"description":"{d}"}}"#)));
        assert_eq!((p.message, p.retryable, p.retry_after), (format!("telegram: {code} {d}"), true, None));
    }
    // No error_code: the HTTP status stands in.
    let p = classify(&err(503, r#"{"ok":false,"description":"Service Unavailable"}"#));
    assert_eq!((p.message.as_str(), p.retryable), ("telegram: 503 Service Unavailable", true));
    // A 5xx in words Telegram has not used before is still the server's: transient.
    let p = classify(&err(500, r#"{"ok":false,"error_code":500,"description":"Something went wrong"}"#));
    assert_eq!((p.message.as_str(), p.retryable), ("telegram: 500 Something went wrong", true));
    assert!(Error::Status(reqwest::StatusCode::BAD_GATEWAY).is_transient());
    assert!(!Error::Status(reqwest::StatusCode::NOT_FOUND).is_transient());
}

#[test]
fn edits_that_are_already_there_or_gone_are_told_apart() {
    let same = r#"{"ok":false,"error_code":400,"description":"Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"}"#;
    assert!(matches!(err(400, same), Error::NotModified(_)));
    for d in ["Bad Request: message to edit not found", "Bad Request: message can't be edited"] {
        let e = err(400, &format!(r#"{{"ok":false,"error_code":400,"description":"{d}"}}"#));
        assert!(matches!(e, Error::EditGone(_)), "{e:?}");
    }
}

#[test]
fn an_unreadable_answer_is_transient_and_not_quoted() {
    let page = format!("<html><body>502 Bad Gateway for /bot{TOKEN}/getMe</body></html>");
    let e = err(502, &page);
    assert!(matches!(e, Error::InvalidJson { status: 502, .. }), "{e:?}");
    let p = classify(&e);
    assert!(p.retryable && p.message.starts_with("telegram: unexpected answer (HTTP 502)"), "{}", p.message);
    assert!(!p.message.contains(TOKEN) && !p.message.contains("html"), "{}", p.message);
    // `ok` without a result, or a result of another shape.
    assert!(decode::<Sent>(200, r#"{"ok":true}"#).is_err_and(|e| e.is_transient()));
    assert!(decode::<Sent>(200, r#"{"ok":true,"result":true}"#).is_err_and(|e| e.is_transient()));
    assert_eq!(
        decode::<Sent>(200, r#"{"ok":true,"result":{"message_id":42,"chat":{"id":1,"type":"private"},"date":1,"text":"x"}}"#)
            .map(|s| s.message_id)
            .ok(),
        Some(42)
    );
}

/// A mention's offset counts UTF-16 code units: an emoji (two units)
/// before it moves it by two, not by its four UTF-8 bytes or one char.
#[test]
fn mentions_are_found_by_utf16_offsets_in_text_and_caption() {
    let msg = |fields: Value| -> Message {
        let mut m = json!({"message_id": 1, "date": 1, "chat": {"id": -5, "type": "group", "title": "T"}, "from": {"id": 9, "is_bot": false, "first_name": "A"}});
        if let (Some(m), Value::Object(f)) = (m.as_object_mut(), fields) {
            m.extend(f);
        }
        serde_json::from_value(m).expect("message")
    };
    let text = "👋 héllo @agent_test_bot, hi";
    let offset = "👋 héllo ".encode_utf16().count();
    assert_eq!(offset, 9);
    let mention = json!([{"type": "mention", "offset": offset, "length": 15}]);
    let m = msg(json!({"text": text, "entities": mention.clone()}));
    assert_eq!(m.entities().iter().map(|(_, t)| *t).collect::<Vec<_>>(), ["@agent_test_bot"]);
    assert!(addressed(&me(), &m));
    let m = msg(json!({"caption": text, "caption_entities": mention, "photo": []}));
    assert!(addressed(&me(), &m), "a caption's mention counts too");
    let other = msg(json!({"text": "👋 @other_bot", "entities": [{"type": "mention", "offset": 3, "length": 10}]}));
    assert!(!addressed(&me(), &other));
    let by_id = json!([{"type": "text_mention", "offset": 3, "length": 5, "user": {"id": 777000, "is_bot": true, "first_name": "Agent"}}]);
    assert!(addressed(&me(), &msg(json!({"text": "👋 Agent, hi", "entities": by_id}))), "a text_mention of the bot's id");
    let someone = json!([{"type": "text_mention", "offset": 3, "length": 5, "user": {"id": 1, "is_bot": false, "first_name": "Ann"}}]);
    assert!(!addressed(&me(), &msg(json!({"text": "👋 Ann, hi", "entities": someone}))));
    let reply = msg(
        json!({"text": "and then?", "reply_to_message": {"message_id": 3, "date": 1, "chat": {"id": -5, "type": "group"}, "from": {"id": 777000, "is_bot": true, "first_name": "Agent"}}}),
    );
    assert!(addressed(&me(), &reply), "a reply to the bot");
    assert!(!addressed(&me(), &msg(json!({"text": "@agent_test_bot without an entity"}))));
}

#[test]
fn utf16_ranges_off_character_boundaries_or_the_text_are_refused() {
    assert_eq!(utf16_slice("👋 @bot", 3, 4), Some("@bot"));
    assert_eq!(utf16_slice("👋 @bot", 0, 2), Some("👋"));
    assert_eq!(utf16_slice("👋 @bot", 1, 2), None, "inside the surrogate pair");
    assert_eq!(utf16_slice("👋 @bot", 3, 5), None, "past the end");
    assert_eq!(utf16_slice("ab", 2, 0), Some(""));
    assert_eq!(utf16_slice("ab", usize::MAX, 2), None);
}

/// A port nobody listens on (bound, then released).
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// reqwest puts the URL, and so the token, in its errors' text.
#[tokio::test]
async fn a_network_error_is_transient_and_never_shows_the_token() {
    let bot = Bot::new(&closed_port().await, TOKEN).expect("client");
    let e = bot.get_me().await.expect_err("nobody listens");
    let p = classify(&e);
    assert!(matches!(e, Error::Network(_)) && p.retryable, "{e:?}");
    for text in [e.to_string(), format!("{e:?}"), p.message] {
        assert!(!text.contains(TOKEN) && !text.contains("AAHdqTcvCH1v"), "{text}");
        assert!(text.starts_with("telegram: ") || text.starts_with("Network("), "{text}");
    }
    let e = bot.download("BQACAgIAAxk").await.err().expect("nobody listens");
    assert!(!e.to_string().contains(TOKEN), "{e}");
}

/// A one-route Bot API: `getFile` and the file's download, recording the paths asked for.
async fn file_server(body: &'static [u8], status: u16) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::{StatusCode, Uri};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let log = log.clone();
        async move {
            log.lock().map(|mut l| l.push(uri.path().to_string())).ok();
            if uri.path().ends_with("/getFile") {
                let file = json!({"ok": true, "result": {"file_id": "F", "file_unique_id": "U", "file_size": body.len(), "file_path": "documents/file 1.pdf"}});
                return (StatusCode::OK, file.to_string().into_bytes());
            }
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body.to_vec())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn a_file_is_fetched_from_its_path_in_chunks() {
    let (base, seen) = file_server(b"%PDF-1 hello", 200).await;
    let bot = Bot::new(&base, TOKEN).expect("client");
    let mut file = bot.download("F").await.expect("download");
    let mut got = Vec::new();
    while let Some(chunk) = file.chunk().await.expect("chunk") {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"%PDF-1 hello");
    let paths = seen.lock().expect("paths").clone();
    assert_eq!(paths, [format!("/bot{TOKEN}/getFile"), format!("/file/bot{TOKEN}/documents/file%201.pdf")]);

    let (base, _) = file_server(b"gone", 404).await;
    let e = Bot::new(&base, TOKEN).expect("client").download("F").await.err().expect("404");
    assert_eq!(e.to_string(), "telegram: HTTP 404 Not Found");
}
