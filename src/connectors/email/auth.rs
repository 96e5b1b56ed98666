//! Sender authentication: reads the receiving server's RFC 8601
//! `Authentication-Results` header and decides whether `From:` is who the
//! mail says it is.
//!
//! Invariants:
//! - Only the **topmost** header counts, and only when its `authserv-id` is
//!   the configured one; headers further down may have been written by
//!   anyone (the sender included). No configured `authserv-id` → nothing
//!   passes.
//! - A pass needs `dmarc=pass` for the `From:` domain, or (when there is no
//!   DMARC verdict) a `dkim=pass` or `spf=pass` whose domain is aligned with
//!   it. An explicit DMARC failure wins over any SPF/DKIM pass.
//! - Anything missing, malformed or unknown fails; parsing never panics.
//!
//! This relies on the receiving server stamping every delivered message
//! and removing headers that claim its `authserv-id` (RFC 8601 §5), as
//! rspamd, OpenDMARC and the large providers do. If it does not, a sender
//! can write the "topmost" header themselves.

/// The verdict on one mail's sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderCheck {
    /// Whether the `From:` address is authenticated.
    pub passed: bool,
    /// One human line saying why (which result passed, or what was missing).
    pub detail: String,
}

impl SenderCheck {
    fn pass(detail: String) -> Self {
        Self { passed: true, detail }
    }
    fn fail(detail: String) -> Self {
        Self { passed: false, detail }
    }
}

/// One parsed `Authentication-Results` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    /// Who wrote it (the receiving server's `authserv-id`), as written.
    pub authserv_id: String,
    /// The method results, in header order (empty for `none`).
    pub results: Vec<MethodResult>,
}

/// One `method=result` entry with its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// The method, lower-case, without a version (`dkim`, `spf`, `dmarc`).
    pub method: String,
    /// The result, lower-case (`pass`, `fail`, `none`, ...).
    pub result: String,
    /// `ptype.property` → value, keys lower-case (`header.d`, `smtp.mailfrom`).
    pub props: Vec<(String, String)>,
}

