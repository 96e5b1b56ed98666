//! The runtime's IMAP client: connect (implicit TLS, required STARTTLS, or
//! plain to loopback only), log in, select the mailbox, fetch messages newer
//! than a UID without marking them, mark them `\Seen` once stored, and wait
//! for news with IDLE.
//!
//! Invariants: nothing here sets `\Seen` except [`ImapSession::mark_seen`]
//! (fetches use `BODY.PEEK[]`); the password is sent only after TLS unless the
//! host is a loopback address, and never reaches a log line or an error; every
//! network step has a timeout. After any error the session is in an unknown
//! state: drop it and connect again.

use crate::config::{EmailConfig, MailTls, is_loopback_host};
use async_imap::imap_proto::{Response, Status};
use async_imap::types::UnsolicitedResponse;
use async_imap::{Client, Session};
use futures_util::TryStreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// How long each connection step (TCP, TLS, greeting, LOGIN) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a short command (SELECT, SEARCH, STORE, IDLE start/end) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one batch of message bodies may take to arrive.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Why an IMAP step failed. Every variant names the step; none carries the
/// password.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// Plain IMAP to a host that is not loopback was refused before
    /// connecting (configuration error; retrying cannot help).
    #[error("plain IMAP to {host} refused: only loopback hosts may be reached without TLS")]
    PlainNotLoopback {
        /// The configured host.
        host: String,
    },
    /// The extra CA file could not be read or holds no usable certificate
    /// (configuration error).
    #[error("IMAP CA file {}: {reason}", path.display())]
    CaFile {
        /// The configured file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The TCP connection could not be made (server down, wrong port).
    #[error("cannot connect to IMAP server {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be set up: STARTTLS refused, handshake failed, or the
    /// certificate is not trusted for the host.
    #[error("TLS with IMAP server {host} failed: {reason}")]
    Tls {
        /// The configured host.
        host: String,
        /// What failed.
        reason: String,
    },
    /// The server rejected the username or password (retrying with the same
    /// credentials will not help; see [`ImapError::is_auth`]).
    #[error("IMAP login rejected: {server_said}")]
    Auth {
        /// The server's reason (never includes the password).
        server_said: String,
    },
    /// The server answered a command with NO or BAD, or sent something that
    /// could not be parsed.
    #[error("IMAP {during} failed: {source}")]
    Command {
        /// The step, e.g. `"SELECT"`.
        during: &'static str,
        /// The cause.
        #[source]
        source: async_imap::error::Error,
    },
    /// The server said something the protocol does not allow at this point.
    #[error("IMAP {during}: unexpected server response: {detail}")]
    Protocol {
        /// The step.
        during: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The connection broke or the server closed it (transient).
    #[error("IMAP connection lost during {during}")]
    Closed {
        /// The step.
        during: &'static str,
        /// The I/O error, when there was one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A step took longer than allowed (transient).
    #[error("IMAP {during} timed out after {after:?}")]
    Timeout {
        /// The step.
        during: &'static str,
        /// The limit.
        after: Duration,
    },
}

impl ImapError {
    /// Whether the server rejected the credentials (an operator must fix
    /// them; reconnecting in a loop would only lock the account).
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Auth { .. })
    }

    /// Whether retrying cannot help until the configuration changes
    /// (rejected credentials, plain IMAP to a remote host, a bad CA file).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Auth { .. } | Self::PlainNotLoopback { .. } | Self::CaFile { .. })
    }

    fn from_imap(during: &'static str, e: async_imap::error::Error) -> Self {
        match e {
            async_imap::error::Error::Io(source) => Self::Closed { during, source: Some(source) },
            async_imap::error::Error::ConnectionLost => Self::Closed { during, source: None },
            source => Self::Command { during, source },
        }
    }

    fn from_io(during: &'static str, e: std::io::Error) -> Self {
        Self::Closed { during, source: Some(e) }
    }
}

/// The byte stream under a session: plain TCP or TLS over TCP.
trait ImapIo: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> ImapIo for T {}
type Stream = Box<dyn ImapIo>;

