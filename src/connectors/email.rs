//! Email: a mailbox read over IMAP (IDLE when the server has it, else
//! polling), answers and the `send_email` action over SMTP.
//!
//! Inbound: each new message (UID above the stored cursor, fetched with
//! `BODY.PEEK[]` so nothing is marked read early) becomes an arrival in the
//! sender's chat: a markdown rendering of the mail and its attachments are
//! saved under the workspace, and the request is the subject or first line
//! when it starts with `/`, else the body, which becomes a task. The batch is stored with the
//! cursor (`UIDVALIDITY:UID`) in one transaction, and only then flagged
//! `\Seen` on the server. The inbox key is the Message-ID, so the same mail
//! delivered twice (or after a UIDVALIDITY change) is taken once.
//!
//! Every sender is untrusted until the topmost `Authentication-Results`
//! from our own server authenticates the `From:` address ([`auth`]) *and*
//! the address is linked to an identity: the gateway holds anything else
//! for an admin's review and never answers it. Mail from ourselves and
//! machine mail (auto-replies, bounces, lists) is never answered.

pub mod auth;
pub mod imap;
pub mod message;
pub mod smtp;

use super::{Backoff, mib};
use crate::BoxFuture;
use crate::config::EmailConfig;
use crate::domain::{ChatKind, ChatRef, Inbound, InboundMeta, IncomingFile, MailThread, OutboundMessage, SenderVerdict, TraceId};
use crate::gateway::{Arrival, Dispatcher, Gateway};
use crate::health::Health;
use crate::outbox::{Delivered, PublishError, Publisher};
use crate::store::Cursor;
use imap::{IdleOutcome, ImapSession};
use smtp::SmtpSender;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The connector's name in chat references, the inbox and health.
pub const NAME: &str = "email";

/// Messages fetched and stored per batch.
const BATCH: usize = 25;

/// The inbound side: reads the mailbox, stores, flags, hands stored mail on.
pub struct EmailConnector {
    /// Its settings.
    pub config: EmailConfig,
    /// `AGENT_RUNTIME_ATTACHMENT_MAX_BYTES`.
    pub attachment_max_bytes: u64,
    /// Stores messages.
    pub gateway: Gateway,
    /// Processes stored messages.
    pub dispatcher: Dispatcher,
    /// Where the connector reports its state (component `email`).
    pub health: Health,
}

impl super::Connector for EmailConnector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(self: Box<Self>, stop: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.serve(stop).await })
    }
}

/// Why a session ended.
enum Ended {
    Stopped,
    Failed { why: String, permanent: bool },
}

impl From<imap::ImapError> for Ended {
    fn from(e: imap::ImapError) -> Self {
        Ended::Failed { why: e.to_string(), permanent: e.is_permanent() }
    }
}

impl EmailConnector {
    fn cursor_key(&self) -> String {
        format!("mailbox:{}", self.config.mailbox)
    }

    /// Runs until `stop`: connects, catches up, waits for news; reconnects
    /// with backoff (1 s doubling to 5 min; rejected credentials start at
    /// 5 min, so the account is not locked by retries).
    pub async fn serve(self, stop: CancellationToken) {
        self.health.register(NAME);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        loop {
            let (why, permanent) = match self.session(&stop, &mut backoff).await {
                Ended::Stopped => return,
                Ended::Failed { why, permanent } => (why, permanent),
            };
            let mut wait = backoff.next_wait();
            if permanent {
                wait = wait.max(Duration::from_secs(300));
            }
            tracing::warn!(retry_in_s = wait.as_secs(), "email: {why}");
            self.health.degrade(NAME, format!("{why}; reconnecting in {}s", wait.as_secs()));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn session(&self, stop: &CancellationToken, backoff: &mut Backoff) -> Ended {
        let connected = tokio::select! {
            r = imap::connect(&self.config) => r,
            _ = stop.cancelled() => return Ended::Stopped,
        };
        let mut s = match connected {
            Ok(s) => s,
            Err(e) => return e.into(),
        };
        let (mut validity, mut last) = match self.select(&mut s).await {
            Ok(v) => v,
            Err(e) => return e,
        };
        backoff.reset();
        let idle = s.supports_idle();
        let how = if idle { "waiting with IDLE".to_string() } else { format!("polling every {}s", self.config.poll.as_secs()) };
        self.health.healthy(NAME, format!("{} on {}: {how}", self.config.mailbox, self.config.host));
        tracing::info!(mailbox = %self.config.mailbox, idle, "email connected");
        loop {
            if let Err(e) = self.take_new(&mut s, validity, &mut last).await {
                return e;
            }
            if idle {
                match s.idle(self.config.poll, stop).await {
                    Ok((back, IdleOutcome::Stopped)) => {
                        back.logout().await;
                        return Ended::Stopped;
                    }
                    Ok((back, _)) => s = back,
                    Err(e) => return e.into(),
                }
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.poll) => {}
                    _ = stop.cancelled() => {
                        s.logout().await;
                        return Ended::Stopped;
                    }
                }
                // A fresh SELECT makes the server report new mail (and a changed UIDVALIDITY).
                let now_valid = match s.select(&self.config.mailbox).await {
                    Ok(mb) => mb.uid_validity,
                    Err(e) => return e.into(),
                };
                if now_valid != validity {
                    self.validity_changed();
                    (validity, last) = (now_valid, 0);
                }
            }
        }
    }

