//! The fake's shared state: stored messages and files, pending interactions,
//! what the client did, queued faults and the gateway session, all behind
//! one mutex.

use super::gateway::Gw;
use super::{APP_ID, Author, BOT_ID, BOT_NAME, Edit, Fault, InteractionResponse, Sent};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

pub(super) struct Pending {
    pub(super) token: String,
    pub(super) channel_id: String,
    pub(super) message_id: Option<String>,
    pub(super) answered: bool,
    pub(super) original: Option<String>,
}

#[derive(Default)]
pub(super) struct Data {
    pub(super) next_id: u64,
    pub(super) channels: HashMap<String, Vec<Value>>,
    pub(super) missing: HashSet<String>,
    pub(super) files: HashMap<String, (String, Vec<u8>)>,
    pub(super) interactions: HashMap<String, Pending>,
    pub(super) sent: Vec<Sent>,
    pub(super) edits: Vec<Edit>,
    pub(super) responses: Vec<InteractionResponse>,
    pub(super) commands: Vec<(Option<String>, Vec<Value>)>,
    pub(super) calls: HashMap<String, usize>,
    pub(super) faults: HashMap<String, VecDeque<Fault>>,
    pub(super) log: Vec<(Instant, String, String, u16)>,
    pub(super) gw: Gw,
    /// Nonce → (channel, message id, when) of the bot's messages created with one.
    pub(super) nonces: HashMap<String, (String, String, Instant)>,
    /// Creates answered with an earlier message because of `enforce_nonce`.
    pub(super) nonce_hits: usize,
}

impl Data {
    pub(super) fn snowflake(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    pub(super) fn find(&mut self, channel: &str, id: &str) -> Option<&mut Value> {
        self.channels.get_mut(channel)?.iter_mut().find(|m| m["id"] == id)
    }

    /// A new message object (plus the fields of `extra`) stored in `channel`'s history.
    pub(super) fn store_message(&mut self, channel: &str, author: Value, content: &str, extra: Value) -> Value {
        let id = self.snowflake();
        let mention = content.contains(&format!("<@{BOT_ID}>")) || content.contains(&format!("<@!{BOT_ID}>"));
        let mut m = json!({"id": id, "channel_id": channel, "author": author, "content": content, "timestamp": now(),
            "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": if mention { vec![bot_user()] } else { vec![] },
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0, "flags": 0, "components": []});
        if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
            m.extend(extra);
        }
        self.channels.entry(channel.to_string()).or_default().push(m.clone());
        m
    }
}

pub(super) struct Inner {
    pub(super) token: String,
    pub(super) base_url: String,
    pub(super) gateway_url: String,
    pub(super) data: Mutex<Data>,
    pub(super) changed: Notify,
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().expect("fake discord state")
    }

    /// Serenity sends `Bot <token>` in IDENTIFY and RESUME; a bare token is accepted too.
    pub(super) fn token_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|t| t.strip_prefix("Bot ").unwrap_or(t) == self.token)
    }
}

pub(super) fn interaction(
    d: &mut Data,
    kind: u8,
    channel: &str,
    guild: Option<&str>,
    user: &Author,
    data: Value,
    msg: Option<Value>,
) -> (String, String) {
    let id = d.snowflake();
    let token = format!("fake-interaction-token-{id}");
    let mut i = json!({"id": id, "application_id": APP_ID, "type": kind, "data": data, "channel_id": channel, "token": token,
        "version": 1, "locale": "en-US", "entitlements": [], "attachment_size_limit": 10_485_760,
        "app_permissions": "0", "context": if guild.is_some() { 0 } else { 1 }});
    match guild {
        Some(g) => {
            (i["guild_id"], i["guild_locale"]) = (json!(g), json!("en-US"));
            i["member"] = json!({"user": user.json(), "roles": [], "joined_at": now(), "deaf": false, "mute": false,
                                 "flags": 0, "permissions": "0"});
        }
        None => i["user"] = user.json(),
    }
    let message_id = msg.as_ref().and_then(|m| m["id"].as_str()).map(str::to_string);
    if let Some(m) = msg {
        i["message"] = m;
    }
    let pending = Pending { token: token.clone(), channel_id: channel.to_string(), message_id, answered: false, original: None };
    d.interactions.insert(id.clone(), pending);
    d.gw.dispatch("INTERACTION_CREATE", i, true);
    (id, token)
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

pub(super) fn bot_user() -> Value {
    json!({"id": BOT_ID, "username": BOT_NAME, "discriminator": "0", "global_name": null, "avatar": null, "bot": true,
           "verified": true, "mfa_enabled": false, "flags": 0, "public_flags": 0})
}