impl MethodResult {
    /// The value of a property (`header.from`), if present.
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The domain of an address (`a@Example.COM` → `Example.COM`); angle
/// brackets and surrounding space are ignored. `None` without a domain.
pub fn address_domain(addr: &str) -> Option<&str> {
    let addr = addr.trim().trim_start_matches('<').trim_end_matches('>');
    let (_, domain) = addr.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.');
    let valid = !domain.is_empty() && domain.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    valid.then_some(domain)
}

/// Relaxed DMARC alignment, approximated without a public-suffix list: the
/// domains are equal, or one is a subdomain of the other and the shorter
/// has at least two labels (`mail.example.com` ~ `example.com`, but never
/// `example.com` ~ `com`). Siblings (`a.example.com`, `b.example.com`) are
/// not aligned: stricter than DMARC, never looser, except under a
/// multi-label public suffix like `co.uk`, which no sender can sign for.
pub fn aligned(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim_end_matches('.').to_ascii_lowercase();
    if a.is_empty() || b.is_empty() {
        return false;
    }
    if a == b {
        return true;
    }
    let (long, short) = if a.len() > b.len() { (a, b) } else { (b, a) };
    short.contains('.') && long.strip_suffix(short.as_str()).is_some_and(|rest| rest.ends_with('.'))
}

/// Decides whether `from` is authenticated by the topmost of
/// `auth_results` (raw header values, topmost first), written by
/// `authserv_id`.
pub fn check_sender(auth_results: &[String], from: &str, authserv_id: Option<&str>) -> SenderCheck {
    let Some(want) = authserv_id.map(str::trim).filter(|s| !s.is_empty()) else {
        return SenderCheck::fail("no authserv-id is configured, so no sender can be authenticated".into());
    };
    let Some(top) = auth_results.first() else {
        return SenderCheck::fail(format!("no Authentication-Results from {want}"));
    };
    let Some(parsed) = parse_header(top) else {
        return SenderCheck::fail(format!("the topmost Authentication-Results is malformed (expected one from {want})"));
    };
    if !parsed.authserv_id.eq_ignore_ascii_case(want) {
        return SenderCheck::fail(format!("the topmost Authentication-Results is from {}, not {want}", parsed.authserv_id));
    }
    let Some(from_domain) = address_domain(from) else {
        return SenderCheck::fail(format!("the From address {from:?} has no domain"));
    };
    let mut check = decide(&parsed.results, &from_domain.to_ascii_lowercase());
    check.detail = format!("{} from {}", check.detail, parsed.authserv_id);
    check
}

/// The verdict for `from_domain` given one server's results.
fn decide(results: &[MethodResult], from_domain: &str) -> SenderCheck {
    if results.is_empty() {
        return SenderCheck::fail("no authentication results".into());
    }
    let dmarc: Vec<&MethodResult> = results.iter().filter(|r| r.method == "dmarc").collect();
    if let Some(bad) = dmarc.iter().find(|r| !matches!(r.result.as_str(), "pass" | "none" | "bestguesspass")) {
        return SenderCheck::fail(format!("dmarc={}", bad.result));
    }
    let passes: Vec<&MethodResult> = dmarc.into_iter().filter(|r| r.result == "pass").collect();
    if !passes.is_empty() {
        let for_from = |r: &&MethodResult| r.prop("header.from").is_none_or(|d| d.trim_end_matches('.').eq_ignore_ascii_case(from_domain));
        if passes.iter().any(for_from) {
            return SenderCheck::pass(format!("dmarc=pass (header.from={from_domain})"));
        }
        let other = passes.iter().find_map(|r| r.prop("header.from")).unwrap_or_default();
        return SenderCheck::fail(format!("dmarc=pass is for header.from={other}, not {from_domain}"));
    }
    for r in results.iter().filter(|r| r.result == "pass") {
        let domain = match r.method.as_str() {
            "dkim" => r.prop("header.d").or_else(|| r.prop("header.i").and_then(address_domain)).map(|d| ("header.d", d)),
            "spf" => r.prop("smtp.mailfrom").and_then(mailfrom_domain).map(|d| ("smtp.mailfrom", d)),
            _ => None,
        };
        if let Some((key, d)) = domain.filter(|(_, d)| aligned(d, from_domain)) {
            return SenderCheck::pass(format!("{}=pass ({key}={d}) aligned with {from_domain}", r.method));
        }
    }
    SenderCheck::fail(format!("nothing aligned with {from_domain} passed ({})", summary(results)))
}

/// `smtp.mailfrom` may be an address or a bare domain.
fn mailfrom_domain(v: &str) -> Option<&str> {
    if v.contains('@') { address_domain(v) } else { Some(v.trim_end_matches('.')).filter(|d| !d.is_empty()) }
}

fn summary(results: &[MethodResult]) -> String {
    let parts: Vec<String> = results
        .iter()
        .take(6)
        .map(|r| {
            let domain = r.prop("header.d").or_else(|| r.prop("smtp.mailfrom")).or_else(|| r.prop("header.from"));
            match domain {
                Some(d) => format!("{}={} {d}", r.method, r.result),
                None => format!("{}={}", r.method, r.result),
            }
        })
        .collect();
    parts.join(", ")
}

/// Parses one `Authentication-Results` value (without the field name):
/// `authserv-id [version] ( "; none" / *( ";" resinfo ) )`, tolerating
/// comments anywhere, quoted strings and folded lines. `None` when there is
/// no `authserv-id`.
pub fn parse_header(raw: &str) -> Option<AuthResults> {
    let clean = strip_comments(raw);
    let mut segments = split_outside_quotes(&clean, ';').into_iter();
    let head = segments.next()?;
    let mut head_items = items(&head).into_iter();
    let authserv_id = match head_items.next()? {
        Item::Bare(id) => id,
        // `id=...` before the first `;` is not an authserv-id.
        Item::Pair(..) => return None,
    };
    if authserv_id.is_empty() {
        return None;
    }
    let mut results = Vec::new();
    for seg in segments {
        let its = items(&seg);
        if let [Item::Bare(w)] = its.as_slice()
            && w.eq_ignore_ascii_case("none")
        {
            continue;
        }
        if let Some(r) = method_result(its) {
            results.push(r);
        }
    }
    Some(AuthResults { authserv_id, results })
}

/// A lexical item of a segment: `key=value` or a bare word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Bare(String),
    Pair(String, String),
}

