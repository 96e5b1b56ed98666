//! The HTTP client the CLI uses to talk to a running daemon. The base URL is
//! `--api-url`/`AGENT_RUNTIME_ADMIN_API_URL`, else the address the local
//! `serve` recorded in its data dir, else `http://127.0.0.1:8080`.

use crate::config::Config;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached.
    #[error(
        "cannot reach agent-runtime at {url}: {message} (is `agent-runtime serve` running? set --api-url or AGENT_RUNTIME_ADMIN_API_URL)"
    )]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The cause.
        message: String,
    },
    /// The daemon answered with an error.
    #[error("{message} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's `error` text.
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("unexpected response from {url}: {message}")]
    Decode {
        /// The URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

/// A client for the admin API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Self { base: base.trim_end_matches('/').to_string(), http }
    }

    /// The base URL: explicit, else the local daemon's recorded address, else the default.
    pub fn resolve_base(explicit: Option<&str>, config: &Config) -> String {
        if let Some(url) = explicit.or(config.client.api_url.as_deref()) {
            return url.to_string();
        }
        let recorded = std::fs::read_to_string(config.paths.serve_state_file())
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v.get("http_addr")?.as_str().map(str::to_string));
        match recorded {
            Some(addr) => format!("http://{addr}"),
            None => format!("http://{}", config.http.addr),
        }
    }

    /// The base URL in use.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder, url: String) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Unreachable { url: url.clone(), message: e.to_string() })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable { url: url.clone(), message: e.to_string() })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ClientError::Api { status: status.as_u16(), message });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { url, message: e.to_string() })
    }

    /// `GET {base}{path}`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url).query(query), url).await
    }

    /// `POST {base}{path}` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(&url).json(body), url).await
    }
}
