//! Typed reading of variables: every value is recorded for `config check`
//! (secrets redacted) and every problem is collected, not just the first.

use super::source::{EnvSource, Origin};
use std::fmt;
use std::time::Duration;

/// A secret value: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How serious a configuration problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The runtime refuses to start.
    Error,
    /// The runtime starts, but something probably is not what was meant.
    Warning,
}

/// One problem with one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The variable at fault.
    pub variable: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.variable, self.message)
    }
}

/// One effective value, as `config check` prints it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Variable name.
    pub name: &'static str,
    /// The value (redacted for secrets).
    pub shown: String,
    /// Where it came from.
    pub origin: Origin,
}

/// Reads typed values from an [`EnvSource`], collecting entries and problems.
pub struct Reader<'a> {
    src: &'a EnvSource,
    /// Every value read, in order.
    pub entries: Vec<Entry>,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    /// A reader over `src`.
    pub fn new(src: &'a EnvSource) -> Self {
        Self { src, entries: Vec::new(), problems: Vec::new() }
    }

    fn raw(&self, name: &str) -> Option<(String, Origin)> {
        self.src.get(name).map(|(v, o)| (v.trim().to_string(), o)).filter(|(v, _)| !v.is_empty())
    }

    /// Records a value once: a variable two slices read (`AGENT_RUNTIME_EMAIL_CA_FILE`) is one entry.
    fn record(&mut self, name: &'static str, shown: String, origin: Origin) {
        if self.entries.iter().any(|e| e.name == name) {
            return;
        }
        self.entries.push(Entry { name, shown, origin });
    }

    /// Records a problem.
    pub fn problem(&mut self, severity: Severity, variable: &str, message: impl Into<String>) {
        self.problems.push(Problem { severity, variable: variable.to_string(), message: message.into() });
    }

    /// A string; empty or unset → `default`.
    pub fn string(&mut self, name: &'static str, default: &str) -> String {
        let (value, origin) = self.raw(name).unwrap_or((default.to_string(), Origin::Default));
        self.record(name, format!("{value:?}"), origin);
        value
    }

    /// An optional string; empty or unset → `None`.
    pub fn opt_string(&mut self, name: &'static str) -> Option<String> {
        let got = self.raw(name);
        let (shown, origin) = match &got {
            Some((v, o)) => (format!("{v:?}"), *o),
            None => ("(unset)".to_string(), Origin::Default),
        };
        self.record(name, shown, origin);
        got.map(|(v, _)| v)
    }

    /// A secret; shown only as set/unset. Not trimmed (passwords may have spaces).
    pub fn secret(&mut self, name: &'static str) -> Option<Secret> {
        let got = self.src.get(name).filter(|(v, _)| !v.is_empty());
        let (shown, origin) = match got {
            Some((_, o)) => ("(set, redacted)".to_string(), o),
            None => ("(unset)".to_string(), Origin::Default),
        };
        self.record(name, shown, origin);
        got.map(|(v, _)| Secret::new(v))
    }

    /// A value parsed by `parse`; a parse error is recorded and `default` used.
    /// A set value is shown as typed (`openai`, `member`); the default
    /// through `Debug` (`None` as `(unset)`).
    pub fn parsed<T: fmt::Debug>(&mut self, name: &'static str, default: T, parse: impl FnOnce(&str) -> Result<T, String>) -> T {
        let debug = format!("{default:?}");
        let inner = debug.strip_prefix("Some(").and_then(|d| d.strip_suffix(')')).unwrap_or(&debug);
        let shown = match inner {
            "None" => "(unset)".to_string(),
            // A text default as the operator would write it: no quotes.
            s if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') => s[1..s.len() - 1].to_string(),
            s => s.to_string(),
        };
        self.parsed_as(name, default, &shown, parse)
    }

    /// Like [`Reader::parsed`], with the default shown as `default_shown`
    /// (for a type whose `Debug` is not how the operator writes it).
    pub fn parsed_as<T>(
        &mut self,
        name: &'static str,
        default: T,
        default_shown: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.raw(name) {
            None => {
                self.record(name, default_shown.to_string(), Origin::Default);
                default
            }
            Some((raw, origin)) => match parse(&raw) {
                Ok(v) => {
                    self.record(name, raw, origin);
                    v
                }
                Err(msg) => {
                    self.record(name, format!("{raw:?} (invalid)"), origin);
                    self.problem(Severity::Error, name, format!("{msg} (got {raw:?})"));
                    default
                }
            },
        }
    }

    /// An integer in `min..=max`.
    pub fn int(&mut self, name: &'static str, default: u64, min: u64, max: u64) -> u64 {
        self.parsed(name, default, |raw| match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            Ok(_) => Err(format!("must be between {min} and {max}")),
            Err(_) => Err("must be a whole number".to_string()),
        })
    }

    /// A duration in whole seconds, in `min..=max`.
    pub fn seconds(&mut self, name: &'static str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.int(name, default, min, max))
    }

    /// A boolean: `1/true/yes/on` or `0/false/no/off`.
    pub fn bool(&mut self, name: &'static str, default: bool) -> bool {
        self.parsed(name, default, |raw| match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err("must be one of 1/true/yes/on or 0/false/no/off".to_string()),
        })
    }
}