/// A resinfo: `method[/version]=result [reason=...] *(ptype.prop=value)`.
fn method_result(its: Vec<Item>) -> Option<MethodResult> {
    let mut iter = its.into_iter();
    let (method, result) = match iter.next()? {
        Item::Pair(k, v) => (k, v),
        // `dkim / 1 = pass`: the version split the method from its `=`.
        Item::Bare(m) => loop {
            match iter.next()? {
                Item::Bare(w) if is_version(&w) => continue,
                Item::Pair(k, v) if is_version(&k) => break (m, v),
                _ => return None,
            }
        },
    };
    let method = method.split('/').next().unwrap_or_default().trim().to_ascii_lowercase();
    if method.is_empty() || result.is_empty() {
        return None;
    }
    let props = iter
        .filter_map(|it| match it {
            Item::Pair(k, v) if k.contains('.') => Some((k.to_ascii_lowercase(), v)),
            _ => None,
        })
        .collect();
    Some(MethodResult { method, result: result.to_ascii_lowercase(), props })
}

fn is_version(w: &str) -> bool {
    let w = w.trim_start_matches('/');
    w.chars().all(|c| c.is_ascii_digit())
}

/// Replaces comments (nested parentheses, `\`-escapes) outside quoted
/// strings with a space; unfolds lines. An unclosed comment runs to the end.
fn strip_comments(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let (mut depth, mut in_quote, mut escaped) = (0usize, false, false);
    for c in raw.chars() {
        let c = if c == '\r' || c == '\n' || c == '\t' { ' ' } else { c };
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if in_quote || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                in_quote = !in_quote;
                out.push(c);
            }
            '(' if !in_quote => depth += 1,
            ')' if !in_quote && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(' ');
                }
            }
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

/// Splits on `sep` outside quoted strings.
fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut in_quote, mut escaped) = (false, false);
    for c in s.chars() {
        if !escaped && !in_quote && c == sep {
            parts.push(String::new());
            continue;
        }
        if escaped {
            escaped = false;
        } else if in_quote && c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_quote = !in_quote;
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

/// Tokenises a segment (comments already gone) into items. A value runs to
/// the next space, so base64 such as `header.b=ab/c+==` stays whole.
fn items(seg: &str) -> Vec<Item> {
    let chars: Vec<char> = seg.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            return out;
        }
        let start = i;
        let key = if chars[i] == '"' { quoted(&chars, &mut i) } else { word(&chars, &mut i, true) };
        skip_ws(&mut i);
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            skip_ws(&mut i);
            let value = match chars.get(i) {
                Some('"') => quoted(&chars, &mut i),
                Some(_) => word(&chars, &mut i, false),
                None => String::new(),
            };
            out.push(Item::Pair(key, value));
        } else if key.is_empty() {
            // An empty quoted string, or nothing consumed: skip on.
            i = i.max(start + 1);
        } else {
            out.push(Item::Bare(key));
        }
    }
}

/// A run of non-space characters; a key also stops at `=` and `"`.
fn word(chars: &[char], i: &mut usize, is_key: bool) -> String {
    let start = *i;
    while *i < chars.len() && !chars[*i].is_whitespace() && !(is_key && matches!(chars[*i], '=' | '"')) {
        *i += 1;
    }
    chars[start..*i].iter().collect()
}

