//! The one place MindsDB SQL text is made.
//!
//! Rules, each enforced by a type:
//! * **Fixed text** (keywords, punctuation) enters only as `&'static str`, so runtime strings
//!   cannot be spliced in by accident.
//! * **Identifiers** enter only as [`Ident`], validated against [`IDENT_PATTERN`] and always
//!   backtick-quoted. MindsDB's lexer has no escape inside backticks (`` `([^`]+)` ``), so the
//!   pattern, not escaping, is what makes them safe; lower case only, because unquoted names are
//!   lower-cased by MindsDB and mixed case would make `x` and `X` two objects.
//! * **Values** are bound through the HTTP API's `params` (`:p0`, `:p1`, ...), which MindsDB
//!   substitutes as AST constants after parsing (`apply_parameters` in its command executor), so
//!   a value is never parsed as SQL. Integers may be written inline because their text is made
//!   by `i64`'s `Display`.
//! * Two places cannot use `params`: `USING` clauses (the parser rejects `:name` there) and
//!   JOB bodies (stored as text and run later, without the request's params).
//!   [`Sql::to_inline`] renders bound values as string literals for them, after refusing every
//!   value the 26.1 lexer/unquoter cannot carry exactly (see [`check_inline_str`]).
//!
//! No other module builds SQL text.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{MindsdbError, Result};

/// The identifier pattern: `^[a-z_][a-z0-9_]{0,62}$` (lower-case ASCII letter or underscore,
/// then up to 62 lower-case letters, digits or underscores; 63 characters at most, the
/// PostgreSQL limit, so a name survives being passed on to an attached database).
pub const IDENT_PATTERN: &str = "^[a-z_][a-z0-9_]{0,62}$";

/// Longest identifier accepted.
pub const IDENT_MAX_LEN: usize = 63;

/// A validated MindsDB identifier (project, agent, model, knowledge base, job, database, table).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Ident(String);