/// A selected mailbox's state, as SELECT reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mailbox {
    /// UIDVALIDITY: when it changes, every stored UID of this mailbox is void.
    pub uid_validity: u32,
    /// The UID the next message will get, if the server said.
    pub uid_next: Option<u32>,
    /// How many messages the mailbox holds.
    pub exists: u32,
}

/// One fetched message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its UID in the selected mailbox.
    pub uid: u32,
    /// The whole message as stored (RFC 5322 bytes).
    pub raw: Vec<u8>,
}

/// How an [`ImapSession::idle`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    /// The server reported a change (new mail, flags, expunge): fetch again.
    NewData,
    /// Nothing happened within the timeout.
    Timeout,
    /// The stop token was cancelled.
    Stopped,
}

/// A logged-in IMAP connection.
pub struct ImapSession {
    session: Session<Stream>,
    idle: bool,
    /// New mail was announced (EXISTS) outside IDLE and not yet
    /// reported by [`ImapSession::idle`].
    news: bool,
}

impl fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapSession").field("idle", &self.idle).finish_non_exhaustive()
    }
}

/// Runs `fut` with a limit, naming the step on timeout.
async fn limit<T>(during: &'static str, after: Duration, fut: impl Future<Output = Result<T, ImapError>>) -> Result<T, ImapError> {
    tokio::time::timeout(after, fut).await.map_err(|_| ImapError::Timeout { during, after })?
}

/// Connects, sets up TLS as configured, and logs in.
pub async fn connect(cfg: &EmailConfig) -> Result<ImapSession, ImapError> {
    if cfg.tls == MailTls::Plain && !is_loopback_host(&cfg.host) {
        return Err(ImapError::PlainNotLoopback { host: cfg.host.clone() });
    }
    let client = match cfg.tls {
        MailTls::Implicit => connect_implicit(cfg).await?,
        MailTls::StartTls => connect_starttls(cfg).await?,
        MailTls::Plain => connect_plain(cfg).await?,
    };
    let session = login(client, cfg).await?;
    tracing::debug!(host = %cfg.host, port = cfg.port, tls = ?cfg.tls, idle = session.idle, "IMAP logged in");
    Ok(session)
}

/// TLS from the first byte, then the greeting.
async fn connect_implicit(cfg: &EmailConfig) -> Result<Client<Stream>, ImapError> {
    // TLS settings first, so a bad CA file fails before any traffic.
    let (connector, name) = tls_connector(cfg).await?;
    let tcp = tcp_connect(cfg).await?;
    let mut client = Client::new(Box::new(handshake(cfg, &connector, name, tcp).await?) as Stream);
    greeting(&mut client).await?;
    Ok(client)
}

/// Greeting, STARTTLS (required: a refusal is an error), then TLS.
async fn connect_starttls(cfg: &EmailConfig) -> Result<Client<Stream>, ImapError> {
    let (connector, name) = tls_connector(cfg).await?;
    let mut client = Client::new(tcp_connect(cfg).await?);
    greeting(&mut client).await?;
    limit("STARTTLS", COMMAND_TIMEOUT, async {
        client
            .run_command_and_check_ok("STARTTLS", None)
            .await
            .map_err(|e| ImapError::Tls { host: cfg.host.clone(), reason: format!("STARTTLS refused: {e}") })
    })
    .await?;
    // No second greeting after STARTTLS (RFC 3501 §6.2.1); anything the
    // server sent before the handshake is dropped with the old client.
    Ok(Client::new(Box::new(handshake(cfg, &connector, name, client.into_inner()).await?) as Stream))
}

/// No TLS (the caller has checked the host is loopback).
async fn connect_plain(cfg: &EmailConfig) -> Result<Client<Stream>, ImapError> {
    let mut client = Client::new(Box::new(tcp_connect(cfg).await?) as Stream);
    greeting(&mut client).await?;
    Ok(client)
}

async fn tcp_connect(cfg: &EmailConfig) -> Result<TcpStream, ImapError> {
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let host = cfg.host.trim_matches(['[', ']']);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, cfg.port)))
        .await
        .map_err(|_| ImapError::Timeout { during: "connect", after: CONNECT_TIMEOUT })?
        .map_err(|source| ImapError::Connect { addr, source })?;
    // Best effort: small commands should not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// The TLS client settings: the public web roots plus the configured CA
