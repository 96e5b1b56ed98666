//! Real mail peers for the email connector, each started per test in a temp
//! dir on a free loopback port: a Dovecot IMAP server ([`Dovecot`]) and an
//! aiosmtpd SMTP sink that records envelopes ([`SmtpSink`]). Both offer
//! STARTTLS with a certificate from a test CA made here with rcgen.
//! Invariants: a peer that cannot start panics with its log (tests fail,
//! never skip); every process is stopped by its PID on drop.

// Explicit paths: `benches/bench.rs` may include support files with `#[path]`,
// which makes rustc look for child modules next to the file, not in `mail/`.
#[path = "mail/dovecot.rs"]
mod dovecot;
#[cfg(test)]
#[path = "mail/self_check.rs"]
mod self_check;
#[path = "mail/smtp.rs"]
mod smtp;

pub use dovecot::Dovecot;
pub use smtp::{Captured, SmtpSink};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The runtime's own mailbox on the test Dovecot.
pub const AGENT_USER: &str = "agent@example.test";
/// The password of every user the peers create unless told otherwise.
pub const PASSWORD: &str = "secret";

/// A test CA and a server certificate for `localhost` and `127.0.0.1`,
/// written as PEM files into a directory.
#[derive(Debug, Clone)]
pub struct TestTls {
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// Where the CA certificate is written.
    pub ca_path: PathBuf,
    /// The server certificate (PEM).
    pub cert_path: PathBuf,
    /// The server key (PEM).
    pub key_path: PathBuf,
}

impl TestTls {
    /// Makes the CA and the leaf and writes `ca.pem`, `server.pem`, `server.key` into `dir`.
    pub fn create(dir: &Path) -> TestTls {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name.push(DnType::CommonName, "agent-runtime test mail CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca.self_signed(&ca_key).expect("self-sign CA").pem();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().expect("server key");
        let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("leaf params");
        leaf.distinguished_name.push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert_pem = leaf.signed_by(&key, &issuer).expect("sign leaf").pem();

        let tls = TestTls { ca_pem, ca_path: dir.join("ca.pem"), cert_path: dir.join("server.pem"), key_path: dir.join("server.key") };
        write(&tls.ca_path, tls.ca_pem.as_bytes());
        write(&tls.cert_path, cert_pem.as_bytes());
        write(&tls.key_path, key.serialize_pem().as_bytes());
        tls
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A loopback port that was free a moment ago (the peer binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// The last `lines` lines of each file, labelled, for a panic message.
fn log_tail(files: &[&Path], lines: usize) -> String {
    let mut out = String::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| format!("(unreadable: {e})"));
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        out.push_str(&format!("\n--- {} ---\n{tail}", f.display()));
    }
    out
}

/// Waits until `port` accepts a TCP connection; fails with `logs` if `child`
/// exits or `timeout` passes.
async fn wait_listening(what: &str, child: &mut Child, port: u16, timeout: Duration, logs: &[&Path]) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited ({status}) before listening on 127.0.0.1:{port}{}", log_tail(logs, 40)));
        }
        if Instant::now() >= deadline {
            return Err(format!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}{}", log_tail(logs, 40)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGTERM to `child` and waits up to `grace` for it to exit, then
/// SIGKILL. (SIGKILL first would leave Dovecot's workers behind.)
fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `name` if it is on `PATH`, else the first of `fallbacks` that exists.
fn find_program(name: &str, fallbacks: &[&str]) -> PathBuf {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).map(|d| d.join(name));
    on_path.chain(fallbacks.iter().map(PathBuf::from)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("`{name}` is not installed (looked on PATH and in {fallbacks:?}); run `make test-deps` to install the test mail servers")
    })
}
