//! The agent's slice of the configuration: turn limits for chat messages and
//! for tasks (the Go runtime's names and defaults where it had them), and
//! how many earlier exchanges of a chat a chat turn is given.

use super::reader::Reader;
use crate::agent::AgentLimits;
use crate::agent::turn::Limits;

/// Reads `AGENT_RUNTIME_AGENT_*`.
pub(super) fn read(r: &mut Reader<'_>) -> AgentLimits {
    let input = r.int("AGENT_RUNTIME_AGENT_MAX_INPUT_BYTES", 12_000, 100, 1 << 20) as usize;
    let chat = Limits {
        max_steps: r.int("AGENT_RUNTIME_AGENT_MAX_LOOP_STEPS", 6, 1, 100) as u32,
        max_tool_calls: r.int("AGENT_RUNTIME_AGENT_MAX_TOOL_CALLS_PER_TURN", 6, 0, 1000) as u32,
        max_duration: r.seconds("AGENT_RUNTIME_AGENT_MAX_TURN_DURATION_SECONDS", 120, 1, 3600),
        max_input_bytes: input,
    };
    let task = Limits {
        max_steps: r.int("AGENT_RUNTIME_AGENT_AUTONOMOUS_MAX_LOOP_STEPS", 50, 1, 1000) as u32,
        max_tool_calls: r.int("AGENT_RUNTIME_AGENT_AUTONOMOUS_MAX_TOOL_CALLS_PER_TURN", 100, 0, 10_000) as u32,
        max_duration: r.seconds("AGENT_RUNTIME_AGENT_AUTONOMOUS_MAX_TURN_DURATION_SECONDS", 1200, 1, 86_400),
        max_input_bytes: input,
    };
    let history_turns = r.int("AGENT_RUNTIME_AGENT_HISTORY_TURNS", 6, 0, 50) as u32;
    let concurrent_chat_turns =
        r.int("AGENT_RUNTIME_AGENT_MAX_CONCURRENT_CHAT_TURNS", crate::agent::DEFAULT_CONCURRENT_CHAT_TURNS as u64, 1, 4096) as usize;
    AgentLimits { chat, task, history_turns, concurrent_chat_turns }
}
