//! Requests refused before any handler runs, each with a JSON error (and,
//! unless a `GET`, an `api.request` audit row, since these layers sit inside
//! the audit layer):
//!
//! - a connection whose certificate names no usable role → 403;
//! - in plain loopback mode, a `Host` that is not a loopback name → 421
//!   (DNS rebinding: a web page whose name resolves to 127.0.0.1 would
//!   otherwise reach the daemon as its overlord);
//! - a request from a browser (it carries `Origin`) → 403: the API serves no
//!   pages and allows no cross-origin use, so such a request is a web page
//!   posting to a daemon it found (cross-site request forgery), even with
//!   an empty body that needs no `Content-Type`;
//! - a body that is not `application/json` → 415 (a page can send
//!   `text/plain` without asking the browser's permission; `application/json`
//!   it cannot).

use super::error::ApiError;
use super::tls::RefusedCertificate;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Every check below, in order, as one layer: one middleware hop per
/// request instead of four. `State(plain)`: plain loopback mode.
pub async fn requests(State(plain): State<bool>, req: Request, next: Next) -> Response {
    let refused =
        refuse_certificate(&req).or_else(|| loopback_host(plain, &req)).or_else(|| no_browsers(&req)).or_else(|| json_bodies(&req));
    match refused {
        Some(r) => r,
        None => next.run(req).await,
    }
}

/// Refuses (403) every request on a connection whose certificate was refused.
fn refuse_certificate(req: &Request) -> Option<Response> {
    let RefusedCertificate(why) = req.extensions().get::<RefusedCertificate>()?;
    Some(ApiError { status: StatusCode::FORBIDDEN, message: why.to_string() }.into_response())
}

/// Whether `host` (a `Host` header: name or address, optional port) names
/// this machine's loopback: `localhost`, `127.0.0.0/8` or `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]` or `[::1]:8080`
        Some(rest) => match rest.split_once(']') {
            Some((addr, port)) if port.is_empty() || valid_port(port) => addr,
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_port(p: &str) -> bool {
    p.strip_prefix(':').is_some_and(|n| n.parse::<u16>().is_ok())
}

/// In plain loopback mode (`State(true)`), refuses (421) a `Host` that is not
/// a loopback name. Over mutual TLS (`State(false)`) the certificate decides.
fn loopback_host(plain: bool, req: &Request) -> Option<Response> {
    if !plain {
        return None;
    }
    let host = req.headers().get(header::HOST).map(|h| h.to_str().unwrap_or("(not text)"));
    if host.is_some_and(is_loopback_host) {
        return None;
    }
    let message = format!(
        "Host {} is not a loopback name (localhost, 127.0.0.1, [::1]); the plain-HTTP admin API answers only those (DNS rebinding)",
        host.map_or_else(|| "(missing)".to_string(), |h| format!("{h:?}"))
    );
    Some(ApiError { status: StatusCode::MISDIRECTED_REQUEST, message }.into_response())
}

/// Refuses (403) requests a browser made (they carry `Origin`).
fn no_browsers(req: &Request) -> Option<Response> {
    let origin = req.headers().get(header::ORIGIN)?;
    let message = format!(
        "requests from web pages are refused (Origin {:?}): the admin API is for the CLI, the TUI and scripts",
        origin.to_str().unwrap_or("(not text)")
    );
    Some(ApiError { status: StatusCode::FORBIDDEN, message }.into_response())
}

/// Whether the request carries a body (a positive length, or chunks).
fn has_body(h: &HeaderMap) -> bool {
    if h.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    h.get(header::CONTENT_LENGTH).is_some_and(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) != Some(0))
}

/// Whether the `Content-Type` is `application/json` (parameters allowed).
fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json")))
}

/// Refuses (415) a request body that is not sent as `application/json`.
fn json_bodies(req: &Request) -> Option<Response> {
    if !has_body(req.headers()) || is_json(req.headers()) {
        return None;
    }
    let got = req.headers().get(header::CONTENT_TYPE).map_or("none", |v| v.to_str().unwrap_or("(not text)"));
    let message = format!("request bodies must be sent as Content-Type: application/json (got {got})");
    Some(ApiError { status: StatusCode::UNSUPPORTED_MEDIA_TYPE, message }.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn loopback_names_with_any_port_pass_and_other_names_do_not() {
        for ok in ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:1", "127.1.2.3:65535", "[::1]", "[::1]:8080"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.test",
            "evil.test:8080",
            "localhost.evil.test",
            "127.0.0.1.evil.test",
            "10.0.0.1:8080",
            "[::2]:80",
            "[::1]x",
            "127.0.0.1:99999",
            "localhost:",
            "",
            "::1",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn a_body_needs_the_json_type_and_no_body_needs_none() {
        let headers = |pairs: &[(header::HeaderName, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(!has_body(&headers(&[])));
        assert!(!has_body(&headers(&[(header::CONTENT_LENGTH, "0")])));
        assert!(has_body(&headers(&[(header::CONTENT_LENGTH, "12")])));
        assert!(has_body(&headers(&[(header::TRANSFER_ENCODING, "chunked")])));
        assert!(is_json(&headers(&[(header::CONTENT_TYPE, "application/json")])));
        assert!(is_json(&headers(&[(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")])));
        for bad in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"] {
            assert!(!is_json(&headers(&[(header::CONTENT_TYPE, bad)])), "{bad}");
        }
    }
}
