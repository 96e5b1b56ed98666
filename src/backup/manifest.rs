//! The manifest: the archive's last entry, `manifest.json`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest format this binary writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// What an archive holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `agent-runtime-backup`: tells our archives from other tarballs.
    pub kind: String,
    /// [`MANIFEST_FORMAT`] when written.
    pub format: u32,
    /// The version of the agent-runtime that wrote it.
    pub tool_version: String,
    /// When the database snapshot was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The same instant in Unix milliseconds.
    pub created_at_ms: i64,
    /// The database's schema version (`PRAGMA user_version`).
    pub schema_version: i64,
    /// Whether the PKI and `.env` are in the archive.
    pub secrets_included: bool,
    /// How the snapshot was taken (`backup-api` or `vacuum-into`).
    pub method: String,
    /// How long the snapshot took, in milliseconds.
    pub snapshot_ms: u64,
    /// Rows per table in the archived database.
    pub rows: BTreeMap<String, i64>,
    /// Every other entry of the archive, in archive order.
    pub files: Vec<FileEntry>,
}

/// One archived file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Its path in the archive (`db/meta.sqlite`, `workspaces/…`, `secrets/pki/…`, `secrets/env`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

/// The `kind` of our manifests.
pub const KIND: &str = "agent-runtime-backup";

impl Manifest {
    /// A manifest for a snapshot started at `now` (Unix ms), before any file is added.
    pub fn new(now: i64, schema_version: i64, rows: BTreeMap<String, i64>, secrets_included: bool, method: &str, snapshot_ms: u64) -> Self {
        Self {
            kind: KIND.into(),
            format: MANIFEST_FORMAT,
            tool_version: crate::VERSION.into(),
            created_at: crate::clock::rfc3339(now),
            created_at_ms: now,
            schema_version,
            secrets_included,
            method: method.into(),
            snapshot_ms,
            rows,
            files: Vec::new(),
        }
    }

    /// Total bytes of the archived files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
