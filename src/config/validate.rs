//! Checks that span more than one value: listener safety, writable
//! directories, variables that are set but not used.

use super::reader::{Reader, Severity};
use super::source::EnvSource;
use super::{Config, ENV_FILE_VAR};
use std::net::SocketAddr;
use std::path::Path;

/// Parses a listener address (`host:port`, or `:port` for all interfaces).
/// Whether it may be non-loopback is checked with the TLS settings in [`check`].
pub(super) fn http_addr(raw: &str) -> Result<SocketAddr, String> {
    if let Some(port) = raw.strip_prefix(':') {
        format!("0.0.0.0:{port}").parse().map_err(|_| "must be host:port, e.g. 127.0.0.1:8080".to_string())
    } else {
        raw.parse().map_err(|_| "must be an IP address and port, e.g. 127.0.0.1:8080".to_string())
    }
}

/// Checks that a base URL is an absolute http(s) URL.
pub(super) fn base_url(raw: &str) -> Result<String, String> {
    match reqwest::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(raw.trim_end_matches('/').to_string()),
        _ => Err("must be an absolute http:// or https:// URL".to_string()),
    }
}

/// Cross-value checks, recorded as problems on the reader.
pub(super) fn check(config: &Config, src: &EnvSource, r: &mut Reader<'_>) {
    let p = &config.paths;
    for (var, path) in [
        ("AGENT_RUNTIME_DATA_DIR", p.data_dir.as_path()),
        ("AGENT_RUNTIME_WORKSPACE_ROOT", p.workspace_root.as_path()),
        ("AGENT_RUNTIME_DB_PATH", p.db_path.parent().unwrap_or(Path::new("."))),
    ] {
        if let Err(msg) = writable_dir(path) {
            r.problem(Severity::Error, var, msg);
        }
    }
    let http = &config.http;
    if http.plain_http && !http.addr.ip().is_loopback() {
        r.problem(
            Severity::Error,
            "AGENT_RUNTIME_HTTP_ADDR",
            format!(
                "refusing to serve the admin API without TLS on non-loopback address {}: plain HTTP \
                 (AGENT_RUNTIME_ADMIN_PLAIN_HTTP) is for 127.0.0.1 or [::1] only; turn it off to serve with mutual TLS",
                http.addr
            ),
        );
    }
    if let Some(h) = http.health_addr
        && !h.ip().is_loopback()
    {
        r.problem(Severity::Error, "AGENT_RUNTIME_HEALTH_ADDR", format!("the unauthenticated probe listener must be on loopback, not {h}"));
    }
    if http.max_sse_subscribers > http.max_connections {
        r.problem(
            Severity::Warning,
            "AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS",
            format!(
                "{} is above AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS ({}): every stream holds a connection, so the connection cap binds first",
                http.max_sse_subscribers, http.max_connections
            ),
        );
    }
    if let Some(files) = &http.tls_files {
        for (var, path) in [
            ("AGENT_RUNTIME_ADMIN_TLS_CA_FILE", &files.ca),
            ("AGENT_RUNTIME_ADMIN_TLS_SERVER_CERT_FILE", &files.cert),
            ("AGENT_RUNTIME_ADMIN_TLS_SERVER_KEY_FILE", &files.key),
        ] {
            if !http.plain_http && !path.is_file() {
                r.problem(Severity::Error, var, format!("{} is not a readable file", path.display()));
            }
        }
    }
    if http.tls_files.is_some() && !http.tls_sans.is_empty() {
        r.problem(
            Severity::Warning,
            "AGENT_RUNTIME_TLS_SANS",
            "ignored: the server certificate is AGENT_RUNTIME_ADMIN_TLS_SERVER_CERT_FILE, not the local PKI's; put the names in that certificate",
        );
    }
    if config.orchestrator.retry_base > config.orchestrator.retry_max {
        r.problem(Severity::Error, "AGENT_RUNTIME_TASK_RETRY_BASE_SECONDS", "must not exceed AGENT_RUNTIME_TASK_RETRY_MAX_SECONDS");
    }
    if config.outbox.retry_base > config.outbox.retry_max {
        r.problem(Severity::Error, "AGENT_RUNTIME_OUTBOX_RETRY_BASE_SECONDS", "must not exceed AGENT_RUNTIME_OUTBOX_RETRY_MAX_SECONDS");
    }
    if let Err(msg) = config.llm.readiness() {
        r.problem(Severity::Warning, "AGENT_RUNTIME_LLM_PROVIDER", format!("{msg}; `general` tasks will fail until then"));
    }
    if src.get("AGENT_RUNTIME_TASK_RECOVERY_RUNNING_STALE_SECONDS").is_some() {
        r.problem(
            Severity::Warning,
            "AGENT_RUNTIME_TASK_RECOVERY_RUNNING_STALE_SECONDS",
            "superseded by task leases; set AGENT_RUNTIME_TASK_LEASE_SECONDS instead (this value is ignored)",
        );
    }
    let read: Vec<&str> = r.entries.iter().map(|e| e.name).collect();
    let unused: Vec<String> = src
        .names()
        .filter(|n| {
            n.starts_with("AGENT_RUNTIME_")
                && *n != ENV_FILE_VAR
                && *n != crate::memory::TUNED_MARKER
                && *n != "AGENT_RUNTIME_TASK_RECOVERY_RUNNING_STALE_SECONDS"
                && !BUILD_VARS.contains(n)
        })
        .filter(|n| !read.contains(n))
        .map(str::to_string)
        .collect();
    for name in unused {
        let hint = did_you_mean(&name, &read).map(|n| format!(" (did you mean {n}?)")).unwrap_or_default();
        r.problem(Severity::Warning, &name, format!("not used by this version (a typo, or a feature not built yet); ignored{hint}"));
    }
}

