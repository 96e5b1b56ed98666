//! A user's search text into FTS5 match expressions that cannot fail and
//! cannot reach FTS5's own syntax.
//!
//! The documented operators: `"an exact phrase"`, a trailing `*` for a prefix
//! (`instal*`, at least three letters; the index searches for the prefix's
//! commonest indexed words, see [`super::index::PREFIX_WORDS`]), and a leading `-` to leave out documents
//! with a word (`-draft`; ignored when nothing else is asked). Everything else
//! is a plain word: FTS5's `AND`, `OR`, `NOT`, `NEAR`, `^`, `+`, parentheses and
//! `column:` filters are split into words like any punctuation. Every word
//! reaches FTS5 inside double quotes, built here from letters and digits
//! only, so no text a user types is ever parsed as FTS5 syntax.
//!
//! Common English words are dropped unless nothing else is left (they match
//! nearly every chunk and cost time without ranking anything). The
//! expression asks for any of the words and lets bm25 rank: a section with
//! more of them, and rarer ones, ranks higher, and a long question still
//! finds the documents that share most of its words. (Asking for every word
//! first and any word after ranked worse on real READMEs: recall@1 0.846
//! against 0.861; docs/benchmarks.md, session 10.)

/// Longest query accepted, in bytes.
pub const MAX_QUERY: usize = 1_000;

/// Most words of a query used (the rest are ignored).
pub const MAX_TERMS: usize = 32;

/// Words too common to search for on their own.
const STOPWORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from", "how", "i", "if", "in", "into",
    "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "so", "such", "that", "the", "their", "then", "there", "these",
    "this", "to", "was", "we", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your",
];

/// One part of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Word(String),
    Prefix(String),
    Phrase(Vec<String>),
}

impl Term {
    fn fts(&self) -> String {
        match self {
            Term::Word(w) => format!("\"{w}\""),
            Term::Prefix(w) => format!("\"{w}\"*"),
            Term::Phrase(ws) => format!("\"{}\"", ws.join(" ")),
        }
    }
}

/// One searched-for part of a query, as the index looks it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A quoted word or phrase, ready for FTS5: `"word"`, `"two words"`.
    Exact(String),
    /// A prefix (letters and digits, at least three): expanded by the index
    /// into its commonest indexed words.
    Prefix(String),
}

/// A checked query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// The words, phrases and prefixes searched for, in the user's order.
    pub parts: Vec<Part>,
    /// The FTS5 expression: any of the words (`OR`), then the exclusions
    /// (`NOT`); `None` when nothing is searchable.
    pub expr: Option<String>,
    /// The words part alone: `("a" OR "b")`.
    pub terms: Option<String>,
    /// The exclusions alone: `("x" OR "y")`.
    pub not: Option<String>,
    /// The words searched for, for display.
    pub words: Vec<String>,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Nothing to search for.
    #[error("the query is empty")]
    Empty,
    /// Too long.
    #[error("the query is longer than {MAX_QUERY} bytes")]
    TooLong,
}

/// The letters-and-digits runs of `s`, lowercased.
fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

