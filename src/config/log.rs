//! How the daemon logs: `AGENT_RUNTIME_LOG` (the filter) and
//! `AGENT_RUNTIME_LOG_FORMAT` (text for people, JSON lines for log shippers).

use super::reader::Reader;

/// The log output format (`AGENT_RUNTIME_LOG_FORMAT`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `text` (default): one human-readable line per event.
    Text,
    /// `json`: one JSON object per line (`timestamp`, `level`, `fields`,
    /// `spans`), for journald/Loki/Vector-style shippers.
    Json,
}

impl LogFormat {
    /// Parses the variable's value (case-insensitive).
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("must be text or json".to_string()),
        }
    }

    /// The value as written in the variable.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

// `config check` shows values through `Debug`: as the operator writes them.
impl std::fmt::Debug for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `AGENT_RUNTIME_LOG` (unset: `RUST_LOG`, else `info`): a tracing
    /// filter such as `info,agent_runtime=debug`.
    pub filter: Option<String>,
    /// `AGENT_RUNTIME_LOG_FORMAT` (default `text`): `text` or `json`.
    pub format: LogFormat,
}

pub(super) fn read(r: &mut Reader<'_>) -> LogConfig {
    LogConfig { filter: r.opt_string("AGENT_RUNTIME_LOG"), format: r.parsed("AGENT_RUNTIME_LOG_FORMAT", LogFormat::Text, LogFormat::parse) }
}
