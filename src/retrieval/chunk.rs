//! Markdown into searchable chunks: one per section (a heading and the text
//! under it, down to the next heading of any level), each with its heading
//! path (`Guide > Install > Linux`) and its 1-based line range in the file.
//! A section longer than [`MAX_CHUNK`] characters of text is cut at a block
//! boundary into several chunks with the same heading path, so one long
//! section neither drowns its neighbours in ranking nor hides its snippet.
//!
//! Front matter (`---` YAML at the top) gives the title and tags when it has
//! them (`title: X`, `tags: [a, b]`, `tags: a, b` or a `- a` list); other keys
//! are ignored. Otherwise the title is the first level-1 heading, else the
//! file name. Code blocks are body text (a `#` inside a fence is not a
//! heading: the parser knows fences), and so is the text inside HTML (many
//! READMEs put their one-line summary in a `<p align="center">`): tags and
//! comments are dropped, what they enclose is kept. Bytes that are not UTF-8 become U+FFFD
//! and the rest of the file is indexed; CRLF line ends count as one line.

use pulldown_cmark::{Event, MetadataBlockKind, Options, Parser, Tag, TagEnd};

/// Most characters of text in one chunk before it is cut at the next block end.
pub const MAX_CHUNK: usize = 4_000;

/// Separator of a heading path.
pub const PATH_SEP: &str = " > ";

/// One section of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 1-based position in the document.
    pub seq: u32,
    /// The headings above and including this section's, outermost first.
    pub headings: Vec<String>,
    /// The section's text (markup removed).
    pub body: String,
    /// First line (1-based, inclusive).
    pub line_start: u32,
    /// Last line (1-based, inclusive).
    pub line_end: u32,
}

impl Chunk {
    /// `Guide > Install > Linux` (empty before the first heading).
    pub fn heading_path(&self) -> String {
        self.headings.join(PATH_SEP)
    }
}

/// A parsed document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// Front-matter title, else the first level-1 heading, else empty.
    pub title: String,
    /// Front-matter tags.
    pub tags: Vec<String>,
    /// The sections, in order.
    pub chunks: Vec<Chunk>,
    /// Whether some bytes were not UTF-8 (replaced by U+FFFD).
    pub lossy: bool,
}

/// Line starts of `text`, for byte offset → line number.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self(starts)
    }

    /// The 1-based line holding byte `at`.
    fn line(&self, at: usize) -> u32 {
        let i = match self.0.binary_search(&at) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        u32::try_from(i + 1).unwrap_or(u32::MAX)
    }
}

/// The chunk being filled.
struct Open {
    headings: Vec<String>,
    body: String,
    start: usize,
}

/// Parses `bytes` (a markdown file's content).
pub fn parse(bytes: &[u8]) -> Parsed {
    let decoded = String::from_utf8_lossy(bytes);
    let lossy = matches!(decoded, std::borrow::Cow::Owned(_));
    let text = if decoded.contains('\r') { decoded.replace("\r\n", "\n") } else { decoded.into_owned() };
    let lines = Lines::new(&text);
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;

    let mut out = Parsed { lossy, ..Parsed::default() };
    let mut first_h1: Option<String> = None;
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut cur = Open { headings: Vec::new(), body: String::new(), start: 0 };
    // Inside a heading: its level and text so far, and where it started.
    let mut heading: Option<(usize, String, usize)> = None;
    let mut in_meta = false;
    // Inside an HTML tag or comment that an earlier event opened.
    let mut in_tag = false;
    let mut meta = String::new();
    let mut seq = 0u32;
    let close = |cur: &mut Open, end: usize, seq: &mut u32, out: &mut Parsed| {
        let body = cur.body.trim();
        if !body.is_empty() || !cur.headings.is_empty() {
            *seq += 1;
            let last = end.saturating_sub(1).max(cur.start);
            out.chunks.push(Chunk {
                seq: *seq,
                headings: cur.headings.clone(),
                body: body.to_string(),
                line_start: lines.line(cur.start),
                line_end: lines.line(last),
            });
        }
        cur.body.clear();
    };

    for (event, range) in Parser::new_ext(&text, opts).into_offset_iter() {
        match event {
            Event::Start(Tag::MetadataBlock(MetadataBlockKind::YamlStyle)) => in_meta = true,
            Event::End(TagEnd::MetadataBlock(_)) => {
                in_meta = false;
                cur.start = range.end;
            }
            Event::Text(t) if in_meta => meta.push_str(&t),
            Event::Start(Tag::Heading { level, .. }) => {
                close(&mut cur, range.start, &mut seq, &mut out);
                heading = Some((level as usize, String::new(), range.start));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, text, start)) = heading.take() {
                    let text = squash(&text);
                    if level == 1 && first_h1.is_none() && !text.is_empty() {
                        first_h1 = Some(text.clone());
                    }
                    stack.retain(|(l, _)| *l < level);
                    stack.push((level, text));
                    cur = Open {
                        headings: stack.iter().map(|(_, t)| t.clone()).filter(|t| !t.is_empty()).collect(),
                        body: String::new(),
                        start,
                    };
                }
            }
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => match &mut heading {
                Some((_, h, _)) => h.push_str(&t),
                None => cur.body.push_str(&t),
            },
            Event::Html(t) | Event::InlineHtml(t) => {
                let text = strip_tags(&t, &mut in_tag);
                match &mut heading {
                    Some((_, h, _)) => h.push_str(&text),
                    None => cur.body.push_str(&text),
                }
            }
            Event::SoftBreak | Event::HardBreak => match &mut heading {
                Some((_, h, _)) => h.push(' '),
                None => cur.body.push('\n'),
            },
            Event::End(
                TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::BlockQuote(_) | TagEnd::TableRow | TagEnd::TableHead,
            ) => {
                cur.body.push('\n');
                if cur.body.len() >= MAX_CHUNK && heading.is_none() {
                    close(&mut cur, range.end, &mut seq, &mut out);
                    cur.start = range.end;
                }
            }
            Event::End(TagEnd::TableCell) => cur.body.push(' '),
            _ => {}
        }
    }
    close(&mut cur, text.len(), &mut seq, &mut out);
    let (title, tags) = front_matter(&meta);
    out.title = title.or(first_h1).unwrap_or_default();
    out.tags = tags;
    out
}

