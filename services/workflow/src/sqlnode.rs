//! The `sql` node's query: SQL text written in the editor, rebuilt token by token through
//! `getlood_mindsdb::SqlBuilder`, so that no workflow string ever reaches MindsDB as SQL text.
//!
//! The shared builder only takes fixed text as `&'static str`, so the query is tokenized here
//! and every token is mapped to something the builder accepts:
//! * keywords and operators from a closed list (`KEYWORDS`, `OPERATORS`) become the list's own
//!   `'static` strings;
//! * other words become validated, backtick-quoted identifiers (`db.table` becomes a qualified
//!   name);
//! * `:name` placeholders and string or decimal literals become bound values (`params`);
//! * integers are written by `i64`'s formatter.
//!
//! Anything else (comments, `;`, double quotes, three-part names) is refused with a message
//! naming the token's position, never its text.

use getlood_mindsdb::{Ident, Sql, SqlBuilder};
use serde_json::Value;

/// Keywords and function names the query may use (matched case-insensitively).
const KEYWORDS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "AS", "ORDER", "BY", "GROUP", "HAVING", "LIMIT", "OFFSET", "ASC",
    "DESC", "DISTINCT", "IN", "IS", "NULL", "LIKE", "BETWEEN", "JOIN", "INNER", "LEFT", "RIGHT", "OUTER", "ON",
    "COUNT", "SUM", "AVG", "MIN", "MAX", "TRUE", "FALSE", "CASE", "WHEN", "THEN", "ELSE", "END", "UNION", "ALL",
    "LOWER", "UPPER", "COALESCE", "CAST", "INSERT", "INTO", "VALUES", "CREATE", "TABLE", "REPLACE", "UPDATE", "SET",
    "DELETE", "ROUND", "LENGTH", "CONCAT", "NOW", "INTEGER", "TEXT", "VARCHAR", "FLOAT", "DATE",
];

/// Statement kinds a `sql` node may run (its first keyword).
const STATEMENTS: &[&str] = &["SELECT", "INSERT", "CREATE", "UPDATE", "DELETE"];

/// Operators and punctuation, longest first so `<=` wins over `<`.
const OPERATORS: &[&str] = &["<=", ">=", "<>", "!=", "||", "=", "<", ">", "(", ")", ",", "*", "+", "-", "/", "%"];

/// One token of a query.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Keyword(&'static str),
    Operator(&'static str),
    Name(Ident),
    Qualified(Ident, Ident),
    Placeholder(String),
    Literal(Value),
    Int(i64),
}

/// A parsed query: its tokens and the placeholder names it uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SqlTemplate {
    tokens: Vec<Token>,
}

impl SqlTemplate {
    /// Tokenizes `query`; the error says what is wrong and where.
    pub(crate) fn parse(query: &str) -> Result<Self, String> {
        let tokens = tokenize(query)?;
        match tokens.first() {
            Some(Token::Keyword(k)) if STATEMENTS.contains(k) => {}
            Some(_) => return Err(format!("the query must start with one of {}", STATEMENTS.join(", "))),
            None => return Err("the query is empty".to_owned()),
        }
        Ok(Self { tokens })
    }

    /// Names of the `:name` placeholders, in order of first use.
    pub(crate) fn placeholders(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.tokens {
            if let Token::Placeholder(p) = t
                && !out.contains(p)
            {
                out.push(p.clone());
            }
        }
        out
    }

    /// The statement with `params` bound to the placeholders.
    pub(crate) fn build(&self, params: &serde_json::Map<String, Value>) -> Result<Sql, String> {
        let mut b = SqlBuilder::new();
        for t in &self.tokens {
            b = match t {
                Token::Keyword(k) => b.kw(k),
                Token::Operator(o) => b.kw(o),
                Token::Name(n) => b.ident(n),
                Token::Qualified(a, n) => b.qualified(a, n),
                Token::Placeholder(p) => {
                    let v = params.get(p).ok_or_else(|| format!("no value for placeholder :{p}"))?;
                    b.value(v.clone())
                }
                Token::Literal(v) => b.value(v.clone()),
                Token::Int(n) => b.int(*n),
            };
        }
        Ok(b.build())
    }
}

fn keyword(word: &str) -> Option<&'static str> {
    KEYWORDS.iter().copied().find(|k| k.eq_ignore_ascii_case(word))
}

