//! `agent-runtime pki init|issue-client|show`: the local PKI under
//! `<data>/pki` (no daemon needed). `serve` creates the same set on its first
//! start when no CA is configured.

use super::print_json;
use crate::config::Config;
use crate::domain::Role;
use crate::pki::{self, InitOutcome, LEAF_DAYS, PkiDir};
use clap::Subcommand;
use std::process::ExitCode;

/// PKI subcommands.
#[derive(Debug, Subcommand)]
pub enum PkiCmd {
    /// Create the CA, the server certificate (localhost, 127.0.0.1, ::1 and
    /// every --san) and the local-admin client certificate, unless a CA
    /// exists; with --san on an existing PKI, reissue the server certificate
    /// (same CA) when a name is missing.
    Init {
        /// Another name for the server certificate, to serve off loopback: a
        /// DNS name or an IP address (repeatable; see also AGENT_RUNTIME_TLS_SANS).
        #[arg(long = "san", value_name = "NAME|IP")]
        sans: Vec<String>,
    },
    /// Issue a client certificate for an admin (CN = name, OU = role).
    IssueClient {
        /// The admin's name (1-64 of A-Z a-z 0-9 . _ -); also the file name.
        name: String,
        /// The role the certificate carries.
        #[arg(long, default_value = "admin")]
        role: String,
        /// Validity in days.
        #[arg(long, default_value_t = LEAF_DAYS)]
        days: i64,
    },
    /// Show the certificates: subject, issuer, validity, SHA-256.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `pki init [--san ...]`: every name is checked before anything is written.
fn init(dir: &PkiDir, sans: &[String]) -> anyhow::Result<()> {
    for name in sans {
        pki::valid_san(name).map_err(|e| anyhow::anyhow!("--san: {e}; nothing changed"))?;
    }
    let outcome = pki::init(dir)?;
    let added = pki::ensure_server_names(dir, sans)?;
    let names = pki::server_names(&dir.server_cert())?.join(", ");
    match outcome {
        InitOutcome::Created => {
            let (cert, key) = dir.client(pki::LOCAL_ADMIN);
            outln!("Created the PKI in {}:", dir.dir.display());
            outln!("  CA:      {}", dir.ca_cert().display());
            outln!("  server:  {} ({names})", dir.server_cert().display());
            outln!("  client:  {} + {} (local-admin, overlord)", cert.display(), key.display());
        }
        InitOutcome::Existing if added.is_empty() => outln!("A CA exists already in {}; nothing changed.", dir.dir.display()),
        InitOutcome::Existing => {
            outln!("A CA exists already in {}; reissued the server certificate with {}:", dir.dir.display(), added.join(", "));
            outln!("  server:  {} ({names})", dir.server_cert().display());
            outln!("Restart the daemon or send it SIGHUP to use it; clients keep trusting the same CA.");
        }
    }
    Ok(())
}

/// Runs a PKI subcommand against the configured data dir.
pub fn run(cmd: PkiCmd) -> anyhow::Result<ExitCode> {
    let loaded = Config::read(&crate::config::EnvSource::load()?);
    let dir = PkiDir::new(loaded.config.paths.pki_dir());
    match cmd {
        PkiCmd::Init { sans } => init(&dir, &sans)?,
        PkiCmd::IssueClient { name, role, days } => {
            let role =
                Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role {role:?} (overlord, admin, operator, member or viewer)"))?;
            let (cert, key) = pki::issue_client(&dir, &name, role, days)?;
            outln!("Issued a client certificate for {name} ({role}, {days} days):");
            outln!("  certificate: {}", cert.display());
            outln!("  key:         {} (keep it secret; 0600)", key.display());
            outln!("Use it with: agent-runtime --cert {} --key {} task list", cert.display(), key.display());
        }
        PkiCmd::Show { json } => {
            let mut files = vec![dir.ca_cert(), dir.server_cert()];
            if let Ok(entries) = std::fs::read_dir(dir.dir.join("clients")) {
                let mut clients: Vec<_> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "pem") && !p.to_string_lossy().ends_with("-key.pem"))
                    .collect();
                clients.sort();
                files.extend(clients);
            }
            let infos = files.iter().map(|f| pki::describe(f)).collect::<Result<Vec<_>, _>>()?;
            if json {
                print_json(&serde_json::to_value(&infos)?);
            } else {
                for i in infos {
                    outln!(
                        "{}\n  subject: {}\n  issuer:  {}\n  valid:   {} .. {}\n  sha256:  {}",
                        i.file,
                        i.subject,
                        i.issuer,
                        i.not_before,
                        i.not_after,
                        i.sha256
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
