//! The `send_email` action: a plain-text mail, approved by a human, sent
//! over SMTP. The target is the comma-separated recipient list; the payload
//! is `{"subject", "body", "cc"?, "in_reply_to"?}` and nothing else.
//!
//! Invariants: never more than [`MAX_RECIPIENTS`] recipients, never the
//! runtime's own address or the SMTP sender (no loops), no CR/LF in the
//! subject. No `Auto-Submitted` header: a human approved this mail.

use super::{ActionExecutor, ActionOutcome};
use crate::BoxFuture;
use crate::connectors::email::message::{new_message_id, one_line, same_address};
use crate::connectors::email::smtp::SmtpSender;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use serde::Deserialize;

/// The most recipients (`To` and `Cc` together) of one mail.
pub const MAX_RECIPIENTS: usize = 20;
/// The longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// The largest body, in bytes (100 KiB).
pub const MAX_BODY_BYTES: usize = 100 * 1024;
const MAX_ID_CHARS: usize = 250;

/// Sends approved mails through the configured SMTP server.
#[derive(Debug, Clone)]
pub struct SendEmailExecutor {
    sender: SmtpSender,
    own_address: Option<String>,
}

impl SendEmailExecutor {
    /// An executor sending as `sender.from()`; `own_address` (the mailbox
    /// the runtime reads, if any) is refused as a recipient too.
    pub fn new(sender: SmtpSender, own_address: Option<String>) -> Self {
        Self { sender, own_address }
    }

    /// Parses and checks a request.
    fn request(&self, target: &str, payload: &serde_json::Value) -> Result<Request, String> {
        let p = Payload::deserialize(payload).map_err(|e| format!("payload: {e}"))?;
        let own: Vec<Mailbox> =
            [Some(self.sender.from()), self.own_address.as_deref()].into_iter().flatten().filter_map(|a| a.parse().ok()).collect();
        let mut seen: Vec<Mailbox> = Vec::new();
        let mut take = |raw: &str| -> Result<Option<Mailbox>, String> {
            let mb: Mailbox = raw.trim().parse().map_err(|e| format!("recipient {:?} is not an email address: {e}", raw.trim()))?;
            if own.iter().any(|o| same_address(o, &mb)) {
                return Err(format!("recipient {} is the runtime's own address", mb.email));
            }
            if seen.iter().any(|s| same_address(s, &mb)) {
                return Ok(None);
            }
            seen.push(mb.clone());
            Ok(Some(mb))
        };
        let mut to = Vec::new();
        for raw in target.split(',').filter(|s| !s.trim().is_empty()) {
            to.extend(take(raw)?);
        }
        if to.is_empty() {
            return Err("target must list at least one recipient (comma-separated addresses)".into());
        }
        let mut cc = Vec::new();
        for raw in p.cc.iter().filter(|s| !s.trim().is_empty()) {
            cc.extend(take(raw)?);
        }
        if to.len() + cc.len() > MAX_RECIPIENTS {
            return Err(format!("{} recipients; at most {MAX_RECIPIENTS} are allowed", to.len() + cc.len()));
        }
        check_subject(&p.subject)?;
        check_body(&p.body)?;
        let in_reply_to = p.in_reply_to.as_deref().map(message_id).transpose()?;
        Ok(Request { to, cc, subject: p.subject, body: p.body, in_reply_to })
    }

    fn message(&self, r: Request) -> Result<lettre::Message, String> {
        let from: Mailbox = self.sender.from().parse().map_err(|e| format!("the SMTP sender is not an address: {e}"))?;
        let mut b = lettre::Message::builder().from(from.clone()).subject(one_line(&r.subject));
        for mb in r.to {
            b = b.to(mb);
        }
        for mb in r.cc {
            b = b.cc(mb);
        }
        if let Some(id) = r.in_reply_to {
            b = b.in_reply_to(format!("<{id}>")).references(format!("<{id}>"));
        }
        b.message_id(Some(new_message_id(&from)))
            .header(ContentType::TEXT_PLAIN)
            .body(r.body)
            .map_err(|e| format!("building the mail: {e}"))
    }
}

