//! The gateway's events, handed to the connector's loop in Discord's order
//! through a bounded queue (issue 14: it was unbounded). Connection events
//! wait for room; messages and interactions wait at most [`EVENT_WAIT`] and
//! are then dropped, flagging the loop to catch the served channels up
//! through REST.

use super::model::{Interaction, Message};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the gateway hands the loop.
pub(super) enum Ev {
    /// A new session: the bot's user and application ids.
    Ready {
        user: u64,
        app: u64,
    },
    /// The session resumed.
    Resumed,
    /// The connection went down: why, and when it is tried again.
    Down(String),
    Message(Box<Message>),
    Interaction(Box<Interaction>),
}

/// Events waiting for the loop, at most.
pub(super) const EVENT_QUEUE: usize = 256;

/// How long a message or interaction waits for room in a full queue before
/// it is dropped (and the served channels are caught up through REST).
pub(super) const EVENT_WAIT: Duration = Duration::from_secs(10);

/// The queue's name in `agent_runtime_queue_full_total`.
const QUEUE: &str = "discord_events";

/// What became of an event offered to the bounded queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queued {
    /// In the queue.
    Yes,
    /// Dropped after waiting `wait` for room.
    Dropped,
    /// The loop is gone.
    Closed,
}

/// Queues `ev`. A full queue is counted, then waited on: for ever when
/// `wait` is `None`, else for at most `wait` (the gateway keeps up its
/// heartbeats meanwhile).
pub(super) async fn offer<T>(tx: &mpsc::Sender<T>, ev: T, wait: Option<Duration>) -> Queued {
    let ev = match tx.try_send(ev) {
        Ok(()) => return Queued::Yes,
        Err(mpsc::error::TrySendError::Closed(_)) => return Queued::Closed,
        Err(mpsc::error::TrySendError::Full(ev)) => ev,
    };
    let queued = match wait {
        None => tx.send(ev).await.map_or(Queued::Closed, |()| Queued::Yes),
        Some(w) => match tx.send_timeout(ev, w).await {
            Ok(()) => Queued::Yes,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Queued::Dropped,
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Queued::Closed,
        },
    };
    let outcome = if queued == Queued::Dropped { "dropped" } else { "waited" };
    crate::metrics::metrics().queue_full(QUEUE, outcome);
    queued
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_count(outcome: &str) -> u64 {
        let text = crate::metrics::metrics().render(&crate::metrics::Gauges::default(), &[]);
        let line = format!("agent_runtime_queue_full_total{{queue=\"{QUEUE}\",outcome=\"{outcome}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&line)).and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// Issue 14: the event channel was unbounded. A full queue now makes the
    /// handler wait (counted), and a droppable event gives up after its wait.
    #[tokio::test]
    async fn a_full_queue_makes_events_wait_and_drops_only_after_the_wait() {
        let (tx, mut rx) = mpsc::channel(1);
        assert_eq!(offer(&tx, 1, None).await, Queued::Yes);
        let (waited, dropped) = (full_count("waited"), full_count("dropped"));
        // Full: a droppable event waits its time, then is dropped (and counted).
        assert_eq!(offer(&tx, 2, Some(Duration::from_millis(50))).await, Queued::Dropped);
        assert_eq!(full_count("dropped"), dropped + 1);
        // An event that must arrive waits for room, however long it takes.
        let pending = offer(&tx, 3, None);
        tokio::pin!(pending);
        assert!(tokio::time::timeout(Duration::from_millis(200), &mut pending).await.is_err(), "still waiting for room");
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(pending.await, Queued::Yes);
        assert_eq!(full_count("waited"), waited + 1);
        assert_eq!(rx.recv().await, Some(3), "the dropped event never arrives");
        drop(rx);
        assert_eq!(offer(&tx, 4, None).await, Queued::Closed);
    }
}