fn ident(word: &str, at: usize) -> Result<Ident, String> {
    // MindsDB lower-cases unquoted names itself, so doing it here keeps their meaning.
    Ident::new(&word.to_ascii_lowercase())
        .map_err(|_| format!("name at offset {at} is not a valid identifier ([a-z_][a-z0-9_]*)"))
}

fn tokenize(query: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_ascii_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let at = i;
        if c.is_ascii_alphabetic() || c == '_' || c == '`' {
            let first = if c == '`' { quoted_name(&chars, &mut i)? } else { word(&mut i) };
            let quoted = c == '`';
            if i < chars.len() && chars[i] == '.' {
                i += 1;
                let second = if i < chars.len() && chars[i] == '`' {
                    quoted_name(&chars, &mut i)?
                } else if i < chars.len() && (chars[i].is_ascii_alphabetic() || chars[i] == '_') {
                    word(&mut i)
                } else {
                    return Err(format!("expected a name after '.' at offset {i}"));
                };
                if i < chars.len() && chars[i] == '.' {
                    return Err(format!("three-part names are not supported (offset {at})"));
                }
                out.push(Token::Qualified(ident(&first, at)?, ident(&second, at)?));
            } else if let (false, Some(k)) = (quoted, keyword(&first)) {
                out.push(Token::Keyword(k));
            } else {
                out.push(Token::Name(ident(&first, at)?));
            }
            continue;
        }
        if c == ':' {
            i += 1;
            let name = word(&mut i);
            if name.is_empty() {
                return Err(format!("':' at offset {at} is not followed by a placeholder name"));
            }
            out.push(Token::Placeholder(name));
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if let Ok(n) = text.parse::<i64>() {
                out.push(Token::Int(n));
            } else if let Ok(f) = text.parse::<f64>() {
                // Decimals are bound: SqlBuilder only writes integers inline.
                out.push(Token::Literal(serde_json::json!(f)));
            } else {
                return Err(format!("bad number at offset {at}"));
            }
            continue;
        }
        if c == '\'' {
            // A string literal in the editor's SQL: bound as a value, so quoting cannot break out.
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated string starting at offset {at}")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Token::Literal(Value::String(s)));
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') || c == '/' && chars.get(i + 1) == Some(&'*') {
            return Err(format!("comments are not allowed (offset {at})"));
        }
        if c == ';' {
            return Err(format!("only one statement is allowed (';' at offset {at})"));
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match OPERATORS.iter().copied().find(|op| rest.starts_with(op)) {
            Some(op) => {
                i += op.chars().count();
                out.push(Token::Operator(op));
            }
            None => return Err(format!("unexpected character at offset {at}")),
        }
    }
    Ok(out)
}

fn quoted_name(chars: &[char], i: &mut usize) -> Result<String, String> {
    let at = *i;
    *i += 1;
    let start = *i;
    while *i < chars.len() && chars[*i] != '`' {
        *i += 1;
    }
    if *i >= chars.len() {
        return Err(format!("unterminated quoted name at offset {at}"));
    }
    let name: String = chars[start..*i].iter().collect();
    *i += 1;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rebuilds_queries_with_bound_values() {
        let t = SqlTemplate::parse("select region, SUM(amount) as total from files.sales where month = :month and note <> 'it''s' group by region limit 10").unwrap();
        assert_eq!(t.placeholders(), vec!["month".to_owned()]);
        let params = json!({"month": "2026-01"});
        let sql = t.build(params.as_object().unwrap()).unwrap();
        assert_eq!(
            sql.text(),
            "SELECT `region` , SUM ( `amount` ) AS `total` FROM `files`.`sales` WHERE `month` = :p0 AND `note` <> :p1 GROUP BY `region` LIMIT 10"
        );
        assert_eq!(sql.params().get("p1"), Some(&json!("it's")));
    }

    #[test]
    fn refuses_what_it_cannot_carry_safely() {
        for bad in [
            "SELECT 1; DROP TABLE x",
            "SELECT * FROM t -- c",
            "SELECT * FROM a.b.c",
            "DROP TABLE x",
            "SELECT \"x\"",
            "SELECT `a b`",
            "",
        ] {
            assert!(SqlTemplate::parse(bad).is_err(), "{bad}");
        }
        let t = SqlTemplate::parse("SELECT * FROM t WHERE a = :missing").unwrap();
        assert!(t.build(&serde_json::Map::new()).is_err());
    }
}
