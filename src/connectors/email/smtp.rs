//! Sending mail over SMTP (lettre): TLS from the first byte or required
//! STARTTLS, plain only to a loopback host; failures classified for the
//! outbox's retry policy.
//!
//! Invariants: the password is held only inside lettre's `Credentials`
//! (whose `Debug` redacts it) and never appears in an error or a log line;
//! STARTTLS is never optional.

use crate::config::{MailTls, SmtpConfig, is_loopback_host};
use crate::outbox::PublishError;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Duration;

/// How long one SMTP conversation step may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A cloneable handle that sends mail through the configured server.
#[derive(Clone)]
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: String,
    host: String,
    port: u16,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender").field("host", &self.host).field("port", &self.port).field("from", &self.from).finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// A sender for `cfg`. Reads `cfg.ca_file` (extra PEM roots) when set;
    /// refuses plain SMTP to a host that is not loopback.
    pub fn new(cfg: &SmtpConfig) -> Result<SmtpSender, String> {
        let tls = match cfg.tls {
            MailTls::Implicit => Tls::Wrapper(tls_parameters(cfg)?),
            MailTls::StartTls => Tls::Required(tls_parameters(cfg)?),
            MailTls::Plain if is_loopback_host(&cfg.host) => Tls::None,
            MailTls::Plain => return Err(format!("smtp: plain SMTP to {} is refused: only a loopback host may go without TLS", cfg.host)),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.trim_matches(['[', ']']))
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(TIMEOUT));
        if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_string()));
        }
        Ok(SmtpSender { transport: builder.build(), from: cfg.from.clone(), host: cfg.host.clone(), port: cfg.port })
    }

    /// The sender address (`AGENT_RUNTIME_SMTP_FROM`).
    pub fn from(&self) -> &str {
        &self.from
    }

    /// Sends one message. A 5xx reply (or a client-side refusal) is
    /// permanent; 4xx, connection, timeout and TLS failures are transient.
    pub async fn send(&self, msg: lettre::Message) -> Result<(), PublishError> {
        match self.transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(&e)),
        }
    }
}

fn tls_parameters(cfg: &SmtpConfig) -> Result<TlsParameters, String> {
    let domain = cfg.host.trim_matches(['[', ']']).to_string();
    let mut builder = TlsParameters::builder(domain);
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("smtp: reading the CA file {}: {e}", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| format!("smtp: the CA file {} holds no usable PEM certificate: {e}", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| format!("smtp: TLS setup: {e}"))
}

/// Maps a lettre error onto the outbox's retry classes.
fn classify(e: &lettre::transport::smtp::Error) -> PublishError {
    let message = format!("smtp: {}", error_chain(e));
    if e.is_permanent() || e.is_client() { PublishError::permanent(message) } else { PublishError::transient(message) }
}

/// The error and its sources, `: `-joined (lettre's `Display` alone often
/// says only "network error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    let mut depth = 0;
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
        depth += 1;
        if depth > 5 {
            break;
        }
    }
    out
}

/// A scripted SMTP peer on loopback for unit tests: answers each command
/// with the reply configured for its verb and records what it received.
#[cfg(test)]
pub(crate) mod fake {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// What the fake server saw: the envelope commands and the data.
    #[derive(Debug, Default, Clone)]
    pub(crate) struct Seen {
        pub(crate) commands: Vec<String>,
        pub(crate) data: String,
    }

