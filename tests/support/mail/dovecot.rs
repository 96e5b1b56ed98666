//! A throwaway Dovecot IMAP server: config, users, certificates and maildirs
//! in a temp dir; STARTTLS on the plain port and implicit TLS on a second
//! one; seeded and inspected over IMAP with async-imap.

use super::{AGENT_USER, PASSWORD, TestTls, find_program, free_port, log_tail, stop, wait_listening};
use agent_runtime::config::{EmailConfig, MailTls, Secret};
use async_imap::Session;
use async_imap::types::Flag;
use futures_util::TryStreamExt;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpStream;

/// How long one seeding or inspection step may take.
const STEP: Duration = Duration::from_secs(10);

/// A running Dovecot; stopped (SIGTERM to the master) on drop.
pub struct Dovecot {
    child: Child,
    port: u16,
    tls_port: u16,
    tls: TestTls,
    users: Mutex<HashMap<String, String>>,
    // Last: removed after the process is stopped.
    dir: TempDir,
}

impl Dovecot {
    /// Starts Dovecot with the user [`AGENT_USER`] / [`PASSWORD`] and waits
    /// until it accepts connections; panics with its log if it cannot.
    pub async fn start() -> Dovecot {
        Self::start_with(true).await
    }

    /// Like [`Dovecot::start`], but without IDLE in the capabilities it
    /// announces after login (clients must poll).
    pub async fn start_without_idle() -> Dovecot {
        Self::start_with(false).await
    }

