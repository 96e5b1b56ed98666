//! The gateway side: one task per websocket (HELLO, then IDENTIFY → READY or
//! RESUME → replay + RESUMED, heartbeat ACKs), fed through its queue.

use super::APP_ID;
use super::state::{Inner, bot_user};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMsg;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// What a socket task is told to do.
pub(super) enum Cmd {
    Frame(String),
    Close(u16, &'static str),
    Drop,
}

pub(super) type Tx = mpsc::UnboundedSender<Cmd>;

#[derive(Default)]
pub(super) struct Gw {
    pub(super) heartbeat_ms: u64,
    pub(super) session: Option<String>,
    pub(super) sessions: u64,
    pub(super) seq: u64,
    pub(super) replay: Vec<(u64, String)>,
    pub(super) live: Option<(u64, Tx)>,
    pub(super) conns: u64,
    pub(super) ops: Vec<(u8, Value)>,
    pub(super) identifies: usize,
    pub(super) resumes: usize,
    pub(super) intents: Option<u64>,
    /// Heartbeats go unacknowledged (a zombied connection, as the client sees it).
    pub(super) mute_acks: bool,
}

impl Gw {
    /// Sequences a dispatch and sends it if a socket is live; without a
    /// session nothing happens.
    pub(super) fn dispatch(&mut self, t: &str, d: Value, replayable: bool) {
        if self.session.is_none() {
            return;
        }
        self.seq += 1;
        let frame = json!({"op": 0, "s": self.seq, "t": t, "d": d}).to_string();
        if replayable {
            self.replay.push((self.seq, frame.clone()));
        }
        if let Some((_, tx)) = &self.live {
            let _ = tx.send(Cmd::Frame(frame));
        }
    }

    fn is_live(&self, conn: u64) -> bool {
        self.live.as_ref().is_some_and(|(c, _)| *c == conn)
    }
}

pub(super) async fn serve_socket(inner: Arc<Inner>, stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (conn, interval) = {
        let gw = &mut inner.lock().gw;
        gw.conns += 1;
        (gw.conns, gw.heartbeat_ms)
    };
    let hello = json!({"op": 10, "d": {"heartbeat_interval": interval}}).to_string();
    if ws.send(WsMsg::Text(hello)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(WsMsg::Text(text))) => on_frame(&inner, conn, &tx, &text),
                Some(Ok(WsMsg::Close(frame))) => {
                    client_closed(&inner, conn, frame.map(|f| u16::from(f.code)));
                    let _ = ws.close(None).await; // flushes tungstenite's echo of the close frame
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            cmd = rx.recv() => match cmd {
                Some(Cmd::Frame(text)) => if ws.send(WsMsg::Text(text)).await.is_err() { break },
                Some(Cmd::Close(code, reason)) => {
                    let _ = ws.close(Some(CloseFrame { code: code.into(), reason: reason.into() })).await;
                    break;
                }
                // Dropping the stream closes TCP without a close frame.
                Some(Cmd::Drop) | None => break,
            },
        }
    }
    let gw = &mut inner.lock().gw;
    if gw.is_live(conn) {
        gw.live = None;
    }
    inner.changed.notify_waiters();
}

/// A clean close (1000/1001) by the client ends its session, as on Discord.
fn client_closed(inner: &Inner, conn: u64, code: Option<u16>) {
    let gw = &mut inner.lock().gw;
    if matches!(code, Some(1000 | 1001)) && gw.is_live(conn) {
        gw.session = None;
    }
}

fn on_frame(inner: &Inner, conn: u64, tx: &Tx, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        let _ = tx.send(Cmd::Close(4002, "Error while decoding payload."));
        return;
    };
    let op = v["op"].as_u64().and_then(|o| u8::try_from(o).ok()).unwrap_or(u8::MAX);
    let gw = &mut inner.lock().gw;
    gw.ops.push((op, v["d"].clone()));
    match op {
        1 if gw.mute_acks => {}
        1 => drop(tx.send(Cmd::Frame(json!({"op": 11}).to_string()))),
        2 => identify(inner, gw, conn, tx, &v["d"]),
        6 => resume(inner, gw, conn, tx, &v["d"]),
        3 | 4 | 8 | 31 => {}
        _ => drop(tx.send(Cmd::Close(4001, "Unknown opcode."))),
    }
    inner.changed.notify_waiters();
}

fn identify(inner: &Inner, gw: &mut Gw, conn: u64, tx: &Tx, d: &Value) {
    if !inner.token_ok(d["token"].as_str()) {
        let _ = tx.send(Cmd::Close(4004, "Authentication failed."));
        return;
    }
    (gw.identifies, gw.sessions, gw.intents) = (gw.identifies + 1, gw.sessions + 1, d["intents"].as_u64());
    let session = format!("fake-session-{}", gw.sessions);
    (gw.session, gw.seq, gw.live) = (Some(session.clone()), 0, Some((conn, tx.clone())));
    gw.replay.clear();
    let ready = json!({"v": 10, "user": bot_user(), "guilds": [], "session_id": session,
        "resume_gateway_url": inner.gateway_url, "shard": [0, 1], "application": {"id": APP_ID, "flags": 0}});
    gw.dispatch("READY", ready, false);
}

fn resume(inner: &Inner, gw: &mut Gw, conn: u64, tx: &Tx, d: &Value) {
    let known = gw.session.is_some() && d["session_id"].as_str() == gw.session.as_deref();
    if !known || !inner.token_ok(d["token"].as_str()) {
        let _ = tx.send(Cmd::Frame(json!({"op": 9, "d": false}).to_string()));
        return;
    }
    gw.resumes += 1;
    let from = d["seq"].as_u64().unwrap_or(0);
    for (_, frame) in gw.replay.iter().filter(|(s, _)| *s > from) {
        let _ = tx.send(Cmd::Frame(frame.clone()));
    }
    gw.live = Some((conn, tx.clone()));
    gw.dispatch("RESUMED", json!({}), false);
}
