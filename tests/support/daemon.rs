//! Runs the real `agent-runtime` binary against a temp data dir on a free
//! loopback port, with a clean environment (no AGENT_RUNTIME_* leaks in).

use super::wait_until;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_agent-runtime")
}

/// A `Command` for the binary with a clean environment, run in `dir`.
pub fn command(dir: &Path, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .current_dir(dir)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AGENT_RUNTIME_LOG", "info,agent_runtime=debug");
    cmd.env("AGENT_RUNTIME_DATA_DIR", dir.join("data"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    /// The temp dir it runs in (`data/` below it).
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT` (or `http://` with plain HTTP).
    pub base: String,
    /// HTTP client: over mutual TLS with the local PKI's admin certificate.
    pub http: reqwest::Client,
}

/// A reqwest client presenting `<data>/pki/clients/<name>.pem` and trusting `<data>/pki/ca.pem`.
pub fn tls_client(data: &Path, name: &str) -> reqwest::Client {
    let pki = data.join("pki");
    let mut pem = std::fs::read(pki.join(format!("clients/{name}.pem"))).expect("client cert");
    pem.extend(std::fs::read(pki.join(format!("clients/{name}-key.pem"))).expect("client key"));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.pem")).expect("ca")).expect("ca pem");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

impl Daemon {
    /// Links `user` of `connector` with `role` through the pairing API (start, then approve).
    pub async fn link(&self, connector: &str, user: &str, role: &str) {
        let (s, v) = self.post("/api/v1/pairings/start", &serde_json::json!({"connector": connector, "connector_user_id": user})).await;
        assert_eq!(s, 201, "{v}");
        let token = v["token"].as_str().expect("token").to_string();
        let (s, v) = self.post("/api/v1/pairings/approve", &serde_json::json!({"token": token, "role": role})).await;
        assert_eq!(s, 200, "{v}");
    }

    /// Starts `serve` in `dir` with `env` and waits for `/readyz`, talking
    /// to it with the local PKI's admin certificate.
    pub async fn start(dir: &Path, env: &[(&str, String)]) -> Daemon {
        Self::start_with(dir, env, None).await
    }

    /// Like [`Daemon::start`], with `client` for the API (own certificates).
    pub async fn start_with(dir: &Path, env: &[(&str, String)], client: Option<reqwest::Client>) -> Daemon {
        let state = dir.join("data/agent-runtime/serve.json");
        let _ = std::fs::remove_file(&state);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("daemon.log")).expect("log file");
        let mut all: Vec<(&str, String)> = vec![("AGENT_RUNTIME_HTTP_ADDR", "127.0.0.1:0".into())];
        all.extend(env.iter().cloned());
        let child = command(dir, &all).arg("serve").stdout(Stdio::null()).stderr(log).spawn().expect("spawn agent-runtime serve");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        let mut d = Daemon { child: Some(child), dir: dir.to_path_buf(), base: String::new(), http };
        let url = wait_until("serve.json", Duration::from_secs(20), || {
            let state = state.clone();
            async move {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(&state).ok()?).ok()?;
                v["url"].as_str().map(str::to_string)
            }
        })
        .await;
        if let Some(c) = client {
            d.http = c;
        } else if url.starts_with("https://") {
            d.http = tls_client(&dir.join("data"), "local-admin");
        }
        d.base = url;
        let (http, url) = (d.http.clone(), format!("{}/readyz", d.base));
        wait_until("/readyz 200", Duration::from_secs(10), || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(&url).send().await.ok().filter(|r| r.status() == 200) }
        })
        .await;
        d
    }

    /// The data dir.
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The daemon's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `VmHWM:` for the peak).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc/<pid>/status");
        let line = status.lines().find_map(|l| l.strip_prefix(field)).unwrap_or_else(|| panic!("no {field} in {status}"));
        line.trim().trim_end_matches("kB").trim().parse().expect("a number of KiB")
    }

    /// POSTs JSON; returns status and body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).json(body).send().await.expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs raw bytes as JSON.
    pub async fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// PATCHes JSON; returns status and body.
    pub async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.http.patch(format!("{}{path}", self.base)).json(body).send().await.expect("patch");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GETs; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Sends a chat message as the CLI would; returns the reply.
    pub async fn chat(&self, text: &str) -> String {
        let (status, v) = self.post("/api/v1/chat", &serde_json::json!({"text": text})).await;
        assert_eq!(status, 200, "chat {text:?}: {v}");
        v["reply"].as_str().unwrap_or_default().to_string()
    }

    /// Polls a task until `pred` holds for it.
    pub async fn wait_task(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/api/v1/tasks/{id}");
        wait_until(what, Duration::from_secs(30), || async {
            let (s, v) = self.get(&path).await;
            (s == 200 && pred(&v)).then_some(v)
        })
        .await
    }

    /// SIGKILL, like a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM").await
    }

    /// Sends a signal (`-TERM`, `-INT`) and waits for the exit status.
    pub async fn signal(&mut self, sig: &str) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let sent = Command::new("kill").args([sig, &c.id().to_string()]).status().expect("run kill");
        assert!(sent.success(), "kill {sig} failed");
        wait_until("daemon exit after SIGTERM", Duration::from_secs(30), || {
            let status = c.try_wait().ok().flatten();
            async move { status }
        })
        .await
    }

    /// Opens the daemon's database read-only (for checks of the real file).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(self.data().join("agent-runtime/meta.sqlite"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
