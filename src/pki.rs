//! The admin API's PKI: a local CA, a server certificate for `localhost`,
//! `127.0.0.1` and `::1`, and client certificates whose subject CN names the
//! admin and whose OU carries the role. `serve` creates the set on first
//! start when no CA is configured (`<data>/pki/`, keys 0600); `agent-runtime
//! pki init|issue-client|show` manages it explicitly. Also: reading PEM files
//! into a rustls server or client configuration with errors that name the
//! file, and a client's identity from its certificate.

mod names;
pub use names::{DEFAULT_NAMES, covers, ensure_server_names, server_names, valid_san};

use crate::domain::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a PKI step failed; each message names the file or the step.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file held no usable PEM certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// Certificate generation failed.
    #[error("generating a certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A request that cannot be served (bad name, missing CA key).
    #[error("{0}")]
    Invalid(String),
}

/// Default lifetime of the CA.
const CA_DAYS: i64 = 3650;
/// Default lifetime of server and client certificates.
pub const LEAF_DAYS: i64 = 825;
/// The CN of the client certificate `serve` creates for the local operator.
pub const LOCAL_ADMIN: &str = "local-admin";

/// The files of a PKI directory (`<data>/pki` by default).
#[derive(Debug, Clone)]
pub struct PkiDir {
    /// The directory.
    pub dir: PathBuf,
}

impl PkiDir {
    /// The PKI under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
    /// `ca.pem`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// `ca-key.pem`.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }
    /// `server.pem`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    /// `server-key.pem`.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }
    /// `clients/<name>.pem` and `clients/<name>-key.pem`.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.dir.join("clients");
        (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")))
    }
}

/// What `init` found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Everything was there already.
    Existing,
    /// A new CA, server and local-admin client certificate were written.
    Created,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_path_buf(), source }
}

/// Writes a file readable only by its owner (0600), via a temp file and a
/// rename so a crash never leaves half a key.
fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn validity(p: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(days);
}

/// A name usable as a CN and a file name: 1-64 of `[A-Za-z0-9._-]`.
pub fn valid_client_name(name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PkiError::Invalid(format!("client name {name:?} must be 1-64 of A-Z a-z 0-9 . _ - (not starting with .)")))
    }
}

/// A new CA (self-signed, 10 years).
fn new_ca() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "agent-runtime local CA");
    dn.push(DnType::OrganizationName, "agent-runtime");
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut p, CA_DAYS);
    let cert = p.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issuer(pki: &PkiDir) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let (ca_path, key_path) = (pki.ca_cert(), pki.ca_key());
    let ca = std::fs::read_to_string(&ca_path).map_err(io(&ca_path))?;
    let key = std::fs::read_to_string(&key_path).map_err(|e| {
        PkiError::Invalid(format!(
            "{}: {e} (issuing needs the CA's key, which only a PKI made by `pki init` or `serve` has)",
            key_path.display()
        ))
    })?;
    let key = KeyPair::from_pem(&key).map_err(|e| PkiError::Pem { path: key_path.clone(), what: e.to_string() })?;
    Issuer::from_ca_cert_pem(&ca, key).map_err(|e| PkiError::Pem { path: ca_path, what: e.to_string() })
}

/// A leaf signed by the CA: a server certificate for `names`, or a client
/// certificate for `client` (CN) with its role as OU.
fn leaf(issuer: &Issuer<'_, KeyPair>, names: &[&str], client: Option<(&str, Role)>, days: i64) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let mut dn = DistinguishedName::new();
    match client {
        Some((cn, role)) => {
            dn.push(DnType::CommonName, cn);
            dn.push(DnType::OrganizationalUnitName, role.as_str());
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        None => {
            dn.push(DnType::CommonName, names.first().copied().unwrap_or("localhost"));
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
    }
    dn.push(DnType::OrganizationName, "agent-runtime");
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, days);
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Creates the CA, the server certificate and the local-admin client
/// certificate (role overlord) under `pki`, unless a CA is there already.
pub fn init(pki: &PkiDir) -> Result<InitOutcome, PkiError> {
    if pki.ca_cert().exists() {
        return Ok(InitOutcome::Existing);
    }
    let (ca_pem, ca_key) = new_ca()?;
    // The key first: a CA certificate without its key would block issuing.
    write_private(&pki.ca_key(), &ca_key)?;
    write_private(&pki.ca_cert(), &ca_pem)?;
    let issuer = issuer(pki)?;
    let (server, server_key) = leaf(&issuer, &DEFAULT_NAMES, None, LEAF_DAYS)?;
    write_private(&pki.server_key(), &server_key)?;
    write_private(&pki.server_cert(), &server)?;
    issue_client(pki, LOCAL_ADMIN, Role::Overlord, LEAF_DAYS)?;
    Ok(InitOutcome::Created)
}

/// Issues a client certificate `clients/<name>.pem` (+ key) with `role`.
pub fn issue_client(pki: &PkiDir, name: &str, role: Role, days: i64) -> Result<(PathBuf, PathBuf), PkiError> {
    valid_client_name(name)?;
    if !(1..=CA_DAYS).contains(&days) {
        return Err(PkiError::Invalid(format!("days must be between 1 and {CA_DAYS}")));
    }
    let issuer = issuer(pki)?;
    let (cert, key) = leaf(&issuer, &[], Some((name, role)), days)?;
    let (cert_path, key_path) = pki.client(name);
    write_private(&key_path, &key)?;
    write_private(&cert_path, &cert)?;
    Ok((cert_path, key_path))
}

fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(io(path))
}

/// Every certificate in a PEM file (at least one).
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem { path: path.to_path_buf(), what: format!("not a PEM certificate file: {e}") })?;
    if certs.is_empty() {
        return Err(PkiError::Pem { path: path.to_path_buf(), what: "no certificate in the file".into() });
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| PkiError::Pem { path: path.to_path_buf(), what: format!("no usable private key: {e}") })
}

