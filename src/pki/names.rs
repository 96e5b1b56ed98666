//! The names a server certificate is valid for: the defaults (`localhost`,
//! `127.0.0.1`, `::1`), the names an operator adds to serve off loopback
//! (`pki init --san`, `AGENT_RUNTIME_TLS_SANS`), and whether the address the
//! daemon binds is among them. Adding a name reissues only the server
//! certificate, with the same CA: clients keep trusting it.

use super::{LEAF_DAYS, PkiDir, PkiError, issuer, leaf, write_private};
use std::net::IpAddr;
use std::path::Path;

/// The names every local server certificate has.
pub const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Checks a name to add: an IP address, or a DNS name (letters, digits,
/// `-`, dots between labels, an optional leading `*.`; at most 253 bytes).
pub fn valid_san(name: &str) -> Result<(), String> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-') && !l.ends_with('-')
    };
    if name.len() <= 253 && host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("{name:?} is neither an IP address nor a DNS name"))
    }
}

/// The DNS names and IP addresses of the first certificate in `path`.
pub fn server_names(path: &Path) -> Result<Vec<String>, PkiError> {
    use x509_parser::extensions::GeneralName;
    let der = super::certs(path)?.remove(0);
    let bad = |e: String| PkiError::Pem { path: path.to_path_buf(), what: format!("cannot parse: {e}") };
    let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| bad(e.to_string()))?;
    let Some(san) = c.subject_alternative_name().map_err(|e| bad(e.to_string()))? else { return Ok(Vec::new()) };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b).ok().map(|a| IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b).ok().map(|a| IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

/// Makes the local server certificate valid for every name in `extra` too:
/// when one is missing, a new server certificate (and key) is issued by the
/// same CA for the defaults, the names it had and `extra`. Returns the
/// names added (empty: nothing changed).
pub fn ensure_server_names(pki: &PkiDir, extra: &[String]) -> Result<Vec<String>, PkiError> {
    for name in extra {
        valid_san(name).map_err(PkiError::Invalid)?;
    }
    let mut names = server_names(&pki.server_cert())?;
    let added: Vec<String> = extra.iter().filter(|n| !names.iter().any(|h| h.eq_ignore_ascii_case(n))).cloned().collect();
    if added.is_empty() {
        return Ok(added);
    }
    for d in DEFAULT_NAMES {
        if !names.iter().any(|n| n == d) {
            names.insert(0, d.to_string());
        }
    }
    names.extend(added.iter().cloned());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (cert, key) = leaf(&issuer(pki)?, &refs, None, LEAF_DAYS)?;
    write_private(&pki.server_key(), &key)?;
    write_private(&pki.server_cert(), &cert)?;
    Ok(added)
}

/// Whether a client connecting to `ip` finds it among `names` (the
/// unspecified address never: clients connect by some other name).
pub fn covers(names: &[String], ip: IpAddr) -> bool {
    !ip.is_unspecified() && names.iter().any(|n| n.parse::<IpAddr>().is_ok_and(|a| a == ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_added_once_and_the_ca_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = PkiDir::new(dir.path().join("pki"));
        super::super::init(&pki).expect("init");
        let ca = std::fs::read(pki.ca_cert()).expect("ca");
        assert_eq!(server_names(&pki.server_cert()).expect("names"), DEFAULT_NAMES.map(String::from).to_vec());
        for bad in ["", "a b", "-x.example", "x..y", "ex_ample.com"] {
            assert!(ensure_server_names(&pki, &[bad.to_string()]).is_err(), "{bad:?} accepted");
        }
        let extra = vec!["agent.example.com".to_string(), "192.0.2.7".to_string()];
        assert_eq!(ensure_server_names(&pki, &extra).expect("add"), extra);
        let names = server_names(&pki.server_cert()).expect("names");
        assert!(names.iter().any(|n| n == "localhost") && names.iter().any(|n| n == "192.0.2.7"), "{names:?}");
        assert!(covers(&names, "192.0.2.7".parse().expect("ip")) && !covers(&names, "0.0.0.0".parse().expect("ip")));
        assert!(ensure_server_names(&pki, &extra).expect("again").is_empty(), "nothing to add the second time");
        assert_eq!(std::fs::read(pki.ca_cert()).expect("ca"), ca, "the CA is kept");
        // The new certificate still verifies against the CA and its key.
        super::super::server_config(&pki.ca_cert(), &pki.server_cert(), &pki.server_key()).expect("usable");
    }
}
