//! The HTTP client the CLI uses to talk to a running daemon. The base URL is
//! `--api-url`/`AGENT_RUNTIME_ADMIN_API_URL`, else the URL the local `serve`
//! recorded in its data dir, else `https://127.0.0.1:8080`. Over `https` it
//! presents a client certificate and trusts only the admin CA: by default
//! the local PKI's (`<data>/pki`), so a CLI on the daemon's machine needs no
//! setting at all.

use crate::config::Config;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
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
    /// A daemon answered, but TLS failed: the reason named (which CA, which
    /// name, whose certificate), not a guess that the daemon is down.
    #[error("TLS with agent-runtime at {url} failed: {reason}")]
    Tls {
        /// The URL tried.
        url: String,
        /// What failed and what to change.
        reason: String,
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

/// The files a client needs for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The client certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
}

impl ClientTls {
    /// Explicit files where given (flags, then `AGENT_RUNTIME_ADMIN_CLIENT_*`
    /// and `AGENT_RUNTIME_ADMIN_SERVER_CA_FILE`), else the local PKI's.
    pub fn resolve(config: &Config, cert: Option<PathBuf>, key: Option<PathBuf>, ca: Option<PathBuf>) -> Self {
        let pki = crate::pki::PkiDir::new(config.paths.pki_dir());
        let (local_cert, local_key) = pki.client(crate::pki::LOCAL_ADMIN);
        let c = &config.client;
        Self {
            cert: cert.or_else(|| c.cert_file.clone()).unwrap_or(local_cert),
            key: key.or_else(|| c.key_file.clone()).unwrap_or(local_key),
            ca: ca.or_else(|| c.server_ca_file.clone()).unwrap_or_else(|| pki.ca_cert()),
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    /// A certificate or key file is missing or unreadable.
    #[error(
        "cannot read {path}: {cause} (the admin API needs a client certificate: the first `agent-runtime serve` with this data dir creates one, or pass --cert/--key/--ca)"
    )]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The TLS material was refused.
    #[error("client TLS setup: {0}")]
    Tls(String),
}

/// A client for the admin API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    /// For long-lived streams: no total timeout, but a read timeout well
    /// above the server's 15 s keep-alive (a dead connection is noticed).
    stream: reqwest::Client,
}

impl ApiClient {
    /// A client for `base` (e.g. `https://127.0.0.1:8080`); `https` needs `tls`.
    pub fn new(base: &str, timeout: Duration, tls: Option<&ClientTls>) -> Result<Self, ClientSetupError> {
        let http = Self::builder(base, tls)?.timeout(timeout).build().map_err(|e| ClientSetupError::Tls(e.to_string()))?;
        let stream = Self::builder(base, tls)?
            .connect_timeout(timeout)
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientSetupError::Tls(e.to_string()))?;
        Ok(Self { base: base.trim_end_matches('/').to_string(), http, stream })
    }

    fn builder(base: &str, tls: Option<&ClientTls>) -> Result<reqwest::ClientBuilder, ClientSetupError> {
        let mut builder = reqwest::Client::builder();
        if let Some(t) = tls.filter(|_| base.starts_with("https://")) {
            let read = |p: &PathBuf| std::fs::read(p).map_err(|cause| ClientSetupError::File { path: p.clone(), cause });
            let mut pem = read(&t.cert)?;
            pem.push(b'\n');
            pem.extend(read(&t.key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| ClientSetupError::Tls(format!("{} / {}: {e}", t.cert.display(), t.key.display())))?;
            let ca =
                reqwest::Certificate::from_pem(&read(&t.ca)?).map_err(|e| ClientSetupError::Tls(format!("{}: {e}", t.ca.display())))?;
            builder = builder.use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(ca).identity(identity);
        }
        Ok(builder)
    }

    /// The base URL: explicit, else the local daemon's recorded URL, else the default.
    pub fn resolve_base(explicit: Option<&str>, config: &Config) -> String {
        if let Some(url) = explicit.or(config.client.api_url.as_deref()) {
            return url.to_string();
        }
        let recorded = std::fs::read_to_string(config.paths.serve_state_file())
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v.get("url")?.as_str().map(str::to_string));
        let scheme = if config.http.plain_http { "http" } else { "https" };
        // A daemon bound to every address is reached over loopback, a name its certificate has.
        let mut addr = config.http.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        recorded.unwrap_or_else(|| format!("{scheme}://{addr}"))
    }

    /// The base URL in use.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder, url: String) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(|e| request_failed(&url, &e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| request_failed(&url, &e))?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { url, message: e.to_string() })
    }

    /// `GET {base}{path}`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url).query(query), url).await
    }

    /// `GET {base}{path}` as text (`/metrics`).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.http.get(&url).send().await.map_err(|e| request_failed(&url, &e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| request_failed(&url, &e))?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Opens a server-sent event stream at `path`, resuming after `last_id`.
    pub async fn open_stream(&self, path: &str, query: &[(&str, String)], last_id: Option<i64>) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.stream.get(&url).query(query).header("accept", "text/event-stream");
        if let Some(id) = last_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.map_err(|e| request_failed(&url, &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(api_error(status, &resp.bytes().await.unwrap_or_default()));
        }
        Ok(resp)
    }

    /// `POST {base}{path}` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(&url).json(body), url).await
    }
}