/// file, with the ring provider.
async fn tls_connector(cfg: &EmailConfig) -> Result<(TlsConnector, ServerName<'static>), ImapError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = &cfg.ca_file {
        for cert in extra_roots(path).await? {
            roots.add(cert).map_err(|e| ImapError::CaFile { path: path.clone(), reason: e.to_string() })?;
        }
    }
    let tls_error = |reason: String| ImapError::Tls { host: cfg.host.clone(), reason };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name =
        ServerName::try_from(cfg.host.trim_matches(['[', ']']).to_string()).map_err(|e| tls_error(format!("invalid server name: {e}")))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

async fn extra_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ImapError> {
    let ca_error = |reason: String| ImapError::CaFile { path: path.to_path_buf(), reason };
    let pem = tokio::fs::read(path).await.map_err(|e| ca_error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| ca_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca_error("no PEM certificate in the file".to_string()));
    }
    Ok(certs)
}

async fn handshake(
    cfg: &EmailConfig,
    connector: &TlsConnector,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, ImapError> {
    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| ImapError::Timeout { during: "TLS handshake", after: CONNECT_TIMEOUT })?
        .map_err(|e| ImapError::Tls { host: cfg.host.clone(), reason: e.to_string() })
}

/// Reads the server greeting (`async_imap::Client::new` does not).
async fn greeting<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug>(client: &mut Client<T>) -> Result<(), ImapError> {
    const DURING: &str = "greeting";
    let response = tokio::time::timeout(CONNECT_TIMEOUT, client.read_response())
        .await
        .map_err(|_| ImapError::Timeout { during: DURING, after: CONNECT_TIMEOUT })?
        .map_err(|e| ImapError::from_io(DURING, e))?
        .ok_or(ImapError::Closed { during: DURING, source: None })?;
    match response.parsed() {
        Response::Data { status: Status::Ok, .. } => Ok(()),
        Response::Data { status: Status::Bye, outcome, .. } => Err(ImapError::Protocol {
            during: DURING,
            detail: format!("server said BYE: {}", outcome.information.as_deref().unwrap_or("")),
        }),
        other => Err(ImapError::Protocol { during: DURING, detail: format!("expected `* OK`, got {other:?}") }),
    }
}

async fn login(client: Client<Stream>, cfg: &EmailConfig) -> Result<ImapSession, ImapError> {
    const DURING: &str = "LOGIN";
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, client.login_with_capabilities(&cfg.username, cfg.password.expose()))
        .await
        .map_err(|_| ImapError::Timeout { during: DURING, after: CONNECT_TIMEOUT })?;
    let (mut session, caps) = match attempt {
        Ok(ok) => ok,
        Err((async_imap::error::Error::No(text), _)) => return Err(ImapError::Auth { server_said: text }),
        // The validation error names the offending character: keep it out.
        Err((async_imap::error::Error::Validate(_), _)) => {
            return Err(ImapError::Auth { server_said: "username or password contains a character LOGIN cannot send".into() });
        }
        Err((e, _)) => return Err(ImapError::from_imap(DURING, e)),
    };
    let idle = match caps {
        Some(caps) => caps.has_str("IDLE"),
        None => {
            limit("CAPABILITY", COMMAND_TIMEOUT, async { session.capabilities().await.map_err(|e| ImapError::from_imap("CAPABILITY", e)) })
                .await?
                .has_str("IDLE")
        }
    };
    Ok(ImapSession { session, idle, news: false })
}

impl ImapSession {
    /// Whether the server offers IDLE (from its capabilities after login).
    pub fn supports_idle(&self) -> bool {
        self.idle
    }