/// The payload; unknown keys are refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    subject: String,
    body: String,
    #[serde(default)]
    cc: Vec<String>,
    #[serde(default)]
    in_reply_to: Option<String>,
}

/// A checked request.
#[derive(Debug)]
struct Request {
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    subject: String,
    body: String,
    in_reply_to: Option<String>,
}

impl Request {
    fn recipients(&self) -> usize {
        self.to.len() + self.cc.len()
    }
}

fn check_subject(subject: &str) -> Result<(), String> {
    if subject.trim().is_empty() {
        return Err("subject is empty".into());
    }
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(format!("subject is longer than {MAX_SUBJECT_CHARS} characters"));
    }
    if subject.chars().any(char::is_control) {
        return Err("subject must be one line (no CR, LF or other control characters)".into());
    }
    Ok(())
}

fn check_body(body: &str) -> Result<(), String> {
    if body.trim().is_empty() {
        return Err("body is empty".into());
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(format!("body is {} bytes; at most {MAX_BODY_BYTES} are allowed", body.len()));
    }
    Ok(())
}

/// A message id, with or without angle brackets, returned without them.
fn message_id(raw: &str) -> Result<String, String> {
    let id = raw.trim().trim_start_matches('<').trim_end_matches('>');
    let ok = !id.is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && !id.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
    if ok { Ok(id.to_string()) } else { Err(format!("in_reply_to {raw:?} is not a message id")) }
}

impl ActionExecutor for SendEmailExecutor {
    fn validate(&self, target: &str, payload: &serde_json::Value) -> Result<(), String> {
        self.request(target, payload).map(|_| ())
    }

