//! Where configuration values come from: the process environment, then an
//! optional `.env` file (the environment wins), never mutating either.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The process environment.
    Env,
    /// The `.env` file.
    DotEnv,
    /// Not set; the default applies.
    Default,
}

impl Origin {
    /// A short label for `config check`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Env => "env",
            Self::DotEnv => ".env",
            Self::Default => "default",
        }
    }
}

/// A snapshot of every `AGENT_RUNTIME_*` value with its origin.
#[derive(Debug, Clone, Default)]
pub struct EnvSource {
    vars: BTreeMap<String, (String, Origin)>,
    /// The `.env` file that was read, if any.
    pub dotenv_path: Option<PathBuf>,
}

/// A `.env` file that exists but cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {message}")]
pub struct DotEnvError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong (line and reason).
    pub message: String,
}

/// Name of the variable that points at a `.env` file other than `./.env`.
pub const ENV_FILE_VAR: &str = "AGENT_RUNTIME_ENV_FILE";

impl EnvSource {
    /// Reads the process environment and the `.env` file: `$AGENT_RUNTIME_ENV_FILE`
    /// if set (it must exist), else `./.env` if it exists.
    pub fn load() -> Result<Self, DotEnvError> {
        let process: Vec<(String, String)> =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
        let explicit = process.iter().find(|(k, _)| k == ENV_FILE_VAR).map(|(_, v)| PathBuf::from(v));
        let mut src = Self::from_pairs(process);
        match explicit {
            Some(path) => src.merge_dotenv(&path)?,
            None if Path::new(".env").is_file() => src.merge_dotenv(Path::new(".env"))?,
            None => {}
        }
        Ok(src)
    }

    /// A source holding exactly these variables (tests, and the process snapshot).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with("AGENT_RUNTIME_") || k == "RUST_LOG")
            .map(|(k, v)| (k, (v, Origin::Env)))
            .collect();
        Self { vars, dotenv_path: None }
    }

    /// Adds the values of a `.env` file that the environment does not already set.
    pub fn merge_dotenv(&mut self, path: &Path) -> Result<(), DotEnvError> {
        let err = |message: String| DotEnvError { path: path.to_path_buf(), message };
        let iter = dotenvy::from_path_iter(path).map_err(|e| err(e.to_string()))?;
        for item in iter {
            let (k, v) = item.map_err(|e| err(e.to_string()))?;
            if k.starts_with("AGENT_RUNTIME_") {
                self.vars.entry(k).or_insert((v, Origin::DotEnv));
            }
        }
        self.dotenv_path = Some(path.to_path_buf());
        Ok(())
    }

    /// The raw value and origin of a variable, if set.
    pub fn get(&self, name: &str) -> Option<(&str, Origin)> {
        self.vars.get(name).map(|(v, o)| (v.as_str(), *o))
    }

    /// Every variable name that is set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }
}