    /// Selects `mailbox` (read-write, so [`ImapSession::mark_seen`] works).
    pub async fn select(&mut self, mailbox: &str) -> Result<Mailbox, ImapError> {
        const DURING: &str = "SELECT";
        let session = &mut self.session;
        let m =
            limit(DURING, COMMAND_TIMEOUT, async { session.select(mailbox).await.map_err(|e| ImapError::from_imap(DURING, e)) }).await?;
        // News before SELECT concerned the previous mailbox state; SELECT's own
        // EXISTS is in `m`.
        self.note_unsolicited();
        self.news = false;
        let uid_validity = m.uid_validity.ok_or(ImapError::Protocol { during: DURING, detail: "no UIDVALIDITY in the response".into() })?;
        Ok(Mailbox { uid_validity, uid_next: m.uid_next, exists: m.exists })
    }

    /// The messages of the selected mailbox whose UID is above `last_uid`,
    /// oldest first, at most `max`, without setting `\Seen`.
    pub async fn fetch_after(&mut self, last_uid: u32, max: usize) -> Result<Vec<Fetched>, ImapError> {
        // Ask for the UIDs first, so a large backlog costs one batch of
        // bodies, not all of them.
        let mut uids = self.uids_after(last_uid).await?;
        uids.truncate(max);
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        self.fetch_bodies(&uids).await
    }