    fn validity_changed(&self) {
        tracing::warn!(mailbox = %self.config.mailbox, "UIDVALIDITY changed: reading the mailbox again (Message-IDs keep each mail once)");
    }

    /// Selects the mailbox at connect; returns its UIDVALIDITY and the last
    /// stored UID (0 when the stored cursor belongs to another UIDVALIDITY).
    async fn select(&self, s: &mut ImapSession) -> Result<(u32, u32), Ended> {
        let mb = s.select(&self.config.mailbox).await?;
        let stored = match self.gateway.cursor(NAME, &self.cursor_key()).await {
            Ok(v) => v,
            Err(e) => return Err(Ended::Failed { why: format!("cannot read the stored mailbox cursor: {e}"), permanent: false }),
        };
        let parsed =
            stored.as_deref().and_then(|v| v.split_once(':')).and_then(|(v, u)| Some((v.parse::<u32>().ok()?, u.parse::<u32>().ok()?)));
        Ok(match parsed {
            Some((v, uid)) if v == mb.uid_validity => (v, uid),
            Some(_) => {
                self.validity_changed();
                (mb.uid_validity, 0)
            }
            None => (mb.uid_validity, 0),
        })
    }

    /// Fetches, stores, flags and hands on every message above `last`.
    async fn take_new(&self, s: &mut ImapSession, validity: u32, last: &mut u32) -> Result<(), Ended> {
        loop {
            let batch = s.fetch_after(*last, BATCH).await?;
            let Some(max) = batch.iter().map(|f| f.uid).max() else { return Ok(()) };
            let mut arrivals = Vec::new();
            let mut taken = Vec::new();
            for f in &batch {
                match self.arrival(validity, f.uid, &f.raw) {
                    Ok(Some(a)) => {
                        arrivals.push(a);
                        taken.push(f.uid);
                    }
                    Ok(None) => taken.push(f.uid),
                    // Left unread on the server for a human; the cursor moves past it.
                    Err(why) => tracing::warn!(uid = f.uid, "email: could not read a message: {why}"),
                }
            }
            let cursor = Cursor { connector: NAME.into(), key: self.cursor_key(), value: format!("{validity}:{max}") };
            let new = match self.gateway.ingest(arrivals, Some(cursor)).await {
                Ok(new) => new,
                Err(e) => return Err(Ended::Failed { why: format!("cannot store received mail: {e}"), permanent: false }),
            };
            *last = max;
            if !taken.is_empty() {
                s.mark_seen(&taken).await?;
            }
            self.dispatcher.submit(new).await;
        }
    }

