//! The webhook action: an HTTP POST of the payload as JSON to the target
//! URL, with a timeout; the response status decides the outcome.

use super::{ActionExecutor, ActionOutcome};
use crate::BoxFuture;
use std::time::Duration;

/// Posts approved payloads to their target URL.
pub struct WebhookExecutor {
    http: reqwest::Client,
}

impl WebhookExecutor {
    /// An executor whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build()?;
        Ok(Self { http })
    }
}

const MAX_RESULT_CHARS: usize = 300;

impl ActionExecutor for WebhookExecutor {
    fn validate(&self, target: &str, _payload: &serde_json::Value) -> Result<(), String> {
        let url = reqwest::Url::parse(target).map_err(|e| format!("target must be an http(s) URL: {e}"))?;
        match url.scheme() {
            "http" | "https" if url.host_str().is_some() => Ok(()),
            _ => Err("target must be an http:// or https:// URL with a host".into()),
        }
    }

    fn execute<'a>(&'a self, target: &'a str, payload: &'a serde_json::Value) -> BoxFuture<'a, ActionOutcome> {
        Box::pin(async move {
            match self.http.post(target).json(payload).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    let excerpt: String = body.chars().take(MAX_RESULT_CHARS).collect();
                    let result =
                        if excerpt.trim().is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {}", excerpt.trim()) };
                    ActionOutcome { succeeded: status.is_success(), result }
                }
                Err(e) if e.is_timeout() => ActionOutcome { succeeded: false, result: format!("timed out posting to {target}") },
                Err(e) => ActionOutcome { succeeded: false, result: format!("could not post to {target}: {e}") },
            }
        })
    }
}
