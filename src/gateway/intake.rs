//! What a connector may take in with a message's files (issue 14). The
//! gateway decides before a byte is downloaded; the connector only streams
//! each file into the [`Sink`] it is given, straight to disk.
//!
//! Invariants:
//! - A message not addressed to the bot (group chatter without a mention, a
//!   command for another bot), or in a chat the rules silence, has nothing
//!   downloaded and gets no notice about its files.
//! - A sender below the role that may queue work has nothing downloaded and
//!   is told why.
//! - Every file is bounded by the per-file limit and by what is left of the
//!   chat's quota (`AGENT_RUNTIME_ATTACHMENT_CHAT_QUOTA_BYTES`), checked on
//!   the size the platform declares and again on the bytes received: the
//!   download stops at the bound whatever was declared.
//! - A refused or failed file leaves nothing on disk; a kept one becomes
//!   visible only when its message is stored ([`Gateway::ingest`]).

use super::perm::{Denial, Rule, allowed};
use super::{Arrival, Gateway, GatewayError, Parsed, parse};
use crate::config::ChannelRules;
use crate::domain::{Actor, ChatKind, ChatRef, Context, Inbound, Role, WorkspaceId};
use crate::workspace::{Staged, Staging, Workspaces};

/// Who may have files kept: whoever may queue work (`/task`).
const KEEP_FILES: Rule = Rule { min: Some(Role::Member), admin_context: false, private_only: false, cost: super::perm::Cost::Write };

/// Whether `msg` speaks to the bot, so that its files are worth a look.
pub(crate) fn addressed(rules: &ChannelRules, msg: &Inbound) -> bool {
    match parse(&msg.text, msg.meta.bot_name.as_deref()) {
        Parsed::NotForUs => false,
        Parsed::Command(_) | Parsed::Usage(_) | Parsed::Unknown(_) => true,
        Parsed::Text(_) => msg.kind == ChatKind::Private || msg.mentioned || !rules.require_mention_in_groups,
    }
}

/// Whether `actor` may have files kept in `ctx`: `Err(None)` when the rules
/// silence the chat (nothing is said), `Err(Some(why))` to tell the sender.
pub(crate) fn may_keep(rules: &ChannelRules, actor: &Actor, ctx: &Context, kind: ChatKind) -> Result<(), Option<String>> {
    if !rules.allowed_context_ids.is_empty() && !rules.allowed_context_ids.iter().any(|c| c == ctx.id.as_str()) {
        return Err(None);
    }
    allowed(actor, ctx, kind, KEEP_FILES).map_err(|d| {
        Some(match d {
            Denial::Role { needed, held } => format!("keeping files needs the {needed} role; yours is {held}"),
            _ => "files are kept only for linked users; send `pair` to me in a private chat".to_string(),
        })
    })
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

fn amount(n: Option<u64>) -> String {
    n.map_or_else(|| "it".to_string(), mib)
}

/// Why a file was not kept: the sender reads it in the reply.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Past `AGENT_RUNTIME_ATTACHMENT_MAX_BYTES` (`size`: as declared; `None`: found while receiving).
    #[error("{} is over the {} limit", amount(*.size), mib(*.max))]
    TooBig {
        /// The declared size.
        size: Option<u64>,
        /// The limit.
        max: u64,
    },
    /// Past what is left of the chat's quota.
    #[error("{} is over the chat's attachment quota: {} of {} left", amount(*.size), mib(*.left), mib(*.quota))]
    OverQuota {
        /// The declared size.
        size: Option<u64>,
        /// The quota.
        quota: u64,
        /// What was left of it.
        left: u64,
    },
    /// The disk refused it.
    #[error("could not be written: {0}")]
    Write(#[source] std::io::Error),
    /// The platform did not deliver it (the connector's words).
    #[error("{0}")]
    Fetch(String),
}

/// What a message's files may use.
struct Budget {
    workspaces: Workspaces,
    ws: WorkspaceId,
    chat: ChatRef,
    stem: String,
    offered: usize,
    max_file: u64,
    quota: u64,
    left: u64,
}

enum Door {
    /// Files may be kept, within the budget.
    Open(Box<Budget>),
    /// Nothing is downloaded and nothing said.
    Closed,
    /// Nothing is downloaded; each file is reported not kept, for this reason.
    Refused(String),
}

/// The gateway's answer for one message's files; see the module docs.
pub struct Intake {
    door: Door,
    staged: Vec<Staged>,
    skipped: Vec<String>,
}

impl Gateway {
    /// Decides what `msg`'s files may take in, before any is downloaded;
    /// `max_file_bytes` is the connector's `AGENT_RUNTIME_ATTACHMENT_MAX_BYTES`.
    pub async fn intake(&self, msg: &Inbound, max_file_bytes: u64) -> Result<Intake, GatewayError> {
        if !addressed(&self.config.rules, msg) {
            return Ok(Intake::with(Door::Closed));
        }
        let user = self.store.lookup_user(&msg.chat.connector, &msg.from_user_id).await?;
        let ctx = self.store.ensure_context(&msg.chat, &msg.display_name, self.clock.now_ms()).await?;
        let actor = self.actor(&msg.from_user_id, user);
        match may_keep(&self.config.rules, &actor, &ctx, msg.kind) {
            Ok(()) => {}
            Err(None) => return Ok(Intake::with(Door::Closed)),
            Err(Some(why)) => return Ok(Intake::with(Door::Refused(why))),
        }
        let quota = self.config.attachment_chat_quota_bytes;
        let used = match self.workspaces.inbox_usage(&ctx.workspace_id, &msg.chat).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, chat = %msg.chat, "cannot measure the chat's attachments; none are kept");
                return Ok(Intake::with(Door::Refused(format!("the chat's attachment quota could not be checked: {e}"))));
            }
        };
        Ok(Intake::with(Door::Open(Box::new(Budget {
            workspaces: self.workspaces.clone(),
            ws: ctx.workspace_id,
            chat: msg.chat.clone(),
            stem: msg.meta.message_id.clone().unwrap_or_else(|| msg.dedupe_key.clone()),
            offered: 0,
            max_file: max_file_bytes,
            quota,
            left: quota.saturating_sub(used),
        }))))
    }
}

