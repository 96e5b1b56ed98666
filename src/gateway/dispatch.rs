//! Processing of stored connector messages: in arrival order within each
//! chat, chats side by side (at most `parallel` at once), so a slow LLM
//! answer in one chat never holds up another chat or the connector's
//! polling. Runs as one supervised task; work is interleaved futures, not
//! spawned tasks. Messages still queued at shutdown stay `received` in the
//! inbox and are processed at the next start ([`Gateway::recover_inbox`]).

use super::{Gateway, Ingested};
use crate::domain::ChatRef;
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

impl Dispatcher {
    /// Starts the processing task under `sup`.
    pub fn spawn(gateway: Gateway, sup: &Supervisor, parallel: usize) -> Self {
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
                    let g = gateway.clone();
                    running.push(async move {
                        if let Err(e) = g.process(item).await {
                            // The row stays `received`; the next start processes it again.
                            tracing::error!(error = %e, chat = %chat, "processing a stored message failed");
                        }
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