/// An error answer: the API's `{"error": ...}` text, or the body as it came.
fn api_error(status: reqwest::StatusCode, body: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    ClientError::Api { status: status.as_u16(), message }
}

/// A failed request as the error to show: a TLS failure named by its cause,
/// anything else "cannot reach".
fn request_failed(url: &str, e: &reqwest::Error) -> ClientError {
    match tls_reason(e, url) {
        Some(reason) => ClientError::Tls { url: url.to_string(), reason },
        None => ClientError::Unreachable { url: url.to_string(), message: e.to_string() },
    }
}

/// The TLS failure in `e`, said in the operator's terms. The rustls error
/// sits some layers down (reqwest, hyper-util, an `io::Error`, whose
/// `source()` skips it), so it is found by the name of its variant in the
/// chain's `Debug` text, which every layer includes.
fn tls_reason(e: &reqwest::Error, url: &str) -> Option<String> {
    let chain = format!("{e:?}");
    let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or(url);
    let has = |words: &[&str]| words.iter().any(|w| chain.contains(w));
    Some(if has(&["UnknownIssuer", "BadSignature"]) {
        "the server's certificate is not signed by the CA this client trusts (unknown CA): pass the daemon's CA \
         with --ca or AGENT_RUNTIME_ADMIN_SERVER_CA_FILE (the daemon's is <data>/pki/ca.pem)"
            .to_string()
    } else if has(&["NotValidForName"]) {
        format!(
            "the server's certificate is not valid for {host} (name mismatch): connect by a name it lists \
             (`agent-runtime pki show`), or add this one with `pki init --san` or AGENT_RUNTIME_TLS_SANS and restart the daemon"
        )
    } else if has(&["InvalidCertificate(Expired"]) {
        "the server's certificate has expired: renew it (docs/security.md) and restart or SIGHUP the daemon".to_string()
    } else if has(&[
        "AlertReceived(BadCertificate",
        "AlertReceived(UnknownCA",
        "AlertReceived(CertificateRequired",
        "AlertReceived(CertificateUnknown",
        "AlertReceived(CertificateExpired",
        "AlertReceived(DecryptError",
        "AlertReceived(AccessDenied",
    ]) {
        "the daemon refused this client's certificate (not issued by its CA, expired, or none): use one its CA issued \
         (`agent-runtime pki issue-client`) with --cert/--key"
            .to_string()
    } else if has(&["InvalidCertificate(", "AlertReceived(", "PeerIncompatible", "InvalidMessage"]) {
        format!("the TLS handshake failed: {chain}")
    } else {
        return None;
    })
}