    fn execute<'a>(&'a self, target: &'a str, payload: &'a serde_json::Value) -> BoxFuture<'a, ActionOutcome> {
        Box::pin(async move {
            let request = match self.request(target, payload) {
                Ok(r) => r,
                Err(e) => return ActionOutcome { succeeded: false, result: format!("refused: {e}") },
            };
            let n = request.recipients();
            let msg = match self.message(request) {
                Ok(m) => m,
                Err(e) => return ActionOutcome { succeeded: false, result: e },
            };
            match self.sender.send(msg).await {
                Ok(()) => ActionOutcome { succeeded: true, result: format!("email sent to {n} recipient(s)") },
                Err(e) => ActionOutcome { succeeded: false, result: e.message },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MailTls, SmtpConfig};
    use serde_json::json;
    use std::time::Duration;

    fn executor(port: u16) -> SendEmailExecutor {
        let cfg = SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            tls: MailTls::Plain,
            username: None,
            password: None,
            from: "bot@runtime.test".into(),
            ca_file: None,
        };
        SendEmailExecutor::new(SmtpSender::new(&cfg).expect("sender"), Some("inbox@runtime.test".into()))
    }

    fn refused(target: &str, payload: serde_json::Value) -> String {
        executor(25).validate(target, &payload).expect_err("refused")
    }

    #[test]
    fn a_well_formed_request_is_accepted() {
        let p = json!({"subject": "Report", "body": "Hello", "cc": ["Carol <carol@example.com>"], "in_reply_to": "<m1@example.com>"});
        assert_eq!(executor(25).validate("alice@example.com, Bob <bob@example.com>", &p), Ok(()));
    }

    #[test]
    fn unknown_and_missing_payload_keys_are_refused_by_name() {
        let e = refused("a@example.com", json!({"subject": "s", "body": "b", "bcc": ["x@example.com"]}));
        assert!(e.contains("unknown field `bcc`"), "{e}");
        let e = refused("a@example.com", json!({"body": "b"}));
        assert!(e.contains("missing field `subject`"), "{e}");
        let e = refused("a@example.com", json!("just text"));
        assert!(e.starts_with("payload: "), "{e}");
    }

    #[test]
    fn bad_or_missing_recipients_are_refused() {
        let e = refused("not-an-address", json!({"subject": "s", "body": "b"}));
        assert!(e.contains("\"not-an-address\" is not an email address"), "{e}");
        let e = refused(" , ", json!({"subject": "s", "body": "b"}));
        assert!(e.contains("at least one recipient"), "{e}");
        let e = refused("a@example.com", json!({"subject": "s", "body": "b", "cc": ["a@@x"]}));
        assert!(e.contains("is not an email address"), "{e}");
    }

    #[test]
    fn more_than_twenty_recipients_are_refused() {
        let to: Vec<String> = (0..15).map(|i| format!("u{i}@example.com")).collect();
        let cc: Vec<String> = (15..21).map(|i| format!("u{i}@example.com")).collect();
        let e = refused(&to.join(","), json!({"subject": "s", "body": "b", "cc": cc}));
        assert_eq!(e, "21 recipients; at most 20 are allowed");
        // Duplicates count once.
        let dup = vec!["u0@example.com".to_string(); 30];
        assert_eq!(executor(25).validate(&to.join(","), &json!({"subject": "s", "body": "b", "cc": dup})), Ok(()));
    }

    #[test]
    fn our_own_addresses_are_refused_as_recipients() {
        let e = refused("a@example.com, BOT@runtime.test", json!({"subject": "s", "body": "b"}));
        assert_eq!(e, "recipient BOT@runtime.test is the runtime's own address");
        let e = refused("a@example.com", json!({"subject": "s", "body": "b", "cc": ["Inbox <inbox@runtime.test>"]}));
        assert!(e.contains("own address"), "{e}");
    }

    #[test]
    fn subject_and_body_limits_are_enforced() {
        let e = refused("a@example.com", json!({"subject": "hi\r\nBcc: evil@example.com", "body": "b"}));
        assert!(e.contains("one line"), "{e}");
        let e = refused("a@example.com", json!({"subject": "x".repeat(201), "body": "b"}));
        assert!(e.contains("longer than 200"), "{e}");
        assert!(executor(25).validate("a@example.com", &json!({"subject": "é".repeat(200), "body": "b"})).is_ok());
        let e = refused("a@example.com", json!({"subject": " ", "body": "b"}));
        assert_eq!(e, "subject is empty");
        let e = refused("a@example.com", json!({"subject": "s", "body": "x".repeat(MAX_BODY_BYTES + 1)}));
        assert!(e.contains("at most 102400"), "{e}");
        let e = refused("a@example.com", json!({"subject": "s", "body": "\n"}));
        assert_eq!(e, "body is empty");
    }

    #[test]
    fn a_malformed_in_reply_to_is_refused() {
        let e = refused("a@example.com", json!({"subject": "s", "body": "b", "in_reply_to": "a b@x\r\nBcc: y"}));
        assert!(e.contains("is not a message id"), "{e}");
    }

    #[tokio::test]
    async fn an_approved_mail_is_sent_without_auto_submitted() {
        let (port, seen) = crate::connectors::email::smtp::fake::serve_one("250 ok\r\n").await;
        let p = json!({"subject": "Report", "body": "Hello there", "cc": ["carol@example.com"], "in_reply_to": "m1@example.com"});
        let out = tokio::time::timeout(Duration::from_secs(10), executor(port).execute("alice@example.com", &p)).await.expect("in time");
        assert_eq!(out, ActionOutcome { succeeded: true, result: "email sent to 2 recipient(s)".into() });
        let seen = seen.lock().expect("lock").clone();
        assert!(seen.commands.iter().any(|c| c == "RCPT TO:<carol@example.com>"), "{:?}", seen.commands);
        assert!(seen.data.contains("In-Reply-To: <m1@example.com>"), "{}", seen.data);
        assert!(seen.data.contains("From: bot@runtime.test"), "{}", seen.data);
        assert!(!seen.data.contains("Auto-Submitted"), "{}", seen.data);
    }

    #[tokio::test]
    async fn a_refused_mail_reports_the_smtp_error() {
        let (port, _) = crate::connectors::email::smtp::fake::serve_one("550 5.7.1 relaying denied\r\n").await;
        let p = json!({"subject": "s", "body": "b"});
        let out = tokio::time::timeout(Duration::from_secs(10), executor(port).execute("alice@example.com", &p)).await.expect("in time");
        assert!(!out.succeeded);
        assert!(out.result.starts_with("smtp: ") && out.result.contains("relaying denied"), "{}", out.result);
    }
}
