//! The admin API's mutual TLS with the real binary and certificates made
//! here: who gets in (only holders of a certificate from the admin CA that is
//! valid now), that a silent client delays nobody, certificate rotation on
//! SIGHUP, the caller's role from its certificate (exactly one role OU, or
//! every request refused), the probe listener, and the `pki` verbs.

use crate::support::daemon::{Daemon, command, tls_client};
use crate::support::wait_until;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// A CA: its certificate PEM and an issuer for leaves.
fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let pem = p.self_signed(&key).expect("self-signed").pem();
    (pem, Issuer::new(p, key))
}

/// A leaf signed by `issuer`: a client (CN `cn`, role `admin`) or a server for 127.0.0.1; `days_left` < 0 makes it expired.
fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, server: bool, days_left: i64) -> (String, String) {
    leaf_with(issuer, cn, if server { &[] } else { &["admin"] }, server, days_left)
}

/// Like [`leaf`], with these subject OUs (rcgen keeps one value per
/// attribute type, so a second OU goes in under its OID).
fn leaf_with(issuer: &Issuer<'_, KeyPair>, cn: &str, ous: &[&str], server: bool, days_left: i64) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let names = if server { vec!["localhost".to_string(), "127.0.0.1".to_string()] } else { Vec::new() };
    let mut p = CertificateParams::new(names).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    for (i, ou) in ous.iter().enumerate() {
        p.distinguished_name.push(if i == 0 { DnType::OrganizationalUnitName } else { DnType::CustomDnType(vec![2, 5, 4, 11]) }, *ou);
    }
    p.extended_key_usages = vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(30);
    p.not_after = now + time::Duration::days(days_left);
    (p.signed_by(&key, issuer).expect("sign").pem(), key.serialize_pem())
}

/// A client trusting `ca_pem` and presenting `identity` (cert + key PEM), if any.
fn client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

/// The daemon's own CA as an issuer (the test plays an attacker who has it only for the expired case).
fn daemon_ca(data: &Path) -> (String, Issuer<'static, KeyPair>) {
    let ca = std::fs::read_to_string(data.join("pki/ca.pem")).expect("ca");
    let key = KeyPair::from_pem(&std::fs::read_to_string(data.join("pki/ca-key.pem")).expect("ca key")).expect("key");
    (ca.clone(), Issuer::from_ca_cert_pem(&ca, key).expect("issuer"))
}