/// Variables `build.rs` reads when the binary is built (docs/operations.md):
/// left in a shell that also starts the daemon, they are not typos.
const BUILD_VARS: [&str; 2] = ["AGENT_RUNTIME_BUILD_COMMIT", "AGENT_RUNTIME_BUILD_RELR"];

/// The known variable closest to an unknown `name`, if it is close enough
/// to be a typo: at most a third of the name's part after the prefix edited.
fn did_you_mean<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (name.len().saturating_sub("AGENT_RUNTIME_".len()) / 3).max(1);
    known.iter().map(|k| (strsim::damerau_levenshtein(name, k), *k)).filter(|(d, _)| *d <= limit).min().map(|(_, k)| k)
}

/// Checks that `path` is (or can be created as) a writable directory, without
/// creating anything: the nearest existing ancestor must be a directory we can
/// write a probe file into.
pub fn writable_dir(path: &Path) -> Result<(), String> {
    let mut existing = path;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".agent-runtime-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("{} is not writable: {e}", existing.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, EnvSource, Severity};

    fn load(pairs: &[(&str, &str)]) -> super::super::Loaded {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut all = vec![("AGENT_RUNTIME_DATA_DIR".to_string(), dir.path().join("d").display().to_string())];
        all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::read(&EnvSource::from_pairs(all))
    }

    fn error_vars(l: &super::super::Loaded) -> Vec<String> {
        l.errors().map(|p| p.variable.clone()).collect()
    }

    #[test]
    fn defaults_are_loopback_and_go_compatible() {
        let l = load(&[]);
        assert_eq!(error_vars(&l), Vec::<String>::new());
        assert_eq!(l.config.http.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(l.config.orchestrator.concurrency, 5);
        assert_eq!(l.config.llm.model, "gpt-4o");
        assert_eq!(l.config.llm.timeout.as_secs(), 60);
        assert!(l.config.paths.db_path.ends_with("agent-runtime/meta.sqlite"));
    }

    #[test]
    fn every_bad_value_is_reported_with_its_variable() {
        let l = load(&[
            ("AGENT_RUNTIME_DEFAULT_CONCURRENCY", "five"),
            ("AGENT_RUNTIME_LLM_ENABLED", "maybe"),
            ("AGENT_RUNTIME_TASK_NOTIFY_POLICY", "everyone"),
            ("AGENT_RUNTIME_HTTP_ADDR", "0.0.0.0:8080"),
            ("AGENT_RUNTIME_ADMIN_PLAIN_HTTP", "true"),
            ("AGENT_RUNTIME_LLM_BASE_URL", "not a url"),
        ]);
        let vars = error_vars(&l);
        for v in [
            "AGENT_RUNTIME_DEFAULT_CONCURRENCY",
            "AGENT_RUNTIME_LLM_ENABLED",
            "AGENT_RUNTIME_TASK_NOTIFY_POLICY",
            "AGENT_RUNTIME_HTTP_ADDR",
            "AGENT_RUNTIME_LLM_BASE_URL",
        ] {
            assert!(vars.iter().any(|x| x == v), "{v} missing from {vars:?}");
        }
        let msg = l.errors().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(msg.contains("must be a whole number (got \"five\")"), "{msg}");
        assert!(msg.contains("non-loopback"), "{msg}");
    }

    #[test]
    fn any_address_with_mutual_tls_but_plain_http_and_probes_only_on_loopback() {
        let l = load(&[("AGENT_RUNTIME_HTTP_ADDR", "0.0.0.0:8443")]);
        assert_eq!(error_vars(&l), Vec::<String>::new(), "mutual TLS may listen anywhere");
        assert!(!l.config.http.plain_http && l.config.http.tls_files.is_none());
        let l = load(&[("AGENT_RUNTIME_HEALTH_ADDR", "0.0.0.0:9000")]);
        assert_eq!(error_vars(&l), vec!["AGENT_RUNTIME_HEALTH_ADDR"]);
        let l = load(&[("AGENT_RUNTIME_ADMIN_TLS_CA_FILE", "/nonexistent/ca.pem")]);
        let msg = l.errors().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(msg.contains("set all three"), "{msg}");
        let l = load(&[
            ("AGENT_RUNTIME_ADMIN_TLS_CA_FILE", "/nonexistent/ca.pem"),
            ("AGENT_RUNTIME_ADMIN_TLS_SERVER_CERT_FILE", "/nonexistent/s.pem"),
            ("AGENT_RUNTIME_ADMIN_TLS_SERVER_KEY_FILE", "/nonexistent/k.pem"),
        ]);
        assert_eq!(error_vars(&l).len(), 3, "each missing file is named");
    }

    #[test]
    fn intake_caps_are_bounded_and_checked_against_each_other() {
        let l = load(&[]);
        assert_eq!((l.config.http.max_connections, l.config.http.max_handshakes, l.config.http.max_sse_subscribers), (256, 64, 32));
        for var in ["AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS", "AGENT_RUNTIME_ADMIN_MAX_HANDSHAKES", "AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS"]
        {
            for bad in ["0", "-1", "lots", "1000000"] {
                assert_eq!(error_vars(&load(&[(var, bad)])), vec![var], "{var}={bad}");
            }
        }
        let l = load(&[("AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS", "8"), ("AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS", "9")]);
        assert_eq!(error_vars(&l), Vec::<String>::new(), "a warning, not an error");
        assert!(l.problems.iter().any(|p| p.severity == Severity::Warning && p.variable == "AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS"));
    }

    #[test]
    fn model_prices_parse_and_a_bad_one_names_the_variable() {
        let l = load(&[("AGENT_RUNTIME_LLM_PRICES", "gpt-4o=2.5/10, local=0/0")]);
        assert_eq!(error_vars(&l), Vec::<String>::new());
        let p = &l.config.llm.prices;
        assert_eq!((p.len(), p[0].model.as_str(), p[0].prompt, p[0].completion), (2, "gpt-4o", 2.5, 10.0));
        for bad in ["gpt-4o", "gpt-4o=2.5", "=1/2", "m=-1/2", "m=x/2"] {
            let l = load(&[("AGENT_RUNTIME_LLM_PRICES", bad)]);
            assert_eq!(error_vars(&l), vec!["AGENT_RUNTIME_LLM_PRICES"], "{bad}");
        }
    }

    #[test]
    fn budgets_parse_zero_is_no_limit_and_a_bad_one_names_the_variable() {
        let l = load(&[]);
        assert_eq!(l.config.llm.budget, crate::config::BudgetConfig::default(), "no limits unless set");
        let l = load(&[
            ("AGENT_RUNTIME_LLM_DAILY_TOKENS", "100000"),
            ("AGENT_RUNTIME_LLM_DAILY_USD", "2.50"),
            ("AGENT_RUNTIME_LLM_TASK_TOKENS", "0"),
        ]);
        assert_eq!(error_vars(&l), Vec::<String>::new());
        let b = l.config.llm.budget;
        assert_eq!((b.daily_tokens, b.daily_usd, b.task_tokens), (Some(100_000), Some(2.5), None));
        for (var, bad) in [
            ("AGENT_RUNTIME_LLM_DAILY_TOKENS", "-1"),
            ("AGENT_RUNTIME_LLM_DAILY_TOKENS", "lots"),
            ("AGENT_RUNTIME_LLM_DAILY_USD", "-2"),
            ("AGENT_RUNTIME_LLM_DAILY_USD", "NaN"),
            ("AGENT_RUNTIME_LLM_TASK_TOKENS", "1.5"),
        ] {
            assert_eq!(error_vars(&load(&[(var, bad)])), vec![var], "{var}={bad}");
        }
    }

    #[test]
    fn zero_concurrency_is_out_of_range() {
        let l = load(&[("AGENT_RUNTIME_DEFAULT_CONCURRENCY", "0")]);
        assert_eq!(error_vars(&l), vec!["AGENT_RUNTIME_DEFAULT_CONCURRENCY"]);
    }

    #[test]
    fn unwritable_data_dir_names_the_variable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").expect("write");
        let src = EnvSource::from_pairs([("AGENT_RUNTIME_DATA_DIR", file.join("sub").display().to_string())]);
        let l = Config::read(&src);
        assert!(error_vars(&l).contains(&"AGENT_RUNTIME_DATA_DIR".to_string()), "{:?}", l.problems);
    }

    #[test]
    fn secrets_are_redacted_and_unknown_names_warned() {
        let l = load(&[("AGENT_RUNTIME_LLM_API_KEY", "sk-very-secret"), ("AGENT_RUNTIME_LLM_MODLE", "x")]);
        let shown = format!("{:?} {:?}", l.entries, l.config);
        assert!(!shown.contains("sk-very-secret"));
        assert!(l.problems.iter().any(|p| p.severity == Severity::Warning && p.variable == "AGENT_RUNTIME_LLM_MODLE"));
        let msg = l.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(
            msg.contains("AGENT_RUNTIME_LLM_MODLE: not used by this version") && msg.contains("(did you mean AGENT_RUNTIME_LLM_MODEL?)"),
            "{msg}"
        );
    }

    #[test]
    fn build_time_variables_are_not_taken_for_typos() {
        let l = load(&[("AGENT_RUNTIME_BUILD_RELR", "0"), ("AGENT_RUNTIME_BUILD_COMMIT", "abc"), ("AGENT_RUNTIME_BUILD_RELRR", "0")]);
        let warned: Vec<&str> =
            l.problems.iter().filter(|p| p.variable.starts_with("AGENT_RUNTIME_BUILD")).map(|p| p.variable.as_str()).collect();
        assert_eq!(warned, ["AGENT_RUNTIME_BUILD_RELRR"], "{:?}", l.problems);
    }

    #[test]
    fn a_far_off_unknown_name_gets_no_suggestion_and_each_variable_is_listed_once() {
        let l = load(&[("AGENT_RUNTIME_COMPLETELY_DIFFERENT", "x"), ("AGENT_RUNTIME_EMAIL_CA_FILE", "/x")]);
        let msg = l.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(msg.contains("AGENT_RUNTIME_COMPLETELY_DIFFERENT: not used") && !msg.contains("did you mean"), "{msg}");
        let mut names: Vec<&str> = l.entries.iter().map(|e| e.name).collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a variable listed twice");
    }

    #[test]
    fn values_are_shown_as_the_operator_writes_them() {
        let l = load(&[("AGENT_RUNTIME_LLM_PROVIDER", "openai"), ("AGENT_RUNTIME_GATEWAY_GUEST_ROLE", "member")]);
        let shown = |name: &str| l.entries.iter().find(|e| e.name == name).map(|e| e.shown.clone()).expect("read");
        assert_eq!(shown("AGENT_RUNTIME_LLM_PROVIDER"), "openai");
        assert_eq!(shown("AGENT_RUNTIME_GATEWAY_GUEST_ROLE"), "member");
        // Defaults too: no variant names, no `None`.
        assert_eq!(shown("AGENT_RUNTIME_TASK_NOTIFY_POLICY"), "both");
        assert_eq!(shown("AGENT_RUNTIME_SMTP_TLS"), "starttls");
        assert_eq!(shown("AGENT_RUNTIME_IMAP_TLS"), "implicit");
        assert_eq!(shown("AGENT_RUNTIME_TASK_NOTIFY_SUCCESS_POLICY"), "(unset)");
        let l = load(&[]);
        let e = l.entries.iter().find(|e| e.name == "AGENT_RUNTIME_LLM_PROVIDER").expect("read");
        assert_eq!(e.shown, "openai");
    }

    #[test]
    fn dotenv_fills_gaps_but_the_environment_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env_file = dir.path().join(".env");
        std::fs::write(&env_file, "AGENT_RUNTIME_LLM_MODEL=from-file\nAGENT_RUNTIME_ENV=file-env\n").expect("write");
        let mut src = EnvSource::from_pairs([("AGENT_RUNTIME_ENV", "from-env")]);
        src.merge_dotenv(&env_file).expect("dotenv");
        let l = Config::read(&src);
        assert_eq!(l.config.llm.model, "from-file");
        assert_eq!(l.config.environment, "from-env");
    }

    #[test]
    fn every_variable_is_documented() {
        let doc = include_str!("../../docs/configuration.md");
        for e in load(&[]).entries {
            assert!(doc.contains(&format!("`{}`", e.name)), "{} is missing from docs/configuration.md", e.name);
        }
    }

    /// Issue 19, item 7: `.env.example` lists every variable the code reads,
    /// once, commented out, and nothing else; each default written in it is
    /// the real default (the file with every line uncommented reads exactly
    /// as no file at all).
    #[test]
    fn env_example_lists_every_variable_once_with_its_real_default() {
        use std::collections::BTreeSet;
        let example = include_str!("../../.env.example");
        // Read outside `Config::read`, each checked to be read where named.
        let outside = [
            (super::super::ENV_FILE_VAR, "src/config/source.rs", include_str!("source.rs")),
            ("AGENT_RUNTIME_TUI_STATS", "src/tui.rs", include_str!("../tui.rs")),
        ];
        for (name, file, text) in outside {
            assert!(text.contains(&format!("\"{name}\"")), "{file} no longer reads {name}: drop it from this list");
        }
        let mut known: BTreeSet<&str> = load(&[]).entries.iter().map(|e| e.name).collect();
        known.extend(outside.iter().map(|(n, _, _)| *n));

        let mut listed = Vec::new();
        let mut uncommented = Vec::new();
        for (i, line) in example.lines().enumerate() {
            let trimmed = line.trim();
            let (commented, body) = match trimmed.strip_prefix('#') {
                Some(rest) => (true, rest.trim_start()),
                None => (false, trimmed),
            };
            let Some((name, value)) = body.split_once('=') else { continue };
            if !name.starts_with("AGENT_RUNTIME_") || name.contains(char::is_whitespace) {
                continue;
            }
            listed.push(name.to_string());
            if !commented {
                uncommented.push(format!("line {}: {name}", i + 1));
            }
            assert!(!value.starts_with(' '), ".env.example line {}: no space after '=' ({line})", i + 1);
        }
        assert_eq!(uncommented, Vec::<String>::new(), "every line of .env.example is commented out, so a copy changes nothing");
        let set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
        assert_eq!(set.len(), listed.len(), "a variable is listed twice in .env.example: {listed:?}");
        let missing: Vec<_> = known.difference(&set).collect();
        assert!(missing.is_empty(), "read by the code but missing from .env.example: {missing:?}");
        let unknown: Vec<_> = set.difference(&known).collect();
        assert!(unknown.is_empty(), ".env.example names variables nothing reads: {unknown:?}");

        // Uncomment every line: the defaults written must be the defaults.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("env");
        let uncomment = |l: &str| match l.strip_prefix('#') {
            Some(v) if v.starts_with("AGENT_RUNTIME_") && v.contains('=') => v.to_string(),
            _ => l.to_string(),
        };
        let body: String = example.lines().map(|l| uncomment(l) + "\n").collect();
        std::fs::write(&file, body).expect("write");
        // No variable from the environment on either side, so the data dir
        // is `./data` too (only checked for writability, never created).
        let nothing = || EnvSource::from_pairs(Vec::<(String, String)>::new());
        let mut src = nothing();
        src.merge_dotenv(&file).expect(".env.example parses as a .env file");
        let with_file = Config::read(&src);
        assert_eq!(error_vars(&with_file), Vec::<String>::new(), "the defaults in .env.example are valid values");
        let plain = Config::read(&nothing());
        assert_eq!(plain.entries.len(), with_file.entries.len());
        let mut wrong = Vec::new();
        for (a, b) in plain.entries.iter().zip(&with_file.entries) {
            assert_eq!(a.name, b.name);
            if a.shown != b.shown {
                wrong.push(format!("{}: .env.example has {:?}, the default is {:?}", a.name, b.shown, a.shown));
            }
        }
        assert!(wrong.is_empty(), "values in .env.example that are not the defaults:\n{}", wrong.join("\n"));
        let unused: Vec<_> =
            with_file.problems.iter().filter(|p| p.message.starts_with("not used by this version")).map(|p| p.variable.as_str()).collect();
        let outside: Vec<_> = outside.iter().map(|(n, _, _)| *n).collect();
        assert!(unused.iter().all(|v| outside.contains(v)), "`config check` calls these unused: {unused:?}");
    }

    /// Issue 14, item 12: `pairing start --help`, `docs/api.md` and the
    /// OpenAPI document named `AGENT_RUNTIME_GATEWAY_PAIRING_TTL_SECONDS`,
    /// a variable nothing reads. Every variable a user is pointed to must be
    /// one the configuration reads.
    #[test]
    fn every_variable_named_in_help_and_api_docs_is_read() {
        let read: Vec<&str> = load(&[]).entries.into_iter().map(|e| e.name).collect();
        let texts = [
            ("src/cli.rs", include_str!("../cli.rs")),
            ("src/cli/pairing.rs", include_str!("../cli/pairing.rs")),
            ("src/cli/task.rs", include_str!("../cli/task.rs")),
            ("src/cli/objective.rs", include_str!("../cli/objective.rs")),
            ("src/api/openapi.json", include_str!("../api/openapi.json")),
            ("docs/api.md", include_str!("../../docs/api.md")),
        ];
        for (file, text) in texts {
            for (i, _) in text.match_indices("AGENT_RUNTIME_") {
                let name: String = text[i..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
                let name = name.trim_end_matches('_');
                // A family named by its prefix (`AGENT_RUNTIME_ADMIN_TLS_*`) is fine when something in it is read.
                assert!(read.iter().any(|r| *r == name || r.starts_with(&format!("{name}_"))), "{file} names {name}, which nothing reads");
            }
        }
    }

    #[test]
    fn llm_tool_mode_defaults_to_auto_and_is_shown_as_written() {
        use super::super::{Origin, ToolMode};
        let l = load(&[]);
        assert_eq!(l.config.llm.tools, ToolMode::Auto);
        let shown = |l: &super::super::Loaded| {
            let e = l.entries.iter().find(|e| e.name == "AGENT_RUNTIME_LLM_TOOLS").expect("AGENT_RUNTIME_LLM_TOOLS is read");
            (e.shown.clone(), e.origin)
        };
        assert_eq!(shown(&l), ("auto".to_string(), Origin::Default));
        for (raw, mode) in [("native", ToolMode::Native), ("Text", ToolMode::Text), ("auto", ToolMode::Auto)] {
            let l = load(&[("AGENT_RUNTIME_LLM_TOOLS", raw)]);
            assert_eq!((error_vars(&l), l.config.llm.tools), (Vec::<String>::new(), mode), "{raw}");
            assert_eq!(shown(&l).0, raw, "shown as typed");
        }
        let l = load(&[("AGENT_RUNTIME_LLM_TOOLS", "json")]);
        assert_eq!(error_vars(&l), vec!["AGENT_RUNTIME_LLM_TOOLS"]);
        let msg = l.errors().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(msg.contains("must be auto, native or text (got \"json\")"), "{msg}");
        assert_eq!(l.config.llm.tools, ToolMode::Auto, "a bad value falls back to the default");
    }

    #[test]
    fn llm_readiness_names_the_variable_to_set() {
        let l = load(&[]);
        let err = l.config.llm.readiness().unwrap_err();
        assert!(err.contains("AGENT_RUNTIME_LLM_API_KEY"), "{err}");
        let local = load(&[("AGENT_RUNTIME_LLM_BASE_URL", "http://127.0.0.1:9/v1")]);
        assert!(local.config.llm.readiness().is_ok());
    }
}