/// The text of an HTML fragment without its tags and comments; `in_tag`
/// carries an unclosed tag over to the next fragment.
fn strip_tags(html: &str, in_tag: &mut bool) -> String {
    let mut out = String::with_capacity(html.len());
    for ch in html.chars() {
        match (ch, *in_tag) {
            ('<', false) => *in_tag = true,
            ('>', true) => {
                *in_tag = false;
                out.push(' ');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// Collapses runs of whitespace to one space.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Strips matching quotes around a YAML scalar.
fn unquote(v: &str) -> String {
    let v = v.trim();
    let inner = ['"', '\''].iter().find_map(|q| v.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)));
    inner.unwrap_or(v).trim().to_string()
}

/// `title` and `tags` from a YAML front matter (a small, forgiving subset:
/// top-level `key: value` lines, inline `[a, b]` lists, comma lists, and
/// `- item` lines under `tags:`).
fn front_matter(yaml: &str) -> (Option<String>, Vec<String>) {
    let mut title = None;
    let mut tags = Vec::new();
    let mut in_tags = false;
    for line in yaml.lines() {
        let trimmed = line.trim();
        if in_tags && let Some(item) = trimmed.strip_prefix("- ") {
            tags.push(unquote(item));
            continue;
        }
        in_tags = false;
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else { continue };
        match key.trim().to_ascii_lowercase().as_str() {
            "title" => {
                let t = unquote(value);
                if !t.is_empty() {
                    title = Some(t);
                }
            }
            "tags" | "keywords" => {
                let v = value.trim();
                if v.is_empty() {
                    in_tags = true;
                } else {
                    let v = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(v);
                    tags.extend(v.split(',').map(unquote).filter(|t| !t.is_empty()));
                }
            }
            _ => {}
        }
    }
    (title, tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &Parsed) -> Vec<String> {
        p.chunks.iter().map(Chunk::heading_path).collect()
    }

    #[test]
    fn sections_follow_the_heading_tree_with_their_lines() {
        let md =
            "intro line\n\n# Guide\n\nWelcome.\n\n## Install\n\n### Linux\n\nUse apt.\n\n### macOS\n\nUse brew.\n\n## Use\n\nRun it.\n";
        let p = parse(md.as_bytes());
        assert_eq!(p.title, "Guide");
        assert_eq!(paths(&p), ["", "Guide", "Guide > Install", "Guide > Install > Linux", "Guide > Install > macOS", "Guide > Use"]);
        let linux = &p.chunks[3];
        assert_eq!(linux.body, "Use apt.");
        assert_eq!((linux.line_start, linux.line_end), (9, 12));
        assert_eq!(p.chunks[0].body, "intro line");
        assert_eq!((p.chunks[0].line_start, p.chunks[0].line_end), (1, 2));
        let last = p.chunks.last().expect("last");
        assert_eq!((last.line_start, last.line_end), (17, 19));
        assert_eq!(p.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn nested_lists_and_code_fences_with_hashes_stay_body_text() {
        let md = "# Tools\n\n- one\n  - nested two\n    - deeper three\n- four\n\n```sh\n# not a heading\nmake install\n```\n\n    # indented code, not a heading\n";
        let p = parse(md.as_bytes());
        assert_eq!(paths(&p), ["Tools"], "{p:#?}");
        let body = &p.chunks[0].body;
        for word in ["one", "nested two", "deeper three", "four", "# not a heading", "make install", "# indented code"] {
            assert!(body.contains(word), "{word} missing from {body:?}");
        }
    }

    #[test]
    fn front_matter_gives_title_and_tags_and_is_not_body() {
        let md = "---\ntitle: \"Release Notes\"\ntags: [rust, search]\nauthor: someone\n---\n# Heading One\n\nText.\n";
        let p = parse(md.as_bytes());
        assert_eq!(p.title, "Release Notes");
        assert_eq!(p.tags, ["rust", "search"]);
        assert!(p.chunks.iter().all(|c| !c.body.contains("author")), "{p:#?}");
        assert_eq!(p.chunks[0].line_start, 6);
        let list = parse(b"---\ntags:\n  - a\n  - 'b c'\ntitle: T\n---\nbody\n");
        assert_eq!((list.title.as_str(), list.tags.clone()), ("T", vec!["a".to_string(), "b c".to_string()]));
        assert_eq!(list.chunks[0].body, "body");
        assert_eq!(parse(b"---\ntags: x, y\n---\n").tags, ["x", "y"]);
    }

    #[test]
    fn empty_and_whitespace_files_have_no_chunks() {
        assert_eq!(parse(b"").chunks, []);
        assert_eq!(parse(b"  \n\n\t\n").chunks, []);
        assert_eq!(parse(b"").title, "");
    }

    #[test]
    fn crlf_counts_lines_like_lf() {
        let lf = parse(b"# A\n\none\n\n# B\n\ntwo\n");
        let crlf = parse(b"# A\r\n\r\none\r\n\r\n# B\r\n\r\ntwo\r\n");
        assert_eq!(lf.chunks, crlf.chunks);
        assert_eq!((crlf.chunks[1].line_start, crlf.chunks[1].line_end), (5, 7));
        assert!(!crlf.chunks[0].body.contains('\r'));
    }

    #[test]
    fn bad_utf8_is_replaced_and_the_rest_indexed() {
        let mut bytes = b"# Caf\xe9\n\nvalid text \xff\xfe after\n\n## Next\n\nmore\n".to_vec();
        bytes.extend_from_slice("ünïcödé".as_bytes());
        let p = parse(&bytes);
        assert!(p.lossy);
        assert_eq!(p.chunks.len(), 2);
        assert!(p.chunks[0].body.contains("valid text") && p.chunks[0].body.contains("after"));
        assert!(p.chunks[1].body.contains("ünïcödé"));
        assert_eq!(p.chunks[0].heading_path(), "Caf\u{fffd}");
    }

    #[test]
    fn long_sections_are_cut_at_block_ends_keeping_their_heading() {
        let para = format!("{}\n\n", "word ".repeat(200));
        let md = format!("# Big\n\n{}", para.repeat(10));
        let p = parse(md.as_bytes());
        assert!(p.chunks.len() >= 2, "{}", p.chunks.len());
        assert!(p.chunks.iter().all(|c| c.heading_path() == "Big" && c.body.len() <= MAX_CHUNK + 1_100));
        // Line ranges tile the file without overlap.
        for w in p.chunks.windows(2) {
            assert!(w[0].line_end < w[1].line_start, "{:?} then {:?}", (w[0].line_start, w[0].line_end), (w[1].line_start, w[1].line_end));
        }
    }

    #[test]
    fn text_inside_html_is_kept_without_its_tags() {
        let md = "<p align=\"center\">\n  <strong>Cooperative cancellation</strong> for <em>async</em> Rust\n</p>\n\n<!-- a\nmultiline comment -->\n\n# Title <small>v2</small>\n\nText with <kbd>Ctrl</kbd>.\n";
        let p = parse(md.as_bytes());
        let all: String = p.chunks.iter().map(|c| format!("{} | {}\n", c.heading_path(), c.body)).collect();
        assert!(all.contains("Cooperative cancellation") && all.contains("async") && all.contains("Ctrl"), "{all}");
        assert!(!all.contains('<') && !all.contains("align") && !all.contains("multiline"), "{all}");
        assert_eq!(p.title, "Title v2");
    }

    #[test]
    fn setext_headings_inline_markup_and_skipped_levels() {
        let md = "Title\n=====\n\n#### Deep *emphasis* `code`\n\ntext\n\n## Back\n\nmore\n";
        let p = parse(md.as_bytes());
        assert_eq!(p.title, "Title");
        assert_eq!(paths(&p), ["Title", "Title > Deep emphasis code", "Title > Back"]);
    }
}