impl Intake {
    fn with(door: Door) -> Self {
        Self { door, staged: Vec::new(), skipped: Vec::new() }
    }

    /// A sink for the next file of the message, or `None`: do not download
    /// it (why, if the sender is to hear it, is already noted).
    pub async fn file(&mut self, name: &str, declared: Option<u64>) -> Option<Sink<'_>> {
        let b = match &mut self.door {
            Door::Closed => return None,
            Door::Refused(why) => {
                self.skipped.push(format!("{name} ({why})"));
                return None;
            }
            Door::Open(b) => b,
        };
        let stem = if b.offered == 0 { b.stem.clone() } else { format!("{}-{}", b.stem, b.offered) };
        b.offered += 1;
        let refusal = match declared {
            Some(n) if n > b.max_file => Some(Refusal::TooBig { size: declared, max: b.max_file }),
            Some(n) if n > b.left => Some(Refusal::OverQuota { size: declared, quota: b.quota, left: b.left }),
            _ => None,
        };
        let staging = match refusal {
            Some(r) => Err(r),
            None => b.workspaces.stage_attachment(&b.ws, &b.chat, &stem, name).await.map_err(Refusal::Write),
        };
        match staging {
            Ok(staging) => Some(Sink { name: name.to_string(), staging: Some(staging), refusal: None, intake: self }),
            Err(r) => {
                tracing::info!(chat = %b.chat, reason = %r, "attachment not downloaded");
                self.skipped.push(format!("{name} ({r})"));
                None
            }
        }
    }

    /// The message with its files: the kept ones to be stored with it, the
    /// others noted in its reply.
    pub fn into_arrival(self, mut msg: Inbound) -> Arrival {
        msg.meta.skipped.extend(self.skipped);
        Arrival { msg, files: Vec::new(), staged: self.staged }
    }

    fn budget(&mut self) -> Option<&mut Budget> {
        match &mut self.door {
            Door::Open(b) => Some(b),
            _ => None,
        }
    }
}

/// The download was stopped by the gateway (the reason is noted on the sink).
#[derive(Debug, thiserror::Error)]
#[error("the file was refused while downloading")]
pub struct Stopped;

/// Where one file's bytes go, enforcing the limits on what arrives.
/// Dropped without [`Sink::finish`], it leaves nothing behind.
pub struct Sink<'a> {
    intake: &'a mut Intake,
    name: String,
    staging: Option<Staging>,
    refusal: Option<Refusal>,
}

