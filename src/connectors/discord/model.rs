//! The few Discord objects the connector reads, with only the fields it
//! uses. Discord adds fields all the time; unknown ones are ignored, and
//! snowflakes (64-bit ids Discord sends as strings) are read as numbers.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A snowflake as Discord sends it: a decimal string (a number is taken too).
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Number(u64),
    Text(String),
}

fn snowflake<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(s) => s.parse().map_err(|_| serde::de::Error::custom(format!("not a Discord id: {s:?}"))),
    }
}

fn maybe_snowflake<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(s)) => s.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("not a Discord id: {s:?}"))),
    }
}

/// A user (a message's author, a mention, an interaction's user).
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// The user's id.
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
    /// The unique username.
    #[serde(default)]
    pub username: String,
    /// The display name, when set.
    #[serde(default)]
    pub global_name: Option<String>,
    /// Whether the account is a bot.
    #[serde(default)]
    pub bot: bool,
}

impl User {
    /// The name people see: the display name, else the username.
    pub fn shown_name(&self) -> String {
        self.global_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| self.username.clone())
    }
}

/// A file attached to a message.
#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    /// Its file name.
    pub filename: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Where to fetch it.
    pub url: String,
}

/// The message a message replies to (only its author is read).
#[derive(Debug, Clone, Deserialize)]
pub struct Replied {
    /// Who wrote it.
    pub author: User,
}

/// A channel message (MESSAGE_CREATE, or a page of REST history).
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// Its id (ids grow with time).
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
    /// Its channel.
    #[serde(deserialize_with = "snowflake")]
    pub channel_id: u64,
    /// Its guild (MESSAGE_CREATE in a guild; REST history leaves it out).
    #[serde(default, deserialize_with = "maybe_snowflake")]
    pub guild_id: Option<u64>,
    /// Who wrote it.
    pub author: User,
    /// Its text.
    #[serde(default)]
    pub content: String,
    /// The users it mentions.
    #[serde(default)]
    pub mentions: Vec<User>,
    /// The message it replies to, when Discord still has it.
    #[serde(default)]
    pub referenced_message: Option<Box<Replied>>,
    /// Its files.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// A guild member (an interaction in a guild names its user here).
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    /// The member's user.
    pub user: Option<User>,
}

/// Something with an id.
#[derive(Debug, Clone, Deserialize)]
pub struct Ref {
    /// The id.
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
}

/// One option of a slash command.
#[derive(Debug, Clone, Deserialize)]
pub struct CommandOption {
    /// Its value: a string, number or boolean (absent for subcommands).
    #[serde(default)]
    pub value: Option<Value>,
}

/// An interaction's data: a command's name and options, or a button's id.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InteractionData {
    /// A command's name.
    #[serde(default)]
    pub name: String,
    /// A command's options, in order.
    #[serde(default)]
    pub options: Vec<CommandOption>,
    /// A button's `custom_id`.
    #[serde(default)]
    pub custom_id: String,
}

/// Interaction type 2: a slash command.
pub const APPLICATION_COMMAND: u8 = 2;
/// Interaction type 3: a button press.
pub const MESSAGE_COMPONENT: u8 = 3;

/// An interaction (INTERACTION_CREATE): a slash command or a button press.
#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    /// Its id.
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
    /// The bot's application.
    #[serde(deserialize_with = "snowflake")]
    pub application_id: u64,
    /// [`APPLICATION_COMMAND`], [`MESSAGE_COMPONENT`] or another kind.
    #[serde(rename = "type")]
    pub kind: u8,
    /// The token for its response (valid 15 minutes).
    pub token: String,
    /// Its channel.
    #[serde(default, deserialize_with = "maybe_snowflake")]
    pub channel_id: Option<u64>,
    /// Its channel, as newer payloads also send it.
    #[serde(default)]
    pub channel: Option<Ref>,
    /// Its guild, if in one.
    #[serde(default, deserialize_with = "maybe_snowflake")]
    pub guild_id: Option<u64>,
    /// In a guild: the member who acted.
    #[serde(default)]
    pub member: Option<Member>,
    /// In a DM: the user who acted.
    #[serde(default)]
    pub user: Option<User>,
    /// The command or button.
    #[serde(default)]
    pub data: Option<InteractionData>,
    /// A button press: the message that carried the button.
    #[serde(default)]
    pub message: Option<Ref>,
}

impl Interaction {
    /// Who acted: the guild member's user, else the DM's user.
    pub fn actor(&self) -> Option<&User> {
        self.member.as_ref().and_then(|m| m.user.as_ref()).or(self.user.as_ref())
    }

    /// Its channel.
    pub fn channel(&self) -> Option<u64> {
        self.channel_id.or(self.channel.as_ref().map(|c| c.id))
    }

    /// A slash command as chat text: `/name` and each option's value.
    pub fn command_text(&self) -> String {
        let data = self.data.clone().unwrap_or_default();
        let mut text = format!("/{}", data.name);
        for v in data.options.iter().filter_map(|o| o.value.as_ref()) {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            text.push(' ');
            text.push_str(&v);
        }
        text
    }
}

