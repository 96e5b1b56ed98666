//! The gateway websocket (API v10, JSON, no compression), our own: HELLO,
//! then IDENTIFY (a new session) or RESUME (the last one, from its last
//! sequence number), heartbeats at Discord's interval with the first one
//! jittered, a connection whose heartbeat goes unacknowledged treated as
//! dead, op 7 RECONNECT and op 9 INVALID_SESSION obeyed, and the close
//! codes that no retry can fix (a bad token, intents not enabled) told
//! apart from the ones a RESUME fixes.
//!
//! Events go to the connector's loop in the order Discord sent them,
//! through its bounded queue ([`super::events`]); while the queue is full
//! the heartbeats go on.
//!
//! (serenity did this before; it brought a second TLS stack and models
//! for every gateway event into the binary for five events and two fields
//! each: ARCHITECTURE.md.)

use super::events::{EVENT_WAIT, Ev, Queued, offer};
use super::model::{Interaction, Message, Ready};
use crate::connectors::Backoff;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::sync::CancellationToken;

/// Discord's gateway when `GET /gateway/bot` cannot say.
pub const DEFAULT_GATEWAY: &str = "wss://gateway.discord.gg";

/// TCP, TLS and the websocket upgrade, together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// HELLO comes first, at once.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest message accepted (a READY or GUILD_CREATE of a big guild is
/// a few MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT.
pub const INTENTS: u64 = 1 | (1 << 9) | (1 << 12) | (1 << 15);

/// Where and as whom to connect.
pub struct Socket {
    /// The gateway (`wss://…`; `ws://` for a local test server), without a query.
    pub url: String,
    /// The bot token.
    pub token: String,
    /// TLS settings for `wss://`.
    pub tls: Arc<rustls::ClientConfig>,
}

/// A session to RESUME.
struct Session {
    id: String,
    resume_url: Option<String>,
    seq: Option<u64>,
}

/// Why a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The connector is stopping.
    Stopped,
    /// Connect again and RESUME (the session stays).
    Resume(String),
    /// The session is gone: connect again and IDENTIFY.
    Identify(String),
    /// Retrying will not help until the operator acts.
    Fatal(String),
}

/// One frame from Discord.
#[derive(Deserialize)]
struct Payload {
    op: u8,
    #[serde(default)]
    d: Value,
    #[serde(default)]
    s: Option<u64>,
    #[serde(default)]
    t: Option<String>,
}