impl Sink<'_> {
    /// Writes the next chunk; `Err`: stop downloading.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), Stopped> {
        let (Some(staging), Some(b)) = (self.staging.as_mut(), self.intake.budget()) else { return Err(Stopped) };
        let after = staging.len() + chunk.len() as u64;
        let refusal = if after > b.max_file {
            Some(Refusal::TooBig { size: None, max: b.max_file })
        } else if after > b.left {
            Some(Refusal::OverQuota { size: None, quota: b.quota, left: b.left })
        } else {
            staging.write(chunk).await.err().map(Refusal::Write)
        };
        if let Some(r) = refusal {
            // Dropping the staging deletes what was written.
            self.staging = None;
            self.refusal = Some(r);
            return Err(Stopped);
        }
        Ok(())
    }

    /// Ends the file: kept (to be stored with its message) when `fetched`
    /// is `Ok` and nothing was refused; otherwise noted with the reason.
    pub async fn finish(mut self, fetched: Result<(), String>) {
        let result = match (self.refusal.take(), fetched, self.staging.take()) {
            (Some(r), _, _) => Err(r),
            (None, Err(why), _) => Err(Refusal::Fetch(why)),
            (None, Ok(()), Some(staging)) => staging.finish().await.map_err(Refusal::Write),
            (None, Ok(()), None) => Err(Refusal::Fetch("the download did not complete".to_string())),
        };
        match result {
            Ok(staged) => {
                if let Some(b) = self.intake.budget() {
                    b.left = b.left.saturating_sub(staged.len());
                }
                self.intake.staged.push(staged);
            }
            Err(r) => {
                tracing::info!(reason = %r, "attachment not kept");
                self.intake.skipped.push(format!("{} ({r})", self.name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{InboundMeta, TraceId, User, UserId};

    fn msg(kind: ChatKind, text: &str, mentioned: bool) -> Inbound {
        Inbound {
            chat: ChatRef::new("telegram", "-5").expect("chat"),
            from_user_id: "9".into(),
            display_name: "G".into(),
            text: text.into(),
            kind,
            mentioned,
            dedupe_key: "-5:1".into(),
            trace_id: TraceId::random(),
            meta: InboundMeta { bot_name: Some("bot".into()), ..Default::default() },
        }
    }

    #[test]
    fn only_messages_that_speak_to_the_bot_have_their_files_looked_at() {
        let rules = ChannelRules::default();
        assert!(!addressed(&rules, &msg(ChatKind::Group, "look at this", false)), "group chatter");
        assert!(!addressed(&rules, &msg(ChatKind::Group, "/help@other_bot", false)), "another bot's command");
        assert!(!addressed(&rules, &msg(ChatKind::Private, "/help@other_bot", false)), "another bot's command, even in private");
        assert!(!addressed(&rules, &msg(ChatKind::Group, "", false)), "a bare file in a group");
        assert!(addressed(&rules, &msg(ChatKind::Group, "look", true)), "a mention");
        assert!(addressed(&rules, &msg(ChatKind::Group, "/task summarise", false)), "a command");
        assert!(addressed(&rules, &msg(ChatKind::Group, "/nope", false)), "an unknown command is answered");
        assert!(addressed(&rules, &msg(ChatKind::Private, "", false)), "a bare file in private");
        let open = ChannelRules { require_mention_in_groups: false, ..ChannelRules::default() };
        assert!(addressed(&open, &msg(ChatKind::Group, "look at this", false)), "groups without the mention rule");
    }

    fn context(id: &str) -> Context {
        Context {
            id: crate::domain::ContextId::from_string(id),
            workspace_id: WorkspaceId::from_string("w"),
            chat: ChatRef::new("telegram", "-5").expect("chat"),
            display_name: "G".into(),
            system_prompt: String::new(),
            is_admin: false,
            created_at: 0,
        }
    }

    fn actor(linked: Option<Role>, guest: Option<Role>) -> Actor {
        let user = linked.map(|role| User { id: UserId::from_string("u"), display_name: "U".into(), role });
        Actor { platform_user_id: "9".into(), api: false, role: user.as_ref().map(|u| u.role).or(guest), user }
    }

    #[test]
    fn files_are_kept_for_senders_who_may_queue_work_in_chats_the_rules_allow() {
        let (rules, ctx) = (ChannelRules::default(), context("c1"));
        assert_eq!(may_keep(&rules, &actor(None, Some(Role::Member)), &ctx, ChatKind::Group), Ok(()), "member guests");
        assert_eq!(may_keep(&rules, &actor(Some(Role::Admin), None), &ctx, ChatKind::Group), Ok(()));
        let no_role = may_keep(&rules, &actor(None, None), &ctx, ChatKind::Private).expect_err("no role");
        assert!(no_role.is_some_and(|w| w.contains("linked")));
        let viewer = may_keep(&rules, &actor(Some(Role::Viewer), None), &ctx, ChatKind::Private).expect_err("viewer");
        assert!(viewer.is_some_and(|w| w.contains("member role")));
        let listed = ChannelRules { allowed_context_ids: vec!["c2".into()], ..ChannelRules::default() };
        assert_eq!(may_keep(&listed, &actor(Some(Role::Admin), None), &ctx, ChatKind::Group), Err(None), "a silenced chat: nothing said");
        assert_eq!(may_keep(&listed, &actor(None, Some(Role::Member)), &context("c2"), ChatKind::Group), Ok(()));
    }

    fn open(root: &std::path::Path, max_file: u64, left: u64) -> Intake {
        Intake::with(Door::Open(Box::new(Budget {
            workspaces: Workspaces::new(root.to_path_buf()),
            ws: WorkspaceId::from_string("w"),
            chat: ChatRef::new("telegram", "1").expect("chat"),
            stem: "7".into(),
            offered: 0,
            max_file,
            quota: 100,
            left,
        })))
    }

    fn files_in(root: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(root.join("w/inbox/telegram/1"))
            .map(|r| r.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn the_bytes_received_are_bounded_whatever_size_was_declared() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut intake = open(root.path(), 50, 70);
        // Declared honestly and too big: no sink, so no download.
        assert!(intake.file("big.bin", Some(51)).await.is_none());
        // Declared small, sent big: stopped at the limit, nothing left behind.
        let mut sink = intake.file("liar.bin", Some(1)).await.expect("sink");
        sink.write(&[0; 40]).await.expect("within");
        assert!(sink.write(&[0; 20]).await.is_err(), "the 60th byte is past the 50-byte limit");
        assert!(sink.write(&[0; 1]).await.is_err(), "stays stopped");
        sink.finish(Err("stopped".into())).await;
        assert!(files_in(root.path()).is_empty(), "{:?}", files_in(root.path()));
        // Within both: kept, and the quota shrinks by what it took (70 - 45 = 25 left).
        let mut sink = intake.file("ok.bin", None).await.expect("sink");
        sink.write(&[1; 45]).await.expect("within");
        sink.finish(Ok(())).await;
        assert!(intake.file("quota.bin", Some(30)).await.is_none(), "declared past what is left");
        let mut sink = intake.file("next.bin", Some(10)).await.expect("declared within what is left");
        assert!(sink.write(&[1; 26]).await.is_err(), "25 bytes of quota were left");
        sink.finish(Ok(())).await;
        let arrival = intake.into_arrival(msg(ChatKind::Private, "", false));
        assert_eq!(arrival.staged.len(), 1);
        let skipped = arrival.msg.meta.skipped;
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped[0].starts_with("big.bin (0.0 MiB is over the 0.0 MiB limit"), "{skipped:?}");
        assert!(skipped[1].starts_with("liar.bin (it is over the 0.0 MiB limit"), "{skipped:?}");
        assert!(skipped[2].starts_with("quota.bin (0.0 MiB is over the chat's attachment quota: 0.0 MiB of 0.0 MiB left"), "{skipped:?}");
        assert!(skipped[3].starts_with("next.bin (it is over the chat's attachment quota"), "{skipped:?}");
        let names = files_in(root.path());
        assert!(names.len() == 1 && names[0].starts_with(".7-2-ok.bin."), "only the kept file, waiting to be stored: {names:?}");
        let kept = arrival.staged.into_iter().next().expect("kept");
        assert_eq!(kept.rel(), "inbox/telegram/1/7-2-ok.bin");
        kept.commit().await.expect("commit");
        assert_eq!(files_in(root.path()), vec!["7-2-ok.bin"]);
    }

    #[tokio::test]
    async fn a_refused_door_downloads_nothing_and_says_why() {
        let mut intake = Intake::with(Door::Refused("no role".into()));
        assert!(intake.file("a.txt", Some(1)).await.is_none());
        let mut closed = Intake::with(Door::Closed);
        assert!(closed.file("b.txt", Some(1)).await.is_none());
        assert_eq!(intake.into_arrival(msg(ChatKind::Private, "", false)).msg.meta.skipped, vec!["a.txt (no role)"]);
        assert!(closed.into_arrival(msg(ChatKind::Group, "", false)).msg.meta.skipped.is_empty(), "closed: nothing said");
    }
}
