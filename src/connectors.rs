//! Chat connectors: each turns its platform's events into
//! [`Arrival`](crate::gateway::Arrival)s for the gateway and outbox rows
//! into platform calls ([`Publisher`](crate::outbox::Publisher)), and
//! nothing else — no command parsing, no policy, no SQL (DESIGN invariants
//! 2–5). Every inbound batch is stored with the connector's cursor before it
//! is acknowledged to the platform.

pub mod discord;
pub mod email;
pub mod telegram;

use crate::BoxFuture;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The inbound side of a platform: runs until `stop`, reporting its state
/// on the heartbeat under [`Connector::name`]. Its outbound side is a
/// [`Publisher`](crate::outbox::Publisher) registered under the same name.
pub trait Connector: Send + 'static {
    /// The connector's name (in chat references, the inbox and health).
    fn name(&self) -> &'static str;
    /// Receives until `stop`: stores each batch through the gateway before
    /// acknowledging it, then hands it to processing.
    fn run(self: Box<Self>, stop: CancellationToken) -> BoxFuture<'static, ()>;
}

/// Exponential backoff for reconnecting: `base`, doubled per failure, at
/// most `max`; `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff from `base` up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, failures: 0 }
    }
    /// The wait before the next try (and counts a failure).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.base.saturating_mul(1 << self.failures.min(16)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        wait
    }
    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// `1.5 MiB`, for size limits in replies.
pub fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

/// Telegram counts message length in UTF-16 code units.
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Discord counts message length in characters.
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

const FENCE_CLOSE: &str = "\n```";

/// Splits `text` into parts of at most `max` (as `len` measures), at the
/// last paragraph break that fits, else the last line break, else the last
/// space, else anywhere (on a character boundary). Breaks outside code
/// blocks are preferred; a block that must be split is closed at the end of
/// one part and reopened (with its language tag) at the start of the next.
pub fn split_message(text: &str, max: usize, len: fn(&str) -> usize) -> Vec<String> {
    let text = text.trim_end();
    if len(text) <= max || max < 16 {
        return vec![text.to_string()];
    }
    let mut parts = Vec::new();
    let mut rest = text;
    let mut reopen: Option<String> = None;
    while !rest.is_empty() {
        let prefix = reopen.take().map(|fence| format!("{fence}\n")).unwrap_or_default();
        if len(&prefix) + len(rest) <= max {
            parts.push(format!("{prefix}{rest}"));
            break;
        }
        // Room for the prefix and, in case the part ends inside a block, its closing fence.
        let budget = max.saturating_sub(len(&prefix) + len(FENCE_CLOSE)).max(1);
        let window = &rest[..fit(rest, budget, len)];
        let cut = best_break(&prefix, window);
        let (chunk, tail) = rest.split_at(cut);
        let open = open_fence(&format!("{prefix}{chunk}"));
        let mut part = format!("{prefix}{}", chunk.trim_end());
        if let Some(fence) = open {
            part.push_str(FENCE_CLOSE);
            reopen = Some(fence);
        }
        parts.push(part);
        rest = tail.trim_start_matches(['\n', ' ']);
    }
    parts
}

/// The longest prefix of `s` (in bytes, on a char boundary) whose `len` is at most `budget`.
fn fit(s: &str, budget: usize, len: fn(&str) -> usize) -> usize {
    let mut end = 0;
    let mut used = 0;
    for (i, ch) in s.char_indices() {
        let mut buf = [0u8; 4];
        used += len(ch.encode_utf8(&mut buf));
        if used > budget {
            break;
        }
        end = i + ch.len_utf8();
    }
    end.max(s.chars().next().map_or(0, char::len_utf8))
}

/// The opening fence line (e.g. "```rust") if `s` ends inside a code block.
fn open_fence(s: &str) -> Option<String> {
    let mut open: Option<String> = None;
    for line in s.lines() {
        if line.trim_start().starts_with("```") {
            open = match open {
                Some(_) => None,
                None => Some(line.trim().to_string()),
            };
        }
    }
    open
}

/// Where to cut `window` (byte index): the best break that leaves at least a
/// quarter of the window in the part.
fn best_break(prefix: &str, window: &str) -> usize {
    let min = window.len() / 4;
    let outside = |i: usize| open_fence(&format!("{prefix}{}", &window[..i])).is_none();
    let breaks = |pat: &str| window.match_indices(pat).map(|(i, _)| i).filter(|&i| i >= min).collect::<Vec<_>>();
    let (paragraphs, lines, spaces) = (breaks("\n\n"), breaks("\n"), breaks(" "));
    paragraphs
        .iter()
        .rev()
        .find(|&&i| outside(i))
        .or_else(|| lines.iter().rev().find(|&&i| outside(i)))
        .or_else(|| paragraphs.last())
        .or_else(|| lines.last())
        .or_else(|| spaces.last())
        .copied()
        .filter(|&i| i > 0)
        .unwrap_or(window.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_message("hello\n", 4096, utf16_len), vec!["hello"]);
    }

    #[test]
    fn splits_at_paragraphs_within_the_limit_and_keeps_every_word() {
        let para = "word ".repeat(150); // 750 chars
        let text = [para.trim(); 12].join("\n\n");
        let parts = split_message(&text, 2000, char_len);
        assert!(parts.len() >= 5, "{}", parts.len());
        for p in &parts {
            assert!(char_len(p) <= 2000);
            assert!(!p.starts_with('\n') && !p.ends_with(' '));
        }
        let words = |s: &str| s.split_whitespace().count();
        assert_eq!(parts.iter().map(|p| words(p)).sum::<usize>(), words(&text));
    }

    #[test]
    fn code_blocks_are_closed_and_reopened_when_they_must_be_split() {
        let code: String = (0..400).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here is the code:\n\n```rust\n{code}```\n\nDone.");
        let parts = split_message(&text, 1000, char_len);
        assert!(parts.len() > 3);
        for p in &parts {
            assert!(char_len(p) <= 1000, "{}", char_len(p));
            assert_eq!(p.lines().filter(|l| l.trim_start().starts_with("```")).count() % 2, 0, "unbalanced fence in {p:?}");
        }
        assert!(parts[1].starts_with("```rust\n"));
        let lines: usize = parts.iter().map(|p| p.lines().filter(|l| l.starts_with("let x")).count()).sum();
        assert_eq!(lines, 400, "no code line lost or repeated");
    }

    #[test]
    fn prefers_a_break_outside_a_code_block() {
        let text = format!("{}\n\n```\n{}\n```\n{}", "a ".repeat(200), "b\n".repeat(150), "c ".repeat(100));
        let parts = split_message(&text, 700, char_len);
        assert!(parts[0].ends_with('a'), "first part should end before the block: {:?}", &parts[0][parts[0].len() - 10..]);
    }

    #[test]
    fn counts_utf16_units_and_never_cuts_inside_a_character() {
        let text = "🙂".repeat(3000); // 6000 UTF-16 units, no spaces
        let parts = split_message(&text, 4096, utf16_len);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| utf16_len(p) <= 4096));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<u64> = (0..5).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_wait().as_secs(), 1);
    }
}