async fn status(c: &reqwest::Client, url: &str) -> Result<u16, String> {
    c.get(url).send().await.map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_current_certificate_from_the_admin_ca_gets_in_and_a_silent_client_delays_nobody() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_ADMIN_TLS_HANDSHAKE_TIMEOUT_SECONDS", "1".into())]).await;
    assert!(d.base.starts_with("https://127.0.0.1:"), "TLS by default: {}", d.base);
    let url = format!("{}/api/v1/info", d.base);
    let (ca, issuer) = daemon_ca(&d.data());

    assert_eq!(status(&d.http, &url).await, Ok(200), "the local admin certificate works");
    assert!(status(&client(&ca, None), &url).await.is_err(), "no client certificate: refused");
    let (_, other) = new_ca("somebody else");
    let (cert, key) = leaf(&other, "mallory", false, 30);
    assert!(status(&client(&ca, Some((&cert, &key))), &url).await.is_err(), "a certificate from another CA: refused");
    let (cert, key) = leaf(&issuer, "late", false, -1);
    assert!(status(&client(&ca, Some((&cert, &key))), &url).await.is_err(), "an expired certificate: refused");
    let (cert, key) = leaf(&issuer, "fresh", false, 1);
    assert_eq!(status(&client(&ca, Some((&cert, &key))), &url).await, Ok(200), "a current one from the CA: in");
    let plain = reqwest::Client::new().get(url.replace("https://", "http://")).send().await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200), "plain HTTP gets nothing from the TLS port");

    // A client that connects and says nothing holds up nobody, and is dropped after the handshake timeout.
    let addr = d.base.trim_start_matches("https://").to_string();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let started = Instant::now();
    assert_eq!(status(&tls_client(&d.data(), "local-admin"), &url).await, Ok(200));
    assert!(started.elapsed() < Duration::from_millis(900), "a valid client waited {:?} behind a silent one", started.elapsed());
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut silent, &mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the silent connection is closed after the handshake timeout: {read:?}");
    wait_until("the handshake timeout in the log", Duration::from_secs(5), || {
        let log = d.log();
        async move { log.lines().any(|l| l.contains("admin TLS handshake failed") && l.contains("timed_out=true")).then_some(()) }
    })
    .await;

    // Issue 19: each refused handshake was an INFO line (a probe floods the
    // log). Now: counted, each at debug, one warning a minute at most.
    let text = d.http.get(format!("{}/metrics", d.base)).send().await.expect("metrics").text().await.expect("body");
    let count = |reason: &str| -> u64 {
        let key = format!("agent_runtime_admin_tls_handshakes_failed_total{{reason=\"{reason}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no {key}in\n{text}"))
    };
    assert!(count("refused") >= 4, "no certificate, another CA, expired, plain HTTP: {}", count("refused"));
    assert_eq!(count("timed_out"), 1);
    let log = d.log();
    let warnings = log.lines().filter(|l| l.contains("WARN") && l.contains("admin TLS handshakes failed")).count();
    assert_eq!(warnings, 1, "one warning for the burst:\n{log}");
    assert!(!log.lines().any(|l| l.contains("INFO") && l.contains("TLS handshake")), "no INFO line per handshake:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_certificates_and_a_bad_file_keeps_the_ones_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let url = format!("{}/api/v1/info", d.base);
    let pki = d.data().join("pki");
    let (old_ca, _) = daemon_ca(&d.data());
    let old = std::fs::read_to_string(pki.join("clients/local-admin.pem")).expect("cert");
    let old_key = std::fs::read_to_string(pki.join("clients/local-admin-key.pem")).expect("key");

    let (new_ca_pem, new_issuer) = new_ca("rotated CA");
    let (server, server_key) = leaf(&new_issuer, "localhost", true, 30);
    let (admin, admin_key) = leaf(&new_issuer, "new-admin", false, 30);
    std::fs::write(pki.join("ca.pem"), &new_ca_pem).expect("write");
    std::fs::write(pki.join("server.pem"), &server).expect("write");
    std::fs::write(pki.join("server-key.pem"), &server_key).expect("write");
    let hup = || assert!(std::process::Command::new("kill").args(["-HUP", &d.pid().to_string()]).status().expect("kill").success());
    hup();
    let rotated = client(&new_ca_pem, Some((&admin, &admin_key)));
    wait_until("the rotated certificates in use", Duration::from_secs(10), || {
        let (c, u) = (rotated.clone(), url.clone());
        async move { (status(&c, &u).await == Ok(200)).then_some(()) }
    })
    .await;
    assert!(status(&client(&old_ca, Some((&old, &old_key))), &url).await.is_err(), "the old CA's certificates are out");

    // An admin channel hears about the failed reload (heartbeat notices).
    let rotated_get = |path: &str| {
        let (c, u) = (rotated.clone(), format!("{}{path}", d.base));
        async move { c.get(u).send().await.expect("get").json::<serde_json::Value>().await.expect("json") }
    };
    let hello = rotated.post(format!("{}/api/v1/chat", d.base)).json(&json!({"text": "/help"})).send().await.expect("chat");
    assert_eq!(hello.status().as_u16(), 200);
    let contexts = rotated_get("/api/v1/contexts").await;
    let cid = contexts["items"][0]["id"].as_str().expect("context").to_string();
    let r = rotated.post(format!("{}/api/v1/contexts/{cid}/admin", d.base)).json(&json!({"admin": true})).send().await.expect("admin");
    assert_eq!(r.status().as_u16(), 200);

    std::fs::write(pki.join("server-key.pem"), "not a key").expect("write");
    hup();
    wait_until("the failed reload logged", Duration::from_secs(10), || {
        let log = d.log();
        async move { log.contains("could not reload the admin TLS certificates").then_some(()) }
    })
    .await;
    let fresh = client(&new_ca_pem, Some((&admin, &admin_key)));
    assert_eq!(status(&fresh, &url).await, Ok(200), "a bad file on reload keeps the certificates in use");
    // The failed reload shows in the heartbeat and the event log.
    let hb: serde_json::Value = fresh.get(format!("{}/api/v1/heartbeat", d.base)).send().await.expect("get").json().await.expect("json");
    let api = hb["components"].as_array().expect("components").iter().find(|c| c["name"] == "api").expect("api").clone();
    assert_eq!(api["state"], "degraded", "{hb}");
    assert!(api["error"].as_str().expect("error").contains("certificate reload failed"), "{api}");
    assert_eq!(hb["overall"], "degraded");
    wait_until("a health.changed event for the api", Duration::from_secs(10), || {
        let (c, u) = (fresh.clone(), format!("{}/api/v1/events/log?types=health.", d.base));
        async move {
            let log: serde_json::Value = c.get(u).send().await.ok()?.json().await.ok()?;
            log["items"].as_array()?.iter().any(|e| e["data"]["component"] == "api" && e["data"]["to"] == "degraded").then_some(())
        }
    })
    .await;
    wait_until("a heartbeat notice in the admin channel", Duration::from_secs(10), || {
        let get = rotated_get("/api/v1/chat/messages?after=0");
        async move {
            let m = get.await;
            m["items"].as_array()?.iter().find(|x| x["body"].as_str().is_some_and(|b| b.starts_with("Heartbeat degraded"))).map(|_| ())
        }
    })
    .await;
    assert!(!d.log().contains("BEGIN PRIVATE KEY"), "no key material in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_names_the_caller_and_its_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let o = command(dir.path(), &[]).args(["pki", "issue-client", "ops", "--role", "operator", "--days", "7"]).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ops = tls_client(&d.data(), "ops");
    let (s, p) = d.post("/api/v1/pairings/start", &json!({"connector": "telegram", "connector_user_id": "5"})).await;
    assert_eq!(s, 201, "{p}");
    let approve = |c: &reqwest::Client, role: &str| {
        c.post(format!("{}/api/v1/pairings/approve", d.base)).json(&json!({"token": p["token"], "role": role})).send()
    };
    let r = approve(&ops, "member").await.expect("send");
    assert_eq!(r.status().as_u16(), 403, "pairing is for admins");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"], "POST /api/v1/pairings/approve needs the admin role; the certificate cert:ops carries operator");
    // An admin certificate may pair, but cannot grant more than it has.
    let o = command(dir.path(), &[]).args(["pki", "issue-client", "boss", "--role", "admin"]).output().expect("run");
    assert!(o.status.success());
    let boss = tls_client(&d.data(), "boss");
    let r = approve(&boss, "overlord").await.expect("send");
    assert_eq!(r.status().as_u16(), 403);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"], "You cannot grant the role overlord (yours is admin).");
    let (_, audit) = d.get("/api/v1/audit?event=pairing.").await;
    let actors: Vec<&str> = audit["events"].as_array().expect("events").iter().filter_map(|e| e["actor"].as_str()).collect();
    assert!(actors.contains(&"cert:boss") && actors.contains(&"cert:local-admin"), "{actors:?}");
    let (_, audit) = d.get("/api/v1/audit?event=api.request&actor=cert:ops").await;
    let refused = &audit["events"][0];
    assert_eq!(
        (refused["decision"].as_str(), refused["reason"].as_str()),
        (Some("deny"), Some("POST /api/v1/pairings/approve → 403")),
        "{audit}"
    );

    let show = command(dir.path(), &[]).args(["pki", "show"]).output().expect("run");
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("CN=agent-runtime local CA") && text.contains("CN=ops") && text.contains("OU=operator"), "{text}");
    let again = command(dir.path(), &[]).args(["pki", "init"]).output().expect("run");
    assert!(String::from_utf8_lossy(&again.stdout).contains("exists already"));
    let bad = command(dir.path(), &[]).args(["pki", "issue-client", "../x"]).output().expect("run");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("must be 1-64"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_loopback_when_asked_and_a_probe_listener_that_serves_only_probes() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let d =
        Daemon::start(dir.path(), &[("AGENT_RUNTIME_ADMIN_PLAIN_HTTP", "true".into()), ("AGENT_RUNTIME_HEALTH_ADDR", probe.to_string())])
            .await;
    assert!(d.base.starts_with("http://"), "{}", d.base);
    assert_eq!(d.get("/api/v1/info").await.0, 200);
    assert!(!d.data().join("pki").exists(), "no PKI is made when it is not used");
    let http = reqwest::Client::new();
    assert_eq!(status(&http, &format!("http://{probe}/healthz")).await, Ok(200));
    assert_eq!(status(&http, &format!("http://{probe}/readyz")).await, Ok(200));
    assert_eq!(status(&http, &format!("http://{probe}/api/v1/info")).await, Ok(404), "nothing else on the probe port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_certificate_files_are_used_and_the_cli_takes_the_go_client_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    let (ca, issuer) = new_ca("company admin CA");
    let (server, server_key) = leaf(&issuer, "localhost", true, 30);
    let (admin, admin_key) = leaf(&issuer, "carol", false, 30);
    for (name, pem) in
        [("ca.pem", &ca), ("server.pem", &server), ("server-key.pem", &server_key), ("carol.pem", &admin), ("carol-key.pem", &admin_key)]
    {
        std::fs::write(certs.join(name), pem).expect("write");
    }
    let path = |n: &str| certs.join(n).display().to_string();
    let server_env = [
        ("AGENT_RUNTIME_ADMIN_TLS_CA_FILE", path("ca.pem")),
        ("AGENT_RUNTIME_ADMIN_TLS_SERVER_CERT_FILE", path("server.pem")),
        ("AGENT_RUNTIME_ADMIN_TLS_SERVER_KEY_FILE", path("server-key.pem")),
    ];
    let d = Daemon::start_with(dir.path(), &server_env, Some(client(&ca, Some((&admin, &admin_key))))).await;
    assert!(!d.data().join("pki").exists(), "configured files: no local PKI is made");
    assert_eq!(d.get("/api/v1/info").await.0, 200);
    let (s, v) = d.post("/api/v1/pairings/start", &json!({"connector": "discord", "connector_user_id": "9"})).await;
    assert_eq!(s, 201, "{v}");
    let (_, audit) = d.get("/api/v1/audit?event=pairing.requested").await;
    assert_eq!(audit["events"][0]["actor"], "cert:carol", "the name is the CN");

    let client_env = [
        ("AGENT_RUNTIME_ADMIN_TLS_CA_FILE", path("ca.pem")),
        ("AGENT_RUNTIME_ADMIN_TLS_CERT_FILE", path("carol.pem")),
        ("AGENT_RUNTIME_ADMIN_TLS_KEY_FILE", path("carol-key.pem")),
    ];
    let o = command(dir.path(), &client_env).args(["pairing", "list"]).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("discord/9"));
    let o = command(dir.path(), &[]).args(["pairing", "list"]).output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("needs a client certificate"), "without certificates the CLI says what is missing: {err}");
}

