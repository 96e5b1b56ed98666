//! `GET /api/v1/events`: the event log as server-sent events, live, with
//! resume (`Last-Event-ID` header or `?after=`), and `GET /api/v1/events/log`:
//! the same log as JSON pages.
//!
//! Each subscriber has a producer task that reads the shared live ring (or,
//! when it is behind, the log itself, a page at a time) and hands batches of
//! pre-rendered frames to the response body through a channel of
//! [`QUEUED_BATCHES`]. Memory per subscriber is therefore bounded whatever
//! the client does; a client whose connection accepts nothing for
//! `AGENT_RUNTIME_EVENTS_SLOW_CLIENT_SECONDS` is disconnected, and resumes
//! from the log with `Last-Event-ID`, missing nothing. At most
//! `AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS` streams are open at once; past
//! that a new one gets 503 (and a log line), and a stream's place is freed
//! as soon as its client goes.

use super::error::{ApiQuery, page_limit};
use super::intake::Throttled;
use super::{ApiError, ApiState};
use crate::store::{Event, Store};
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Batches waiting for the client's connection, per subscriber.
const QUEUED_BATCHES: usize = 16;
/// Events read from the log per page while catching up.
const PAGE: u32 = 500;
/// Most events coalesced into one write.
const BATCH: usize = 256;
/// A comment line this often keeps idle connections (and proxies) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The places for open streams, shared by every request.
#[derive(Debug, Clone)]
pub(super) struct Subscribers {
    slots: Arc<Semaphore>,
    max: usize,
    refused: Arc<Throttled>,
}

impl Subscribers {
    /// Room for `max` open streams.
    pub(super) fn new(max: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(max)), max, refused: Arc::default() }
    }

    /// A place, or the 503 that says there is none.
    fn take(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            if let Some(n) = self.refused.hit() {
                tracing::warn!(refused = n, cap = self.max, "event-stream subscriber cap reached (AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS): answered 503");
            }
            let message = format!(
                "{} event streams are open, the most allowed (AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS); retry later or page /api/v1/events/log",
                self.max
            );
            ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message }
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamQuery {
    /// Resume after this id (the `Last-Event-ID` header wins when both are given).
    after: Option<i64>,
    /// Comma-separated type prefixes, e.g. `task.,approval.`.
    types: Option<String>,
}

fn parse_types(raw: Option<&str>) -> Result<Vec<String>, ApiError> {
    let types: Vec<String> = raw.unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
    if types.len() > 32 || types.iter().any(|t| t.len() > 64) {
        return Err(ApiError::bad_request("types: at most 32 prefixes of at most 64 characters"));
    }
    Ok(types)
}

fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("{what} must be a non-negative event id")))
}

/// The stream. Without a resume point it starts with events committed from now on.
pub(super) async fn stream(
    State(s): State<ApiState>,
    Extension(subscribers): Extension<Subscribers>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let types = parse_types(q.types.as_deref())?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(parse_id(v.to_str().unwrap_or_default(), "Last-Event-ID")?),
        None => {
            q.after.map(|a| if a < 0 { Err(ApiError::bad_request("after must be a non-negative event id")) } else { Ok(a) }).transpose()?
        }
    };
    let place = subscribers.take()?;
    // Subscribe before reading the head or the log, so nothing committed in
    // between is missed (duplicates are skipped by id).
    let live = s.store.subscribe_events();
    let start = resume.unwrap_or_else(|| s.store.event_head());
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUED_BATCHES);
    let sub = Subscriber { store: s.store.clone(), types, last: start, tx, slow: s.events_slow_client };
    let stop = s.streams.token().clone();
    s.streams.spawn("event-subscriber", async move { sub.run(live, resume.is_some(), stop).await });
    // The body owns the place: it is freed when the client goes (hyper drops
    // the body), not only when the producer next fails to send.
    let body = futures_util::stream::unfold((rx, place), |(mut rx, place)| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), (rx, place)))
    });
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// Renders one event as an SSE frame.
fn frame(e: &Event) -> String {
    format!("id: {}\nevent: {}\ndata: {}\n\n", e.id, e.kind, e.to_json())
}

struct Subscriber {
    store: Store,
    types: Vec<String>,
    /// The last id handed on (sent or filtered out).
    last: i64,
    tx: mpsc::Sender<Bytes>,
    slow: Duration,
}

/// Why a subscriber stopped.
enum End {
    Gone,
    Slow,
    Failed(String),
}

