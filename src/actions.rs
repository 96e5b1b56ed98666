//! Sensitive actions: what runs after a human approved it. An action
//! request carries a type, a target and a JSON payload whose SHA-256 over
//! its canonical form (keys sorted, no whitespace) is stored with it; the
//! executor runs only a payload whose hash still matches.

mod desk;
mod email;
mod untrusted;
mod webhook;

pub use desk::{Desk, Proposal, Requester};
pub use email::SendEmailExecutor;
pub use untrusted::UntrustedTaskExecutor;
pub use webhook::WebhookExecutor;

use crate::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;

/// What an executor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOutcome {
    /// Whether the action did what it was asked.
    pub succeeded: bool,
    /// A short description of the result (an HTTP status and body excerpt).
    pub result: String,
}

/// Runs one type of approved action.
pub trait ActionExecutor: Send + Sync {
    /// Checks a request before it is stored (target and payload shape), so
    /// a malformed request is refused at once, not after approval.
    fn validate(&self, target: &str, payload: &serde_json::Value) -> Result<(), String>;
    /// Runs the approved action.
    fn execute<'a>(&'a self, target: &'a str, payload: &'a serde_json::Value) -> BoxFuture<'a, ActionOutcome>;
}

/// The executors by action type.
#[derive(Clone, Default)]
pub struct ActionExecutors {
    by_type: HashMap<String, Arc<dyn ActionExecutor>>,
}

impl ActionExecutors {
    /// Adds an executor for `action_type`.
    pub fn with(mut self, action_type: &str, exec: Arc<dyn ActionExecutor>) -> Self {
        self.by_type.insert(action_type.to_string(), exec);
        self
    }

    /// The executor of a type.
    pub fn get(&self, action_type: &str) -> Option<&Arc<dyn ActionExecutor>> {
        self.by_type.get(action_type)
    }

    /// Known types, sorted.
    pub fn types(&self) -> Vec<String> {
        let mut t: Vec<String> = self.by_type.keys().cloned().collect();
        t.sort();
        t
    }
}

/// The canonical text of a payload: keys sorted (serde_json's map is
/// ordered), no whitespace.
pub fn canonical(payload: &serde_json::Value) -> String {
    payload.to_string()
}

/// The text an approval binds: the whole action — its type, its target
/// (webhook URL, recipients) and its payload — as canonical JSON
/// (`{"action_type":…,"payload":…,"target":…}`). Approvers are shown this
/// exact text; changing any part of the action changes its hash.
pub fn hashed_text(action_type: &str, target: &str, payload: &serde_json::Value) -> String {
    serde_json::json!({"action_type": action_type, "target": target, "payload": payload}).to_string()
}

/// SHA-256 (lower-case hex) of an action's [`hashed_text`].
pub fn action_hash(action_type: &str, target: &str, payload: &serde_json::Value) -> String {
    sha256_hex(&hashed_text(action_type, target, payload))
}

/// SHA-256 (lower-case hex) of a text.
pub fn sha256_hex(text: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_key_order_and_whitespace_but_not_values() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": {"y": 2, "x": [1, 2]}}"#).expect("json");
        let b: serde_json::Value = serde_json::from_str(r#"{"a":{"x":[1,2],"y":2},"b":1}"#).expect("json");
        let c: serde_json::Value = serde_json::from_str(r#"{"a":{"x":[2,1],"y":2},"b":1}"#).expect("json");
        assert_eq!(action_hash("webhook", "https://x.test", &a), action_hash("webhook", "https://x.test", &b));
        assert_ne!(action_hash("webhook", "https://x.test", &a), action_hash("webhook", "https://x.test", &c));
        assert_eq!(action_hash("webhook", "https://x.test", &a).len(), 64);
    }

    /// Issue 14, item 3: the hash covered the payload alone, so a stored
    /// request whose target (URL, recipients) or type changed still matched.
    #[test]
    fn the_hash_binds_the_type_and_the_target_too() {
        let p = serde_json::json!({"v": 1});
        let h = action_hash("webhook", "https://a.test/hook", &p);
        assert_ne!(h, action_hash("webhook", "https://evil.test/hook", &p));
        assert_ne!(h, action_hash("send_email", "https://a.test/hook", &p));
        assert_eq!(
            hashed_text("webhook", "https://a.test/hook", &p),
            r#"{"action_type":"webhook","payload":{"v":1},"target":"https://a.test/hook"}"#
        );
        assert_eq!(h, sha256_hex(&hashed_text("webhook", "https://a.test/hook", &p)));
    }
}
