//! `agent-runtime backup <path>`, `backup --verify <path>` and
//! `agent-runtime restore <path>`: no daemon needed, and `backup` works while
//! one runs (docs/backup.md).

use super::EXIT_CONFIG;
use crate::backup::{self, BackupError, Manifest, Options, Sources, Target};
use crate::config::{Config, EnvSource};
use std::path::PathBuf;
use std::process::ExitCode;

/// `backup` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "The archive holds a consistent snapshot of the database (taken while `serve` runs; it is not \
stopped or locked), the workspaces tree and a manifest with a SHA-256 per file. It is written under a temporary \
name, created 0600, and renamed into place when complete. The PKI's private keys and .env are left out unless \
--include-secrets is given. Examples:\n  agent-runtime backup /backups/agent-$(date +%F).tar.gz\n  agent-runtime \
backup --verify /backups/agent-2026-01-31.tar.gz")]
pub struct BackupArgs {
    /// The archive to write (a .tar.gz), or with --verify the archive to check.
    pub path: PathBuf,
    /// Check an existing archive instead of writing one: the manifest, every checksum, the database's integrity,
    /// schema version and row counts. Exits 1 if anything is wrong.
    #[arg(long, conflicts_with_all = ["include_secrets", "force"])]
    pub verify: bool,
    /// Also archive the PKI (<data>/pki: the CA and client private keys) and the .env file. Keep such an archive
    /// as safe as the keys themselves.
    #[arg(long)]
    pub include_secrets: bool,
    /// Replace the file at <PATH> if there is one.
    #[arg(long)]
    pub force: bool,
    /// Print the manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `restore` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "The archive is checked in full (as `backup --verify` does) before anything is written. \
Refused while a `serve` runs on the data directory. Without --force the data directory must be empty; with \
--force, what is there is moved (not deleted) to a new sibling directory <data>.pre-restore-<time>-<pid>, \
printed at the end. A restored .env goes to <data>/.env.")]
pub struct RestoreArgs {
    /// The archive to restore.
    pub path: PathBuf,
    /// The data directory to restore into, in the default layout (database in <dir>/agent-runtime/meta.sqlite,
    /// workspaces in <dir>/workspaces) [default: the configured AGENT_RUNTIME_DATA_DIR, DB_PATH and WORKSPACE_ROOT].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Restore into a non-empty data directory, moving what is there aside.
    #[arg(long)]
    pub force: bool,
}

/// Runs `backup`.
pub async fn run_backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    if args.verify {
        let path = args.path.clone();
        let outcome = tokio::task::spawn_blocking(move || backup::verify(&path)).await?;
        return Ok(match outcome {
            Ok(m) => {
                report(&m, args.json, &format!("{} is a good backup", args.path.display()));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        });
    }
    let env = EnvSource::load()?;
    let config = Config::read(&env).config;
    let sources = Sources {
        db: config.paths.db_path.clone(),
        workspaces: config.paths.workspace_root.clone(),
        pki: config.paths.pki_dir(),
        env_file: env.dotenv_path.clone(),
    };
    let opts = Options { include_secrets: args.include_secrets, force: args.force, ..Options::default() };
    let out = args.path.clone();
    let outcome = tokio::task::spawn_blocking(move || backup::create(&sources, &out, &opts)).await?;
    Ok(match outcome {
        Ok(m) => {
            report(&m, args.json, &format!("wrote {}", args.path.display()));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    })
}

/// Runs `restore`.
pub async fn run_restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let target = match &args.data_dir {
        Some(dir) => Target::under(dir),
        None => {
            let paths = Config::read(&EnvSource::load()?).config.paths;
            Target { data_dir: paths.data_dir, db_path: paths.db_path, workspace_root: paths.workspace_root }
        }
    };
    let (path, force, to) = (args.path.clone(), args.force, target.clone());
    let outcome = tokio::task::spawn_blocking(move || backup::restore(&path, &to, force)).await?;
    Ok(match outcome {
        Ok(done) => {
            report(&done.manifest, false, &format!("restored {} into {}", args.path.display(), target.data_dir.display()));
            if let Some(aside) = done.moved_aside {
                outln!("what was there before is in {}", aside.display());
            }
            if let Some(env) = done.env_file {
                outln!("the archived .env is at {} (point AGENT_RUNTIME_ENV_FILE at it, or move it)", env.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    })
}

fn report(m: &Manifest, json: bool, headline: &str) {
    if json {
        super::print_json(&serde_json::to_value(m).unwrap_or_default());
        return;
    }
    outln!("{headline}");
    outln!("  created:  {} by agent-runtime {} ({}, {} ms)", m.created_at, m.tool_version, m.method, m.snapshot_ms);
    outln!("  schema:   version {}", m.schema_version);
    let busiest: Vec<String> = ["tasks", "task_events", "inbox", "outbox", "audit_events"]
        .iter()
        .filter_map(|t| m.rows.get(*t).map(|n| format!("{t} {n}")))
        .collect();
    outln!("  rows:     {}", busiest.join(", "));
    outln!("  files:    {} ({} bytes uncompressed)", m.files.len(), m.total_bytes());
    outln!("  secrets:  {}", if m.secrets_included { "included (PKI and .env)" } else { "not included" });
}

fn fail(e: &BackupError) -> ExitCode {
    eprintln!("agent-runtime: {e}");
    match e {
        BackupError::DaemonRunning(_) => ExitCode::from(EXIT_CONFIG),
        _ => ExitCode::FAILURE,
    }
}
