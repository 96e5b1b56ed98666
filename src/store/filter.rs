//! WHERE clauses built from the filters a caller actually gave. A single
//! statement with `(?1 IS NULL OR col = ?1)` for every optional filter reads
//! the whole table (SQLite cannot choose an index for it); a statement per
//! combination of present filters uses the index, and each is cached like any
//! other prepared statement. Column names and operators come from code, never
//! from input; values are always bound.

use rusqlite::types::Value;

/// A WHERE clause under construction.
#[derive(Debug, Default)]
pub(super) struct Filter {
    clauses: Vec<String>,
    values: Vec<Value>,
}

impl Filter {
    /// `column <op> ?` when `value` is given (`op` is `=`, `>=`, `<`, `>`, `LIKE`).
    pub(super) fn cmp(&mut self, column: &'static str, op: &'static str, value: Option<impl Into<Value>>) -> &mut Self {
        if let Some(v) = value {
            self.values.push(v.into());
            self.clauses.push(format!("{column} {op} ?{}", self.values.len()));
        }
        self
    }

    /// `(a, b) < (?, ?)`: keyset paging over a two-column order.
    pub(super) fn pair_before(&mut self, a: &'static str, b: &'static str, va: Value, vb: Value) -> &mut Self {
        self.values.push(va);
        self.values.push(vb);
        let n = self.values.len();
        self.clauses.push(format!("({a}, {b}) < (?{}, ?{n})", n - 1));
        self
    }

    /// `column = ?` when `value` is given.
    pub(super) fn eq(&mut self, column: &'static str, value: Option<impl Into<Value>>) -> &mut Self {
        self.cmp(column, "=", value)
    }

    /// ` WHERE a = ?1 AND ...`, or nothing when no filter was given.
    pub(super) fn clause(&self) -> String {
        if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) }
    }

    /// The next free parameter number (for a trailing `LIMIT ?n`).
    pub(super) fn next(&self) -> usize {
        self.values.len() + 1
    }

    /// The bound values, then `extra` (for the trailing parameters).
    pub(super) fn values(self, extra: impl IntoIterator<Item = Value>) -> Vec<Value> {
        let mut v = self.values;
        v.extend(extra);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_given_filters_become_clauses_numbered_in_order() {
        let mut f = Filter::default();
        f.eq("status", Some("queued".to_string())).eq("kind", None::<String>).cmp("at", ">=", Some(5_i64));
        assert_eq!(f.clause(), " WHERE status = ?1 AND at >= ?2");
        assert_eq!(f.next(), 3);
        assert_eq!(f.values([Value::Integer(10)]), vec![Value::Text("queued".into()), Value::Integer(5), Value::Integer(10)]);
        assert_eq!(Filter::default().clause(), "");
    }
}
