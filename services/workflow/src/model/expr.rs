//! Condition expressions: one operand (truthiness) or a comparison of two.

use serde_json::{Value, json};

use super::template::{Scope, lookup, short};

/// An operand of a condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Ref(String),
    Lit(Value),
}

/// A condition: one operand (truthiness) or a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    lhs: Operand,
    op: Option<(&'static str, Operand)>,
}

const COMPARISONS: &[&str] = &["==", "!=", ">=", "<=", ">", "<", "contains"];

impl Expr {
    /// Parses `{{a.b}} > 3`, `{{a.ok}}`, `{{a.text}} contains 'urgent'`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (lhs, rest) = operand(s)?;
        let rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(Self { lhs, op: None });
        }
        let op = COMPARISONS
            .iter()
            .copied()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("expected one of {} after the first operand", COMPARISONS.join(" ")))?;
        let (rhs, tail) = operand(rest[op.len()..].trim_start())?;
        if !tail.trim().is_empty() {
            return Err("unexpected text after the expression".to_owned());
        }
        Ok(Self { lhs, op: Some((op, rhs)) })
    }

    /// Evaluates against the outputs in `scope`.
    pub(crate) fn eval(&self, scope: &Scope) -> Result<bool, String> {
        let value = |o: &Operand| -> Result<Value, String> {
            match o {
                Operand::Ref(r) => lookup(scope, r).cloned(),
                Operand::Lit(v) => Ok(v.clone()),
            }
        };
        let l = value(&self.lhs)?;
        let Some((op, rhs)) = &self.op else { return Ok(truthy(&l)) };
        let r = value(rhs)?;
        let num = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
        Ok(match *op {
            "==" => l == r || matches!((num(&l), num(&r)), (Some(a), Some(b)) if a == b),
            "!=" => !(l == r || matches!((num(&l), num(&r)), (Some(a), Some(b)) if a == b)),
            "contains" => match (&l, &r) {
                (Value::String(a), Value::String(b)) => a.contains(b.as_str()),
                (Value::Array(a), b) => a.contains(b),
                _ => false,
            },
            cmp => {
                let ord = match (num(&l), num(&r)) {
                    (Some(a), Some(b)) => a.partial_cmp(&b),
                    _ => l.as_str().zip(r.as_str()).map(|(a, b)| a.cmp(b)),
                };
                let Some(ord) = ord else { return Ok(false) };
                match cmp {
                    ">" => ord.is_gt(),
                    ">=" => ord.is_ge(),
                    "<" => ord.is_lt(),
                    _ => ord.is_le(),
                }
            }
        })
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "false",
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn operand(s: &str) -> Result<(Operand, &str), String> {
    if let Some(rest) = s.strip_prefix("{{") {
        let close = rest.find("}}").ok_or("'{{' without a closing '}}'")?;
        let r = rest[..close].trim();
        if r.is_empty() {
            return Err("empty reference".to_owned());
        }
        return Ok((Operand::Ref(r.to_owned()), &rest[close + 2..]));
    }
    for q in ['\'', '"'] {
        if let Some(rest) = s.strip_prefix(q) {
            let close = rest.find(q).ok_or("unterminated string")?;
            return Ok((Operand::Lit(json!(&rest[..close])), &rest[close + 1..]));
        }
    }
    let end = s.find(|c: char| c.is_whitespace() || "=!<>".contains(c)).unwrap_or(s.len());
    let word = &s[..end];
    let lit = match word {
        "true" => json!(true),
        "false" => json!(false),
        "null" => Value::Null,
        w => match w.parse::<f64>() {
            Ok(n) => json!(n),
            Err(_) => {
                return Err(format!("operand '{}' is not a {{{{reference}}}}, number, string or boolean", short(w)));
            }
        },
    };
    Ok((Operand::Lit(lit), &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::template::render_str;

    #[test]
    fn templates_and_conditions() {
        let scope: Scope =
            [("input".to_owned(), json!({"n": 3, "name": "bob"})), ("a".to_owned(), json!({"answer": "hi"}))].into();
        assert_eq!(render_str("{{input.n}}", &scope).unwrap(), json!(3));
        assert_eq!(render_str("Hello {{input.name}}: {{a.answer}}", &scope).unwrap(), json!("Hello bob: hi"));
        assert!(render_str("{{b.x}}", &scope).is_err());
        assert!(Expr::parse("{{input.n}} >= 3").unwrap().eval(&scope).unwrap());
        assert!(!Expr::parse("{{input.name}} == 'alice'").unwrap().eval(&scope).unwrap());
        assert!(Expr::parse("{{a.answer}} contains \"h\"").unwrap().eval(&scope).unwrap());
        assert!(Expr::parse("{{input.n}} ~ 3").is_err());
    }
}