/// READY: who the bot is, and the session to resume.
#[derive(Debug, Clone, Deserialize)]
pub struct Ready {
    /// The bot's user.
    pub user: User,
    /// The bot's application.
    pub application: Ref,
    /// The session, for RESUME.
    pub session_id: String,
    /// Where to RESUME.
    #[serde(default)]
    pub resume_gateway_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A MESSAGE_CREATE as Discord sends it (fields we do not read included).
    #[test]
    fn a_message_reads_with_unknown_fields_and_string_ids() {
        let m: Message = serde_json::from_value(json!({
            "id": "1300000000000000001", "channel_id": "42", "guild_id": "7", "type": 0, "tts": false,
            "author": {"id": "5", "username": "ann", "discriminator": "0", "global_name": "Ann", "avatar": null},
            "content": "hi <@9>", "mentions": [{"id": "9", "username": "bot", "bot": true, "member": {"roles": []}}],
            "referenced_message": null, "embeds": [], "flags": 0, "pinned": false,
            "attachments": [{"id": "3", "filename": "a.txt", "size": 12, "url": "https://cdn/a.txt", "proxy_url": "x"}],
            "member": {"roles": [], "joined_at": "2026-01-01T00:00:00Z"}, "timestamp": "2026-01-01T00:00:00Z"
        }))
        .expect("a MESSAGE_CREATE");
        assert_eq!((m.id, m.channel_id, m.guild_id, m.author.id), (1_300_000_000_000_000_001, 42, Some(7), 5));
        assert_eq!((m.author.shown_name().as_str(), m.author.bot, m.mentions[0].id), ("Ann", false, 9));
        assert_eq!((m.attachments[0].filename.as_str(), m.attachments[0].size), ("a.txt", 12));
        assert!(m.referenced_message.is_none());
        // REST history: no guild_id, a reply, numbers where strings are usual.
        let m: Message = serde_json::from_value(json!({"id": 2, "channel_id": "42", "author": {"id": "5", "username": "ann"},
            "referenced_message": {"id": "1", "channel_id": "42", "author": {"id": "9", "username": "bot", "bot": true}}}))
        .expect("a history message");
        assert_eq!((m.guild_id, m.content.as_str(), m.referenced_message.map(|r| r.author.id)), (None, "", Some(9)));
    }

    #[test]
    fn a_malformed_id_is_an_error_not_a_zero() {
        let bad = serde_json::from_value::<Message>(json!({"id": "12x", "channel_id": "1", "author": {"id": "5"}}));
        assert!(bad.is_err_and(|e| e.to_string().contains("not a Discord id")));
        assert!(serde_json::from_value::<Message>(json!({"id": "1", "channel_id": "1"})).is_err(), "no author");
    }

    #[test]
    fn interactions_name_their_actor_channel_and_command_text() {
        let c: Interaction = serde_json::from_value(json!({
            "id": "11", "application_id": "2", "type": 2, "token": "tok", "channel_id": "42", "guild_id": "7", "version": 1,
            "member": {"user": {"id": "5", "username": "ann"}, "roles": []},
            "data": {"id": "1", "name": "task", "type": 1, "options": [
                {"name": "args", "type": 3, "value": "write a poem"}, {"name": "n", "type": 4, "value": 3},
                {"name": "x", "type": 10, "value": 2.5}, {"name": "b", "type": 5, "value": true}, {"name": "sub", "type": 1, "options": []}]}
        }))
        .expect("a command");
        assert_eq!((c.kind, c.actor().map(|u| u.id), c.channel(), c.guild_id), (APPLICATION_COMMAND, Some(5), Some(42), Some(7)));
        assert_eq!(c.command_text(), "/task write a poem 3 2.5 true");
        let b: Interaction = serde_json::from_value(json!({
            "id": "12", "application_id": "2", "type": 3, "token": "t2", "channel": {"id": "43", "type": 1},
            "user": {"id": "6", "username": "bob"}, "data": {"custom_id": "approve:01", "component_type": 2},
            "message": {"id": "99", "channel_id": "43", "author": {"id": "9", "username": "bot"}}
        }))
        .expect("a button press");
        assert_eq!((b.kind, b.actor().map(|u| u.id), b.channel(), b.guild_id), (MESSAGE_COMPONENT, Some(6), Some(43), None));
        assert_eq!((b.data.map(|d| d.custom_id), b.message.map(|m| m.id)), (Some("approve:01".to_string()), Some(99)));
    }

    #[test]
    fn ready_names_the_bot_the_application_and_the_session() {
        let r: Ready = serde_json::from_value(json!({"v": 10, "user": {"id": "9", "username": "bot", "bot": true}, "guilds": [],
            "session_id": "s1", "resume_gateway_url": "wss://resume.example", "shard": [0, 1], "application": {"id": "2", "flags": 0}}))
        .expect("READY");
        assert_eq!((r.user.id, r.application.id, r.session_id.as_str()), (9, 2, "s1"));
        assert_eq!(r.resume_gateway_url.as_deref(), Some("wss://resume.example"));
    }
}
