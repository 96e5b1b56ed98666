//! The REST side: one axum fallback handler that routes by method and path,
//! checks auth, applies queued faults, logs the request and runs the route.

use super::state::{Data, Inner, Pending, bot_user, now};
use super::{APP_ID, BOT_ID, BOT_NAME, Edit, Fault, InteractionResponse, Sent};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// How long Discord remembers a nonce ("the past few minutes").
const NONCE_WINDOW: std::time::Duration = std::time::Duration::from_secs(5 * 60);

type Handler<'a> = Box<dyn FnOnce(&mut Data) -> Response + 'a>;

fn h<'a>(f: impl FnOnce(&mut Data) -> Response + 'a) -> Handler<'a> {
    Box::new(f)
}

/// (route kind for `calls`/`fail_next`, whether `Authorization: Bot` is
/// checked, handler). Interaction and webhook routes authenticate by the
/// token in the path; `/gateway` and the CDN need no auth.
fn route<'a>(
    inner: &'a Inner,
    method: &Method,
    path: &'a str,
    q: &'a HashMap<String, String>,
    body: &'a Value,
) -> (&'static str, bool, Handler<'a>) {
    let (api, rest) = path.strip_prefix("/api/v10/").map_or((false, path.trim_start_matches('/')), |p| (true, p));
    let url = inner.gateway_url.as_str();
    match (method.as_str(), api, rest.split('/').collect::<Vec<_>>().as_slice()) {
        ("GET", true, &["gateway"]) => ("get_gateway", false, h(move |_| Json(json!({"url": url})).into_response())),
        ("GET", true, &["gateway", "bot"]) => ("get_gateway_bot", true, h(move |_| Json(gateway_bot(url)).into_response())),
        ("GET", true, &["users", "@me"]) => ("get_current_user", true, h(|_| Json(bot_user()).into_response())),
        ("GET", true, &["oauth2", "applications", "@me"]) => ("get_current_application", true, h(|_| Json(application()).into_response())),
        ("POST", true, &["channels", c, "messages"]) => ("create_message", true, h(move |d| create_message(d, c, body))),
        ("GET", true, &["channels", c, "messages"]) => ("get_messages", true, h(move |d| get_messages(d, c, q))),
        ("PATCH", true, &["channels", c, "messages", m]) => ("edit_message", true, h(move |d| edit_message(d, c, m, body))),
        ("POST", true, &["channels", _, "typing"]) => ("trigger_typing", true, h(|_| axum::http::StatusCode::NO_CONTENT.into_response())),
        ("POST", true, &["interactions", i, t, "callback"]) => ("interaction_callback", false, h(move |d| callback(d, i, t, body))),
        ("PATCH", true, &["webhooks", a, t, "messages", "@original"]) => ("edit_original", false, h(move |d| edit_original(d, a, t, body))),
        ("POST", true, &["webhooks", a, t]) => ("create_followup", false, h(move |d| followup(d, a, t, body))),
        ("PUT", true, &["applications", a, "commands"]) => ("bulk_commands", true, h(move |d| bulk_commands(d, a, None, body))),
        ("PUT", true, &["applications", a, "guilds", g, "commands"]) => {
            ("bulk_commands", true, h(move |d| bulk_commands(d, a, Some(g), body)))
        }
        ("GET", false, &["attachments", _, _, _]) => ("download", false, h(move |d| download(d, path))),
        _ => ("unknown", false, h(|_| err(404, 0, "404: Not Found"))),
    }
}

pub(super) async fn rest_handler(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (resp, hang) = {
        let (kind, auth, handler) = route(&inner, &method, uri.path(), &q, &body);
        let authorized = !auth || headers.get("authorization").and_then(|h| h.to_str().ok()) == Some(&format!("Bot {}", inner.token));
        let mut d = inner.lock();
        *d.calls.entry(kind.to_string()).or_default() += 1;
        let fault = if authorized { d.faults.get_mut(kind).and_then(VecDeque::pop_front) } else { None };
        let hang = matches!(fault, Some(Fault::TakenNoAnswer));
        let resp = match fault {
            _ if !authorized => err(401, 0, "401: Unauthorized"),
            None | Some(Fault::Pass | Fault::TakenNoAnswer) => handler(&mut d),
            Some(fault) => fault_response(fault),
        };
        d.log.push((arrived, method.to_string(), uri.path().to_string(), resp.status().as_u16()));
        (resp, hang)
    };
    inner.changed.notify_waiters();
    if hang {
        std::future::pending::<()>().await;
    }
    resp
}