/// The server side: present `cert`/`key`, require a client certificate
/// signed by a CA in `ca`.
pub fn server_config(ca: &Path, cert: &Path, key_file: &Path) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| PkiError::Pem { path: ca.to_path_buf(), what: format!("not a usable CA certificate: {e}") })?;
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots)).build().map_err(|e| PkiError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert)?, key(key_file)?)
        .map_err(|e| PkiError::Tls(format!("{} / {}: {e}", cert.display(), key_file.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Who a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Subject CN.
    pub name: String,
    /// The role: the certificate's one OU.
    pub role: Role,
}

/// Why a verified client certificate names no usable caller. Each refuses
/// every request on the connection (→ 403 with this text) and is logged with
/// the certificate's CN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate cannot be parsed.
    #[error("the client certificate cannot be parsed: {0}")]
    Unparsable(String),
    /// The subject has no CN.
    #[error("the client certificate has no subject CN, which names the caller")]
    NoName,
    /// The subject has no OU.
    #[error(
        "the client certificate {cn:?} carries no role: its subject needs exactly one OU naming a role (overlord, admin, operator, member or viewer); \
         issue one with `agent-runtime pki issue-client NAME --role ROLE`"
    )]
    NoRole {
        /// Subject CN.
        cn: String,
    },
    /// An OU that is not a role.
    #[error(
        "the client certificate {cn:?} carries OU {ou:?}, which is not a role (overlord, admin, operator, member or viewer); its subject needs exactly one OU naming a role"
    )]
    UnknownRole {
        /// Subject CN.
        cn: String,
        /// The OU.
        ou: String,
    },
    /// More than one role.
    #[error("the client certificate {cn:?} carries more than one role ({roles}); its subject needs exactly one OU naming a role")]
    SeveralRoles {
        /// Subject CN.
        cn: String,
        /// The roles, comma-separated.
        roles: String,
    },
}

impl IdentityError {
    /// The certificate's CN, when it has one (for the log line).
    pub fn cn(&self) -> Option<&str> {
        match self {
            Self::NoRole { cn } | Self::UnknownRole { cn, .. } | Self::SeveralRoles { cn, .. } => Some(cn),
            Self::Unparsable(_) | Self::NoName => None,
        }
    }
}

/// Reads the CN and role of a client certificate (already verified by the
/// handshake). Fails closed: the subject must carry exactly one role as OU
/// (the same OU repeated counts once); no OU, an OU that is not a role, or
/// two roles is an error, never a default role.
pub fn identity(cert: &CertificateDer<'_>) -> Result<ClientIdentity, IdentityError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let subject = parsed.subject();
    let name = subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string).ok_or(IdentityError::NoName)?;
    let mut roles = Vec::new();
    for ou in subject.iter_organizational_unit() {
        let text = ou.as_str().map_err(|e| IdentityError::UnknownRole { cn: name.clone(), ou: format!("(unreadable: {e})") })?;
        let role = Role::parse(text).ok_or_else(|| IdentityError::UnknownRole { cn: name.clone(), ou: text.to_string() })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    match roles.as_slice() {
        [] => Err(IdentityError::NoRole { cn: name }),
        [role] => Ok(ClientIdentity { role: *role, name }),
        several => {
            let roles = several.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
            Err(IdentityError::SeveralRoles { cn: name, roles })
        }
    }
}

/// One certificate, described for `pki show`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    /// The file.
    pub file: String,
    /// Subject.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Not before, RFC 3339.
    pub not_before: String,
    /// Not after, RFC 3339.
    pub not_after: String,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
}

