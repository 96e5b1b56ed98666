//! The fake's private state behind one mutex: the update queue and its
//! offset, chats, stored messages and files, open callback queries, what the
//! client did, and the faults still to inject; plus how incoming messages
//! are built (Telegram's entities, captions, dates).

use super::{Chat, Edit, FIRST_UPDATE_ID, Fault, OPT_IN_KINDS, Sent, User};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

pub(super) struct FileEntry {
    pub(super) id: String,
    pub(super) unique_id: String,
    pub(super) path: String,
    /// Shared, so serving a large file copies nothing.
    pub(super) bytes: axum::body::Bytes,
}

pub(super) struct Queued {
    pub(super) id: i64,
    pub(super) kind: String,
    /// `push_raw` updates skip `allowed_updates` filtering.
    pub(super) raw: bool,
    pub(super) body: Value,
}

#[derive(Default)]
pub(super) struct St {
    pub(super) issued: i64,
    pub(super) queue: VecDeque<Queued>,
    pub(super) confirmed: i64,
    pub(super) allowed: Option<Vec<String>>,
    pub(super) chats: HashMap<i64, Chat>,
    pub(super) missing: HashSet<i64>,
    pub(super) last_message_id: HashMap<i64, i64>,
    pub(super) messages: HashMap<(i64, i64), Value>,
    pub(super) files: Vec<FileEntry>,
    pub(super) open_queries: HashSet<String>,
    pub(super) serial: u64,
    pub(super) sent: Vec<Sent>,
    pub(super) edits: Vec<Edit>,
    pub(super) answers: Vec<(String, Option<String>)>,
    pub(super) commands: Option<Vec<(String, String)>>,
    pub(super) calls: HashMap<String, usize>,
    /// Per method, what each coming call does (`None`: answers normally).
    pub(super) faults: HashMap<String, VecDeque<Option<Fault>>>,
    pub(super) conflict: bool,
    pub(super) hold_sends: bool,
    /// Files over 20 MB are served (a local Bot API server).
    pub(super) big_files: bool,
    /// File downloads answered (`GET /file/...`).
    pub(super) downloads: usize,
    pub(super) poll_log: Vec<(Instant, Option<i64>, u16)>,
}

pub(super) struct Inner {
    pub(super) token: String,
    pub(super) st: Mutex<St>,
    pub(super) updates_arrived: Notify,
    pub(super) sent_arrived: Notify,
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().expect("fake telegram state")
    }
}

impl St {
    pub(super) fn enqueue(&mut self, kind: &str, mut body: Value, raw: bool) -> i64 {
        let id = FIRST_UPDATE_ID + self.issued;
        self.issued += 1;
        body["update_id"] = id.into();
        self.queue.push_back(Queued { id, kind: kind.into(), raw, body });
        id
    }

    pub(super) fn wants(&self, u: &Queued) -> bool {
        u.raw
            || match &self.allowed {
                Some(list) => list.contains(&u.kind),
                None => !OPT_IN_KINDS.contains(&u.kind.as_str()),
            }
    }

    /// A new message in `chat_id` from `from` (the chat is created if unknown).
    pub(super) fn new_message(&mut self, chat_id: i64, from: &User, fields: Value) -> Value {
        let chat =
            self.chats.entry(chat_id).or_insert_with(|| if chat_id < 0 { Chat::group(chat_id, "Group") } else { Chat::private(chat_id) });
        let mut msg = json!({"from": from, "chat": chat, "date": now()});
        let id = self.last_message_id.entry(chat_id).or_default();
        *id += 1;
        msg["message_id"] = (*id).into();
        msg.as_object_mut().expect("object").extend(fields.as_object().cloned().unwrap_or_default());
        self.messages.insert((chat_id, *id), msg.clone());
        msg
    }

    /// Registers a file; `{n}` in `path` becomes its serial. Returns its `FileMeta` JSON.
    pub(super) fn add_file(&mut self, id_prefix: &str, path: &str, bytes: Vec<u8>) -> Value {
        self.serial += 1;
        let n = self.serial;
        let f = FileEntry {
            id: format!("{id_prefix}{n:06}"),
            unique_id: format!("AgAD{n:04}"),
            path: path.replace("{n}", &n.to_string()),
            bytes: bytes.into(),
        };
        let meta = json!({"file_id": f.id, "file_unique_id": f.unique_id, "file_size": f.bytes.len()});
        self.files.push(f);
        meta
    }
}

pub(super) fn with_caption(mut fields: Value, caption: Option<&str>) -> Value {
    if let Some(c) = caption {
        fields["caption"] = c.into();
        let ents = entities(c);
        if !ents.is_empty() {
            fields["caption_entities"] = ents.into();
        }
    }
    fields
}

pub(super) fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs() as i64)
}

/// `bot_command` for a leading `/word[@bot]` and `mention` for `@username`,
/// with offsets and lengths in UTF-16 code units as Telegram counts them.
pub(super) fn entities(text: &str) -> Vec<Value> {
    let utf16 = |byte: usize| text[..byte].encode_utf16().count();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut command_end = 0;
    if let Some(rest) = text.strip_prefix('/') {
        let len = rest.bytes().take_while(|b| word(*b) || *b == b'@').count();
        if len > 0 {
            command_end = 1 + len;
            out.push(json!({"type": "bot_command", "offset": 0, "length": command_end}));
        }
    }
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('@') {
        let len = bytes[i + 1..].iter().take_while(|b| word(**b)).count();
        if i >= command_end && (i == 0 || !word(bytes[i - 1])) && (5..=32).contains(&len) {
            out.push(json!({"type": "mention", "offset": utf16(i), "length": len + 1}));
        }
    }
    out
}