impl Subscriber {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<Event>>, resumed: bool, stop: CancellationToken) {
        let end = tokio::select! {
            _ = stop.cancelled() => End::Gone,
            end = self.pump(&mut live, resumed) => end,
        };
        match end {
            End::Gone => {}
            End::Slow => tracing::warn!(
                last_event = self.last,
                "dropped an event-stream client that accepted nothing; it can resume with Last-Event-ID"
            ),
            End::Failed(e) => tracing::warn!(error = %e, "an event stream ended on a store error"),
        }
    }

    async fn pump(&mut self, live: &mut broadcast::Receiver<Arc<Event>>, resumed: bool) -> End {
        match self.stream(live, resumed).await {
            Err(end) => end,
            Ok(never) => match never {},
        }
    }

    /// Replays the log (when resuming), then follows the live ring in
    /// batches; ends only with the reason it stopped.
    async fn stream(&mut self, live: &mut broadcast::Receiver<Arc<Event>>, resumed: bool) -> Result<Infallible, End> {
        use broadcast::error::{RecvError, TryRecvError};
        if resumed {
            self.announce_gap().await?;
            self.catch_up().await?;
        }
        loop {
            let Ok(first) = tokio::time::timeout(KEEP_ALIVE, live.recv()).await else {
                self.send(Bytes::from_static(b": keep-alive\n\n")).await?;
                continue;
            };
            let mut out = String::new();
            let mut next = Some(first);
            let mut count = 0;
            while let Some(r) = next.take() {
                match r {
                    Ok(e) if e.id <= self.last => {}
                    Ok(e) if e.id == self.last + 1 => {
                        self.last = e.id;
                        if e.matches(&self.types) {
                            out.push_str(&frame(&e));
                            count += 1;
                        }
                    }
                    // A gap (this one came after events we never saw) or the
                    // ring moved on without us: read the log from where we are.
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        self.flush(&mut out).await?;
                        self.catch_up().await?;
                    }
                    Err(RecvError::Closed) => return Err(End::Gone),
                }
                if count < BATCH {
                    next = match live.try_recv() {
                        Ok(e) => Some(Ok(e)),
                        Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                        Err(_) => None,
                    };
                }
            }
            self.flush(&mut out).await?;
        }
    }

    /// Sends the frames gathered in `out`, if any.
    async fn flush(&self, out: &mut String) -> Result<(), End> {
        if out.is_empty() {
            return Ok(());
        }
        self.send(Bytes::from(std::mem::take(out))).await
    }

    /// Tells a resuming client that events it asked for were pruned.
    async fn announce_gap(&mut self) -> Result<(), End> {
        let first = self.store.first_event_id().await.map_err(|e| End::Failed(e.to_string()))?;
        if let Some(first) = first
            && first > self.last + 1
        {
            let data = json!({"requested_after": self.last, "first_available": first});
            self.send(Bytes::from(format!("event: gap\ndata: {data}\n\n"))).await?;
        }
        Ok(())
    }

    /// Sends everything in the log after `last`, a page at a time.
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            let page = self.store.events_after(self.last, PAGE, Vec::new()).await.map_err(|e| End::Failed(e.to_string()))?;
            let full = page.len() == PAGE as usize;
            let mut out = String::new();
            for e in &page {
                self.last = e.id;
                if e.matches(&self.types) {
                    out.push_str(&frame(e));
                }
            }
            self.flush(&mut out).await?;
            if !full {
                return Ok(());
            }
        }
    }

    async fn send(&self, batch: Bytes) -> Result<(), End> {
        match tokio::time::timeout(self.slow, self.tx.send(batch)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Slow),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    after: Option<i64>,
    limit: Option<u32>,
    types: Option<String>,
}

/// `GET /api/v1/events/log?after=&limit=&types=`: a page of the log, oldest first.
pub(super) async fn log(State(s): State<ApiState>, ApiQuery(q): ApiQuery<LogQuery>) -> Result<Response, ApiError> {
    let types = parse_types(q.types.as_deref())?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after must be a non-negative event id"));
    }
    let limit = page_limit(q.limit, 100, 1000)?;
    let items = s.store.events_after(after, limit, types).await?;
    let next_after = items.last().map_or(after, |e| e.id);
    // The stored `data` is already JSON: the page is assembled, not re-parsed.
    let list = items.iter().map(Event::to_json).collect::<Vec<_>>().join(",");
    let body = format!("{{\"count\":{},\"items\":[{list}],\"next_after\":{next_after},\"head\":{}}}", items.len(), s.store.event_head());
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