/// Runs the gateway until `stop`: connects, and connects again after every
/// end — at once to RESUME a session that was up, else after a backoff
/// (2 s doubling to 5 minutes) — telling the loop each time it goes down.
pub async fn run(socket: Socket, tx: mpsc::Sender<Ev>, lost: Arc<AtomicBool>, stop: CancellationToken) {
    let mut session: Option<Session> = None;
    let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
    loop {
        let mut conn = Conn { socket: &socket, tx: &tx, lost: &lost, session: &mut session, up: false, seq: None };
        let end = conn.run(&stop).await;
        let up = conn.up;
        let (why, wait) = match end {
            End::Stopped => return,
            End::Fatal(why) => (why, backoff.next_wait()),
            End::Resume(why) if up => {
                backoff.reset();
                (why, Duration::ZERO)
            }
            End::Identify(why) if up => {
                backoff.reset();
                // Discord asks for 1 to 5 seconds before a new IDENTIFY.
                (why, Duration::from_millis(1000 + u64::from(jitter_permille()) * 4))
            }
            End::Resume(why) | End::Identify(why) => (why, backoff.next_wait()),
        };
        let text =
            if wait.is_zero() { format!("{why}; reconnecting") } else { format!("{why}; reconnecting in {}s", wait.as_secs().max(1)) };
        if matches!(offer(&tx, Ev::Down(text), None).await, Queued::Closed) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// 0..1000 from the clock's nanoseconds: enough spread for a first heartbeat.
fn jitter_permille() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(500, |d| d.subsec_nanos() % 1000)
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Ws = WebSocketStream<Box<dyn Io>>;

/// Opens the websocket to `url` (`?v=10&encoding=json` added).
async fn connect(socket: &Socket, url: &str) -> Result<Ws, String> {
    let base = url.split('?').next().unwrap_or(url);
    let full = format!("{}/?v=10&encoding=json", base.trim_end_matches('/'));
    let parsed = reqwest::Url::parse(&full).map_err(|e| format!("bad gateway URL {base}: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| format!("bad gateway URL {base}: no host"))?.to_string();
    let tls = match parsed.scheme() {
        "wss" => true,
        "ws" => false,
        other => return Err(format!("bad gateway URL {base}: {other}:// is not a websocket")),
    };
    let port = parsed.port().unwrap_or(if tls { 443 } else { 80 });
    let tcp =
        TcpStream::connect((host.trim_matches(['[', ']']), port)).await.map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if tls {
        let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|e| format!("bad gateway host {host}: {e}"))?;
        let stream =
            tokio_rustls::TlsConnector::from(socket.tls.clone()).connect(name, tcp).await.map_err(|e| format!("TLS with {host}: {e}"))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let request = full.as_str().into_client_request().map_err(|e| format!("bad gateway URL {base}: {e}"))?;
    let config = WebSocketConfig { max_message_size: Some(MAX_MESSAGE), max_frame_size: Some(MAX_MESSAGE), ..WebSocketConfig::default() };
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, io, Some(config))
        .await
        .map_err(|e| format!("websocket upgrade at {base}: {e}"))?;
    Ok(ws)
}

/// What a close code from Discord means for the next connection.
fn closed(frame: Option<CloseFrame<'_>>) -> End {
    let Some(f) = frame else { return End::Resume("the gateway closed the connection".into()) };
    let code = u16::from(f.code);
    let said = if f.reason.is_empty() { String::new() } else { format!(": {}", f.reason) };
    let fatal = match code {
        4004 => Some("Discord rejected the bot token (AGENT_RUNTIME_DISCORD_TOKEN)"),
        4010 | 4011 => Some("Discord wants this bot sharded (it is in too many guilds for one connection), which this runtime does not do"),
        4012 => Some("Discord refused the gateway API version"),
        4013 => Some("Discord refused the gateway intents"),
        4014 => Some("Discord refused a privileged intent: enable the Message Content intent for the bot in the Discord developer portal"),
        _ => None,
    };
    match (fatal, code) {
        (Some(why), _) => End::Fatal(format!("{why} (close {code})")),
        // Sequence out of order, or the session timed out: it cannot be resumed.
        (None, 4007 | 4009) => End::Identify(format!("the gateway ended the session (close {code}{said})")),
        (None, _) => End::Resume(format!("the gateway closed the connection (close {code}{said})")),
    }
}

/// One connection, from HELLO to its end.
struct Conn<'a> {
    socket: &'a Socket,
    tx: &'a mpsc::Sender<Ev>,
    lost: &'a AtomicBool,
    session: &'a mut Option<Session>,
    /// READY or RESUMED came on this connection.
    up: bool,
    /// The last sequence number seen before READY (then it is the session's).
    seq: Option<u64>,
}

/// The heartbeat's clock.
struct Beat {
    every: Duration,
    next: Instant,
    /// The last heartbeat was acknowledged (or events were being handed on,
    /// so acknowledgements could not be read).
    acked: bool,
}

impl Conn<'_> {
    fn seq(&self) -> Option<u64> {
        self.session.as_ref().map_or(self.seq, |s| s.seq)
    }

    fn saw(&mut self, s: u64) {
        match self.session.as_mut() {
            Some(session) => session.seq = Some(session.seq.map_or(s, |n| n.max(s))),
            None => self.seq = Some(self.seq.map_or(s, |n| n.max(s))),
        }
    }

    async fn run(&mut self, stop: &CancellationToken) -> End {
        let url = self.session.as_ref().and_then(|s| s.resume_url.clone()).unwrap_or_else(|| self.socket.url.clone());
        let ws = tokio::select! {
            r = timeout(CONNECT_TIMEOUT, connect(self.socket, &url)) => match r {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => return End::Resume(e),
                Err(_) => return End::Resume(format!("no gateway connection within {}s", CONNECT_TIMEOUT.as_secs())),
            },
            _ = stop.cancelled() => return End::Stopped,
        };
        let (mut sink, mut stream) = ws.split();
        let every = match timeout(HELLO_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(Frame::Text(t)))) => match serde_json::from_str::<Payload>(&t) {
                Ok(p) if p.op == 10 => p.d["heartbeat_interval"].as_u64().filter(|ms| *ms > 0).map(Duration::from_millis),
                _ => None,
            },
            Ok(Some(Ok(Frame::Close(frame)))) => return closed(frame),
            _ => None,
        };
        let Some(every) = every else { return End::Resume("the gateway sent no HELLO".into()) };
        let hello = match self.session.as_ref() {
            Some(s) => json!({"op": 6, "d": {"token": self.socket.token, "session_id": s.id, "seq": s.seq}}),
            None => json!({"op": 2, "d": {"token": self.socket.token, "intents": INTENTS,
                "properties": {"os": std::env::consts::OS, "browser": "agent-runtime", "device": "agent-runtime"}}}),
        };
        if let Err(e) = sink.send(Frame::Text(hello.to_string())).await {
            return End::Resume(format!("gateway connection: {e}"));
        }
        let mut beat = Beat { every, next: Instant::now() + every.mul_f64(f64::from(jitter_permille()) / 1000.0), acked: true };
        let end = loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => break End::Stopped,
                _ = sleep_until(beat.next) => {
                    if !beat.acked {
                        break End::Resume("the gateway stopped acknowledging heartbeats".into());
                    }
                    if let Err(e) = self.heartbeat(&mut sink, &mut beat).await {
                        break e;
                    }
                    continue;
                }
                frame = stream.next() => frame,
            };
            let text = match frame {
                Some(Ok(Frame::Text(t))) => t,
                Some(Ok(Frame::Close(frame))) => return closed(frame),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return End::Resume(format!("gateway connection: {e}")),
                None => return End::Resume("the gateway connection dropped".into()),
            };
            let p = match serde_json::from_str::<Payload>(&text) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "an unreadable gateway payload was skipped");
                    continue;
                }
            };
            match p.op {
                0 => {
                    if let Some(s) = p.s {
                        self.saw(s);
                    }
                    if let Err(e) = self.dispatch(p, &mut sink, &mut beat).await {
                        break e;
                    }
                }
                1 => {
                    if let Err(e) = self.heartbeat(&mut sink, &mut beat).await {
                        break e;
                    }
                }
                7 => break End::Resume("Discord asked for a reconnect (op 7)".into()),
                9 if p.d.as_bool() == Some(true) => break End::Resume("the gateway invalidated the connection (op 9)".into()),
                9 => {
                    *self.session = None;
                    break End::Identify("the gateway refused to resume the session (op 9)".into());
                }
                11 => beat.acked = true,
                _ => {}
            }
        };
        // A clean close (1000) would end the session on Discord's side: only
        // when stopping; otherwise a close it can still resume.
        let (code, reason) =
            if end == End::Stopped { (CloseCode::Normal, "shutting down") } else { (CloseCode::Library(4000), "reconnecting") };
        let _ = timeout(Duration::from_secs(2), sink.send(Frame::Close(Some(CloseFrame { code, reason: reason.into() })))).await;
        end
    }

    async fn heartbeat(&self, sink: &mut futures_util::stream::SplitSink<Ws, Frame>, beat: &mut Beat) -> Result<(), End> {
        beat.acked = false;
        beat.next = Instant::now() + beat.every;
        let frame = json!({"op": 1, "d": self.seq()}).to_string();
        sink.send(Frame::Text(frame)).await.map_err(|e| End::Resume(format!("gateway connection: {e}")))
    }

    /// Handles one dispatch; the ones the connector uses go to its queue.
    async fn dispatch(&mut self, p: Payload, sink: &mut futures_util::stream::SplitSink<Ws, Frame>, beat: &mut Beat) -> Result<(), End> {
        let ev = match p.t.as_deref() {
            Some("READY") => {
                let r: Ready = serde_json::from_value(p.d).map_err(|e| End::Identify(format!("an unreadable READY: {e}")))?;
                *self.session = Some(Session { id: r.session_id, resume_url: r.resume_gateway_url, seq: self.seq });
                self.up = true;
                Ev::Ready { user: r.user.id, app: r.application.id }
            }
            Some("RESUMED") => {
                self.up = true;
                Ev::Resumed
            }
            Some("MESSAGE_CREATE") => match serde_json::from_value::<Message>(p.d) {
                Ok(m) => Ev::Message(Box::new(m)),
                Err(e) => {
                    tracing::warn!(error = %e, "an unreadable Discord message was skipped");
                    return Ok(());
                }
            },
            Some("INTERACTION_CREATE") => match serde_json::from_value::<Interaction>(p.d) {
                Ok(i) => Ev::Interaction(Box::new(i)),
                Err(e) => {
                    tracing::warn!(error = %e, "an unreadable Discord interaction was skipped");
                    return Ok(());
                }
            },
            _ => return Ok(()),
        };
        self.forward(ev, sink, beat).await
    }

    /// Queues `ev` for the loop: connection events wait for room, messages
    /// and interactions at most [`EVENT_WAIT`] (then they are dropped and
    /// the channels caught up). Heartbeats go on meanwhile.
    async fn forward(&mut self, ev: Ev, sink: &mut futures_util::stream::SplitSink<Ws, Frame>, beat: &mut Beat) -> Result<(), End> {
        let droppable = matches!(ev, Ev::Message(_) | Ev::Interaction(_));
        let tx = self.tx.clone();
        let queued = offer(&tx, ev, droppable.then_some(EVENT_WAIT));
        tokio::pin!(queued);
        let outcome = loop {
            tokio::select! {
                q = &mut queued => break q,
                _ = sleep_until(beat.next) => {
                    // Acknowledgements cannot be read while waiting here.
                    self.heartbeat(sink, beat).await?;
                    beat.acked = true;
                }
            }
        };
        match outcome {
            Queued::Yes => Ok(()),
            Queued::Dropped => {
                tracing::warn!(
                    queue = super::events::EVENT_QUEUE,
                    "the Discord event queue stayed full; an event was dropped (channels are caught up)"
                );
                self.lost.store(true, Ordering::SeqCst);
                Ok(())
            }
            Queued::Closed => Err(End::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(code: u16, reason: &str) -> End {
        closed(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() }))
    }

    #[test]
    fn close_codes_that_no_retry_fixes_are_fatal_and_the_rest_resume_or_identify() {
        assert!(matches!(close(4004, "Authentication failed."), End::Fatal(w) if w.contains("AGENT_RUNTIME_DISCORD_TOKEN")));
        assert!(matches!(close(4014, "Disallowed intent(s)."), End::Fatal(w) if w.contains("Message Content intent")));
        for code in [4010, 4011, 4012, 4013] {
            assert!(matches!(close(code, ""), End::Fatal(_)), "{code}");
        }
        assert!(matches!(close(4009, "Session timed out."), End::Identify(w) if w.contains("4009: Session timed out.")));
        assert!(matches!(close(4007, ""), End::Identify(_)));
        for code in [1000, 1001, 1006, 4000, 4001, 4002, 4003, 4005, 4008] {
            assert!(matches!(close(code, ""), End::Resume(_)), "{code}");
        }
        assert!(matches!(closed(None), End::Resume(_)));
    }

    #[test]
    fn the_intents_are_guilds_guild_messages_direct_messages_and_message_content() {
        assert_eq!(INTENTS, 37377);
    }
}
