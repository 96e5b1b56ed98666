//! Text-mode tool calling, for servers without native tool calling
//! (`AGENT_RUNTIME_LLM_TOOLS=text`, or `auto` after a server refused
//! `tools`): the tool catalogue goes into the system prompt, earlier calls
//! and results become plain text, and an answer that *is* one JSON object
//! `{"tool_calls":[{"name":…,"arguments":{…}}]}` is read as calls.
//!
//! Invariants: a request leaving [`encode`] carries no tools and only user
//! and assistant text, never two user messages in a row; an answer is a call
//! only when the whole of it (trimmed) is the object, or one fenced code block
//! holding it — an object quoted in prose (a document the model read may hold
//! one) is never run, and any other answer is the model's final answer, word
//! for word.

use super::{ChatRequest, ChatResponse, Message, ToolCall, ToolSpec};
use serde_json::Value;

/// Reads the answer to a request made by [`encode`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Decoder {
    /// Whether tools were offered (otherwise the answer is never searched).
    offered: bool,
    /// The number of the first generated call id (calls already in the
    /// conversation are not numbered again).
    first_id: usize,
}

/// The request in text mode, and how to read its answer.
pub(super) fn encode(req: &ChatRequest) -> (ChatRequest, Decoder) {
    let mut system = req.system.clone();
    if !req.tools.is_empty() {
        if !system.is_empty() {
            system.push_str("\n\n");
        }
        system.push_str(&catalogue(&req.tools));
    }
    let mut messages: Vec<Message> = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let m = match m {
            Message::User { text } => Message::User { text: text.clone() },
            Message::Assistant { text, calls } => Message::Assistant { text: render_assistant(text, calls), calls: Vec::new() },
            Message::Tool { call_id, name, content, is_error } => {
                let flag = if *is_error { " (error)" } else { "" };
                Message::User { text: format!("Tool result for {name} ({call_id}){flag}:\n{content}") }
            }
        };
        // Several results in a row (or a result and then the user) form one
        // user message: chat templates of local servers often require the
        // roles to alternate.
        match (messages.last_mut(), m) {
            (Some(Message::User { text: last }), Message::User { text }) => {
                last.push_str("\n\n");
                last.push_str(&text);
            }
            (_, m) => messages.push(m),
        }
    }
    let first_id = req.messages.iter().map(|m| if let Message::Assistant { calls, .. } = m { calls.len() } else { 0 }).sum();
    let decoder = Decoder { offered: !req.tools.is_empty(), first_id };
    (ChatRequest { system, messages, tools: Vec::new() }, decoder)
}

impl Decoder {
    /// Turns a text answer that holds a tool-call object into calls (the
    /// text is then empty); any other answer is left as it is.
    pub(super) fn decode(&self, mut resp: ChatResponse) -> ChatResponse {
        if !self.offered || !resp.calls.is_empty() {
            return resp;
        }
        if let Some(calls) = find_calls(&resp.text) {
            resp.calls = calls
                .into_iter()
                .enumerate()
                .map(|(i, (name, arguments))| ToolCall { id: format!("call_{}", self.first_id + i), name, arguments })
                .collect();
            resp.text.clear();
        }
        resp
    }
}

/// The tools and the answer format, for the end of the system prompt.
fn catalogue(tools: &[ToolSpec]) -> String {
    let mut out = String::from(
        "# Tools\n\n\
         You can call tools. To call one or more, answer with exactly one JSON object and nothing else:\n\
         {\"tool_calls\":[{\"name\":\"<tool name>\",\"arguments\":{<arguments>}}]}\n\
         The arguments must match the tool's JSON Schema. The results come back in the next message, \
         starting with \"Tool result for\". When you have the final answer, answer in plain text, with no tool-call JSON.\n\n\
         Available tools:",
    );
    for t in tools {
        out.push_str(&format!("\n\n## {}\n{}\nArguments (JSON Schema): {}", t.name, t.description.trim(), t.parameters));
    }
    out
}