fn gateway_bot(url: &str) -> Value {
    json!({"url": url, "shards": 1, "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}})
}

fn application() -> Value {
    json!({"id": APP_ID, "name": BOT_NAME, "icon": null, "description": "", "rpc_origins": [], "bot_public": false,
           "bot_require_code_grant": false, "verify_key": "0".repeat(64), "team": null, "flags": 0, "bot": bot_user(),
           "owner": {"id": "900000000000000003", "username": "owner", "discriminator": "0", "global_name": null, "avatar": null}})
}

fn download(d: &mut Data, path: &str) -> Response {
    match d.files.get(path) {
        Some((content_type, bytes)) => ([(CONTENT_TYPE, content_type.clone())], bytes.clone()).into_response(),
        None => err(404, 0, "404: Not Found"),
    }
}

fn create_message(d: &mut Data, channel: &str, body: &Value) -> Response {
    if d.missing.contains(channel) {
        return err(404, 10003, "Unknown Channel");
    }
    if let Some(r) = check_content(body, true) {
        return r;
    }
    // `nonce` (an integer, or a string of at most 25 characters) is echoed in
    // the message; with `enforce_nonce`, a message the same author created
    // with that nonce in the last few minutes is returned instead of a new one.
    let nonce = match &body["nonce"] {
        Value::Null => None,
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if s.chars().count() <= 25 => Some(s.clone()),
        _ => return form_err(json!({"nonce": field_err("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")})),
    };
    if let (Some(n), Some(true)) = (&nonce, body["enforce_nonce"].as_bool()) {
        let known = d.nonces.get(n).filter(|(_, _, at)| at.elapsed() < NONCE_WINDOW).map(|(c, id, _)| (c.clone(), id.clone()));
        if let Some(existing) = known.and_then(|(c, id)| d.find(&c, &id).cloned()) {
            d.nonce_hits += 1;
            return Json(existing).into_response();
        }
    }
    let reference = &body["message_reference"];
    let Some(ref_id) = id_str(&reference["message_id"]) else {
        return Json(new_bot_message(d, channel, body, None, json!({}))).into_response();
    };
    let extra = match d.find(channel, &ref_id).cloned() {
        Some(r) => {
            json!({"type": 19, "message_reference": {"type": 0, "message_id": ref_id, "channel_id": channel}, "referenced_message": r})
        }
        None if reference["fail_if_not_exists"] == json!(false) => json!({}),
        None => return form_err(json!({"message_reference": field_err("MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")})),
    };
    Json(new_bot_message(d, channel, body, None, extra)).into_response()
}

/// Stores a message by the bot and records it as `Sent`.
fn new_bot_message(d: &mut Data, channel: &str, body: &Value, interaction_token: Option<String>, mut extra: Value) -> Value {
    let content = body["content"].as_str().unwrap_or_default().to_string();
    let components = body.get("components").cloned();
    if let Some(c) = &components {
        extra["components"] = c.clone();
    }
    if let Some(n) = body.get("nonce").filter(|n| !n.is_null()) {
        extra["nonce"] = n.clone();
    }

    let nonce = extra.get("nonce").and_then(id_str);
    let m = d.store_message(channel, bot_user(), &content, extra);
    let (channel_id, message_id) = (channel.to_string(), m["id"].as_str().unwrap_or_default().to_string());
    if let Some(n) = nonce {
        d.nonces.insert(n, (channel_id.clone(), message_id.clone(), Instant::now()));
    }
    let reference = id_str(&body["message_reference"]["message_id"]);
    d.sent.push(Sent { channel_id, message_id, content, components, reference, interaction_token });
    m
}

fn get_messages(d: &mut Data, channel: &str, q: &HashMap<String, String>) -> Response {
    if d.missing.contains(channel) {
        return err(404, 10003, "Unknown Channel");
    }
    let limit = q.get("limit").map_or(Some(50), |l| l.parse::<usize>().ok()).filter(|l| (1..=100).contains(l));
    let Some(limit) = limit else {
        return form_err(json!({"limit": field_err("NUMBER_TYPE_MAX", "int value should be less than or equal to 100.")}));
    };
    let num = |m: &Value| m["id"].as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let bound = |k: &str| q.get(k).and_then(|s| s.parse::<u64>().ok());
    let all = d.channels.get(channel).cloned().unwrap_or_default();
    let out: Vec<Value> = match (bound("after"), bound("before")) {
        // The `limit` messages right after `after`, still newest first (as Discord does).
        (Some(after), _) => all.into_iter().filter(|m| num(m) > after).take(limit).collect::<Vec<_>>().into_iter().rev().collect(),
        (None, before) => all.into_iter().rev().filter(|m| before.is_none_or(|b| num(m) < b)).take(limit).collect(),
    };
    Json(out).into_response()
}

fn edit_message(d: &mut Data, channel: &str, message: &str, body: &Value) -> Response {
    if d.missing.contains(channel) {
        return err(404, 10003, "Unknown Channel");
    }
    apply_edit(d, channel, message, body, None)
}

fn apply_edit(d: &mut Data, channel: &str, message: &str, body: &Value, interaction_token: Option<String>) -> Response {
    if let Some(r) = check_content(body, false) {
        return r;
    }
    let Some(m) = d.find(channel, message) else { return err(404, 10008, "Unknown Message") };
    if m["author"]["id"] != BOT_ID {
        return err(403, 50005, "Cannot edit a message authored by another user");
    }
    for key in ["content", "components", "embeds"].into_iter().filter(|k| body.get(k).is_some()) {
        m[key] = body[key].clone();
    }
    m["edited_timestamp"] = json!(now());
    let m = m.clone();
    let (content, components) = (body.get("content").and_then(Value::as_str).map(str::to_string), body.get("components").cloned());
    d.edits.push(Edit { channel_id: channel.into(), message_id: message.into(), content, components, interaction_token });
    Json(m).into_response()
}

fn callback(d: &mut Data, id: &str, token: &str, body: &Value) -> Response {
    let Some(p) = d.interactions.get(id) else { return err(404, 10062, "Unknown interaction") };
    if p.token != token {
        return err(401, 50027, "Invalid Webhook Token");
    }
    if p.answered {
        return err(400, 40060, "Interaction has already been acknowledged.");
    }
    if let Some(r) = check_content(&body["data"], false) {
        return r;
    }
    let kind = body["type"].as_u64().and_then(|k| u8::try_from(k).ok()).unwrap_or(0);
    let (channel, message_id) = (p.channel_id.clone(), p.message_id.clone());
    // 4/5 create the original response message (5 as an empty "thinking" one); 6/7 answer on the clicked message.
    let original = match kind {
        4 | 5 => {
            let content = if kind == 4 { body["data"]["content"].as_str().unwrap_or_default() } else { "" };
            d.store_message(&channel, bot_user(), content, json!({"application_id": APP_ID, "webhook_id": APP_ID}))["id"]
                .as_str()
                .map(str::to_string)
        }
        6 | 7 => message_id,
        _ => None,
    };
    if let (7, Some(m)) = (kind, original.as_deref().and_then(|m| d.find(&channel, m))) {
        for key in ["content", "components"].into_iter().filter(|k| body["data"].get(k).is_some()) {
            m[key] = body["data"][key].clone();
        }
    }
    let p = d.interactions.get_mut(id).expect("looked up above");
    (p.answered, p.original) = (true, original);
    d.responses.push(InteractionResponse { interaction_id: id.into(), kind, data: body["data"].clone() });
    StatusCode::NO_CONTENT.into_response()
}

fn by_token<'d>(d: &'d Data, app: &str, token: &str) -> Option<&'d Pending> {
    d.interactions.values().find(|p| p.token == token).filter(|_| app == APP_ID)
}

