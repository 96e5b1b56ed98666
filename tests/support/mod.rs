//! Test support: fakes of external services on 127.0.0.1:0 and harnesses for
//! the real binary.

#![allow(dead_code, reason = "shared by the e2e tests and the benchmark; each uses part")]

pub mod daemon;
pub mod discord;
pub mod gateway;
pub mod llm;
pub mod mail;
pub mod telegram;

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 25 ms until it returns `Some`, or panics after
/// `timeout` saying what it waited for.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
