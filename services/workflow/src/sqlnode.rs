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
//!
//! What a query may read is [`SqlPolicy`]'s (issue 13, "SQL nodes"): only `SELECT`, and only
//! tables of the databases the operator allowed (`app.sql.allow`, `files` by default), named
//! `database.table`. MindsDB's own objects are never readable: `information_schema`, `log`,
//! the `mindsdb` project and every tenant project `t_*` (its agents list API keys in clear,
//! its `getlood_memory` knowledge base holds every user's turns), and unqualified names, which
//! MindsDB resolves in the tenant's project. Other tenants are MindsDB companies of their own
//! (`company-id`), which no name reaches. Stored graphs still load whatever their SQL; the
//! policy is applied when a graph is saved or validated and again when a node runs.

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

/// Keywords of statements that write: a `sql` node only reads (writes go through
/// `integration_insert` nodes, which name their one target table).
const WRITE_KEYWORDS: &[&str] = &["INSERT", "INTO", "VALUES", "CREATE", "TABLE", "UPDATE", "SET", "DELETE"];

/// Databases and projects no `sql` node may name: MindsDB's catalogue, its logs (jobs
/// history with rendered queries), the default project; tenant projects are `t_*`.
const SYSTEM_DATABASES: &[&str] = &["information_schema", "log", "mindsdb"];

fn is_system_database(db: &str) -> bool {
    SYSTEM_DATABASES.contains(&db) || db.starts_with("t_")
}

/// Keywords that end a `FROM` list (a `,` after them is not another table).
const CLAUSE_KEYWORDS: &[&str] = &["WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "OFFSET", "UNION", "ON", "SELECT"];

/// What `sql` nodes may read: whole databases (`files`), databases by name prefix (`ds_*`, the
/// tenants' registered data sources) or single tables (`crm.accounts`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SqlPolicy {
    databases: Vec<String>,
    prefixes: Vec<String>,
    tables: Vec<(String, String)>,
}

impl SqlPolicy {
    /// The policy of `app.sql.allow`; the error names the first entry that is not a
    /// `database` or `database.table` name, or that names a MindsDB system database.
    pub(crate) fn new(allow: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in allow {
            let lower = entry.trim().to_ascii_lowercase();
            if let Some(prefix) = lower.strip_suffix('*') {
                // A prefix must be a name start that no system database or project shares: at
                // least two characters, and never `t_` (tenant projects) or a prefix of one.
                let ok = prefix.len() >= 2 && !prefix.contains('.') && Ident::new(prefix).is_ok();
                if !ok {
                    return Err(format!(
                        "'{}' is not a database prefix: use at least two of [a-z0-9_] then '*', e.g. ds_*",
                        entry.escape_debug()
                    ));
                }
                // `store_*` are the knowledge bases' vector stores (the memory one's included).
                let system = SYSTEM_DATABASES.iter().chain(&["t_", "store_"]).any(|d| d.starts_with(prefix))
                    || prefix.starts_with("t_")
                    || prefix.starts_with("store_");
                if system {
                    return Err(format!(
                        "'{}' would match MindsDB system databases or projects and cannot be allowed",
                        entry.escape_debug()
                    ));
                }
                policy.prefixes.push(prefix.to_owned());
                continue;
            }
            let parts: Vec<&str> = lower.split('.').collect();
            if parts.len() > 2 || parts.iter().any(|p| Ident::new(p).is_err()) {
                return Err(format!("'{}' is not a database or database.table name", entry.escape_debug()));
            }
            if is_system_database(parts[0]) {
                return Err(format!(
                    "'{}' is a MindsDB system database or project and cannot be allowed",
                    parts[0].escape_debug()
                ));
            }
            match parts.as_slice() {
                [db] => policy.databases.push((*db).to_owned()),
                [db, table] => policy.tables.push(((*db).to_owned(), (*table).to_owned())),
                _ => {}
            }
        }
        Ok(policy)
    }

    fn allows(&self, db: &str, table: &str) -> bool {
        self.databases.iter().any(|d| d == db)
            || self.prefixes.iter().any(|p| db.starts_with(p.as_str()))
            || self.tables.iter().any(|(d, t)| d == db && t == table)
    }