fn edit_original(d: &mut Data, app: &str, token: &str, body: &Value) -> Response {
    let Some(p) = by_token(d, app, token) else { return err(404, 10015, "Unknown Webhook") };
    let (channel, original) = (p.channel_id.clone(), p.original.clone());
    let Some(original) = original else { return err(404, 10008, "Unknown Message") };
    apply_edit(d, &channel, &original, body, Some(token.to_string()))
}

fn followup(d: &mut Data, app: &str, token: &str, body: &Value) -> Response {
    let Some(p) = by_token(d, app, token).filter(|p| p.answered) else { return err(404, 10015, "Unknown Webhook") };
    let channel = p.channel_id.clone();
    if let Some(r) = check_content(body, true) {
        return r;
    }
    let extra = json!({"application_id": APP_ID, "webhook_id": APP_ID});
    Json(new_bot_message(d, &channel, body, Some(token.to_string()), extra)).into_response()
}

fn bulk_commands(d: &mut Data, app: &str, guild: Option<&str>, body: &Value) -> Response {
    if app != APP_ID {
        return err(403, 50001, "Missing Access");
    }
    let Some(cmds) = body.as_array() else { return form_err(field_err("BASE_TYPE_ARRAY", "Must be an array.")) };
    let errors: Map<String, Value> =
        cmds.iter().enumerate().filter_map(|(i, c)| validate_command(c, true).map(|e| (i.to_string(), e))).collect();
    if !errors.is_empty() {
        return form_err(Value::Object(errors));
    }
    d.commands.push((guild.map(str::to_string), cmds.clone()));
    let version = d.snowflake();
    let mut out = Vec::new();
    for c in cmds {
        let mut c = c.clone();
        let given = json!({"id": d.snowflake(), "application_id": APP_ID, "version": version, "guild_id": guild});
        let defaults = json!({"type": 1, "default_member_permissions": null, "nsfw": false, "options": []});
        for (k, v) in defaults.as_object().into_iter().flatten() {
            if c.get(k.as_str()).is_none_or(Value::is_null) {
                c[k] = v.clone();
            }
        }
        for (k, v) in given.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        out.push(c);
    }
    Json(out).into_response()
}