impl Ident {
    /// Validates `raw` against [`IDENT_PATTERN`]; the error names the rule, not the value,
    /// because the value may be hostile (control characters, megabytes).
    pub fn new(raw: &str) -> Result<Self> {
        let bytes = raw.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= IDENT_MAX_LEN
            && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(MindsdbError::InvalidArgument(format!(
                "invalid name: must match {IDENT_PATTERN} (got {} bytes)",
                raw.len()
            )))
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The backtick-quoted form used in SQL text.
    fn quoted(&self) -> String {
        format!("`{}`", self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for Ident {
    type Error = MindsdbError;

    fn try_from(raw: &str) -> Result<Self> {
        Self::new(raw)
    }
}

#[derive(Debug, Clone)]
enum Token {
    Text(String),
    Param(String),
}

/// A statement ready to send: text with `:pN` placeholders plus the bound values.
///
/// Only [`SqlBuilder`] makes one.
#[derive(Debug, Clone)]
pub struct Sql {
    tokens: Vec<Token>,
    params: Map<String, Value>,
}

impl Sql {
    /// The SQL text, values replaced by `:pN` placeholders.
    pub fn text(&self) -> String {
        self.tokens
            .iter()
            .map(|t| match t {
                Token::Text(s) => s.clone(),
                Token::Param(p) => format!(":{p}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The values to send as the request's `params`.
    pub fn params(&self) -> &Map<String, Value> {
        &self.params
    }

    /// The text with every bound value written as a literal, for the places `params` cannot
    /// reach (`USING` clauses, JOB bodies). Refuses values that cannot be written exactly.
    pub fn to_inline(&self) -> Result<String> {
        let mut parts = Vec::with_capacity(self.tokens.len());
        for t in &self.tokens {
            match t {
                Token::Text(s) => parts.push(s.clone()),
                Token::Param(p) => {
                    let value =
                        self.params.get(p).ok_or_else(|| MindsdbError::Internal(format!("unbound parameter {p}")))?;
                    parts.push(inline_literal(value)?);
                }
            }
        }
        Ok(parts.join(" "))
    }
}

/// Builds a [`Sql`] token by token; tokens are joined with single spaces.
#[derive(Debug, Default)]
pub struct SqlBuilder {
    tokens: Vec<Token>,
    params: Map<String, Value>,
}

impl SqlBuilder {
    /// An empty statement.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fixed SQL text: keywords and punctuation. `'static` keeps runtime strings out.
    pub fn kw(mut self, text: &'static str) -> Self {
        self.tokens.push(Token::Text(text.to_owned()));
        self
    }

    /// A backtick-quoted identifier.
    pub fn ident(mut self, id: &Ident) -> Self {
        self.tokens.push(Token::Text(id.quoted()));
        self
    }

    /// `` `a`.`b` ``.
    pub fn qualified(mut self, a: &Ident, b: &Ident) -> Self {
        self.tokens.push(Token::Text(format!("{}.{}", a.quoted(), b.quoted())));
        self
    }

    /// A comma-separated list of quoted identifiers.
    pub fn ident_list(mut self, ids: &[Ident]) -> Self {
        let list: Vec<String> = ids.iter().map(Ident::quoted).collect();
        self.tokens.push(Token::Text(list.join(", ")));
        self
    }

    /// A value bound through `params` (a `:pN` placeholder in the text).
    pub fn value(mut self, v: impl Into<Value>) -> Self {
        let name = format!("p{}", self.params.len());
        self.params.insert(name.clone(), v.into());
        self.tokens.push(Token::Param(name));
        self
    }

    /// An integer written inline; its text comes from `i64`'s formatter.
    pub fn int(mut self, n: i64) -> Self {
        self.tokens.push(Token::Text(n.to_string()));
        self
    }

    /// The finished statement.
    pub fn build(self) -> Sql {
        Sql { tokens: self.tokens, params: self.params }
    }
}

/// Checks that `s` can be written as a MindsDB 26.1 string literal and read back unchanged.
///
/// The 26.1 lexer matches `'(?:\\.|[^'])*(?:''(?:\\.|[^'])*)*'` and the parser then replaces
/// `\'`, `\"` and `''` and strips *every* leading and trailing quote (`unquote(...).strip("'")`
/// in mindsdb_sql_parser). So a backslash changes meaning depending on what follows it (26.1
/// reads `'a\\b'` as `a\\b` but `'x\\'` as `x\`), and a value that starts or ends with `'`
/// loses that quote. Doubling `'` is exact for everything else. NUL is refused because it ends
/// strings in the C libraries below some handlers.
pub fn check_inline_str(s: &str) -> Result<()> {
    let bad = if s.contains('\\') {
        Some("a backslash")
    } else if s.contains('\0') {
        Some("a NUL character")
    } else if s.starts_with('\'') || s.ends_with('\'') {
        Some("a leading or trailing single quote")
    } else {
        None
    };
    match bad {
        Some(what) => Err(MindsdbError::InvalidArgument(format!(
            "value contains {what}, which mindsdb cannot store exactly in this position"
        ))),
        None => Ok(()),
    }
}

fn inline_literal(value: &Value) -> Result<String> {
    match value {
        Value::Null => Ok("NULL".to_owned()),
        Value::Bool(b) => Ok(if *b { "TRUE" } else { "FALSE" }.to_owned()),
        // serde_json numbers print as plain decimal text.
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => {
            check_inline_str(s)?;
            Ok(format!("'{}'", s.replace('\'', "''")))
        }
        Value::Array(_) | Value::Object(_) => {
            Err(MindsdbError::InvalidArgument("lists and objects cannot be written inline".to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ident_pattern() {
        for ok in ["a", "_", "t_acme", "agent_01", &"a".repeat(63)] {
            assert!(Ident::new(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "1abc",
            "A",
            "aB",
            "a-b",
            "a.b",
            "a b",
            "a`b",
            "`a`",
            "a'b",
            "a\"b",
            "a;b",
            "a--",
            "a/*",
            "é",
            "a\0",
            "a\n",
            long.as_str(),
            "ａ",
        ] {
            let err = Ident::new(bad).unwrap_err();
            assert!(matches!(err, MindsdbError::InvalidArgument(_)), "{bad:?}");
            // The message never echoes the hostile value.
            if !bad.is_empty() && bad != "a" {
                assert!(!err.to_string().contains(bad), "{bad:?}");
            }
        }
    }

    #[test]
    fn builds_text_with_placeholders() {
        let p = Ident::new("t_acme").unwrap();
        let kb = Ident::new("kb1").unwrap();
        let sql = SqlBuilder::new()
            .kw("SELECT id FROM")
            .qualified(&p, &kb)
            .kw("WHERE content =")
            .value("it's; DROP")
            .kw("LIMIT")
            .int(5)
            .build();
        assert_eq!(sql.text(), "SELECT id FROM `t_acme`.`kb1` WHERE content = :p0 LIMIT 5");
        assert_eq!(sql.params().get("p0"), Some(&Value::String("it's; DROP".into())));
    }

    #[test]
    fn placeholders_are_numbered_in_order() {
        let sql = SqlBuilder::new().kw("SELECT").value(1).kw(",").value("x").kw(",").value(Value::Null).build();
        assert_eq!(sql.text(), "SELECT :p0 , :p1 , :p2");
        assert_eq!(sql.params().len(), 3);
    }

    #[test]
    fn inline_doubles_quotes_and_refuses_what_cannot_round_trip() {
        let sql = SqlBuilder::new().kw("SELECT").value("it's -- ; `x` \"y\" é").kw(",").value(3).build();
        assert_eq!(sql.to_inline().unwrap(), "SELECT 'it''s -- ; `x` \"y\" é' , 3");
        for bad in ["a\\b", "x\\", "\\'", "nul\0", "'lead", "trail'", "'"] {
            let sql = SqlBuilder::new().kw("SELECT").value(bad).build();
            assert!(matches!(sql.to_inline(), Err(MindsdbError::InvalidArgument(_))), "{bad:?}");
        }
        let sql = SqlBuilder::new().kw("SELECT").value(vec![1, 2]).build();
        assert!(sql.to_inline().is_err());
    }
}