    /// Checks that `query` only reads tables this policy allows.
    pub(crate) fn check(&self, query: &SqlTemplate) -> Result<(), String> {
        let tokens = &query.tokens;
        match tokens.first() {
            Some(Token::Keyword("SELECT")) => {}
            Some(Token::Keyword(k)) => return Err(format!("only SELECT statements may run in a sql node, not {k}")),
            _ => return Err("only SELECT statements may run in a sql node".to_owned()),
        }
        // Per parenthesis depth: whether the tokens at that depth are a FROM list.
        let mut in_from = vec![false];
        let mut expect_table = false;
        for (n, t) in tokens.iter().enumerate() {
            match t {
                Token::Keyword(k) if WRITE_KEYWORDS.contains(k) => {
                    return Err(format!("only SELECT statements may run in a sql node ({k} at token {n})"));
                }
                Token::Qualified(db, _) if is_system_database(db.as_str()) => {
                    return Err(format!("'{db}' is a MindsDB system database or project, which sql nodes cannot read"));
                }
                _ => {}
            }
            let depth_in_from = in_from.last().copied().unwrap_or(false);
            if expect_table {
                expect_table = false;
                match t {
                    Token::Qualified(db, table) => {
                        if !self.allows(db.as_str(), table.as_str()) {
                            return Err(format!(
                                "table '{db}.{table}' is not readable by sql nodes; allow its database with app.sql.allow"
                            ));
                        }
                        continue;
                    }
                    Token::Name(name) => {
                        return Err(format!(
                            "table '{name}' must be named database.table: unqualified names are the project's \
                             agents, models and knowledge bases, which sql nodes cannot read"
                        ));
                    }
                    // A subquery: its own FROM is checked in turn.
                    Token::Operator("(") => {}
                    _ => return Err(format!("expected a database.table name after FROM or JOIN (token {n})")),
                }
            }
            match t {
                Token::Operator("(") => in_from.push(false),
                Token::Operator(")") => {
                    in_from.pop();
                    if in_from.is_empty() {
                        return Err(format!("unbalanced ')' at token {n}"));
                    }
                }
                Token::Keyword("FROM" | "JOIN") => {
                    if let Some(f) = in_from.last_mut() {
                        *f = true;
                    }
                    expect_table = true;
                }
                Token::Keyword(k) if CLAUSE_KEYWORDS.contains(k) => {
                    if let Some(f) = in_from.last_mut() {
                        *f = false;
                    }
                }
                Token::Operator(",") if depth_in_from => expect_table = true,
                _ => {}
            }
        }
        if expect_table {
            return Err("expected a database.table name after FROM or JOIN".to_owned());
        }
        Ok(())
    }
}

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

    fn check(policy: &SqlPolicy, q: &str) -> Result<(), String> {
        policy.check(&SqlTemplate::parse(q).unwrap())
    }

    #[test]
    fn prefixes_allow_the_data_sources_and_never_a_system_name() {
        let p = SqlPolicy::new(&["files".to_owned(), "ds_*".to_owned()]).unwrap();
        let q = |sql: &str| p.check(&SqlTemplate::parse(sql).unwrap());
        assert!(q("SELECT * FROM ds_sales.orders").is_ok());
        assert!(q("SELECT * FROM files.t").is_ok());
        assert!(q("SELECT * FROM dsx.orders").unwrap_err().contains("not readable"));
        assert!(q("SELECT * FROM store_docs.docs").unwrap_err().contains("not readable"));
        for bad in ["*", "d*", "t_*", "t*", "lo*", "mind*", "store_*", "st*", "info*", "ds.x*", "Ds-*"] {
            assert!(SqlPolicy::new(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_allows_declared_databases_and_tables_only() {
        let p = SqlPolicy::new(&["files".to_owned(), "crm.accounts".to_owned()]).unwrap();
        for ok in [
            "SELECT 1 AS one",
            "SELECT region, SUM(amount) FROM files.sales WHERE month = :m GROUP BY region",
            "SELECT a.x, b.y FROM files.a AS a JOIN crm.accounts b ON a.id = b.id",
            "SELECT * FROM files.a x, crm.accounts y WHERE x.id = y.id",
            "SELECT * FROM (SELECT id FROM files.a) AS s WHERE s.id IN (SELECT id FROM files.b)",
            "SELECT COUNT(*) FROM files.a UNION SELECT COUNT(*) FROM files.b",
        ] {
            check(&p, ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, needle) in [
            ("SELECT * FROM t_acme.agents", "system database or project"),
            ("SELECT * FROM `T_OTHER`.agents", "system database or project"),
            ("SELECT * FROM agents", "must be named database.table"),
            ("SELECT * FROM getlood_memory WHERE content = 'x'", "must be named database.table"),
            ("SELECT * FROM information_schema.databases", "system database"),
            ("SELECT * FROM log.jobs_history", "system database"),
            ("SELECT * FROM mindsdb.models", "system database"),
            ("SELECT * FROM desktop.windows", "not readable by sql nodes"),
            ("SELECT * FROM crm.contacts", "not readable"),
            ("SELECT * FROM files.a, desktop.windows", "not readable"),
            ("SELECT * FROM files.a JOIN agents ON 1 = 1", "must be named"),
            ("SELECT * FROM files.a WHERE id IN (SELECT id FROM t_x.agents)", "system"),
            ("SELECT * FROM (SELECT * FROM log.jobs_history) AS s", "system"),
            ("SELECT t_x.agents FROM files.a", "system"),
            ("INSERT INTO files.a (x) VALUES (1)", "only SELECT"),
            ("DELETE FROM files.a", "only SELECT"),
            ("UPDATE files.a SET x = 1", "only SELECT"),
            ("CREATE TABLE files.b (SELECT * FROM files.a)", "only SELECT"),
            ("SELECT * INTO files.b FROM files.a", "only SELECT"),
            ("SELECT * FROM", "expected a database.table"),
        ] {
            let err = check(&p, bad).expect_err(bad);
            assert!(err.contains(needle), "{bad}: {err}");
        }
        for bad in ["information_schema", "log", "t_acme", "mindsdb.models", "a.b.c", "x y"] {
            assert!(SqlPolicy::new(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