    /// One mail as an arrival; `Ok(None)`: not for us (our own, machine mail, no single sender).
    fn arrival(&self, validity: u32, uid: u32, raw: &[u8]) -> Result<Option<Arrival>, String> {
        let mail = message::parse(raw)?;
        let Some(from) = mail.from.clone() else {
            tracing::info!(uid, "email: ignored a mail without a single From address");
            return Ok(None);
        };
        if from.email == self.config.address {
            tracing::debug!(uid, "email: ignored a mail from our own address");
            return Ok(None);
        }
        if mail.auto_generated {
            tracing::info!(uid, from = %from.email, "email: ignored machine mail (auto-reply, bounce or list)");
            return Ok(None);
        }
        let check = auth::check_sender(&mail.auth_results, &from.email, self.config.authserv_id.as_deref());
        let mut files = vec![IncomingFile { name: "email.md".into(), bytes: message::render_markdown(&mail, uid, &check).into_bytes() }];
        let mut skipped = Vec::new();
        for (name, bytes) in &mail.attachments {
            if bytes.len() as u64 > self.attachment_max_bytes {
                skipped.push(format!("{name} ({} is over the {} limit)", mib(bytes.len() as u64), mib(self.attachment_max_bytes)));
            } else {
                files.push(IncomingFile { name: name.clone(), bytes: bytes.clone() });
            }
        }
        let reply = message::reply_headers(&mail);
        let dedupe_key = match &mail.message_id {
            Some(id) => format!("mid:{}", id.to_ascii_lowercase()),
            None => format!("uid:{validity}:{uid}"),
        };
        let meta = InboundMeta {
            message_id: Some(mail.message_id.clone().unwrap_or_else(|| format!("uid-{validity}-{uid}"))),
            skipped,
            sender_check: Some(SenderVerdict { passed: check.passed, detail: check.detail }),
            thread: Some(MailThread { subject: reply.subject, references: reply.references }),
            text_is_task: true,
            ..Default::default()
        };
        let msg = Inbound {
            chat: ChatRef { connector: NAME.into(), external_id: from.email.clone() },
            from_user_id: from.email.clone(),
            display_name: from.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| from.email.clone()),
            text: request(&mail),
            kind: ChatKind::Private,
            mentioned: true,
            dedupe_key,
            trace_id: TraceId::random(),
            meta,
        };
        Ok(Some(Arrival { msg, files, staged: Vec::new() }))
    }
}

/// The most of a mail's text a task prompt takes (the whole mail is in the
/// workspace copy).
const MAX_TASK_CHARS: usize = 16 * 1024;

/// What the gateway reads: the subject or first line when it is a command,
/// else the body (a task, see `InboundMeta::text_is_task`), clipped so a
/// long mail is not refused for its length.
fn request(mail: &message::ParsedMail) -> String {
    let text = message::request_text(mail);
    let mut clipped: String = text.chars().take(MAX_TASK_CHARS).collect();
    if clipped.len() < text.len() {
        clipped.push_str("\n[… cut here; the whole mail is in the workspace copy]");
    }
    clipped
}

/// Delivers outbox rows by SMTP to the chat's address, threaded.
#[derive(Clone)]
pub struct EmailPublisher {
    sender: SmtpSender,
    own: Vec<String>,
}

impl EmailPublisher {
    /// A publisher over `sender` that never mails any of `own` (the
    /// runtime's addresses).
    pub fn new(sender: SmtpSender, own: Vec<String>) -> Self {
        let own = own.into_iter().map(|a| a.to_ascii_lowercase()).collect();
        Self { sender, own }
    }

    async fn deliver(&self, msg: &OutboundMessage) -> Result<Delivered, PublishError> {
        let to = msg.chat.external_id.trim().to_ascii_lowercase();
        if self.own.contains(&to) || to == self.sender.from().to_ascii_lowercase() {
            return Err(PublishError::permanent(format!("email: refusing to mail the runtime's own address {to}")));
        }
        let thread = msg.options.thread.clone().unwrap_or_default();
        let subject = if thread.subject.trim().is_empty() {
            let first: String = msg.body.lines().find(|l| !l.trim().is_empty()).unwrap_or("message").chars().take(70).collect();
            format!("agent-runtime: {}", first.trim())
        } else {
            thread.subject
        };
        let headers = message::ReplyHeaders {
            to,
            subject,
            in_reply_to: msg.options.reply_to.clone().filter(|r| r.contains('@')),
            references: thread.references,
        };
        let mail = message::build(self.sender.from(), &headers, &msg.body).map_err(|e| PublishError::permanent(format!("email: {e}")))?;
        let id = mail.headers().get_raw("Message-ID").map(|v| v.trim_matches(['<', '>']).to_string());
        self.sender.send(mail).await?;
        Ok(Delivered { platform_message_id: id })
    }
}

impl Publisher for EmailPublisher {
    fn publish<'a>(&'a self, msg: &'a OutboundMessage) -> BoxFuture<'a, Result<Delivered, PublishError>> {
        Box::pin(self.deliver(msg))
    }
}