    async fn start_with(idle: bool) -> Dovecot {
        let bin = find_program("dovecot", &["/usr/sbin/dovecot"]);
        let dir = tempfile::Builder::new().prefix("dovecot-").tempdir().expect("temp dir");
        // Dovecot's unprivileged processes (dovenull, nobody) must reach
        // the files below; tempdirs are 0700.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        // Mail is written as `nobody`.
        std::fs::set_permissions(dir.path().join("mail"), std::fs::Permissions::from_mode(0o1777)).expect("chmod mail");
        let tls = TestTls::create(dir.path());
        let users = Mutex::new(HashMap::from([(AGENT_USER.to_string(), PASSWORD.to_string())]));
        write_passwd(dir.path(), &users.lock().expect("users lock"));

        // A port taken between our probe and Dovecot's bind is retried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (port, tls_port) = two_free_ports();
            let conf = dir.path().join("dovecot.conf");
            std::fs::write(&conf, config(dir.path(), port, tls_port, idle)).expect("write dovecot.conf");
            let (log, stderr) = (dir.path().join("dovecot.log"), dir.path().join("dovecot.stderr"));
            let mut child = Command::new(&bin)
                .arg("-F")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::from(std::fs::File::create(dir.path().join("dovecot.stdout")).expect("stdout file")))
                .stderr(Stdio::from(std::fs::File::create(&stderr).expect("stderr file")))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let mut ready = wait_listening("dovecot", &mut child, port, Duration::from_secs(10), &[&log, &stderr]).await;
            if ready.is_ok() {
                ready = wait_listening("dovecot (imaps)", &mut child, tls_port, Duration::from_secs(5), &[&log, &stderr]).await;
            }
            match ready {
                Ok(()) => return Dovecot { child, port, tls_port, tls, users, dir },
                Err(why) => {
                    stop(&mut child, Duration::from_secs(5));
                    if attempt < 3 && why.contains("in use") {
                        continue;
                    }
                    panic!("Dovecot did not start: {why}");
                }
            }
        }
    }

    /// Stops the server (SIGTERM, then waits for the master to exit, about
    /// 1 s) without blocking the runtime, for tests that take the server
    /// away while the runtime keeps running. Dropping also stops it.
    pub async fn shutdown(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Drop sends SIGKILL after its own grace period.
    }

    /// The plain IMAP port (STARTTLS offered) on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS IMAP port on 127.0.0.1.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The test CA that signed the server certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.tls.ca_pem.clone()
    }

    /// The test CA written to a file.
    pub fn ca_path(&self) -> PathBuf {
        self.tls.ca_path.clone()
    }

    /// The runtime's mailbox user, [`AGENT_USER`].
    pub fn user(&self) -> &'static str {
        AGENT_USER
    }

    /// The runtime user's password, [`PASSWORD`].
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Adds (or changes) a user and waits until Dovecot accepts the login
    /// (it rereads a changed passwd file at most once a second).
    pub async fn add_user(&self, user: &str, password: &str) {
        {
            let mut users = self.users.lock().expect("users lock");
            users.insert(user.to_string(), password.to_string());
            write_passwd(self.dir.path(), &users);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.try_login(user).await {
                Ok(mut s) => {
                    let _ = s.logout().await;
                    return;
                }
                Err(e) if std::time::Instant::now() >= deadline => panic!("Dovecot never accepted the new user {user}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// An `EmailConfig` for the runtime's mailbox over `tls` (plain and
    /// STARTTLS on [`Dovecot::port`], implicit on [`Dovecot::tls_port`]),
    /// trusting the test CA, host `127.0.0.1`.
    pub fn email_config(&self, tls: MailTls) -> EmailConfig {
        EmailConfig {
            host: "127.0.0.1".into(),
            port: if tls == MailTls::Implicit { self.tls_port } else { self.port },
            tls,
            username: AGENT_USER.into(),
            password: Secret::new(PASSWORD),
            mailbox: "INBOX".into(),
            poll: Duration::from_secs(60),
            authserv_id: None,
            address: AGENT_USER.into(),
            ca_file: Some(self.ca_path()),
        }
    }

    /// Stores `raw` in `user`'s INBOX with IMAP APPEND (no flags) and
    /// returns its UID (the mailbox's highest; do not append to the same
    /// user from two tasks at once).
    pub async fn append(&self, user: &str, raw: &[u8]) -> u32 {
        let mut s = self.login(user).await;
        step("APPEND", s.append("INBOX", None, None, raw)).await;
        let uid = step("EXAMINE", s.examine("INBOX")).await.uid_next.expect("UIDNEXT after APPEND") - 1;
        let _ = s.logout().await;
        uid
    }

    /// The UIDs in `user`'s INBOX that carry `\Seen`, ascending.
    pub async fn seen_uids(&self, user: &str) -> Vec<u32> {
        let mut s = self.login(user).await;
        step("EXAMINE", s.examine("INBOX")).await;
        let mut uids: Vec<u32> = step("UID SEARCH", s.uid_search("SEEN")).await.into_iter().collect();
        uids.sort_unstable();
        let _ = s.logout().await;
        uids
    }

    /// The flags of message `uid` in `user`'s INBOX, as IMAP spells them
    /// (`\Seen`, `\Recent`, keywords).
    pub async fn flags_of(&self, user: &str, uid: u32) -> Vec<String> {
        let mut s = self.login(user).await;
        step("EXAMINE", s.examine("INBOX")).await;
        let fetches: Vec<_> = step("UID FETCH", async { s.uid_fetch(uid.to_string(), "FLAGS").await?.try_collect::<Vec<_>>().await }).await;
        let _ = s.logout().await;
        let fetch = fetches.iter().find(|f| f.uid == Some(uid)).unwrap_or_else(|| panic!("no message with UID {uid} for {user}"));
        fetch.flags().map(flag_name).collect()
    }

    /// A plain-text IMAP session for `user` (loopback, test only).
    async fn login(&self, user: &str) -> Session<TcpStream> {
        self.try_login(user)
            .await
            .unwrap_or_else(|e| panic!("IMAP LOGIN {user}: {e}{}", log_tail(&[&self.dir.path().join("dovecot.log")], 20)))
    }

    /// Logs `user` in with the password it was given; `Err` if the server says NO.
    async fn try_login(&self, user: &str) -> Result<Session<TcpStream>, async_imap::error::Error> {
        let password = self.users.lock().expect("users lock").get(user).cloned().unwrap_or_else(|| panic!("no Dovecot user {user}"));
        let tcp = step("connect", TcpStream::connect(("127.0.0.1", self.port))).await;
        let mut client = async_imap::Client::new(tcp);
        // `Client::new` does not read the greeting.
        step("greeting", client.read_response()).await.expect("IMAP greeting");
        let login = tokio::time::timeout(STEP, client.login(user, &password)).await.expect("IMAP LOGIN timed out");
        login.map_err(|(e, _)| e)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(5));
    }
}

/// Awaits a seeding step with a timeout; panics naming it.
async fn step<T, E: std::fmt::Display>(what: &str, fut: impl Future<Output = Result<T, E>>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("Dovecot {what}: {e}"),
        Err(_) => panic!("Dovecot {what} timed out after {STEP:?}"),
    }
}

fn flag_name(f: Flag<'_>) -> String {
    match f {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(s) => s.into_owned(),
    }
}

fn two_free_ports() -> (u16, u16) {
    loop {
        let (a, b) = (free_port(), free_port());
        if a != b {
            return (a, b);
        }
    }
}

fn write_passwd(dir: &Path, users: &HashMap<String, String>) {
    let mut text = String::new();
    for (user, password) in users {
        let _ = writeln!(text, "{user}:{{PLAIN}}{password}::::::");
    }
    let path = dir.join("passwd");
    std::fs::write(&path, text).expect("write passwd");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod passwd");
}

/// The recipe from docs (dependencies.md §6), plus an implicit-TLS listener
/// a fast mailbox re-check for IDLE where inotify is unavailable, and no
/// delay after failed logins (neither the 2 s reply delay nor anvil's
/// growing per-IP penalty, which would slow every later login from
/// 127.0.0.1 by 2–15 s).
fn config(d: &Path, port: u16, tls_port: u16, idle: bool) -> String {
    let d = d.display();
    // The post-login capability list, IDLE left out (Dovecot's own list otherwise).
    let capability = if idle { "" } else { "imap_capability = IMAP4rev1 SASL-IR LITERAL+ UIDPLUS ENABLE\n" };
    format!(
        r#"base_dir = {d}/run
state_dir = {d}/state
instance_name = agent-test-{port}
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
disable_plaintext_auth = no
auth_mechanisms = plain login
mailbox_idle_check_interval = 1 secs
auth_failure_delay = 0
{capability}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"#
    )
}
