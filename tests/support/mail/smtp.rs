//! A real SMTP server that keeps what it receives: aiosmtpd with a small
//! handler (written into the temp dir) that stores each message's bytes
//! exactly as sent, beside its envelope (MAIL FROM, RCPT TO) and whether the
//! session had switched to TLS. STARTTLS is offered, not required.

use super::{TestTls, find_program, free_port, stop, wait_listening};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The aiosmtpd handler: one `NNNNNN.json` (envelope) + `NNNNNN.eml` (raw
/// bytes) per message, numbered in arrival order; the `.eml` is renamed into
/// place last, so its presence means the pair is complete. A `reply` file,
/// when present, is answered to DATA instead of storing (fault injection).
const HANDLER: &str = r#"
import itertools, json, os

class Handler:
    def __init__(self, out):
        self.out = out
        self.seq = itertools.count(1)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("agent_test_sink.Handler needs the output directory")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        try:
            with open(os.path.join(self.out, "..", "reply")) as f:
                return f.read().strip()
        except FileNotFoundError:
            pass
        base = os.path.join(self.out, "%06d" % next(self.seq))
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.rcpt_tos),
            "tls": session.ssl is not None,
        }
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK"
"#;

/// One message as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`), in order.
    pub rcpt_to: Vec<String>,
    /// Whether the session had switched to TLS (STARTTLS) before DATA.
    pub tls: bool,
    /// The message bytes exactly as sent after DATA (RFC 5322).
    pub raw: Vec<u8>,
}

/// A running aiosmtpd; killed by PID on drop.
pub struct SmtpSink {
    child: Child,
    port: u16,
    tls: TestTls,
    dir: TempDir,
}

impl SmtpSink {
    /// Starts the sink on a free loopback port and waits until it accepts;
    /// panics with its output if it cannot.
    pub async fn start() -> SmtpSink {
        let python = find_program("python3", &["/usr/bin/python3"]);
        let dir = tempfile::Builder::new().prefix("smtp-sink-").tempdir().expect("temp dir");
        let tls = TestTls::create(dir.path());
        std::fs::create_dir(dir.path().join("out")).expect("mkdir out");
        std::fs::write(dir.path().join("agent_test_sink.py"), HANDLER).expect("write handler");
        let log = dir.path().join("aiosmtpd.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let mut child = Command::new(&python)
                .args(["-m", "aiosmtpd", "-n", "-u", "-l", &format!("127.0.0.1:{port}")])
                .arg("--tlscert")
                .arg(&tls.cert_path)
                .arg("--tlskey")
                .arg(&tls.key_path)
                .arg("--no-requiretls")
                .args(["-c", "agent_test_sink.Handler"])
                .arg(dir.path().join("out"))
                .env("PYTHONPATH", dir.path())
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::from(std::fs::File::create(&log).expect("log file")))
                .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).expect("log file")))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
            match wait_listening("aiosmtpd", &mut child, port, Duration::from_secs(15), &[&log]).await {
                Ok(()) => return SmtpSink { child, port, tls, dir },
                Err(why) => {
                    stop(&mut child, Duration::from_secs(2));
                    if attempt < 3 && why.contains("in use") {
                        continue;
                    }
                    panic!("aiosmtpd did not start (is it installed? `make test-deps`): {why}");
                }
            }
        }
    }

    /// The SMTP port on 127.0.0.1 (plain; STARTTLS offered).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test CA that signed the server certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.tls.ca_pem.clone()
    }

    /// The test CA written to a file.
    pub fn ca_path(&self) -> PathBuf {
        self.tls.ca_path.clone()
    }

    /// From now on, answer DATA with `reply` (e.g. `"451 4.3.0 try later"`)
    /// and store nothing; `None` goes back to accepting.
    pub fn set_reply(&self, reply: Option<&str>) {
        let path = self.dir.path().join("reply");
        match reply {
            Some(r) => std::fs::write(path, r).expect("write reply"),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Every message received so far, in arrival order.
    pub fn captured(&self) -> Vec<Captured> {
        let out = self.dir.path().join("out");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&out)
            .expect("read sink dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        // Names are zero-padded arrival numbers.
        names.sort();
        names.iter().map(|eml| read_captured(eml)).collect()
    }

    /// The raw bytes of every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.captured().into_iter().map(|c| c.raw).collect()
    }

    /// Waits until at least `n` messages have arrived and returns them all;
    /// panics after `timeout` saying how many came.
    pub async fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.captured();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!("SMTP sink: {} of {n} messages within {timeout:?}", got.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn read_captured(eml: &Path) -> Captured {
    let raw = std::fs::read(eml).unwrap_or_else(|e| panic!("read {}: {e}", eml.display()));
    let meta_path = eml.with_extension("json");
    let meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).expect("read envelope")).expect("envelope JSON");
    let rcpt_to = meta["rcpt_to"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
    Captured {
        mail_from: meta["mail_from"].as_str().unwrap_or_default().to_string(),
        rcpt_to,
        tls: meta["tls"].as_bool().unwrap_or(false),
        raw,
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(2));
    }
}
