//! Every endpoint of the served OpenAPI document against the real router:
//! each documented method is routed (never the 404/405 fallbacks), every
//! other method gets 405, and bad input (malformed JSON, an empty body,
//! wrong types, unknown ids) gets a JSON 4xx — never a 500.

use crate::support::daemon::Daemon;
use serde_json::{Value, json};

const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

async fn send(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let url = format!("{}{path}", d.base);
    let mut req = d.http.request(method.to_uppercase().parse().expect("method"), url);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = req.send().await.expect("send");
    let status = r.status().as_u16();
    let is_stream = r.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if is_stream {
        return (status, Value::Null);
    }
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn assert_error(what: &str, status: u16, body: &Value) {
    assert!(status < 500, "{what}: {status} {body}");
    if status >= 400 {
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: a JSON error body, got {status} {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_endpoint_is_routed_and_refuses_bad_input_without_a_500() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let (s, doc) = d.get("/api/v1/openapi.json").await;
    assert_eq!(s, 200, "{doc}");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    let operations = paths.values().map(|item| METHODS.iter().filter(|m| item.get(**m).is_some()).count()).sum::<usize>();
    assert!(paths.len() >= 36 && operations >= 40, "{} paths, {operations} operations", paths.len());
    let mut checked = 0;
    for (template, item) in paths {
        let path = template.replace("{id}", "no-such-id");
        let documented: Vec<&str> = METHODS.iter().copied().filter(|m| item.get(*m).is_some()).collect();
        assert!(!documented.is_empty(), "{template} documents no method");
        for m in METHODS {
            let what = format!("{} {template}", m.to_uppercase());
            let Some(op) = item.get(m) else {
                let (s, b) = send(&d, m, &path, None).await;
                assert_eq!(s, 405, "{what} is not documented, so it must be 405: {b}");
                assert_eq!(b["error"], "method not allowed", "{what}");
                continue;
            };
            assert!(op["x-min-role"].is_string(), "{what} has no x-min-role");
            // The method is routed: neither fallback answers it.
            let (s, b) = send(&d, m, &path, if m == "get" { None } else { Some("{}") }).await;
            assert_error(&what, s, &b);
            assert_ne!(s, 405, "{what} is documented but not routed: {b}");
            if s == 404 {
                assert_ne!(b["error"], "no such endpoint", "{what} is documented but not routed");
            }
            if template.contains("{id}") && m == "get" {
                assert_eq!(s, 404, "{what} with an unknown id: {b}");
            }
            if op.get("requestBody").is_some() {
                for bad in ["{not json", "[1, 2]", "\"text\"", "{\"id\": {\"nested\": true}, \"text\": 5, \"prompt\": [], \"token\": 1}"] {
                    let (s, b) = send(&d, m, &path, Some(bad)).await;
                    assert_error(&format!("{what} with {bad}"), s, &b);
                    assert!(s == 400 || s == 404 || s == 422, "{what} with {bad}: {s} {b}");
                }
                let huge = format!("{{\"text\": \"{}\"}}", "x".repeat(2 << 20));
                let (s, b) = send(&d, m, &path, Some(&huge)).await;
                assert_eq!(s, 413, "{what} with a 2 MiB body: {b}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, operations, "every documented operation was exercised");
    let (s, b) = send(&d, "get", "/api/v1/nothing-here", None).await;
    assert_eq!((s, b), (404, json!({"error": "no such endpoint"})));
    let (s, b) = send(&d, "get", "/api/v1/tasks?limit=banana", None).await;
    assert!(s == 400 && b["error"].as_str().expect("error").contains("limit"), "{b}");
    assert!(!d.log().contains("panicked"), "no handler panicked");
}