    /// The UIDs above `last_uid`, ascending.
    async fn uids_after(&mut self, last_uid: u32) -> Result<Vec<u32>, ImapError> {
        const DURING: &str = "UID SEARCH";
        let Some(first) = last_uid.checked_add(1) else { return Ok(Vec::new()) };
        let session = &mut self.session;
        let found = limit(DURING, COMMAND_TIMEOUT, async {
            session.uid_search(format!("UID {first}:*")).await.map_err(|e| ImapError::from_imap(DURING, e))
        })
        .await?;
        self.note_unsolicited();
        // `n:*` always matches the highest message, even when its UID is below n.
        let mut uids: Vec<u32> = found.into_iter().filter(|&u| u > last_uid).collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The bodies of `uids` (sorted, distinct), in that order, peeking.
    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<Fetched>, ImapError> {
        const DURING: &str = "UID FETCH";
        let set = uid_set(uids);
        let session = &mut self.session;
        let all = limit(DURING, FETCH_TIMEOUT, async {
            let stream = session.uid_fetch(&set, "(UID BODY.PEEK[])").await.map_err(|e| ImapError::from_imap(DURING, e))?;
            stream.try_collect::<Vec<_>>().await.map_err(|e| ImapError::from_imap(DURING, e))
        })
        .await?;
        self.note_unsolicited();
        let mut fetched: Vec<Fetched> = all
            .iter()
            // Unsolicited FETCH responses (flag changes) carry no body: skip them.
            .filter_map(|f| Some(Fetched { uid: f.uid?, raw: f.body()?.to_vec() }))
            .filter(|f| uids.binary_search(&f.uid).is_ok())
            .collect();
        fetched.sort_by_key(|f| f.uid);
        fetched.dedup_by_key(|f| f.uid);
        Ok(fetched)
    }

    /// Sets `\Seen` on `uids` in the selected mailbox.
    pub async fn mark_seen(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        const DURING: &str = "UID STORE";
        if uids.is_empty() {
            return Ok(());
        }
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let set = uid_set(&sorted);
        let session = &mut self.session;
        limit(DURING, COMMAND_TIMEOUT, async {
            let stream = session.uid_store(&set, "+FLAGS.SILENT (\\Seen)").await.map_err(|e| ImapError::from_imap(DURING, e))?;
            let _: Vec<_> = stream.try_collect().await.map_err(|e| ImapError::from_imap(DURING, e))?;
            Ok(())
        })
        .await?;
        self.note_unsolicited();
        Ok(())
    }

    /// Waits with IDLE until the server reports a change, `timeout` passes,
    /// or `stop` is cancelled, then ends the IDLE and hands the session back.
    /// Call it only when [`ImapSession::supports_idle`] is true, with a
    /// mailbox selected; a change noticed during an earlier command counts
    /// as news without idling.
    pub async fn idle(mut self, timeout: Duration, stop: &CancellationToken) -> Result<(ImapSession, IdleOutcome), ImapError> {
        if stop.is_cancelled() {
            return Ok((self, IdleOutcome::Stopped));
        }
        if !self.idle {
            return Err(ImapError::Protocol { during: "IDLE", detail: "the server does not offer IDLE; poll instead".into() });
        }
        self.note_unsolicited();
        if std::mem::take(&mut self.news) {
            return Ok((self, IdleOutcome::NewData));
        }
        let idle = self.idle;
        let mut handle = self.session.idle();
        limit("IDLE", COMMAND_TIMEOUT, async { handle.init().await.map_err(|e| ImapError::from_imap("IDLE", e)) }).await?;
        let outcome = {
            let (wait, _interrupt) = handle.wait_with_timeout(timeout);
            tokio::select! {
                r = wait => idle_result(r)?,
                () = stop.cancelled() => IdleOutcome::Stopped,
                // The library's timeout restarts on every keepalive; this one does not.
                () = tokio::time::sleep(timeout) => IdleOutcome::Timeout,
            }
        };
        let session = limit("DONE", COMMAND_TIMEOUT, async { handle.done().await.map_err(|e| ImapError::from_imap("DONE", e)) }).await?;
        let mut this = ImapSession { session, idle, news: false };
        this.note_unsolicited();
        if outcome == IdleOutcome::NewData {
            // The rest of the same change arrived before DONE's reply; it is
            // reported already.
            this.news = false;
        }
        Ok((this, outcome))
    }

    /// Empties async-imap's queue of unsolicited responses, remembering
    /// news of new messages (EXISTS; a RECENT only follows an EXISTS, and
    /// Dovecot may send it a command later). Called after every command:
    /// the queue holds 100 and drops the rest, news included.
    fn note_unsolicited(&mut self) {
        while let Ok(r) = self.session.unsolicited_responses.try_recv() {
            self.news |= matches!(r, UnsolicitedResponse::Exists(_));
        }
    }

    /// Says LOGOUT and closes the connection (best effort: errors are only
    /// logged, the connection is dropped either way).
    pub async fn logout(mut self) {
        let session = &mut self.session;
        let done = tokio::time::timeout(COMMAND_TIMEOUT, session.logout()).await;
        if let Ok(Err(e)) = done {
            tracing::debug!(error = %e, "IMAP LOGOUT failed");
        }
    }
}

/// Maps what async-imap's IDLE wait returned.
fn idle_result(r: async_imap::error::Result<async_imap::extensions::idle::IdleResponse>) -> Result<IdleOutcome, ImapError> {
    use async_imap::extensions::idle::IdleResponse;
    match r.map_err(|e| ImapError::from_imap("IDLE", e))? {
        IdleResponse::Timeout => Ok(IdleOutcome::Timeout),
        // We never fire the library's interrupt, so this means the stream ended.
        IdleResponse::ManualInterrupt => Err(ImapError::Closed { during: "IDLE", source: None }),
        IdleResponse::NewData(data) => match data.parsed() {
            Response::Data { status: Status::Bye, .. } => Err(ImapError::Closed { during: "IDLE", source: None }),
            // EXISTS, RECENT, EXPUNGE, FETCH (flags) or anything else
            // untagged: something changed; a spurious fetch costs little.
            _ => Ok(IdleOutcome::NewData),
        },
    }
}

/// Formats sorted, distinct UIDs as an IMAP sequence set with ranges:
/// `[1, 2, 3, 5]` → `1:3,5`.
fn uid_set(sorted: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && end.checked_add(1) == Some(sorted[i + 1]) {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_collapse_runs_into_ranges() {
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8, 10]), "1:3,5,7:8,10");
        assert_eq!(uid_set(&[u32::MAX - 1, u32::MAX]), format!("{}:{}", u32::MAX - 1, u32::MAX));
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn auth_errors_are_permanent_and_say_no_password() {
        let e = ImapError::Auth { server_said: "[AUTHENTICATIONFAILED] Authentication failed.".into() };
        assert!(e.is_auth() && e.is_permanent());
        let lost = ImapError::Closed { during: "IDLE", source: None };
        assert!(!lost.is_auth() && !lost.is_permanent());
    }
}