/// Discord's checks on a command or option: chat-input names match
/// `^[-_a-z0-9]{1,32}$`, their descriptions are 1-100 characters.
fn validate_command(c: &Value, top: bool) -> Option<Value> {
    let name = c["name"].as_str().unwrap_or_default();
    let chat_input = !top || c["type"].as_u64().unwrap_or(1) == 1;
    let valid_char = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_';
    let name_ok = (1..=32).contains(&name.chars().count()) && (!chat_input || name.chars().all(valid_char));
    let desc = c["description"].as_str().map_or(0, |s| s.chars().count());
    let mut errs = Map::new();
    if !name_ok {
        errs.insert("name".into(), field_err("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"));
    }
    if chat_input && !(1..=100).contains(&desc) {
        errs.insert("description".into(), field_err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."));
    }
    let opts = c["options"].as_array().map(Vec::as_slice).unwrap_or_default();
    let opt_errs: Map<String, Value> =
        opts.iter().enumerate().filter_map(|(i, o)| validate_command(o, false).map(|e| (i.to_string(), e))).collect();
    if !opt_errs.is_empty() {
        errs.insert("options".into(), Value::Object(opt_errs));
    }
    (!errs.is_empty()).then_some(Value::Object(errs))
}

/// Discord's content rules: at most 2000 characters; a new message needs
/// content, components, embeds, stickers or attachments.
fn check_content(body: &Value, creating: bool) -> Option<Response> {
    let content = body["content"].as_str().unwrap_or_default();
    if content.chars().count() > 2000 {
        return Some(form_err(json!({"content": field_err("BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")})));
    }
    let has = |k: &str| body[k].as_array().is_some_and(|a| !a.is_empty());
    let empty = content.is_empty() && !["components", "embeds", "sticker_ids", "attachments"].into_iter().any(has);
    (creating && empty).then(|| err(400, 50006, "Cannot send an empty message"))
}

fn id_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field_err(code: &str, message: &str) -> Value {
    json!({"_errors": [{"code": code, "message": message}]})
}

fn err(status: u16, code: u32, message: &str) -> Response {
    (StatusCode::from_u16(status).expect("valid status"), Json(json!({"message": message, "code": code}))).into_response()
}

fn form_err(errors: Value) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"message": "Invalid Form Body", "code": 50035, "errors": errors}))).into_response()
}

fn fault_response(fault: Fault) -> Response {
    let (retry_after, global) = match fault {
        Fault::Status(code, body) => return (StatusCode::from_u16(code).expect("valid fault status"), Json(body)).into_response(),
        Fault::RateLimited { retry_after_secs, global } => (retry_after_secs, global),
        Fault::Pass | Fault::TakenNoAnswer => unreachable!("answered by the handler"),
    };
    let body = json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": global});
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    let reset = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64() + retry_after;
    let scope = if global { "global" } else { "user" };
    let headers = [
        ("retry-after", format!("{}", retry_after.ceil())),
        ("x-ratelimit-limit", "5".into()),
        ("x-ratelimit-remaining", "0".into()),
        ("x-ratelimit-reset", format!("{reset:.3}")),
        ("x-ratelimit-reset-after", format!("{retry_after:.3}")),
        ("x-ratelimit-bucket", "fakebucket0000".into()),
        ("x-ratelimit-scope", scope.into()),
        ("x-ratelimit-global", global.to_string()),
    ];
    for (name, value) in headers.into_iter().filter(|(n, _)| global || *n != "x-ratelimit-global") {
        resp.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_str(&value).expect("ascii header"));
    }
    resp
}
