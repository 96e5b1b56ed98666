//! Processing of stored connector messages: in arrival order within each
//! chat, chats side by side (at most `parallel` at once), so a slow LLM
//! answer in one chat never holds up another chat or the connector's
//! polling. Runs as one supervised task; work is interleaved futures, not
//! spawned tasks. Messages still queued at shutdown stay `received` in the
//! inbox and are processed at the next start ([`Gateway::recover_inbox`]).
//!
//! A message whose processing fails on our side (the store refused a
//! write) is tried again in place — its chat waits, so order holds — after
//! 1, 2, 4 and 8 s; after the fifth failure its row is marked `failed` with
//! the error. Each retry and each final failure is counted
//! (`agent_runtime_messages_total{direction="inbound",outcome="process_retried"|"process_failed"}`)
//! and a final failure degrades the `dispatcher` health component until a
//! later message is processed.

use super::{Gateway, Ingested};
use crate::domain::ChatRef;
use crate::health::Health;
use crate::runtime::Supervisor;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;

/// Hands stored messages to the processing task.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Ingested>,
}

/// How long work in progress may finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// Stored messages waiting in the processing task (plus as many in the
/// channel) before `submit` waits: a burst then waits in the inbox (and on
/// the platform, which the connector stops polling), not in memory — a
/// 5,000-message burst held ~10 MiB here, which glibc kept afterwards.
const MAX_QUEUED: usize = 256;

/// Tries of one message before it is marked `failed`.
const MAX_TRIES: u32 = 5;

/// The wait before the first retry; it doubles each time.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The health component the dispatcher reports under.
pub const COMPONENT: &str = "dispatcher";

/// Processes one stored message, trying again with backoff when our side
/// fails; gives up (`failed`, counted, health degraded) after [`MAX_TRIES`].
/// Shutdown stops the waiting: the row stays `received` for the next start.
async fn process_with_retries(g: &Gateway, item: Ingested, health: Option<&Health>, stop: &tokio_util::sync::CancellationToken) {
    let mut wait = FIRST_RETRY;
    for attempt in 1..=MAX_TRIES {
        let error = match g.process(item.clone()).await {
            Ok(_) => {
                if attempt > 1
                    && let Some(h) = health
                {
                    h.healthy(COMPONENT, "processing stored messages");
                }
                return;
            }
            Err(e) => e.to_string(),
        };
        let connector = &item.msg.chat.connector;
        if attempt == MAX_TRIES {
            crate::metrics::metrics().message(connector, "inbound", "process_failed");
            tracing::error!(error = %error, chat = %item.msg.chat, inbox_id = item.record.inbox_id, attempts = attempt, "giving up on a stored message");
            if let Some(h) = health {
                h.degrade(COMPONENT, format!("a message from {} could not be processed: {error}", item.msg.chat));
            }
            if let Err(e) = g.store.fail_inbound(item.record.inbox_id, error, g.clock.now_ms()).await {
                // It stays `received`: the next start tries again.
                tracing::error!(error = %e, "could not mark the message failed");
            }
            return;
        }
        crate::metrics::metrics().message(connector, "inbound", "process_retried");
        tracing::warn!(error = %error, chat = %item.msg.chat, attempt, retry_in = ?wait, "processing a stored message failed; trying again");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        wait *= 2;
    }
}

impl Dispatcher {
    /// Starts the processing task under `sup` (reporting to `health`, if given).
    pub fn spawn(gateway: Gateway, sup: &Supervisor, parallel: usize, health: Option<Health>) -> Self {
        if let Some(h) = &health {
            h.register(COMPONENT);
            h.healthy(COMPONENT, "processing stored messages");
        }
        let (tx, rx) = mpsc::channel::<Ingested>(MAX_QUEUED);
        let stop = sup.token().clone();
        sup.spawn("dispatch", async move {
            let mut rx = rx;
            let mut queues: HashMap<ChatRef, VecDeque<Ingested>> = HashMap::new();
            let mut ready: VecDeque<ChatRef> = VecDeque::new();
            let mut busy: HashSet<ChatRef> = HashSet::new();
            let mut running = FuturesUnordered::new();
            let mut queued = 0usize;
            loop {
                while running.len() < parallel.max(1) {
                    let Some(chat) = ready.pop_front() else { break };
                    let Some(item) = queues.get_mut(&chat).and_then(VecDeque::pop_front) else { continue };
                    queued -= 1;
                    busy.insert(chat.clone());
                    let (g, h, stop) = (gateway.clone(), health.clone(), stop.clone());
                    running.push(async move {
                        process_with_retries(&g, item, h.as_ref(), &stop).await;
                        chat
                    });
                }
                tokio::select! {
                    got = rx.recv(), if queued < MAX_QUEUED => match got {
                        Some(item) => {
                            queued += 1;
                            let chat = item.chat().clone();
                            let q = queues.entry(chat.clone()).or_default();
                            q.push_back(item);
                            if q.len() == 1 && !busy.contains(&chat) {
                                ready.push_back(chat);
                            }
                        }
                        None => break,
                    },
                    Some(chat) = running.next(), if !running.is_empty() => {
                        busy.remove(&chat);
                        match queues.get(&chat) {
                            Some(q) if !q.is_empty() => ready.push_back(chat),
                            _ => { queues.remove(&chat); }
                        }
                    }
                    _ = stop.cancelled() => break,
                }
            }
            let left: usize = queues.values().map(VecDeque::len).sum();
            if tokio::time::timeout(DRAIN, async { while running.next().await.is_some() {} }).await.is_err() {
                tracing::warn!("stopped waiting for messages being processed; they are processed again at the next start");
            }
            if left > 0 {
                tracing::info!(queued = left, "messages left queued at shutdown are processed at the next start");
            }
        });
        Self { tx }
    }

    /// Queues stored messages for processing (waits while the queue is full).
    pub async fn submit(&self, items: Vec<Ingested>) {
        for item in items {
            if self.tx.send(item).await.is_err() {
                // Shutting down: the message stays `received` and is processed at the next start.
                return;
            }
        }
    }
}
