//! `agent-runtime config check`: the effective configuration, secrets
//! redacted, then every problem; exit code 2 when there are errors.

use super::EXIT_CONFIG;
use crate::config::{Config, EnvSource, Severity};
use std::process::ExitCode;

pub(super) fn run() -> anyhow::Result<ExitCode> {
    let src = match EnvSource::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let loaded = Config::read(&src);
    match &src.dotenv_path {
        Some(p) => outln!("# values from the environment and {}", p.display()),
        None => outln!("# values from the environment (no .env file)"),
    }
    let width = loaded.entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in &loaded.entries {
        outln!("{:width$} = {}  [{}]", e.name, e.shown, e.origin.label());
    }
    let errors = loaded.problems.iter().filter(|p| p.severity == Severity::Error).count();
    let warnings = loaded.problems.len() - errors;
    if !loaded.problems.is_empty() {
        outln!();
        for p in &loaded.problems {
            outln!("{p}");
        }
    }
    outln!("\n{errors} error(s), {warnings} warning(s)");
    Ok(if errors > 0 { ExitCode::from(EXIT_CONFIG) } else { ExitCode::SUCCESS })
}