/// Regression (issue 14): a certificate from the admin CA with no OU, or an
/// OU that is not a role, was an admin. Now every request on its connection
/// is refused with 403 naming the problem, the daemon logs the CN, and a
/// refused change is audited under the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_exactly_one_role_is_refused_on_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let (ca, issuer) = daemon_ca(&d.data());
    let cases: [(&str, &[&str], &str); 3] = [
        ("no-ou", &[], "carries no role: its subject needs exactly one OU naming a role"),
        ("engineering", &["Engineering"], "carries OU \"Engineering\", which is not a role"),
        ("two-hats", &["viewer", "overlord"], "carries more than one role (viewer, overlord)"),
    ];
    for (cn, ous, problem) in cases {
        let (cert, key) = leaf_with(&issuer, cn, ous, false, 30);
        let c = client(&ca, Some((&cert, &key)));
        for path in ["/api/v1/info", "/api/v1/tasks", "/api/v1/audit"] {
            let r = c.get(format!("{}{path}", d.base)).send().await.expect("the handshake succeeds; the request is refused");
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{cn} GET {path}");
            let v: serde_json::Value = r.json().await.expect("a JSON error");
            let error = v["error"].as_str().unwrap_or_default();
            assert!(error.contains(&format!("the client certificate \"{cn}\"")) && error.contains(problem), "{cn}: {v}");
        }
        let r = c.post(format!("{}/api/v1/tasks", d.base)).json(&json!({"prompt": "p", "kind": "noop"})).send().await.expect("post");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{cn}: no task");
        let expected = format!("client={cn}");
        wait_until("the refusal logged with the CN", Duration::from_secs(5), || {
            let (log, expected) = (d.log(), expected.clone());
            async move {
                log.lines().any(|l| l.contains("WARN") && l.contains("client certificate refused") && l.contains(&expected)).then_some(())
            }
        })
        .await;
        let (_, audit) = d.get(&format!("/api/v1/audit?event=api.request&actor=cert:{cn}")).await;
        assert_eq!(audit["events"][0]["reason"], "POST /api/v1/tasks → 403", "{audit}");
    }
    let (_, tasks) = d.get("/api/v1/tasks").await;
    assert_eq!(tasks["count"], 0, "no refused certificate created anything: {tasks}");
    let (cert, key) = leaf_with(&issuer, "just-right", &["viewer"], false, 30);
    assert_eq!(status(&client(&ca, Some((&cert, &key))), &format!("{}/api/v1/tasks", d.base)).await, Ok(200), "one role: in");
}