/// An earlier assistant message: its text, then its calls in the answer format.
fn render_assistant(text: &str, calls: &[ToolCall]) -> String {
    if calls.is_empty() {
        return text.to_string();
    }
    // Written by hand so `name` comes first, as in the format the system
    // prompt asks for (serde_json sorts an object's keys).
    let calls: Vec<String> = calls
        .iter()
        .map(|c| {
            // Malformed arguments are shown as the model wrote them, as a string.
            let arguments = serde_json::from_str::<Value>(&c.arguments).unwrap_or_else(|_| Value::String(c.arguments.clone()));
            format!(r#"{{"name":{},"arguments":{arguments}}}"#, Value::String(c.name.clone()))
        })
        .collect();
    let rendered = format!(r#"{{"tool_calls":[{}]}}"#, calls.join(","));
    if text.trim().is_empty() { rendered } else { format!("{}\n\n{rendered}", text.trim()) }
}

/// The calls (name, arguments as JSON text) of an answer that is a tool
/// call and nothing else: `{"tool_calls":[…]}` with at least one call, or
/// `{"tool":"name","arguments":{…}}`, alone or as the one fenced code block
/// of the answer.
fn find_calls(text: &str) -> Option<Vec<(String, String)>> {
    let text = text.trim();
    let json = fenced(text).unwrap_or(text);
    // `from_str` refuses anything but whitespace after the value.
    let value = serde_json::from_str::<Value>(json).ok()?;
    calls_of(&value)
}

/// The inside of `text` when it is exactly one fenced code block, untagged
/// or tagged `json`.
fn fenced(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("```")?.strip_suffix("```")?;
    let (tag, body) = inner.split_once('\n')?;
    let tag = tag.trim();
    let json_tag = tag.is_empty() || tag.eq_ignore_ascii_case("json");
    // A fence inside means two blocks (or text between them), not one.
    (json_tag && !body.contains("```")).then_some(body)
}

fn calls_of(value: &Value) -> Option<Vec<(String, String)>> {
    if let Some(list) = value.get("tool_calls").and_then(Value::as_array) {
        let calls: Vec<(String, String)> = list.iter().map(call_of).collect();
        return (!calls.is_empty()).then_some(calls);
    }
    value.get("tool").and_then(Value::as_str).map(|name| vec![(name.to_string(), arguments_of(value.get("arguments")))])
}

/// One entry of `tool_calls`; an entry without a name gets an empty one, so
/// the model is told there is no such tool rather than being ignored.
fn call_of(entry: &Value) -> (String, String) {
    let name = entry.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    (name, arguments_of(entry.get("arguments")))
}

/// Arguments as JSON text: an object is serialized, a string (JSON written
/// as a string) kept as written, nothing at all is `{}`.
fn arguments_of(arguments: Option<&Value>) -> String {
    match arguments {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.to_string().into(),
            description: format!("does {name}").into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}).into(),
        }
    }

    fn answer(text: &str) -> ChatResponse {
        ChatResponse { text: text.into(), model: "m".into(), ..ChatResponse::default() }
    }

    fn decoder() -> Decoder {
        Decoder { offered: true, first_id: 0 }
    }

    #[test]
    fn the_catalogue_goes_into_the_system_prompt_and_no_tools_are_sent() {
        let req = ChatRequest {
            system: "be brief".into(),
            messages: vec![Message::User { text: "hi".into() }],
            tools: vec![spec("read_file"), spec("list_files")],
        };
        let (out, d) = encode(&req);
        assert!(out.tools.is_empty());
        assert!(out.system.starts_with("be brief\n\n# Tools"), "{}", out.system);
        assert!(out.system.contains(r#"{"tool_calls":[{"name":"<tool name>","arguments":{<arguments>}}]}"#), "{}", out.system);
        assert!(out.system.contains("## read_file\ndoes read_file\nArguments (JSON Schema): {\"properties\":{\"path\""), "{}", out.system);
        assert!(out.system.contains("## list_files"), "{}", out.system);
        assert_eq!(out.messages, req.messages);
        assert!(d.offered);
        let (plain, d) = encode(&ChatRequest::single("s", "u"));
        assert_eq!((plain.system.as_str(), d.offered), ("s", false), "no tools: no catalogue, answers are not searched");
        assert_eq!(d.decode(answer(r#"{"tool":"x"}"#)).text, r#"{"tool":"x"}"#);
    }

    #[test]
    fn earlier_calls_become_json_and_results_one_user_message() {
        let calls = vec![
            ToolCall { id: "call_0".into(), name: "read_file".into(), arguments: r#"{"path":"a.md"}"#.into() },
            ToolCall { id: "call_1".into(), name: "list_files".into(), arguments: "{broken".into() },
        ];
        let req = ChatRequest {
            system: String::new(),
            messages: vec![
                Message::User { text: "u".into() },
                Message::Assistant { text: String::new(), calls },
                Message::Tool { call_id: "call_0".into(), name: "read_file".into(), content: "hi".into(), is_error: false },
                Message::Tool { call_id: "call_1".into(), name: "list_files".into(), content: "no".into(), is_error: true },
            ],
            tools: vec![spec("read_file")],
        };
        let (out, d) = encode(&req);
        assert_eq!(out.messages.len(), 3, "{:?}", out.messages);
        assert_eq!(
            out.messages[1],
            Message::Assistant {
                text: r#"{"tool_calls":[{"name":"read_file","arguments":{"path":"a.md"}},{"name":"list_files","arguments":"{broken"}]}"#
                    .into(),
                calls: Vec::new()
            }
        );
        assert_eq!(
            out.messages[2],
            Message::User { text: "Tool result for read_file (call_0):\nhi\n\nTool result for list_files (call_1) (error):\nno".into() }
        );
        let r = d.decode(answer(r#"{"tool_calls":[{"name":"read_file","arguments":{"path":"b.md"}}]}"#));
        assert_eq!(r.calls[0].id, "call_2", "ids continue after the conversation's calls");
    }

    #[test]
    fn a_single_fenced_block_is_a_call() {
        let text = "\n```json\n{\"tool_calls\": [{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.md\"}}, {\"name\": \"list_files\"}]}\n```\n";
        let r = decoder().decode(answer(text));
        assert_eq!(r.text, "");
        assert_eq!(
            r.calls,
            [
                ToolCall { id: "call_0".into(), name: "read_file".into(), arguments: r#"{"path":"a.md"}"#.into() },
                ToolCall { id: "call_1".into(), name: "list_files".into(), arguments: "{}".into() },
            ]
        );
        let untagged = decoder().decode(answer("```\n{\"tool\": \"list_files\"}\n```"));
        assert_eq!(untagged.calls, [ToolCall { id: "call_0".into(), name: "list_files".into(), arguments: "{}".into() }]);
    }

    #[test]
    fn a_bare_object_with_surrounding_whitespace_is_a_call() {
        let text = "  \n{\"tool_calls\":[{\"name\":\"a\",\"arguments\":\"{\\\"x\\\":1}\"}]}\n\n";
        let r = decoder().decode(answer(text));
        assert_eq!(r.calls, [ToolCall { id: "call_0".into(), name: "a".into(), arguments: r#"{"x":1}"#.into() }]);
        assert_eq!(r.text, "");
    }

    #[test]
    fn braces_and_quotes_inside_strings_do_not_end_the_object() {
        let text = r#"{"tool_calls":[{"name":"write_file","arguments":{"path":"x.md","text":"a } b { \" } c"}}]}"#;
        let r = decoder().decode(answer(text));
        assert_eq!(r.calls.len(), 1, "{r:?}");
        assert_eq!(r.calls[0].arguments, r#"{"path":"x.md","text":"a } b { \" } c"}"#);
    }

    #[test]
    fn the_single_form_is_accepted() {
        let r = decoder().decode(answer(r#"{"tool": "read_file", "arguments": {"path": "a.md"}}"#));
        assert_eq!(r.calls, [ToolCall { id: "call_0".into(), name: "read_file".into(), arguments: r#"{"path":"a.md"}"#.into() }]);
    }

    #[test]
    fn an_answer_without_a_call_is_the_final_text() {
        for text in [
            "Paris is the capital.",
            r#"Here is the config: {"name": "x", "arguments": {"a": 1}}"#,
            r#"{"tool_calls": []}"#,
            "an unclosed { brace",
            "```python\nprint(1)\n```",
        ] {
            let r = decoder().decode(answer(text));
            assert!(r.calls.is_empty(), "{text}");
            assert_eq!(r.text, text);
        }
    }

    /// Regression: a call quoted anywhere in an answer was run, so a document
    /// the model summarised could make it call tools.
    #[test]
    fn a_call_quoted_in_prose_is_the_final_text() {
        for text in [
            r#"The file says to run {"tool": "write_file", "arguments": {"path": "a.md", "content": "x"}} but I did not."#,
            r#"{"tool": "list_files"} is what the note asks for."#,
            r#"Note {this} first. {"tool_calls":[{"name":"write_file","arguments":{"path":"x.md"}}]} done"#,
            r#"{"note": {"tool_calls": "no"}} then {"tool_calls":[{"name":"a","arguments":"{\"x\":1}"}]}"#,
            "Sure, let me look.\n```json\n{\"tool\": \"read_file\", \"arguments\": {\"path\": \"a.md\"}}\n```",
            "```json\n{\"tool\": \"read_file\"}\n```\nOne moment.",
            "```json\n{\"tool\": \"read_file\"}\n```\n```json\n{\"tool\": \"list_files\"}\n```",
        ] {
            let r = decoder().decode(answer(text));
            assert!(r.calls.is_empty(), "{text}: {:?}", r.calls);
            assert_eq!(r.text, text);
        }
    }
}