/// Describes the first certificate in `path`.
pub fn describe(path: &Path) -> Result<CertInfo, PkiError> {
    let der = certs(path)?.remove(0);
    let (_, c) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| PkiError::Pem { path: path.to_path_buf(), what: format!("cannot parse: {e}") })?;
    let when = |t: x509_parser::time::ASN1Time| crate::clock::rfc3339(t.timestamp() * 1000);
    Ok(CertInfo {
        file: path.display().to_string(),
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        not_before: when(c.validity().not_before),
        not_after: when(c.validity().not_after),
        sha256: crate::actions::hex(ring::digest::digest(&ring::digest::SHA256, der.as_ref()).as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_a_ca_server_and_admin_client_with_private_files_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = PkiDir::new(dir.path().join("pki"));
        assert_eq!(init(&pki).expect("init"), InitOutcome::Created);
        assert_eq!(init(&pki).expect("again"), InitOutcome::Existing);
        let (cert, key) = pki.client(LOCAL_ADMIN);
        for f in [pki.ca_cert(), pki.ca_key(), pki.server_cert(), pki.server_key(), cert.clone(), key] {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&f).expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", f.display());
            }
        }
        let id = identity(&certs(&cert).expect("certs")[0]).expect("identity");
        assert_eq!(id, ClientIdentity { name: LOCAL_ADMIN.into(), role: Role::Overlord });
        let info = describe(&pki.server_cert()).expect("describe");
        assert!(info.subject.contains("CN=localhost") && info.issuer.contains("agent-runtime local CA"), "{info:?}");
        crate::runtime::install_crypto_provider();
        server_config(&pki.ca_cert(), &pki.server_cert(), &pki.server_key()).expect("server config");
    }

    #[test]
    fn issue_client_checks_its_inputs_and_carries_the_role() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = PkiDir::new(dir.path().to_path_buf());
        assert!(matches!(issue_client(&pki, "ops", Role::Operator, 30), Err(PkiError::Io { .. })), "no CA yet");
        init(&pki).expect("init");
        for bad in ["", "../x", "a b", ".hidden"] {
            assert!(matches!(issue_client(&pki, bad, Role::Admin, 30), Err(PkiError::Invalid(_))), "{bad:?}");
        }
        assert!(matches!(issue_client(&pki, "ops", Role::Admin, 0), Err(PkiError::Invalid(_))));
        let (cert, _) = issue_client(&pki, "ops", Role::Operator, 30).expect("issue");
        let der = certs(&cert).expect("certs").remove(0);
        let id = identity(&der).expect("identity");
        assert_eq!(id, ClientIdentity { name: "ops".into(), role: Role::Operator });
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parse");
        assert_eq!(parsed.subject().iter_organizational_unit().count(), 1, "exactly one OU, the role");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").expect("write");
        assert!(matches!(certs(&garbage), Err(PkiError::Pem { .. })));
        assert!(matches!(key(&garbage), Err(PkiError::Pem { .. })));
    }

    /// A client certificate from `pki`'s CA with these OUs (rcgen keeps one
    /// value per attribute type, so a second OU goes in under its OID).
    fn client_with_ous(pki: &PkiDir, cn: Option<&str>, ous: &[&str]) -> CertificateDer<'static> {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
        }
        for (i, ou) in ous.iter().enumerate() {
            let ty = if i == 0 { DnType::OrganizationalUnitName } else { DnType::CustomDnType(vec![2, 5, 4, 11]) };
            dn.push(ty, *ou);
        }
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer(pki).expect("issuer")).expect("sign");
        cert.der().clone()
    }

    /// Regression (issue 14): a certificate without a role OU, or with an OU
    /// that is not a role, was treated as `admin`.
    #[test]
    fn a_certificate_names_exactly_one_role_or_no_caller_at_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = PkiDir::new(dir.path().to_path_buf());
        init(&pki).expect("init");
        let ok = identity(&client_with_ous(&pki, Some("ops"), &["operator"])).expect("one role");
        assert_eq!(ok, ClientIdentity { name: "ops".into(), role: Role::Operator });
        let twice = identity(&client_with_ous(&pki, Some("ops"), &["viewer", "VIEWER"])).expect("the same role twice is one role");
        assert_eq!(twice.role, Role::Viewer);

        let none = identity(&client_with_ous(&pki, Some("carol"), &[])).expect_err("no OU");
        assert_eq!(none, IdentityError::NoRole { cn: "carol".into() });
        assert!(none.to_string().contains("exactly one OU naming a role") && none.to_string().contains("pki issue-client"), "{none}");
        let unknown = identity(&client_with_ous(&pki, Some("dave"), &["Engineering"])).expect_err("not a role");
        assert_eq!(unknown, IdentityError::UnknownRole { cn: "dave".into(), ou: "Engineering".into() });
        let mixed = identity(&client_with_ous(&pki, Some("dave"), &["viewer", "Engineering"])).expect_err("a role and a stranger");
        assert!(matches!(mixed, IdentityError::UnknownRole { .. }), "{mixed}");
        let two = identity(&client_with_ous(&pki, Some("eve"), &["viewer", "overlord"])).expect_err("two roles");
        assert_eq!(two, IdentityError::SeveralRoles { cn: "eve".into(), roles: "viewer, overlord".into() });
        assert_eq!(two.cn(), Some("eve"));
        assert_eq!(identity(&client_with_ous(&pki, None, &["admin"])), Err(IdentityError::NoName));
    }
}