/// A quoted string starting at `chars[*i] == '"'`, unescaped.
fn quoted(chars: &[char], i: &mut usize) -> String {
    let mut out = String::new();
    *i += 1;
    while *i < chars.len() {
        match chars[*i] {
            '\\' if *i + 1 < chars.len() => {
                out.push(chars[*i + 1]);
                *i += 2;
            }
            '"' => {
                *i += 1;
                return out;
            }
            c => {
                out.push(c);
                *i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MX: Option<&str> = Some("mx.example.test");

    fn check(headers: &[&str], from: &str) -> SenderCheck {
        let owned: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        check_sender(&owned, from, MX)
    }

    #[test]
    fn a_forged_from_without_any_header_fails() {
        let c = check(&[], "ceo@example.com");
        assert!(!c.passed);
        assert_eq!(c.detail, "no Authentication-Results from mx.example.test");
    }

    #[test]
    fn without_a_configured_authserv_id_nothing_passes() {
        let h = vec!["mx.example.test; dmarc=pass header.from=example.com".to_string()];
        let c = check_sender(&h, "a@example.com", None);
        assert!(!c.passed);
        assert!(c.detail.contains("no authserv-id"), "{}", c.detail);
    }

    #[test]
    fn dmarc_pass_from_the_configured_server_passes() {
        let c = check(&["mx.example.test; dmarc=pass (p=reject) header.from=example.com"], "Alice@Example.com");
        assert!(c.passed, "{}", c.detail);
        assert_eq!(c.detail, "dmarc=pass (header.from=example.com) from mx.example.test");
    }

    #[test]
    fn a_passing_header_from_another_server_on_top_fails() {
        let c = check(
            &["evil.test; dmarc=pass header.from=example.com", "mx.example.test; dmarc=pass header.from=example.com"],
            "a@example.com",
        );
        assert!(!c.passed);
        assert_eq!(c.detail, "the topmost Authentication-Results is from evil.test, not mx.example.test");
    }

    #[test]
    fn a_passing_header_below_a_failing_topmost_one_fails() {
        // The sender wrote the lower one; only the topmost is our server's.
        let c = check(
            &["mx.example.test; spf=fail smtp.mailfrom=evil.test", "mx.example.test; dmarc=pass header.from=example.com"],
            "a@example.com",
        );
        assert!(!c.passed, "{}", c.detail);
        assert!(c.detail.contains("nothing aligned with example.com"), "{}", c.detail);
    }

    #[test]
    fn dmarc_pass_for_another_domain_fails() {
        let c = check(&["mx.example.test; dmarc=pass header.from=evil.test"], "a@example.com");
        assert!(!c.passed);
        assert!(c.detail.contains("header.from=evil.test, not example.com"), "{}", c.detail);
    }

    #[test]
    fn spf_pass_counts_only_when_aligned() {
        let ok = check(&["mx.example.test; spf=pass smtp.mailfrom=bounce@mail.example.com"], "a@example.com");
        assert!(ok.passed, "{}", ok.detail);
        assert_eq!(ok.detail, "spf=pass (smtp.mailfrom=mail.example.com) aligned with example.com from mx.example.test");
        let bare = check(&["mx.example.test; spf=pass smtp.mailfrom=example.com"], "a@example.com");
        assert!(bare.passed, "{}", bare.detail);
        let off = check(&["mx.example.test; spf=pass smtp.mailfrom=bounce@evil.test"], "a@example.com");
        assert!(!off.passed);
        assert!(off.detail.contains("spf=pass evil.test") || off.detail.contains("spf=pass bounce@evil.test"), "{}", off.detail);
    }

    #[test]
    fn dkim_pass_aligned_through_a_subdomain_passes() {
        let c = check(&["mx.example.test 1; dkim=pass header.d=news.example.com header.s=s1"], "a@example.com");
        assert!(c.passed, "{}", c.detail);
        let via_i = check(&["mx.example.test; dkim=pass header.i=@example.com"], "a@sub.example.com");
        assert!(via_i.passed, "{}", via_i.detail);
    }

    #[test]
    fn any_aligned_dkim_pass_counts_among_several() {
        let c = check(
            &["mx.example.test; dkim=pass header.d=esp.test; dkim=fail header.d=example.com; dkim=pass header.d=example.com"],
            "a@example.com",
        );
        assert!(c.passed, "{}", c.detail);
        let none = check(&["mx.example.test; dkim=pass header.d=esp.test; dkim=fail header.d=example.com"], "a@example.com");
        assert!(!none.passed);
    }

    #[test]
    fn an_explicit_dmarc_failure_wins_over_dkim_and_spf() {
        for verdict in ["fail", "quarantine", "reject", "permerror"] {
            let h = format!("mx.example.test; dkim=pass header.d=example.com; spf=pass smtp.mailfrom=example.com; dmarc={verdict}");
            let c = check(&[&h], "a@example.com");
            assert!(!c.passed, "{verdict}");
            assert_eq!(c.detail, format!("dmarc={verdict} from mx.example.test"));
        }
    }

    #[test]
    fn dmarc_none_falls_back_to_aligned_dkim() {
        let c = check(&["mx.example.test; dmarc=none header.from=example.com; dkim=pass header.d=example.com"], "a@example.com");
        assert!(c.passed, "{}", c.detail);
        assert!(c.detail.starts_with("dkim=pass (header.d=example.com)"), "{}", c.detail);
    }

    #[test]
    fn comments_quoting_versions_and_folding_are_understood() {
        let h = "(comment; with dmarc=fail) mx.example.test (x (nested) y) 1 ;\r\n\t dkim (v1) / 1 = pass (good sig) reason=\"sig; ok (fine)\"\r\n header.d=(the signer)example.com header.b=\"ab/c+==\"";
        let c = check(&[h], "a@example.com");
        assert!(c.passed, "{}", c.detail);
        let parsed = parse_header(h).expect("parsed");
        assert_eq!(parsed.authserv_id, "mx.example.test");
        assert_eq!(parsed.results.len(), 1);
        assert_eq!(parsed.results[0].prop("header.b"), Some("ab/c+=="));
    }

    #[test]
    fn method_and_result_names_are_case_insensitive_and_so_is_the_authserv_id() {
        let c = check(&["MX.Example.Test; DMARC=PASS Header.From=EXAMPLE.COM"], "a@example.com");
        assert!(c.passed, "{}", c.detail);
    }

    #[test]
    fn none_and_malformed_headers_fail() {
        let none = check(&["mx.example.test; none"], "a@example.com");
        assert!(!none.passed);
        assert_eq!(none.detail, "no authentication results from mx.example.test");
        for bad in ["", "   ", "; dmarc=pass", "(only a comment)", "x=y; dmarc=pass header.from=example.com"] {
            let c = check(&[bad], "a@example.com");
            assert!(!c.passed, "{bad:?} passed");
        }
        let no_domain = check(&["mx.example.test; dmarc=pass"], "not-an-address");
        assert!(!no_domain.passed);
    }

    #[test]
    fn alignment_is_relaxed_but_never_to_a_bare_tld() {
        assert!(aligned("example.com", "EXAMPLE.com."));
        assert!(aligned("mail.example.com", "example.com"));
        assert!(aligned("example.com", "a.b.example.com"));
        assert!(!aligned("example.com", "com"));
        assert!(!aligned("a.example.com", "b.example.com"));
        assert!(!aligned("badexample.com", "example.com"));
        assert!(!aligned("", "example.com"));
    }

    #[test]
    fn address_domain_takes_the_part_after_the_last_at() {
        assert_eq!(address_domain("<a@Example.com>"), Some("Example.com"));
        assert_eq!(address_domain("\"x@y\"@example.com"), Some("example.com"));
        assert_eq!(address_domain("nobody"), None);
        assert_eq!(address_domain("a@"), None);
        assert_eq!(address_domain("a@exa mple.com"), None);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(raw in ".{0,200}", from in ".{0,40}") {
            let c = check_sender(std::slice::from_ref(&raw), &from, MX);
            prop_assert!(!c.detail.is_empty());
            let _ = parse_header(&raw);
        }

        #[test]
        fn header_like_garbage_never_panics(parts in proptest::collection::vec("[a-z.=;()\"\\\\ @/]{0,12}", 0..12)) {
            let raw = format!("mx.example.test; {}", parts.join(""));
            let _ = check_sender(&[raw], "a@example.com", MX);
        }
    }
}
