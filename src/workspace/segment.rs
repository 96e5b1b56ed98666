//! Ids and sender-chosen names as path pieces.
//!
//! [`sanitize_segment`] is injective: two different ids never share a
//! directory or a chat log (before issue 14, `a@b-c` and `a-b@c` did, and so
//! did Telegram's group `-123` and user `123`). Its output is always one
//! safe path segment, and stays distinct on case-insensitive file systems.

use std::fmt::Write as _;

/// Longest segment [`sanitize_segment`] returns (file systems allow 255
/// bytes; room is left for suffixes such as `.md`).
pub const MAX_SEGMENT: usize = 200;

/// Path-safe, reversible form of an id: `a-z`, `0-9`, `-`, `_`, `@`, `+`
/// and (not first) `.` are kept as they are, every other byte of the UTF-8
/// becomes `%XX` (upper-case hex; `%` itself is `%25`). So UUIDs, Telegram
/// and Discord ids and mail addresses keep readable names, and no output is empty (the empty string
/// is `%`), starts with `.`, or contains `/`. An encoding longer than
/// [`MAX_SEGMENT`] is cut and ends in `~` and 32 hex digits of the id's
/// SHA-256 (`~` never appears otherwise), so long ids stay distinct.
///
/// Case: letters outside escapes are lower case and hex digits inside them
/// upper case, so two outputs that differ only in case cannot both occur.
pub fn sanitize_segment(s: &str) -> String {
    encode(s, MAX_SEGMENT)
}

/// [`sanitize_segment`] bounded to `max` bytes (at least 40).
pub(super) fn encode(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_@+".contains(&b) || (b == b'.' && i > 0) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out.is_empty() {
        return "%".to_string();
    }
    if out.len() <= max {
        return out;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut cut = max.saturating_sub(33);
    // Never end inside an escape (`%`, `%X`): the cut stays readable.
    while cut > 0 && out.as_bytes()[cut.saturating_sub(2)..cut].contains(&b'%') {
        cut -= 1;
    }
    out.truncate(cut);
    out.push('~');
    for b in &digest.as_ref()[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The pre-issue-14 form (`[a-z0-9._-]` kept, lower-cased, the rest `-`,
/// trimmed of `-` and `.`): only to find data written under the old names.
pub(super) fn legacy_segment(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let trimmed = mapped.trim_matches(['-', '.']);
    if trimmed.is_empty() { "_".to_string() } else { trimmed.to_string() }
}

/// A file name the sender chose, made safe to use: no directories, only
/// `[A-Za-z0-9._-]` (others become `_`), no leading dots, at most 100
/// characters with the extension kept; never empty. (Not injective: the
/// file's stem, a message id, keeps names apart.)
pub fn sanitize_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mapped: String = base.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    let trimmed = mapped.trim_start_matches('.');
    let name = if trimmed.trim_matches('_').is_empty() { "file".to_string() } else { trimmed.to_string() };
    if name.len() <= 100 {
        return name;
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if ext.len() <= 16 => format!("{}.{ext}", &stem[..100 - ext.len() - 1]),
        _ => name[..100].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse of `encode` for outputs that were not cut.
    fn decode(s: &str) -> Option<String> {
        if s == "%" {
            return Some(String::new());
        }
        let (b, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    fn assert_safe(seg: &str) {
        assert!(!seg.is_empty() && seg != "." && seg != "..", "{seg:?}");
        assert!(seg.len() <= MAX_SEGMENT, "{} bytes", seg.len());
        assert!(!seg.starts_with('.'), "{seg:?} would be hidden");
        assert!(seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@+%~".contains(&b)), "{seg:?}");
    }

    #[test]
    fn file_names_are_safe_and_keep_their_extension() {
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("C:\\Users\\me\\notes v2.md"), "notes_v2.md");
        assert_eq!(sanitize_file_name(".bashrc"), "bashrc");
        assert_eq!(sanitize_file_name("…"), "file");
        assert_eq!(sanitize_file_name(""), "file");
        let long = format!("{}.pdf", "a".repeat(300));
        let s = sanitize_file_name(&long);
        assert_eq!(s.len(), 100);
        assert!(s.ends_with(".pdf"));
    }

    #[test]
    fn segments_cannot_escape_the_tree() {
        assert_eq!(sanitize_segment("../../etc"), "%2E.%2F..%2Fetc");
        assert_eq!(sanitize_segment("A b/C"), "%41%20b%2F%43");
        assert_eq!(sanitize_segment(".."), "%2E.");
        assert_eq!(sanitize_segment("."), "%2E");
        assert_eq!(sanitize_segment(""), "%");
    }

    #[test]
    fn platform_ids_and_uuids_keep_their_names() {
        for id in ["100123", "-100123", "123456789012345678", "0190f1c2-7a3b-7c4d-8e5f-0123456789ab", "ws_1", "a.b"] {
            assert_eq!(sanitize_segment(id), id);
        }
        // The old form merged these (issue 14): a group and a user, two addresses.
        assert_eq!(legacy_segment("-100123"), legacy_segment("100123"));
        assert_ne!(sanitize_segment("-100123"), sanitize_segment("100123"));
        assert_eq!(legacy_segment("a@b-c"), legacy_segment("a-b@c"));
        assert_eq!(sanitize_segment("a@b-c"), "a@b-c");
        assert_eq!(sanitize_segment("a-b@c"), "a-b@c");
        assert_eq!(sanitize_segment("Ann+x@Example.test"), "%41nn+x@%45xample.test");
        assert_eq!(sanitize_segment("100%"), "100%25");
    }

    #[test]
    fn long_ids_are_cut_with_a_hash_and_stay_distinct() {
        let (a, b) = ("x".repeat(300), format!("{}y", "x".repeat(299)));
        let (ea, eb) = (sanitize_segment(&a), sanitize_segment(&b));
        assert_ne!(ea, eb);
        assert_safe(&ea);
        assert!(ea.contains('~') && ea.len() == MAX_SEGMENT, "{ea}");
        // Escapes are not split by the cut.
        let wide = sanitize_segment(&"é".repeat(100));
        assert_safe(&wide);
        let head = wide.split('~').next().expect("head");
        assert!(head.len().is_multiple_of(3) && !head.ends_with('%'), "whole escapes only: {head}");
    }

    proptest::proptest! {
        #[test]
        fn distinct_ids_get_distinct_safe_segments(a in "\\PC{0,80}", b in "\\PC{0,80}") {
            let (ea, eb) = (sanitize_segment(&a), sanitize_segment(&b));
            assert_safe(&ea);
            assert_safe(&eb);
            proptest::prop_assert_eq!(a == b, ea == eb);
            proptest::prop_assert_eq!(a == b, ea.to_lowercase() == eb.to_lowercase(), "case-insensitive file systems too");
        }

        #[test]
        fn short_segments_decode_back(s in "[a-zA-Z0-9@%._/ -]{0,60}|\\PC{0,40}") {
            let e = sanitize_segment(&s);
            proptest::prop_assume!(!e.contains('~'));
            proptest::prop_assert_eq!(decode(&e), Some(s));
        }

        #[test]
        fn long_segments_stay_distinct_and_bounded(prefix in "[a-z@.]{0,20}", a in "\\PC{150,300}", b in "\\PC{150,300}") {
            let (ea, eb) = (sanitize_segment(&format!("{prefix}{a}")), sanitize_segment(&format!("{prefix}{b}")));
            assert_safe(&ea);
            assert_safe(&eb);
            proptest::prop_assert_eq!(a == b, ea == eb);
        }
    }
}