/// Parses `text` (see the module docs).
pub fn parse(text: &str) -> Result<Query, QueryError> {
    if text.len() > MAX_QUERY {
        return Err(QueryError::TooLong);
    }
    if text.trim().is_empty() {
        return Err(QueryError::Empty);
    }
    let mut terms: Vec<Term> = Vec::new();
    let mut excluded: Vec<String> = Vec::new();
    // Quotes alternate plain and phrase parts; an unmatched quote is punctuation.
    let quotes = text.matches('"').count();
    let usable = quotes & !1;
    let mut seen = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let (plain, phrase, next) = match rest.find('"') {
            Some(i) if seen + 2 <= usable => {
                let after = &rest[i + 1..];
                let j = after.find('"').unwrap_or(after.len());
                seen += 2;
                (&rest[..i], Some(&after[..j]), after.get(j + 1..).unwrap_or(""))
            }
            _ => (rest, None, ""),
        };
        for raw in plain.split_whitespace() {
            let negative = raw.starts_with('-') && raw.len() > 1;
            let prefix = raw.ends_with('*');
            let ws: Vec<String> = words(raw).collect();
            if negative && ws.len() == 1 {
                excluded.extend(ws);
                continue;
            }
            let n = ws.len();
            for (i, w) in ws.into_iter().enumerate() {
                if prefix && i + 1 == n && w.chars().count() >= 3 {
                    terms.push(Term::Prefix(w));
                } else {
                    terms.push(Term::Word(w));
                }
            }
        }
        if let Some(p) = phrase {
            let ws: Vec<String> = words(p).collect();
            match ws.len() {
                0 => {}
                1 => terms.extend(ws.into_iter().map(Term::Word)),
                _ => terms.push(Term::Phrase(ws)),
            }
        }
        rest = next;
    }
    let mut uniq: Vec<Term> = Vec::new();
    for t in terms {
        if !uniq.contains(&t) {
            uniq.push(t);
        }
    }
    let content: Vec<Term> = uniq.iter().filter(|t| !matches!(t, Term::Word(w) if STOPWORDS.contains(&w.as_str()))).cloned().collect();
    let mut chosen = if content.is_empty() { uniq } else { content };
    chosen.truncate(MAX_TERMS);
    excluded.sort();
    excluded.dedup();
    excluded.truncate(MAX_TERMS);
    if chosen.is_empty() {
        return Ok(Query::default());
    }
    let words_shown = chosen
        .iter()
        .map(|t| match t {
            Term::Word(w) => w.clone(),
            Term::Prefix(w) => format!("{w}*"),
            Term::Phrase(ws) => format!("\"{}\"", ws.join(" ")),
        })
        .collect();
    let parts: Vec<String> = chosen.iter().map(Term::fts).collect();
    let terms = format!("({})", parts.join(" OR "));
    let not = (!excluded.is_empty()).then(|| format!("({})", excluded.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" OR ")));
    let expr = match &not {
        Some(n) => format!("{terms} NOT {n}"),
        None => terms.clone(),
    };
    let parts = chosen
        .iter()
        .map(|t| match t {
            Term::Prefix(w) => Part::Prefix(w.clone()),
            other => Part::Exact(other.fts()),
        })
        .collect();
    Ok(Query { parts, expr: Some(expr), terms: Some(terms), not, words: words_shown })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        parse(s).expect("parses")
    }

    #[test]
    fn words_are_quoted_and_joined() {
        let x = q("Install the Linux build");
        assert_eq!(x.expr.as_deref(), Some(r#"("install" OR "linux" OR "build")"#));
        assert_eq!(x.words, ["install", "linux", "build"]);
        assert_eq!(q("tokio").expr.as_deref(), Some(r#"("tokio")"#));
    }

    #[test]
    fn phrases_prefixes_and_exclusions_are_the_operators() {
        let x = q(r#""exact phrase here" instal* -draft"#);
        assert_eq!(x.expr.as_deref(), Some(r#"("exact phrase here" OR "instal"*) NOT ("draft")"#));
        assert_eq!(q("-draft").expr, None, "only an exclusion: nothing to search");
        assert_eq!(q("ab*").expr.as_deref(), Some(r#"("ab")"#), "prefixes of one or two letters are words");
    }

    #[test]
    fn fts5_syntax_typed_by_a_user_is_plain_words() {
        for (input, expr) in [
            ("foo NEAR(bar baz)", r#"("foo" OR "near" OR "bar" OR "baz")"#),
            ("title:secret", r#"("title" OR "secret")"#),
            ("a OR b AND NOT c", r#"("b" OR "c")"#),
            (r#"unbalanced "quote"#, r#"("unbalanced" OR "quote")"#),
            ("^start +plus (paren) {col}: *", r#"("start" OR "plus" OR "paren" OR "col")"#),
            ("\"\"", ""),
            ("'; DROP TABLE chunks; --", r#"("drop" OR "table" OR "chunks")"#),
        ] {
            assert_eq!(q(input).expr.unwrap_or_default(), expr, "{input}");
        }
    }

    #[test]
    fn stopwords_drop_unless_nothing_else_is_left() {
        assert_eq!(q("how to install").words, ["install"]);
        assert_eq!(q("the who").words, ["the", "who"]);
        assert_eq!(q("\"how to install\"").words, ["\"how to install\""], "phrases keep every word");
    }

    #[test]
    fn bounds_are_errors_with_reasons() {
        assert_eq!(parse("   "), Err(QueryError::Empty));
        assert_eq!(parse(&"x".repeat(MAX_QUERY + 1)), Err(QueryError::TooLong));
        let many = (0..100).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert_eq!(q(&many).words.len(), MAX_TERMS);
    }
}