    /// Serves one connection on `127.0.0.1:0`; `rcpt_reply` answers every
    /// `RCPT TO`. Returns the port and the record.
    pub(crate) async fn serve_one(rcpt_reply: &'static str) -> (u16, Arc<Mutex<Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let record = seen.clone();
        tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let _ = write.write_all(b"220 fake ESMTP\r\n").await;
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                if in_data {
                    if line == "." {
                        in_data = false;
                        let _ = write.write_all(b"250 2.0.0 queued\r\n").await;
                    } else {
                        record.lock().expect("lock").data.push_str(&format!("{line}\n"));
                    }
                    continue;
                }
                record.lock().expect("lock").commands.push(line.clone());
                let verb = line.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" => b"250-fake\r\n250 8BITMIME\r\n",
                    "RCPT" => rcpt_reply.as_bytes(),
                    "DATA" => {
                        in_data = true;
                        b"354 go on\r\n"
                    }
                    "QUIT" => {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    }
                    _ => b"250 ok\r\n",
                };
                let _ = write.write_all(reply).await;
            }
        });
        (port, seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(host: &str, port: u16, tls: MailTls) -> SmtpConfig {
        SmtpConfig { host: host.into(), port, tls, username: None, password: None, from: "bot@runtime.test".into(), ca_file: None }
    }

    fn message() -> lettre::Message {
        lettre::Message::builder()
            .from("bot@runtime.test".parse().expect("from"))
            .to("alice@example.com".parse().expect("to"))
            .subject("hello")
            .body("hi there".to_string())
            .expect("message")
    }

    #[test]
    fn plain_smtp_is_refused_to_a_remote_host() {
        let err = SmtpSender::new(&config("smtp.example.com", 25, MailTls::Plain)).expect_err("refused");
        assert!(err.starts_with("smtp: plain SMTP to smtp.example.com is refused"), "{err}");
        assert!(SmtpSender::new(&config("127.0.0.1", 25, MailTls::Plain)).is_ok());
        assert!(SmtpSender::new(&config("smtp.example.com", 465, MailTls::Implicit)).is_ok());
        assert!(SmtpSender::new(&config("smtp.example.com", 587, MailTls::StartTls)).is_ok());
    }

    #[test]
    fn a_missing_or_bad_ca_file_is_reported() {
        let mut cfg = config("smtp.example.com", 587, MailTls::StartTls);
        cfg.ca_file = Some("/nonexistent/ca.pem".into());
        let err = SmtpSender::new(&cfg).expect_err("missing");
        assert!(err.contains("reading the CA file /nonexistent/ca.pem"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").expect("write");
        cfg.ca_file = Some(path);
        assert!(SmtpSender::new(&cfg).is_err());
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let mut cfg = config("127.0.0.1", 25, MailTls::Plain);
        cfg.username = Some("bot".into());
        cfg.password = Some(crate::config::Secret::new("hunter2-secret".to_string()));
        let sender = SmtpSender::new(&cfg).expect("sender");
        assert!(!format!("{sender:?}").contains("hunter2"));
        assert_eq!(sender.from(), "bot@runtime.test");
    }

    #[tokio::test]
    async fn a_message_is_delivered_to_a_plain_loopback_server() {
        let (port, seen) = fake::serve_one("250 ok\r\n").await;
        let sender = SmtpSender::new(&config("127.0.0.1", port, MailTls::Plain)).expect("sender");
        tokio::time::timeout(Duration::from_secs(10), sender.send(message())).await.expect("send in time").expect("sent");
        let seen = seen.lock().expect("lock").clone();
        assert!(seen.commands.iter().any(|c| c == "RCPT TO:<alice@example.com>"), "{:?}", seen.commands);
        assert!(seen.data.contains("Subject: hello"), "{}", seen.data);
    }

    #[tokio::test]
    async fn a_5xx_refusal_is_permanent_and_a_4xx_is_transient() {
        for (reply, retryable) in [("550 5.1.1 no such user\r\n", false), ("451 4.3.0 try later\r\n", true)] {
            let (port, _) = fake::serve_one(reply).await;
            let sender = SmtpSender::new(&config("127.0.0.1", port, MailTls::Plain)).expect("sender");
            let err = tokio::time::timeout(Duration::from_secs(10), sender.send(message())).await.expect("in time").expect_err("refused");
            assert_eq!(err.retryable, retryable, "{reply}: {}", err.message);
            assert!(err.message.starts_with("smtp: "), "{}", err.message);
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let sender = SmtpSender::new(&config("127.0.0.1", port, MailTls::Plain)).expect("sender");
        let err = tokio::time::timeout(Duration::from_secs(10), sender.send(message())).await.expect("in time").expect_err("no server");
        assert!(err.retryable, "{}", err.message);
        assert!(err.message.starts_with("smtp: "), "{}", err.message);
    }
}
