//! Workspace-relative path globs (`notes/**/*.md`), for event objectives'
//! `event_filter` (and later the retrieval index's exclusions).
//!
//! Syntax: `/` separates segments; `**` as a whole segment matches any
//! number of segments (none included); in a segment `*` matches any run of
//! characters, `?` one character, `[abc]` / `[a-z]` / `[!a-z]` one of (or
//! none of) a set. Matching is case-sensitive, as paths are on Linux. A glob
//! is refused if it could name something outside the workspace: absolute,
//! `..` segments, backslashes, empty segments.

/// A checked glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    segments: Vec<String>,
}

/// Longest glob accepted.
pub const GLOB_MAX: usize = 256;

impl Glob {
    /// Checks `pattern`; the error names what is wrong.
    pub fn parse(pattern: &str) -> Result<Glob, String> {
        let p = pattern.trim();
        if p.is_empty() {
            return Err("the glob is empty".into());
        }
        if p.len() > GLOB_MAX {
            return Err(format!("the glob is longer than {GLOB_MAX} bytes"));
        }
        if p.starts_with('/') || p.starts_with('~') {
            return Err(format!("{p:?} is absolute; globs are relative to the workspace (e.g. notes/**/*.md)"));
        }
        if p.contains('\\') || p.chars().any(char::is_control) {
            return Err(format!("{p:?} contains a backslash or a control character"));
        }
        let segments: Vec<String> = p.split('/').map(str::to_string).collect();
        if segments.iter().any(|s| s == ".." || s == ".") {
            return Err(format!("{p:?} has a '.' or '..' segment; globs stay inside the workspace"));
        }
        if segments.iter().any(String::is_empty) {
            return Err(format!("{p:?} has an empty segment ('//' or a trailing '/')"));
        }
        for s in &segments {
            if s.contains("**") && s != "**" {
                return Err(format!("{p:?}: '**' must be a whole segment (as in notes/**/*.md)"));
            }
            let opens = s.matches('[').count();
            if opens != s.matches(']').count() {
                return Err(format!("{p:?}: unbalanced '[' in {s:?}"));
            }
        }
        Ok(Glob { segments })
    }

    /// The pattern as given (normalised).
    pub fn as_str(&self) -> String {
        self.segments.join("/")
    }

    /// Whether the workspace-relative `path` (with `/` separators) matches.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match_segments(&self.segments, &parts)
    }
}

fn match_segments(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => {
            path.split_first().is_some_and(|(seg, more)| match_one(first.as_bytes(), seg.as_bytes()) && match_segments(rest, more))
        }
    }
}

/// One segment against one name (bytes; `[...]` sets are ASCII).
fn match_one(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, len)) = class(&p[pi..], s[si])
                        && ok
                    {
                        pi += len;
                        si += 1;
                        continue;
                    }
                }
                c if c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// `[...]` at the start of `p` against `c`: (matched, pattern length).
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let end = p.iter().position(|b| *b == b']')?;
    let mut body = &p[1..end];
    let negate = body.first().is_some_and(|b| *b == b'!' || *b == b'^');
    if negate {
        body = &body[1..];
    }
    let mut hit = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == b'-' {
            hit |= (body[i]..=body[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= body[i] == c;
            i += 1;
        }
    }
    Some((hit != negate, end + 1))
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn globs_match_workspace_paths() {
        let g = Glob::parse("notes/**/*.md").expect("glob");
        for yes in ["notes/x.md", "notes/a/b/c.md", "notes/.md"] {
            assert!(g.matches(yes), "{yes}");
        }
        for no in ["x.md", "notes/x.markdown", "other/notes/x.md", "notes/x.md/y"] {
            assert!(!g.matches(no), "{no}");
        }
        assert!(Glob::parse("**/*.md").expect("g").matches("a.md"));
        assert!(Glob::parse("*.md").expect("g").matches("readme.md"));
        assert!(!Glob::parse("*.md").expect("g").matches("dir/readme.md"), "* does not cross '/'");
        assert!(Glob::parse("log-??.md").expect("g").matches("log-01.md"));
        assert!(Glob::parse("[a-c]*.md").expect("g").matches("b1.md"));
        assert!(!Glob::parse("[!a-c]*.md").expect("g").matches("b1.md"));
        assert!(Glob::parse("a*b*c").expect("g").matches("axxbyyc"));
        assert!(!Glob::parse("a*b*c").expect("g").matches("axxbyy"));
    }

    #[test]
    fn globs_that_leave_the_workspace_are_refused() {
        for (bad, needle) in [
            ("../x/*.md", "'..'"),
            ("notes/../../etc/*", "'..'"),
            ("/etc/*.md", "absolute"),
            ("~/notes/*.md", "absolute"),
            ("notes\\x.md", "backslash"),
            ("notes//x.md", "empty segment"),
            ("", "empty"),
            ("a**b/x", "whole segment"),
            ("[abc.md", "unbalanced"),
        ] {
            let e = Glob::parse(bad).expect_err(bad);
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert!(Glob::parse(&"a".repeat(300)).is_err());
    }
}
